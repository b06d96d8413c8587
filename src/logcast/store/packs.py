"""Packs: a flood's lines stored many to a row of the SQLite history (see `sqlite.py`).

A row per line costs SQLite a b-tree insert and its bound values per line, and the store
writer's thread spends the GIL and a core on it: in a flood of a million lines that was
most of the writer's time, and what capture could take in beside it was about half of
what it took with no store writes (bench/ingest.py: 330,000-367,000 lines/s into the hub
against 470,000-640,000). A run of at least `PACK_MIN` lines that arrived together (one
process, run and stream, one arrival time, consecutive seqs) therefore goes into one row
of `packs`: the texts joined by "\\n" (a framed line holds none), a level code a line, a
partial mark a line where any is partial. Ordinary output, a line or a few per read,
stays a row a line in `records`.

A filtered read asks SQL for the packs that may hold a match (the time, a level present,
the text present in the whole) and checks their lines one by one (`Query.matches`).
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate, groupby, repeat
from typing import Any

from logcast.query import Query
from logcast.types import Level, LogRecord, Stream

__all__ = [
    "LEVELS",
    "LEVEL_CODE",
    "PACKS_SCHEMA",
    "PACK_COLUMNS",
    "PACK_MAX",
    "PACK_MIN",
    "STREAMS",
    "cut_pack",
    "filter_conditions",
    "insert_packs",
    "pack_records",
    "select_packs",
]

# How both tables store a level and a stream.
LEVELS: tuple[Level, ...] = tuple(Level)
LEVEL_CODE: dict[Level, int] = {level: i for i, level in enumerate(LEVELS)}
STREAMS: tuple[Stream, ...] = (Stream.STDOUT, Stream.STDERR, Stream.SYSTEM)

PACK_MIN = 64  # lines that arrived together: fewer go a row each
# Lines a pack holds at most; a read looks this far back for the pack holding a seq, so it
# may grow in a later version only with a way to tell older files (`PRAGMA user_version`).
PACK_MAX = 4096
PACK_BYTES = 256 * 1024  # ...and bytes of text, unless fewer than PACK_MIN lines would fit

PACKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS packs (
    pid     INTEGER NOT NULL,
    seq     INTEGER NOT NULL,  -- its first line's
    last    INTEGER NOT NULL,  -- its last line's
    ts      REAL    NOT NULL,
    stream  INTEGER NOT NULL,
    run     INTEGER NOT NULL,
    ascii   INTEGER NOT NULL,  -- 1: every line is ASCII
    levels  BLOB    NOT NULL,  -- a level code a line
    partial BLOB,              -- a byte a line, 1: partial; NULL: no line is
    message TEXT    NOT NULL,  -- the lines joined by a newline
    PRIMARY KEY (pid, seq)
);
"""
PACK_COLUMNS = "seq, last, ts, stream, run, ascii, levels, partial, message"
_INSERT = "INSERT OR IGNORE INTO packs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

_new = tuple.__new__


def insert_packs(
    conn: sqlite3.Connection,
    pid: int,
    first_seq: int,
    run: int,
    timestamps: Sequence[float],
    level_codes: Sequence[int],
    stream_codes: Sequence[int],
    partial: Sequence[bool],
    messages: Sequence[str],
) -> list[tuple[int, int]]:
    """Insert the spans of a run of lines (consecutive seqs from `first_seq`) that make
    packs; the (start, end) index ranges left over, for rows of their own."""
    rows: list[tuple[Any, ...]] = []
    left: list[tuple[int, int]] = []
    start = 0
    # one arrival: one timestamp and stream (a run of one stream, the usual, is grouped by
    # its timestamps alone, without a pair made per line)
    one_stream = stream_codes.count(stream_codes[0]) == len(stream_codes) if stream_codes else True
    arrivals = timestamps if one_stream else zip(timestamps, stream_codes)  # noqa: B905 (same length)
    for _, group in groupby(arrivals):
        end = start + len(list(group))
        for low, high, packed in _spans(messages, start, end):
            if not packed:
                left.append((low, high))
                continue
            text = "\n".join(messages[low:high])
            if text.count("\n") != high - low - 1:  # a text with a newline of its own
                left.append((low, high))
                continue
            flags = partial[low:high]
            rows.append(
                (
                    pid,
                    first_seq + low,
                    first_seq + high - 1,
                    timestamps[low],
                    stream_codes[low],
                    run,
                    1 if text.isascii() else 0,
                    bytes(level_codes[low:high]),
                    bytes(flags) if True in flags else None,
                    text,
                )
            )
        start = end
    if rows:
        conn.executemany(_INSERT, rows)
    return _merged(left)


