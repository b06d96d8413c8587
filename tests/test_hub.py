"""The hub: numbering, the memory tail, cursors, the seam, gaps, the store writer."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcast.errors import StoreError
from logcast.hub import Gap, Hub, Subscription
from logcast.hub import hub as hub_module
from logcast.hub import writer as writer_module
from logcast.hub.journal import Journal
from logcast.hub.ring import Ring
from logcast.hub.subscription import Phase
from logcast.hub.writer import WRITER_STALL
from logcast.query import Query, parse_levels
from logcast.types import (
    Entry,
    EventType,
    GapReason,
    Level,
    Lines,
    LogRecord,
    ProcessState,
    Stream,
    line_bytes,
)
from tests.fakes import FakeClock, MemoryStore, MessageEncoder


def lines(*texts: str, level: Level = Level.INFO) -> Lines:
    return Lines(list(texts), [level] * len(texts), [False] * len(texts))


async def make_hub(store: MemoryStore | None = None, **kw: int) -> Hub:
    hub = Hub(store or MemoryStore(), **kw)
    await hub.open(["app"])
    return hub


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (on the loop) until `condition()` holds; fail after `timeout`."""
    assert await asyncio.to_thread(_until, condition, timeout), "timed out"


async def drain(sub: Subscription, until_seq: int, timeout: float = 10.0) -> list[tuple[EventType, object]]:
    """Read entries until a record or gap reaching `until_seq` arrives."""
    out: list[tuple[EventType, object]] = []

    async def go() -> None:
        while True:
            for kind, payload in await sub.next():
                out.append((kind, payload))
                end = (
                    payload.seq
                    if isinstance(payload, LogRecord)
                    else payload.end
                    if isinstance(payload, Gap)
                    else -1
                )
                if end >= until_seq:
                    return

    await asyncio.wait_for(go(), timeout)
    return out


def seqs(entries: list[tuple[EventType, object]], *kinds: EventType) -> list[int]:
    return [p.seq for k, p in entries if isinstance(p, LogRecord) and (not kinds or k in kinds)]


async def test_seq_grows_per_record_and_counts() -> None:
    hub = await make_hub()
    try:
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("a", "b"))
        hub.lines("app", 1, Stream.STDERR, 2.0, lines("boom", level=Level.ERROR))
        hub.status("app", 1, ProcessState.RUNNING, "started")
        stats = hub.stats("app")
        assert stats["last_seq"] == 4
        assert stats["lines"] == 3  # status records are not lines
        assert (stats["errors"] == 1 and stats["last_error"] == "started") or stats["last_error"] == "boom"
        assert stats["bytes"] == len("a\nb\nboom\n")
    finally:
        await hub.close()


async def test_history_then_realtime_with_an_exact_seam() -> None:
    hub = await make_hub()
    try:
        for i in range(50):
            hub.lines("app", 1, Stream.STDOUT, float(i), lines(f"h{i}"))
        sub = await hub.subscribe("app")
        stop = threading.Event()

        def writer() -> None:
            for i in range(50, 3000):
                hub.lines("app", 1, Stream.STDOUT, float(i), lines(f"r{i}"))
            stop.set()

        thread = threading.Thread(target=writer)
        thread.start()
        entries = await drain(sub, 3000)
        thread.join()
        kinds = [k for k, _ in entries]
        assert kinds.count(EventType.HISTORICAL_COMPLETE) == 1
        complete_at = kinds.index(EventType.HISTORICAL_COMPLETE)
        assert all(k is EventType.HISTORICAL for k in kinds[:complete_at])
        assert all(k is EventType.REALTIME for k in kinds[complete_at + 1 :])
        assert seqs(entries) == list(range(1, 3001))  # nothing missing, nothing twice
        assert seqs(entries, EventType.HISTORICAL) == list(range(1, 51))
        sub.close()
    finally:
        await hub.close()


async def test_resume_after_seq_and_last_n_lines() -> None:
    hub = await make_hub()
    try:
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(str(i) for i in range(1, 101))))
        sub = await hub.subscribe("app", after=90)
        entries = await sub.next(wait=False)
        assert seqs(entries) == list(range(91, 101))
        assert entries[-1] == (EventType.HISTORICAL_COMPLETE, 100)
        sub.close()
        sub = await hub.subscribe("app", lines=5)
        assert seqs(await sub.next(wait=False)) == [96, 97, 98, 99, 100]
        sub.close()
        sub = await hub.subscribe("app", lines=0)
        assert await sub.next(wait=False) == [(EventType.HISTORICAL_COMPLETE, 100)]
        sub.close()
    finally:
        await hub.close()


