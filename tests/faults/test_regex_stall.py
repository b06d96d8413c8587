"""Item 1 of the fault issue: no request can stall capture.

A child writes 20,000 timestamped lines a second while clients ask for the worst
searches we know (a catastrophic backtracking pattern, over the ring and the store,
as a page and as the viewer's `tail=5000` search, several at once). `/healthz` must
answer within a second throughout, and the child's own clock must show no long
stall between two of its lines (a blocked pipe would show as one).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.conftest import Server, py_command

# 20 lines every millisecond, each carrying the child's monotonic clock
FLOOD = """
import sys, time
out = sys.stdout
i = 0
start = time.monotonic()
while True:
    now = time.monotonic()
    due = int((now - start) * 20000)
    lines = []
    while i < due:
        lines.append(f"{now:.6f} line {i:09d} " + "x" * 48 + "\\n")
        i += 1
    if lines:
        out.write("".join(lines))
        out.flush()
    time.sleep(0.001)
"""

CATASTROPHIC = "(.+)+z"


def _healthz_watch(url: str, stop: threading.Event, worst: list[float]) -> None:
    with httpx.Client(timeout=30.0) as client:
        while not stop.is_set():
            started = time.perf_counter()
            assert client.get(url + "/healthz").status_code == 200
            worst.append(time.perf_counter() - started)
            stop.wait(0.05)


def _wait_lines(client: httpx.Client, name: str, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"/api/processes/{name}").json()["lines"] >= n:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not reach {n} lines")


def _longest_stall(client: httpx.Client, name: str, after: int) -> tuple[float, int]:
    """The longest gap between two consecutive lines on the child's own clock, and the
    number of lines looked at, from `after` on."""
    stamps: list[float] = []
    cursor: int | None = after
    while cursor is not None:
        page = client.get(f"/api/processes/{name}/logs", params={"after": cursor, "limit": 10_000}).json()
        stamps += [float(log["message"].split()[0]) for log in page["logs"] if log["stream"] == "stdout"]
        cursor = page["next"]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return max(gaps, default=0.0), len(stamps)


def test_a_catastrophic_regex_stalls_neither_the_server_nor_the_child(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(
        f"""
        [storage]
        memory_lines = 20000
        [process.flood]
        command = {py_command(FLOOD)}
        """
    )
    with server.client() as client:
        _wait_lines(client, "flood", 60_000)  # beyond the ring: searches hit the store too
        start_seq = client.get("/api/processes/flood").json()["last_seq"]
        stop = threading.Event()
        worst: list[float] = []
        watcher = threading.Thread(target=_healthz_watch, args=(server.url, stop, worst))
        watcher.start()
        requests = [
            {"regex": CATASTROPHIC},
            {"regex": CATASTROPHIC, "tail": 5000},
            {"regex": CATASTROPHIC, "limit": 10_000, "after": 0},
            {"regex": "(x+x+)+y", "tail": 5000},
            {"q": "no such text anywhere", "tail": 5000},
        ] * 2
        try:

            def search(params: dict[str, object]) -> httpx.Response:
                with httpx.Client(base_url=server.url, timeout=60.0) as c:
                    return c.get("/api/processes/flood/logs", params=params)  # type: ignore[arg-type]

            with ThreadPoolExecutor(len(requests)) as pool:
                answers = list(pool.map(search, requests))
            time.sleep(1.0)  # the flood goes on a little after the searches
        finally:
            stop.set()
            watcher.join()
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert answer.json()["logs"] == []
        assert worst and max(worst) < 1.0, f"/healthz took {max(worst):.3f}s"
        stall, looked_at = _longest_stall(client, "flood", start_seq)
        assert looked_at > 20_000
        assert stall < 1.0, f"the child stalled {stall:.3f}s between two lines"


def test_a_refused_pattern_is_a_422_that_says_why(make_server: Callable[..., Server]) -> None:
    server = make_server(
        f"""
        [process.quiet]
        command = {py_command("print('hello'); import time; time.sleep(60)")}
        """
    )
    with server.client() as client:
        for pattern, reason in ((r"(a)\1", "backreferences"), ("(?=a)", "lookaround"), ("[", "missing")):
            answer = client.get("/api/processes/quiet/logs", params={"regex": pattern})
            assert answer.status_code == 422
            assert reason in str(answer.json()["detail"])
    assert "Traceback" not in server.output()
