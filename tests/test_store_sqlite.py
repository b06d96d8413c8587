"""The SQLite engine: the shared contract, plus what only an embedded file can do wrong
(a locked or full database, blocking the event loop, big batches, closing from another thread)."""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logcast.store.sqlite as sqlite_engine
from logcast.errors import StoreError
from logcast.query import Query
from logcast.store import SqliteStore, open_store
from logcast.store.base import Store
from logcast.types import Level, LogRecord, ProcessState, Stream, line_bytes
from tests.store_contract import Factory, StoreContract, fill_until_full, opened, rec, write


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history" / "history.sqlite3"


@pytest.fixture
def factory(db_path: Path) -> Factory:
    def make(**kwargs: Any) -> Store:
        return SqliteStore(db_path, **kwargs)

    return make


class TestSqliteContract(StoreContract):
    pass


async def test_locked_database_raises_store_error_then_a_retry_succeeds(db_path: Path) -> None:
    async with opened(lambda: SqliteStore(db_path, busy_timeout=0.01)) as store:
        await write(store, [rec(1)])
        other_connection = sqlite3.connect(db_path, isolation_level=None)
        batch = [rec(seq) for seq in range(2, 12)]
        other_connection.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            with pytest.raises(StoreError, match="locked"):
                await write(store, batch)
            assert store.stats.errors == 1
            assert store.stats.last_error is not None and "locked" in store.stats.last_error
            assert [r.seq for r in await store.read("p")] == [1]  # readers are not held up (WAL)
        finally:
            other_connection.execute("ROLLBACK")
            other_connection.close()
        await write(store, batch)
        assert [r.seq for r in await store.read("p")] == list(range(1, 12))
        meta = await store.meta("p")
        assert (meta.last_seq, meta.lines) == (11, 11)
        assert store.stats.written == 11
        assert store.stats.errors == 1


async def test_full_disk_raises_store_error_and_nothing_is_half_written(db_path: Path) -> None:
    # max_page_count caps the file, as a full disk would.
    async with opened(lambda: SqliteStore(db_path, pragmas={"max_page_count": 64})) as store:
        seq, failed = await fill_until_full(
            store, lambda first: [rec(s, "y" * 200) for s in range(first, first + 50)], 50
        )
        assert store.stats.errors == 1
        assert store.stats.last_error is not None and "full" in store.stats.last_error
        meta = await store.meta("p")
        assert (meta.last_seq, meta.lines) == (seq, seq)  # the failed batch left no trace
        assert [r.seq for r in await store.read("p", limit=100_000)] == list(range(1, seq + 1))
        # room is made (here by clearing), and the same batch goes in
        await store.clear("p", seq)
        await write(store, failed)
        assert await store.read("p", limit=100) == failed
        assert (await store.meta("p")).lines == seq + 50


