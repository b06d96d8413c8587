"""Oversized and slow request heads against a real `logcast serve`, for `bench/faults.py`
(`heads`): a 64 MB header, 10,000 headers, slowloris, with `/healthz` timed meanwhile.
Run it alone to print its figures; what each means: bench/README.md."""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.lib, tests.util

from bench.lib.healthz import HealthzProbe
from bench.lib.servers import serve

SLOWLORIS = 50
BIG_HEADER = 64 << 20
MANY_HEADERS = 10_000


def _status(answer: bytes) -> int | str:
    if not answer.startswith(b"HTTP/1.1 "):
        return f"no answer ({answer[:40]!r})"
    return int(answer.split(b" ", 2)[1])


def _refused(port: int, chunks: Iterator[bytes]) -> tuple[int | str, float]:
    """Send `chunks` from a thread, read the answer here: (status, seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        started = time.perf_counter()

        def send() -> None:
            try:
                for chunk in chunks:
                    sock.sendall(chunk)
            except OSError:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError as exc:
            return f"error {exc.__class__.__name__}", time.perf_counter() - started
        seconds = time.perf_counter() - started
    sender.join(30)
    return _status(answer), seconds


def _big_header() -> Iterator[bytes]:
    yield b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    block = b"a" * (1 << 20)
    for _ in range(BIG_HEADER // len(block)):
        yield block
    yield b"\r\n\r\n"


def _many_headers() -> Iterator[bytes]:
    yield b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"h: v\r\n" * MANY_HEADERS + b"\r\n"


def _slowloris(port: int, results: list[tuple[float, int | str]], limit: float = 60.0) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.settimeout(1.0)
        answer = b""
        while time.monotonic() - started < limit:
            try:
                sock.sendall(b"a")
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        results.append((time.monotonic() - started, _status(answer)))


def measure(python: str) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory(prefix="logcast-heads-") as folder:
        tmp = Path(folder)
        config = tmp / "logcast.toml"
        sleeper = json.dumps([python, "-c", "import time; time.sleep(600)"])
        config.write_text(f'[storage]\ndir = "{tmp / "data"}"\n\n[process.app]\ncommand = {sleeper}\n')
        server = serve(tmp, config, python=python)
        try:
            healthz = HealthzProbe(server.url)
            healthz.start()
            slow: list[tuple[float, int | str]] = []
            slow_threads = [
                threading.Thread(target=_slowloris, args=(server.port, slow), daemon=True)
                for _ in range(SLOWLORIS)
            ]
            for thread in slow_threads:
                thread.start()
            big_status, big_seconds = _refused(server.port, _big_header())
            many_status, many_seconds = _refused(server.port, _many_headers())
            for thread in slow_threads:
                thread.join(90)
            healthz.stop.set()
            healthz.join(10)
        finally:
            server.stop()
    closed = sorted(seconds for seconds, _ in slow)
    statuses = sorted({str(status) for _, status in slow})
    return {
        "big_header_status": big_status,
        "big_header_answer_s": round(big_seconds, 3),
        "many_headers_status": many_status,
        "many_headers_answer_s": round(many_seconds, 3),
        "slowloris_connections": len(slow),
        "slowloris_closed_min_s": round(closed[0], 2) if closed else -1.0,
        "slowloris_closed_max_s": round(closed[-1], 2) if closed else -1.0,
        "slowloris_status": ",".join(statuses),
        "healthz_max_ms": round(healthz.worst * 1000, 1),
        "healthz_answers": healthz.answers,
        "healthz_failures": healthz.failures,
    }


if __name__ == "__main__":
    for key, value in measure(sys.executable).items():
        print(f"{key:26} {value}")
