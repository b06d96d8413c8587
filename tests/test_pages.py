"""The shared store pages of readers behind the memory tail: one query per page."""

from __future__ import annotations

import asyncio
import sys

import pytest

from logcast.hub import Entry, Hub, Subscription
from logcast.hub.pages import ENCODED_BYTES, PAGE, PageCache
from logcast.query import Query
from logcast.types import EventType, Level, Lines, LogRecord, ProcessState, Stream
from tests.fakes import MemoryStore


def records(process: str, first: int, last: int) -> list[LogRecord]:
    return [
        LogRecord(s, float(s), Level.INFO, f"{process} {s}", Stream.STDOUT, process, 1)
        for s in range(first, last + 1)
    ]


class CountingStore(MemoryStore):
    """MemoryStore that counts reads, can hold them at a gate and can fail them.

    A held read takes its rows first and returns them once the gate opens, as a real
    store's query in a worker thread would: what it returns is what the store held
    when it ran.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, int, int]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail_next = 0

    async def read(
        self,
        process: str,
        *,
        after: int = 0,
        limit: int = 1000,
        query: Query | None = None,
        upto: int | None = None,
    ) -> list[LogRecord]:
        self.reads.append((process, after, limit))
        rows = await super().read(process, after=after, limit=limit, query=query, upto=upto)
        self.started.set()
        await asyncio.sleep(0)  # a real store always yields (sqlite: a worker thread)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("store read failed (simulated)")
        return rows


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def filled(n: int, process: str = "app") -> CountingStore:
    store = CountingStore()
    if n:
        store.write(records(process, 1, n))
    return store


async def test_concurrent_readers_of_one_page_share_one_read() -> None:
    store = filled(2 * PAGE + 10)
    store.gate = asyncio.Event()
    cache = PageCache(store)
    tasks = [asyncio.create_task(cache.page("app", 0, after)) for after in (PAGE, PAGE + 5, 2 * PAGE - 1)]
    await settle()
    store.gate.set()
    pages = await asyncio.gather(*tasks)
    assert store.reads == [("app", PAGE, PAGE)]
    assert pages[0] is pages[1] is pages[2]
    page = pages[0]
    assert page.full and [r.seq for r in page.records] == list(range(PAGE + 1, 2 * PAGE + 1))
    assert page.index(PAGE + 5) == 5 and page.records[page.index(PAGE + 5)].seq == PAGE + 6


async def test_a_full_page_is_kept() -> None:
    store = filled(PAGE + 1)
    cache = PageCache(store)
    first = await cache.page("app", 0, 3)
    second = await cache.page("app", 0, PAGE - 1)  # same block
    assert first is second and first.full
    assert len(store.reads) == 1 and len(cache) == 1
    made = first.encoded("sse", lambda rs: [b"%d" % r.seq for r in rs], 0, PAGE)
    assert first.encoded("sse", lambda rs: [b"other"] * len(rs), 0, PAGE) == made


async def test_a_short_page_serves_only_readers_before_its_end() -> None:
    store = filled(10)
    cache = PageCache(store)
    short = await cache.page("app", 0, 0)
    assert not short.full and len(short.records) == 10 and len(cache) == 1
    assert await cache.page("app", 0, 5) is short  # records after 5 are in it: shared
    assert len(store.reads) == 1
    store.write(records("app", 11, 25))
    again = await cache.page("app", 0, 10)  # at its end: the store may have more now
    assert len(store.reads) == 2  # not served from a stale copy
    assert [r.seq for r in again.records] == list(range(1, 26))
    assert await cache.page("app", 0, 3) is again  # the newer copy replaced it
    assert len(store.reads) == 2 and len(cache) == 1


async def test_a_waiter_whose_shared_page_was_short_reads_itself() -> None:
    store = filled(10)
    store.gate = asyncio.Event()
    cache = PageCache(store)
    loader = asyncio.create_task(cache.page("app", 0, 0))
    await store.started.wait()  # the loader's query ran: it saw 10 rows
    waiter = asyncio.create_task(cache.page("app", 0, 12))  # this reader has seen up to 12
    await settle()
    store.write(records("app", 11, PAGE + 3))
    store.gate.set()
    short, mine = await asyncio.gather(loader, waiter)
    assert len(short.records) == 10 and not short.full
    assert mine.full and mine.records[mine.index(12)].seq == 13
    assert len(store.reads) == 2
    assert await cache.page("app", 0, 100) is mine  # the full one is kept
    assert len(store.reads) == 2


async def test_a_failed_load_propagates_to_its_loader_and_a_waiter_reads_itself() -> None:
    store = filled(PAGE)
    store.gate = asyncio.Event()
    store.fail_next = 1
    cache = PageCache(store)
    loader = asyncio.create_task(cache.page("app", 0, 0))
    await store.started.wait()
    waiter = asyncio.create_task(cache.page("app", 0, 7))
    await settle()
    store.gate.set()
    with pytest.raises(OSError, match="simulated"):
        await loader
    page = await waiter
    assert page.full and page.records[0].seq == 1
    assert len(store.reads) == 2
    assert await cache.page("app", 0, 1) is page


async def test_a_failed_load_with_several_waiters() -> None:
    """Every waiter of a failed load gets its page, and the cache stays usable."""
    store = filled(PAGE)
    store.gate = asyncio.Event()
    store.fail_next = 1
    cache = PageCache(store)
    loader = asyncio.create_task(cache.page("app", 0, 0))
    await store.started.wait()
    waiters = [asyncio.create_task(cache.page("app", 0, after)) for after in (1, 2, 3)]
    await settle()
    store.gate.set()
    with pytest.raises(OSError):
        await loader
    pages = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert all(p.full and p.records[0].seq == 1 for p in pages)
    assert len(store.reads) <= 4
    assert await cache.page("app", 0, 5) in pages


async def test_a_short_shared_page_with_several_waiters() -> None:
    """Every waiter of a short shared page reads again; none of them fails."""
    store = filled(10)
    store.gate = asyncio.Event()
    cache = PageCache(store)
    loader = asyncio.create_task(cache.page("app", 0, 0))
    await store.started.wait()
    waiters = [asyncio.create_task(cache.page("app", 0, after)) for after in (11, 12)]
    await settle()
    store.write(records("app", 11, PAGE))
    store.gate.set()
    short = await loader
    pages = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert not short.full
    assert all(p.full for p in pages)


class SteppedStore(CountingStore):
    """Each read waits for its own gate: `gates[i]` releases the i-th read."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[asyncio.Event] = []

    async def read(
        self,
        process: str,
        *,
        after: int = 0,
        limit: int = 1000,
        query: Query | None = None,
        upto: int | None = None,
    ) -> list[LogRecord]:
        gate = asyncio.Event()
        self.gates.append(gate)
        rows = await MemoryStore.read(self, process, after=after, limit=limit, query=query, upto=upto)
        self.reads.append((process, after, limit))
        await gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("store read failed (simulated)")
        return rows


