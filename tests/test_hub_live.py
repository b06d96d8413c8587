"""`Subscription.take_live`: cached wire bytes for live readers, from the ring or the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from logcast.errors import StoreError
from logcast.hub import Gap, Hub, LiveBatch, Subscription
from logcast.hub.subscription import LIVE_TEXT
from logcast.query import Query
from logcast.types import EventType, Level, Lines, LogRecord, ProcessState, Stream
from logcast.web.encode import SSE, WS_TEXT, live_sse
from tests.fakes import MemoryStore


def lines(*texts: str) -> Lines:
    return Lines(list(texts), [Level.INFO] * len(texts), [False] * len(texts))


def write(hub: Hub, first: int, n: int, process: str = "app") -> None:
    hub.lines(process, 1, Stream.STDOUT, float(first), lines(*(f"line {i}" for i in range(first, first + n))))


class Counter:
    """An encoding that counts how often each seq was encoded."""

    def __init__(self, tag: str = "x") -> None:
        self.tag = tag
        self.calls: dict[int, int] = {}

    def __call__(self, records: list[LogRecord]) -> list[bytes]:
        for record in records:
            self.calls[record.seq] = self.calls.get(record.seq, 0) + 1
        return [f"{self.tag}|{r.seq}|{r.stream}|{r.message}\n".encode() for r in records]

    @property
    def total(self) -> int:
        return sum(self.calls.values())


async def write_persisted(hub: Hub, first: int, n: int, chunk: int) -> None:
    """Write in chunks, waiting for each to be persisted."""
    for start in range(first, first + n, chunk):
        write(hub, start, min(chunk, first + n - start))
        assert await hub.flush()


async def make_hub(store: MemoryStore | None = None, **kw: int) -> Hub:
    hub = Hub(store or MemoryStore(), **kw)
    await hub.open(["app", "other"])
    return hub


async def go_live(sub: Subscription) -> list[tuple[EventType, object]]:
    """Read history with `next()` until historical_complete was handed over."""
    got: list[tuple[EventType, object]] = []
    for _ in range(1000):
        entries = await sub.next(2000, wait=False)
        got.extend(entries)
        if any(kind is EventType.HISTORICAL_COMPLETE for kind, _ in entries):
            return got
    raise AssertionError("historical_complete never came")


async def take_all(
    sub: Subscription, limit: int, fmt: str, encode: Callable[[LogRecord], bytes]
) -> list[LiveBatch]:
    batches = []
    while True:
        batch = await sub.take_live(limit, fmt, encode)
        assert batch is not None, f"fast path refused at cursor {sub.cursor}"
        if not batch.encoded:
            assert batch.last_seq == sub.cursor
            return batches
        assert len(batch.encoded) <= limit
        batches.append(batch)


async def every_record(hub: Hub, process: str = "app") -> list[LogRecord]:
    return await hub.page(process, after=0, limit=10**9)


async def test_none_while_history_or_its_completion_is_pending() -> None:
    hub = await make_hub()
    try:
        write(hub, 1, 5)
        enc = Counter()
        sub = await hub.subscribe("app")  # all retained history first
        assert await sub.take_live(100, "x", enc) is None
        entries = await sub.next(2, wait=False)
        assert [k for k, _ in entries] == [EventType.HISTORICAL] * 2
        assert await sub.take_live(100, "x", enc) is None  # still within history
        rest = await go_live(sub)
        assert [k for k, _ in rest][-1] is EventType.HISTORICAL_COMPLETE
        empty = await sub.take_live(100, "x", enc)
        assert empty == LiveBatch([], [], 5)

        # nothing to send as history: historical_complete is still due first
        sub2 = await hub.subscribe("app", after=5)
        assert await sub2.take_live(100, "x", enc) is None
        assert await sub2.next(wait=False) == [(EventType.HISTORICAL_COMPLETE, 5)]
        assert await sub2.take_live(100, "x", enc) == LiveBatch([], [], 5)
        assert enc.total == 0
    finally:
        await hub.close()


async def test_none_with_a_filter_or_once_closed() -> None:
    hub = await make_hub()
    try:
        write(hub, 1, 3)
        enc = Counter()
        for query in (Query(text="line"), Query(levels=frozenset({Level.INFO})), Query(since=0.0)):
            sub = await hub.subscribe("app", after=3, query=query)
            await go_live(sub)
            write(hub, 100, 2)
            assert await sub.take_live(100, "x", enc) is None
            assert [k for k, _ in await sub.next(wait=False)] == [EventType.REALTIME] * 2
            sub.close()
        filtered_tail = await hub.subscribe("app", lines=2, query=Query(text="line"))
        assert await filtered_tail.take_live(100, "x", enc) is None  # its backlog first
        sub = await hub.subscribe("app", after=hub.get("app").last_seq)
        await go_live(sub)
        sub.close()
        write(hub, 200, 1)
        assert await sub.take_live(100, "x", enc) is None
        assert enc.total == 0
    finally:
        await hub.close()


async def test_batches_are_the_encodings_in_seq_order_with_their_statuses() -> None:
    hub = await make_hub()
    try:
        write(hub, 1, 3)
        sub = await hub.subscribe("app", after=3)
        await go_live(sub)
        write(hub, 4, 10)
        hub.status("app", 1, ProcessState.RUNNING, "started pid 1")
        write(hub, 20, 10)
        hub.status("app", 1, ProcessState.EXITED, "exited 0")
        hub.status("app", 2, ProcessState.STARTING, "starting")
        write(hub, 40, 5)
        enc = Counter()
        batches = await take_all(sub, 7, "x", enc)
        records = [r for r in await every_record(hub) if r.seq > 3]
        assert [len(b.encoded) for b in batches] == [7, 7, 7, 7]
        assert [e for b in batches for e in b.encoded] == enc(records)
        expected_seq = 3
        for batch in batches:
            in_batch = [r for r in records if expected_seq < r.seq <= batch.last_seq]
            assert batch.last_seq == expected_seq + len(batch.encoded)
            assert batch.statuses == [r for r in in_batch if r.stream is Stream.SYSTEM]
            expected_seq = batch.last_seq
        all_statuses = [r for b in batches for r in b.statuses]
        assert [r.message for r in all_statuses] == ["started pid 1", "exited 0", "starting"]
        assert [r.state for r in all_statuses] == [
            ProcessState.RUNNING,
            ProcessState.EXITED,
            ProcessState.STARTING,
        ]
        assert sub.cursor == records[-1].seq
    finally:
        await hub.close()


async def test_real_wire_encodings_match_the_slow_path() -> None:
    hub = await make_hub()
    try:
        sub = await hub.subscribe("app")
        await go_live(sub)
        write(hub, 1, 3)
        hub.status("app", 1, ProcessState.RUNNING, "running")
        batch = await sub.take_live(100, SSE.name, SSE.encode)
        assert batch is not None
        records = await every_record(hub)
        assert batch.encoded == [live_sse(r) for r in records]
        assert batch.encoded[0].startswith(b'id: 1\ndata: {"type":"realtime","log":{')
        assert batch.encoded[3].startswith(b'id: 4\ndata: {"type":"status","log":{')
    finally:
        await hub.close()


async def test_each_record_is_encoded_once_per_format_for_every_subscriber() -> None:
    hub = await make_hub()
    try:
        subs = [await hub.subscribe("app") for _ in range(5)]
        for sub in subs:
            await go_live(sub)
        write(hub, 1, 50)
        hub.status("app", 1, ProcessState.RUNNING, "up")
        write(hub, 60, 50)
        enc, other = Counter("a"), Counter("b")
        results = [await take_all(sub, 16, "a", enc) for sub in subs[:3]]
        assert enc.calls == dict.fromkeys(range(1, 102), 1)
        flat = [[e for b in batches for e in b.encoded] for batches in results]
        assert flat[0] == flat[1] == flat[2] and len(flat[0]) == 101
        assert all(x is y for x, y in zip(flat[0], flat[1], strict=True))  # the same cached bytes
        # another format has its own cache: computed once more, once
        b1 = await take_all(subs[3], 30, "b", other)
        b2 = await take_all(subs[4], 7, "b", other)
        assert other.calls == dict.fromkeys(range(1, 102), 1)
        assert enc.calls == dict.fromkeys(range(1, 102), 1)
        assert [e for b in b1 for e in b.encoded] == [e for b in b2 for e in b.encoded]
        assert b1[0].encoded[0].startswith(b"b|1|")
    finally:
        await hub.close()


async def test_interleaved_subscribers_share_the_cache() -> None:
    hub = await make_hub()
    try:
        a = await hub.subscribe("app")
        b = await hub.subscribe("app")
        await go_live(a)
        await go_live(b)
        enc = Counter()
        got_a: list[bytes] = []
        got_b: list[bytes] = []
        for round_ in range(20):
            write(hub, round_ * 10 + 1, 10)
            for sub, got in ((a, got_a), (b, got_b), (a, got_a)):
                batch = await sub.take_live(4, "x", enc)
                assert batch is not None
                got.extend(batch.encoded)
        got_a += [e for x in await take_all(a, 1000, "x", enc) for e in x.encoded]
        got_b += [e for x in await take_all(b, 1000, "x", enc) for e in x.encoded]
        assert got_a == got_b == enc(await every_record(hub))
        assert all(n == 2 for n in enc.calls.values())  # one by the readers, one by this check
    finally:
        await hub.close()


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def read(self, process, *, after=0, limit=1000, query=None, upto=None):  # type: ignore[no-untyped-def]
        self.reads += 1
        return await super().read(process, after=after, limit=limit, query=query, upto=upto)


async def test_a_reader_behind_a_small_ring_is_served_from_store_pages() -> None:
    store = CountingStore()
    hub = await make_hub(store, memory_lines=100)
    try:
        subs = [await hub.subscribe("app") for _ in range(2)]
        for sub in subs:
            await go_live(sub)
        # 6 x (999 lines + 1 status): seqs 1..6000, three full store pages
        for seq in range(1, 6001, 1000):
            await write_persisted(hub, seq, 999, 97)
            hub.status("app", 1, ProcessState.RUNNING, f"status at {seq + 999}")
        assert await hub.flush()
        write(hub, 10_000, 1)  # the next chunk trims the ring to its bounds
        plog = hub.get("app")
        ring_first = plog.ring.first_seq
        last = plog.last_seq
        assert last == 6001 and ring_first is not None and ring_first > 5000 and len(plog.ring) <= 100

        enc = Counter()
        first_batches = await take_all(subs[0], 700, "x", enc)
        reads, encodings = store.reads, enc.total
        assert reads == 3 and len(hub.pages) == 3  # blocks 0, 1 and 2 came from the store
        # (another batch size: batches that end on a status record within a page)
        second_batches = await take_all(subs[1], 500, "x", enc)
        # the second reader costs no query and no encoding: pages and ring are shared
        assert store.reads == reads and enc.total == encodings

        records = await every_record(hub)
        assert [r.seq for r in records] == list(range(1, last + 1))
        expected = enc(records)
        for batches in (first_batches, second_batches):
            assert [e for b in batches for e in b.encoded] == expected  # no gap, no duplicate
            cursor = 0
            for batch in batches:
                assert batch.last_seq == cursor + len(batch.encoded)
                assert batch.statuses == [
                    r for r in records if cursor < r.seq <= batch.last_seq and r.stream is Stream.SYSTEM
                ]
                cursor = batch.last_seq
            assert cursor == last
        statuses = [r.seq for b in first_batches for r in b.statuses]
        assert statuses == [r.seq for r in records if r.stream is Stream.SYSTEM] and len(statuses) >= 5
    finally:
        await hub.close()


@pytest.mark.parametrize("memory_lines", [10_000, 10], ids=["ring", "store pages"])
async def test_a_live_batch_of_long_lines_is_bounded_by_their_text(memory_lines: int) -> None:
    """2,000 lines of 64 KiB of control characters were one batch (790 MB of SSE, encoded
    on the event loop in 1.3 s): a batch takes about `LIVE_TEXT` characters of text, one
    line at least, and every line still comes once, in order."""
    hub = await make_hub(memory_lines=memory_lines)
    try:
        sub = await hub.subscribe("app", after=0)
        await go_live(sub)
        sizes = [LIVE_TEXT // 7 - 10 + s % 5 for s in range(40)] + [LIVE_TEXT * 2, 5, 6]
        for first in range(0, len(sizes), 9):
            chunk = sizes[first : first + 9]
            texts = (f"{first + i + 1:04d}" + "\x01" * (size - 4) for i, size in enumerate(chunk))
            hub.lines("app", 1, Stream.STDOUT, 1.0, lines(*texts))
            assert await hub.flush()
        write(hub, 1000, 1)  # the next chunk trims the ring to its bounds
        enc = Counter()
        batches = await take_all(sub, 2000, "x", enc)
        got = [e.split(b"|")[3][:4] for b in batches for e in b.encoded]
        assert got == [b"%04d" % n for n in range(1, len(sizes) + 1)] + [b"line"]
        for batch in batches:
            text = sum(len(e.split(b"|")[3]) - 1 for e in batch.encoded)
            assert text <= LIVE_TEXT or len(batch.encoded) == 1
        assert [len(b.encoded) for b in batches[:5]] == [7, 7, 7, 7, 7]
        assert max(enc.calls.values()) == 1
    finally:
        await hub.close()


async def test_store_pages_and_ring_give_the_same_bytes() -> None:
    hub = await make_hub(memory_lines=50)
    try:
        behind = await hub.subscribe("app")
        await go_live(behind)
        await write_persisted(hub, 1, 300, 50)
        hub.status("app", 1, ProcessState.RUNNING, "up")
        write(hub, 400, 30)
        keeping_up = await hub.subscribe("app", after=hub.get("app").last_seq - 40)
        await go_live(keeping_up)
        # keeping_up reads the last 40 from the ring first (filling the ring's cache)
        await hub.flush()
        write(hub, 500, 1)  # trim: the reader behind must now use the store
        assert (hub.get("app").ring.first_seq or 0) > 200
        from_ring = await take_all(keeping_up, 1000, SSE.name, SSE.encode)
        from_store = await take_all(behind, 1000, SSE.name, SSE.encode)
        tail = [e for b in from_ring for e in b.encoded]
        everything = [e for b in from_store for e in b.encoded]
        assert everything[-len(tail) :] == tail
        assert everything == [live_sse(r) for r in await every_record(hub)]
    finally:
        await hub.close()


async def test_a_cursor_before_a_clear_gets_none_and_the_slow_path_announces_the_gap() -> None:
    hub = await make_hub()
    try:
        sub = await hub.subscribe("app")
        await go_live(sub)
        write(hub, 1, 10)
        batch = await sub.take_live(4, "x", Counter())
        assert batch is not None and batch.last_seq == 4
        upto = await hub.clear("app")
        assert upto == 10
        assert await sub.take_live(100, "x", Counter()) is None
        write(hub, 11, 3)  # new lines in the ring after the clear
        assert await sub.take_live(100, "x", Counter()) is None
        entries = await sub.next(wait=False)
        gaps = [p for k, p in entries if k is EventType.GAP]
        assert gaps == [Gap("app", 5, 10, "cleared")]
        enc = Counter()
        rest = await take_all(sub, 100, "x", enc)
        seqs_after = [r.seq for k, r in entries if isinstance(r, LogRecord)]
        taken = [e for b in rest for e in b.encoded]
        records = await every_record(hub)
        assert [r.seq for r in records] == [11, 12, 13]
        assert enc([r for r in records if r.seq not in seqs_after]) == taken
        assert sub.cursor == 13
    finally:
        await hub.close()


async def test_a_cursor_behind_the_ring_after_a_clear_gets_none() -> None:
    hub = await make_hub(memory_lines=10)
    try:
        sub = await hub.subscribe("app")
        await go_live(sub)
        await write_persisted(hub, 1, 100, 20)
        write(hub, 200, 1)
        batch = await sub.take_live(5, "x", Counter())  # from a store page
        assert batch is not None and batch.last_seq == 5
        await hub.clear("app")
        await write_persisted(hub, 300, 50, 20)
        write(hub, 400, 1)
        assert await sub.take_live(100, "x", Counter()) is None
        entries = await sub.next(wait=False)
        assert entries[0] == (EventType.GAP, Gap("app", 6, 101, "cleared"))
    finally:
        await hub.close()


async def test_end_subscriptions_closes_every_subscription() -> None:
    hub = await make_hub()
    try:
        write(hub, 1, 3)
        write(hub, 1, 3, process="other")
        subs = [
            await hub.subscribe("app"),
            await hub.subscribe("app", after=3),
            await hub.subscribe("other"),
            await hub.subscribe("other", lines=1, query=Query(text="line")),
        ]
        await go_live(subs[1])
        for sub in subs:
            sub.event.clear()
        hub.end_subscriptions()
        for sub in subs:
            assert sub.closed and sub.event.is_set()
            assert await sub.take_live(100, "x", Counter()) is None
            assert await sub.next() == []  # would wait forever if still open
        assert hub.stats("app")["subscribers"] == 0
        assert hub.stats("other")["subscribers"] == 0
        assert not hub.get("app").subscribers and not hub.get("other").subscribers
    finally:
        await hub.close()


async def test_text_wire_for_status_records() -> None:
    hub = await make_hub()
    try:
        sub = await hub.subscribe("app")
        await go_live(sub)
        write(hub, 1, 1)
        hub.status("app", 1, ProcessState.RUNNING, "started pid 7")
        batch = await sub.take_live(10, WS_TEXT.name, WS_TEXT.encode)
        assert batch is not None
        assert [e[2:] for e in batch.encoded] == [b"line 1\n", b"[logcast] app: started pid 7\n"]
        assert [r.message for r in batch.statuses] == ["started pid 7"]  # the last record of the batch
        hub.status("app", 1, ProcessState.EXITED, "exited 0")
        write(hub, 5, 1)
        batch = await sub.take_live(1, WS_TEXT.name, WS_TEXT.encode)
        assert batch is not None and [r.state for r in batch.statuses] == [ProcessState.EXITED]
        batch = await sub.take_live(1, WS_TEXT.name, WS_TEXT.encode)
        assert batch is not None and batch.statuses == [] and batch.encoded == [b"\x81\x07line 5\n"]
    finally:
        await hub.close()


async def test_a_hole_in_the_store_is_left_to_the_slow_path() -> None:
    hub = await make_hub(memory_lines=10)
    try:
        sub = await hub.subscribe("app")
        await go_live(sub)
        await write_persisted(hub, 1, 20, 10)
        # a store that fails (the writer not keeping up): far beyond four times the ring,
        # 21..80 leave memory unwritten
        hub.writer.keeping_up = lambda: False  # type: ignore[method-assign]
        write(hub, 21, 100)
        del hub.writer.keeping_up
        assert await hub.flush()
        assert hub.stats("app")["store_lost"] == 60
        enc = Counter()
        batch = await sub.take_live(15, "x", enc)  # from the store page: 1..15
        assert batch is not None and batch.last_seq == 15
        # 16..20 then 81..: the hole is never skipped silently, the slow path announces it
        assert await sub.take_live(15, "x", enc) is None
        entries = await sub.next(wait=False)
        assert [p.seq for _, p in entries[:5] if isinstance(p, LogRecord)] == [16, 17, 18, 19, 20]
        assert entries[5] == (EventType.GAP, Gap("app", 21, 80, "lost"))
        rest = [e for b in await take_all(sub, 1000, "x", enc) for e in b.encoded]
        seen = {p.seq for _, p in entries if isinstance(p, LogRecord)}
        assert enc([r for r in await every_record(hub) if r.seq > 80 and r.seq not in seen]) == rest
        assert sub.cursor == 120
    finally:
        await hub.close()


class SlowClearStore(MemoryStore):
    """A store whose clear waits for a gate, as a long DELETE would."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.clearing = asyncio.Event()

    async def clear(self, process: str, upto: int) -> None:
        self.clearing.set()
        await self.gate.wait()
        await super().clear(process, upto)