async def test_filtered_tail_reaches_into_the_store() -> None:
    store = MemoryStore()
    hub = await make_hub(store, memory_lines=100)
    try:
        for i in range(1, 1001):
            level = Level.ERROR if i % 100 == 0 else Level.INFO
            hub.lines("app", 1, Stream.STDOUT, float(i), lines(f"line {i}", level=level))
            if i % 50 == 0:
                assert await hub.flush()
        assert hub.stats("app")["store_lost"] == 0
        query = Query(levels=parse_levels("error"), keep_status=True)
        sub = await hub.subscribe("app", lines=3, query=query)
        entries = await sub.next(wait=False)
        assert seqs(entries) == [800, 900, 1000]
        assert entries[-1] == (EventType.HISTORICAL_COMPLETE, 1000)
        sub.close()
    finally:
        await hub.close()


async def test_a_filter_that_keeps_nothing_of_many_windows_does_not_wait_between_them() -> None:
    """History after `after` (and live lines after a burst) is read a window at a time; a
    window the filter keeps nothing of moves the cursor and is read past at once. Before,
    the reader then waited for the next line or ping (15 s) each time: 256 lines a ping."""
    store = MemoryStore()
    hub = await make_hub(store, memory_lines=500)
    try:
        for start in range(0, 5000, 500):
            texts = [f"line {i}" for i in range(start, start + 500)]
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*texts))
            assert await hub.flush()
        hub.lines("app", 1, Stream.STDERR, 2.0, lines("boom", level=Level.ERROR))
        query = Query(levels=parse_levels("error"))
        sub = await hub.subscribe("app", after=0, query=query)
        entries = await asyncio.wait_for(sub.next(), 5)  # waits: nothing would wake it
        assert [(kind, getattr(p, "message", p)) for kind, p in entries] == [
            (EventType.HISTORICAL, "boom"),
            (EventType.HISTORICAL_COMPLETE, 5001),
        ]
        # without waiting: [] with the cursor moved, until the match
        sub = await hub.subscribe("app", after=0, query=query)
        moved = 0
        while not (entries := await sub.next(wait=False)):
            moved += 1
            assert sub.cursor > 0
        assert moved > 1 and seqs(entries) == [5001]
        # live: a burst that the filter keeps only the end of
        sub = await hub.subscribe("app", lines=0, query=query)
        assert await sub.next(wait=False) == [(EventType.HISTORICAL_COMPLETE, 5001)]
        for start in range(0, 3000, 500):
            hub.lines("app", 1, Stream.STDOUT, 3.0, lines(*(f"more {i}" for i in range(start, start + 500))))
            assert await hub.flush()
        hub.lines("app", 1, Stream.STDERR, 4.0, lines("again", level=Level.ERROR))
        entries = await asyncio.wait_for(sub.next(), 5)
        assert seqs(entries) == [8002]
        sub.close()
    finally:
        await hub.close()


async def test_slow_reader_catches_up_from_the_store_and_loses_nothing() -> None:
    store = MemoryStore()
    hub = await make_hub(store, memory_lines=100)
    try:
        sub = await hub.subscribe("app", lines=0)
        for start in range(0, 5000, 50):
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"x{i}" for i in range(start, start + 50))))
            assert await hub.flush()  # a writer that keeps up, a reader that does not read
        assert await hub.flush()
        stats = hub.stats("app")
        assert stats["memory_lines"] <= 200  # bounded, far below what was written
        entries = await drain(sub, 5000)
        assert seqs(entries) == list(range(1, 5001))
        assert not [p for _, p in entries if isinstance(p, Gap)]
        sub.close()
    finally:
        await hub.close()


async def test_a_hole_between_two_stored_lines_is_lost_after_a_restart_too() -> None:
    """What was lost before this run of logcast is known in memory only: the hole in the
    middle of the history was said to have left retention (a review), which takes only the
    oldest lines; between two records of one read it is `lost`."""
    store = MemoryStore()
    store.write(
        [LogRecord(seq, 1.0, Level.INFO, f"l{seq}", Stream.STDOUT, "app", 1) for seq in (1, 2, 3, 7, 8)]
    )
    hub = await make_hub(store)
    try:
        sub = await hub.subscribe("app", after=0)
        entries = await drain(sub, 5)
        assert [p for _, p in entries if isinstance(p, Gap)] == [Gap("app", 4, 6, GapReason.LOST)]
        sub.close()
    finally:
        await hub.close()


async def test_gap_for_lines_that_left_retention() -> None:
    store = MemoryStore(retain_lines=100)
    hub = await make_hub(store, memory_lines=50)
    try:
        for start in range(0, 1000, 10):
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"y{i}" for i in range(start, start + 10))))
            await hub.flush()
        sub = await hub.subscribe("app", after=10)
        entries = await drain(sub, 1000)
        gaps = [p for _, p in entries if isinstance(p, Gap)]
        assert gaps and gaps[0].start == 11 and gaps[0].reason == "retention"
        got = seqs(entries)
        assert got == list(range(gaps[-1].end + 1, 1001))
        assert hub.stats("app")["dropped"] == sum(g.count for g in gaps)
        sub.close()
    finally:
        await hub.close()


