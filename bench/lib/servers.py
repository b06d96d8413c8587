"""The servers under test, `logcast serve`, the naive thread-and-queue app under uvicorn or
the minimal relay (`bench/lib/relay.py`, the floor of any server in between): each on a
free loopback port, in its own process group, stopped by that group (never by name)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.lib.naive_app import NAIVE_APP
from tests import util
from tests.util import clean_env, free_port, stop_group, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def subprocess_env() -> dict[str, str]:
    """The environment of the processes the benchmarks start: the repo's `src` first on
    PYTHONPATH, and no LOGCAST_TOKEN / LOGCAST_URL from the caller's shell."""
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def popen_logged(
    args: list[str], cwd: Path, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`tests.util.popen_logged` in `subprocess_env()`, with `env` added."""
    return util.popen_logged(args, cwd, log_path, env={**subprocess_env(), **(env or {})})


@dataclass
class Server:
    """A server under test: `logcast`, the `naive` thread-and-queue app or the minimal `relay`."""

    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ws_url(self, process: str) -> str:
        if self.kind == "naive":
            return f"ws://127.0.0.1:{self.port}/ws/logs"
        if self.kind == "relay":
            return f"ws://127.0.0.1:{self.port}/ws"
        return f"ws://127.0.0.1:{self.port}/ws/logs?process={process}&format=text&lines=0"

    def sse_path(self, process: str) -> str:
        if self.kind == "relay":
            return "/sse"
        return f"/api/processes/{process}/logs/stream?lines=0"

    def http(self, method: str, path: str, timeout: float = 10.0) -> Any:
        import httpx

        r = httpx.request(method, self.url + path, timeout=timeout, trust_env=False)
        r.raise_for_status()
        return r.json()

    def subscribers(self, process: str) -> int:
        if self.kind in ("naive", "relay"):
            return int(self.http("GET", "/stats")["subscribers"])
        stats = self.http("GET", "/api/logs/stats")
        return int(stats["processes"][process]["subscribers"])

    def start(self, process: str) -> None:
        if self.kind in ("naive", "relay"):
            self.http("POST", "/start")
        else:
            self.http("POST", f"/api/processes/{process}/start")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_group(self.proc, timeout=10.0 if self.kind == "logcast" else 3.0)


def start_logcast(
    tmp: Path, processes: dict[str, list[str]], timeout: float = 30.0, *, env: dict[str, str] | None = None
) -> Server:
    """`logcast serve` on SQLite in `tmp/data`, with `processes` (name: command) configured
    not to start by themselves nor restart (and `env` added to its environment)."""
    data = tmp / "data"
    parts = [f"[storage]\ndir = {json.dumps(str(data))}\n"]
    for name, command in processes.items():
        parts.append(
            f'[process.{name}]\ncommand = {json.dumps(command)}\nautostart = false\nrestart = "never"\n'
        )
    config = tmp / "logcast.toml"
    config.write_text("\n".join(parts))
    return serve(tmp, config, timeout, env=env)


def serve(
    tmp: Path,
    config: Path,
    timeout: float = 30.0,
    *,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> Server:
    """`logcast serve -c config` (run by `python`, with `env` added to the environment)
    on a free port, in its own session, logging to `tmp/server.log`; returned once
    `/healthz` answers."""
    port = free_port()
    log_path = tmp / "server.log"
    command = [python, "-m", "logcast", "serve", "-c", str(config), "--port", str(port)]
    proc = popen_logged(command, tmp, log_path, env)
    server = Server("logcast", proc, port, log_path)
    try:
        _wait_healthy(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def start_naive(tmp: Path, child: list[str], timeout: float = 30.0) -> Server:
    """The naive thread-and-queue app under uvicorn; `POST /start` starts `child`."""
    (tmp / "naive_app.py").write_text(NAIVE_APP)
    port = free_port()
    log_path = tmp / "naive.log"
    env = subprocess_env()
    env["NAIVE_CHILD"] = json.dumps(child)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "naive_app:app",
                "--app-dir",
                str(tmp),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=tmp,
            stdout=subprocess.DEVNULL,  # the naive app prints every line to its terminal
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    server = Server("naive", proc, port, log_path)
    _wait_healthy(server, timeout)
    return server


def start_relay(tmp: Path, child: list[str], timeout: float = 30.0) -> Server:
    """The minimal relay (`bench/lib/relay.py`); `POST /start` starts `child`."""
    port_file = tmp / "relay.port"
    log_path = tmp / "relay.log"
    relay = ROOT / "bench" / "lib" / "relay.py"
    command = [sys.executable, str(relay), "--port-file", str(port_file), "--followers", "0", "--", *child]
    proc = popen_logged(command, tmp, log_path)
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_group(proc, timeout=3.0)
            raise RuntimeError(f"the relay did not start: {log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.01)
    server = Server("relay", proc, int(port_file.read_text()), log_path)
    _wait_healthy(server, timeout)
    return server


def _wait_healthy(server: Server, timeout: float) -> None:
    try:
        wait_healthy(server.url, server.proc, timeout, server.output, f"{server.kind} server")
    except TimeoutError:
        server.stop()
        raise


def wait_subscribers(server: Server, process: str, n: int, timeout: float) -> int:
    """Poll until the server counts `n` subscribers of `process`; the last count seen."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            seen = server.subscribers(process)
            if seen >= n:
                return seen
        time.sleep(0.1)
    return seen


class PollUntil:
    """Asks `check()` of the server every `every` s in a thread until it holds: `at` is
    when the question that first held was asked (its answer tells the state at some
    moment after that), None until then. A failed question is asked again."""

    def __init__(self, check: Callable[[], bool], every: float = 0.02) -> None:
        self.check, self.every = check, every
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            asked = time.time()
            with contextlib.suppress(Exception):
                if self.check():
                    self.at = asked
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
