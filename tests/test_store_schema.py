"""The SQLite file's layout: a file of schema 1 (`records` keyed by (pid, seq), WITHOUT
ROWID) is converted on open, whole or not at all; and the key that packs a process id
and a seq never lets one process's reads or writes reach another's rows."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from logcast.errors import StoreError
from logcast.query import Query
from logcast.store import SqliteStore
from logcast.store.sqlite import PROCESS_IDS, SEQ_MAX
from logcast.types import Level, LogRecord, ProcessState, Stream
from tests.store_contract import opened, rec, write

# What logcast wrote before the rowid table, word for word.
_SCHEMA_1 = """
CREATE TABLE meta (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    last_seq INTEGER NOT NULL DEFAULT 0,
    lines    INTEGER NOT NULL DEFAULT 0,
    bytes    INTEGER NOT NULL DEFAULT 0,
    last_run INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE records (
    pid     INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    ts      REAL    NOT NULL,
    level   INTEGER NOT NULL,
    stream  INTEGER NOT NULL,
    run     INTEGER NOT NULL,
    flags   INTEGER NOT NULL,
    state   TEXT,
    message TEXT    NOT NULL,
    PRIMARY KEY (pid, seq)
) WITHOUT ROWID;
"""
_LEVELS = list(Level)
_STREAMS = [Stream.STDOUT, Stream.STDERR, Stream.SYSTEM]


def _schema_1_file(path: Path, records: list[LogRecord]) -> None:
    """A file as schema 1 stored `records` (process ids in order of first appearance)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(_SCHEMA_1)
        ids: dict[str, int] = {}
        for r in records:
            pid = ids.setdefault(r.process, len(ids) + 1)
            flags = (1 if r.partial else 0) | (0 if r.message.isascii() else 2)
            conn.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    pid,
                    r.seq,
                    r.timestamp,
                    _LEVELS.index(r.level),
                    _STREAMS.index(r.stream),
                    r.run,
                    flags,
                    r.state.value if r.state else None,
                    r.message,
                ),
            )
        for name, pid in ids.items():
            own = [r for r in records if r.process == name]
            lines = [r for r in own if r.stream is not Stream.SYSTEM]
            conn.execute(
                "INSERT INTO meta VALUES (?, ?, ?, ?, ?, ?)",
                (
                    pid,
                    name,
                    max(r.seq for r in own),
                    len(lines),
                    sum(len(r.message.encode()) for r in lines),
                    max(r.run for r in own),
                ),
            )
    finally:
        conn.close()


def _columns(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute("PRAGMA table_info(records)")]
    finally:
        conn.close()


def _history() -> list[LogRecord]:
    web = [
        rec(1, "web started", process="web", stream=Stream.SYSTEM, state=ProcessState.RUNNING),
        rec(2, "GET / 200", process="web", timestamp=1_763_800_001.25),
        rec(3, "héllo wörld", process="web", level=Level.WARNING),
        rec(4, "half a line", process="web", partial=True, stream=Stream.STDERR),
        rec(5, "Traceback: boom", process="web", level=Level.ERROR, run=2),
        *(rec(seq, f"line {seq}", process="web", run=2) for seq in range(10, 300)),  # 6..9 went to retention
    ]
    db = [rec(seq, f"db {seq}", process="db") for seq in range(1, 51)]
    return web + db