def _spans(messages: Sequence[str], start: int, end: int) -> list[tuple[int, int, bool]]:
    """Lines `start` to `end` (one arrival) as spans: (low, high, whether it is a pack).
    Each pack takes as many lines as fit in `PACK_MAX` and `PACK_BYTES`; where fewer than
    `PACK_MIN` would (long lines), they go a row each."""
    if end - start < PACK_MIN:
        return [(start, end, False)]
    ends = list(accumulate(map(len, messages[start:end]), initial=0))  # text before each line
    spans: list[tuple[int, int, bool]] = []
    low = start
    while low < end:
        fit = bisect_right(ends, ends[low - start] + PACK_BYTES) - 1  # lines low..fit-1 fit
        high = min(end, low + PACK_MAX, start + fit)
        if high - low >= PACK_MIN:
            spans.append((low, high, True))
        else:
            high = max(high, low + 1)
            spans.append((low, high, False))
        low = high
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent index ranges joined, so that rows of their own go in as few statements."""
    out: list[tuple[int, int]] = []
    for low, high in spans:
        if out and out[-1][1] == low:
            out[-1] = (out[-1][0], high)
        else:
            out.append((low, high))
    return out


def filter_conditions(
    query: Query, level_in: Callable[[list[int]], str], non_ascii: str
) -> tuple[list[str], list[Any]]:
    """SQL conditions for `query`'s levels, time and text, and their parameters, for both
    tables: `level_in(codes)` tells a row holding a line of one of those level codes,
    `non_ascii` a row whose text is not all ASCII. SQLite's `lower()` folds ASCII only,
    which equals `str.casefold` for ASCII text; other text, and text with escape sequences
    (searched as shown: without them), goes through Python's `casefold` (`fold_contains`)."""
    conds: list[str] = []
    params: list[Any] = []
    if query.levels is not None:
        codes = sorted(LEVEL_CODE[level] for level in query.levels)
        conds.append(level_in(codes) if codes else "0")
    if query.since is not None:
        conds.append("ts >= ?")
        params.append(query.since)
    if query.until is not None:
        conds.append("ts < ?")
        params.append(query.until)
    if query.text:
        needle = query.text.casefold()
        if needle.isascii():
            # text with escape sequences (colours) is searched as it is shown, without them
            python = f"{non_ascii} OR instr(message, char(27)) > 0"
            conds.append(
                f"(CASE WHEN {python} THEN fold_contains(message, ?) ELSE instr(lower(message), ?) > 0 END)"
            )
            params += [needle, needle]
        else:  # an ASCII text folds to ASCII: it cannot hold this needle
            conds.append(f"({non_ascii} AND fold_contains(message, ?))")
            params.append(needle)
    return conds, params


def select_packs(query: Query | None, *, descending: bool) -> tuple[str, list[Any]]:
    """The packs of a process (`pid`) that begin in (low, high] and end after `above`, in
    seq order (`descending`: newest first), and only those that may hold a line `query`
    matches: the time, a level among its lines, the text in the whole (a line holding it
    means the whole does); the regex is left to `Query.matches`. The SQL wants
    (pid, low, high, above) then the parameters returned with it."""
    conds: list[str] = []
    params: list[Any] = []
    if query is not None:
        conds, params = filter_conditions(
            query,
            lambda codes: "(" + " OR ".join(f"instr(levels, x'{code:02x}') > 0" for code in codes) + ")",
            "NOT ascii",
        )
    where = "".join(f" AND {cond}" for cond in conds)
    order = "DESC" if descending else "ASC"
    sql = f"SELECT {PACK_COLUMNS} FROM packs WHERE pid = ? AND seq > ? AND seq <= ? AND last > ?{where} ORDER BY seq {order}"
    return sql, params


def pack_records(
    process: str, row: tuple[Any, ...], after: int, upto: int, query: Query | None
) -> list[LogRecord]:
    """The lines of a `packs` row (`PACK_COLUMNS`) with `after < seq <= upto` that
    `query` matches, in seq order."""
    seq, last, ts, stream, run, _ascii, levels, partial, message = row
    start = max(after + 1, seq) - seq
    end = min(upto, last) - seq + 1
    if start >= end:
        return []
    texts = message.split("\n", end)[start:end]  # not the lines after `end`
    n = len(texts)
    flags = repeat(False, n) if partial is None else map(bool, partial[start:end])
    records = list(
        map(
            _new,
            repeat(LogRecord, n),
            zip(
                range(seq + start, seq + end),
                repeat(ts, n),
                map(LEVELS.__getitem__, levels[start:end]),
                texts,
                repeat(STREAMS[stream], n),
                repeat(process, n),
                repeat(run, n),
                flags,
                repeat(None, n),
                strict=True,
            ),
        )
    )
    if query is not None and not query.is_empty:
        records = list(filter(query.matches, records))
    return records


def cut_pack(conn: sqlite3.Connection, pid: int, upto: int) -> None:
    """Drop the lines at or below `upto` of the pack that holds both them and later lines
    (retention or a clear ends inside it): it is written again from `upto + 1`."""
    row = conn.execute(
        f"SELECT {PACK_COLUMNS} FROM packs WHERE pid = ? AND seq <= ? ORDER BY seq DESC LIMIT 1", (pid, upto)
    ).fetchone()
    if row is None or row[1] <= upto:
        return
    seq, last, ts, stream, run, _ascii, levels, partial, message = row
    drop = upto + 1 - seq
    text = message.split("\n", drop)[drop]  # what follows the first `drop` lines, as it is
    conn.execute("DELETE FROM packs WHERE pid = ? AND seq = ?", (pid, seq))
    conn.execute(
        _INSERT,
        (
            pid,
            upto + 1,
            last,
            ts,
            stream,
            run,
            1 if text.isascii() else 0,
            levels[drop:],
            None if partial is None or 1 not in partial[drop:] else partial[drop:],
            text,
        ),
    )
