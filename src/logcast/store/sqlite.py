"""The embedded history store: one SQLite file, written in batches by one thread.

WAL lets readers (worker threads, so the event loop never waits on the disk) run while the
writer commits; `synchronous=NORMAL` may lose the last batches in a power cut, never the file:
what is synced is what the last checkpoint copied (see `FLOOD_CHECKPOINT_AFTER`), and what
the kernel has written back since.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import chain, groupby
from operator import or_
from pathlib import Path
from typing import Any, TypeVar

from logcast.errors import StoreError
from logcast.query import Query, cached_regex, shown
from logcast.store import packs
from logcast.store.base import ProcessMeta, StoreStats
from logcast.store.packs import (
    LEVEL_CODE,
    LEVELS,
    PACKS_SCHEMA,
    STREAMS,
    cut_pack,
    filter_conditions,
    insert_packs,
    pack_records,
    select_packs,
)
from logcast.store.reserve import InUse, Reservations
from logcast.types import (
    MAX_SEQ,
    PROCESS_OF,
    SEQ_OF,
    LogRecord,
    ProcessState,
    Stream,
    columns_of,
    text_bytes,
)

__all__ = ["SqliteStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_STREAM_CODE: dict[Stream, int] = {stream: i for i, stream in enumerate(STREAMS)}
_SYSTEM = _STREAM_CODE[Stream.SYSTEM]
_STATES: dict[str, ProcessState] = {state.value: state for state in ProcessState}

_PARTIAL = 1
_NON_ASCII = 2

_RETENTION_EVERY = 64  # writes between two retention passes for a process barely over
_WRITER_CACHE_KIB = 4096  # the writer's page cache: more than a batch touches (~3 MB)
_READER_CACHE_KIB = 512  # each reader's: reads are range scans, the OS caches the file
_CLEAR_CHUNK = 50_000  # rows deleted per transaction by clear(), so the writer is not held up
_CLEAR_PACKS = 50  # ...and packs (up to 4,096 lines each)
SEARCH_THREADS = 2  # filtered reads (searches) running at once; more wait their turn

# Checkpoints copy the WAL back into the database file and sync both. SQLite runs one
# inside each commit that leaves `CHECKPOINT_PAGES` or more in the WAL: in a flood, one
# every ~30,000 rows, syncs included, while capture waited for the writer. A write of
# `_FLOOD_ROWS` rows or more (the writer is behind: a flood) raises that to
# `FLOOD_CHECKPOINT_AFTER` bytes of pages, if the disk has `_FLOOD_ROOM` times as much
# free. It comes down again when the writer has had nothing to write for a while (`idle`
# checkpoints then, outside any commit, so that no reader waits for it), when the disk
# has less room, or after a failed write. SQLite counts the pages itself (long lines'
# overflow pages, retention's deletes) and tries again after each commit while readers
# keep a checkpoint short.
CHECKPOINT_PAGES = 1_000  # SQLite's default
FLOOD_CHECKPOINT_AFTER = 64 << 20  # the WAL file is cut back to this when it starts over, too
_FLOOD_ROWS = 1_000
_FLOOD_ROOM = 4
# A checkpoint copies the WAL, but the WAL starts over from its beginning only once no
# reader still reads an older snapshot from it: readers whose transactions keep
# overlapping (a viewer paging through history during a flood) can keep it growing for
# good. Past `_WAL_RESTART` times the flood's size, the writer asks for a RESTART
# checkpoint, which waits up to `_RESTART_WAIT_MS` for those readers to finish (new ones
# read the database file). If they hold on, it asks again after one flood's size more,
# then two, four...: readers that always hold longer than the wait cost the writer a
# wait per doubling of the WAL, not one per write.
_WAL_RESTART = 4
_RESTART_WAIT_MS = 100
_PRAGMA_NAME = re.compile(r"^[a-z_]+$")

# `records` is WITHOUT ROWID, keyed by (pid, seq): the key is the only b-tree, and a page
# of history or a tail is one range scan. A flood's lines go many to a row of `packs`
# instead (`packs.py`): a read merges both by seq. Names are interned as ids in `meta`. `flags`
# packs `_PARTIAL` and `_NON_ASCII` (for the text search, see `_where`). There is no index
# on time, which would slow every write: a time filter scans the seq range instead.
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    last_seq INTEGER NOT NULL DEFAULT 0,
    lines    INTEGER NOT NULL DEFAULT 0,
    bytes    INTEGER NOT NULL DEFAULT 0,
    last_run INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
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
    + PACKS_SCHEMA
)

# The file's layout, in `PRAGMA user_version`: 1 has `packs`. A file of a later layout is
# refused, since what this version does not know of it (a table, a wider pack) it would
# not read nor clear. Versions before 1 did not look: they see a file's packed lines neither.
SCHEMA_VERSION = 1

_COLUMNS = "seq, ts, level, stream, run, flags, state, message"

# Rows go in by the thousand per statement: `sqlite3_step` gives up the GIL, and while a
# capture thread is busy, getting it back can take a whole switch interval, so one step
# per row (`executemany`) is slow. The rest of a batch goes in halves (at most a dozen
# more steps, each a cached statement).
#
# Binding parameters holds the GIL, so the usual run of records (one process, one run,
# consecutive seqs, no status records) goes in column-wise: pid, run and the first seq
# are bound once per statement, each row binds only what varies, and its seq is the first
# plus a literal offset in the SQL. Anything else (a retried batch, status records, text
# SQLite cannot store, a run change) takes the row-wise path.
#
# Not many thousands, though: a prepared statement costs ~600 bytes a row, and the
# writer's connection keeps each size it used (the largest and its halves, for both
# paths). At 6,400 and 3,584 rows they were ~13 MB of SQLite's memory, and the server's
# peak RSS in bench/burst.py --sse 1 --ws 0 was 33 MB higher than with these; the burst
# went no slower with them (the GIL is given back more often, between smaller binds).
_ROWS_PER_INSERT = 896  # 9 parameters a row
_COLUMN_ROWS = 1600  # 5 parameters a row and 3 per statement


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    return "INSERT OR IGNORE INTO records VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)


@functools.lru_cache(maxsize=16)
def _column_sql(rows: int) -> str:
    values = ", ".join([f"({i}, ?, ?, ?, ?, ?)" for i in range(rows)])
    return (
        "INSERT OR IGNORE INTO records (pid, seq, run, ts, level, stream, flags, state, message) "
        f"SELECT ?, ? + column1, ?, column2, column3, column4, column5, NULL, column6 FROM (VALUES {values})"
    )


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    start, step = 0, _ROWS_PER_INSERT
    while start < len(rows):
        while len(rows) - start < step:
            step //= 2
        conn.execute(_insert_sql(step), list(chain.from_iterable(rows[start : start + step])))
        start += step


def _insert_columns(
    conn: sqlite3.Connection, pid: int, first_seq: int, run: int, columns: Sequence[Sequence[Any]]
) -> None:
    """Insert rows `first_seq`, `first_seq + 1`, … given column-wise: time, level,
    stream, flags and message codes, one list each, all of the same length."""
    total = len(columns[0])
    width = len(columns)
    start, step = 0, _COLUMN_ROWS
    while start < total:
        while total - start < step:
            step //= 2
        params: list[Any] = [None] * (3 + width * step)
        params[0:3] = (pid, first_seq + start, run)
        for position, column in enumerate(columns):
            params[3 + position :: width] = column[start : start + step]
        conn.execute(_column_sql(step), params)
        start += step


_PARTIAL_FLAG = {False: 0, True: _PARTIAL}
_NON_ASCII_FLAG = {True: 0, False: _NON_ASCII}


def _write_run(conn: sqlite3.Connection, proc: _Proc, records: Sequence[LogRecord]) -> int:
    """Insert records of one process and count them into `proc`; return the rows written."""
    first = records[0]
    batch = _columns(records) if first.seq > proc.last_seq else None
    if batch is None:
        rows = _rows(proc, records)
        _insert_rows(conn, rows)
        return len(rows)
    nbytes, columns, partial = batch
    timestamps, level_codes, stream_codes, _flags, messages = columns
    left = insert_packs(
        conn, proc.id, first.seq, first.run, timestamps, level_codes, stream_codes, partial, messages
    )
    for start, end in left:
        part = columns if (start, end) == (0, len(records)) else [column[start:end] for column in columns]
        _insert_columns(conn, proc.id, first.seq + start, first.run, part)
    proc.last_seq = records[-1].seq
    proc.lines += len(records)
    proc.bytes += nbytes
    proc.last_run = max(proc.last_run, first.run)
    return len(records)


def _columns(records: Sequence[LogRecord]) -> tuple[int, list[Sequence[Any]], Sequence[bool]] | None:
    """The usual run as (UTF-8 bytes, columns for `_insert_columns`, partial marks), or None if the
    records are not lines of one run with consecutive seqs and storable text.

    The records are turned into columns by `columns_of` (loops in C), and every check is
    a count or a comparison in C."""
    size = len(records)
    first = records[0]
    seqs, timestamps, levels, messages, streams, _processes, runs, partial, states = columns_of(records)
    if seqs != list(range(first.seq, first.seq + size)):
        return None
    if Stream.SYSTEM in streams or runs.count(first.run) != size or states.count(None) != size:
        return None
    if all(map(str.isascii, messages)):
        nbytes = sum(map(len, messages)) + partial.count(False)  # and their line ends (`line_bytes`)
        flags: Sequence[int] = (
            list(map(_PARTIAL_FLAG.__getitem__, partial)) if True in partial else [0] * size
        )
    else:
        try:
            nbytes = len("".join(messages).encode("utf-8")) + partial.count(False)
        except UnicodeEncodeError:
            return None  # lone surrogates: `_rows` replaces them
        flags = list(
            map(
                or_,
                map(_NON_ASCII_FLAG.__getitem__, map(str.isascii, messages)),
                map(_PARTIAL_FLAG.__getitem__, partial),
            )
        )
    level_codes = list(map(LEVEL_CODE.__getitem__, levels))
    if streams.count(first.stream) == size:  # the usual run: one stream
        stream_codes: Sequence[int] = [_STREAM_CODE[first.stream]] * size
    else:
        stream_codes = list(map(_STREAM_CODE.__getitem__, streams))
    return nbytes, [timestamps, level_codes, stream_codes, flags, messages], partial


def _rows(proc: _Proc, records: Sequence[LogRecord]) -> list[tuple[Any, ...]]:
    """Records of one process as table rows, row by row, counted into `proc`; records at
    or below the last seq written are skipped (a retried batch)."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    level_code = LEVEL_CODE
    stream_code = _STREAM_CODE
    system = Stream.SYSTEM
    pid = proc.id
    last_seq = proc.last_seq
    lines = nbytes = last_run = 0
    # Unpacking the tuple is cheaper than nine attribute lookups.
    for seq, timestamp, level, message, stream, _process, run, partial, state in records:
        if seq <= last_seq:
            continue
        last_seq = seq
        if message.isascii():
            flags = 0
            size = len(message)
        else:
            flags = _NON_ASCII
            try:
                size = len(message.encode("utf-8"))
            except UnicodeEncodeError:  # lone surrogates: SQLite could not store them
                size = text_bytes(message)  # counted as captured, stored replaced
                message = message.encode("utf-8", "replace").decode("utf-8")
        if partial:
            flags |= _PARTIAL
        if stream is not system:
            lines += 1
            nbytes += size + (not partial)  # `line_bytes`
        if run > last_run:
            last_run = run
        append(
            (
                pid,
                seq,
                timestamp,
                level_code[level],
                stream_code[stream],
                run,
                flags,
                state.value if state is not None else None,
                message,
            )
        )
    proc.last_seq = last_seq
    proc.lines += lines
    proc.bytes += nbytes
    proc.last_run = max(proc.last_run, last_run)
    return rows