async def test_a_reader_that_joins_a_waiters_reload_gets_its_page() -> None:
    """The waiters of a failed load reload the page; one who comes meanwhile shares a
    reload and must get the page, not wait forever."""
    store = SteppedStore()
    store.write(records("app", 1, PAGE))
    store.fail_next = 1
    cache = PageCache(store)
    loader = asyncio.create_task(cache.page("app", 0, 0))
    await settle()
    waiters = [asyncio.create_task(cache.page("app", 0, after)) for after in (1, 2)]
    await settle()
    store.gates[0].set()  # the loader's read fails; the waiters ask again: one reload, shared
    with pytest.raises(OSError):
        await loader
    await settle()
    assert len(store.gates) == 2
    late = asyncio.create_task(cache.page("app", 0, 3))  # shares one of those reloads
    await settle()
    for gate in store.gates[1:]:
        gate.set()
    await settle()
    for gate in store.gates:  # any read the late reader started itself
        gate.set()
    try:
        page = await asyncio.wait_for(late, 1)  # its future never resolved: it would hang forever
    finally:
        pages = await asyncio.gather(*waiters, return_exceptions=True)
    assert page.full and all(not isinstance(p, BaseException) and p.full for p in pages)


async def test_a_cancelled_loader_does_not_strand_its_waiters() -> None:
    store = filled(PAGE)
    store.gate = asyncio.Event()
    cache = PageCache(store)
    loader = asyncio.create_task(cache.page("app", 0, 0))
    await store.started.wait()
    waiter = asyncio.create_task(cache.page("app", 0, 100))
    await settle()
    loader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loader
    await settle()
    assert not waiter.done()  # it is reading the page itself, held at the same gate
    store.gate.set()
    page = await asyncio.wait_for(waiter, 5)
    assert page.full and page.records[page.index(100)].seq == 101
    assert len(store.reads) == 2


