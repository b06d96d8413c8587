"""Item 5 of the fault issue: every byte a child writes before it exits is captured,
on every pipe, before its exit is recorded, whatever the other pipe is doing.

Many short floods: each run writes a burst to stdout as fast as it can, then one line
to stderr, and exits at once. Every line of every run must be in the history, the
stderr line before the run's exit status, and nothing announced as lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.e2e.conftest import Server, py_command

RUNS = 12
BURST = 40_000

CHILD = f"""
import os, sys
run = os.environ.get("LOGCAST_RUN", "?")
chunk = "".join(f"out {{i:06d}} " + "y" * 60 + "\\n" for i in range(1000))
for _ in range({BURST} // 1000):
    sys.stdout.write(chunk)
sys.stdout.flush()
sys.stderr.write("last words on stderr\\n")
sys.stderr.flush()
os._exit(3)
"""


def _history(client: httpx.Client, name: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    cursor: int | None = 0
    while cursor is not None:
        page = client.get(f"/api/processes/{name}/logs", params={"after": cursor, "limit": 10_000}).json()
        out += page["logs"]
        cursor = page["next"]
    return out


def test_the_last_line_on_the_other_pipe_is_never_lost(make_server: Callable[..., Server]) -> None:
    server = make_server(
        f"""
        [storage]
        memory_lines = 5000
        [process.burst]
        command = {py_command(CHILD)}
        restart = "always"
        backoff_initial = 0.05
        backoff_max = 0.05
        """
    )
    with server.client() as client:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            info = client.get("/api/processes/burst").json()
            if info["run"] > RUNS:
                break
            time.sleep(0.2)
        client.post("/api/processes/burst/stop")
        stats = client.get("/api/logs/stats").json()["processes"]["burst"]
        records = _history(client, "burst")
    assert stats["store_lost"] == 0
    seqs = [int(r["seq"]) for r in records]  # type: ignore[call-overload]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a hole in the history"
    by_run: dict[int, list[dict[str, object]]] = {}
    for r in records:
        by_run.setdefault(int(r["run"]), []).append(r)  # type: ignore[call-overload]
    finished = [run for run, rs in by_run.items() if any("exited" in str(r["message"]) for r in rs)]
    assert len(finished) >= RUNS
    for run in finished:
        rs = by_run[run]
        out = [r for r in rs if r["stream"] == "stdout"]
        err = [i for i, r in enumerate(rs) if r["stream"] == "stderr"]
        exit_at = next(
            i for i, r in enumerate(rs) if r["stream"] == "system" and "exited" in str(r["message"])
        )
        assert len(out) == BURST, f"run {run}: {len(out)} of {BURST} stdout lines"
        assert len(err) == 1, f"run {run}: the stderr line is missing"
        assert err[0] < exit_at, f"run {run}: the stderr line came after the exit status"
