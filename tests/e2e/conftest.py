"""The integration layer: a real `logcast serve` on a free loopback port.

`make_server(toml)` writes the configuration into a fresh folder, starts the real
command in its own process group, waits until `/healthz` answers, and stops it by
its process group at the end of the test (children included).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, stop_group
from tests.util import popen_logged, wait_healthy


@dataclass
class Server:
    url: str
    port: int
    dir: Path
    config: Path
    proc: subprocess.Popen[bytes]
    token: str | None = None
    log_path: Path = field(default_factory=Path)
    extra_args: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=10.0, **kw)  # type: ignore[arg-type]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        stop_group(self.proc)
        return self.proc.returncode

    def restart(self, timeout: float = 20.0) -> None:
        """Stop this server and start it again on the same port and folder."""
        self.stop()
        self.proc = _spawn(self.config, self.port, self.log_path, self.extra_args)
        _wait_healthy(self, timeout)


def _spawn(config: Path, port: int, log_path: Path, extra: list[str]) -> subprocess.Popen[bytes]:
    return spawn_python(
        ["-m", "logcast", "serve", "-c", str(config), "--port", str(port), *extra], config.parent, log_path
    )


def spawn_python(args: list[str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`python ARGS` in its own process group (stop it with `stop_group`), its output
    appended to `log_path`, without the caller's LOGCAST_TOKEN / LOGCAST_URL."""
    return popen_logged([sys.executable, *args], cwd, log_path)


def _wait_healthy(server: Server, timeout: float) -> None:
    wait_healthy(server.url, server.proc, timeout, server.output)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(
        toml: str, *, token: str | None = None, extra_args: list[str] | None = None, timeout: float = 20.0
    ) -> Server:
        folder = tmp_path / f"server{len(started)}"
        folder.mkdir()
        config = folder / "logcast.toml"
        text = textwrap.dedent(toml)
        if token and "token" not in text:
            text = f'[server]\ntoken = "{token}"\n' + text
        config.write_text(text)
        port = free_port()
        log_path = folder / "server.log"
        proc = _spawn(config, port, log_path, extra_args or [])
        server = Server(
            f"http://127.0.0.1:{port}", port, folder, config, proc, token, log_path, extra_args or []
        )
        started.append(server)
        _wait_healthy(server, timeout)
        return server

    yield make
    for server in started:
        server.stop()


def py_command(source: str) -> str:
    """A TOML array that runs `python -u -c source`."""
    import json

    return json.dumps([sys.executable, "-u", "-c", textwrap.dedent(source)])
