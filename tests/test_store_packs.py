"""Packs: a flood's lines stored many to a row of SQLite (`store/packs.py`). Whatever goes
in as packs or as rows of their own, every read, tail, filter, retention and clear must
answer exactly as a store of one record per line does (the model: tests/fakes.py's
MemoryStore)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logcast.store.packs as packs
import logcast.store.sqlite as sqlite_engine
from logcast.errors import StoreError
from logcast.query import Query, compile_regex
from logcast.store import SqliteStore
from logcast.types import Level, LogRecord, ProcessState, Stream, line_bytes
from tests.fakes import MemoryStore
from tests.store_contract import fill_until_full, opened, write


def _count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def _arrival(
    first: int, n: int, *, at: float = 1_763_800_000.0, stream: Stream = Stream.STDOUT
) -> list[LogRecord]:
    """`n` lines that came in one read: one time, one stream, as capture numbers them."""
    levels = [Level.INFO, Level.DEBUG, Level.WARNING, Level.ERROR, Level.INFO]
    return [
        LogRecord(
            seq,
            at,
            levels[seq % 5],
            f"{seq:07d} GET /x ü"
            if seq % 7 == 0 and seq < 5000
            else f"{seq:07d} GET /x",  # later packs: ASCII
            stream,
            "p",
            1,
            seq % 11 == 0,
            None,
        )
        for seq in range(first, first + n)
    ]


async def test_a_flood_goes_in_as_packs_and_reads_back_line_for_line(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    flood = (
        _arrival(1, 9000)
        + _arrival(9001, 30, at=1_763_800_001.0)
        + _arrival(9031, 3000, stream=Stream.STDERR)
    )
    async with opened(lambda: SqliteStore(path)) as store:
        await write(store, flood)
        assert _count(path, "records") == 30  # an arrival of fewer than PACK_MIN lines: a row each
        assert _count(path, "packs") == 4  # 9,000 lines in 4,096, 4,096 and 808; 3,000 in one
        assert await store.read("p", limit=20_000) == flood
        assert await store.read("p", after=4095, limit=3) == flood[4095:4098]  # across two packs
        assert await store.read("p", after=8191, limit=2) == flood[8191:8193]  # a full pack's last line
        assert await store.tail("p", 2, after=8190, before=8192) == flood[8190:8192]
        assert await store.read("p", after=8990, upto=9035, limit=100) == flood[8990:9035]
        assert await store.tail("p", 5) == flood[-5:]
        assert await store.tail("p", 40, before=9020) == flood[8980:9020]
        assert await store.tail("p", 10, before=9000, after=8995) == flood[8995:9000]
        for query in (
            Query(levels=frozenset({Level.ERROR})),
            Query(text="ü"),
            Query(text="0004"),
            Query(text="get /X"),  # case-folded, ASCII text
            Query(text="GET /X Ü"),  # case-folded, text that is not all ASCII
            Query(regex=compile_regex(r"^000412")),
            Query(since=1_763_800_000.5),
            Query(until=1_763_800_000.5, levels=frozenset({Level.WARNING})),
            Query(levels=frozenset()),
        ):
            want = list(filter(query.matches, flood))
            assert await store.read("p", limit=20_000, query=query) == want, query
            assert await store.tail("p", 7, query=query) == want[-7:], query
        meta = await store.meta("p")
        assert (meta.first_seq, meta.last_seq, meta.lines) == (1, 12_030, 12_030)
        assert meta.bytes == sum(line_bytes(r.message, r.partial) for r in flood)


async def test_arrivals_of_two_streams_at_one_time_keep_their_streams(tmp_path: Path) -> None:
    """stdout and stderr read at the same instant are two arrivals, not one pack."""
    path = tmp_path / "h.sqlite3"
    flood = _arrival(1, 500) + _arrival(501, 500, stream=Stream.STDERR) + _arrival(1001, 100)
    async with opened(lambda: SqliteStore(path)) as store:
        await write(store, flood)
        assert _count(path, "packs") == 3
        assert await store.read("p", limit=2_000) == flood


async def test_a_text_with_a_newline_of_its_own_is_never_packed(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    lines = _arrival(1, 200)
    lines[100] = lines[100]._replace(message="two\nlines")
    async with opened(lambda: SqliteStore(path)) as store:
        await write(store, lines)
        assert await store.read("p", limit=500) == lines
        assert await store.read("p", after=99, limit=2) == lines[99:101]


async def test_long_lines_make_smaller_packs_or_rows_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    long = [r._replace(message=f"{r.seq} " + "y" * 20_000) for r in _arrival(1, 100)]
    short = _arrival(101, 1000)
    async with opened(lambda: SqliteStore(path)) as store:
        await write(store, long + short)
        # 64 lines of 20 kB would make a 1.3 MB pack: 13 fit in 256 KiB, so the first 91
        # go a row each, and the last 9 begin a pack with the short lines
        assert _count(path, "records") == 91
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT seq, last, max(length(message)) FROM packs").fetchone()[:2] == (92, 1100)
        assert conn.execute("SELECT max(length(message)) FROM packs").fetchone()[0] <= packs.PACK_BYTES + 1100
        conn.close()
        assert await store.read("p", limit=2000) == long + short


async def test_retention_and_clear_that_end_inside_a_pack_cut_it_exactly(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    async with opened(lambda: SqliteStore(path, retain_lines=1000)) as store:
        lines = _arrival(1, 2500)
        await write(store, lines)  # one pack of 2,500; keep the last 1,000 seqs
        assert [r.seq for r in await store.read("p", limit=5000)] == list(range(1501, 2501))
        assert (await store.meta("p")).first_seq == 1501
        await store.clear("p", 1800)
        assert await store.read("p", limit=5000) == lines[1800:]
        assert await store.read("p", after=0, limit=3) == lines[1800:1803]
        assert await store.tail("p", 2000) == lines[1800:]
        assert (await store.meta("p")).first_seq == 1801
        assert _count(path, "packs") == 1
        await store.clear("p", 2500)
        assert await store.read("p") == []
        assert _count(path, "packs") == 0


async def test_a_file_without_the_packs_table_gets_it(tmp_path: Path) -> None:
    """A file of the version before packs: its rows stay as they are, a flood packs."""
    path = tmp_path / "h.sqlite3"
    async with opened(lambda: SqliteStore(path)) as store:
        await write(store, _arrival(1, 10, at=5.0))
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE packs")
    conn.close()
    async with opened(lambda: SqliteStore(path)) as store:
        assert [r.seq for r in await store.read("p")] == list(range(1, 11))
        await write(store, _arrival(11, 500))
        assert _count(path, "packs") == 1
        assert [r.seq for r in await store.read("p", limit=1000)] == list(range(1, 511))


# -- against the model: a record a line ----------------------------------------------------

_TEXTS = st.text(alphabet=st.sampled_from(["a", "B", " ", "é", "ß", "\n", "x"]), max_size=6)


@st.composite
def _history(draw: st.DrawFn) -> list[list[LogRecord]]:
    """Batches of arrivals (lines of one read: one time, stream and run) of two
    processes, with now and then a status record or a new run between them."""
    next_seq = {"a": 1, "b": 1}
    runs = {"a": 1, "b": 1}
    batches: list[list[LogRecord]] = []
    for _ in range(draw(st.integers(1, 5))):
        batch: list[LogRecord] = []
        for _ in range(draw(st.integers(1, 4))):
            process = draw(st.sampled_from(["a", "b"]))
            if draw(st.integers(0, 6)) == 0:
                runs[process] += 1
            at = draw(st.sampled_from([10.0, 20.0, 30.0]))
            stream = draw(st.sampled_from([Stream.STDOUT, Stream.STDERR]))
            if draw(st.integers(0, 8)) == 0:
                batch.append(
                    LogRecord(
                        next_seq[process],
                        at,
                        Level.INFO,
                        "exited",
                        Stream.SYSTEM,
                        process,
                        runs[process],
                        False,
                        ProcessState.EXITED,
                    )
                )
                next_seq[process] += 1
            for _ in range(draw(st.integers(1, 14))):
                batch.append(
                    LogRecord(
                        next_seq[process],
                        at,
                        draw(st.sampled_from([Level.INFO, Level.ERROR, Level.DEBUG])),
                        draw(_TEXTS),
                        stream,
                        process,
                        runs[process],
                        draw(st.integers(0, 5)) == 0,
                        None,
                    )
                )
                next_seq[process] += 1
        batches.append(sorted(batch, key=lambda r: (r.process, r.seq)))
    return batches


_QUERIES = st.one_of(
    st.none(),
    st.builds(
        Query, levels=st.sampled_from([frozenset({Level.ERROR}), frozenset({Level.INFO, Level.DEBUG})])
    ),
    st.builds(Query, text=st.sampled_from(["a", "é", "SS", "b x"])),
    st.builds(Query, regex=st.sampled_from([compile_regex("^a"), compile_regex("x$"), compile_regex("é")])),
    st.builds(Query, since=st.sampled_from([15.0, 30.0]), until=st.sampled_from([25.0, 31.0])),
    st.builds(Query, text=st.just("a"), keep_status=st.just(True)),
)
_BOUND = st.one_of(st.none(), st.integers(-3, 80))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=_history(),
    reads=st.lists(st.tuples(_BOUND, _BOUND, st.integers(1, 30), _QUERIES), min_size=1, max_size=6),
    retain=st.sampled_from([1000, 25]),
    clear=st.one_of(st.none(), st.integers(0, 60)),
)
def test_packs_read_as_a_record_a_line_would(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    history: list[list[LogRecord]],
    reads: list[tuple[int | None, int | None, int, Query | None]],
    retain: int,
    clear: int | None,
) -> None:
    """Small packs (3 to 5 lines, at most 30 characters of text) so that every read ends
    inside one, against the model of a record a line. Reads look back PACK_MAX for the
    pack holding a seq: 5 here, so that a window one too short would show."""
    monkeypatch.setattr(packs, "PACK_MIN", 3)
    monkeypatch.setattr(packs, "PACK_MAX", 5)
    monkeypatch.setattr(packs, "PACK_BYTES", 30)
    path = tmp_path_factory.mktemp("packs") / "h.sqlite3"
    model = MemoryStore(retain_lines=retain)

    async def check() -> None:
        async with opened(lambda: SqliteStore(path, retain_lines=retain)) as store:
            for batch in history:
                await write(store, batch)
                model.write(batch)
            if clear is not None:
                await store.clear("a", clear)
                await model.clear("a", clear)
            for process in ("a", "b"):
                for low, high, n, query in reads:
                    after = low or 0
                    assert await store.read(
                        process, after=after, limit=n, query=query, upto=high
                    ) == await model.read(process, after=after, limit=n, query=query, upto=high), (
                        process,
                        after,
                        high,
                        n,
                        query,
                    )
                    assert await store.tail(
                        process, n, before=high, after=low, query=query
                    ) == await model.tail(process, n, before=high, after=low, query=query), (
                        process,
                        high,
                        low,
                        n,
                        query,
                    )
                assert (await store.meta(process)).first_seq == (await model.meta(process)).first_seq

    asyncio.run(check())


async def test_a_commit_between_the_two_tables_reads_leaves_no_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read asks `records`, then `packs`: a batch committed in between (a few ordinary
    lines, then a flood's arrival) must be seen by both or by neither. Found by a review:
    each statement had its own snapshot, and the read missed the ordinary lines while
    it returned the pack after them (a false gap for a reader)."""
    path = tmp_path / "h.sqlite3"
    async with opened(lambda: SqliteStore(path)) as store:
        await write(store, _arrival(1, 10, at=1.0))
        late = _arrival(11, 10, at=2.0) + _arrival(21, 200, at=3.0)
        real = sqlite_engine._decode
        landed: list[int] = []

        def decode_then_commit(process: str, rows: list[tuple[object, ...]]) -> list[LogRecord]:
            if not landed:  # between the two statements of this read
                store.write(late)
                landed.append(len(late))
            return real(process, rows)

        monkeypatch.setattr(sqlite_engine, "_decode", decode_then_commit)
        for read in (lambda: store.read("p", limit=1000), lambda: store.tail("p", 1000)):
            landed.clear()
            got = [r.seq for r in await read()]
            assert landed and got == list(range(1, len(got) + 1)), got
        monkeypatch.setattr(sqlite_engine, "_decode", real)
        assert [r.seq for r in await store.read("p", limit=1000)] == list(range(1, 221))


