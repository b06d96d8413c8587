"""Fault benchmark: what each promise of logcast looks like under attack (a catastrophic regex,
SIGKILL, a full disk, a last line on the other pipe, stalled readers, hostile request heads),
beside its baseline from the same run. What each prints, and figures: bench/README.md."""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench, tests

from bench import _faults_security, _faults_streams
from bench.lib.healthz import HealthzProbe
from bench.lib.servers import Server, serve
from tests.e2e.sse import messages  # the fault tests' SSE parser and children
from tests.faults.test_regex_stall import FLOOD as STEADY  # 20,000 lines/s, timestamped
from tests.faults.test_sigkill import FLOOD
from tests.util import wait_for

Figures = dict[str, float | int | str]

BURST = """
import os, sys
chunk = "".join(f"out {i:06d} " + "y" * 60 + "\\n" for i in range(1000))
for _ in range(200):
    sys.stdout.write(chunk)
sys.stdout.flush()
sys.stderr.write("last words on stderr\\n")
sys.stderr.flush()
os._exit(3)
"""


def _config(tmp: Path, name: str, source: str, extra: str = "") -> Path:
    config = tmp / "logcast.toml"
    command = json.dumps([sys.executable, "-u", "-c", source])
    config.write_text(
        f"[storage]\ndir = {json.dumps(str(tmp / 'data'))}\n{extra}\n[process.{name}]\ncommand = {command}\n"
    )
    return config


def _client(server: Server, timeout: float = 60.0) -> Any:
    import httpx

    return httpx.Client(base_url=server.url, timeout=timeout, trust_env=False)


def _history(client: Any, name: str, after: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: int | None = after
    while cursor is not None:
        page = client.get(f"/api/processes/{name}/logs", params={"after": cursor, "limit": 10_000}).json()
        out += page["logs"]
        cursor = page["next"]
    return out


def _window(server: Server, seconds: float, work: Callable[[], None] | None) -> tuple[float, float]:
    """/healthz worst latency and the child's longest stall over `seconds` (with `work` running)."""
    with _client(server) as client:
        start = client.get("/api/processes/steady").json()["last_seq"]
        healthz = HealthzProbe(server.url, every=0.05)
        healthz.start()
        begun = time.monotonic()
        if work is not None:
            work()
        time.sleep(max(0.0, seconds - (time.monotonic() - begun)))
        healthz.stop.set()
        healthz.join()
        end = client.get("/api/processes/steady").json()["last_seq"]
        stamps = [
            float(r["message"].split()[0])
            for r in _history(client, "steady", start)
            if r["stream"] == "stdout" and r["seq"] <= end
        ]
    stall = max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)
    return healthz.worst, stall


def measure_regex() -> Figures:
    with tempfile.TemporaryDirectory(prefix="logcast-faults-") as folder:
        tmp = Path(folder)
        server = serve(tmp, _config(tmp, "steady", STEADY, "memory_lines = 20000"))
        try:
            with _client(server) as client:
                wait_for(lambda: client.get("/api/processes/steady").json()["lines"] >= 60_000)
            quiet_healthz, quiet_stall = _window(server, 3.0, None)
            took: list[float] = []

            def searches() -> None:
                def one(params: dict[str, Any]) -> None:
                    with _client(server) as c:
                        started = time.perf_counter()
                        c.get("/api/processes/steady/logs", params=params).raise_for_status()
                        took.append(time.perf_counter() - started)

                asks = [{"regex": "(.+)+z"}, {"regex": "(.+)+z", "tail": 5000}] * 5
                threads = [threading.Thread(target=one, args=(p,)) for p in asks]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()

            busy_healthz, busy_stall = _window(server, 3.0, searches)
        finally:
            server.stop()
    started = time.perf_counter()
    re.search("(.+)+z", "a" * 26)  # what the same pattern costs Python's re on one short line
    python_re = time.perf_counter() - started
    return {
        "healthz_worst_ms_quiet": round(quiet_healthz * 1000, 1),
        "healthz_worst_ms_searching": round(busy_healthz * 1000, 1),
        "child_stall_ms_quiet": round(quiet_stall * 1000, 1),
        "child_stall_ms_searching": round(busy_stall * 1000, 1),
        "search_s_slowest": round(max(took), 3),
        "python_re_s_one_26_char_line": round(python_re, 2),
    }