async def test_reads_run_off_the_event_loop(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entered = threading.Event()
    release = threading.Event()
    threads: list[int] = []

    def slow_fold_contains(message: str, needle: str) -> bool:
        threads.append(threading.get_ident())
        entered.set()
        release.wait(30)
        return needle in message.casefold()

    # the engine registers this function on each reader connection it creates
    monkeypatch.setattr(sqlite_engine, "_fold_contains", slow_fold_contains)
    async with opened(lambda: SqliteStore(db_path)) as store:
        await write(store, [rec(1, "café"), rec(2, "tea")])
        reading = asyncio.create_task(store.read("p", query=Query(text="CAFÉ")))
        ticks = 0
        while not entered.is_set():  # the loop goes on turning while the query is inside SQLite
            ticks += 1
            await asyncio.sleep(0.005)
            assert ticks < 6000, "the query never started"
        await asyncio.sleep(0.01)
        assert not reading.done()
        release.set()
        assert [r.seq for r in await reading] == [1]
        assert threading.get_ident() not in threads


async def test_a_batch_of_200k_records(db_path: Path) -> None:
    async with opened(lambda: SqliteStore(db_path)) as store:
        batch = [rec(seq, f"request {seq} served in 1.2 ms", process="web") for seq in range(1, 200_001)]
        await write(store, batch)
        meta = await store.meta("web")
        assert (meta.first_seq, meta.last_seq, meta.lines) == (1, 200_000, 200_000)
        assert await store.tail("web", 3) == batch[-3:]
        assert await store.read("web", after=123_456, limit=2) == batch[123_456:123_458]
        assert store.stats.written == 200_000


async def test_a_batch_that_fails_outside_the_database_leaves_no_transaction_open(db_path: Path) -> None:
    """A malformed record (not the database's error) fails its batch: nothing of the batch
    is stored, and the next batch begins its own transaction and is stored whole."""
    async with opened(lambda: SqliteStore(db_path)) as store:
        await write(store, [rec(seq) for seq in range(1, 101)])
        bad: list[Any] = [rec(seq, process="q") for seq in range(1, 601)]
        bad[550] = tuple(bad[550])[:8]  # a field short, in the second block of the transposition
        with pytest.raises(ValueError):
            await write(store, [rec(seq) for seq in range(101, 201)] + bad)
        await write(store, [rec(seq) for seq in range(101, 111)])
        meta = await store.meta("p")
        assert (meta.first_seq, meta.last_seq, meta.lines) == (1, 110, 110)
        assert (await store.meta("q")).lines == 0


async def test_a_batch_may_be_any_sequence(db_path: Path) -> None:
    async with opened(lambda: SqliteStore(db_path)) as store:
        batch = collections.deque(rec(seq) for seq in range(1, 1201))
        await write(store, batch)
        assert await store.read("p", limit=2000) == list(batch)


async def test_writer_connection_closed_from_another_thread(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    writer = threading.Thread(target=store.write, args=([rec(1), rec(2)],))
    writer.start()
    writer.join()
    await store.close()  # from the event loop's thread, after the writer thread has gone
    with pytest.raises(StoreError):
        store.write([rec(3)])
    with pytest.raises(StoreError):
        await store.read("p")
    async with opened(lambda: SqliteStore(db_path)) as again:
        assert [r.seq for r in await again.read("p")] == [1, 2]


async def test_reads_need_an_open_store(db_path: Path) -> None:
    store = SqliteStore(db_path)
    with pytest.raises(StoreError, match="not open"):
        await store.read("p")
    await store.close()


async def test_file_is_in_wal_mode_and_survives_without_the_store(db_path: Path) -> None:
    async with opened(lambda: SqliteStore(db_path)) as store:
        await write(store, [rec(1, "kept")])
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT message FROM records").fetchall() == [("kept",)]
    finally:
        conn.close()


def _db_size(path: Path) -> int:
    """The size of the database file itself: in WAL mode it grows only when a checkpoint
    copies the WAL into it."""
    return path.stat().st_size


def _wal_size(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size


def _lines(first: int, count: int) -> list[LogRecord]:
    return [rec(seq, f"{seq:08d} " + "x" * 90) for seq in range(first, first + count)]


PAGES = 50  # SQLite's automatic checkpoint in these tests: after 50 pages (~200 KB)


def _autocheckpoint(store: Store) -> int:
    """The writer connection's checkpoint size now, in pages (no write is in flight)."""
    assert isinstance(store, SqliteStore) and store._writer is not None
    return int(store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


async def test_a_flood_puts_checkpoints_off_until_the_writer_is_idle_or_past_its_limit(db_path: Path) -> None:
    flood = 2 * 1024 * 1024
    async with opened(
        lambda: SqliteStore(db_path, checkpoint_pages=PAGES, flood_checkpoint_after=flood)
    ) as store:
        empty = _db_size(db_path)
        await write(store, _lines(1, 10))  # a small write: the usual checkpoint size
        assert _autocheckpoint(store) == PAGES
        for first in range(11, 6_011, 2_000):  # ~800 KB in writes of 2,000 rows: a flood
            await write(store, _lines(first, 2_000))
        assert _autocheckpoint(store) == 512  # 2 MiB of 4 KiB pages
        assert _wal_size(db_path) > 3 * PAGES * 4096  # past the usual size...
        assert _db_size(db_path) == empty  # ...and nothing was copied yet
        assert [r.seq for r in await store.tail("p", 1)] == [6_010]  # readers see it all
        await write(store, _lines(6_011, 10))  # what follows a flood does not wait for a checkpoint
        assert _db_size(db_path) == empty
        await asyncio.to_thread(store.idle)  # the writer had nothing to do for a while
        assert _db_size(db_path) > 700_000  # the flood, copied in one go
        assert _autocheckpoint(store) == PAGES

        grown = _db_size(db_path)
        for first in range(6_021, 26_021, 2_000):  # ~2.7 MB: past the flood's limit
            await write(store, _lines(first, 2_000))
        assert _db_size(db_path) > grown + 1_500_000  # copied without waiting for idle
        assert _wal_size(db_path) < flood + 600_000  # the WAL restarted after it
        assert [r.seq for r in await store.read("p", after=26_000, limit=30)] == list(range(26_001, 26_021))


async def test_a_flood_of_long_lines_with_retention_keeps_the_wal_within_its_limit_and_a_write(
    db_path: Path,
) -> None:
    """Lines too long for a page take overflow pages, and retention deletes rewrite pages:
    the flood's limit counts the WAL's real pages, not the lines' bytes."""
    flood = 1024 * 1024
    async with opened(
        lambda: SqliteStore(db_path, retain_lines=1_500, checkpoint_pages=PAGES, flood_checkpoint_after=flood)
    ) as store:
        for first in range(1, 8_001, 1_000):  # ~8 MB of pages a write
            await write(store, [rec(seq, f"{seq:08d} " + "y" * 1_100) for seq in range(first, first + 1_000)])
        assert _wal_size(db_path) < flood + 10_000_000
        stored = await store.read("p", limit=5_000)
        assert stored[-1].seq == 8_000 and stored[0].seq > 8_000 - 3_000
        assert len(stored[-1].message) == 1_109


async def test_a_failed_write_gives_checkpoints_back_to_sqlite(db_path: Path) -> None:
    async with opened(
        lambda: SqliteStore(db_path, checkpoint_pages=PAGES, pragmas={"max_page_count": 1_000})
    ) as store:
        await write(store, _lines(1, 2_000))
        assert _autocheckpoint(store) > PAGES  # a flood's write
        first = 2_001
        with pytest.raises(StoreError, match="full"):
            while first < 100_000:
                await write(store, _lines(first, 2_000))
                first += 2_000
        assert _autocheckpoint(store) == PAGES


def _overlapping_readers(db_path: Path, hold: float, stop: threading.Event) -> list[threading.Thread]:
    """Two reader threads whose transactions overlap: each holds a snapshot for `hold`
    seconds, the other starts one meanwhile."""

    def reader(delay: float) -> None:
        time.sleep(delay)
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            while not stop.is_set():
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM records WHERE seq > 0").fetchone()
                stop.wait(hold)
                conn.execute("COMMIT")
        finally:
            conn.close()

    threads = [threading.Thread(target=reader, args=(delay,)) for delay in (0.0, hold / 2)]
    for thread in threads:
        thread.start()
    return threads


async def _flood_beside_readers(store: Store, db_path: Path, hold: float, rows: int) -> int:
    """Write `rows` in writes of 2,000 beside overlapping readers; the WAL's peak size."""
    stop = threading.Event()
    readers = _overlapping_readers(db_path, hold, stop)
    peak = 0
    try:
        for first in range(2, rows + 2, 2_000):
            await write(store, _lines(first, 2_000))
            peak = max(peak, _wal_size(db_path))
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    return peak


async def test_readers_that_keep_overlapping_do_not_keep_the_wal_growing(db_path: Path) -> None:
    """Overlapping readers keep every checkpoint from letting the WAL start over; past
    four times the flood's size the writer waits a moment for them (a RESTART checkpoint)."""
    flood = 256 * 1024
    async with opened(
        lambda: SqliteStore(db_path, checkpoint_pages=PAGES, flood_checkpoint_after=flood)
    ) as store:
        await write(store, _lines(1, 1))
        peak = await _flood_beside_readers(store, db_path, 0.004, 100_000)  # ~13 MB of rows
        # four times the flood's size and a write or two when the readers let go in time
        # (a loaded machine may hold one of them a while): without it, the whole ~13 MB
        assert peak < 4_000_000
        assert isinstance(store, SqliteStore) and store._writer is not None
        assert store._writer.execute("PRAGMA busy_timeout").fetchone()[0] == 5_000  # as it was
        await asyncio.to_thread(store.idle)
        await write(store, _lines(100_002, 10))  # starts the WAL over, and cuts the file back
        assert _wal_size(db_path) <= flood
        assert (await store.meta("p")).lines == 100_011


async def test_readers_that_always_hold_longer_than_the_wait_cost_a_wait_per_doubling(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Readers that hold their snapshots longer than the RESTART waits make every try
    fail: the writer asks again only after the WAL has grown by one flood's size, then
    two, four..., not after every write."""
    caplog.set_level(logging.DEBUG, logger="logcast.store.sqlite")
    flood = 256 * 1024
    async with opened(
        lambda: SqliteStore(db_path, checkpoint_pages=PAGES, flood_checkpoint_after=flood)
    ) as store:
        await write(store, _lines(1, 1))
        await _flood_beside_readers(store, db_path, 0.3, 100_000)  # ~13 MB: 50 writes
    tries = [r for r in caplog.records if "restart checkpoint" in r.getMessage()]
    assert tries, "no RESTART was asked for"
    assert len(tries) <= 8, [r.getMessage() for r in tries]  # 1, 1.25, 1.75, 2.75, 4.75, 8.75 MB...


async def test_a_trickle_of_single_lines_keeps_the_wal_short(db_path: Path) -> None:
    """Each commit writes whole pages: single-line writes must not grow the WAL by a page
    or more a line until some count of their bytes says so."""
    async with opened(lambda: SqliteStore(db_path, checkpoint_pages=PAGES)) as store:
        for seq in range(1, 601):
            await asyncio.to_thread(store.write, _lines(seq, 1))
        assert _wal_size(db_path) < (PAGES + 10) * (4096 + 24)
        assert (await store.meta("p")).lines == 600


async def test_a_disk_short_of_room_leaves_checkpoints_to_sqlite_even_in_a_flood(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flood = 1024 * 1024
    monkeypatch.setattr(sqlite_engine.shutil, "disk_usage", lambda _: shutil_usage(free=3 * flood))
    async with opened(
        lambda: SqliteStore(db_path, checkpoint_pages=PAGES, flood_checkpoint_after=flood)
    ) as store:
        empty = _db_size(db_path)
        for first in range(1, 6_001, 2_000):
            await write(store, _lines(first, 2_000))
        assert _db_size(db_path) > empty + 500_000  # SQLite checkpointed as it went
        assert _wal_size(db_path) < 2 * 2_000 * 200


def shutil_usage(*, free: int) -> SimpleNamespace:
    return SimpleNamespace(total=10 * free, used=9 * free, free=free)


async def test_a_wal_autocheckpoint_pragma_leaves_checkpoints_to_sqlite(db_path: Path) -> None:
    async with opened(lambda: SqliteStore(db_path, pragmas={"wal_autocheckpoint": 16})) as store:
        empty = _db_size(db_path)
        for first in range(1, 6_001, 2_000):
            await write(store, _lines(first, 2_000))
        assert _db_size(db_path) > empty + 500_000  # SQLite's every 16 pages, in the commits
        await asyncio.to_thread(store.idle)
        assert len(await store.read("p", limit=10_000)) == 6_000


async def test_a_journal_size_limit_pragma_is_kept(db_path: Path) -> None:
    async with opened(lambda: SqliteStore(db_path, pragmas={"journal_size_limit": 1_000_000})) as store:
        await write(store, _lines(1, 10))
        assert isinstance(store, SqliteStore) and store._writer is not None
        assert store._writer.execute("PRAGMA journal_size_limit").fetchone()[0] == 1_000_000


def test_checkpoint_sizes_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        SqliteStore(tmp_path / "x.db", checkpoint_pages=0)
    with pytest.raises(ValueError, match="checkpoint"):
        SqliteStore(tmp_path / "x.db", flood_checkpoint_after=0)


_KILLED_WRITER = """
import asyncio, os, signal, sys
sys.path[:0] = [os.path.join(sys.argv[2], "src"), sys.argv[2]]
import logcast
from logcast.store import SqliteStore
from tests.store_contract import rec

assert logcast.__file__.startswith(sys.argv[2]), logcast.__file__

async def main():
    store = SqliteStore(sys.argv[1], checkpoint_pages=1_000_000)  # never, here
    await store.open()
    for first in range(1, 40_001, 800):
        store.write([rec(seq, f"{seq:08d} " + "x" * 90) for seq in range(first, first + 800)])
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: the rows are only in the WAL

asyncio.run(main())
"""


async def test_rows_only_in_the_wal_survive_a_killed_server(db_path: Path) -> None:
    """Rows wait in the WAL for their checkpoint (a flood's, for up to 64 MiB); a SIGKILL
    loses none of them, however many: here every row is only in the WAL."""
    root = Path(__file__).resolve().parents[1]
    db_path.parent.mkdir(parents=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_WRITER, str(db_path), str(root), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert out == b"written\n" and proc.returncode == -signal.SIGKILL
    assert _db_size(db_path) < 100_000 < 4_000_000 < _wal_size(db_path)
    async with opened(lambda: SqliteStore(db_path)) as store:
        assert [r.seq for r in await store.read("p", limit=50_000)] == list(range(1, 40_001))
        assert (await store.meta("p")).lines == 40_000
        await write(store, _lines(40_001, 10))  # and the writer goes on after them
        assert [r.seq for r in await store.tail("p", 2)] == [40_009, 40_010]


async def test_sql_regexp_operator_is_case_insensitive(db_path: Path) -> None:
    async with opened(lambda: SqliteStore(db_path)) as store:
        await write(store, [rec(1, "Disk FULL"), rec(2, "fine")])
        assert isinstance(store, SqliteStore)
        rows = await store._run(
            "regexp",
            lambda conn: conn.execute("SELECT seq FROM records WHERE message REGEXP 'full$'").fetchall(),
        )
        assert rows == [(1,)]


async def test_open_store_builds_sqlite_in_dir(tmp_path: Path) -> None:
    store = open_store("sqlite", dir=tmp_path / "state", redis_url=None, retain_lines=100)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "state" / "history.sqlite3"
    assert store.retain_lines == 100
    await store.open()
    try:
        assert store.path.exists()
    finally:
        await store.close()
    with pytest.raises(ValueError, match="unknown store engine"):
        open_store("postgres", dir=tmp_path, redis_url=None, retain_lines=100)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteStore(tmp_path / "x.db", retain_lines=0)
    with pytest.raises(ValueError):
        SqliteStore(tmp_path / "x.db", pragmas={"max_page_count; DROP TABLE meta": 1})


async def test_a_lone_surrogate_in_a_new_process_is_stored_mended(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from logcast.store import SqliteStore
    from logcast.types import Level, LogRecord, Stream

    store = SqliteStore(tmp_path / "h.sqlite3")
    await store.open()
    try:
        records = [
            LogRecord(1, 1.0, Level.INFO, "fine", Stream.STDOUT, "fresh", 1),
            LogRecord(2, 1.0, Level.INFO, "bad \udc80 byte", Stream.STDOUT, "fresh", 1),
        ]
        store.write(records)
        got = await store.read("fresh")
        assert [r.seq for r in got] == [1, 2]
        assert got[1].message == "bad \ufffd byte" or "?" in got[1].message
        assert (await store.meta("fresh")).lines == 2
    finally:
        await store.close()


# -- the column-wise and the row-wise insert --------------------------------------------------

_TEXTS = st.text(
    alphabet=st.sampled_from(["a", "Z", " ", "é", "日", "🙂", "\udc80", "'", "%", "\\"]), max_size=12
)


@st.composite
def _batches(draw: st.DrawFn) -> list[list[LogRecord]]:
    """Batches as the hub writes them (a run of records per process), plus what else a
    store may be given: gaps in seq, status records, a new run, a batch retried."""
    next_seq = {"a": 1, "b": 1}
    batches: list[list[LogRecord]] = []
    for _ in range(draw(st.integers(1, 4))):
        batch: list[LogRecord] = []
        for process in draw(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3)):
            run = draw(st.integers(1, 3))
            for _ in range(draw(st.integers(1, 8))):
                if draw(st.booleans()) and draw(st.booleans()):
                    next_seq[process] += draw(st.integers(1, 3))  # a gap: seqs not consecutive
                status = draw(st.integers(0, 9)) == 0
                batch.append(
                    LogRecord(
                        next_seq[process],
                        draw(st.floats(0, 2e9, allow_nan=False)),
                        draw(st.sampled_from(list(Level))),
                        draw(_TEXTS),
                        Stream.SYSTEM if status else draw(st.sampled_from([Stream.STDOUT, Stream.STDERR])),
                        process,
                        run if draw(st.integers(0, 7)) else run + 1,
                        draw(st.booleans()),
                        ProcessState.RUNNING if status else None,
                    )
                )
                next_seq[process] += 1
        batches.append(batch)
        if draw(st.integers(0, 4)) == 0:
            batches.append(batch[: draw(st.integers(1, len(batch)))])  # retried after a failure
    return batches


def _mended(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=_batches())
def test_any_batch_is_stored_exactly_once_whichever_insert_path_takes_it(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[LogRecord]]
) -> None:
    path = tmp_path_factory.mktemp("paths") / "h.sqlite3"

    async def check() -> None:
        async with opened(lambda: SqliteStore(path)) as store:
            for batch in batches:
                await write(store, batch)
            expected: dict[str, dict[int, LogRecord]] = {"a": {}, "b": {}}
            captured: dict[str, dict[int, LogRecord]] = {"a": {}, "b": {}}
            for batch in batches:
                for r in batch:
                    expected[r.process].setdefault(r.seq, r._replace(message=_mended(r.message)))
                    captured[r.process].setdefault(r.seq, r)
            for process, by_seq in expected.items():
                want = [by_seq[s] for s in sorted(by_seq)]
                assert await store.read(process, limit=1000) == want
                for text in ("É", "Z"):  # found in non-ASCII text only by the flag that marks it
                    query = Query(text=text)
                    assert await store.read(process, limit=1000, query=query) == list(
                        filter(query.matches, want)
                    )
                lines = [r for r in want if r.stream is not Stream.SYSTEM]
                meta = await store.meta(process)
                assert meta.lines == len(lines)
                # counted as captured (a lone surrogate as its three bytes), as the hub does
                assert meta.bytes == sum(
                    line_bytes(r.message, r.partial)
                    for r in captured[process].values()
                    if r.stream is not Stream.SYSTEM
                )
                assert meta.last_seq == max(by_seq, default=0)
                assert meta.last_run == max((r.run for r in want), default=0)
            assert store.stats.written == sum(len(v) for v in expected.values())

    asyncio.run(check())


async def test_a_plain_run_of_lines_goes_in_column_wise(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row_wise: list[int] = []
    real = sqlite_engine._insert_rows
    monkeypatch.setattr(
        sqlite_engine, "_insert_rows", lambda conn, rows: (row_wise.append(len(rows)), real(conn, rows))
    )
    batch = [
        rec(
            seq,
            f"line {seq} é" if seq % 3 else f"line {seq}",
            partial=seq % 5 == 0,
            stream=Stream.STDERR if seq % 2 else Stream.STDOUT,
        )
        for seq in range(1, 20_001)
    ]
    async with opened(lambda: SqliteStore(db_path)) as store:
        await write(store, batch)
        assert row_wise == []  # 20,000 rows: three statements of 6,400, then halves
        assert await store.read("p", limit=30_000) == batch
        await write(store, [rec(20_001, state=ProcessState.EXITED, stream=Stream.SYSTEM)])
        assert row_wise == [1]  # a status record goes row-wise
        assert (await store.meta("p")).lines == 20_000
