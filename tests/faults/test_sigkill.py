"""Item 2 of the fault issue: SIGKILL of logcast during a flood, then a restart.

A client follows the flood and keeps every (seq, line) it received. Another SQLite
connection holds the database's write lock for a while, so that the client holds
lines the store does not have yet (as when the disk is slow); then logcast is killed
with SIGKILL (no flush, no goodbye) and started again on the same folder.
Afterwards no seq the client held may name another line, and every line it held
that the history lacks must lie inside an announced `lost` gap; a client resuming
with `Last-Event-ID` goes on after its last seq without a repeat.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import signal
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, cast

import httpx

from logcast.client import Client
from logcast.types import EventType
from tests.e2e.conftest import Server, py_command
from tests.e2e.sse import Message, messages
from tests.e2e.test_column_stream import expand, line_seqs
from tests.e2e.test_tail import Tail
from tests.util import wait_for

FLOOD = """
import os, sys, time
pid = os.getpid()
i = 0
while True:
    sys.stdout.write("".join(f"{pid} {i + k:09d} " + "f" * 70 + "\\n" for k in range(100)))
    sys.stdout.flush()
    i += 100
    time.sleep(0.002)
"""


def _follow(url: str, held: dict[int, str], stop: threading.Event) -> None:
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(30.0, read=None)) as client,
            client.stream("GET", url + "/api/processes/flood/logs/stream", params={"after": 0}) as stream,
        ):
            for message in messages(stream):
                log = message.data.get("log")
                if log is not None:
                    held[int(log["seq"])] = str(log["message"])
                if stop.is_set():
                    return
    except httpx.HTTPError:
        return  # the server died under us: that is the point


def _read_all(client: httpx.Client, params: dict[str, Any], headers: dict[str, str]) -> list[Message]:
    """A stream's events until it has been quiet for a moment."""
    out: list[Message] = []
    with client.stream("GET", "/api/processes/flood/logs/stream", params=params, headers=headers) as stream:
        for message in messages(stream):
            out.append(message)
            if message.type == "historical_complete":
                break
    return out


def _read_columns(client: httpx.Client, params: dict[str, Any], headers: dict[str, str]) -> list[Any]:
    """The elements of a `batch=columns` stream up to `historical_complete`."""
    elements: list[Any] = []
    with client.stream(
        "GET", "/api/processes/flood/logs/stream", params={**params, "batch": "columns"}, headers=headers
    ) as stream:
        for message in messages(stream):
            elements.extend(cast(list[Any], message.data))
            if elements[-1]["type"] == "historical_complete":
                break
    return elements


def test_sigkill_mid_flood_never_renames_a_line(make_server: Callable[..., Server]) -> None:
    server = make_server(
        f"""
        [process.flood]
        command = {py_command(FLOOD)}
        restart = "never"
        """
    )
    held: dict[int, str] = {}
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(server.url, held, stop))
    follower.start()
    wait_for(lambda: len(held) >= 20_000, 60, "the client to hold 20,000 lines")
    locker = sqlite3.connect(server.dir / ".logcast" / "history.sqlite3", timeout=30, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # the writer's transactions fail from now on
    stored = len(held)
    wait_for(lambda: len(held) >= stored + 30_000, 60, "30,000 more lines")
    os.kill(server.proc.pid, signal.SIGKILL)  # logcast only; its children die with it (PDEATHSIG)
    server.proc.wait(10)
    locker.execute("ROLLBACK")
    locker.close()
    stop.set()
    follower.join(30)
    server.restart()
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(30.0, read=60.0)) as client:
        client.post("/api/processes/flood/stop")  # the restarted flood would only add lines
        # its last lines are numbered, but shown only once reserved or stored: the reads
        # below must all see the same history
        wait_for(
            lambda: client.get("/api/logs/stats").json()["processes"]["flood"]["pending"] == 0,
            60,
            "the store to hold every line",
        )
        everything = _read_all(client, {"after": 0}, {})
        resumed = _read_all(client, {}, {"Last-Event-ID": str(max(held))})
        columns = _read_columns(client, {"after": 0}, {})
        columns_resumed = _read_columns(client, {}, {"Last-Event-ID": str(max(held))})
        stats = client.get("/api/logs/stats").json()["processes"]["flood"]
    now = {m.seq: str(m.data["log"]["message"]) for m in everything if m.seq is not None}
    gaps = [(int(m.data["from"]), int(m.data["to"])) for m in everything if m.type == "gap"]
    assert all(m.data.get("reason") == "lost" for m in everything if m.type == "gap"), gaps[:5]
    assert len(gaps) <= 2, f"{len(gaps)} gaps, e.g. {gaps[:5]}"
    renamed = [s for s, text in held.items() if s in now and now[s] != text]
    assert not renamed, f"{len(renamed)} seqs name other lines, e.g. {renamed[:3]}"
    missing = sorted(s for s in held if s not in now)
    starts = [a for a, _ in gaps]
    outside = [s for s in missing if not (i := bisect.bisect_right(starts, s)) or gaps[i - 1][1] < s]
    assert not outside, f"{len(outside)} lost lines without a gap, e.g. {outside[:3]}"
    lost_in_gaps = sum(b - a + 1 for a, b in gaps)
    assert stats["store_lost"] == lost_in_gaps
    # resuming after the last seq held: nothing at or below it comes again
    top = max(held)
    seqs = [m.seq for m in resumed if m.seq is not None and m.type != "historical_complete"]
    assert all(s > top for s in seqs)
    # the column stream tells the same lines and gaps, and resumes the same way
    as_events = expand(columns)
    assert {e["log"]["seq"]: str(e["log"]["message"]) for e in as_events if e.get("log")} == now
    assert [(int(e["from"]), int(e["to"])) for e in as_events if e["type"] == "gap"] == gaps
    assert all(s > top for s in line_seqs(columns_resumed))
    assert len(missing) >= 10_000  # the client held lines the store never got
    restart_notes = [text for text in now.values() if "were lost" in text]
    assert restart_notes, "the restart did not say what was lost"
    # the Python client and `logcast tail` both say so too
    first_gap = gaps[0]
    with contextlib.closing(
        Client(server.url).stream("flood", after=first_gap[0] - 2, reconnect=False)
    ) as events:
        gap = next(e for e in events if e.type is EventType.GAP)
    assert (gap.gap_from, gap.gap_to, gap.reason) == (*first_gap, "lost")
    # `logcast tail` waits for a process to run before it streams
    httpx.post(server.url + "/api/processes/flood/start", timeout=10).raise_for_status()
    tail = Tail(["flood", "--url", server.url, "--lines", "10000000"], server.dir)
    try:
        tail.wait_out(lambda out: any("lost" in line and "missed" in line for line in out), timeout=60)
    finally:
        tail.kill()
