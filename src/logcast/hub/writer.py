"""The store writer: one thread that moves what the memory tails hold into the store.

Capture never waits for a write; the writer takes what is new in one batch per round,
retries failures with backoff while capture goes on from memory, and starts each
round with the next process so that one flood cannot starve the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from logcast.errors import StoreError
from logcast.hub.journal import Journal
from logcast.hub.worker import Worker
from logcast.libc import malloc_trim
from logcast.store.base import Store
from logcast.types import LogRecord

log = logging.getLogger(__name__)

WRITE_BATCH = 20_000
WRITER_STALL = 1.0  # a store write taking longer than this (s) no longer holds capture
HOLD_CHECK = 0.1  # s between two looks of a held capture thread at a silent writer
# After a round of fewer than SMALL_ROUND records the writer waits WRITE_PAUSE s for more
# (unless someone waits for the store): a child writing 1,000 lines/s costs 50 commits a
# second, not 1,000. Readers never wait for it; they read the memory tail.
SMALL_ROUND = 2_000
WRITE_PAUSE = 0.02
IDLE_AFTER = 1.0  # s without anything to write, after which the store does its upkeep (`Store.idle`)
# Characters of text written since the last trim after which the writer gives the C
# heap's free memory back (`trim`) once output is calm again: a flood's read buffers leave
# the heap full of holes that glibc keeps (see engine.MMAP_THRESHOLD).
TRIM_AFTER = 32 << 20


class StoreWriter(Worker):
    name = "logcast-store-writer"

    def __init__(
        self,
        store: Store,
        journals: Callable[[], list[Journal]],
        *,
        on_commit: Callable[[str], None],
        monotonic: Callable[[], float] = time.monotonic,
        idle_after: float = IDLE_AFTER,
        trim: Callable[[], object] = malloc_trim,
    ) -> None:
        super().__init__(store, journals, monotonic=monotonic)
        self._on_commit = on_commit
        self._idle_after = idle_after
        self._trim = trim
        self._untrimmed = 0  # characters of text written since the last trim
        self._calm_since: float | None = None  # since when no round was a flood's (None: the last was)
        self._batch_lock = threading.Lock()  # held while a batch is written
        self._progress = threading.Condition(threading.Lock())  # a round ended
        self._rounds = 0  # rounds ended, either way; guarded by _progress
        self._ok = True  # the last round succeeded
        self._write_started: float | None = None  # when the write in flight began
        self._next_first = 0  # which process the next round starts with
        self.held = 0  # capture threads waiting in `hold_while_behind` now; guarded by _progress
        self._unsure: set[Journal] = set()  # a failed write of theirs may have been applied
        self._hurry = threading.Event()  # someone waits for the store: no pause

    def request_stop(self) -> None:
        """Write what is left, then end the thread (it does not wait for that)."""
        super().request_stop()
        self._hurry.set()
        self.release_held()

    # -- what other threads wait for -------------------------------------------------

    def keeping_up(self) -> bool:
        """The writer is healthy and moving (its last round succeeded, no write has taken
        `WRITER_STALL`): capture waits for it (`hold_while_behind`) rather than the ring
        letting go of lines the store does not have yet."""
        started = self._write_started
        stalled = started is not None and self._monotonic() - started > WRITER_STALL
        return self._ok and not stalled and not self._stopping.is_set()

    def hold_while_behind(self, journal: Journal) -> None:
        """Hold a capture thread while its ring is over its bounds with lines the store
        does not have yet (the ring lets go only of persisted lines).

        Capture hands lines on from a framer thread behind a spool of raw bytes, so the
        child does not wait here, and the burst waits as raw bytes instead of records
        being evicted before the store has them. Only while the writer is healthy and
        moving: when writes fail or one write stalls, capture goes on from memory and
        the ring lets go of what it must (counted, announced).
        """
        while True:
            rounds = self._rounds  # read before looking
            keeping_up = self.keeping_up()
            with journal.lock:
                journal.trim(lose=not keeping_up)  # let go of what the writer has persisted since
                over = journal.ring.overfull
            if not over or not keeping_up:
                return
            self._hurry.set()
            with self._progress:
                if self._rounds == rounds:
                    self.held += 1
                    try:
                        self._progress.wait(HOLD_CHECK)
                    finally:
                        self.held -= 1

    def wait_persisted(self, targets: dict[Journal, int], timeout: float) -> bool:
        """Block until each journal's store holds its target seq (or `timeout`)."""
        deadline = self._monotonic() + timeout
        with self._progress:
            while not all(journal.persisted >= seq for journal, seq in targets.items()):
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    return False
                self._wanted.set()
                self._hurry.set()
                self._progress.wait(remaining)
        return True

    def release_held(self) -> None:
        """Let every thread waiting on the writer look again."""
        with self._progress:
            self._rounds += 1
            self._progress.notify_all()

    @contextmanager
    def no_batch_in_flight(self) -> Iterator[None]:
        """No batch is written while this is held (a clear must not race one)."""
        with self._batch_lock:
            yield

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        while True:
            woken = self._wanted.wait(timeout=self._idle_after)
            self._wanted.clear()
            stopping = self._stopping.is_set()
            last = 0  # records the last round wrote
            most = 0  # ...and the largest round
            try:
                while written := self._write_round():
                    last = written
                    most = max(most, written)
                if not (woken or last or stopping or self._wanted.is_set()):
                    self._idle()
                else:
                    self._trim_when_calm(most)
                backoff = 0.0
                if 0 < last < SMALL_ROUND and not stopping:
                    # a trickle: let it gather into one commit, unless someone waits
                    self._hurry.wait(WRITE_PAUSE)
                self._hurry.clear()
            except StoreError as exc:
                self._round_ended(ok=False)
                backoff = min(max(backoff * 2, 0.1), 5.0)
                log.warning("history store write failed (%s); retrying in %.1fs", exc, backoff)
                if stopping:
                    return
                self._stopping.wait(backoff)
                self._wanted.set()
                continue
            except Exception:
                self._round_ended(ok=False)
                log.exception("store writer failed")
                if stopping:
                    return
                self._stopping.wait(1.0)
                self._wanted.set()
                continue
            if stopping:
                return

    def _idle(self) -> None:
        """Nothing to write for `idle_after` s: the store's upkeep (a SQLite checkpoint),
        and the heap given back if a flood went before (`_give_memory_back`). It counts
        as a write in progress, so that capture held meanwhile by a burst is let go after
        `WRITER_STALL` as it would be by a slow write."""
        self._write_started = self._monotonic()
        try:
            self._store.idle()
        except Exception:  # upkeep of what is stored: writes are not affected
            log.exception("history store upkeep failed")
        finally:
            self._write_started = None
        self._give_memory_back()

    def _trim_when_calm(self, most: int) -> None:
        """After rounds of which the largest wrote `most` records: the heap given back once
        no round was a flood's (`SMALL_ROUND` records or more) for `idle_after` s. A
        trickle after a flood never leaves the writer idle, so this does not wait for that."""
        now = self._monotonic()
        if most >= SMALL_ROUND:
            self._calm_since = None
            return
        if self._calm_since is None:
            self._calm_since = now
        if now - self._calm_since >= self._idle_after:
            self._give_memory_back()

    def _give_memory_back(self) -> None:
        """The C heap's free memory back to the system (`trim`, glibc's `malloc_trim`),
        once `TRIM_AFTER` characters were written since the last time. It holds the
        allocator of each thread in turn for a while (~15 ms for 150 MB of holes), so it
        counts as a write in progress too."""
        if self._untrimmed < TRIM_AFTER:
            return
        self._untrimmed = 0  # a trim that failed is tried again after as much more text
        self._write_started = self._monotonic()
        try:
            self._trim()
        except Exception:  # the memory stays with the process; nothing else depends on it
            log.exception("giving free memory back failed")
        finally:
            self._write_started = None

    def _write_round(self) -> int:
        """Write one batch of everything not yet persisted; the records it wrote (0: none)."""
        with self._batch_lock:
            self._settle_unsure()
            batch: list[LogRecord] = []
            ends: list[tuple[Journal, int]] = []
            written = 0  # characters of text in the batch
            journals = self._journals()
            start = self._next_first % len(journals) if journals else 0
            self._next_first = start + 1
            for journal in journals[start:] + journals[:start]:
                room = WRITE_BATCH - len(batch)
                if room <= 0:
                    break
                with journal.lock:
                    records = self._take(journal, room)
                    if records:
                        written += journal.ring.text_size(records[0].seq - 1, len(records))
                if records:
                    batch.extend(records)
                    ends.append((journal, records[-1].seq))
            if not batch:
                return 0
            self._write_started = self._monotonic()
            try:
                self._store.write(batch)
            except BaseException as exc:
                # A write whose outcome is unknown stays "being written" (the ring does not
                # count it lost) until the store says what it holds (`_settle_unsure`).
                unsure = isinstance(exc, StoreError) and exc.unsure
                if unsure:
                    self._unsure.update(journal for journal, _ in ends)
                for journal, _ in ends:
                    with journal.lock:
                        if not unsure:
                            journal.writing = journal.persisted
                        wake = journal.wake_on_commit
                        journal.wake_on_commit = False
                    if wake:
                        self._on_commit(journal.name)  # a reader waited for it: look again
                raise
            finally:
                self._write_started = None
            self._untrimmed += written
            for journal, end in ends:
                with journal.lock:
                    visible = journal.visible_seq
                    journal.persisted = max(journal.persisted, end)
                    journal.committed = max(journal.committed, end)
                    if journal.ring.overfull:  # a chunk it kept over its bounds is stored now
                        journal.trim(lose=False)
                    wake = journal.wake_on_commit or journal.visible_seq != visible
                    journal.wake_on_commit = False
                if wake:
                    self._on_commit(journal.name)
            self._round_ended(ok=True)
            return len(batch)

    def _settle_unsure(self) -> None:
        """Ask the store what it holds of the processes whose last write failed: what it
        applied anyway is stored, not lost (raises StoreError while it cannot answer)."""
        for journal in list(self._unsure):
            stored = self._store.stored_upto(journal.name)
            with journal.lock:
                visible = journal.visible_seq
                if stored > journal.persisted:
                    journal.persisted = stored
                journal.committed = max(journal.committed, stored)
                journal.writing = journal.persisted  # what it did not hold is not being written
                wake = journal.visible_seq != visible or journal.wake_on_commit
                journal.wake_on_commit = False
            self._unsure.discard(journal)
            if wake:
                self._on_commit(journal.name)

    @staticmethod
    def _take(journal: Journal, room: int) -> list[LogRecord]:
        """Up to `room` records of `journal` the store does not have (lock held)."""
        first = journal.ring.first_seq
        if first is None or journal.persisted >= journal.last_seq:
            return []
        if journal.persisted < first - 1:  # evicted before they could be written
            journal.lose(journal.persisted + 1, first - 1)
            journal.persisted = first - 1
        records = journal.ring.since(journal.persisted, room)
        if records:
            journal.writing = records[-1].seq
        return records

    def _round_ended(self, *, ok: bool) -> None:
        self._ok = ok
        self.release_held()
