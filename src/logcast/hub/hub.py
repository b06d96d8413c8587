"""The hub: sequence numbers, the memory tail, the store writer and subscribers.

Capture threads call `lines()`/`status()`; each call takes the process lock once per
chunk (not per line), numbers the records, appends them to the ring, counts them,
and pokes two things without waiting for either: the store writer thread (a
`threading.Event`) and the event loop (one coalesced `call_soon_threadsafe`), which
wakes the subscribers of that process: at once after a quiet spell, and at most every
5–25 ms while lines keep coming (with 200 subscribers of a child that writes every
millisecond, waking them per chunk kept the loop busy just turning them over). Nothing
on that path waits for a reader or a socket. It waits for the store writer in one case
only (`_await_writer`): while the ring is over its bounds with lines the store does not
have yet and the writer is healthy and moving. Capture threads are framer threads
behind a spool of raw bytes, so even then the child does not wait.

A subscriber is a cursor (`Subscription`), not a queue. It reads the ring from its
cursor on; when it has fallen behind the ring it reads from the store, and only a
range that neither holds any more (retention, a clear, or lines evicted before the
writer could persist them) becomes a `Gap`. Memory per subscriber is constant.

The history→realtime seam is exact by construction: at subscribe time, under the
process lock, the subscriber notes the last seq written (`until`); everything up to
it is history, everything after it realtime, and both come through the same cursor.

The store writer is one thread. It takes what the ring holds beyond `persisted`,
writes it in one batch per round, retries after failures (disk full, database
locked) with backoff while capture goes on from memory, and holds `_writer_lock`
while writing so that `clear()` never races a batch in flight. Each round starts with
the next process, so one that floods cannot keep another's lines from the store. When
capture is not held (writes failing, or one write stalled), the ring keeps records the
writer has not persisted yet beyond its bounds, up to four times the bounds; past that
they are dropped from memory and counted (`store_lost`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import add
from typing import Any

from logcast.errors import StoreError, UnknownProcess
from logcast.hub.pages import PageCache
from logcast.hub.reads import SCAN_ROWS, History, Page, TailPage
from logcast.hub.ring import Ring
from logcast.query import Query
from logcast.store.base import Store
from logcast.types import EventType, Level, Lines, LogRecord, ProcessState, Stream

log = logging.getLogger(__name__)

WRITE_BATCH = 20_000
RESERVE_MIN = 1_000  # seqs reserved ahead of the last one numbered, at least
RESERVE_MAX = 2_000_000  # and at most
LOST_RANGES = 1024  # lost seq ranges remembered per process (for the gaps' reason)
BACKLOG_MAX = 100_000  # records a stream's filtered `lines=N` history holds at most
BACKLOG_SCAN = 5 * SCAN_ROWS  # records it looks back through to find them
RATE_WINDOW = 5.0  # seconds over which lines/s is measured
PENDING_FACTOR = 4  # the ring may hold this many times its bounds while the writer catches up
SWITCH_INTERVAL = 0.001  # the GIL's, in seconds (see tune_runtime)
WRITER_STALL = 1.0  # a store write taking longer than this (s) no longer holds capture
# Subscribers are woken at most every WAKE_INTERVAL s (a flood wakes them per batch, not
# per chunk), and less often the more of them there are.
WAKE_INTERVAL = 0.005
WAKE_PER_SUBSCRIBER = 0.0001
WAKE_INTERVAL_MAX = 0.025


def tune_runtime() -> None:
    """Tune the interpreter for a process that keeps a large memory tail and many threads.

    The cyclic garbage collector: records are tuples that live for a while in the ring;
    with the default thresholds every young collection and every full one walks them
    again and again, which cost 4x the CPU of capture itself when measured (thread CPU
    time, 1M lines). Records form no cycles, so collecting rarely is safe: young
    collections every 500,000 allocations, and the objects that exist after start-up
    (modules, the app) are frozen out of every later full collection. Each young
    collection walks the young objects still alive, a memory tail's worth of records,
    so fewer of them is less work: every 100,000 allocations it still took 5% of the
    CPU of a flood, and the ingest rate rose by 5-8% at 500,000 (bench/ingest.py).

    The GIL's switch interval, 5 ms by default: a thread coming back from a system call
    that released the GIL (the store writer after each SQLite statement, a reader after
    `os.read`, the event loop after `epoll`) waits up to that long while another thread
    computes. At 1 ms the store writer kept up twice as well beside a busy framer
    (measured: 100,000 → 200,000 rows/s with a CPU-bound thread beside it).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(500_000, 50, 100)
    sys.setswitchinterval(SWITCH_INTERVAL)