async def test_clear_keeps_numbering_and_tells_readers_behind() -> None:
    hub = await make_hub()
    try:
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("a", "b", "c"))
        behind = await hub.subscribe("app", after=0)
        assert await hub.clear("app") == 3
        hub.lines("app", 1, Stream.STDOUT, 2.0, lines("d"))
        entries = await drain(behind, 4)
        gap = next(p for _, p in entries if isinstance(p, Gap))
        assert (gap.start, gap.end, gap.reason) == (1, 3, "cleared")
        assert seqs(entries) == [4]
        fresh = await hub.subscribe("app")
        assert seqs(await fresh.next(wait=False)) == [4]
        assert await hub.page("app") == [r for r in await hub.page("app") if r.seq == 4]
        behind.close()
        fresh.close()
    finally:
        await hub.close()


async def test_store_failure_keeps_capturing_and_recovers() -> None:
    store = MemoryStore()
    hub = await make_hub(store)
    try:
        store.fail = True
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("kept", "in", "memory"))
        assert not await hub.flush(timeout=0.5)
        await wait_until(lambda: store.stats.errors >= 1)  # the writer tried, on its own thread
        page = await hub.page("app")
        assert [r.message for r in page] == ["kept", "in", "memory"]  # served from memory meanwhile
        store.fail = False
        assert await hub.flush(timeout=10)
        assert [r.message for r in await store.read("app")] == ["kept", "in", "memory"]
    finally:
        await hub.close()


async def test_numbering_continues_after_reopen() -> None:
    store = MemoryStore()
    hub = await make_hub(store)
    hub.lines("app", 3, Stream.STDOUT, 1.0, lines("one", "two"))
    await hub.close()
    again = await make_hub(store)
    try:
        assert again.last_run("app") == 3
        again.lines("app", 4, Stream.STDOUT, 2.0, lines("three"))
        assert again.stats("app")["last_seq"] == 3
        assert again.stats("app")["lines"] == 3
    finally:
        await again.close()


async def test_one_encoding_per_record_is_shared() -> None:
    hub = await make_hub()
    encode = MessageEncoder()
    try:
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("a", "b", "c"))
        plog = hub.get("app")
        records = hub.get("app").ring.since(0, 10)
        first = hub.encode_logs(plog, records, encode)
        second = hub.encode_logs(plog, records, encode)
        assert first == second == [b"a", b"b", b"c"]
        assert encode.calls == 3
    finally:
        await hub.close()


async def test_unknown_process_raises() -> None:
    from logcast.errors import UnknownProcess

    hub = await make_hub()
    try:
        with pytest.raises(UnknownProcess):
            await hub.subscribe("nope")
    finally:
        await hub.close()


async def test_a_hole_inside_a_store_page_is_announced() -> None:
    store = MemoryStore()
    hub = await make_hub(store, memory_lines=10)
    try:
        for start in range(0, 100, 10):
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"z{i}" for i in range(start, start + 10))))
            assert await hub.flush()
        for seq in range(40, 50):  # lines lost before they were persisted
            del store.records["app"][seq]
        sub = await hub.subscribe("app", after=0)
        entries = await drain(sub, 100)
        gaps = [(p.start, p.end) for _, p in entries if isinstance(p, Gap)]
        assert gaps == [(40, 49)]
        assert seqs(entries) == [s for s in range(1, 101) if not 40 <= s <= 49]
        sub.close()
    finally:
        await hub.close()


async def test_lines_evicted_before_persisting_are_counted_and_announced() -> None:
    store = MemoryStore()
    hub = await make_hub(store, memory_lines=10)
    try:
        store.fail = True  # the disk is full: the ring keeps what it can, then lets go
        for i in range(100):
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(f"w{i}"))
        store.fail = False
        assert await hub.flush(timeout=15)
        lost = hub.stats("app")["store_lost"]
        assert 0 < lost < 100
        sub = await hub.subscribe("app", after=0)
        entries = await drain(sub, 100)
        gaps = [p for _, p in entries if isinstance(p, Gap)]
        assert sum(g.count for g in gaps) == lost  # what the counter says is what readers are told
        assert seqs(entries) == list(range(lost + 1, 101))
        sub.close()
    finally:
        await hub.close()


