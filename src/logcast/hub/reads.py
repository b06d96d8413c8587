"""History reads over the memory tail and the store, each call's work bounded.

A filtered read may match nothing in millions of lines, so each call looks at no more
than `SCAN_ROWS` records and `SEARCH_SECONDS`, off the event loop, and says where it
stopped (a page's `next`, a tail's `before`). A regex is applied here, in a filter
thread that looks at the clock after every line, not by the store: RE2 is linear, but a
pattern may still cost a millisecond on a line (and far more on a 64 KiB one), so a
store's window of 20,000 rows could run for many seconds past the deadline."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from logcast.hub.ring import Ring
from logcast.query import Query
from logcast.store.base import Store
from logcast.types import MESSAGE_OF, LogRecord, fitting

SCAN_ROWS = 200_000  # records a filtered read looks at per call
SCAN_CHUNK = 10_000  # ring records handed to a filter thread at a time
STORE_STEP = 20_000  # records one filtered store query looks at
SEARCH_SECONDS = 2.0  # a filtered call stops looking after this long and says where it got to
FILTER_THREADS = 2  # ring filters running at once; more wait their turn
MATCH_CHUNK = 64  # records of a stream's window matched in one go by a filter thread
FIRST_STEP = 256  # rows a regex search reads from the store first (twice what it wants, if more)
STEP_BYTES = 8 << 20  # ...and about this much text at most, once it has seen how long lines are
ROW_GUESS = 1024  # characters a row is taken to hold before any was read
# Characters of text in one page at most (with at least one record): a page of 10,000
# lines of 64 KiB would be 640 MB of text, and several GB of JSON dumped on the event loop.
PAGE_TEXT = 4 << 20

clock = time.monotonic
_FILTERS = ThreadPoolExecutor(FILTER_THREADS, thread_name_prefix="logcast-filter")


@dataclass(frozen=True, slots=True)
class Page:
    """Records oldest first. `cursor`: every seq up to it has been looked at.
    `next`: pass it as `after` to read on; None when the read reached the newest line."""

    records: list[LogRecord]
    next: int | None
    cursor: int


class _Room:
    """The characters of text a page may still take (`PAGE_TEXT` in all)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = PAGE_TEXT

    def take(self, records: list[LogRecord]) -> tuple[list[LogRecord], LogRecord | None]:
        """The first of `records` that fit (one at least while the page is empty, so that
        every page moves on), and the first left out, which fills the page (None: all fit)."""
        count, size = fitting(map(len, map(MESSAGE_OF, records)), self.left)
        if not count and records and self.left == PAGE_TEXT:  # a line alone over the page
            count, size = 1, len(records[0].message)
        if count < len(records):
            self.left = 0
            return records[:count], records[count]
        self.left -= size
        return records, None


@dataclass(frozen=True, slots=True)
class TailPage:
    """The newest matching records, oldest first. `before`: pass it as `before` to read
    further back; None when the read reached the oldest retained line. `last`: the seq the
    read looked down from (every seq from `before` + 1 up to it was looked at), to poll
    on from with `after=`: lines that came while it read are above it."""

    records: list[LogRecord]
    before: int | None
    last: int