_new_record = tuple.__new__


@dataclass(frozen=True, slots=True)
class Gap:
    """Lines `start`..`end` (inclusive) of `process` will not reach this subscriber."""

    process: str
    start: int
    end: int
    reason: str  # retention (left memory and store) | lost (never reached the store) | cleared

    @property
    def count(self) -> int:
        return self.end - self.start + 1


# What a subscription yields: (type, payload). Payload is a LogRecord for historical,
# realtime and status; a Gap for gap; the seq for historical_complete.
Entry = tuple[EventType, "LogRecord | Gap | int"]


@dataclass
class ProcessLog:
    """Everything the hub keeps for one process; guarded by `lock`."""

    name: str
    ring: Ring
    next_seq: int = 1
    persisted: int = 0  # highest seq the store holds (or that was given up on)
    committed: int = 0  # highest seq the store has committed
    reserved: int = 0  # seqs up to here may be shown to readers (the store holds this mark)
    writing: int = 0  # highest seq the writer has taken and is writing now
    cleared_upto: int = 0
    lines: int = 0
    bytes: int = 0
    warnings: int = 0
    errors: int = 0
    last_error: str | None = None
    last_run: int = 0
    state: ProcessState = ProcessState.STOPPED
    store_lost: int = 0
    opened_at_seq: int = 0  # last seq when this logcast started (what came before is old history)
    dropped: int = 0  # lines announced to subscribers as gaps
    lost: list[tuple[int, int]] = field(default_factory=list)  # seq ranges the store will never have
    lock: threading.Lock = field(default_factory=threading.Lock)
    subscribers: set[Subscription] = field(default_factory=set)
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def visible_seq(self) -> int:
        """The last seq a reader may be given: one the store has reserved or committed,
        so that no restart can give its number to another line."""
        return min(self.next_seq - 1, max(self.reserved, self.committed))

    def lose(self, start: int, end: int) -> None:
        """Seqs `start`..`end` were handed out but will never be stored (lock held).
        Counts each seq once, however often it is reported."""
        if end < start:
            return
        known = 0
        for a, b in reversed(self.lost):
            if b < start:
                break
            known += max(0, min(b, end) - max(a, start) + 1)
        self.store_lost += end - start + 1 - known
        if self.lost and self.lost[-1][1] + 1 >= start and self.lost[-1][0] <= start:
            self.lost[-1] = (self.lost[-1][0], max(end, self.lost[-1][1]))
        else:
            self.lost.append((start, end))
            self.lost.sort()
            del self.lost[:-LOST_RANGES]

    def was_lost(self, start: int, end: int) -> bool:
        """Some seq in `start`..`end` is in a lost range."""
        return any(a <= end and start <= b for a, b in self.lost)

    @property
    def reservation_low(self) -> bool:
        """Fewer than half of `RESERVE_MIN` reserved seqs are left: wake the reserver now
        (it also looks every half second, against `reservation_lead`)."""
        return (self.reserved - self.next_seq) * 2 < RESERVE_MIN

    def reservation_lead(self, now: float) -> int:
        """How far ahead of the last seq to reserve: two seconds of output, within bounds."""
        return min(max(int(self.rate(now) * 2), RESERVE_MIN), RESERVE_MAX)

    def rate(self, now: float) -> float:
        samples = [s for s in self.samples if now - s[0] <= RATE_WINDOW]
        if not samples:
            return 0.0
        t0, n0 = samples[0]
        span = max(now - t0, 1.0)
        return (self.lines - n0) / span