async def test_cleared_lines_are_not_served_while_the_store_is_still_clearing() -> None:
    store = SlowClearStore()
    hub = await make_hub(store, memory_lines=10)
    try:
        sub = await hub.subscribe("app")
        await go_live(sub)
        await write_persisted(hub, 1, 30, 10)
        write(hub, 31, 1)
        batch = await sub.take_live(5, "x", Counter())
        assert batch is not None and batch.last_seq == 5
        clearing = asyncio.create_task(hub.clear("app"))
        await asyncio.wait_for(store.clearing.wait(), 5)
        assert store.records["app"]  # the store still holds the cleared lines
        assert await sub.take_live(100, "x", Counter()) is None
        entries = await sub.next(wait=False)
        assert entries == [(EventType.GAP, Gap("app", 6, 31, "cleared"))]
        store.gate.set()
        assert await clearing == 31
    finally:
        store.gate.set()
        await hub.close()


async def test_a_long_clear_holds_up_no_process_s_new_lines() -> None:
    """Clearing millions of lines took seconds with the store writer held for all of it:
    every process whose memory tail was full waited, its new lines neither numbered nor
    shown (2.3 s in a review). The writer goes on while the store clears."""
    store = SlowClearStore()
    hub = await make_hub(store, memory_lines=10)
    try:
        await write_persisted(hub, 1, 30, 10)
        clearing = asyncio.create_task(hub.clear("app"))
        await asyncio.wait_for(store.clearing.wait(), 5)
        write(hub, 1, 25, process="other")  # more than its memory tail holds: it needs the writer
        assert await hub.flush(timeout=10)
        assert [r.seq for r in await hub.page("other", limit=100)] == list(range(1, 26))
        assert not clearing.done()
        store.gate.set()
        assert await clearing == 30
        assert store.records["app"] == {}
    finally:
        store.gate.set()
        await hub.close()