class HeldStore(MemoryStore):
    """A store whose writes wait at a gate: the writer is caught in the middle of a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def write(self, records):  # type: ignore[no-untyped-def]
        self.entered.set()
        self.gate.wait(10)
        super().write(records)


async def test_a_reader_waits_for_the_batch_being_written_instead_of_announcing_a_gap() -> None:
    store = HeldStore()
    hub = await make_hub(store, memory_lines=10)
    try:
        sub = await hub.subscribe("app", after=0)
        await sub.next(wait=False)  # historical_complete: the reader is live at seq 0
        store.gate.clear()
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"w{i}" for i in range(30))))
        assert await asyncio.to_thread(store.entered.wait, 5)
        # the writer holds all 30; the ring may let them go, though none is committed yet
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"x{i}" for i in range(30))))
        assert hub.stats("app")["memory_lines"] < 60
        reading = asyncio.ensure_future(drain(sub, 60))
        await wait_until(lambda: hub.get("app").wake_on_commit)  # the reader asked to be woken
        assert not reading.done()  # waiting for the commit, not announcing a gap
        store.gate.set()
        entries = await reading
        assert not [p for _, p in entries if isinstance(p, Gap)]
        assert seqs(entries) == list(range(1, 61))
        assert hub.stats("app")["store_lost"] == 0
        sub.close()
    finally:
        store.gate.set()
        await hub.close()


def capture_thread(hub: Hub, *, chunks: int, size: int = 5) -> tuple[threading.Event, threading.Thread]:
    """A capture thread handing `chunks` chunks of `size` lines to the hub; the event is
    set once it has handed them all."""
    done = threading.Event()

    def capture() -> None:
        for i in range(chunks):
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"c{i}-{j}" for j in range(size))))
        done.set()

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    return done, thread


async def test_capture_is_held_while_the_writer_is_a_whole_ring_behind() -> None:
    """The framer thread (not the child: it has a spool) waits for the writer instead of
    the ring letting go of lines the store does not have yet."""
    store = HeldStore()
    hub = await make_hub(store, memory_lines=10)
    try:
        store.gate.clear()
        done, thread = capture_thread(hub, chunks=10)
        assert await asyncio.to_thread(store.entered.wait, 5)
        await wait_until(lambda: hub.writer.held == 1)
        assert not done.is_set()  # held: more than a ring's worth is not persisted yet
        held = hub.stats("app")
        assert held["memory_lines"] <= 10 + 5 and held["store_lost"] == 0  # a ring and a chunk at most
        assert held["last_seq"] < 50
        store.gate.set()
        assert await asyncio.to_thread(done.wait, 10)
        thread.join(5)
        assert await hub.flush(timeout=10)
        stats = hub.stats("app")
        assert stats["last_seq"] == 50 and stats["store_lost"] == 0
        assert [r.seq for r in await hub.page("app", after=0, limit=100)] == list(range(1, 51))
    finally:
        store.gate.set()
        await hub.close()


async def test_capture_is_not_held_while_the_store_fails() -> None:
    store = MemoryStore()
    hub = await make_hub(store, memory_lines=10)
    try:
        store.fail = True
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("first"))
        assert await hub.flush(timeout=0.5) is False  # the writer has failed once
        done = threading.Event()

        def capture() -> None:
            for i in range(100):
                hub.lines("app", 1, Stream.STDOUT, 1.0, lines(f"w{i}"))
            done.set()

        threading.Thread(target=capture, daemon=True).start()
        # held, it would wait a second per chunk (100 s); a guard, not a measure
        assert await asyncio.to_thread(done.wait, 30)
        assert hub.stats("app")["last_seq"] == 101
    finally:
        store.fail = False
        await hub.close()


class SlowStore(MemoryStore):
    """A store whose every write takes a while: the writer is the bottleneck."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def write(self, records):  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        super().write(records)


async def test_long_lines_hold_capture_by_bytes_too() -> None:
    """A ring full in bytes (long lines) holds capture like a ring full in lines: nothing
    is evicted before the store has it."""
    hub = await make_hub(SlowStore(0.1), memory_lines=1000, memory_bytes=200_000)
    try:

        def capture() -> None:
            for _ in range(20):
                hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(["x" * 3000] * 50)))

        await asyncio.to_thread(capture)
        assert await hub.flush(timeout=30)
        stats = hub.stats("app")
        assert stats["last_seq"] == 1000 and stats["store_lost"] == 0
    finally:
        await hub.close()


async def test_a_flooding_process_does_not_keep_the_others_from_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("logcast.hub.writer.WRITE_BATCH", 50)  # the flooder always fills a batch
    hub = Hub(SlowStore(0.01), memory_lines=100)
    await hub.open(["a", "b"])
    stop = threading.Event()
    try:

        def flood() -> None:  # always a whole batch waiting: held at the writer's pace
            i = 0
            while not stop.is_set():
                hub.lines("a", 1, Stream.STDOUT, 1.0, lines(*(f"a{i}-{j}" for j in range(100))))
                i += 1

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        done = threading.Event()

        def steady() -> None:
            for i in range(20):
                hub.lines("b", 1, Stream.STDOUT, 1.0, lines(*(f"b{i}-{j}" for j in range(10))))
            done.set()

        threading.Thread(target=steady, daemon=True).start()
        assert await asyncio.to_thread(done.wait, 30)  # b is never held for good
        assert await asyncio.to_thread(lambda: _until(lambda: hub.stats("b")["persisted_seq"] == 200))
        assert hub.stats("b")["store_lost"] == 0
    finally:
        stop.set()
        await hub.close(timeout=5)


