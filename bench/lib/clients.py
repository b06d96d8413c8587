"""The benchmark's side of its stream clients: each runs in a process of its own
(`client_process.py`), so that its CPU stays off the server's (the machine has 2 cores)."""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lib.servers import subprocess_env
from tests.util import stop_group

CLIENT_SCRIPT = Path(__file__).resolve().parent / "client_process.py"


def add_ws_client_options(parser: argparse.ArgumentParser) -> None:
    """The benchmarks' choice of WebSocket client (`--ws-client`, `--ws-compression`)."""
    parser.add_argument(
        "--ws-client",
        choices=["websockets", "raw"],
        default="websockets",
        help="WebSocket client: the websockets library (default) or a minimal frame parser (raw)",
    )
    parser.add_argument(
        "--ws-compression",
        action="store_true",
        help="the websockets client offers permessage-deflate, as browsers do (with --ws-client websockets)",
    )


def check_ws_client_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.ws_compression and args.ws_client != "websockets":
        parser.error("--ws-compression needs --ws-client websockets")


class ClientProcess:
    """One client process holding `sse` SSE and `ws` WebSocket streams (`spec`, see
    `client_process.run_streams`). It says `READY <connected> <failed>` once every stream is
    connected or failed, and `RESULT {json}` at the end."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            [sys.executable, str(CLIENT_SCRIPT), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,
            env=subprocess_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.result: dict[str, Any] | None = None
        self.ready: tuple[int, int] | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def _next(self, deadline: float) -> str | None:
        try:
            return self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def wait_ready(self, timeout: float) -> tuple[int, int]:
        """(connected, failed); (0, -1) if it never said READY in time."""
        deadline = time.monotonic() + timeout
        while self.ready is None and time.monotonic() < deadline:
            line = self._next(deadline)
            if line is None:
                break
            self._take(line)
        return self.ready or (0, -1)

    def _take(self, line: str) -> None:
        if line.startswith("READY "):
            connected, failed = line.split()[1:3]
            self.ready = (int(connected), int(failed))
        elif line.startswith("RESULT "):
            try:
                self.result = json.loads(line[7:])
            except ValueError:  # the process ended in the middle of it: no result, said
                sys.stderr.write(f"a client process's result was cut short after {len(line):,} characters\n")

    def done(self) -> bool:
        """Non-blocking: has it printed its result?"""
        while self.result is None:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return False
            if line is None:
                return True  # exited without a result
            self._take(line)
        return True

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"stop\n")
                self.proc.stdin.flush()

    def finish(self, timeout: float = 20.0) -> dict[str, Any] | None:
        """Ask it to stop (if it has not finished), collect its result, end its group."""
        if not self.done():
            self.stop()
            deadline = time.monotonic() + timeout
            while self.result is None and time.monotonic() < deadline:
                line = self._next(deadline)
                if line is None:
                    break
                self._take(line)
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        stop_group(self.proc, timeout=3.0)
        return self.result

    def kill(self) -> None:
        stop_group(self.proc, timeout=2.0)


def wait_clients(
    clients: list[ClientProcess], deadline: float, poll: Callable[[], None] | None = None
) -> bool:
    """Until every client printed its result or `deadline` (monotonic); True if all did."""
    while time.monotonic() < deadline:
        if all(c.done() for c in clients):
            return True
        if poll is not None:
            poll()
        time.sleep(0.05)
    return all(c.done() for c in clients)
