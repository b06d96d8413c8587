"""The behaviour every store engine must have, written once and run against each engine.

A test module subclasses `StoreContract` and provides a `factory` fixture: a callable
`factory(retain_lines=…)` that builds an unopened store over the same storage every
time it is called (the same SQLite file, the same Redis prefix), so that reopening
is "call the factory again". Filters are checked against `Query.matches` on the same
data, with hypothesis choosing the queries.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logcast.errors import StoreError
from logcast.query import Query, compile_regex, parse_levels
from logcast.store.base import ProcessMeta, Store
from logcast.types import Level, LogRecord, ProcessState, Stream, line_bytes

Factory = Callable[..., Store]

T0 = 1_763_800_000.0


def rec(
    seq: int,
    message: str | None = None,
    *,
    process: str = "p",
    level: Level = Level.INFO,
    stream: Stream = Stream.STDOUT,
    run: int = 1,
    partial: bool = False,
    state: ProcessState | None = None,
    timestamp: float | None = None,
) -> LogRecord:
    return LogRecord(
        seq=seq,
        timestamp=T0 + seq / 8 if timestamp is None else timestamp,
        level=level,
        message=f"line {seq}" if message is None else message,
        stream=stream,
        process=process,
        run=run,
        partial=partial,
        state=state,
    )


def status(seq: int, state: ProcessState, *, process: str = "p", run: int = 1) -> LogRecord:
    return rec(
        seq, f"{process} is {state.value}", process=process, stream=Stream.SYSTEM, state=state, run=run
    )


async def write(store: Store, records: Sequence[LogRecord]) -> None:
    """As the hub does: synchronously, in a thread that is not the event loop's."""
    await asyncio.to_thread(store.write, records)


async def fill_until_full(
    store: Store, batch_at: Callable[[int], list[LogRecord]], size: int
) -> tuple[int, list[LogRecord]]:
    """Write batches of `size` records (`batch_at(first_seq)`) until the store reports
    itself full (a capped file, as a full disk would be): the last seq written, and the
    batch that did not fit. Fails if the store never fills up."""
    seq = 0
    for _ in range(1000):
        batch = batch_at(seq + 1)
        try:
            await write(store, batch)
        except StoreError as exc:
            assert "full" in str(exc)
            return seq, batch
        seq += size
    raise AssertionError("the database never filled up")


@asynccontextmanager
async def opened(factory: Factory, **kwargs: Any) -> AsyncIterator[Store]:
    store = factory(**kwargs)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- a mixed data set for the filter tests ---------------------------------------------------

WORDS = [
    "GET /api/items 200",
    "Error: boom",
    "ERROR connection refused",
    "warning: disk 91% full",
    "ÉCOLE",
    "école",
    "straße",
    "STRASSE",
    "Kelvin \u212a",  # KELVIN SIGN, folds to "k"
    "ſtop",  # LONG S, folds to "s"
    "İstanbul",
    "日本語のログ",
    "progress 50%_done",
    "a.b*c",
    "tab\there",
    "nul\x00byte",
    "",
    "\x1b[32mINFO\x1b[0m:     started",  # coloured, as uvicorn writes it: searched as shown
    "\x1b[1mGET /x\x1b[0m 200",
]
TEXTS = [
    "error",
    "ERROR",
    "ss",
    "SS",
    "ß",
    "é",
    "É",
    "école",
    "k",
    "s",
    "st",
    "日本",
    "%",
    "_",
    "a.b",
    "\t",
    "İ",
    "i",
    "\x00",
    "byte",
    "info:",
    "get /x 200",
    "[32m",
]
REGEXES = [
    r"err(or)?",
    r"^\w+$",
    r"\d{2}%",
    "STRA(ß|SS)E",
    "日本",
    "[k]",
    "^$",
    r"\bget\b",
    "é|É",
    r"\s",
    "INFO: +s",
    "x 200",
]