async def test_forget_drops_only_that_process() -> None:
    store = filled(PAGE, "app")
    store.write(records("other", 1, PAGE))
    cache = PageCache(store)
    app = await cache.page("app", 0, 0)
    other = await cache.page("other", 0, 0)
    assert len(store.reads) == 2 and len(cache) == 2
    cache.forget("app")
    assert len(cache) == 1
    assert await cache.page("other", 0, 0) is other
    assert len(store.reads) == 2
    again = await cache.page("app", 0, 0)
    assert again is not app and len(store.reads) == 3


async def test_least_recently_used_pages_go_beyond_kept() -> None:
    store = filled(4 * PAGE)
    cache = PageCache(store, kept=2)
    p0 = await cache.page("app", 0, 0)
    p1 = await cache.page("app", 0, PAGE)
    assert await cache.page("app", 0, 1) is p0  # block 0 is now the most recent
    p2 = await cache.page("app", 0, 2 * PAGE)
    assert len(cache) == 2 and len(store.reads) == 3
    assert await cache.page("app", 0, 10) is p0 and len(store.reads) == 3
    assert await cache.page("app", 0, 2 * PAGE + 1) is p2 and len(store.reads) == 3
    again = await cache.page("app", 0, PAGE + 1)  # block 1 was evicted
    assert again is not p1 and len(store.reads) == 4
    assert [r.seq for r in again.records] == [r.seq for r in p1.records]
    assert len(cache) == 2


async def test_the_key_holds_the_clear_mark() -> None:
    store = filled(PAGE)
    cache = PageCache(store)
    before = await cache.page("app", 0, 0)
    after = await cache.page("app", 5, 5)  # same block, after a clear up to 5
    assert after is not before and len(store.reads) == 2
    assert await cache.page("app", 5, 0) is after
    assert await cache.page("app", 0, 0) is before
    assert len(store.reads) == 2


async def test_page_holds_its_status_records() -> None:
    store = CountingStore()
    rows = records("app", 1, PAGE)
    rows[9] = LogRecord(10, 10.0, Level.INFO, "started", Stream.SYSTEM, "app", 1, False, ProcessState.RUNNING)
    store.write(rows)
    page = await PageCache(store).page("app", 0, 0)
    assert [r.seq for r in page.statuses] == [10]


async def test_pages_kept_are_bounded_in_memory_too() -> None:
    """Long lines make big pages: the cache keeps fewer of them, never more than about
    `kept_bytes` (the newest page always stays)."""
    store = MemoryStore()
    store.write(
        [
            LogRecord(seq, 1.0, Level.INFO, "x" * 1000, Stream.STDOUT, "app", 1, False, None)
            for seq in range(1, 5 * PAGE + 1)
        ]
    )
    cache = PageCache(store, kept=48, kept_bytes=3 * PAGE * 1200)
    for block in range(5):
        page = await cache.page("app", 0, block * PAGE)
        assert page.full
    assert len(cache) == 2  # three pages of ~2.46 MB would be over ~7.2 MB
    assert cache.bytes <= 3 * PAGE * 1200
    page.encoded("sse", lambda rs: [b"y" * 2000 for _ in rs], 0, PAGE)  # encodings count as well
    await cache.page("app", 0, 0)  # a new page comes in: the others make room
    assert len(cache) == 1


async def test_a_page_encodes_only_what_is_asked_for_and_once() -> None:
    store = filled(PAGE)
    page = await PageCache(store).page("app", 0, 0)
    made: list[int] = []

    def encode(rs: list[LogRecord]) -> list[bytes]:
        made.extend(r.seq for r in rs)
        return [b"%d" % r.seq for r in rs]

    assert page.encoded("sse", encode, 10, 20) == [b"%d" % s for s in range(11, 21)]
    assert made == list(range(11, 21))  # not the other 1,990 records of the page
    assert page.encoded("sse", encode, 5, 25) == [b"%d" % s for s in range(6, 26)]
    assert made[10:] == [*range(6, 11), *range(21, 26)]  # only those not made before
    before = len(made)
    assert page.encoded("sse", encode, 0, PAGE) == [b"%d" % s for s in range(1, PAGE + 1)]
    assert len(made) == before + PAGE - 20
    assert page.encoded("sse", encode, 0, PAGE) == [b"%d" % s for s in range(1, PAGE + 1)]
    assert len(made) == before + PAGE - 20  # a second reader encodes nothing


