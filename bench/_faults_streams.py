"""Readers that stop reading, against a real `logcast serve`, for `bench/faults.py` (`streams`):
300 stalled SSE sockets, the server's RSS, fds and `/healthz` meanwhile, and when each socket
is cut loose. Run it alone to print its figures; what each means: bench/README.md."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.lib, tests

from bench.lib.healthz import HealthzProbe
from bench.lib.servers import serve
from tests.faults.test_stalled_readers import FLOOD_SOURCE as FLOOD  # the fault test's child
from tests.util import wait_for

STALLED = 300
SEND_TIMEOUT = 5.0
TCP_CLOSED = {7, 8}  # TCP_CLOSE (reset), TCP_CLOSE_WAIT (closed)
MiB = 1 << 20


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class _Probe(HealthzProbe):
    """`/healthz` every 20 ms; the server's RSS and fds at each answer."""

    def __init__(self, url: str, pid: int) -> None:
        super().__init__(url)
        self.pid = pid
        self.peak_rss = 0
        self.peak_fds = 0

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, _rss(self.pid))
        self.peak_fds = max(self.peak_fds, _fds(self.pid))


def _stalled_sse(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /api/processes/flood/logs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return s


def _tcp_state(s: socket.socket) -> int:
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def _lines(url: str) -> int:
    import httpx

    return int(httpx.get(url + "/api/processes/flood", timeout=10, trust_env=False).json()["last_seq"])


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


def measure(python: str) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory(prefix="logcast-stalls-") as folder:
        tmp = Path(folder)
        config = tmp / "logcast.toml"
        config.write_text(
            f"[storage]\ndir = {json.dumps(str(tmp / 'data'))}\nmemory_lines = 20000\n\n"
            f'[process.flood]\ncommand = {json.dumps([python, "-u", "-c", FLOOD])}\nrestart = "never"\n'
        )
        server = serve(tmp, config, python=python, env={"LOGCAST_SEND_TIMEOUT": str(SEND_TIMEOUT)})
        stalled: list[socket.socket] = []
        try:
            pid = server.pid
            wait_for(lambda: _lines(server.url) > 30_000, 60, "the flood to fill the memory tail")
            probe = _Probe(server.url, pid)
            probe.start()
            wait_for(lambda: probe.times, 10, "a first /healthz answer")
            base_rss, base_fds = _rss(pid), _fds(pid)
            skip = len(probe.times)
            opened: list[float] = []
            for _ in range(STALLED):
                stalled.append(_stalled_sse(server.port))
                opened.append(time.monotonic())
            reset_after: dict[int, float] = {}
            deadline = time.monotonic() + SEND_TIMEOUT + 60
            while len(reset_after) < STALLED and time.monotonic() < deadline:
                now = time.monotonic()
                for i, s in enumerate(stalled):
                    if i not in reset_after and _tcp_state(s) in TCP_CLOSED:
                        reset_after[i] = now - opened[i]
                time.sleep(0.02)
            with contextlib.suppress(AssertionError):  # the figure says how far it came back
                wait_for(lambda: _fds(pid) <= base_fds + 12, 20)  # the store may open reader files
            time.sleep(2.0)  # freed memory is given back a second after a wave of aborts
            after_rss, after_fds = _rss(pid), _fds(pid)
            probe.stop.set()
            probe.join(10)
            healthz = probe.times[skip:]
            cut = server.log_path.read_text(errors="replace").count("stopped reading")
        finally:
            for s in stalled:
                s.close()
            server.stop()
    resets = sorted(reset_after.values())
    return {
        "stalled_clients": STALLED,
        "send_timeout_s": SEND_TIMEOUT,
        "rss_base_mib": round(base_rss / MiB, 1),
        "rss_peak_mib": round(probe.peak_rss / MiB, 1),
        "rss_after_mib": round(after_rss / MiB, 1),
        "fds_base": base_fds,
        "fds_peak": probe.peak_fds,
        "fds_after": after_fds,
        "healthz_max_ms": round(max(healthz, default=0.0) * 1000, 1),
        "healthz_p99_ms": round(_percentile(healthz, 0.99) * 1000, 1),
        "healthz_failures": probe.failures,
        "sockets_reset": len(resets),
        "stall_to_reset_s_median": round(_percentile(resets, 0.5), 2),
        "stall_to_reset_s_max": round(resets[-1], 2) if resets else -1.0,
        "logged_cut_loose": cut,
    }


if __name__ == "__main__":
    for key, value in measure(sys.executable).items():
        print(f"{key:>26}: {value}")
