"""Bounded history reads (hub/reads.py) and the RE2 regex (query.py).

A filtered read looks at no more than `SCAN_ROWS` records per call and says where
to go on; walking `next` forwards or `before` backwards must give exactly the
records a brute-force filter gives, across the seam between store and ring.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcast.hub import Hub
from logcast.hub import reads as reads_mod
from logcast.hub.subscription import Subscription
from logcast.query import Query, Regex, compile_regex
from logcast.store.sqlite import SqliteStore
from logcast.types import EventType, Gap, Level, Lines, LogRecord, Stream
from logcast.web.routes import history
from tests.fakes import MemoryStore


def _texts(n: int, first: int) -> list[str]:
    return [f"line {i} {'needle' if i % 7 == 0 else 'hay'}" for i in range(first, first + n)]


async def _hub(store: MemoryStore | SqliteStore, total: int, memory_lines: int) -> Hub:
    hub = Hub(store, memory_lines=memory_lines)
    await hub.open(["app"])
    done = 0
    while done < total:
        n = min(97, total - done)
        texts = _texts(n, done + 1)
        hub.lines("app", 1, Stream.STDOUT, 1.0, Lines(texts, [Level.INFO] * n, [False] * n))
        done += n
        assert await hub.flush()
    return hub


def _expected(records: list[LogRecord], query: Query) -> list[int]:
    return [r.seq for r in records if query.matches(r)]


async def _all(hub: Hub) -> list[LogRecord]:
    return (await hub.read_page("app", limit=10**9)).records


@pytest.fixture
def small_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reads_mod, "SCAN_ROWS", 50)
    monkeypatch.setattr(reads_mod, "SCAN_CHUNK", 16)


@pytest.mark.usefixtures("small_scan")
@settings(max_examples=30, deadline=None)
@given(
    total=st.integers(0, 400),
    memory=st.integers(1, 300),
    limit=st.integers(1, 40),
    after=st.integers(0, 420),
    pattern=st.sampled_from(["needle", "line 1", "hay", "nothing", r"\d3 "]),
)
async def test_walking_next_finds_exactly_the_matches(
    total: int, memory: int, limit: int, after: int, pattern: str
) -> None:
    hub = await _hub(MemoryStore(), total, memory)
    try:
        query = Query(regex=compile_regex(pattern))
        everything = await _all(hub)
        want = [s for s in _expected(everything, query) if s > after]
        got: list[int] = []
        cursor: int | None = after
        calls = 0
        while cursor is not None:
            page = await hub.read_page("app", after=cursor, limit=limit, query=query)
            assert len(page.records) <= limit
            assert page.cursor - cursor <= reads_mod.SCAN_ROWS  # one call looks at one window
            got += [r.seq for r in page.records]
            cursor = page.next
            calls += 1
            assert calls < 1000
        assert got == want
    finally:
        await hub.close()


@pytest.mark.usefixtures("small_scan")
@settings(max_examples=30, deadline=None)
@given(
    total=st.integers(0, 400),
    memory=st.integers(1, 300),
    n=st.integers(1, 40),
    pattern=st.sampled_from(["needle", "line 1", "hay", "nothing"]),
)
async def test_walking_before_finds_exactly_the_matches(
    total: int, memory: int, n: int, pattern: str
) -> None:
    hub = await _hub(MemoryStore(), total, memory)
    try:
        query = Query(text=pattern)
        want = _expected(await _all(hub), query)
        got: list[int] = []
        before: int | None = None
        calls = 0
        while True:
            page = await hub.tail_page("app", n, before=before, query=query)
            assert len(page.records) <= n
            got[:0] = [r.seq for r in page.records]
            if page.before is None:
                break
            before = page.before
            calls += 1
            assert calls < 1000
        assert got == want
        # without a filter, a tail is the last n records, all at once
        last = await hub.tail_page("app", n)
        assert [r.seq for r in last.records] == [r.seq for r in (await _all(hub))[-n:]]
    finally:
        await hub.close()


async def _wide_hub(store: MemoryStore | SqliteStore, total: int, memory_lines: int, width: int) -> Hub:
    """`_hub` with lines of many lengths, up to `width` characters more than `_texts`'."""
    hub = Hub(store, memory_lines=memory_lines)
    await hub.open(["app"])
    done = 0
    while done < total:
        n = min(13, total - done)
        texts = [t + " " + "w" * ((done + i) * 37 % width) for i, t in enumerate(_texts(n, done + 1))]
        hub.lines("app", 1, Stream.STDOUT, 1.0, Lines(texts, [Level.INFO] * n, [False] * n))
        done += n
        assert await hub.flush()
    return hub