def _until(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


async def test_a_stalled_write_no_longer_holds_capture() -> None:
    """A write that takes longer than WRITER_STALL: capture goes on from memory (the
    ring lets go of what it must, counted) instead of one chunk a second."""
    store = HeldStore()
    clock = FakeClock()
    hub = Hub(store, memory_lines=10, monotonic=clock)
    await hub.open(["app"])
    try:
        store.gate.clear()
        done, _ = capture_thread(hub, chunks=200)
        assert await asyncio.to_thread(store.entered.wait, 5)  # a write is in flight
        await wait_until(lambda: hub.writer.held == 1)  # and capture is held behind it
        assert not done.is_set()
        clock.advance(WRITER_STALL + 0.1)  # the write has now taken longer than a stall
        assert await asyncio.to_thread(done.wait, 30)
        store.gate.set()
        assert await hub.flush(timeout=30)
        stats = hub.stats("app")
        assert stats["last_seq"] == 1000 and stats["store_lost"] > 0  # told, not hidden
    finally:
        store.gate.set()
        await hub.close()


class AppliedThenLost(MemoryStore):
    """A store whose answer to one write is lost after it applied it (a connection that
    dropped after Redis ran EXEC): the hub cannot know, and must ask."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_answer = threading.Event()

    def write(self, records: Sequence[LogRecord]) -> None:
        super().write(records)
        if self.lose_answer.is_set():
            self.lose_answer.clear()
            raise StoreError("connection closed after the write went out", unsure=True)


async def test_a_write_whose_answer_was_lost_is_not_counted_lost() -> None:
    store = AppliedThenLost()
    hub = await make_hub(store, memory_lines=10)
    try:
        store.lose_answer.set()
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"a{i}" for i in range(8))))
        await wait_until(lambda: not store.lose_answer.is_set())  # applied, answer lost
        for chunk in range(20):  # the ring lets go of the first eight meanwhile
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"b{chunk}-{i}" for i in range(5))))
        assert await hub.flush(timeout=10)
        stored = set(store.records["app"])
        assert set(range(1, 9)) <= stored  # the write whose answer was lost is stored
        # what the ring let go of while the writer backed off is lost, and only that is counted
        assert hub.stats("app")["store_lost"] == 108 - len(stored)
    finally:
        await hub.close()


async def test_a_trickle_is_gathered_into_few_writes_but_a_flush_does_not_wait_for_that(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a small round the writer pauses to gather more (one commit for many lines at
    ordinary rates); whoever waits for the store cuts the pause short."""
    monkeypatch.setattr(writer_module, "WRITE_PAUSE", 3600.0)  # only a waiter can end it
    store = MemoryStore()
    hub = await make_hub(store)
    try:
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("first"))
        await wait_until(lambda: store.writes == 1)  # written at once: the writer was idle
        for i in range(20):
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(f"line {i}"))
        assert store.writes == 1  # they wait for the pause, together
        assert await hub.flush(timeout=10.0)  # ...which a flush cuts short
        assert store.writes == 2
        assert hub.get("app").persisted == 21
    finally:
        await hub.close()


