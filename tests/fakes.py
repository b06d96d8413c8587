"""Fakes for unit tests: an in-memory store that can be told to fail."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from logcast.errors import StoreError
from logcast.query import Query
from logcast.store.base import ProcessMeta, StoreStats
from logcast.types import Level, LogRecord, Stream


class MemoryStore:
    """The Store protocol over dicts, with retention and a switch to fail writes."""

    commits_durable = True

    def __init__(self, retain_lines: int = 1_000_000) -> None:
        self.retain_lines = retain_lines
        self.records: dict[str, dict[int, LogRecord]] = {}
        self.last: dict[str, int] = {}
        self.counts: dict[str, tuple[int, int, int]] = {}
        self.stats = StoreStats()
        self.fail = False
        self.lock = threading.Lock()
        self.writes = 0
        self.idles = 0  # calls of idle()
        self.reserved: dict[str, int] = {}
        self.reservations = 0  # calls of reserve()
        self.fail_reserve = False

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def write(self, records: Sequence[LogRecord]) -> None:
        if self.fail:
            self.stats.errors += 1
            self.stats.last_error = "disk full (simulated)"
            raise StoreError("disk full (simulated)")
        with self.lock:
            self.writes += 1
            for r in records:
                table = self.records.setdefault(r.process, {})
                if r.seq in table or r.seq <= self.last.get(r.process, 0):
                    continue
                table[r.seq] = r
                self.last[r.process] = r.seq
                lines, nbytes, run = self.counts.get(r.process, (0, 0, 0))
                if r.stream is not Stream.SYSTEM:
                    lines += 1
                    nbytes += len(r.message.encode()) + 1
                self.counts[r.process] = (lines, nbytes, max(run, r.run))
                self.stats.written += 1
            for name, table in self.records.items():
                floor = self.last.get(name, 0) - self.retain_lines
                for seq in [s for s in table if s <= floor]:
                    del table[seq]

    def idle(self) -> None:
        self.idles += 1

    def stored_upto(self, process: str) -> int:
        if self.fail:
            raise StoreError("disk full (simulated)")
        with self.lock:
            return self.last.get(process, 0)

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
        with self.lock:
            rows = sorted(
                (
                    r
                    for s, r in self.records.get(process, {}).items()
                    if s > after and (upto is None or s <= upto)
                ),
                key=lambda r: r.seq,
            )
        if query is not None:
            rows = [r for r in rows if query.matches(r)]
        return rows[:limit]

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
        with self.lock:
            rows = sorted(
                (
                    r
                    for s, r in self.records.get(process, {}).items()
                    if (before is None or s <= before) and (after is None or s > after)
                ),
                key=lambda r: r.seq,
            )
        if query is not None:
            rows = [r for r in rows if query.matches(r)]
        return rows[-n:] if n > 0 else []

    async def meta(self, process: str) -> ProcessMeta:
        with self.lock:
            table = self.records.get(process, {})
            lines, nbytes, run = self.counts.get(process, (0, 0, 0))
            return ProcessMeta(
                self.last.get(process, 0),
                min(table) if table else 0,
                lines,
                nbytes,
                run,
                self.reserved.get(process, 0),
            )

    def reserve(self, marks: Mapping[str, int]) -> None:
        if self.fail_reserve:
            raise StoreError("reservation failed (simulated)")
        with self.lock:
            self.reserved.update(marks)
            self.reservations += 1

    async def processes(self) -> list[str]:
        return sorted(set(self.records) | set(self.reserved))

    async def clear(self, process: str, upto: int) -> None:
        with self.lock:
            table = self.records.get(process, {})
            for seq in [s for s in table if s <= upto]:
                del table[seq]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MessageEncoder:
    """An encoding for the hub's shared caches: each record's message as bytes, counting the
    records encoded (`calls`)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, records: list[LogRecord]) -> list[bytes]:
        self.calls += len(records)
        return [record.message.encode() for record in records]


def make_record(seq: int, message: str = "", *, at: float = 1_763_800_000.0, **kw: Any) -> LogRecord:
    """A line of process `web`, run 1, stdout, info, written at `at + seq` (its text
    `line SEQ` unless given); any field may be given instead."""
    fields: dict[str, Any] = {
        "seq": seq,
        "timestamp": at + seq,
        "level": Level.INFO,
        "message": message or f"line {seq}",
        "stream": Stream.STDOUT,
        "process": "web",
        "run": 1,
    }
    fields.update(kw)
    return LogRecord(**fields)