def measure_sigkill() -> Figures:
    import httpx

    with tempfile.TemporaryDirectory(prefix="logcast-faults-") as folder:
        tmp = Path(folder)
        config = _config(tmp, "flood", FLOOD)
        server = serve(tmp, config)
        held: dict[int, str] = {}
        stop = threading.Event()

        def follow() -> None:
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(30.0, read=None), trust_env=False) as c,
                    c.stream(
                        "GET", server.url + "/api/processes/flood/logs/stream", params={"after": 0}
                    ) as s,
                ):
                    for m in messages(s):
                        log = m.data.get("log")
                        if log is not None:
                            held[int(log["seq"])] = str(log["message"])
                        if stop.is_set():
                            return
            except httpx.HTTPError:
                return

        follower = threading.Thread(target=follow)
        follower.start()
        try:
            wait_for(lambda: len(held) >= 20_000)
            locker = sqlite3.connect(tmp / "data" / "history.sqlite3", timeout=30, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")
            mark = len(held)
            wait_for(lambda: len(held) >= mark + 30_000)
            os.kill(server.pid, signal.SIGKILL)
            server.proc.wait(10)
            locker.execute("ROLLBACK")
            locker.close()
            stop.set()
            follower.join(30)
            server = serve(tmp, config)
            with _client(server) as client:
                client.post("/api/processes/flood/stop")
                everything: list[Any] = []
                with client.stream("GET", "/api/processes/flood/logs/stream", params={"after": 0}) as s:
                    for m in messages(s):
                        everything.append(m)
                        if m.type == "historical_complete":
                            break
                stats = client.get("/api/logs/stats").json()["processes"]["flood"]
        finally:
            stop.set()
            server.stop()
    now = {m.seq: str(m.data["log"]["message"]) for m in everything if m.seq is not None}
    gaps = sorted((int(m.data["from"]), int(m.data["to"])) for m in everything if m.type == "gap")
    starts = [a for a, _ in gaps]
    missing = sorted(s for s in held if s not in now)
    outside = [s for s in missing if not (i := bisect.bisect_right(starts, s)) or gaps[i - 1][1] < s]
    return {
        "lines_held_by_client": len(held),
        "held_lines_missing_after_restart": len(missing),
        "missing_outside_a_lost_gap": len(outside),
        "seqs_naming_another_line": sum(1 for s, t in held.items() if s in now and now[s] != t),
        "store_lost": int(stats["store_lost"]),
        "seqs_in_lost_gaps": sum(b - a + 1 for a, b in gaps),
    }


def measure_disk_full() -> Figures:
    if os.geteuid() != 0:
        return {"skipped": "needs root to mount a tmpfs"}
    with tempfile.TemporaryDirectory(prefix="logcast-faults-") as folder:
        tmp = Path(folder)
        disk = tmp / "data"
        disk.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
        try:
            server = serve(tmp, _config(tmp, "steady", STEADY, "memory_lines = 2000"))
            try:
                with _client(server) as client:

                    def stats() -> dict[str, Any]:
                        body = client.get("/api/logs/stats").json()
                        return {**body["processes"]["steady"], "errors": body["store"]["errors"]}

                    wait_for(lambda: stats()["errors"] > 0)
                    claimed_beyond = 0
                    deadline = time.monotonic() + 3
                    while time.monotonic() < deadline:
                        s = stats()
                        held = max((r["seq"] for r in _history(client, "steady")), default=0)
                        claimed_beyond = max(claimed_beyond, int(s["persisted_seq"]) - held)
                    subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
                    client.post("/api/processes/steady/stop")
                    wait_for(lambda: stats()["pending"] == 0)
                    final = stats()
                    seqs = [r["seq"] for r in _history(client, "steady")]
            finally:
                server.stop()
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
    return {
        "holes_in_history": int(final["last_seq"]) - len(seqs),
        "store_lost": int(final["store_lost"]),
        "persisted_seq_claimed_beyond_store": max(0, claimed_beyond),
    }


def measure_last_line(runs: int = 10) -> Figures:
    with tempfile.TemporaryDirectory(prefix="logcast-faults-") as folder:
        tmp = Path(folder)
        extra = "memory_lines = 5000\n"
        config = _config(tmp, "burst", BURST, extra)
        config.write_text(
            config.read_text() + 'restart = "always"\nbackoff_initial = 0.05\nbackoff_max = 0.05\n'
        )
        server = serve(tmp, config)
        try:
            with _client(server) as client:
                wait_for(lambda: client.get("/api/processes/burst").json()["run"] > runs, timeout=300)
                client.post("/api/processes/burst/stop")
                records = _history(client, "burst")
        finally:
            server.stop()
    finished = {r["run"] for r in records if r["stream"] == "system" and "exited" in r["message"]}
    out = sum(1 for r in records if r["run"] in finished and r["stream"] == "stdout")
    err = sum(1 for r in records if r["run"] in finished and r["stream"] == "stderr")
    return {
        "runs": len(finished),
        "lines_written": len(finished) * 200_001,
        "stdout_lines_missing": len(finished) * 200_000 - out,
        "stderr_last_lines_missing": len(finished) - err,
    }


MEASURES: dict[str, Callable[[], Figures]] = {
    "regex": measure_regex,
    "sigkill": measure_sigkill,
    "disk_full": measure_disk_full,
    "last_line": measure_last_line,
    "streams": lambda: _faults_streams.measure(sys.executable),
    "heads": lambda: _faults_security.measure(sys.executable),
}


def _median(values: list[float | int | str]) -> float | int | str:
    if all(isinstance(v, int | float) for v in values):
        m = statistics.median(values)  # type: ignore[type-var]
        return round(m, 3) if isinstance(m, float) else m
    return values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(MEASURES), help="comma-separated: " + ", ".join(MEASURES))
    args = parser.parse_args()
    for name in args.only.split(","):
        results = [MEASURES[name]() for _ in range(args.runs)]
        print(f"\n{name} (median of {args.runs})")
        for key in results[0]:
            values = [r[key] for r in results]
            runs = ", ".join(str(v) for v in values)
            print(f"  {key:40} {_median(values)!s:>10}   runs: {runs}")


if __name__ == "__main__":
    main()