async def test_wakes_come_at_once_while_cheap_and_are_spaced_by_what_they_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reader is woken as soon as the loop gets to it while wakes cost nothing; once a
    wake cost the loop time (hundreds of readers), the next comes that much later (capped),
    and whatever arrives meanwhile goes with it."""
    clock = FakeClock()
    hub = Hub(MemoryStore(), monotonic=clock)
    await hub.open(["app"])
    loop = asyncio.get_running_loop()
    later: list[tuple[float, Callable[[], None]]] = []
    monkeypatch.setattr(loop, "call_later", lambda delay, callback, *args: later.append((delay, callback)))
    try:
        sub = await hub.subscribe("app")
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("one"))
        await wait_until(sub.event.is_set)
        assert later == []  # at once

        sub.event.clear()
        clock.advance(1.0)
        hub._wake_cost = 0.004  # as if the last wakes took the loop 4 ms
        hub._last_wake = clock()
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("two"))
        await wait_until(lambda: bool(later))
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("three"))  # joins the wake to come
        assert later[0][0] == pytest.approx(0.004 * hub_module.WAKE_COST_FACTOR)
        assert not sub.event.is_set()
        later[0][1]()
        assert sub.event.is_set()
        assert len(later) == 1

        hub._wake_cost = 60.0  # however costly, a wake comes within the cap
        hub._last_wake = clock()
        sub.event.clear()
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("four"))
        await wait_until(lambda: len(later) == 2)
        assert later[1][0] == pytest.approx(hub_module.WAKE_INTERVAL_MAX)
    finally:
        sub.close()
        await hub.close()


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["line", "status", "hole"]), min_size=1, max_size=40),
    cursor_back=st.integers(0, 3),
    until_at=st.integers(0, 45),
    live=st.booleans(),
    level=st.sampled_from([None, "error"]),
)
def test_a_window_is_delivered_as_record_by_record(
    kinds: list[str], cursor_back: int, until_at: int, live: bool, level: str | None
) -> None:
    """`_deliver`'s fast path (a consecutive, unfiltered window) gives exactly the entries,
    gaps and cursor of the record-by-record way, whatever the window holds."""
    records: list[LogRecord] = []
    seq = 10
    for kind in kinds:
        seq += 1
        if kind == "hole":
            continue
        system = kind == "status"
        state = ProcessState.RUNNING if system else None
        stream = Stream.SYSTEM if system else Stream.STDOUT
        level_of = Level.ERROR if seq % 3 == 0 else Level.INFO
        records.append(LogRecord(seq, 1.0, level_of, f"m{seq}", stream, "web", 1, False, state))
    if not records:
        return
    journal = Journal("web", Ring(1000, 1 << 20))
    query = Query(levels=parse_levels(level)) if level else Query()

    def subscription() -> Subscription:
        sub = Subscription(None, journal, query)  # type: ignore[arg-type]  # no hub needed here
        sub.cursor = records[0].seq - 1 - cursor_back
        sub.until = 10 + until_at
        sub.phase = Phase.LIVE if live else Phase.HISTORY
        return sub

    fast, each = subscription(), subscription()
    got: list[Entry] = []
    want: list[Entry] = []
    fast._deliver(records, got)
    each._deliver_each(records, want)
    assert got == want and fast.cursor == each.cursor


class CallLog(MemoryStore):
    """A store that notes its writes and idle calls in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, records: Sequence[LogRecord]) -> None:
        super().write(records)
        self.calls.append(f"write {records[-1].seq}")

    def idle(self) -> None:
        super().idle()
        self.calls.append("idle")


async def test_the_store_is_told_when_the_writer_has_been_idle_never_between_writes() -> None:
    idle_after = 2.0  # far over the lines' spacing (0.05 s), so that a loaded machine keeps under it
    store = CallLog()
    hub = Hub(store, store_idle_after=idle_after)
    await hub.open(["app"])
    try:
        await wait_until(lambda: store.idles >= 1)  # quiet from the start
        store.calls.clear()
        sent: list[float] = []
        for chunk in range(20):  # lines come faster than `store_idle_after`
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"c{chunk} l{i}" for i in range(100))))
            sent.append(time.monotonic())
            await asyncio.sleep(0.05)
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        assert max(gaps) < idle_after / 2, f"the test's own loop stalled {max(gaps):.2f} s: it proves nothing"
        await wait_until(lambda: "write 2000" in store.calls and store.calls[-1] == "idle")
        writes = [i for i, call in enumerate(store.calls) if call.startswith("write")]
        assert "idle" not in store.calls[: writes[-1]], store.calls  # none while lines came
        assert store.calls[writes[-1]] == "write 2000"
    finally:
        await hub.close()


class IdleFails(MemoryStore):
    def idle(self) -> None:
        super().idle()
        raise StoreError("upkeep failed (simulated)")


async def test_a_failing_idle_does_not_stop_the_writer(caplog: pytest.LogCaptureFixture) -> None:
    store = IdleFails()
    hub = Hub(store, store_idle_after=0.05)
    await hub.open(["app"])
    try:
        await wait_until(lambda: store.idles >= 2)  # it is tried again at the next quiet time
        assert "history store upkeep failed" in caplog.text
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("after the failure"))
        await wait_until(lambda: store.last.get("app") == 1)
        assert hub.stats("app")["store_lost"] == 0 and store.stats.errors == 0
    finally:
        await hub.close()


def flood_lines(tag: str, count: int) -> Lines:
    return lines(*(f"{tag}{i:09d}" for i in range(count)))  # 10 characters a line


