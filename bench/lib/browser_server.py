"""The logcast server of the browser benchmark and what it supervises: `hist`, the history
the viewer opens, and `live`, the paced child it follows; and how long the server alone takes
to send that history to a bare socket, the floor under any page's figure."""

from __future__ import annotations

import argparse
import json
import math
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from bench.lib.children import HISTORY_CHILD, PACED_CHILD
from bench.lib.servers import serve


@dataclass
class LogcastServer:
    """`logcast serve` running `hist` and `live`; `live_report` is where `live` writes its times."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    live_report: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, timeout=10.0)
        r.raise_for_status()
        return r.json()

    def post(self, path: str) -> Any:
        r = httpx.post(self.url + path, timeout=10.0)
        r.raise_for_status()
        return r.json()


def start_server(tmp: Path, args: argparse.Namespace) -> LogcastServer:
    """`logcast serve` on SQLite in `tmp`: `hist` (`args.lines` at `args.hist_rate` lines/s)
    starts at once, `live` (`args.rate` lines/s for `args.seconds` s) when `start_live` says."""
    (tmp / "hist.py").write_text(HISTORY_CHILD)
    (tmp / "live.py").write_text(PACED_CHILD)  # the latency benchmark's child
    report = tmp / "live.json"
    hist = [sys.executable, "-u", str(tmp / "hist.py"), str(args.lines), str(args.hist_rate)]
    live = [sys.executable, "-u", str(tmp / "live.py"), str(args.rate), str(args.seconds), "10", str(report)]
    config = tmp / "logcast.toml"
    config.write_text(
        f"[storage]\ndir = {json.dumps(str(tmp / 'data'))}\n\n"
        f'[process.hist]\ncommand = {json.dumps(hist)}\nautostart = true\nrestart = "never"\n\n'
        f'[process.live]\ncommand = {json.dumps(live)}\nautostart = false\nrestart = "never"\n'
    )
    started = serve(tmp, config)
    return LogcastServer(started.proc, started.port, started.log_path, report)


def wait_history(server: LogcastServer, lines: int, timeout: float) -> float:
    """Wait until `hist` has printed every line and SQLite has them all; seconds taken. Lines
    the server dropped before persisting them (`store_lost`) are reported."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = server.get("/api/processes/hist")
        stats = server.get("/api/logs/stats")
        if info["lines"] >= lines and stats["store"]["pending"] == 0:
            last = server.get("/api/processes/hist/logs", tail=1)["logs"]
            if last and last[0]["message"].startswith(f"{lines - 1:09d} "):
                lost = stats["processes"]["hist"]["store_lost"]
                if lost:
                    print(
                        f"WARNING: the server dropped {lost:,} lines of hist from memory before SQLite had "
                        "them (store_lost): the history has holes; try a lower --hist-rate",
                        flush=True,
                    )
                return time.monotonic() - t0
        if info.get("state") in ("exited", "crashed"):
            raise RuntimeError(f"hist ended early: {info}")
        time.sleep(0.2)
    raise TimeoutError(f"hist did not reach {lines} stored lines in {timeout:.0f} s (last: {info})")


def raw_history(server: LogcastServer, k: int, timeout: float) -> float:
    """Seconds for a bare socket reader to get the last K lines over SSE, up to the
    `historical_complete` event: what the server alone takes, without a browser."""
    request = (
        f"GET /api/processes/hist/logs/stream?lines={k} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + timeout
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        tail = b""
        while time.monotonic() < deadline:
            data = sock.recv(1 << 20)
            if not data:
                break
            tail = tail[-64:] + data
            if b"historical_complete" in tail:
                return time.perf_counter() - t0
    return math.inf


def start_live(server: LogcastServer, timeout: float = 30.0) -> None:
    """Start `live` once it is not running (the previous run may still be on its way out)."""
    deadline = time.monotonic() + timeout
    while server.get("/api/processes/live")["state"] in ("starting", "running", "ready", "stopping"):
        if time.monotonic() > deadline:
            raise TimeoutError("live is still running from before")
        time.sleep(0.1)
    server.live_report.unlink(missing_ok=True)
    server.post("/api/processes/live/start")


def wait_live_report(server: LogcastServer, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.live_report.exists():
            return json.loads(server.live_report.read_text())  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise TimeoutError(f"the live child did not finish within {timeout:.0f} s")