async def test_a_page_of_long_lines_keeps_no_encodings() -> None:
    """2,000 lines of 64 KiB of control characters are 128 MB of text and 790 MB of SSE
    (JSON writes each as six bytes): each reader encodes the lines it takes, and the page
    holds its records only."""
    store = MemoryStore()
    store.write(
        [LogRecord(s, 1.0, Level.INFO, "\x01" * 6000, Stream.STDOUT, "app", 1) for s in range(1, PAGE + 1)]
    )
    page = await PageCache(store).page("app", 0, 0)
    size = page.size
    assert size > ENCODED_BYTES
    made: list[int] = []

    def encode(rs: list[LogRecord]) -> list[bytes]:
        made.extend(r.seq for r in rs)
        return [b"x" * 18000 for _ in rs]

    for start in (0, 0, 100):
        assert len(page.encoded("sse", encode, start, start + 10)) == 10
    assert made == [*range(1, 11), *range(1, 11), *range(101, 111)]
    assert page.size == size and not page.encodings


async def test_encodings_stop_being_kept_once_the_page_is_large() -> None:
    store = MemoryStore()
    store.write([LogRecord(s, 1.0, Level.INFO, "line", Stream.STDOUT, "app", 1) for s in range(1, PAGE + 1)])
    page = await PageCache(store).page("app", 0, 0)
    big = ENCODED_BYTES // 1000  # bytes of an encoding: a thousand of them fill the page

    def encode(rs: list[LogRecord]) -> list[bytes]:
        return [b"%d:" % r.seq + b"y" * big for r in rs]

    for start in range(0, PAGE, 100):
        part = page.encoded("sse", encode, start, start + 100)
        assert [p.split(b":")[0] for p in part] == [b"%d" % s for s in range(start + 1, start + 101)]
    assert ENCODED_BYTES < page.size < ENCODED_BYTES + 110 * (big + 33)  # kept until over the bound
    kept = page.encodings["sse"]
    assert kept[0] is not None and kept[-1] is None


async def test_pages_every_reader_has_passed_go_at_the_next_load() -> None:
    """A page ending at or below the lowest reader's cursor is nobody's any more: a lone
    reader catching up holds the page it reads, not the cache's bound."""
    store = filled(6 * PAGE)
    cursors = {"app": [0], "other": [0]}
    cache = PageCache(store, passed=lambda process, floor: min(cursors[process]))
    for block in range(4):
        await cache.page("app", 0, block * PAGE)
    assert len(cache) == 4  # every reader is still at 0: all four are kept
    cursors["app"] = [2 * PAGE + 7, 3 * PAGE]  # both readers are past blocks 0 and 1...
    await cache.page("app", 0, 4 * PAGE)
    assert sorted(k[2] for k in cache._pages) == [2, 3, 4]  # ...which go; block 2 is the slow one's
    assert await cache.page("app", 0, 2 * PAGE + 7) is not None and len(store.reads) == 5
    cursors["app"] = [PAGE - 1]  # a reader that came later, from history
    await cache.page("app", 0, 5 * PAGE)
    assert sorted(k[2] for k in cache._pages) == [2, 3, 4, 5]  # nothing it still needs goes
    reads = len(store.reads)
    assert (await cache.page("app", 0, 0)).records[0].seq == 1  # block 0 is read again
    assert len(store.reads) == reads + 1


async def test_a_page_is_dropped_only_for_its_own_process() -> None:
    store = filled(2 * PAGE)
    store.write(records("other", 1, 2 * PAGE))
    cursors = {"app": 0, "other": 0}
    cache = PageCache(store, passed=lambda process, floor: cursors[process])
    await cache.page("app", 0, 0)
    await cache.page("other", 0, 0)
    cursors["app"] = 2 * PAGE  # past both of its blocks: the one it loads now stays all the same
    await cache.page("app", 0, PAGE)
    assert sorted(cache._pages) == [("app", 0, 1), ("other", 0, 0)]


async def test_the_hub_tells_its_pages_the_lowest_cursor() -> None:
    hub = Hub(MemoryStore())
    await hub.open(["app"])
    try:
        assert hub._passed("app") == sys.maxsize and hub._passed("nobody") == sys.maxsize  # nobody reads
        slow, fast = await hub.subscribe("app", after=0), await hub.subscribe("app", after=0)
        slow.cursor, fast.cursor = 5, 9
        assert hub._passed("app") == 5
        assert hub._passed("app", floor=6) == 5  # below the floor: it may stop there
        slow.close()
        assert hub._passed("app") == 9
        fast.close()
        assert hub._passed("app") == sys.maxsize
        assert hub.pages._passed == hub._passed
    finally:
        await hub.close()