def _fold_contains(message: str, needle: str) -> bool:
    """SQL function: `needle` (already case-folded) occurs in `message` as shown (without
    escape sequences), case-folded."""
    return needle in shown(message).casefold()


def _regexp(pattern: str, message: str) -> bool:
    """SQL function `regexp(pattern, message)`: the query's RE2 search of the text as
    shown, compiled once."""
    return cached_regex(pattern).search(shown(message))


@dataclass(slots=True)
class _Proc:
    """The writer's copy of one process's `meta` row."""

    id: int
    last_seq: int
    lines: int
    bytes: int
    last_run: int
    retained_from: int = 0  # no row below this seq (a lower bound may be stale: harmless)
    writes: int = 0


_new = tuple.__new__


def _decode(process: str, rows: list[tuple[Any, ...]]) -> list[LogRecord]:
    """Table rows (`_COLUMNS`) of `process` as records. Each is made by `tuple.__new__`
    from its fields: the named tuple's own `__new__` is a Python call, which made this
    take twice as long (a page of history is thousands of rows)."""
    levels, streams, states = LEVELS, STREAMS, _STATES
    return [
        _new(
            LogRecord,
            (
                seq,
                ts,
                levels[level],
                message,
                streams[stream],
                process,
                run,
                flags & _PARTIAL == _PARTIAL,
                None if state is None else states[state],
            ),
        )
        for seq, ts, level, stream, run, flags, state, message in rows
    ]