def _fits(records: list[LogRecord], budget: int) -> bool:
    """A page holds at most `budget` characters of text, or one record."""
    return len(records) <= 1 or sum(len(r.message) for r in records) <= budget


@pytest.mark.usefixtures("small_scan")
@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(0, 300),
    memory=st.integers(1, 300),
    limit=st.integers(1, 40),
    budget=st.integers(1, 400),
    pattern=st.sampled_from([None, "needle", "line 1", "nothing", r"\d3 "]),
)
async def test_pages_hold_a_bounded_text_and_walk_to_every_match(
    total: int, memory: int, limit: int, budget: int, pattern: str | None
) -> None:
    """A page of 10,000 lines of 64 KiB was 640 MB of text dumped into one answer on the
    event loop (a review): pages stop at `PAGE_TEXT` characters (one record at least),
    and walking `next` forwards or `before` backwards still gives every match once."""
    hub = await _wide_hub(MemoryStore(), total, memory, 150)
    try:
        everything = await _all(hub)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(reads_mod, "PAGE_TEXT", budget)
            for query in (
                (Query(),) if pattern is None else (Query(text=pattern), Query(regex=compile_regex(pattern)))
            ):
                want = _expected(everything, query)
                got: list[int] = []
                cursor: int | None = 0
                while cursor is not None:
                    page = await hub.read_page("app", after=cursor, limit=limit, query=query)
                    assert len(page.records) <= limit and _fits(page.records, budget)
                    got += [r.seq for r in page.records]
                    assert len(got) <= len(want)
                    cursor = page.next
                assert got == want
                got, before = [], None
                while True:
                    tail = await hub.tail_page("app", limit, before=before, query=query)
                    assert len(tail.records) <= limit and _fits(tail.records, budget)
                    got[:0] = [r.seq for r in tail.records]
                    assert len(got) <= len(want)
                    if tail.before is None:
                        break
                    before = tail.before
                assert got == want
    finally:
        await hub.close()


async def test_a_page_of_long_lines_from_the_store_is_bounded(tmp_path: Path) -> None:
    """200 lines of 60,000 characters, all in SQLite: a page asked for 1,000 of them holds
    at most `PAGE_TEXT` characters, and the pages hold them all, once."""
    store = SqliteStore(tmp_path / "h.db")
    await store.open()
    hub = Hub(store, memory_lines=10)
    await hub.open(["app"])
    try:
        for first in range(0, 200, 20):
            texts = [f"{i:03d}" + "x" * 60_000 for i in range(first, first + 20)]
            hub.lines("app", 1, Stream.STDOUT, 1.0, Lines(texts, [Level.INFO] * 20, [False] * 20))
            assert await hub.flush()
        seen: list[int] = []
        cursor: int | None = 0
        while cursor is not None:
            page = await hub.read_page("app", after=cursor, limit=1000)
            assert 0 < sum(len(r.message) for r in page.records) <= reads_mod.PAGE_TEXT
            seen += [r.seq for r in page.records]
            cursor = page.next
        assert seen == list(range(1, 201))
        last = await hub.tail_page("app", 1000)
        assert last.records and sum(len(r.message) for r in last.records) <= reads_mod.PAGE_TEXT
        assert last.records[-1].seq == 200 and last.before == last.records[0].seq - 1
    finally:
        await hub.close()


