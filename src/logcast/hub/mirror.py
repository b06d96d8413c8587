"""A hub of records numbered and stored by another host: a replica's view of an agent's
processes. It writes nothing; a seq missing between two records it is given never reached
the store, and is announced as lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from logcast.errors import StoreError
from logcast.hub.hub import Hub
from logcast.hub.journal import Journal
from logcast.hub.ring import record_size
from logcast.types import Level, LogRecord, Stream, line_bytes

log = logging.getLogger(__name__)


class MirrorHub(Hub):
    async def open(self, names: Iterable[str], *, stored: bool = True) -> None:
        """Follow every process the store has (and `names`) from where the store has it."""
        self._loop = asyncio.get_running_loop()
        for name in dict.fromkeys([*names, *await self.store.processes()]):
            try:
                await self.follow_store(name)
            except StoreError as exc:  # its meta is not what logcast writes: followed once it is
                log.warning("not mirroring %s for now: %s", name, exc)

    def _resume_at(self, after: int, until: int) -> int:
        """A mirror behind the owner resumes a reader where it was, not where the mirror
        is: it had those lines from another replica (a failover); the lines after them
        come once this one has them, and none twice."""
        return after

    async def follow_store(self, name: str) -> Journal:
        """Start mirroring `name` where the store has it (a mirror hub)."""
        journal = self._journals.get(name)
        if journal is not None:
            return journal
        meta = await self.store.meta(name)
        journal = self._journals.setdefault(name, self._new_journal(name))
        with journal.lock:
            journal.next_seq = meta.last_seq + 1
            journal.persisted = journal.committed = journal.reserved = meta.last_seq
            journal.opened_at_seq = meta.last_seq
            journal.lines, journal.bytes, journal.last_run = meta.lines, meta.bytes, meta.last_run
            if meta.first_seq > 1:
                journal.cleared_upto = meta.first_seq - 1
            elif meta.first_seq == 0 and meta.last_seq:
                journal.cleared_upto = meta.last_seq
        return journal

    def mirror(self, process: str, records: list[LogRecord], upto: int | None = None) -> None:
        """Keep records another host numbered and stored, in order; a seq missing between
        two of them never reached the store (it is announced as lost). With `upto`, the
        store was read up to that seq: what is missing after the last record up to it is
        lost too (entries that were not records, skipped)."""
        journal = self.ensure(process)
        with journal.lock:
            start = last = journal.last_seq
            run: list[LogRecord] = []
            for record in records:
                if record.seq <= last:
                    continue
                if record.seq != last + 1:
                    self._extend_mirror(journal, run)
                    run = []
                    self._lose(journal, last, record.seq - 1)
                run.append(record)
                last = record.seq
            self._extend_mirror(journal, run)
            if upto is not None and upto > last:
                self._lose(journal, last, upto)
                last = upto
            if last == start:
                return
            journal.next_seq = last + 1
            journal.persisted = journal.committed = journal.reserved = last
            journal.trim()
            journal.sample(self._monotonic())
        self._announce(process)

    @staticmethod
    def _lose(journal: Journal, last: int, end: int) -> None:
        """The seqs after `last` up to `end` never reached the store (lock held)."""
        journal.lose(max(last, journal.cleared_upto) + 1, end)
        journal.ring.clear()  # the ring holds consecutive seqs only

    @staticmethod
    def _extend_mirror(journal: Journal, records: list[LogRecord]) -> None:
        """Append consecutive records to the ring and count them (lock held)."""
        i = 0
        while i < len(records):
            status = records[i].stream is Stream.SYSTEM
            j = i
            while j < len(records) and (records[j].stream is Stream.SYSTEM) == status:
                j += 1
            part = records[i:j]
            journal.ring.extend(part, [record_size(r.message) for r in part], status=status)
            for record in part:
                if record.run > journal.last_run:
                    journal.last_run = record.run
                if status:
                    if record.state is not None:
                        journal.state = record.state
                else:
                    journal.lines += 1
                    journal.bytes += line_bytes(record.message, record.partial)
                    if record.level is Level.WARNING:
                        journal.warnings += 1
                    elif record.level is Level.ERROR or record.level is Level.CRITICAL:
                        journal.errors += 1
                        journal.last_error = record.message[:500]
            i = j

    def mirror_cleared(self, process: str, upto: int) -> None:
        """The owner cleared `process` up to `upto`: forget it here too."""
        journal = self._journals.get(process)
        if journal is None or upto <= journal.cleared_upto:
            return
        self._forget(journal, upto)
        self.pages.forget(process)
        self._announce(process)