async def test_a_file_of_a_later_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    async with opened(lambda: SqliteStore(path)) as store:
        await write(store, _arrival(1, 100))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_engine.SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {sqlite_engine.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=r"newer logcast .* would miss lines"):
        async with opened(lambda: SqliteStore(path)):
            pass


async def test_a_full_disk_mid_flood_leaves_no_half_pack_and_the_retry_stores_it_once(tmp_path: Path) -> None:
    """max_page_count caps the file, as a full disk would: the pack that does not fit
    leaves no trace, and once there is room the same batch goes in once."""
    path = tmp_path / "h.sqlite3"
    async with opened(lambda: SqliteStore(path, pragmas={"max_page_count": 96})) as store:
        seq, failed = await fill_until_full(
            store,
            lambda first: [r._replace(message=f"{r.seq:07d} " + "y" * 200) for r in _arrival(first, 200)],
            200,
        )
        assert seq, "nothing fitted"
        assert _count(path, "packs") == seq // 200  # each batch that fitted is one pack, whole
        meta = await store.meta("p")
        assert (meta.last_seq, meta.lines) == (seq, seq)
        assert [r.seq for r in await store.read("p", limit=100_000)] == list(range(1, seq + 1))
        await store.clear("p", seq - 100)  # room, by a clear that cuts the last pack
        await write(store, failed)
        await write(store, failed)  # a retry of what is stored already adds nothing
        assert [r.seq for r in await store.read("p", limit=100_000)] == list(range(seq - 99, seq + 201))
        assert (await store.read("p", after=seq, limit=500)) == failed
        assert (await store.meta("p")).lines == seq + 200