class History:
    """Reads of one process's history: its ring (under `lock`) and the store."""

    def __init__(self, store: Store, name: str, ring: Ring, lock: threading.Lock) -> None:
        self.store = store
        self.name = name
        self.ring = ring
        self.lock = lock

    def _ring_since(self, after: int, count: int) -> list[LogRecord] | None:
        """Up to `count` ring records after `after`; None when `after + 1` is below the ring."""
        with self.lock:
            first = self.ring.first_seq
            if first is None or after + 1 < first:
                return None
            return self.ring.since(after, count)

    def _ring_first(self) -> int | None:
        with self.lock:
            return self.ring.first_seq

    def _ring_before(self, low: int, pos: int) -> list[LogRecord] | None:
        """Up to `SCAN_CHUNK` ring records with `low` < seq <= `pos`, the newest ones;
        None when `pos` is below the ring."""
        with self.lock:
            first = self.ring.first_seq
            if first is None or pos < first:
                return None
            start = max(low + 1, pos - SCAN_CHUNK + 1, first)
            return self.ring.since(start - 1, pos - start + 1)

    async def page(self, after: int, last: int, limit: int, query: Query) -> Page:
        """Matching records with `after` < seq <= `last`, oldest first, at most `limit`
        and `PAGE_TEXT` characters of text."""
        filtered = not query.is_empty
        coarse, step = replace(query, regex=None), _Step(limit)
        end = min(last, after + SCAN_ROWS) if filtered else last
        deadline = clock() + SEARCH_SECONDS
        out: list[LogRecord] = []
        room = _Room()
        pos = after  # every seq up to here has been looked at
        while pos < end and len(out) < limit and room.left > 0 and (not filtered or clock() < deadline):
            chunk = self._ring_since(pos, min(SCAN_CHUNK, end - pos))
            if chunk is None:
                first = self._ring_first()
                stop = end if first is None else min(end, first - 1)
                if filtered:
                    stop = min(stop, pos + STORE_STEP)
                if query.regex is not None:  # the store filters the rest; the regex, here
                    rows = await self.store.read(
                        self.name, after=pos, limit=step.rows, query=coarse, upto=stop, search=True
                    )
                    found, looked = await _scan(rows, query, limit - len(out), deadline)
                    step.grow(rows)
                    fit, over = room.take(found)
                    out += fit
                    if over is not None:  # the page is full: on from the first left out
                        pos = over.seq - 1
                    elif looked < len(rows):
                        pos = rows[looked - 1].seq
                    else:
                        pos = rows[-1].seq if len(rows) >= step.rows else stop
                    continue
                asked = min(limit - len(out), step.rows)
                got = await self.store.read(self.name, after=pos, limit=asked, query=query, upto=stop)
                step.grow(got)
                fit, over = room.take(got)
                out += fit
                if over is not None:
                    pos = over.seq - 1
                else:
                    pos = got[-1].seq if len(got) >= asked else stop
                continue
            if not chunk:
                break
            if not filtered:
                fit, over = room.take(chunk[: limit - len(out)])
                out += fit
                pos = fit[-1].seq if over is None else over.seq - 1
                continue
            found, looked = await _scan(chunk, query, limit - len(out), deadline)
            fit, over = room.take(found)
            out += fit
            if over is not None:
                pos = over.seq - 1
            else:
                pos = chunk[looked - 1].seq if looked else pos
        more = len(out) >= limit or pos < last
        return Page(out, pos if more else None, pos)

    async def tail(self, floor: int, before: int, n: int, query: Query) -> TailPage:
        """The last `n` matching records with `floor` < seq <= `before`, at most
        `PAGE_TEXT` characters of text, looking at no more than `SCAN_ROWS` records (for
        `SEARCH_SECONDS` at most) when filtering."""
        filtered = not query.is_empty
        coarse, step = replace(query, regex=None), _Step(n)
        low = max(floor, before - SCAN_ROWS) if filtered else floor
        deadline = clock() + SEARCH_SECONDS
        picked: list[LogRecord] = []  # newest first
        room = _Room()
        pos = before  # every seq above here has been looked at
        while pos > low and len(picked) < n and room.left > 0 and (not filtered or clock() < deadline):
            window = self._ring_before(low, pos)
            if window is None:
                bottom = max(low, pos - STORE_STEP) if filtered else low
                if query.regex is not None:  # the store filters the rest; the regex, here
                    rows = await self.store.tail(
                        self.name, step.rows, before=pos, query=coarse, after=bottom, search=True
                    )
                    step.grow(rows)
                    newest_first = rows[::-1]
                    found, looked = await _scan(newest_first, query, n - len(picked), deadline)
                    fit, over = room.take(found)
                    picked += fit
                    if over is not None:  # the page is full: back from the first left out
                        pos = over.seq
                    elif looked < len(rows):
                        pos = newest_first[looked - 1].seq - 1
                    else:
                        pos = rows[0].seq - 1 if len(rows) >= step.rows else bottom
                    continue
                asked = min(n - len(picked), step.rows)
                got = await self.store.tail(self.name, asked, before=pos, query=query, after=bottom)
                step.grow(got)
                fit, over = room.take(got[::-1])
                picked += fit
                if over is not None:
                    pos = over.seq
                else:
                    pos = got[0].seq - 1 if len(got) >= asked else bottom
                continue
            if not window:
                break
            if not filtered:
                fit, over = room.take(window[-(n - len(picked)) :][::-1])
                picked += fit
                pos = fit[-1].seq - 1 if over is None else over.seq
                continue
            newest_first = window[::-1]
            found, looked = await _scan(newest_first, query, n - len(picked), deadline)
            fit, over = room.take(found)
            picked += fit
            if over is not None:
                pos = over.seq
            else:
                pos = newest_first[looked - 1].seq - 1 if looked else pos
        picked.reverse()
        return TailPage(picked, pos if pos > floor else None, before)


class _Step:
    """How many rows a regex search reads from the store at a time: few at first (a
    search for 10 lines must not read 20,000 rows of 60 KB), then twice as many each
    time, up to `STORE_STEP` rows and about `STEP_BYTES` of text."""

    __slots__ = ("rows",)

    def __init__(self, want: int) -> None:
        self.rows = min(STORE_STEP, max(FIRST_STEP, 2 * want), STEP_BYTES // ROW_GUESS)

    def grow(self, rows: list[LogRecord]) -> None:
        size = sum(map(len, map(MESSAGE_OF, rows))) // len(rows) + 1 if rows else ROW_GUESS
        self.rows = max(1, min(2 * self.rows, STORE_STEP, STEP_BYTES // size))


def _matches(
    records: list[LogRecord], query: Query, want: int, deadline: float
) -> tuple[list[LogRecord], int]:
    """The first `want` records of `records` that match, and how many were looked at:
    all of them, or fewer once `want` were found or the deadline passed."""
    found: list[LogRecord] = []
    matches = query.matches
    every = 1 if query.regex is not None else 256  # a regex may take long on one line
    for i, record in enumerate(records):
        if matches(record):
            found.append(record)
            if len(found) >= want:
                return found, i + 1
        if i % every == every - 1 and clock() > deadline:
            return found, i + 1
    return found, len(records)


async def _scan(
    records: list[LogRecord], query: Query, want: int, deadline: float
) -> tuple[list[LogRecord], int]:
    """`_matches` in a filter thread: the event loop only waits for it."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_FILTERS, _matches, records, query, want, deadline)


async def matching(records: list[LogRecord], query: Query) -> list[bool]:
    """Whether `query` keeps each of `records`, asked in a filter thread: what a stream with
    a regex does with each window of lines, so that the event loop never runs the regex.
    `MATCH_CHUNK` records at a time, so that searches waiting for a filter thread get one
    between two chunks, however long the regex takes on these lines."""
    loop = asyncio.get_running_loop()
    kept: list[bool] = []
    for start in range(0, len(records), MATCH_CHUNK):
        chunk = records[start : start + MATCH_CHUNK]
        kept += await loop.run_in_executor(_FILTERS, list, map(query.matches, chunk))
    return kept
