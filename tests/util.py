"""What tests and benchmarks share: free ports, waiting for a condition, stopping a
process group. Plain functions, no pytest: `bench/` imports them too."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Debian's Chromium, with the flags that work headless here (tests, benchmarks, screenshots)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


TCP_CLOSED_STATES = {7, 8}  # TCP_CLOSE (reset), TCP_CLOSE_WAIT (closed by the server)


def tcp_state(s: socket.socket) -> int:
    """The kernel's state of a TCP socket (`TCP_INFO`'s first byte)."""
    return int(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0])


def silent_client(port: int, request: bytes) -> socket.socket:
    """A client on 127.0.0.1:`port` that sends `request` and never reads (a small
    receive buffer, so that the server's bytes back up soon)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(request)
    return s


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 20.0,
    what: str | Callable[[], str] = "condition",
    *,
    interval: float = 0.05,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; AssertionError
    after `timeout` seconds, naming `what` (a callable is asked only then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            name = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {name} (last: {value!r})")
        time.sleep(interval)


def wait_port(port: int, timeout: float = 10.0) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(listening, timeout, f"something to listen on 127.0.0.1:{port}")


def clean_env() -> dict[str, str]:
    """This process's environment without its LOGCAST_TOKEN / LOGCAST_URL, which would
    point a started logcast at another server."""
    env = dict(os.environ)
    env.pop("LOGCAST_TOKEN", None)
    env.pop("LOGCAST_URL", None)
    return env


def popen_logged(
    args: list[str], cwd: Path, out: Path, *, err: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`args` in a session of its own (stop it with `stop_group`), its output appended to
    `out` (its stderr to `err` if given), in `env` (`clean_env()` if None)."""
    with open(out, "ab") as stdout, open(err, "ab") if err else contextlib.nullcontext() as stderr:
        return subprocess.Popen(
            args,
            cwd=cwd,
            stdout=stdout,
            stderr=subprocess.STDOUT if stderr is None else stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=clean_env() if env is None else env,
        )


def stop_group(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a process started with start_new_session=True, by its process group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    else:
        try:  # leftovers of a group whose leader already exited
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_healthy(
    url: str,
    proc: subprocess.Popen[Any],
    timeout: float,
    output: Callable[[], str],
    name: str = "logcast serve",
) -> None:
    """Wait until `url/healthz` answers 200; RuntimeError with the server's `output()` if
    it exits first, TimeoutError if it does not answer within `timeout` seconds."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{output()}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{name} not healthy after {timeout:.0f}s:\n{output()}")
