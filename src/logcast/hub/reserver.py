"""The reserver: one thread that keeps each process's reserved seqs ahead of its numbers.

A seq a reader has seen is never given to another line: readers see no seq above what
the store has reserved or committed, and after a crash numbering resumes above the
reservation. Capture never waits for it; two seconds of output are reserved ahead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from logcast.errors import StoreError
from logcast.hub.journal import Journal
from logcast.store.base import Store

log = logging.getLogger(__name__)

LOOK_INTERVAL = 0.5  # s between two looks at every process's lead, when nobody asks sooner


class Reserver:
    def __init__(
        self,
        store: Store,
        journals: Callable[[], list[Journal]],
        *,
        on_visible: Callable[[str], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._journals = journals
        self._on_visible = on_visible
        self._monotonic = monotonic
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="logcast-reserver", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Some process is close to the end of its reservation."""
        self._wanted.set()

    def request_stop(self) -> None:
        self._stopping.set()
        self._wanted.set()

    def join(self, timeout: float) -> bool:
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        """While the reservation cannot be written (a failing disk, Redis away), new lines
        wait in memory for readers, and show once it can, or once they are stored."""
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
                lead = journal.reservation_lead(now)
                if (journal.reserved - journal.next_seq) * 2 < lead:
                    marks[journal.name] = journal.next_seq + lead
        return marks

    def _reserved(self, marks: dict[str, int]) -> None:
        by_name = {journal.name: journal for journal in self._journals()}
        for name, mark in marks.items():
            journal = by_name[name]
            with journal.lock:
                hidden = journal.visible_seq < journal.last_seq
                journal.reserved = max(journal.reserved, mark)
            if hidden:
                self._on_visible(name)  # lines that waited for this are visible now