class ClearFailsOnce(MemoryStore):
    """A store whose first clear fails (a full disk, a lock held too long)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def clear(self, process: str, upto: int) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("database or disk is full")
        await super().clear(process, upto)


async def test_a_clear_the_store_refused_is_done_by_the_next_one() -> None:
    """A review: the second clear answered done at once (memory was already cleared) and
    the store kept every line, to come back after a restart."""
    store = ClearFailsOnce()
    hub = await make_hub(store)
    try:
        await write_persisted(hub, 1, 30, 10)
        with pytest.raises(StoreError):
            await hub.clear("app")
        assert len(store.records["app"]) == 30
        assert await hub.clear("app") == 30
        assert store.records["app"] == {}
        assert await hub.clear("app") == 30  # nothing more to do
    finally:
        await hub.close()


async def test_dropped_counts_each_seq_announced_once_and_no_clear() -> None:
    """`dropped` (and `logcast_dropped_lines_total`) grew by a whole history's length at
    every reconnect from `after=0`, and counted a user's clear (a review: 900,009 "dropped"
    for 300,003 lines, none lost)."""
    hub = await make_hub(MemoryStore(retain_lines=10), memory_lines=5)
    try:
        await write_persisted(hub, 1, 50, 10)

        async def reconnect() -> list[Gap]:
            sub = await hub.subscribe("app", after=0)
            try:
                return [p for _, p in await go_live(sub) if isinstance(p, Gap)]
            finally:
                sub.close()

        first = await reconnect()
        assert first and first[0].start == 1 and first[0].reason == "retention"
        dropped = hub.stats("app")["dropped"]
        assert dropped == sum(g.count for g in first)
        assert await reconnect() == first
        assert hub.stats("app")["dropped"] == dropped  # the same seqs, told again
        await hub.clear("app")
        gaps = await reconnect()
        assert [g.reason for g in gaps] == ["cleared"]
        assert hub.stats("app")["dropped"] == dropped
    finally:
        await hub.close()