# -- through the hub's subscriptions ------------------------------------------------------------


def blocks_read(store: CountingStore) -> list[int]:
    return [after // PAGE for _, after, _ in store.reads]


async def behind_the_ring(
    store: CountingStore, afters: list[int], n: int = 10 * PAGE
) -> tuple[Hub, list[Subscription]]:
    """A hub with a 100-line ring and `n` lines stored (every one: a chunk of 100 at a
    time, each persisted before the next), and readers from `afters` on."""
    hub = Hub(store, memory_lines=100)
    await hub.open(["app"])
    for start in range(0, n, 100):
        texts = [f"x{i}" for i in range(start, start + 100)]
        hub.lines("app", 1, Stream.STDOUT, 1.0, Lines(texts, [Level.INFO] * 100, [False] * 100))
        assert await hub.flush()
    assert hub.stats("app")["store_lost"] == 0
    subs = [await hub.subscribe("app", after=after) for after in afters]
    store.reads.clear()
    return hub, subs


def seqs_of(entries: list[Entry]) -> list[int]:
    return [
        payload.seq
        for kind, payload in entries
        if kind is EventType.HISTORICAL and isinstance(payload, LogRecord)
    ]


def ring_front(hub: Hub) -> int:
    first = hub.get("app").ring.first_seq
    assert first is not None
    return first - 1


async def test_a_lone_reader_behind_reads_each_page_once_and_holds_two_at_most() -> None:
    store = CountingStore()
    hub, (sub,) = await behind_the_ring(store, [0])
    try:
        held = 0
        got: list[int] = []
        while sub.cursor < 10 * PAGE:
            got += seqs_of(await sub.next(300, wait=False))
            held = max(held, len(hub.pages))
        assert got == list(range(1, 10 * PAGE + 1))
        blocks = blocks_read(store)
        assert sorted(blocks) == list(range(10))  # each page read once
        assert held <= 2
        await sub.next(300, wait=False)  # it looks for more: the ring's, now
        # of what it read, only the page reaching into the ring is kept
        assert [page.records[-1].seq > ring_front(hub) for page in hub.pages._pages.values()] == [True]
    finally:
        await hub.close()


async def test_readers_spread_over_a_burst_read_each_page_once_and_keep_none_at_the_end() -> None:
    """The trailing readers finish from pages already read: those go once every reader
    caught up with the ring, and what one still needs stays while it does."""
    store = CountingStore()
    hub, subs = await behind_the_ring(store, [0, 3 * PAGE + 17, 6 * PAGE + 5])
    try:
        got: list[list[int]] = [[], [], []]
        while any(sub.cursor < 10 * PAGE for sub in subs):
            for i, sub in enumerate(subs):
                for _ in range(i + 1):  # the later ones read faster
                    got[i] += seqs_of(await sub.next(250, wait=False))
        assert got == [list(range(after + 1, 10 * PAGE + 1)) for after in (0, 3 * PAGE + 17, 6 * PAGE + 5)]
        blocks = blocks_read(store)
        assert sorted(blocks) == list(range(10))  # every page read once, shared by those behind
        for sub in subs:
            await sub.next(250, wait=False)  # each looks for more, in the ring
        assert [page.records[-1].seq > ring_front(hub) for page in hub.pages._pages.values()] == [True]
    finally:
        await hub.close()


async def test_the_pages_only_a_leaving_reader_needed_go_with_it() -> None:
    store = CountingStore()
    hub, (slow, fast) = await behind_the_ring(store, [0, 5 * PAGE])
    try:
        await fast.next(300, wait=False)
        await slow.next(300, wait=False)
        while fast.cursor <= 6 * PAGE:  # into block 6, which is loaded
            await fast.next(300, wait=False)
        assert sorted(k[2] for k in hub.pages._pages) == [0, 5, 6]
        slow.close()  # it keeps block 0, where it would resume if it came back
        assert sorted(k[2] for k in hub.pages._pages) == [0, 6]  # block 5 was nobody's
        fast.close()  # now nobody reads: what remains is the page where the last one left
        assert sorted(k[2] for k in hub.pages._pages) == [6]
        newcomer = await hub.subscribe("app", after=9 * PAGE)
        await newcomer.next(300, wait=False)  # its load sweeps what nobody is at
        assert sorted(k[2] for k in hub.pages._pages) == [9]
    finally:
        await hub.close()


async def test_a_failing_upkeep_does_not_strand_the_waiters_of_a_load() -> None:
    store = filled(2 * PAGE)
    failing = False

    def passed(process: str, floor: int) -> int:
        if failing:
            raise RuntimeError("upkeep failed (simulated)")
        return 0

    cache = PageCache(store, passed=passed)
    await cache.page("app", 0, PAGE)  # a page for the upkeep to look at
    failing = True
    store.gate = asyncio.Event()
    loader = asyncio.create_task(cache.page("app", 0, 0))
    await store.started.wait()
    waiter = asyncio.create_task(cache.page("app", 0, 5))
    await settle()
    store.gate.set()
    with pytest.raises(RuntimeError, match="simulated"):
        await loader
    page = await asyncio.wait_for(waiter, 5)
    assert page.records[0].seq == 1


async def test_a_reader_at_the_front_of_the_memory_tail_reads_each_page_once() -> None:
    """In a flood, a reader keeping pace about a ring behind steps out of the ring and back
    in: the page reaching into the ring stays for it, not read again at each step out."""
    store = CountingStore()
    hub = Hub(store, memory_lines=1000)
    await hub.open(["app"])
    try:
        total = 0

        async def add(n: int) -> None:
            nonlocal total
            texts = [f"x{i}" for i in range(total, total + n)]
            hub.lines("app", 1, Stream.STDOUT, 1.0, Lines(texts, [Level.INFO] * n, [False] * n))
            total += n
            assert await hub.flush()

        for _ in range(12):  # 3 pages
            await add(500)
        front = ring_front(hub)
        sub = await hub.subscribe("app", after=front)
        store.reads.clear()
        got: list[int] = []
        for round_ in range(150):
            await add(100)  # the ring lets go of 100 lines at its front
            for _ in range(2 if round_ % 2 == 0 else 0):  # the reader keeps pace, unevenly
                got += [p.seq for kind, p in await sub.next(100, wait=False) if isinstance(p, LogRecord)]
        assert got == list(range(front + 1, front + 1 + len(got)))
        blocks = blocks_read(store)
        assert len(blocks) <= 2 * len(set(blocks))  # a short page at the writer's edge may be read again
        assert (
            len(store.reads) <= 20
        )  # 15,000 lines: 8 blocks (75 reads when the page reaching into the ring went)
    finally:
        await hub.close()


async def test_a_page_read_for_a_reader_that_left_meanwhile_does_not_stay() -> None:
    store = CountingStore()
    hub, (sub,) = await behind_the_ring(store, [0], 3 * PAGE)
    try:
        store.gate = asyncio.Event()
        reading = asyncio.create_task(sub.next(100, wait=False))
        await store.started.wait()
        hub.end_subscriptions()  # the server stops: the stream ends, its read goes on
        sub.close()  # and a second close does no harm
        store.gate.set()
        await reading
        assert len(hub.pages) == 0
    finally:
        await hub.close()


async def test_the_end_of_every_subscription_leaves_the_pages_to_the_hub() -> None:
    """Shutdown closes every reader at once: one sweep each would cost the square of their
    number; the pages go with the hub."""
    store = CountingStore()
    hub, subs = await behind_the_ring(store, [0, 5 * PAGE])
    try:
        for sub in subs:
            await sub.next(300, wait=False)
        assert len(hub.pages) == 2
        hub.end_subscriptions()
        assert len(hub.pages) == 2 and all(sub.closed for sub in subs)
    finally:
        await hub.close()


async def test_passed_counts_the_readers_behind_the_memory_tail_and_stops_at_its_front() -> None:
    store = CountingStore()
    hub, subs = await behind_the_ring(store, [250], 300)  # the ring holds 201..300
    try:
        assert ring_front(hub) == 200
        assert hub._passed("app") == 200  # the reader at 250 reads the ring: the page reaching into it stays
        behind = await hub.subscribe("app", after=50)
        assert hub._passed("app") == 50
        behind.close()
        subs[0].close()
        assert hub._passed("app") == 200  # nobody reads: still not past the front
    finally:
        await hub.close()