async def test_a_schema_1_file_is_converted_on_open_with_every_row_as_it_was(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.sqlite3"
    history = _history()
    _schema_1_file(path, history)
    caplog.set_level(logging.WARNING, logger="logcast.store.sqlite")
    async with opened(lambda: SqliteStore(path)) as store:
        assert "converted" in caplog.text
        assert _columns(path)[0] == "key" and "pid" not in _columns(path)
        web = [r for r in history if r.process == "web"]
        assert await store.read("web", limit=1000) == web
        assert await store.read("db", limit=1000) == [r for r in history if r.process == "db"]
        assert await store.tail("web", 2) == web[-2:]
        assert [r.seq for r in await store.read("web", after=4, upto=10)] == [5, 10]
        assert [r.seq for r in await store.read("web", query=Query(text="WÖRLD"))] == [3]
        assert [r.seq for r in await store.read("web", query=Query(levels=frozenset({Level.ERROR})))] == [5]
        meta = await store.meta("web")
        assert (meta.first_seq, meta.last_seq, meta.lines, meta.last_run) == (1, 299, 294, 2)
        await write(store, [rec(300, "after the upgrade", process="web", run=2)])
        assert [r.seq for r in await store.tail("web", 2)] == [299, 300]
    caplog.clear()
    async with opened(lambda: SqliteStore(path)) as store:  # converted once only
        assert "convert" not in caplog.text
        assert len(await store.read("web", limit=1000)) == len(web) + 1


async def test_a_conversion_without_room_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    history = [rec(seq, f"{seq:06d} " + "y" * 300) for seq in range(1, 3001)]
    _schema_1_file(path, history)
    conn = sqlite3.connect(path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    # max_page_count caps the file, as a full disk would: not room for a second copy
    with pytest.raises(StoreError, match=r"cannot convert .* left as it was.*full.*free space"):
        async with opened(lambda: SqliteStore(path, pragmas={"max_page_count": pages + 50})):
            pass
    assert "pid" in _columns(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 3000
    conn.close()
    async with opened(lambda: SqliteStore(path)) as store:  # with room, it converts
        assert await store.read("p", limit=5000) == history


_CONVERTER = """
import asyncio, logging, sys
sys.path.insert(0, sys.argv[2])
from logcast.store import SqliteStore
logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
store = SqliteStore(sys.argv[1])
asyncio.run(store.open())
print("opened", flush=True)
"""


async def test_a_conversion_killed_midway_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """A power cut during the conversion: SIGKILL once it has started; the file is still
    schema 1 with every row, and the next open converts it."""
    path = tmp_path / "history.sqlite3"
    _schema_1_file(path, [rec(1, "first")])
    conn = sqlite3.connect(path, isolation_level=None)
    rows = 400_000
    conn.execute(
        "WITH RECURSIVE n(x) AS (SELECT 2 UNION ALL SELECT x + 1 FROM n WHERE x < ?)"
        " INSERT INTO records SELECT 1, x, 1763800000.0 + x, 2, 0, 1, 0, NULL,"
        " printf('%06d %s', x, hex(randomblob(40))) FROM n",
        (rows,),
    )
    conn.execute("UPDATE meta SET last_seq = ?, lines = ?", (rows, rows))
    conn.close()
    root = Path(__file__).resolve().parents[1] / "src"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CONVERTER, str(path), str(root), stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"converting the 400000 rows" in line
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert "pid" in _columns(path)  # the conversion was under way: rolled back whole
    async with opened(lambda: SqliteStore(path)) as store:
        assert "key" in _columns(path)
        assert [r.seq for r in await store.read("p", limit=3)] == [1, 2, 3]
        assert [r.seq for r in await store.tail("p", 1)] == [rows]
        assert (await store.meta("p")).first_seq == 1
        count = await store._run(
            "count", lambda conn: conn.execute("SELECT count(*) FROM records").fetchone()
        )
        assert count == (rows,)


async def test_a_schema_1_file_whose_seqs_do_not_fit_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    _schema_1_file(path, [rec(1, "one"), rec(SEQ_MAX + 1, "too far")])
    with pytest.raises(StoreError, match=r"cannot convert .* left as it was.*seqs 1\.\.17592186044416"):
        async with opened(lambda: SqliteStore(path)):
            pass
    assert "pid" in _columns(path)


async def test_reads_never_reach_another_processs_rows_whatever_the_bounds(tmp_path: Path) -> None:
    """The key packs the process id above the seq: a bound out of the seq range must be
    cut to it, or process 1's reads would run into process 2's rows and back."""
    async with opened(lambda: SqliteStore(tmp_path / "h.sqlite3")) as store:
        await write(store, [rec(SEQ_MAX - 1, "a1", process="a"), rec(SEQ_MAX, "a-last", process="a")])
        await write(store, [rec(1, "b1", process="b"), rec(2, "b2", process="b")])
        assert [r.message for r in await store.read("a", upto=2**63 - 1)] == ["a1", "a-last"]
        assert [r.message for r in await store.read("b", after=-5)] == ["b1", "b2"]
        assert [r.message for r in await store.read("a", after=SEQ_MAX + 7)] == []
        assert [r.message for r in await store.tail("a", 10, before=2**62)] == ["a1", "a-last"]
        assert (await store.meta("a")).first_seq == SEQ_MAX - 1
        assert [r.message for r in await store.tail("b", 10, after=-3)] == ["b1", "b2"]
        assert [r.message for r in await store.tail("b", 10, before=-1)] == []
        assert (await store.meta("b")).first_seq == 1
        await store.clear("a", 2**63 - 1)
        assert await store.read("a") == []
        assert [r.message for r in await store.read("b")] == ["b1", "b2"]


async def test_a_seq_beyond_the_key_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async with opened(lambda: SqliteStore(tmp_path / "h.sqlite3")) as store:
        await write(store, [rec(1, "one")])
        with pytest.raises(StoreError, match="out of the store's range"):
            await write(store, [rec(SEQ_MAX, "last"), rec(SEQ_MAX + 1, "beyond")])
        assert [r.seq for r in await store.read("p")] == [1]
        assert (await store.meta("p")).last_seq == 1


async def test_more_process_names_than_the_key_holds_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    async with opened(lambda: SqliteStore(path)) as store:
        await write(store, [rec(1, "old", process="old")])
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("INSERT INTO meta (id, name) VALUES (?, 'last')", (PROCESS_IDS,))
        conn.close()
        with pytest.raises(StoreError, match="process names"):
            await write(store, [rec(1, "new", process="new")])
        await write(store, [rec(2, "still", process="old"), rec(1, "fits", process="last")])
        assert [r.message for r in await store.read("old")] == ["old", "still"]
        assert [r.message for r in await store.read("last")] == ["fits"]
        assert await store.processes() == ["last", "old"]
