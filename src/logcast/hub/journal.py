"""What the hub keeps for one process: its numbering, memory tail, counters and readers.

One lock guards all of it; capture threads take it once per chunk.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from logcast.hub.ring import Ring
from logcast.types import GapReason, ProcessState

if TYPE_CHECKING:
    from logcast.hub.subscription import Subscription

RESERVE_MIN = 1_000  # seqs reserved ahead of the last one numbered, at least
RESERVE_MAX = 2_000_000  # and at most
LOST_RANGES = 1024  # lost seq ranges remembered per process (for the gaps' reason)
RATE_WINDOW = 5.0  # seconds over which lines/s is measured
RATE_SAMPLE = 0.5  # seconds between two samples of the line count
PENDING_FACTOR = 4  # the ring may hold this many times its bounds while the writer catches up


@dataclass(eq=False)
class Journal:
    """The numbered lines of one process; guarded by `lock`."""

    name: str
    ring: Ring
    next_seq: int = 1
    persisted: int = 0  # highest seq the store holds (or that was given up on)
    committed: int = 0  # highest seq the store has committed
    reserved: int = 0  # seqs up to here may be shown to readers (the store holds this mark)
    # The store's commits survive a power cut (else only the reservation, which is synced,
    # makes a seq safe to show: SQLite with synchronous=NORMAL may lose its last commits)
    commits_durable: bool = True
    writing: int = 0  # highest seq the writer has taken and is writing now
    cleared_upto: int = 0
    store_cleared_upto: int = 0  # ...and what the store has cleared (a failed clear is behind)
    lines: int = 0
    bytes: int = 0
    warnings: int = 0
    errors: int = 0
    last_error: str | None = None
    last_run: int = 0
    state: ProcessState = ProcessState.STOPPED
    store_lost: int = 0
    owner_lost: int = 0  # a mirror's: what the owner counted as lost (it may have seen more)
    opened_at_seq: int = 0  # last seq when this logcast started (what came before is old history)
    dropped: int = 0  # lines announced to subscribers as gaps (each once, clears not counted)
    dropped_ranges: list[tuple[int, int]] = field(default_factory=list)  # ...which ones
    lost: list[tuple[int, int]] = field(default_factory=list)  # seq ranges the store will never have
    wake_on_commit: bool = False  # a reader waits for a write in flight
    lock: threading.Lock = field(default_factory=threading.Lock)
    subscribers: set[Subscription] = field(default_factory=set)
    first_woken: int = 0  # the loop's: where in `subscribers` the next wake begins (`Hub._wake`)
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def visible_seq(self) -> int:
        """The last seq a reader may be given: one the store has reserved (or committed,
        where commits are durable), so that no restart can give its number to another
        line, not even after a power cut."""
        if self.commits_durable:
            return min(self.next_seq - 1, max(self.reserved, self.committed))
        return min(self.next_seq - 1, self.reserved)

    def lose(self, start: int, end: int) -> None:
        """Seqs `start`..`end` were handed out but will never be stored.
        Counts each seq once, however often and in whatever pieces it is reported."""
        self.store_lost += _add_range(self.lost, start, end)

    def announced(self, start: int, end: int, reason: GapReason) -> None:
        """Seqs `start`..`end` were announced to a reader as a gap: counted in `dropped`
        once, however many readers (or reconnects of one) are told; a clear is the
        user's, not a drop."""
        if reason is not GapReason.CLEARED:
            self.dropped += _add_range(self.dropped_ranges, start, end)

    def trim(self, *, lose: bool = True) -> None:
        """Keep the ring within bounds, sparing what the writer has not persisted yet: up
        to `PENDING_FACTOR` times the bounds, past which records are lost, unless not
        `lose` (a writer that keeps up: capture waits for it instead, and only a chunk
        already in memory goes over)."""
        ring = self.ring
        excess = ring.over()
        if not excess:
            return
        first = ring.first_seq or 0
        # Only what the store has committed goes: records in a write still in flight stay
        # until it commits, so that a reader never finds them in neither ring nor store.
        persisted_room = max(0, self.persisted - first + 1)
        hard = len(ring) - PENDING_FACTOR * ring.max_lines if lose else 0
        n = max(min(excess, persisted_room), hard, 0)
        if lose and ring.bytes > PENDING_FACTOR * ring.max_bytes:
            n = max(n, excess)
        taken = max(persisted_room, self.writing - first + 1)
        if n > taken:
            # never written and never will be; records in a write in flight are counted
            # by the writer if that write fails
            self.lose(first + taken, first + n - 1)
        ring.drop(n)

    def was_lost(self, start: int, end: int) -> bool:
        """Some seq in `start`..`end` is in a lost range."""
        return any(a <= end and start <= b for a, b in self.lost)

    def gap_reason(self, start: int, end: int, *, inside: bool = False) -> GapReason:
        """Why seqs `start`..`end` are missing. `inside`: between two records of one read,
        where retention (it takes the oldest) cannot have made the hole; lines lost before
        this run of logcast (their ranges are known in memory only) are told so there."""
        if end <= self.cleared_upto:
            return GapReason.CLEARED
        return GapReason.LOST if inside or self.was_lost(start, end) else GapReason.RETENTION

    @property
    def reservation_low(self) -> bool:
        """Fewer than half of `RESERVE_MIN` reserved seqs are left: wake the reserver now
        (it also looks every half second, against `reservation_lead`)."""
        return (self.reserved - self.next_seq) * 2 < RESERVE_MIN

    def reservation_lead(self, now: float) -> int:
        """How far ahead of the last seq to reserve: two seconds of output, within bounds."""
        return min(max(int(self.rate(now) * 2), RESERVE_MIN), RESERVE_MAX)

    def sample(self, now: float) -> None:
        samples = self.samples
        if not samples or now - samples[-1][0] >= RATE_SAMPLE:
            samples.append((now, self.lines))

    def rate(self, now: float) -> float:
        samples = [s for s in self.samples if now - s[0] <= RATE_WINDOW]
        if not samples:
            return 0.0
        t0, n0 = samples[0]
        span = max(now - t0, 1.0)
        return (self.lines - n0) / span


def _add_range(ranges: list[tuple[int, int]], start: int, end: int) -> int:
    """Merge `start`..`end` into `ranges` (sorted, disjoint, not adjacent; the newest
    `LOST_RANGES` kept): how many of its seqs were not in them yet."""
    if end < start:
        return 0
    i = bisect_left(ranges, (start, start))
    if i > 0 and ranges[i - 1][1] + 1 >= start:
        i -= 1
    low, high, known = start, end, 0
    j = i
    while j < len(ranges) and ranges[j][0] <= end + 1:
        a, b = ranges[j]
        known += max(0, min(b, end) - max(a, start) + 1)
        low, high = min(low, a), max(high, b)
        j += 1
    ranges[i:j] = [(low, high)]
    del ranges[:-LOST_RANGES]
    return end - start + 1 - known