async def test_a_filtered_stream_backlog_keeps_looking_back(small_scan: None) -> None:
    hub = await _hub(MemoryStore(), 400, 100)
    try:
        query = Query(text="needle")
        got = await hub.tail("app", 20, query=query)
        assert [r.seq for r in got] == _expected(await _all(hub), query)[-20:]
    finally:
        await hub.close()


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    regex = compile_regex("(.+)+z")
    assert regex is not None
    line = "a" * 80
    started = time.perf_counter()
    for _ in range(1000):
        assert not regex.search(line)
    # Python's re takes exponential time here (minutes for one 80-character line)
    assert time.perf_counter() - started < 5.0
    assert regex.search("xyZ")  # case-insensitive


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "invalid escape sequence"),
        ("(?=a)b", "invalid perl operator"),
        ("(?<!a)b", "invalid perl operator"),
        ("[", "missing ]"),
        ("\ud800", "not valid Unicode"),
        ("a" * 1001, "longer than 1000"),
        ("a{1000}{1000}", "bad repetition"),
        ("(.{1000}.{1000})z", "too complex"),
    ],
)
def test_a_refused_pattern_says_why(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        compile_regex(pattern)


def test_a_line_with_a_lone_surrogate_is_searched() -> None:
    regex = compile_regex("ab")
    assert regex is not None
    assert regex.search("x\ud800ab")
    assert not regex.search("\udc80")


async def test_sqlite_searches_on_re2_within_the_window(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "h.db")
    await store.open()
    try:
        texts = ["a" * 80] * 5000 + ["zzz"]
        records = [LogRecord(i + 1, 1.0, Level.INFO, t, Stream.STDOUT, "app", 1) for i, t in enumerate(texts)]
        store.write(records)
        query = Query(regex=compile_regex("(.+)+z"))
        started = time.perf_counter()
        found = await store.read("app", query=query, limit=10)
        assert time.perf_counter() - started < 5.0
        assert [r.seq for r in found] == [5001]
        assert await store.read("app", query=query, upto=5000) == []
        assert [r.seq for r in await store.tail("app", 5, query=query, after=4000)] == [5001]
        assert await store.tail("app", 5, query=query, before=5000) == []
    finally:
        await store.close()


async def test_a_tail_can_look_through_the_whole_history(small_scan: None) -> None:
    hub = await _hub(MemoryStore(), 400, 100)
    try:
        query = Query(text="line 7 ")
        assert await hub.tail("app", 1, query=query, scan=60) == []  # beyond the window
        found = await hub.tail("app", 1, query=query, scan=None)
        assert [r.seq for r in found] == [7]
    finally:
        await hub.close()


async def test_a_search_that_runs_out_of_time_says_where_it_got_to(
    small_scan: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = iter(range(10**9))
    monkeypatch.setattr(reads_mod, "clock", lambda: next(ticks) * 0.75)  # every look costs 0.75 s
    monkeypatch.setattr(reads_mod, "SCAN_CHUNK", 8)
    hub = await _hub(MemoryStore(), 400, 100)
    try:
        query = Query(text="needle")
        want = _expected(await _all(hub), query)
        got: list[int] = []
        cursor: int | None = 0
        short_windows = 0
        while cursor is not None:
            page = await hub.read_page("app", after=cursor, limit=1000, query=query)
            if page.next is not None and page.cursor - cursor < reads_mod.SCAN_ROWS:
                short_windows += 1
            got += [r.seq for r in page.records]
            cursor = page.next
        assert got == want
        assert short_windows > 0  # the deadline, not the window, ended some calls
        back: list[int] = []
        before: int | None = None
        while True:
            tail = await hub.tail_page("app", 1000, before=before, query=query)
            back[:0] = [r.seq for r in tail.records]
            if tail.before is None:
                break
            before = tail.before
        assert back == want
    finally:
        await hub.close()


@pytest.mark.parametrize("query", [{}, {"q": "needle"}], ids=["all", "filtered"])
async def test_polling_on_from_a_tail_misses_no_line_that_came_while_it_read(
    query: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`GET /logs?tail=` answers `next` and `cursor` up to the seq the read looked down
    from: lines that came while it read are above them, so `after=next` finds them.
    Before, the route read the last seq after the read and skipped them."""
    hub = await _hub(MemoryStore(), 200, 100)
    engine = SimpleNamespace(processes={}, hub=hub)
    read_tail = reads_mod.History.tail

    async def tail_while_lines_come(self: reads_mod.History, *args: object) -> reads_mod.TailPage:
        page = await read_tail(self, *args)  # type: ignore[arg-type]
        texts = _texts(14, 201)
        hub.lines("app", 1, Stream.STDOUT, 1.0, Lines(texts, [Level.INFO] * 14, [False] * 14))
        return page

    monkeypatch.setattr(reads_mod.History, "tail", tail_while_lines_come)
    try:
        answer = orjson.loads((await history.get_logs("app", engine, tail=3, **query)).body)
        assert answer["next"] == answer["cursor"] == 200
        assert [log["seq"] for log in answer["logs"]][-1] == (200 if not query else 196)
        monkeypatch.setattr(reads_mod.History, "tail", read_tail)
        on = orjson.loads((await history.get_logs("app", engine, after=answer["next"], **query)).body)
        wanted = list(range(201, 215)) if not query else [203, 210]
        assert [log["seq"] for log in on["logs"]] == wanted
    finally:
        await hub.close()


async def _history_of(sub: Subscription) -> list[int]:
    """The seqs of `sub`'s history events, up to its historical_complete."""
    seqs: list[int] = []
    while True:
        for kind, item in await sub.next():
            if kind is EventType.HISTORICAL_COMPLETE:
                return seqs
            assert kind is EventType.HISTORICAL
            seqs.append(item.seq)  # type: ignore[union-attr]


@pytest.mark.usefixtures("small_scan")
@settings(max_examples=25, deadline=None)
@given(
    total=st.integers(0, 300),
    memory=st.integers(1, 200),
    lines=st.integers(0, 60),
    text=st.sampled_from(["needle", "line 1", "hay", "nothing"]),
)
async def test_a_filtered_stream_gets_the_last_lines_that_match(
    total: int, memory: int, lines: int, text: str
) -> None:
    hub = await _hub(MemoryStore(), total, memory)
    try:
        query = Query(text=text)
        with await hub.subscribe("app", lines=lines, query=query) as sub:
            got = await _history_of(sub)
        everything = await _all(hub)
        assert got == _expected(everything, query)[-lines:] if lines else got == []
    finally:
        await hub.close()


async def test_a_filtered_stream_holds_no_history_in_memory(tmp_path: Path) -> None:
    """Streams with a filtered `lines=` read their history a page at a time: before, each
    held up to 100,000 records from their start on (35 MB a stream in a review)."""
    store = SqliteStore(tmp_path / "h.db")
    await store.open()
    hub = await _hub(store, 30_000, 1000)
    try:
        query = Query(text="hay")  # six lines of seven
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        subs = [await hub.subscribe("app", lines=20_000, query=query) for _ in range(5)]
        held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        assert held < 2_000_000, held  # 5 x 20,000 records from SQLite are over 20 MB
        want = _expected(await _all(hub), query)[-20_000:]
        for sub in subs:
            assert await _history_of(sub) == want
            sub.close()
    finally:
        await hub.close()


@pytest.mark.parametrize("store_kind", ["sqlite", "memory"])
async def test_a_regex_search_of_the_store_stops_at_its_deadline_within_a_line(
    store_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regex may cost long on each line (a review's `(.*a){5}(.*){150}` took 0.8 ms a
    line, 10 s a request): a search of the store looks at the clock after every line, and
    says where it got to. Before, it looked only between windows of 20,000 rows."""
    store: SqliteStore | MemoryStore = MemoryStore()
    if store_kind == "sqlite":
        store = SqliteStore(tmp_path / "h.db")
        await store.open()
    hub = await _hub(store, 600, 100)  # most of it in the store
    ticks = iter(range(10**9))
    monkeypatch.setattr(reads_mod, "clock", lambda: next(ticks) * 0.75)  # every look costs 0.75 s
    try:
        query = Query(regex=compile_regex(r"needle"), levels=frozenset(Level))
        want = _expected(await _all(hub), query)
        got: list[int] = []
        cursor: int | None = 0
        widest = 0
        while cursor is not None:
            page = await hub.read_page("app", after=cursor, limit=1000, query=query)
            got += [r.seq for r in page.records]
            widest = max(widest, page.cursor - cursor)
            cursor = page.next
        assert got == want
        assert widest <= 5  # three or four lines in the 2 s a call has
        back: list[int] = []
        before: int | None = None
        deepest = 0
        while True:
            tail = await hub.tail_page("app", 1000, before=before, query=query)
            back[:0] = [r.seq for r in tail.records]
            if tail.before is None:
                break
            deepest = max(deepest, (before or 600) - tail.before)
            before = tail.before
        assert back == want
        assert deepest <= 5
    finally:
        await hub.close()


async def test_a_download_formats_its_pages_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Formatting 10,000 lines takes tens of ms: 8 downloads at once held /healthz over a
    second in a review, when each page was formatted on the loop."""
    hub = await _hub(MemoryStore(), 250, 100)
    engine = SimpleNamespace(processes={}, hub=hub)
    threads: list[threading.Thread] = []
    format_page = history._download_text

    def recorded(*args: Any) -> bytes:
        threads.append(threading.current_thread())
        return format_page(*args)

    monkeypatch.setattr(history, "_download_text", recorded)
    monkeypatch.setattr(history, "MAX_PAGE", 100)
    try:
        response = await history.download_logs("app", engine)
        body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[misc]
        lines = body.decode().splitlines()
        assert len(lines) == 250 and lines[-1].endswith("line 250 hay")
        assert len(threads) == 3 and threading.current_thread() not in threads
    finally:
        await hub.close()


async def test_a_stream_with_a_regex_never_runs_it_on_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A regex RE2 takes in linear time may still cost 5 ms on a 1,000-byte line (a
    review's `(.*a){5}(.*){150}`: 51 ms on 8,000 bytes): a live stream filtered by one
    would hold the event loop for seconds a second. Its windows are matched in a filter
    thread, history and live lines alike, and the stream still gets exactly its lines."""
    hub = await _hub(MemoryStore(), 300, 100)  # history in the store and in the ring
    query = Query(regex=compile_regex(r"needle"))
    want = _expected(await _all(hub), query)
    loop_thread = threading.current_thread()
    searched_on: set[threading.Thread] = set()
    search = Regex.search

    def recorded(self: Regex, text: str) -> bool:
        searched_on.add(threading.current_thread())
        return search(self, text)

    monkeypatch.setattr(Regex, "search", recorded)
    try:
        with await hub.subscribe("app", after=0, query=query) as sub:
            assert await _history_of(sub) == want
            texts = _texts(50, 301)
            hub.lines("app", 1, Stream.STDOUT, 1.0, Lines(texts, [Level.INFO] * 50, [False] * 50))
            live: list[int] = []
            while len(live) < 7:
                entries = await sub.next()
                assert all(kind is EventType.REALTIME for kind, _ in entries)
                live += [item.seq for _, item in entries]  # type: ignore[union-attr]
            assert live == [seq for seq in range(301, 351) if seq % 7 == 0]
        assert searched_on and loop_thread not in searched_on
    finally:
        await hub.close()


@pytest.mark.parametrize("start", ["lines", "after"])
async def test_a_clear_while_a_filtered_stream_reads_its_history_is_a_gap(start: str) -> None:
    """A filtered `lines=N` reads its history as a filtered resume does: lines cleared
    while it reads are announced as a `cleared` gap, not skipped (a review found 21,160
    lines gone without one, when the history was read as search pages)."""
    hub = await _hub(MemoryStore(), 3000, 100)
    try:
        query = Query(text="needle")
        first = _expected(await _all(hub), query)[-200]
        if start == "lines":
            sub = await hub.subscribe("app", lines=200, query=query)
        else:
            sub = await hub.subscribe("app", after=first - 1, query=query)
        got: list[tuple[EventType, object]] = []
        got += await sub.next(20)
        await hub.clear("app", 2000)
        while not any(kind is EventType.HISTORICAL_COMPLETE for kind, _ in got):
            got += await sub.next(20)
        sub.close()
        seqs = [item.seq for kind, item in got if kind is EventType.HISTORICAL]  # type: ignore[union-attr]
        gaps = [item for kind, item in got if kind is EventType.GAP]
        assert seqs[0] == first and len(gaps) == 1
        gap = gaps[0]
        assert isinstance(gap, Gap) and gap.reason == "cleared" and gap.end == 2000
        # every match is there but those the gap names
        assert seqs == [s for s in range(first, 3001) if s % 7 == 0 and not gap.start <= s <= gap.end]
    finally:
        await hub.close()