class Hub:
    """Numbers, keeps and fans out the records of every process."""

    def __init__(
        self,
        store: Store,
        *,
        memory_lines: int = 100_000,
        memory_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.memory_lines = memory_lines
        self.memory_bytes = memory_bytes
        self._clock = clock
        self._logs: dict[str, ProcessLog] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: set[str] = set()
        self._dirty_lock = threading.Lock()
        self._wake_pending = False
        self._last_wake = 0.0
        self._persist = threading.Event()
        self._stopping = threading.Event()
        self._writer_lock = threading.Lock()
        self._room = threading.Condition(threading.Lock())  # the writer made progress
        self._writer_ok = True  # the last write succeeded
        self._write_started: float | None = None  # monotonic time the write in flight began
        self._written = 0  # write rounds ended (either way); guarded by _room
        self._next_first = 0  # which process the next write round starts with
        self._writer: threading.Thread | None = None
        self._reserver: threading.Thread | None = None
        self._want_reservation = threading.Event()
        self.pages = PageCache(store)

    # -- lifecycle ----------------------------------------------------------------

    async def open(self, names: Iterable[str]) -> None:
        """Load where each process left off (seq, counters, run) and start the writer."""
        self._loop = asyncio.get_running_loop()
        wanted = list(dict.fromkeys([*names, *await self.store.processes()]))
        for name in wanted:
            meta = await self.store.meta(name)
            plog = ProcessLog(name, Ring(self.memory_lines, self.memory_bytes))
            # Numbering resumes above every seq that was ever handed out: the reservation
            # covers them, stored or not (module docstring of store/reserve.py).
            top = max(meta.last_seq, meta.reserved)
            plog.next_seq = top + 1
            plog.persisted = plog.committed = meta.last_seq
            plog.opened_at_seq = top
            plog.lines, plog.bytes, plog.last_run = meta.lines, meta.bytes, meta.last_run
            if meta.first_seq == 0 and meta.last_seq:
                plog.cleared_upto = meta.last_seq  # nothing retained: treat as cleared
            if top > meta.last_seq:
                plog.lose(meta.last_seq + 1, top)
                plog.persisted = top
            plog.reserved = top
            self._logs[name] = plog
        marks = {name: plog.last_seq + RESERVE_MIN for name, plog in self._logs.items()}
        if marks:
            await asyncio.to_thread(self.store.reserve, marks)
            for name, mark in marks.items():
                self._logs[name].reserved = mark
        for plog in self._logs.values():
            if plog.lost:
                start, end = plog.lost[-1]
                self.status(
                    plog.name,
                    plog.last_run,
                    plog.state,
                    f"lines {start}..{end} were lost: logcast stopped before the store had them"
                    " (their numbers are never used again)",
                    Level.WARNING,
                )
        self._writer = threading.Thread(target=self._write_loop, name="logcast-store-writer", daemon=True)
        self._writer.start()
        self._reserver = threading.Thread(target=self._reserve_loop, name="logcast-reserver", daemon=True)
        self._reserver.start()

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Persist what is left (within `timeout`), then stop the writer thread."""
        self._stopping.set()
        self._persist.set()
        self._release_held()
        self._want_reservation.set()
        writer = self._writer
        if writer is not None:
            await asyncio.to_thread(writer.join, timeout)
            if writer.is_alive():
                log.warning("store writer still busy after %.0fs; unpersisted lines are lost", timeout)
        reserver = self._reserver
        if reserver is not None:
            await asyncio.to_thread(reserver.join, timeout)
        # Nothing more is handed out: the reservation shrinks to what was, so that a
        # restart announces as lost exactly the lines the store did not get.
        marks = {name: plog.last_seq for name, plog in self._logs.items()}
        if marks and self._writer is not None:
            try:
                await asyncio.to_thread(self.store.reserve, marks)
            except StoreError as exc:
                log.warning("could not record the last sequence numbers: %s", exc)
        self.end_subscriptions()

    def end_subscriptions(self) -> None:
        """Close every subscription (call on the loop): the streams reading them end."""
        for plog in self._logs.values():
            for sub in list(plog.subscribers):
                sub.close()

    def names(self) -> list[str]:
        return list(self._logs)

    def get(self, name: str) -> ProcessLog:
        try:
            return self._logs[name]
        except KeyError:
            raise UnknownProcess(name) from None

    def ensure(self, name: str) -> ProcessLog:
        """The log of `name`, created empty if the hub has never seen it."""
        plog = self._logs.get(name)
        if plog is None:
            plog = self._logs.setdefault(name, ProcessLog(name, Ring(self.memory_lines, self.memory_bytes)))
        return plog

    def last_run(self, name: str) -> int:
        plog = self._logs.get(name)
        return plog.last_run if plog else 0

    # -- the sink (capture threads and the supervisor) ------------------------------

    def lines(self, process: str, run: int, stream: Stream, timestamp: float, lines: Lines) -> None:
        if not lines.texts:
            return
        plog = self._logs.get(process) or self.ensure(process)
        with plog.lock:  # another thread may be trimming the ring: never look at it unlocked
            overfull = plog.ring.overfull
        if overfull:
            self._await_writer(plog)
        texts, levels, partial = lines
        n = len(texts)
        joined = "".join(texts)
        nbytes = partial.count(False) + (
            len(joined) if joined.isascii() else len(joined.encode("utf-8", "surrogatepass"))
        )
        warnings = levels.count(Level.WARNING)
        errors = levels.count(Level.ERROR) + levels.count(Level.CRITICAL)
        sizes = list(map(add, map(len, texts), repeat(64, n)))
        with plog.lock:
            seq = plog.next_seq
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
            plog.next_seq = seq + len(records)
            plog.lines += len(records)
            plog.bytes += nbytes
            if run > plog.last_run:
                plog.last_run = run
            if warnings:
                plog.warnings += warnings
            if errors:
                plog.errors += errors
                for text, level in zip(reversed(texts), reversed(levels), strict=True):
                    if level is Level.ERROR or level is Level.CRITICAL:
                        plog.last_error = text[:500]
                        break
            plog.ring.extend(records, sizes)
            self._trim(plog)
            samples = plog.samples
            now = time.monotonic()
            if not samples or now - samples[-1][0] >= 0.5:
                samples.append((now, plog.lines))
            low = plog.reservation_low
        if low:
            self._want_reservation.set()
        self._announce(process)

    def status(
        self,
        process: str,
        run: int,
        state: ProcessState,
        message: str,
        level: Level = Level.INFO,
    ) -> None:
        plog = self._logs.get(process) or self.ensure(process)
        with plog.lock:
            record = LogRecord(
                plog.next_seq, self._clock(), level, message, Stream.SYSTEM, process, run, False, state
            )
            plog.next_seq += 1
            plog.state = state
            if run > plog.last_run:
                plog.last_run = run
            if level in (Level.ERROR, Level.CRITICAL):
                plog.last_error = message
            plog.ring.extend([record], [len(message) + 64], status=True)
            self._trim(plog)
            low = plog.reservation_low
        if low:
            self._want_reservation.set()
        self._announce(process)

    def _reserve_loop(self) -> None:
        """The reserver thread: keeps every process's reservation ahead of its numbers.

        Capture never waits for it: lines are numbered, kept and written whatever the
        reservation, but a reader is given no seq above `visible_seq` (reserved or
        committed). Two seconds of output are reserved ahead, so readers normally do not
        notice; while the reservation cannot be written (a failing disk, Redis away)
        new lines wait in memory for readers, and show once it can, or once stored."""
        backoff = 0.0
        while not self._stopping.is_set():
            self._want_reservation.wait(timeout=0.5)
            self._want_reservation.clear()
            now = time.monotonic()
            marks: dict[str, int] = {}
            for plog in list(self._logs.values()):
                with plog.lock:
                    lead = plog.reservation_lead(now)
                    if (plog.reserved - plog.next_seq) * 2 < lead:
                        marks[plog.name] = plog.next_seq + lead
            if not marks:
                continue
            try:
                self.store.reserve(marks)
            except StoreError as exc:
                backoff = min(max(backoff * 2, 0.05), 2.0)
                log.error(
                    "cannot reserve sequence numbers (%s); new lines wait in memory for readers; retrying in %.2fs",
                    exc,
                    backoff,
                )
                self._stopping.wait(backoff)
                self._want_reservation.set()
                continue
            backoff = 0.0
            for name, mark in marks.items():
                plog = self._logs[name]
                with plog.lock:
                    hidden = plog.visible_seq < plog.last_seq
                    plog.reserved = max(plog.reserved, mark)
                if hidden:
                    self._announce(name)  # lines that waited for this are visible now

    def _await_writer(self, plog: ProcessLog) -> None:
        """Hold a capture thread while its ring is over its bounds with lines the store
        does not have yet (the ring lets go only of persisted lines, so that is what an
        overfull ring means: the writer is a whole ring behind, in lines or in bytes).

        Capture hands lines on from a framer thread, behind a spool of raw bytes: when
        it waits here the child does not (the reader keeps reading into the spool), and
        the burst waits as raw bytes, a third of the memory of framed records, instead
        of records being evicted before the store has them. Only while the writer is
        healthy and moving: when writes fail (disk full) or one write has taken longer
        than `WRITER_STALL`, capture goes on from memory and the ring lets go of what it
        must (counted, announced).
        """
        while True:
            generation = self._written  # writes completed, read before looking
            with plog.lock:
                self._trim(plog)  # let go of what the writer has persisted since
                over = plog.ring.overfull
            if not over or not self._writer_ok or self._stopping.is_set():
                return
            started = self._write_started
            if started is not None and time.monotonic() - started > WRITER_STALL:
                return
            with self._room:
                if self._written == generation:
                    self._room.wait(0.1)

    def _trim(self, plog: ProcessLog) -> None:
        """Keep the ring within bounds; spare what the writer has not persisted yet."""
        ring = plog.ring
        excess = ring.over()
        if not excess:
            return
        first = ring.first_seq or 0
        # Only what the store has committed goes: records in a write still in flight stay
        # until it commits, so that a reader never finds them in neither ring nor store.
        persisted_room = max(0, plog.persisted - first + 1)
        hard = len(ring) - PENDING_FACTOR * ring.max_lines
        n = max(min(excess, persisted_room), hard, 0)
        if ring.bytes > PENDING_FACTOR * ring.max_bytes:
            n = max(n, excess)
        taken = max(persisted_room, plog.writing - first + 1)
        if n > taken:
            # never written and never will be; records in a write in flight are counted
            # by the writer if that write fails (`_write_round`)
            plog.lose(first + taken, first + n - 1)
        ring.drop(n)

    def _announce(self, process: str) -> None:
        self._persist.set()
        loop = self._loop
        if loop is None:
            return
        with self._dirty_lock:
            self._dirty.add(process)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            loop.call_soon_threadsafe(self._schedule_wake)
        except RuntimeError:  # the loop is closed: nobody to wake
            pass

    def _schedule_wake(self) -> None:
        """Wake now, or one wake interval after the last wake if that is later.

        The interval grows with the number of subscribers (`WAKE_PER_SUBSCRIBER` each,
        from `WAKE_INTERVAL` up to `WAKE_INTERVAL_MAX`): every wake costs each of them a
        turn and a socket write, so with hundreds of them fewer, larger writes keep the
        loop from spending all its time on turns (and lines arrive sooner, not later).
        """
        loop = self._loop
        assert loop is not None
        now = loop.time()
        subscribers = sum(len(plog.subscribers) for plog in self._logs.values())
        interval = min(max(WAKE_INTERVAL, subscribers * WAKE_PER_SUBSCRIBER), WAKE_INTERVAL_MAX)
        due = self._last_wake + interval
        if due <= now:
            self._wake()
        else:
            loop.call_at(due, self._wake)

    def _wake(self) -> None:
        if self._loop is not None:
            self._last_wake = self._loop.time()
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
            self._wake_pending = False
        for name in dirty:
            plog = self._logs.get(name)
            if plog is not None:
                for sub in plog.subscribers:
                    sub.event.set()

    # -- the store writer thread ------------------------------------------------------

    def _write_loop(self) -> None:
        backoff = 0.0
        while True:
            self._persist.wait(timeout=1.0)
            self._persist.clear()
            stopping = self._stopping.is_set()
            try:
                while self._write_round():
                    pass
                backoff = 0.0
            except StoreError as exc:
                self._progress(ok=False)
                backoff = min(max(backoff * 2, 0.1), 5.0)
                log.warning("history store write failed (%s); retrying in %.1fs", exc, backoff)
                if stopping:
                    return
                self._stopping.wait(backoff)
                self._persist.set()
                continue
            except Exception:
                self._progress(ok=False)
                log.exception("store writer failed")
                if stopping:
                    return
                self._stopping.wait(1.0)
                self._persist.set()
                continue
            if stopping:
                return

    def _write_round(self) -> bool:
        """Write one batch of everything not yet persisted; True if it wrote something."""
        with self._writer_lock:
            batch: list[LogRecord] = []
            ends: list[tuple[ProcessLog, int]] = []
            # Start each round with the next process: one that floods (and always has a
            # whole batch waiting) must not keep the others' lines from the store.
            logs = list(self._logs.values())
            start = self._next_first % len(logs) if logs else 0
            self._next_first = start + 1
            for plog in logs[start:] + logs[:start]:
                with plog.lock:
                    first = plog.ring.first_seq
                    if first is None or plog.persisted >= plog.last_seq:
                        continue
                    if plog.persisted < first - 1:  # evicted before they could be written
                        plog.lose(plog.persisted + 1, first - 1)
                        plog.persisted = first - 1
                    room = WRITE_BATCH - len(batch)
                    if room <= 0:
                        break
                    records = plog.ring.since(plog.persisted, room)
                    if records:
                        plog.writing = records[-1].seq
                if records:
                    batch.extend(records)
                    ends.append((plog, records[-1].seq))
            if not batch:
                return False
            self._write_started = time.monotonic()
            try:
                self.store.write(batch)
            except BaseException:
                for plog, _ in ends:
                    with plog.lock:
                        plog.writing = plog.persisted
                raise
            finally:
                self._write_started = None
            for plog, end in ends:
                with plog.lock:
                    if end > plog.persisted:
                        plog.persisted = end
                    plog.committed = max(plog.committed, end)
            self._progress(ok=True)
            return True

    def _progress(self, *, ok: bool) -> None:
        """A write round ended (`ok`: it succeeded)."""
        self._writer_ok = ok
        self._release_held()

    def _release_held(self) -> None:
        """Let every capture thread held in `_await_writer` look again."""
        with self._room:
            self._written += 1
            self._room.notify_all()

    async def flush(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        """Wait until the store holds every record written so far (or `timeout`)."""
        targets = {name: plog.last_seq for name, plog in self._logs.items()}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._logs[n].persisted >= s for n, s in targets.items()):
                return True
            self._persist.set()
            await asyncio.sleep(0.01)
        return False

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
        plog = self.get(process)
        query = query or Query()
        sub = Subscription(self, plog, query)
        with plog.lock:
            until = plog.visible_seq
            ring_first = plog.ring.first_seq
            plog.subscribers.add(sub)
        sub.until = until
        try:
            if after is not None:
                sub.cursor = min(max(after, 0), until)
            else:
                floor = await self._floor(plog, ring_first)
                if lines is None:
                    sub.cursor = floor - 1
                elif query.is_empty:
                    sub.cursor = max(floor - 1, until - max(lines, 0))
                else:
                    sub.backlog = await self.tail(process, lines, before=until, query=query)
                    sub.cursor = until
        except BaseException:
            sub.close()
            raise
        if sub.cursor >= until and not sub.backlog:
            sub.complete = True
            sub.pending_complete = True
        return sub

    async def _floor(self, plog: ProcessLog, ring_first: int | None) -> int:
        """The lowest seq still retained anywhere (memory or store)."""
        meta = await self.store.meta(plog.name)
        candidates = [s for s in (meta.first_seq, ring_first) if s]
        floor = min(candidates) if candidates else plog.next_seq
        return max(floor, plog.cleared_upto + 1)

    def _history(self, plog: ProcessLog) -> History:
        return History(self.store, plog.name, plog.ring, plog.lock)

    async def read_page(
        self, process: str, *, after: int = 0, limit: int = 1000, query: Query | None = None
    ) -> Page:
        """History oldest first, from the store and the ring; a filtered read looks at
        no more than `SCAN_ROWS` records and says where to go on (`reads.py`)."""
        plog = self.get(process)
        after = max(after, plog.cleared_upto)
        return await self._history(plog).page(after, plog.visible_seq, limit, query or Query())

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
        plog = self.get(process)
        last = plog.visible_seq if before is None else min(before, plog.visible_seq)
        if n <= 0:
            return TailPage([], last if last > plog.cleared_upto else None)
        return await self._history(plog).tail(plog.cleared_upto, last, n, query or Query())

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
        n = min(n, BACKLOG_MAX)
        plog = self.get(process)
        top = plog.visible_seq if before is None else min(before, plog.visible_seq)
        filtered = query is not None and not query.is_empty
        out: list[LogRecord] = []
        pos = top
        while len(out) < n:
            page = await self.tail_page(process, n - len(out), before=pos, query=query)
            out[:0] = page.records
            if page.before is None or not filtered or (scan is not None and top - page.before >= scan):
                break
            pos = page.before
        return out

    async def store_read(self, plog: ProcessLog, after: int, limit: int) -> list[LogRecord]:
        """Up to `limit` stored records after `after`, through the shared page cache."""
        page = await self.pages.page(plog.name, plog.cleared_upto, after)
        i = page.index(after)
        return page.records[i : i + limit]

    async def clear(self, process: str, upto: int | None = None) -> int:
        """Forget the history of `process` up to seq `upto` (all of it when None);
        numbering goes on. Returns the last seq cleared."""
        plog = self.get(process)
        with plog.lock:
            upto = plog.last_seq if upto is None else min(upto, plog.last_seq)
            if upto <= plog.cleared_upto:
                return plog.cleared_upto
            first = plog.ring.first_seq
            if upto >= plog.last_seq:
                plog.ring.clear()
            elif first is not None and upto >= first:
                plog.ring.drop(upto - first + 1)
            plog.cleared_upto = upto
            if plog.persisted < upto:
                plog.persisted = upto
        self._release_held()
        await asyncio.to_thread(self._writer_lock.acquire)
        try:
            await self.store.clear(process, upto)
        finally:
            self._writer_lock.release()
        self.pages.forget(process)
        return upto

    # -- numbers --------------------------------------------------------------------------

    def stats(self, process: str) -> dict[str, Any]:
        plog = self.get(process)
        now = time.monotonic()
        with plog.lock:
            last = plog.visible_seq
            behind = sorted(max(0, last - sub.cursor) for sub in plog.subscribers)
            return {
                "lines": plog.lines,
                "bytes": plog.bytes,
                "subscribers": len(plog.subscribers),
                "dropped": plog.dropped,
                "lines_per_s": round(plog.rate(now), 2),
                "warnings": plog.warnings,
                "errors": plog.errors,
                "last_error": plog.last_error,
                "memory_lines": len(plog.ring),
                "memory_bytes": plog.ring.bytes,
                "last_seq": last,
                "persisted_seq": plog.committed,
                "pending": max(0, plog.last_seq - plog.persisted),
                "store_lost": plog.store_lost,
                "behind": behind,
            }

    def encode_logs(
        self,
        plog: ProcessLog,
        records: list[LogRecord],
        encode: Callable[[LogRecord], bytes],
        fmt: str = "log",
    ) -> list[bytes]:
        """The `fmt` encoding of each record, computed once and shared through the ring."""
        if not records:
            return []
        first = records[0].seq
        with plog.lock:
            ring_first = plog.ring.first_seq
            cached: list[bytes | None] = (
                plog.ring.encodings(fmt, first, len(records))
                if ring_first is not None and first >= ring_first
                else []
            )
        if len(cached) == len(records) and records[-1].seq - first == len(records) - 1:
            return _fill(plog, fmt, records, cached, encode)
        return [encode(r) for r in records]


def _fill(
    plog: ProcessLog,
    fmt: str,
    records: list[LogRecord],
    cached: list[bytes | None],
    encode: Callable[[LogRecord], bytes],
) -> list[bytes]:
    """`cached` completed with the encodings it lacks, which are kept in the ring."""
    # Encodings are never empty, so "all truthy" means "none missing"; `all` tests each
    # item's truth in a few nanoseconds, where `None in` compares each (a tenth of the
    # loop's time with 200 live subscribers).
    if all(cached):
        return cached  # type: ignore[return-value]
    out = [enc if enc is not None else encode(r) for r, enc in zip(records, cached, strict=True)]
    with plog.lock:
        plog.ring.store_encodings(fmt, records[0].seq, out)
    return out


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """What `Subscription.take_live` hands over: wire bytes of consecutive records."""

    encoded: list[bytes]  # one per record, in seq order
    statuses: list[LogRecord]  # the status records among them
    last_seq: int


class Subscription:
    """One reader's cursor over one process's history and live lines."""

    def __init__(self, hub: Hub, plog: ProcessLog, query: Query) -> None:
        self.hub = hub
        self.plog = plog
        self.query = query
        self.cursor = 0  # last seq delivered or skipped
        self.until = 0  # last seq of history; later ones are realtime
        self.backlog: list[LogRecord] = []  # history picked by a filtered tail
        self.complete = False  # historical_complete emitted (or due)
        self.pending_complete = False
        self.event = asyncio.Event()
        self.closed = False

    @property
    def process(self) -> str:
        return self.plog.name

    def close(self) -> None:
        self.closed = True
        self.plog.subscribers.discard(self)
        self.event.set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _gap(self, start: int, end: int) -> Entry:
        plog = self.plog
        if end <= plog.cleared_upto:
            reason = "cleared"
        elif plog.was_lost(start, end):
            reason = "lost"
        else:
            reason = "retention"
        plog.dropped += end - start + 1
        return (EventType.GAP, Gap(plog.name, start, end, reason))

    async def take_live(self, limit: int, fmt: str, encode: Callable[[LogRecord], bytes]) -> LiveBatch | None:
        """The fast path of an unfiltered reader that is live and within the memory tail.

        Hands over the next records (at most `limit`) as their cached `fmt` encodings:
        every such record is `realtime` or `status`, so its wire bytes are the same for
        every subscriber of that format and one `b"".join` makes the batch. A reader
        behind the ring gets the same from the shared store pages. Returns None when
        this reader needs `next()` instead (history still to send, a filter, a cleared
        range or a hole to announce), and a batch with no records when nothing is new.
        """
        if self.closed or self.backlog or self.pending_complete or not self.complete:
            return None
        if not self.query.is_empty:
            return None
        plog = self.plog
        cursor = self.cursor
        with plog.lock:
            ring = plog.ring
            first = ring.first_seq
            last = plog.visible_seq
            mark = plog.cleared_upto
            in_ring = first is not None and cursor + 1 >= first
            if in_ring:
                records = ring.since(cursor, min(limit, last - cursor)) if last > cursor else []
                if not records:
                    return LiveBatch([], [], cursor)
                cached = ring.encodings(fmt, records[0].seq, len(records))
                statuses = ring.statuses(records[0].seq, records[-1].seq)
        if in_ring:
            encoded = _fill(plog, fmt, records, cached, encode)
        else:
            if cursor >= last:
                return LiveBatch([], [], cursor)
            if cursor < mark:
                return None
            page = await self.hub.pages.page(plog.name, mark, cursor)
            i = page.index(cursor)
            records = page.records[i : i + limit]
            if not records or records[0].seq != cursor + 1 or records[-1].seq - cursor != len(records):
                return None
            encoded = page.encoded(fmt, encode)[i : i + len(records)]
            statuses = [r for r in page.statuses if cursor < r.seq <= records[-1].seq]
        self.cursor = records[-1].seq
        return LiveBatch(encoded, statuses, self.cursor)

    async def next(self, limit: int = 2000, *, wait: bool = True) -> list[Entry]:
        """The next entries; waits for new ones unless `wait` is False (then may return [])."""
        while not self.closed:
            self.event.clear()
            entries = await self._read(limit)
            if entries or not wait:
                return entries
            await self.event.wait()
        return []

    async def _read(self, limit: int) -> list[Entry]:
        out: list[Entry] = []
        if self.backlog:
            chunk, self.backlog = self.backlog[:limit], self.backlog[limit:]
            out = [(EventType.HISTORICAL, r) for r in chunk]
            if not self.backlog:
                self.complete = True
                out.append((EventType.HISTORICAL_COMPLETE, self.until))
            return out
        if self.pending_complete:
            self.pending_complete = False
            out.append((EventType.HISTORICAL_COMPLETE, self.until))
        plog = self.plog
        with plog.lock:
            last = plog.visible_seq
            ring_first = plog.ring.first_seq
            in_ring = ring_first is not None and self.cursor + 1 >= ring_first
            room = min(limit, last - self.cursor)
            records = plog.ring.since(self.cursor, room) if in_ring and room > 0 else []
            cleared = plog.cleared_upto
        if self.cursor >= last:
            return out
        if not in_ring:
            if self.cursor < cleared:
                out.append(self._gap(self.cursor + 1, min(cleared, last)))
                self.cursor = min(cleared, last)
                return self._finish(out)
            records = await self._stored(limit)
            if not records:
                with plog.lock:
                    ring_first = plog.ring.first_seq
                    last = plog.visible_seq
                end = (ring_first - 1) if ring_first is not None else last
                if end > self.cursor:
                    out.append(self._gap(self.cursor + 1, end))
                    self.cursor = end
                return self._finish(out)
        if records:
            until = self.until
            match = self.query.matches
            empty = self.query.is_empty
            expected = self.cursor + 1
            for record in records:
                if record.seq != expected:
                    # a hole: lines that left the ring before the writer persisted them,
                    # or that retention removed between two reads; never skipped silently
                    out.append(self._gap(expected, record.seq - 1))
                expected = record.seq + 1
                if record.seq <= until:
                    if empty or match(record):
                        out.append((EventType.HISTORICAL, record))
                    continue
                if not self.complete:
                    self.complete = True
                    out.append((EventType.HISTORICAL_COMPLETE, until))
                if empty or match(record):
                    kind = EventType.STATUS if record.stream is Stream.SYSTEM else EventType.REALTIME
                    out.append((kind, record))
            self.cursor = records[-1].seq
        return self._finish(out)

    async def _stored(self, limit: int) -> list[LogRecord]:
        """The records after the cursor from the store.

        The ring lets go of records the writer has taken, before it has committed them;
        a reader that asks the store for those in that moment must wait for the commit,
        not take them for lost (a `gap` is for what the store will never have).
        """
        plog = self.plog
        while True:
            records = await self.hub.store_read(plog, self.cursor, limit)
            records = [r for r in records if r.seq > plog.cleared_upto]
            if records and records[0].seq == self.cursor + 1:
                return records
            with plog.lock:
                writing = plog.writing > plog.persisted and plog.writing > self.cursor
            if not writing or self.closed:
                return records
            await asyncio.sleep(0.02)

    def _finish(self, out: list[Entry]) -> list[Entry]:
        if not self.complete and self.cursor >= self.until:
            self.complete = True
            out.append((EventType.HISTORICAL_COMPLETE, self.until))
        return out