def dataset(process: str = "p", n: int = 300, seed: int = 7) -> list[LogRecord]:
    rng = random.Random(seed)
    out: list[LogRecord] = []
    ts = T0
    for seq in range(1, n + 1):
        ts += rng.choice([0.0, 0.001, 0.25, 1.0])  # ties on purpose
        jitter = rng.choice([0.0, 0.0, 0.0, -0.002])  # threads stamp slightly out of order
        if rng.random() < 0.1:
            state = rng.choice(list(ProcessState))
            out.append(
                LogRecord(
                    seq,
                    ts + jitter,
                    Level.INFO,
                    f"state {state.value}",
                    Stream.SYSTEM,
                    process,
                    1,
                    False,
                    state,
                )
            )
            continue
        message = " ".join(rng.sample(WORDS, rng.randint(0, 3)))
        out.append(
            LogRecord(
                seq,
                ts + jitter,
                rng.choice(list(Level)),
                message,
                rng.choice([Stream.STDOUT, Stream.STDERR]),
                process,
                rng.randint(1, 3),
                rng.random() < 0.1,
            )
        )
    return out


DATA = dataset()
OTHER = dataset("other", n=80, seed=8)
TIMES = sorted({r.timestamp for r in DATA})

level_sets = st.one_of(
    st.none(),
    st.frozensets(st.sampled_from(list(Level))),
    st.sampled_from([level.value for level in Level]).map(parse_levels),
)
times = st.one_of(st.none(), st.sampled_from(TIMES), st.floats(min_value=T0 - 1, max_value=TIMES[-1] + 1))
queries = st.builds(
    Query,
    levels=level_sets,
    text=st.one_of(st.none(), st.sampled_from(TEXTS), st.text(alphabet="abcsSkKéÉß日%_ .", max_size=3)),
    regex=st.one_of(st.none(), st.sampled_from(REGEXES).map(compile_regex)),
    since=times,
    until=times,
    keep_status=st.booleans(),
)