async def test_after_a_flood_an_idle_writer_gives_free_memory_back_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`TRIM_AFTER` characters written, then a quiet `store_idle_after`: one trim; less
    than that, or more quiet time, none; a trim that fails is logged and changes nothing."""
    monkeypatch.setattr(writer_module, "TRIM_AFTER", 10_000)
    trims: list[int] = []

    def trim() -> None:
        trims.append(store.last.get("app", 0))
        if len(trims) == 2:
            raise OSError("trim failed (simulated)")

    store = MemoryStore()
    hub = Hub(store, store_idle_after=0.05, trim=trim)
    await hub.open(["app"])
    try:
        hub.lines("app", 1, Stream.STDOUT, 1.0, flood_lines("a", 600))
        await wait_until(lambda: store.last.get("app") == 600)
        idles = store.idles
        await wait_until(lambda: store.idles >= idles + 3)
        assert trims == []  # 6,000 characters < TRIM_AFTER
        hub.lines("app", 1, Stream.STDOUT, 1.0, flood_lines("b", 600))
        await wait_until(lambda: trims == [1200])  # 12,000 since the start, then quiet
        idles = store.idles
        await wait_until(lambda: store.idles >= idles + 3)
        assert trims == [1200]  # counted from the trim: nothing more to give back
        hub.lines("app", 1, Stream.STDOUT, 1.0, flood_lines("c", 1000))
        await wait_until(lambda: "giving free memory back failed" in caplog.text)  # logged after the call
        assert len(trims) == 2
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("after the failure"))
        await wait_until(lambda: store.last.get("app") == 2201)
        assert hub.stats("app")["store_lost"] == 0
    finally:
        await hub.close()


async def test_the_heap_is_given_back_once_output_is_calm_not_during_a_flood(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trickle after a flood never leaves the writer idle: the trim comes once no round
    was a flood's (`SMALL_ROUND` records) for `idle_after`, on the writer's clock; flood
    rounds however far apart in time never trim."""
    monkeypatch.setattr(writer_module, "TRIM_AFTER", 10_000)
    monkeypatch.setattr(writer_module, "SMALL_ROUND", 500)
    trims: list[int] = []
    store = MemoryStore()
    clock = FakeClock()
    hub = Hub(store, monotonic=clock, store_idle_after=30.0, trim=lambda: trims.append(store.last["app"]))
    await hub.open(["app"])
    try:
        for n, tag in enumerate("abc", 1):  # three flood rounds, 31 s apart
            hub.lines("app", 1, Stream.STDOUT, 1.0, flood_lines(tag, 600))
            await wait_until(lambda n=n: store.last.get("app") == 600 * n)  # type: ignore[misc]
            clock.advance(31.0)
        assert trims == []  # 18,000 characters, but never calm
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("trickle 1"))
        await wait_until(lambda: store.last.get("app") == 1801)
        assert trims == []  # calm only since this round
        clock.advance(31.0)
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("trickle 2"))
        await wait_until(lambda: trims == [1802])  # calm for idle_after, the writer never idle
        assert store.idles == 0
    finally:
        await hub.close()


