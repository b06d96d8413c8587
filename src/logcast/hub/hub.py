"""The hub numbers every line of every process, keeps the memory tail and fans it out.

Capture threads call `lines()`/`status()`: each call takes the process lock once per
chunk, numbers the records, keeps and counts them, and pokes the store writer and the
event loop without waiting for either. Nothing on that path waits for a reader.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from itertools import repeat
from operator import add
from typing import Any

from logcast.errors import StoreError, UnknownProcess
from logcast.hub.encodings import Encoder, encode_records
from logcast.hub.journal import RESERVE_MIN, Journal
from logcast.hub.pages import PageCache
from logcast.hub.reads import SCAN_ROWS, History, Page, TailPage
from logcast.hub.reserver import Reserver
from logcast.hub.ring import RECORD_OVERHEAD, TEXT_SIZE_BASE, Ring, record_size
from logcast.hub.subscription import Subscription
from logcast.hub.writer import IDLE_AFTER, StoreWriter
from logcast.libc import malloc_trim
from logcast.loop import running_loop
from logcast.query import Query
from logcast.store.base import Store
from logcast.types import Level, Lines, LogRecord, ProcessState, Stream, text_bytes

log = logging.getLogger(__name__)

BACKLOG_MAX = 100_000  # matching records a tail goes back to at most (a stream's filtered `lines=N`)
BACKLOG_SCAN = 5 * SCAN_ROWS  # records it looks back through to find them
BACKLOG_PAGE = 2000  # records counted at a time to find where they begin
# A wake costs each woken subscriber a socket write, and a turn of its task unless the
# wake wrote for it (`Subscription.on_wake`, web/direct.py). The next wake comes no
# sooner than WAKE_COST_FACTOR times what the last one cost the loop after it: a few
# readers are woken at once, hundreds in rounds that leave the loop time for the rest,
# and lines that come meanwhile join the next round. Never later than WAKE_INTERVAL_MAX.
WAKE_COST_FACTOR = 1.0
WAKE_INTERVAL_MAX = 0.025
# Capture is read on the event loop (`PipeReader`) only while waking the readers costs the
# loop less than this: a read there waits for the loop's turn, and its lines' stamps with it.
# A measure older than LOOP_BUSY_FOR no longer counts (nobody was woken since).
LOOP_READS_BELOW = 0.003
LOOP_BUSY_FOR = 1.0

_new_record = tuple.__new__


def _in_turn(journal: Journal) -> tuple[Subscription, ...]:
    """`journal`'s readers in the order a wake serves them: each wake begins one further
    along, so that none of them is always the last written to (each write wakes a client,
    which costs the loop tens of microseconds) and each waits the same on average."""
    subs = tuple(journal.subscribers)
    if len(subs) < 2:
        return subs
    first = journal.first_woken = (journal.first_woken + 1) % len(subs)
    return subs[first:] + subs[:first]


class Hub:
    """Numbers, keeps and fans out the records of every process."""

    def __init__(
        self,
        store: Store,
        *,
        memory_lines: int = 100_000,
        memory_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        store_idle_after: float = IDLE_AFTER,
        trim: Callable[[], object] = malloc_trim,
    ) -> None:
        self.store = store
        self.memory_lines = memory_lines
        self.memory_bytes = memory_bytes
        self._clock = clock
        self._monotonic = monotonic
        self._journals: dict[str, Journal] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: set[str] = set()
        self._dirty_lock = threading.Lock()
        self._wake_pending = False
        self._last_wake = 0.0  # monotonic
        self._wake_cost = 0.0  # s the last wakes' turns took the loop (smoothed)
        self._woken_at = -math.inf  # monotonic: when `_wake_cost` was last measured
        self.pages = PageCache(store, passed=self._passed)
        self.writer = StoreWriter(
            store,
            self.journals,
            on_commit=self._announce,
            monotonic=monotonic,
            idle_after=store_idle_after,
            trim=trim,
        )
        self.reserver = Reserver(store, self.journals, on_visible=self._announce, monotonic=monotonic)

    # -- lifecycle ----------------------------------------------------------------

    async def open(self, names: Iterable[str], *, stored: bool = True) -> None:
        """Load where each process left off (seq, counters, run) and start the writer.

        `stored`: also the processes the store has a history of (their history stays
        readable); not for a store shared with other hosts, whose processes are theirs."""
        self._loop = asyncio.get_running_loop()
        others = await self.store.processes() if stored else []
        wanted = list(dict.fromkeys([*names, *others]))
        for name in wanted:
            meta = await self.store.meta(name)
            journal = self._new_journal(name)
            # Numbering resumes above every seq that was ever handed out: the reservation
            # covers them, stored or not.
            top = max(meta.last_seq, meta.reserved)
            journal.next_seq = top + 1
            journal.persisted = journal.committed = meta.last_seq
            journal.opened_at_seq = top
            journal.lines, journal.bytes, journal.last_run = meta.lines, meta.bytes, meta.last_run
            if meta.first_seq == 0 and meta.last_seq:
                journal.cleared_upto = meta.last_seq  # nothing retained: treat as cleared
                journal.store_cleared_upto = meta.last_seq
            if top > meta.last_seq:
                journal.lose(meta.last_seq + 1, top)
                journal.persisted = top
            journal.reserved = top
            self._journals[name] = journal
        marks = {name: journal.last_seq + RESERVE_MIN for name, journal in self._journals.items()}
        if marks:
            await asyncio.to_thread(self.store.reserve, marks)
            for name, mark in marks.items():
                self._journals[name].reserved = mark
        for journal in self._journals.values():
            if journal.lost:
                start, end = journal.lost[-1]
                self.status(
                    journal.name,
                    journal.last_run,
                    journal.state,
                    f"lines {start}..{end} were lost: logcast stopped before the store had them, or the"
                    " store lost them (their numbers are never used again)",
                    Level.WARNING,
                )
        self.writer.start()
        self.reserver.start()

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Persist what is left (within `timeout`), then stop the writer thread."""
        self.writer.request_stop()
        self.reserver.request_stop()
        if not await asyncio.to_thread(self.writer.join, timeout):
            log.warning("store writer still busy after %.0fs; unpersisted lines are lost", timeout)
        await asyncio.to_thread(self.reserver.join, timeout)
        # Nothing more is handed out: the reservation shrinks to what was, so that a
        # restart announces as lost exactly the lines the store did not get.
        marks = {name: journal.last_seq for name, journal in self._journals.items()}
        if marks and self.writer.started:
            try:
                await asyncio.to_thread(self.store.reserve, marks)
            except StoreError as exc:
                log.warning("could not record the last sequence numbers: %s", exc)
        self.end_subscriptions()

    def end_subscriptions(self) -> None:
        """Close every subscription (call on the loop): the streams reading them end."""
        for journal in self._journals.values():
            for sub in list(journal.subscribers):
                sub.close(sweep=False)  # the pages go with the hub

    def _passed(self, process: str, floor: int = 0) -> int:
        """The seq up to which no reader of `process` needs the store's pages: the lowest
        cursor of its readers behind the memory tail (one being set up counts, at 0), and
        never past the tail's front, so that a page reaching into the tail stays for a
        reader at its edge, which steps in and out of it in a flood. On the loop, where
        cursors move. Looking stops at a cursor below `floor` (the caller can drop nothing
        then): readers catching up one by one do not each scan them all."""
        journal = self._journals.get(process)
        if journal is None:
            return sys.maxsize
        with journal.lock:
            first = journal.ring.first_seq
        ring_from = sys.maxsize if first is None else first - 1  # a cursor here reads the ring
        lowest = ring_from
        for sub in journal.subscribers:
            cursor = sub.cursor
            if cursor < lowest:
                lowest = cursor
                if cursor < floor:
                    break
        return lowest

    def names(self) -> list[str]:
        return list(self._journals)

    def journals(self) -> list[Journal]:
        return list(self._journals.values())

    def get(self, name: str) -> Journal:
        try:
            return self._journals[name]
        except KeyError:
            raise UnknownProcess(name) from None

    def ensure(self, name: str) -> Journal:
        """The journal of `name`, created empty if the hub has never seen it."""
        journal = self._journals.get(name)
        if journal is None:
            journal = self._journals.setdefault(name, self._new_journal(name))
        return journal

    def _new_journal(self, name: str) -> Journal:
        durable = getattr(self.store, "commits_durable", True)
        return Journal(name, Ring(self.memory_lines, self.memory_bytes), commits_durable=durable)

    def last_run(self, name: str) -> int:
        journal = self._journals.get(name)
        return journal.last_run if journal else 0

    # -- the sink (capture threads and the supervisor) ------------------------------

    def lines(
        self, process: str, run: int, stream: Stream, timestamp: float, lines: Lines, *, hold: bool = True
    ) -> int | None:
        """Number, keep and count a chunk of lines; the seq of the first. A ring over
        its bounds with lines the store lacks holds the caller until the store has them,
        unless `hold` is False (a reader thread that must keep draining its pipe): then
        the ring holds this chunk beyond its bounds until they are persisted."""
        if not lines.texts:
            return None
        journal = self._journals.get(process) or self.ensure(process)
        if hold and _overfull(journal):
            self.writer.hold_while_behind(journal)
        texts, levels, partial = lines
        n = len(texts)
        joined = "".join(texts)
        plain = joined.isascii()
        nbytes = partial.count(False) + (len(joined) if plain else text_bytes(joined))  # `line_bytes` of each
        warnings = levels.count(Level.WARNING)
        errors = levels.count(Level.ERROR) + levels.count(Level.CRITICAL)
        # `record_size` of each: for ASCII a character a byte (`len`, ten times cheaper
        # than `getsizeof`, which other text needs: an emoji takes four)
        sizes = list(
            map(add, map(len, texts), repeat(RECORD_OVERHEAD, n))
            if plain
            else map(add, map(sys.getsizeof, texts), repeat(RECORD_OVERHEAD - TEXT_SIZE_BASE, n))
        )
        now = self._monotonic()
        with journal.lock:
            seq = journal.next_seq
            # A record per line, built by `map` and `zip` (loops in C), not a comprehension.
            fields = zip(
                range(seq, seq + n),
                repeat(timestamp, n),
                levels,
                texts,
                repeat(stream, n),
                repeat(process, n),
                repeat(run, n),
                partial,
                repeat(None, n),
                strict=True,
            )
            records = list(map(_new_record, repeat(LogRecord, n), fields))
            journal.next_seq = seq + len(records)
            journal.lines += len(records)
            journal.bytes += nbytes
            if run > journal.last_run:
                journal.last_run = run
            if warnings:
                journal.warnings += warnings
            if errors:
                journal.errors += errors
                for text, level in zip(reversed(texts), reversed(levels), strict=True):
                    if level is Level.ERROR or level is Level.CRITICAL:
                        journal.last_error = text[:500]
                        break
            journal.ring.extend(records, sizes)
            self._trim(journal)
            journal.sample(now)
            low = journal.reservation_low
        if low:
            self.reserver.poke()
        self._announce(process)
        return seq

    def _trim(self, journal: Journal) -> None:
        """Keep `journal`'s ring within bounds (lock held). While the writer keeps up,
        nothing it has not written leaves the ring: a chunk over the bounds stays (a
        reader thread's next chunk waits, in `lines`), and only a failed or stalled store
        makes the ring let go of lines (counted, announced)."""
        if journal.ring.overfull:  # asked of the writer only then: this runs for every chunk
            journal.trim(lose=not self.writer.keeping_up())

    def loop_busy(self) -> bool:
        """Waking readers costs the event loop `LOOP_READS_BELOW` or more a round (the
        smoothed cost of the last rounds, measured within `LOOP_BUSY_FOR`)."""
        return self._wake_cost >= LOOP_READS_BELOW and self._monotonic() - self._woken_at < LOOP_BUSY_FOR

    def would_hold(self, process: str) -> bool:
        """Whether `lines` for `process` might wait for the store now: its ring is over
        its bounds with lines the store does not have yet (`StoreWriter.hold_while_behind`).
        A reader thread hands its lines to its framer thread meanwhile, which may wait."""
        journal = self._journals.get(process)
        return journal is not None and _overfull(journal)

    def status(
        self,
        process: str,
        run: int,
        state: ProcessState,
        message: str,
        level: Level = Level.INFO,
    ) -> None:
        journal = self._journals.get(process) or self.ensure(process)
        with journal.lock:
            record = LogRecord(
                journal.next_seq, self._clock(), level, message, Stream.SYSTEM, process, run, False, state
            )
            journal.next_seq += 1
            journal.state = state
            if run > journal.last_run:
                journal.last_run = run
            if level in (Level.ERROR, Level.CRITICAL):
                journal.last_error = message
            journal.ring.extend([record], [record_size(message)], status=True)
            self._trim(journal)
            low = journal.reservation_low
        if low:
            self.reserver.poke()
        self._announce(process)

    def _announce(self, process: str) -> None:
        """New lines (or lines newly visible): poke the writer and wake the readers."""
        self.writer.poke()
        loop = self._loop
        if loop is None:
            return
        with self._dirty_lock:
            self._dirty.add(process)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            if running_loop() is loop:  # capture read on the loop itself: no hop to it
                self._schedule_wake()
            else:
                loop.call_soon_threadsafe(self._schedule_wake)
        except RuntimeError:  # the loop is closed: nobody to wake
            pass

    def _schedule_wake(self) -> None:
        """Wake now, or one wake interval after the last wake if that is later.

        The interval is what the last wakes cost (`WAKE_COST_FACTOR` times): with few
        readers that is microseconds and a line is not held back; with hundreds, fewer
        and larger writes keep the loop from spending all its time on turns.
        """
        loop = self._loop
        assert loop is not None
        interval = min(self._wake_cost * WAKE_COST_FACTOR, WAKE_INTERVAL_MAX)
        wait = min(self._last_wake + interval - self._monotonic(), interval)  # a clock gone back
        if wait <= 0:
            self._wake()
        else:
            loop.call_later(wait, self._wake)

    def _wake(self) -> None:
        started = self._last_wake = self._monotonic()
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
            self._wake_pending = False
        woken = 0
        for name in dirty:
            journal = self._journals.get(name)
            if journal is not None:
                for sub in _in_turn(journal):
                    if sub.on_wake is None or not self._write_now(sub):
                        sub.event.set()
                woken += len(journal.subscribers)
        if woken and self._loop is not None:
            # The woken readers' turns are queued before this: it runs once they all had one.
            self._loop.call_soon(self._woken, started)

    @staticmethod
    def _write_now(sub: Subscription) -> bool:
        """Have a waiting reader write what is new itself, here on the loop (its `on_wake`):
        no turn of its task. False when it did not: its task takes over from its cursor."""
        write = sub.on_wake
        assert write is not None
        try:
            if write():
                return True
        except Exception:
            log.exception("a stream's direct write of process %s failed", sub.process)
        sub.on_wake = None
        return False

    def _woken(self, started: float) -> None:
        self._woken_at = now = self._monotonic()
        self._wake_cost = (self._wake_cost + now - started) / 2

    async def flush(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        """Wait until the store holds every record written so far (or `timeout`)."""
        targets = {journal: journal.last_seq for journal in self._journals.values()}
        return await asyncio.to_thread(self.writer.wait_persisted, targets, timeout)

    @asynccontextmanager
    async def _no_batch_in_flight(self) -> AsyncIterator[None]:
        """Hold the writer between batches (waited for in a thread, not on the loop)."""
        held = self.writer.no_batch_in_flight()
        await asyncio.to_thread(held.__enter__)
        try:
            yield
        finally:
            held.__exit__(None, None, None)

    # -- reading ------------------------------------------------------------------------

    async def subscribe(
        self,
        process: str,
        *,
        after: int | None = None,
        lines: int | None = None,
        query: Query | None = None,
    ) -> Subscription:
        """A cursor: history (after `after`, or the last `lines`, or all retained), then realtime."""
        journal = self.get(process)
        query = query or Query()
        sub = Subscription(self, journal, query)
        with journal.lock:
            until = journal.visible_seq
            ring_first = journal.ring.first_seq
            journal.subscribers.add(sub)
        sub.until = until
        try:
            if after is not None:
                sub.cursor = self._resume_at(max(after, 0), until)
                sub.until = max(until, sub.cursor)
            else:
                floor = await self._floor(journal, ring_first)
                if lines is None:
                    sub.cursor = floor - 1
                elif query.is_empty:
                    sub.cursor = max(floor - 1, until - max(lines, 0))
                else:
                    # history from the first of the last `lines` matches, read like a
                    # filtered resume (holes, clears and writes in flight as for any reader)
                    first = await self._backlog_start(process, lines, until, query)
                    sub.cursor = until if first is None else first - 1
        except BaseException:
            sub.close()
            raise
        return sub

    async def _backlog_start(self, process: str, n: int, before: int, query: Query) -> int | None:
        """The seq of the `n`th newest record (at most `BACKLOG_MAX`) matching `query`
        with seq <= `before`, looking back at most `BACKLOG_SCAN` records; None when none
        matches. Counted a page at a time, so that a subscriber holds no records: it reads
        its history from there, filtered, a window at a time (`Subscription._read`)."""
        first = None
        async for page in self._tail_pages(process, n, before, query, BACKLOG_SCAN, BACKLOG_PAGE):
            if page.records:
                first = page.records[0].seq
        return first

    def _resume_at(self, after: int, until: int) -> int:
        """Where a reader that had the lines up to `after` resumes: there, or at the last
        line this host has if it names one beyond (seqs it never gave out)."""
        return min(after, until)

    async def _floor(self, journal: Journal, ring_first: int | None) -> int:
        """The lowest seq still retained anywhere (memory or store)."""
        meta = await self.store.meta(journal.name)
        candidates = [s for s in (meta.first_seq, ring_first) if s]
        floor = min(candidates) if candidates else journal.next_seq
        return max(floor, journal.cleared_upto + 1)

    def _history(self, journal: Journal) -> History:
        return History(self.store, journal.name, journal.ring, journal.lock)

    async def read_page(
        self, process: str, *, after: int = 0, limit: int = 1000, query: Query | None = None
    ) -> Page:
        """History oldest first, from the store and the ring; a filtered read looks at
        no more than `SCAN_ROWS` records and says where to go on (`reads.py`)."""
        journal = self.get(process)
        after = max(after, journal.cleared_upto)
        return await self._history(journal).page(after, journal.visible_seq, limit, query or Query())

    async def page(
        self, process: str, *, after: int = 0, limit: int = 1000, query: Query | None = None
    ) -> list[LogRecord]:
        """The records of `read_page`."""
        return (await self.read_page(process, after=after, limit=limit, query=query)).records

    async def tail_page(
        self, process: str, n: int, *, before: int | None = None, query: Query | None = None
    ) -> TailPage:
        """The last `n` matching records with seq <= before, oldest first; a filtered
        read looks back at no more than `SCAN_ROWS` records (`reads.py`)."""
        journal = self.get(process)
        last = journal.visible_seq if before is None else min(before, journal.visible_seq)
        if n <= 0:
            return TailPage([], last if last > journal.cleared_upto else None, last)
        return await self._history(journal).tail(journal.cleared_upto, last, n, query or Query())

    async def tail(
        self,
        process: str,
        n: int,
        *,
        before: int | None = None,
        query: Query | None = None,
        scan: int | None = BACKLOG_SCAN,
    ) -> list[LogRecord]:
        """The last `n` (at most `BACKLOG_MAX`) matching records with seq <= before,
        oldest first; a filtered one looks back at most `scan` records (None: through
        the whole history, one bounded window at a time)."""
        out: list[LogRecord] = []
        async for page in self._tail_pages(process, n, before, query, scan):
            out[:0] = page.records
        return out

    async def _tail_pages(
        self,
        process: str,
        n: int,
        before: int | None,
        query: Query | None,
        scan: int | None,
        page_size: int | None = None,
    ) -> AsyncIterator[TailPage]:
        """`tail_page`s going back from `before` until they hold the last `n` (at most
        `BACKLOG_MAX`) matching records, each asking for at most `page_size` of them (and
        holding at most `PAGE_TEXT` of text); a filtered read looks back at most `scan`
        records (None: through the whole history, one bounded window at a time)."""
        n = min(n, BACKLOG_MAX)
        journal = self.get(process)
        top = journal.visible_seq if before is None else min(before, journal.visible_seq)
        filtered = query is not None and not query.is_empty
        found, pos = 0, top
        while found < n:
            want = n - found if page_size is None else min(n - found, page_size)
            page = await self.tail_page(process, want, before=pos, query=query)
            found += len(page.records)
            yield page
            if page.before is None or (filtered and scan is not None and top - page.before >= scan):
                break
            pos = page.before

    async def clear(self, process: str, upto: int | None = None) -> int:
        """Forget the history of `process` up to seq `upto` (all of it when None);
        numbering goes on. Returns the last seq cleared."""
        journal = self.get(process)
        with journal.lock:
            upto = journal.last_seq if upto is None else min(upto, journal.last_seq)
            upto = max(upto, journal.cleared_upto)
            if upto <= journal.store_cleared_upto:
                return upto
        # Memory first: from here on no batch takes a seq up to `upto` (`persisted`), and
        # readers skip them. A batch already taken may hold some: it is waited out, but
        # the store's clear itself runs beside the writer (SQLite's lock takes turns), so
        # that clearing millions of lines holds up no process's new lines (a review).
        self._forget(journal, upto)
        self.writer.release_held()
        async with self._no_batch_in_flight():
            pass
        await self.store.clear(process, upto)  # failed: the next clear asks the store again
        with journal.lock:
            journal.store_cleared_upto = max(journal.store_cleared_upto, upto)
        self.pages.forget(process)
        return upto

    def _forget(self, journal: Journal, upto: int) -> None:
        with journal.lock:
            first = journal.ring.first_seq
            if upto >= journal.last_seq:
                journal.ring.clear()
            elif first is not None and upto >= first:
                journal.ring.drop(upto - first + 1)
            journal.cleared_upto = max(journal.cleared_upto, upto)
            if journal.persisted < upto:
                journal.persisted = upto

    # -- numbers --------------------------------------------------------------------------

    def stats(self, process: str) -> dict[str, Any]:
        journal = self.get(process)
        now = self._monotonic()
        with journal.lock:
            last = journal.visible_seq
            behind = sorted(max(0, last - sub.cursor) for sub in journal.subscribers)
            return {
                "lines": journal.lines,
                "bytes": journal.bytes,
                "subscribers": len(journal.subscribers),
                "dropped": journal.dropped,
                "lines_per_s": round(journal.rate(now), 2),
                "warnings": journal.warnings,
                "errors": journal.errors,
                "last_error": journal.last_error,
                "memory_lines": len(journal.ring),
                "memory_bytes": journal.ring.bytes,
                "last_seq": last,
                "persisted_seq": journal.committed,
                "pending": max(0, journal.last_seq - journal.persisted),
                "store_lost": max(journal.store_lost, journal.owner_lost),
                "behind": behind,
            }

    def encode_logs(
        self, journal: Journal, records: list[LogRecord], encode: Encoder, fmt: str = "log"
    ) -> list[bytes]:
        """The `fmt` encoding of each record, computed once and shared through the ring."""
        return encode_records(journal, records, encode, fmt)


def _overfull(journal: Journal) -> bool:
    """The ring is over its bounds (with lines the store lacks: the hub trims the others)."""
    with journal.lock:  # another thread may be trimming the ring: never look at it unlocked
        return journal.ring.overfull