class StoreContract:
    """Subclasses provide the `factory` fixture."""

    @pytest.fixture
    async def store(self, factory: Factory) -> AsyncIterator[Store]:
        async with opened(factory) as store:
            yield store

    # -- write, read, tail ----------------------------------------------------------------

    async def test_roundtrip_keeps_every_field(self, store: Store) -> None:
        records = [
            status(1, ProcessState.STARTING),
            rec(2, "plain ascii", level=Level.DEBUG),
            rec(3, "ünïcödé — 日本語 — emoji 🎉", level=Level.WARNING, stream=Stream.STDERR, run=2),
            rec(4, "half a line", partial=True, level=Level.SUCCESS),
            rec(5, "x" * 65536, level=Level.ERROR),
            rec(6, "é" * 32768, partial=True, level=Level.CRITICAL),  # 64 KiB of UTF-8
            rec(7, "", timestamp=T0 + 0.123456789),
            rec(8, "\x1b[31mred\x1b[0m\ttab \\ ' \" % _", run=3),
            status(9, ProcessState.CRASHED, run=3),
        ]
        await write(store, records)
        assert await store.read("p") == records
        assert await store.tail("p", 100) == records
        got = await store.read("p")
        assert [r.state for r in got] == [r.state for r in records]
        assert all(type(r.level) is Level and type(r.stream) is Stream for r in got)

    async def test_unknown_process_is_empty(self, store: Store) -> None:
        assert await store.read("nobody") == []
        assert await store.tail("nobody", 10) == []
        assert await store.meta("nobody") == ProcessMeta()
        assert await store.processes() == []
        await store.clear("nobody", 10)

    async def test_empty_batch_is_a_no_op(self, store: Store) -> None:
        await write(store, [])
        assert await store.processes() == []
        assert store.stats.written == 0

    async def test_read_pages_oldest_first(self, store: Store) -> None:
        records = [rec(seq) for seq in range(1, 26)]
        await write(store, records[:10])
        await write(store, records[10:])
        pages: list[list[LogRecord]] = []
        after = 0
        while page := await store.read("p", after=after, limit=7):
            pages.append(page)
            after = page[-1].seq
        assert [len(p) for p in pages] == [7, 7, 7, 4]
        assert [r for p in pages for r in p] == records
        assert await store.read("p", after=25) == []
        assert await store.read("p", after=3, limit=2) == records[3:5]
        assert await store.read("p", limit=0) == []

    async def test_tail_with_before(self, store: Store) -> None:
        records = [rec(seq) for seq in range(1, 31)]
        await write(store, records)
        assert await store.tail("p", 5) == records[-5:]
        assert await store.tail("p", 5, before=12) == records[7:12]
        assert await store.tail("p", 100, before=3) == records[:3]
        assert await store.tail("p", 100) == records
        assert await store.tail("p", 5, before=0) == []
        assert await store.tail("p", 0) == []

    # -- filters --------------------------------------------------------------------------

    def test_filters_mean_what_query_matches_means(self, factory: Factory) -> None:
        with asyncio.Runner() as runner:
            store = factory()
            runner.run(store.open())
            try:
                runner.run(write(store, DATA + OTHER))

                @settings(
                    max_examples=120,
                    deadline=None,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow],
                )
                @given(query=queries, cut=st.integers(0, len(DATA) + 1), n=st.integers(1, 12))
                def check(query: Query, cut: int, n: int) -> None:
                    expected = [r for r in DATA if query.matches(r)]
                    assert runner.run(store.read("p", limit=10_000, query=query)) == expected
                    assert (
                        runner.run(store.read("p", after=cut, limit=n, query=query))
                        == [r for r in expected if r.seq > cut][:n]
                    )
                    assert (
                        runner.run(store.tail("p", n, before=cut, query=query))
                        == [r for r in expected if r.seq <= cut][-n:]
                    )

                check()
            finally:
                runner.run(store.close())

    async def test_coloured_text_is_searched_as_it_is_shown(self, store: Store) -> None:
        """uvicorn writes `ESC[32mINFO ESC[0m:`; a search for `INFO:` found nothing, while
        the viewer highlighted it on every row (a review)."""
        records = [rec(1, "\x1b[32mINFO\x1b[0m:     started"), rec(2, "INFO: plain"), rec(3, "other")]
        await write(store, records)
        for query in (Query(text="info:"), Query(regex=compile_regex("INFO: +s"))):
            assert [r.seq for r in await store.read("p", query=query)][:1] == [1], query
            assert [r.seq for r in await store.tail("p", 10, query=query)][:1] == [1], query
        assert await store.read("p", query=Query(text="[32m")) == []  # what is not shown is not found

    async def test_filter_examples(self, store: Store) -> None:
        records = [
            rec(1, "GET / 200", level=Level.INFO),
            rec(2, "Connection ERROR", level=Level.ERROR),
            status(3, ProcessState.EXITED),
            rec(4, "Straße closed", level=Level.WARNING),
            rec(5, "debug noise", level=Level.DEBUG),
        ]
        await write(store, records)

        async def seqs(**kwargs: Any) -> list[int]:
            return [r.seq for r in await store.read("p", query=Query(**kwargs))]

        assert await seqs(levels=parse_levels("warning")) == [2, 4]
        assert await seqs(levels=parse_levels("warning"), keep_status=True) == [2, 3, 4]
        assert await seqs(levels=parse_levels("debug,info")) == [1, 3, 5]
        assert await seqs(text="error") == [2]
        assert await seqs(text="STRASSE") == [4]
        assert await seqs(regex=compile_regex(r"^(get|debug)\b")) == [1, 5]
        assert await seqs(since=T0 + 2 / 8, until=T0 + 4 / 8) == [2, 3]
        assert await seqs(text="nothing like it", keep_status=True) == [3]

    # -- meta, clear ----------------------------------------------------------------------

    async def test_meta_counts_output_lines_not_status(self, store: Store) -> None:
        await write(
            store,
            [
                status(1, ProcessState.STARTING),
                rec(2, "abc"),
                rec(3, "日本", run=2),
                rec(4, "piece", run=2, partial=True),
                status(5, ProcessState.EXITED, run=2),
            ],
        )
        # every store counts `bytes` as the hub does (a review: the hub counted line ends, the
        # stores did not, a replica counted characters; the API's figure fell at a restart):
        # text as UTF-8, and a line end for each whole line
        expected = line_bytes("abc", False) + line_bytes("日本", False) + line_bytes("piece", True)
        assert expected == 4 + 7 + 5
        assert await store.meta("p") == ProcessMeta(
            last_seq=5, first_seq=1, lines=3, bytes=expected, last_run=2
        )
        assert await store.processes() == ["p"]

    async def test_clear_keeps_last_seq_and_counts(self, store: Store) -> None:
        await write(store, [rec(seq) for seq in range(1, 11)])
        before = await store.meta("p")
        await store.clear("p", 4)
        assert [r.seq for r in await store.read("p")] == list(range(5, 11))
        assert await store.meta("p") == ProcessMeta(
            last_seq=10, first_seq=5, lines=before.lines, bytes=before.bytes, last_run=1
        )
        await store.clear("p", 10)
        assert await store.read("p") == []
        assert await store.tail("p", 5) == []
        meta = await store.meta("p")
        assert (meta.last_seq, meta.first_seq, meta.lines) == (10, 0, 10)
        assert await store.processes() == ["p"]
        # numbering goes on after a clear
        await write(store, [rec(11), rec(12)])
        assert [r.seq for r in await store.read("p")] == [11, 12]
        assert (await store.meta("p")).first_seq == 11

    # -- idempotence, retention, persistence, isolation -----------------------------------

    async def test_rewriting_a_batch_is_a_no_op(self, store: Store) -> None:
        batch = [rec(seq) for seq in range(1, 11)]
        await write(store, batch)
        meta = await store.meta("p")
        await write(store, batch)
        await write(store, batch[3:7])
        assert await store.read("p") == batch
        assert await store.meta("p") == meta
        overlapping = [rec(seq) for seq in range(8, 16)]  # half old, half new
        await write(store, overlapping)
        assert [r.seq for r in await store.read("p")] == list(range(1, 16))
        assert (await store.meta("p")).lines == 15
        assert store.stats.written == 15

    async def test_retention_drops_the_oldest(self, factory: Factory) -> None:
        async with opened(factory, retain_lines=10) as store:
            for start in range(1, 501, 7):
                await write(store, [rec(seq) for seq in range(start, min(start + 7, 501))])
            meta = await store.meta("p")
            assert meta.last_seq == 500
            assert meta.lines == 500
            assert meta.first_seq > 1
            kept = await store.read("p", limit=10_000)
            assert kept[0].seq == meta.first_seq
            assert [r.seq for r in kept] == list(range(meta.first_seq, 501))  # contiguous, newest kept
            assert len(kept) >= 10

    async def test_idle_keeps_what_was_written(self, store: Store) -> None:
        """`idle` (the writer had nothing to do) is upkeep only: before any write and
        after some, nothing is lost or changed."""
        await asyncio.to_thread(store.idle)
        records = [rec(seq, f"line {seq}") for seq in range(1, 301)]
        await write(store, records)
        await asyncio.to_thread(store.idle)
        await asyncio.to_thread(store.idle)
        assert await store.read("p", limit=1000) == records
        assert (await store.meta("p")).lines == 300

    async def test_history_survives_reopening(self, factory: Factory) -> None:
        batch = [status(1, ProcessState.RUNNING)] + [rec(seq, f"é {seq}") for seq in range(2, 40)]
        other = [rec(seq, process="q") for seq in range(1, 5)]
        async with opened(factory) as store:
            await write(store, batch + other)
            await store.clear("q", 2)
            meta = await store.meta("p")
        async with opened(factory) as store:
            assert await store.read("p", limit=1000) == batch
            assert await store.meta("p") == meta
            assert await store.processes() == ["p", "q"]
            assert [r.seq for r in await store.read("q")] == [3, 4]
            await write(store, batch)  # a retry after the restart: already stored
            assert await store.meta("p") == meta
            await write(store, [rec(40)])
            assert (await store.meta("p")).last_seq == 40
            assert (await store.tail("p", 1))[0].seq == 40

    async def test_many_processes_are_isolated(self, store: Store) -> None:
        names = [f"proc-{i}" for i in range(12)] + ["with space", "with:colon", "日本"]
        batch = [rec(seq, f"{name} {seq}", process=name) for seq in range(1, 21) for name in names]
        await write(store, batch)
        assert await store.processes() == sorted(names)
        for name in names:
            got = await store.read(name, limit=100)
            assert [r.seq for r in got] == list(range(1, 21))
            assert all(r.process == name and r.message.startswith(name) for r in got)
        await store.clear("proc-3", 20)
        assert await store.read("proc-3") == []
        assert len(await store.read("proc-4")) == 20
        assert (await store.meta("proc-3")).last_seq == 20

    async def test_reservations_survive_reopening(self, factory: Factory) -> None:
        async with opened(factory) as store:
            await asyncio.to_thread(store.reserve, {"p": 500, "never-written": 30})
            await write(store, [rec(seq) for seq in range(1, 4)])
            await asyncio.to_thread(store.reserve, {"p": 900})
            assert (await store.meta("p")).reserved == 900
        async with opened(factory) as store:
            meta = await store.meta("p")
            assert (meta.last_seq, meta.reserved) == (3, 900)
            assert (await store.meta("never-written")).reserved == 30
            assert "never-written" in await store.processes()
            assert (await store.meta("nobody")).reserved == 0