class SlowUpkeep(MemoryStore):
    """A store whose upkeep lasts while its gate is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.in_upkeep = threading.Event()

    def idle(self) -> None:
        super().idle()
        self.in_upkeep.set()
        self.gate.wait(30)


async def test_capture_held_during_the_stores_upkeep_is_let_go_after_writer_stall() -> None:
    """Upkeep (a checkpoint) counts as a write in progress: capture that finds the ring
    full while it runs waits at most `WRITER_STALL`, as it would for a slow write."""
    store = SlowUpkeep()
    clock = FakeClock()
    hub = Hub(store, memory_lines=10, monotonic=clock, store_idle_after=0.05)
    await hub.open(["app"])
    try:
        assert await asyncio.to_thread(store.in_upkeep.wait, 10)
        done, _ = capture_thread(hub, chunks=200)
        await wait_until(lambda: hub.writer.held == 1)  # capture is held behind the upkeep
        assert not done.is_set()
        clock.advance(WRITER_STALL + 0.1)  # the upkeep has now taken longer than a stall
        assert await asyncio.to_thread(done.wait, 30)
        assert not store.gate.is_set()  # let go while the upkeep still ran
        store.gate.set()
        assert await hub.flush(timeout=30)
        assert hub.stats("app")["last_seq"] == 1000
    finally:
        store.gate.set()
        await hub.close()


async def test_the_loop_is_busy_while_waking_the_readers_costs_it() -> None:
    """`loop_busy()` (capture then reads on its threads, not on the loop) follows what
    the wakes cost the loop: a round whose reader took long makes it busy; another
    process's output that nobody follows does not make it calm, nor does it change how
    far apart the wakes come; a measure that nobody's wake renewed for `LOOP_BUSY_FOR`
    no longer counts."""
    clock = FakeClock()
    hub = Hub(MemoryStore(), monotonic=clock)
    await hub.open(["app", "other"])
    try:
        assert not hub.loop_busy()
        sub = await hub.subscribe("app")
        woken = asyncio.Event()

        async def costly_reader() -> None:
            await sub.event.wait()
            clock.advance(4 * hub_module.LOOP_READS_BELOW)  # this reader's turn took the loop that long
            woken.set()

        task = asyncio.create_task(costly_reader())
        await asyncio.sleep(0)
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("one"))
        await woken.wait()
        await task
        await wait_until(hub.loop_busy)
        cost = hub._wake_cost
        for text in ("two", "three", "four"):  # nobody follows "other"
            hub.lines("other", 1, Stream.STDOUT, 1.0, lines(text))
            await asyncio.sleep(0.01)
        assert hub.loop_busy()
        assert hub._wake_cost == cost  # the wakes of "app"'s readers keep their spacing
        clock.advance(hub_module.LOOP_BUSY_FOR)
        assert not hub.loop_busy()
        sub.close()
    finally:
        await hub.close()


@pytest.mark.parametrize("hold", [True, False], ids=["framer thread", "event loop"])
async def test_a_chunk_far_over_a_small_ring_is_kept_until_a_healthy_store_has_it(hold: bool) -> None:
    """A ring of 200 lines and a flood read in chunks of thousands (a framer that fell
    behind takes all that waited in one piece; the loop reads up to 64 KiB): while the
    writer keeps up, no line leaves memory before the store has it. Before, a chunk over
    four times the ring lost the rest at once (a review: 210,247 of 300,000 lines lost
    with `memory_lines = 200`). Readers get every line, none announced lost."""
    store = MemoryStore()
    hub = await make_hub(store, memory_lines=200)
    try:
        sub = await hub.subscribe("app", after=0)
        for chunk in range(6):
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*(f"c{chunk}-{i}" for i in range(5000))), hold=hold)
        assert await hub.flush(timeout=30)
        assert hub.stats("app")["store_lost"] == 0
        assert sorted(store.records["app"]) == list(range(1, 30_001))
        # once stored, memory is back within its bounds, with no further line to trim it
        await wait_until(lambda: hub.stats("app")["memory_lines"] <= 200)
        entries = await drain(sub, 30_000)
        assert not [p for _, p in entries if isinstance(p, Gap)]
        assert seqs(entries) == list(range(1, 30_001))
        sub.close()
    finally:
        await hub.close()


async def test_bytes_count_the_same_in_the_hub_the_store_and_a_replica(tmp_path: Path) -> None:
    """A review: the hub counted text as UTF-8 plus a line end per whole line, SQLite and
    Redis the text alone, a replica's mirror characters: `bytes` fell at every restart and
    differed between an agent and a replica. One count everywhere (`line_bytes`)."""
    from logcast.hub.mirror import MirrorHub
    from logcast.store.sqlite import SqliteStore

    texts = ["plain", "日本語", "\udc80 a byte the decoder could not take", "a piece", "x" * 100]
    chunk = Lines(texts, [Level.INFO] * 5, [False, False, False, True, False])
    flood = Lines([f"line {i}" for i in range(200)], [Level.INFO] * 200, [False] * 200)  # packed rows
    store = SqliteStore(tmp_path / "h.sqlite3")
    await store.open()
    hub = Hub(store)
    await hub.open(["p"])
    hub.lines("p", 1, Stream.STDOUT, 1.0, chunk)
    hub.lines("p", 1, Stream.STDOUT, 2.0, flood)
    assert await hub.flush()
    counted = hub.stats("p")["bytes"]
    assert counted == sum(map(line_bytes, texts, chunk.partial)) + sum(len(t) + 1 for t in flood.texts)
    await hub.close()
    await store.close()

    again = SqliteStore(tmp_path / "h.sqlite3")
    await again.open()
    reopened = Hub(again)
    await reopened.open(["p"])
    assert reopened.stats("p")["bytes"] == counted  # not less after a restart
    records = await reopened.page("p", after=0, limit=1000)
    await reopened.close()
    await again.close()

    replica = MirrorHub(MemoryStore(), memory_lines=1000)
    await replica.open([])
    captured = [r._replace(message=texts[2]) if r.seq == 3 else r for r in records]  # as the agent read it
    replica.mirror("p", captured)
    assert replica.get("p").bytes == counted
    await replica.close()


async def test_the_memory_tail_counts_what_text_takes_in_memory() -> None:
    """A review: the memory tail's byte bound counted characters, and Python keeps an
    emoji's character in four bytes: a ring of such lines held four times `memory_bytes`
    (134 MB of RSS for a 16 MB ring)."""
    held = {}
    for name, char in (("ascii", "x"), ("latin", "é"), ("emoji", "😀")):
        hub = await make_hub(memory_lines=1_000_000, memory_bytes=1 << 20)
        for _ in range(20):
            hub.lines("p", 1, Stream.STDOUT, 1.0, lines(*[char * 1000] * 100))
            assert await hub.flush()
        ring = hub.get("p").ring
        assert ring.bytes <= ring.max_bytes
        held[name] = len(ring)
        await hub.close()
    assert held["ascii"] > 900 and held["latin"] > 0.95 * held["ascii"]  # a byte a character either way
    assert held["emoji"] < held["ascii"] / 3.5  # four
