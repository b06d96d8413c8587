"""A reader's cursor over one process's lines: its history first, then what comes live.

A subscription is a cursor, not a queue: it reads the ring from its cursor on, the
store once it has fallen behind the ring, and announces as a `Gap` only what neither
holds any more. Memory per reader is constant, and nothing is skipped silently.
"""

from __future__ import annotations

import asyncio
import enum
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING

from logcast.hub.encodings import Encoder, complete
from logcast.hub.journal import Journal
from logcast.hub.pages import Page
from logcast.hub.reads import matching
from logcast.query import Query
from logcast.types import SEQ_OF, STREAM_OF, Entry, EventType, Gap, LogRecord, Stream, text_fitting

if TYPE_CHECKING:
    from logcast.hub.hub import Hub


LIVE_TEXT = 1 << 20  # characters of text a live batch takes at most (one line at least)


class Phase(enum.Enum):
    HISTORY = "history"  # reading up to `until`, the last seq when the reader came
    LIVE = "live"  # historical_complete was sent: everything from here on is realtime


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """What `Subscription.take_live` hands over: wire bytes of consecutive records."""

    encoded: list[bytes]  # one per record, in seq order
    statuses: list[LogRecord]  # the status records among them
    last_seq: int


@dataclass(slots=True)
class _Window:
    """What a reader at `cursor` finds next."""

    cursor: int
    last: int  # the last seq readers may see
    records: list[LogRecord]  # the next records after the cursor (there may be holes)
    in_ring: bool = False
    hole: int = 0  # > cursor: seqs cursor+1..hole are in neither ring nor store
    wait: bool = False  # the next records are in a write in flight: wait for its commit
    cached: list[bytes | None] | None = None  # ring: their encodings so far
    statuses: list[LogRecord] | None = None  # ring: the status records among them
    page: Page | None = None  # store: the page they come from
    index: int = 0  # store: the position of the first of them in `page`

    @property
    def consecutive(self) -> bool:
        records = self.records
        return (
            bool(records)
            and records[0].seq == self.cursor + 1
            and records[-1].seq - self.cursor == len(records)
        )


