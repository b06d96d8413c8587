"""The reserver: one thread that keeps each process's reserved seqs ahead of its numbers.

A seq a reader has seen is never given to another line: readers see no seq above what
the store has reserved or committed, and after a crash numbering resumes above the
reservation. Capture never waits for it; two seconds of output are reserved ahead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from logcast.errors import StoreError
from logcast.hub.journal import Journal
from logcast.hub.worker import Worker
from logcast.store.base import Store

log = logging.getLogger(__name__)

LOOK_INTERVAL = 0.5  # s between two looks at every process's lead, when nobody asks sooner
# s with no new line after which a process whose lines are all stored gets its reservation
# back down to its last seq and `PARK_MARGIN` more: a crash then announces at most that
# many seqs lost that never named a line (a whole lead, up to millions, before). The margin
# covers the records that come first and whose seq is shown before they are (the exit's
# status record, `last_exit.last_seq`), and a short burst, until a new reservation.
PARK_AFTER = 10.0
PARK_MARGIN = 64


class Reserver(Worker):
    name = "logcast-reserver"

    def __init__(
        self,
        store: Store,
        journals: Callable[[], list[Journal]],
        *,
        on_visible: Callable[[str], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(store, journals, monotonic=monotonic)
        self._on_visible = on_visible
        self._seen: dict[str, tuple[int, float]] = {}  # process -> (last seq, since when)
        self._parked: dict[str, int] = {}  # process -> its last seq when its reservation was parked

    def _run(self) -> None:
        """While the reservation cannot be written (a failing disk, Redis away), new lines
        wait in memory for readers, and show once it can, or once they are stored where a
        store's commits are durable (Redis; SQLite with `synchronous = FULL`)."""
        backoff = 0.0
        while not self._stopping.is_set():
            self._wanted.wait(timeout=LOOK_INTERVAL)
            self._wanted.clear()
            marks = self._wanted_marks()
            if not marks:
                continue
            try:
                self._store.reserve(marks)
            except StoreError as exc:
                backoff = min(max(backoff * 2, 0.05), 2.0)
                log.error(
                    "cannot reserve sequence numbers (%s); new lines wait in memory for readers; retrying in %.2fs",
                    exc,
                    backoff,
                )
                self._stopping.wait(backoff)
                self._wanted.set()
                continue
            backoff = 0.0
            self._reserved(marks)

    def _wanted_marks(self) -> dict[str, int]:
        now = self._monotonic()
        marks: dict[str, int] = {}
        for journal in self._journals():
            with journal.lock:
                name, last = journal.name, journal.last_seq
                if name in self._parked:
                    if last <= self._parked[name]:
                        continue  # still nothing new
                    del self._parked[name]
                lead = journal.reservation_lead(now)
                if (journal.reserved - journal.next_seq) * 2 < lead:
                    marks[name] = journal.next_seq + lead
                elif (
                    not journal.commits_durable  # there the commits show lines; left alone
                    and journal.reserved > last + PARK_MARGIN
                    and self._idle(name, last, now)
                    and journal.committed >= last
                ):
                    marks[name] = self._park(journal)
        return marks

    def _idle(self, name: str, last: int, now: float) -> bool:
        """No new seq for `PARK_AFTER` s (as far as these looks saw)."""
        seen = self._seen.get(name)
        if seen is None or seen[0] != last:
            self._seen[name] = (last, now)
            return False
        return now - seen[1] >= PARK_AFTER

    def _park(self, journal: Journal) -> int:
        """(Lock held) Bring the reservation of an idle process whose lines are all stored
        down to `PARK_MARGIN` above its last seq: after a crash, numbering resumes there.
        Lowered here first, before it is written, so that no line shows above it meanwhile:
        lines past it wait for a new reservation, as any line past the reservation does."""
        self._parked[journal.name] = journal.last_seq
        journal.reserved = journal.last_seq + PARK_MARGIN
        return journal.reserved

    def _reserved(self, marks: dict[str, int]) -> None:
        by_name = {journal.name: journal for journal in self._journals()}
        for name, mark in marks.items():
            journal = by_name[name]
            with journal.lock:
                hidden = journal.visible_seq < journal.last_seq
                journal.reserved = max(journal.reserved, mark)
            if hidden:
                self._on_visible(name)  # lines that waited for this are visible now