def _by_seq(singles: list[LogRecord], packed: list[LogRecord]) -> list[LogRecord]:
    """Two runs of records in seq order, merged (sorting two runs is one merge)."""
    if not packed:
        return singles
    if not singles:
        return packed
    return sorted(singles + packed, key=SEQ_OF)


def _where(query: Query | None) -> tuple[str, list[Any]]:
    """SQL conditions (to AND with the seq range) and their parameters for `query`.

    They mean what `Query.matches` means: levels, time and text as `filter_conditions`
    writes them, and the regex through a registered function on the query's own RE2
    pattern (linear time).
    """
    if query is None:
        return "", []
    conds, params = filter_conditions(
        query, lambda codes: f"level IN ({', '.join(map(str, codes))})", f"flags & {_NON_ASCII}"
    )
    if query.regex is not None:
        conds.append("regexp(?, message)")
        params.append(query.regex.pattern)
    if not conds:
        return "", []
    where = " AND ".join(conds)
    if query.keep_status:
        where = f"stream = {_SYSTEM} OR ({where})"
    return f" AND ({where})", params


class SqliteStore:
    """History in one SQLite file.

    One writer connection, opened in the thread that first writes (the hub's writer),
    puts each batch in one transaction; reads run on thread-local `query_only`
    connections in worker threads. A failed write rolls the batch back and raises
    `StoreError`; the hub retries the same batch.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        retain_lines: int = 5_000_000,
        busy_timeout: float = 5.0,
        pragmas: Mapping[str, int | str] | None = None,
        checkpoint_pages: int = CHECKPOINT_PAGES,
        flood_checkpoint_after: int = FLOOD_CHECKPOINT_AFTER,
    ) -> None:
        """`busy_timeout` (seconds) is how long a statement waits for another connection's
        lock before failing with "database is locked"; `pragmas` are extra `PRAGMA name = value`
        applied to every connection (e.g. `cache_size`, `mmap_size`; tests use `max_page_count`).
        The WAL is checkpointed by SQLite once it holds `checkpoint_pages`, and while a
        flood is stored by the writer, about every `flood_checkpoint_after` bytes (see
        `FLOOD_CHECKPOINT_AFTER`); a `wal_autocheckpoint` pragma leaves them all to SQLite."""
        if retain_lines < 1:
            raise ValueError("retain_lines must be at least 1")
        if checkpoint_pages < 1 or flood_checkpoint_after < 1:
            raise ValueError("checkpoint_pages and flood_checkpoint_after must be positive")
        self.path = Path(path)
        self.retain_lines = retain_lines
        self.stats = StoreStats()
        self._busy_ms = max(0, int(busy_timeout * 1000))
        self._pragmas: dict[str, int | str] = {}
        for name, value in (pragmas or {}).items():
            if not _PRAGMA_NAME.match(name) or not re.fullmatch(r"[\w.-]+", str(value)):
                raise ValueError(f"invalid pragma {name!r} = {value!r}")
            self._pragmas[name] = value
        # A commit is synced only with synchronous = FULL or EXTRA: by default the hub shows
        # a line once the reservation (which is synced) covers it, not once it is committed.
        sync = str(self._pragmas.get("synchronous", "NORMAL")).upper()
        self.commits_durable = sync in ("FULL", "EXTRA", "2", "3")
        self._slack = retain_lines // 100
        self._open = False
        self._closed = False
        self._write_lock = threading.Lock()  # held by write() and by close() of the writer connection
        self._writer: sqlite3.Connection | None = None
        self._procs: dict[str, _Proc] | None = None  # the writer's meta cache, None: reload
        self._checkpoint_pages = checkpoint_pages
        self._flood_checkpoint_after = flood_checkpoint_after
        self._may_put_off = "wal_autocheckpoint" not in self._pragmas
        self._putting_off = False  # the writer connection checkpoints at the flood's size
        self._flood_pages = 0  # that size in pages, once the writer connection is open
        self._restart_base = _WAL_RESTART * flood_checkpoint_after
        self._restart_at = self._restart_base  # WAL file size to ask a restart at
        self._restart_step = flood_checkpoint_after  # ...and to ask again after, if readers held on
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._searches = ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="logcast-search")
        self._reservations = Reservations(self.path.with_name(self.path.name + ".seq"))

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file and the schema if needed (WAL mode is a property of the file)."""
        if self._closed:
            raise StoreError("store is closed")
        await asyncio.to_thread(self._create_schema)
        self._open = True

    def _create_schema(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # first: a second logcast on this folder is refused before it touches the file
            self._reservations.open()
            conn = self._connect()
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path} was written by a newer logcast (layout {version}; this one"
                        f" reads up to {SCHEMA_VERSION}): reading or writing it here would miss lines"
                    )
                conn.executescript(_SCHEMA)
                if version < SCHEMA_VERSION:
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                conn.close()
        except InUse as exc:
            raise StoreError(exc.strerror or str(exc)) from exc
        except (sqlite3.Error, OSError, StoreError) as exc:
            self._reservations.close()  # and its lock: this store did not open
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Close every connection. Reads in flight must have finished; a write in
        flight is waited for (the writer thread may still be finishing its batch)."""
        if self._closed:
            return
        self._closed = True
        self._open = False
        await asyncio.to_thread(self._close_all)

    def _close_all(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._procs = None
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._searches.shutdown(wait=False, cancel_futures=True)
        self._reservations.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA synchronous = NORMAL")
        for name, value in self._pragmas.items():
            conn.execute(f"PRAGMA {name} = {value}")
        return conn

    # -- writing (the writer thread) -------------------------------------------------------

    def write(self, records: Sequence[LogRecord]) -> None:
        """Persist a batch in one transaction and apply retention; see `Store.write`."""
        if not records:
            return
        with self._write_lock:
            if self._closed:
                raise StoreError("store is closed")
            try:
                if len(records) >= _FLOOD_ROWS or self._putting_off:
                    self._put_off_checkpoints(self._room_to_put_off())
                written = self._write_locked(records)
            except BaseException as exc:
                # Nothing of a failed batch may stay in an open transaction, where the next
                # batch could not begin its own, whatever failed (a malformed record too).
                self._procs = None  # ids or counts of the failed transaction may be in it
                self._rollback()
                self._give_checkpoints_back()
                if not isinstance(exc, (sqlite3.Error, OSError)):
                    raise
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                raise StoreError(f"writing {len(records)} records to {self.path}: {exc}") from exc
            if self._may_put_off:
                self._restart_if_long()
        self.stats.written += written

    def _restart_if_long(self) -> None:
        """A RESTART checkpoint if the WAL file has grown past `_restart_at` (lock held)."""
        try:
            size = Path(f"{self.path}-wal").stat().st_size
        except OSError:
            return
        if size < self._restart_base:  # it started over, and was cut back
            self._restart_at, self._restart_step = self._restart_base, self._flood_checkpoint_after
            return
        if size < self._restart_at:
            return
        conn = self._writer
        if conn is None:
            return
        try:
            conn.execute(f"PRAGMA busy_timeout = {_RESTART_WAIT_MS}")
            busy = self._checkpoint(conn, "RESTART")
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        log.debug("%s: WAL of %d bytes, restart checkpoint %s", self.path, size, "busy" if busy else "done")
        if busy:  # readers held on: ask again later, and later still the next time
            self._restart_at = size + self._restart_step
            self._restart_step *= 2
        else:  # the next write starts the WAL over and cuts the file back
            self._restart_at = size + self._flood_checkpoint_after

    def idle(self) -> None:
        """The writer has had nothing to write for a while: checkpoint what a flood left."""
        with self._write_lock:
            if self._putting_off and not self._closed and self._writer is not None:
                self._checkpoint(self._writer, "PASSIVE")
                self._give_checkpoints_back()

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> bool:
        """Whether a checkpoint in `mode` left the WAL busy (readers held on, or it failed:
        that is only logged, the rows being committed)."""
        try:
            return bool(conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()[0])
        except sqlite3.Error as exc:
            log.warning("checkpoint of %s failed (%s); the rows are committed", self.path, exc)
            return True

    def _room_to_put_off(self) -> bool:
        if not self._may_put_off:
            return False
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return False
        return free >= _FLOOD_ROOM * self._flood_checkpoint_after

    def _put_off_checkpoints(self, flood: bool) -> None:
        """SQLite's automatic checkpoint at the flood's size, or at `checkpoint_pages` (lock held)."""
        if flood != self._putting_off:
            conn = self._writer_conn()
            pages = self._flood_pages if flood else self._checkpoint_pages
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
            self._putting_off = flood

    def _give_checkpoints_back(self) -> None:
        """SQLite's checkpoint at `checkpoint_pages` again (its next commit runs one if the
        WAL is longer); never raises (lock held)."""
        try:
            self._put_off_checkpoints(False)
        except (sqlite3.Error, OSError) as exc:
            log.debug("cannot lower the checkpoint size now (%s): the next write does", exc)

    def stored_upto(self, process: str) -> int:
        """A failed transaction was rolled back: what the meta says is what is stored."""
        with self._write_lock:
            try:
                row = (
                    self._writer_conn()
                    .execute("SELECT last_seq FROM meta WHERE name = ?", (process,))
                    .fetchone()
                )
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"reading {self.path}: {exc}") from exc
        return int(row[0]) if row else 0

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                if self._may_put_off:
                    conn.execute(f"PRAGMA wal_autocheckpoint = {self._checkpoint_pages}")
                page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
                self._flood_pages = max(self._checkpoint_pages, self._flood_checkpoint_after // page_size)
                self._putting_off = False
                conn.execute(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
                if "journal_size_limit" not in self._pragmas:
                    conn.execute(f"PRAGMA journal_size_limit = {self._flood_checkpoint_after}")
                conn.executescript(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._writer = conn
        return self._writer

    def _rollback(self) -> None:
        conn = self._writer
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("rollback failed on %s; reopening the writer connection", self.path)
                conn.close()
                self._writer = None

    def _load_procs(self, conn: sqlite3.Connection) -> dict[str, _Proc]:
        rows = conn.execute("SELECT name, id, last_seq, lines, bytes, last_run FROM meta").fetchall()
        return {name: _Proc(pid, last, lines, size, run) for name, pid, last, lines, size, run in rows}

    def _write_locked(self, records: Sequence[LogRecord]) -> int:
        """Records at or below a process's last written seq are skipped, so a retried batch
        neither duplicates rows nor counts lines twice (`INSERT OR IGNORE` is a second guard)."""
        conn = self._writer_conn()
        procs = self._procs
        if procs is None:
            procs = self._procs = self._load_procs(conn)
        conn.execute("BEGIN IMMEDIATE")
        # Work on copies: the cache changes only once the transaction has committed.
        work: dict[str, _Proc] = {}
        name = records[0].process
        if list(map(PROCESS_OF, records)).count(name) == len(records):
            runs: list[tuple[str, Sequence[LogRecord]]] = [(name, records)]
        else:
            runs = [(name, list(group)) for name, group in groupby(records, key=PROCESS_OF)]
        written = 0
        for name, run in runs:
            proc = work.get(name)
            if proc is None:
                proc = work[name] = self._work_copy(conn, procs, name)
            written += _write_run(conn, proc, run)
        for name, proc in work.items():
            old = procs.get(name)
            if old is not None and old.last_seq == proc.last_seq:
                continue  # nothing new for this process
            conn.execute(
                "UPDATE meta SET last_seq = ?, lines = ?, bytes = ?, last_run = ? WHERE id = ?",
                (proc.last_seq, proc.lines, proc.bytes, proc.last_run, proc.id),
            )
            self._retain(conn, proc)
        conn.execute("COMMIT")
        procs.update(work)
        return written

    def _work_copy(self, conn: sqlite3.Connection, procs: dict[str, _Proc], name: str) -> _Proc:
        known = procs.get(name)
        if known is not None:
            return replace(known)
        cursor = conn.execute("INSERT INTO meta (name) VALUES (?)", (name,))
        assert cursor.lastrowid is not None
        return _Proc(cursor.lastrowid, 0, 0, 0, 0)

    def _retain(self, conn: sqlite3.Connection, proc: _Proc) -> None:
        """Drop rows older than the last `retain_lines` seqs, only when over by more than 1 %
        or every `_RETENTION_EVERY` writes: a rare range delete rather than one per batch."""
        proc.writes += 1
        cutoff = proc.last_seq - self.retain_lines  # rows with seq <= cutoff go
        over = cutoff - proc.retained_from + 1
        if over <= 0:
            return
        if over > self._slack or proc.writes >= _RETENTION_EVERY:
            conn.execute("DELETE FROM records WHERE pid = ? AND seq <= ?", (proc.id, cutoff))
            conn.execute(
                "DELETE FROM packs WHERE pid = ? AND seq <= ? AND last <= ?", (proc.id, cutoff, cutoff)
            )
            cut_pack(conn, proc.id, cutoff)
            log.debug("retention: dropped seq <= %d of process id %d", cutoff, proc.id)
            proc.retained_from = cutoff + 1
            proc.writes = 0

    def reserve(self, marks: Mapping[str, int]) -> None:
        """Kept in a small file beside the database (`reserve.py`), writable when the disk is full."""
        try:
            self._reservations.set(marks)
        except OSError as exc:
            raise StoreError(f"reserving sequence numbers in {self._reservations.path}: {exc}") from exc

    # -- reading (worker threads) ----------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if not self._open:
                raise StoreError("store is not open" if not self._closed else "store is closed")
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            if "cache_size" not in self._pragmas:
                conn.execute(f"PRAGMA cache_size = -{_READER_CACHE_KIB}")
            conn.create_function("fold_contains", 2, _fold_contains, deterministic=True)
            conn.create_function("regexp", 2, _regexp, deterministic=True)
            with self._readers_lock:
                if self._closed:
                    conn.close()
                    raise StoreError("store is closed")
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    async def _run(self, what: str, fn: Callable[[sqlite3.Connection], T], *, search: bool = False) -> T:
        """Run `fn` on a reader connection in a worker thread, in one read transaction: its
        statements (on `records`, then on `packs`) see one snapshot, so that a commit in
        between cannot leave a hole in what it returns. Filtered reads (`search`) take
        threads of their own, at most `SEARCH_THREADS` at once: however many searches
        are asked for, the pages that streams and viewers read are not queued behind them."""

        def call() -> T:
            if self._closed:
                raise StoreError("store is closed")
            try:
                conn = self._reader()
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    with contextlib.suppress(sqlite3.Error):  # a read: nothing to keep or lose
                        conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StoreError(f"{what} on {self.path}: {exc}") from exc

        if not search:
            return await asyncio.to_thread(call)
        return await asyncio.get_running_loop().run_in_executor(self._searches, call)

    @staticmethod
    def _pid(conn: sqlite3.Connection, process: str) -> int | None:
        row = conn.execute("SELECT id FROM meta WHERE name = ?", (process,)).fetchone()
        return None if row is None else int(row[0])

    async def read(
        self,
        process: str,
        *,
        after: int = 0,
        limit: int = 1000,
        query: Query | None = None,
        upto: int | None = None,
        search: bool = False,
    ) -> list[LogRecord]:
        if limit <= 0 or (upto is not None and upto <= after):
            return []
        cond, params = _where(query)
        upper = "" if upto is None else " AND seq <= ?"
        bound = () if upto is None else (upto,)
        sql = f"SELECT {_COLUMNS} FROM records WHERE pid = ? AND seq > ?{upper}{cond} ORDER BY seq LIMIT ?"
        # A pack holding seqs after `after` begins at most PACK_MAX - 1 before them.
        packs_sql, pack_params = select_packs(query, descending=False)

        def run(conn: sqlite3.Connection) -> list[LogRecord]:
            pid = self._pid(conn, process)
            if pid is None:
                return []
            rows = conn.execute(sql, (pid, after, *bound, *params, limit)).fetchall()
            singles = _decode(process, rows)
            # no pack line past the last single the read returns anyway is wanted
            top = singles[-1].seq if len(singles) >= limit else MAX_SEQ if upto is None else upto
            lines: list[LogRecord] = []
            for row in conn.execute(packs_sql, (pid, after - packs.PACK_MAX, top, after, *pack_params)):
                lines += pack_records(process, row, after, top, query)
                if len(lines) >= limit:  # packs come in seq order, none overlapping
                    break
            return _by_seq(singles, lines)[:limit]

        return await self._run("read", run, search=search or bool(cond))

    async def tail(
        self,
        process: str,
        n: int,
        *,
        before: int | None = None,
        query: Query | None = None,
        after: int | None = None,
        search: bool = False,
    ) -> list[LogRecord]:
        if n <= 0:
            return []
        cond, params = _where(query)
        upper = "" if before is None else " AND seq <= ?"
        lower = "" if after is None else " AND seq > ?"
        bound = (*(() if before is None else (before,)), *(() if after is None else (after,)))
        sql = f"SELECT {_COLUMNS} FROM records WHERE pid = ?{upper}{lower}{cond} ORDER BY seq DESC LIMIT ?"
        packs_sql, pack_params = select_packs(query, descending=True)
        top = MAX_SEQ if before is None else before

        def run(conn: sqlite3.Connection) -> list[LogRecord]:
            pid = self._pid(conn, process)
            if pid is None:
                return []
            rows = conn.execute(sql, (pid, *bound, *params, n)).fetchall()
            rows.reverse()
            singles = _decode(process, rows)
            # no pack line before the first single the tail returns anyway is wanted
            bottom = singles[0].seq - 1 if len(singles) >= n else -1 if after is None else after
            lines: list[LogRecord] = []
            for row in conn.execute(packs_sql, (pid, bottom - packs.PACK_MAX, top, bottom, *pack_params)):
                lines[:0] = pack_records(process, row, bottom, top, query)
                if len(lines) >= n:  # packs come in seq order, none overlapping
                    break
            merged = _by_seq(singles, lines)
            return merged[-n:]

        return await self._run("tail", run, search=search or bool(cond))

    async def meta(self, process: str) -> ProcessMeta:
        sql = (
            "SELECT last_seq, lines, bytes, last_run,"
            " (SELECT min(seq) FROM records WHERE pid = meta.id),"
            " (SELECT min(seq) FROM packs WHERE pid = meta.id) FROM meta WHERE name = ?"
        )

        def run(conn: sqlite3.Connection) -> ProcessMeta:
            row = conn.execute(sql, (process,)).fetchone()
            reserved = self._reservations.reserved_upto(process)
            if row is None:
                return ProcessMeta(reserved=reserved)
            last_seq, lines, size, last_run, first_single, first_packed = row
            firsts = [seq for seq in (first_single, first_packed) if seq is not None]
            return ProcessMeta(
                last_seq=last_seq,
                first_seq=min(firsts) if firsts else 0,
                lines=lines,
                bytes=size,
                last_run=last_run,
                reserved=reserved,
            )

        return await self._run("meta", run)

    async def processes(self) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            names = {name for (name,) in conn.execute("SELECT name FROM meta")}
            return sorted(names | set(self._reservations.names()))

        return await self._run("processes", run)

    async def clear(self, process: str, upto: int) -> None:
        """Delete in chunks on a connection of its own: the writer waits at most one chunk."""
        if self._closed or not self._open:
            raise StoreError("store is closed" if self._closed else "store is not open")
        await asyncio.to_thread(self._clear_sync, process, upto)

    def _clear_sync(self, process: str, upto: int) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"clear on {self.path}: {exc}") from exc
        try:
            pid = self._pid(conn, process)
            if pid is None:
                return
            while True:
                cursor = conn.execute(
                    "DELETE FROM records WHERE pid = ? AND seq IN"
                    " (SELECT seq FROM records WHERE pid = ? AND seq <= ? ORDER BY seq LIMIT ?)",
                    (pid, pid, upto, _CLEAR_CHUNK),
                )
                if cursor.rowcount < _CLEAR_CHUNK:
                    break
            while True:
                cursor = conn.execute(
                    "DELETE FROM packs WHERE pid = ? AND seq IN"
                    " (SELECT seq FROM packs WHERE pid = ? AND seq <= ? AND last <= ? ORDER BY seq LIMIT ?)",
                    (pid, pid, upto, upto, _CLEAR_PACKS),
                )
                if cursor.rowcount < _CLEAR_PACKS:
                    break
            conn.execute("BEGIN IMMEDIATE")
            cut_pack(conn, pid, upto)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"clear on {self.path}: {exc}") from exc
        finally:
            conn.close()
