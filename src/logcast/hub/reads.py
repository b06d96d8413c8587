"""History reads over the memory tail and the store, each call's work bounded.

A page of history is read from the store for what left the memory tail and from the
ring for the rest, without a seam: the store is asked only below the ring's first
seq, so no record comes twice.

A filtered read (a level, a text, a regex, a time range) may match nothing in five
million lines; done in one go it would hold a thread, and on the ring the event
loop, for as long as that takes. So every call looks at no more than `SCAN_ROWS`
records (its *window* in seq), and says where it stopped: a forward page's `next`
continues after the last record looked at, a tail's `before` continues below the
oldest one. The ring is filtered `SCAN_CHUNK` records at a time with a turn of the
event loop in between; the store filters in its own threads.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from logcast.hub.ring import Ring
from logcast.query import Query
from logcast.store.base import Store
from logcast.types import LogRecord

SCAN_ROWS = 200_000  # records a filtered read looks at per call
SCAN_CHUNK = 2_000  # ring records filtered between two turns of the event loop


@dataclass(frozen=True, slots=True)
class Page:
    """Records oldest first. `cursor`: every seq up to it has been looked at.
    `next`: pass it as `after` to read on; None when the read reached the newest line."""

    records: list[LogRecord]
    next: int | None
    cursor: int


@dataclass(frozen=True, slots=True)
class TailPage:
    """The newest matching records, oldest first. `before`: pass it as `before` to read
    further back; None when the read reached the oldest retained line."""

    records: list[LogRecord]
    before: int | None


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
        """Matching records with `after` < seq <= `last`, oldest first, at most `limit`."""
        end = last if query.is_empty else min(last, after + SCAN_ROWS)
        out: list[LogRecord] = []
        pos = after  # every seq up to here has been looked at
        while pos < end and len(out) < limit:
            chunk = self._ring_since(pos, min(SCAN_CHUNK, end - pos))
            if chunk is None:
                first = self._ring_first()
                stop = end if first is None else min(end, first - 1)
                got = await self.store.read(
                    self.name, after=pos, limit=limit - len(out), query=query, upto=stop
                )
                out += got
                pos = got[-1].seq if len(out) >= limit else stop
                continue
            if not chunk:
                break
            if query.is_empty:
                take = chunk[: limit - len(out)]
                out += take
                pos = take[-1].seq
            else:
                pos = chunk[-1].seq
                for record in chunk:
                    if query.matches(record):
                        out.append(record)
                        if len(out) >= limit:
                            pos = record.seq
                            break
                await asyncio.sleep(0)
        more = len(out) >= limit or pos < last
        return Page(out, pos if more else None, pos)

    async def tail(self, floor: int, before: int, n: int, query: Query) -> TailPage:
        """The last `n` matching records with `floor` < seq <= `before`, looking at no
        more than `SCAN_ROWS` records when filtering."""
        low = floor if query.is_empty else max(floor, before - SCAN_ROWS)
        picked: list[LogRecord] = []  # newest first
        pos = before  # every seq above here has been looked at
        while pos > low and len(picked) < n:
            window = self._ring_before(low, pos)
            if window is None:
                got = await self.store.tail(self.name, n - len(picked), before=pos, query=query, after=low)
                picked += reversed(got)
                pos = got[0].seq - 1 if len(picked) >= n else low
                continue
            if not window:
                break
            pos = window[0].seq - 1
            for record in reversed(window):
                if query.matches(record):
                    picked.append(record)
                    if len(picked) >= n:
                        pos = record.seq - 1
                        break
            if not query.is_empty:
                await asyncio.sleep(0)
        picked.reverse()
        return TailPage(picked, pos if pos > floor else None)