class Subscription:
    """One reader's cursor over one process's history and live lines.

    The seam between history and realtime is exact: at subscribe time, under the
    process lock, the hub notes the last visible seq (`until`); everything up to it is
    history, everything after it realtime, and both come through the same cursor.
    """

    def __init__(self, hub: Hub, journal: Journal, query: Query) -> None:
        self.hub = hub
        self.journal = journal
        self.query = query
        self.cursor = 0  # last seq delivered or skipped
        self.until = 0  # last seq of history; later ones are realtime
        self.phase = Phase.HISTORY
        self.event = asyncio.Event()
        # Set by the reader's task while it waits on `event` with nothing of its own in
        # flight: the hub calls it on the loop instead of setting `event` (`Hub._wake`), and
        # it writes what is new straight to the client (`take_ready`). False: it did not,
        # and the task must take over.
        self.on_wake: Callable[[], bool] | None = None
        self.closed = False
        self._waiting_commit = False
        self._from_store = False  # the last window came from the store's pages

    @property
    def process(self) -> str:
        return self.journal.name

    def close(self, *, sweep: bool = True) -> None:
        """End this reader. With `sweep`, the store pages only it still needed go, but the
        one it was at: a client that reconnects resumes there (and it goes at the next
        sweep)."""
        self.closed = True
        self.journal.subscribers.discard(self)
        self.event.set()
        if sweep:
            journal = self.journal
            pages = self.hub.pages
            pages.drop_passed(journal.name, keep=pages.key(journal.name, journal.cleared_upto, self.cursor))

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def take_live(self, limit: int, fmt: str, encode: Encoder) -> LiveBatch | None:
        """The fast path of an unfiltered live reader: the next records (at most `limit`)
        as their shared `fmt` encodings, from the ring or the store's pages.

        Every such record is `realtime` or `status`, so its wire bytes are the same for
        every reader of that format. Returns None when this reader needs `next()` (history
        still to send, a filter, a range to announce as a gap), and a batch with no
        records when nothing is new.
        """
        if self.closed or self.phase is not Phase.LIVE or not self.query.is_empty:
            return None
        window = await self._window(limit, fmt)
        if not window.records:
            live = window.in_ring or self.cursor >= window.last
            return LiveBatch([], [], self.cursor) if live else None
        if not window.consecutive:
            return None
        records = window.records
        count = text_fitting(records, LIVE_TEXT)  # long lines: a bounded batch, not 2,000 of them
        last = records[count - 1].seq
        if window.in_ring:
            assert window.cached is not None and window.statuses is not None
            cached, statuses = window.cached, window.statuses
            if count < len(records):
                records, cached = records[:count], cached[:count]
                statuses = [r for r in statuses if r.seq <= last]
            encoded = complete(self.journal, fmt, records, cached, encode)
        else:
            assert window.page is not None
            page, i = window.page, window.index
            encoded = page.encoded(fmt, encode, i, i + count)
            statuses = [r for r in page.statuses if self.cursor < r.seq <= last]
        self.cursor = last
        return LiveBatch(encoded, statuses, last)

    def take_ready(
        self, limit: int, fmt: str | None = None, encode: Encoder | None = None
    ) -> LiveBatch | list[Entry] | None:
        """What a live reader's next `take_live` (given `fmt` and `encode`) or `next`
        would hand over, taken now without waiting, if it is only realtime lines the ring
        holds, at most `limit` of them: None when it is anything else (a status record, a
        gap, the store, more than `limit` lines, history), which the reader's task takes
        in turn. An empty batch when nothing is new."""
        if self.closed or self.phase is not Phase.LIVE or self._from_store:
            return None
        if (fmt is not None and not self.query.is_empty) or self.query.regex is not None:
            return None  # a regex is matched in a filter thread, by the reader's task
        window = self._ring_window(limit + 1, fmt)  # one more: does it all fit?
        if window is None:
            return None
        records = window.records
        if not records:
            return LiveBatch([], [], self.cursor) if fmt is not None else []
        if len(records) > limit or not window.consecutive or Stream.SYSTEM in map(STREAM_OF, records):
            return None
        if fmt is None:
            out: list[Entry] = []
            self._deliver(records, out)
            return out
        assert window.cached is not None and encode is not None
        encoded = complete(self.journal, fmt, records, window.cached, encode)
        self.cursor = records[-1].seq
        return LiveBatch(encoded, [], self.cursor)

    async def next(self, limit: int = 2000, *, wait: bool = True) -> list[Entry]:
        """The next entries; waits for new ones unless `wait` is False (then may return
        [], except while the next lines are being committed: those are waited for). A
        window of lines the filter kept nothing of is read past without a wait; with
        `wait` False, [] then comes with the cursor moved: call again."""
        while not self.closed:
            self.event.clear()
            cursor = self.cursor
            entries = await self._read(limit)
            if entries or not (wait or self._waiting_commit):
                return entries
            if self.cursor != cursor:  # a window the filter kept nothing of: read on
                await asyncio.sleep(0)
                continue
            await self.event.wait()
        return []

    async def _read(self, limit: int) -> list[Entry]:
        out: list[Entry] = []
        self._waiting_commit = False
        if self.phase is Phase.LIVE or self.cursor < self.until:
            room = limit if self.phase is Phase.LIVE else min(limit, self.until - self.cursor)
            window = await self._window(room)
            if window.wait:
                self._waiting_commit = True
            elif window.hole > self.cursor:
                out.append(self._gap(self.cursor + 1, window.hole))
                self.cursor = window.hole
            elif window.records:
                kept = None
                if self.query.regex is not None:  # a regex may cost ms a line: not on the loop
                    kept = await matching(window.records, self.query)
                self._deliver(window.records, out, kept)
        if self.phase is Phase.HISTORY and self.cursor >= self.until:
            self.phase = Phase.LIVE
            out.append((EventType.HISTORICAL_COMPLETE, self.until))
        return out

    def _deliver(self, records: list[LogRecord], out: list[Entry], kept: list[bool] | None = None) -> None:
        """Entries for `records` (and a gap for each hole among them); history stops at
        `until`, so that historical_complete comes right after it. `kept`: which records
        the filter keeps, when it was already asked (`matching`)."""
        history = self.phase is not Phase.LIVE
        until = self.until
        match = None if self.query.is_empty else self.query.matches
        expected = self.cursor + 1
        first, last = records[0].seq, records[-1].seq
        if (
            match is None
            and first == expected
            and last - first == len(records) - 1
            and not (history and last > until)
            and (history or Stream.SYSTEM not in map(STREAM_OF, records))
        ):
            # the usual window (consecutive, unfiltered, no status record among live lines):
            # its entries made by `zip`, without a Python step per record
            kind = EventType.HISTORICAL if history else EventType.REALTIME
            out += zip(repeat(kind, len(records)), records, strict=True)
            self.cursor = last
            return
        self._deliver_each(records, out, kept)

    def _deliver_each(
        self, records: list[LogRecord], out: list[Entry], kept: list[bool] | None = None
    ) -> None:
        """`_deliver`, a record at a time: gaps, the end of history, filters (or what
        `kept` says of each record), statuses."""
        history = self.phase is not Phase.LIVE
        until = self.until
        match = None if self.query.is_empty else self.query.matches
        expected = self.cursor + 1
        for i, record in enumerate(records):
            seq = record.seq
            if seq != expected:
                # lines that left the ring before the writer persisted them, or that
                # retention removed between two reads: never skipped silently. Between two
                # records of one read, retention (which takes the oldest) cannot be why.
                out.append(self._gap(expected, seq - 1, inside=i > 0))
                expected = seq
            if history and seq > until:
                break
            expected = seq + 1
            if kept[i] if kept is not None else match is None or match(record):
                if history:
                    out.append((EventType.HISTORICAL, record))
                elif record.stream is Stream.SYSTEM:
                    out.append((EventType.STATUS, record))
                else:
                    out.append((EventType.REALTIME, record))
        self.cursor = expected - 1

    def _gap(self, start: int, end: int, *, inside: bool = False) -> Entry:
        journal = self.journal
        reason = journal.gap_reason(start, end, inside=inside)
        journal.announced(start, end, reason)
        return (EventType.GAP, Gap(journal.name, start, end, reason))

    async def _window(self, limit: int, fmt: str | None = None) -> _Window:
        """What follows the cursor: from the ring where it still has it, else from the
        store (through the hub's shared pages), else a hole."""
        journal = self.journal
        window = self._ring_window(limit, fmt)
        if window is not None:
            if self._from_store:  # it caught up: the store's pages it read may be nobody's now
                self._from_store = False
                self.hub.pages.drop_passed(journal.name)
            return window
        cursor = self.cursor
        with journal.lock:
            last = journal.visible_seq
            cleared = journal.cleared_upto
        if cursor < cleared:
            return _Window(cursor, last, [], hole=min(cleared, last))
        return await self._stored(limit, last)

    def _ring_window(self, limit: int, fmt: str | None) -> _Window | None:
        """What follows the cursor, if the ring holds it (or nothing follows); else None."""
        journal = self.journal
        cursor = self.cursor
        with journal.lock:
            ring = journal.ring
            last = journal.visible_seq
            first = ring.first_seq
            in_ring = first is not None and cursor + 1 >= first
            if cursor < last and not in_ring:
                return None
            records = ring.since(cursor, min(limit, last - cursor)) if last > cursor else []
            window = _Window(cursor, last, records, in_ring=in_ring)
            if fmt is not None and records:
                window.cached = ring.encodings(fmt, records[0].seq, len(records))
                window.statuses = ring.statuses(records[0].seq, records[-1].seq)
        return window

    async def _stored(self, limit: int, last: int) -> _Window:
        """The records after the cursor from the store.

        The ring lets go of records the writer has taken before it has committed them
        only when far over its bounds; a reader that asks the store for those in that
        moment waits for the commit rather than taking them for lost.
        """
        journal = self.journal
        cursor = self.cursor
        self._from_store = True
        while True:
            committed = journal.committed
            page = await self.hub.pages.page(journal.name, journal.cleared_upto, cursor)
            if self.closed:  # it left while the page was read: nobody may need it now
                self.hub.pages.drop_passed(journal.name)
            i = page.index(cursor)
            records = page.records[i : i + limit]
            if records and records[-1].seq > last:  # committed, not yet safe to show
                records = records[: bisect_right(records, last, key=SEQ_OF)]
            cleared = journal.cleared_upto
            if cleared > cursor:  # a clear while we read
                records = [r for r in records if r.seq > cleared]
            window = _Window(cursor, last, records, page=page, index=i)
            if records and records[0].seq == cursor + 1:
                return window
            with journal.lock:
                if journal.committed != committed:
                    continue  # a write committed while we read: look again
                if journal.writing > journal.persisted and journal.writing > cursor and not self.closed:
                    journal.wake_on_commit = True
                    window.wait = True
                    return window
                ring_first = journal.ring.first_seq
                last = journal.visible_seq
            if not records:  # never past what may be shown: stored lines above it come later
                window.hole = min(ring_first - 1, last) if ring_first is not None else last
            return window
