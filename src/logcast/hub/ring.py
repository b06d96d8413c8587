"""The memory tail of one process: a ring of records bounded in lines and bytes, with
each record's wire encodings cached beside it so that a record is serialised once per
format, not once per reader. Not thread-safe: the hub holds the process lock."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from sys import getsizeof

from logcast.types import LogRecord


def _seq(record: LogRecord) -> int:
    return record.seq


# The dead prefix (records dropped but still referenced by the lists) goes once it is
# this share of the live part, or as long as it: a burst passes the whole ring through
# it, and a prefix as long as the live part held a second ring of records and encodings
# (bench/burst.py's peak RSS). Each `del` moves the live part: 16 pointers per record
# dropped, per list.
DEAD_SHARE = 16
DEAD_MIN = 1024  # records; a small ring keeps the old rule (a prefix as long as the live part)
RECORD_OVERHEAD = 64  # bytes a record counts toward the bound beside its text
# A record's text counts what it takes in memory: a character a byte for ASCII and Latin-1,
# two or four for other text (an emoji's line takes four times its characters: counted in
# characters, a ring of such lines held four times `memory_bytes`).
TEXT_SIZE_BASE = getsizeof("")  # bytes of an empty str's header, which the overhead holds


def record_size(text: str) -> int:
    """What a record of `text` counts toward the ring's bytes (see `TEXT_SIZE_BASE`)."""
    return getsizeof(text) - TEXT_SIZE_BASE + RECORD_OVERHEAD


class Ring:
    """Records contiguous in seq, found by arithmetic (`seq - first_seq`). A list with
    a moving head, not a deque: readers take slices from the middle all the time, and
    the dead prefix goes in one `del` once it is a sixteenth of the live part."""

    __slots__ = ("_buf", "_caches", "_head", "_sizes", "_status", "bytes", "max_bytes", "max_lines")

    def __init__(self, max_lines: int, max_bytes: int) -> None:
        self.max_lines = max(1, max_lines)
        self.max_bytes = max(1, max_bytes)
        self._buf: list[LogRecord] = []
        self._caches: dict[str, list[bytes | None]] = {}
        self._sizes: list[int] = []
        self._status: list[LogRecord] = []
        self._head = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._buf) - self._head

    @property
    def first_seq(self) -> int | None:
        return self._buf[self._head].seq if len(self._buf) > self._head else None

    @property
    def last_seq(self) -> int | None:
        return self._buf[-1].seq if len(self._buf) > self._head else None

    def extend(self, records: list[LogRecord], sizes: list[int], *, status: bool = False) -> None:
        """Append records (`status`: they are status records, listed apart too)."""
        self._buf.extend(records)
        if self._caches:
            blank: list[bytes | None] = [None] * len(records)
            for cache in self._caches.values():
                cache.extend(blank)
        self._sizes.extend(sizes)
        self.bytes += sum(sizes)
        if status:
            self._status.extend(records)

    @property
    def overfull(self) -> bool:
        """Over either bound (the hub trims persisted records at once, so what keeps a
        ring overfull is records the store does not have yet)."""
        return len(self) > self.max_lines or self.bytes > self.max_bytes

    def over(self) -> int:
        """How many of the oldest records must go to respect both bounds."""
        excess = len(self) - self.max_lines
        if self.bytes <= self.max_bytes:
            return max(0, excess)
        # Walk from the head until enough bytes are freed (rare: only for huge lines).
        freed, n, i = 0, 0, self._head
        need = self.bytes - self.max_bytes
        while freed < need and i < len(self._sizes):
            freed += self._sizes[i]
            i += 1
            n += 1
        return max(n, excess)

    def drop(self, n: int) -> None:
        """Forget the `n` oldest records."""
        if n <= 0:
            return
        n = min(n, len(self))
        end = self._head + n
        self.bytes -= sum(self._sizes[self._head : end])
        self._head = end
        if self._status and self._status[0].seq < self._buf[end - 1].seq + 1:
            del self._status[: bisect_right(self._status, self._buf[end - 1].seq, key=_seq)]
        live = len(self._buf) - self._head
        if self._head >= min(live, max(DEAD_MIN, live // DEAD_SHARE)):
            del self._buf[: self._head]
            for cache in self._caches.values():
                del cache[: self._head]
            del self._sizes[: self._head]
            self._head = 0

    def clear(self) -> None:
        self._buf.clear()
        self._caches.clear()
        self._sizes.clear()
        self._status.clear()
        self._head = 0
        self.bytes = 0

    def _index(self, seq: int) -> int:
        first = self.first_seq
        assert first is not None
        return self._head + (seq - first)

    def _after(self, after: int) -> int | None:
        """The index of the first record with seq > after (None: the ring is empty)."""
        first = self.first_seq
        return None if first is None else self._head + max(0, after + 1 - first)

    def since(self, after: int, limit: int) -> list[LogRecord]:
        """Records with seq > after, oldest first, at most `limit`; after must be >= first_seq - 1."""
        start = self._after(after)
        return [] if start is None else self._buf[start : start + limit]

    def text_size(self, after: int, count: int) -> int:
        """Bytes of text (in memory: characters for ASCII) of the `count` records after seq
        `after` (as `since`), from the sizes the ring keeps: no step per record in Python."""
        start = self._after(after)
        if start is None or count <= 0:
            return 0
        sizes = self._sizes[start : start + count]
        return sum(sizes) - RECORD_OVERHEAD * len(sizes)

    def last(self, n: int) -> list[LogRecord]:
        if n <= 0:
            return []
        return self._buf[max(self._head, len(self._buf) - n) :]

    def statuses(self, first_seq: int, last_seq: int) -> list[LogRecord]:
        """The status records with first_seq <= seq <= last_seq."""
        status = self._status
        if not status:
            return []
        return status[bisect_left(status, first_seq, key=_seq) : bisect_right(status, last_seq, key=_seq)]

    def _cache(self, fmt: str) -> list[bytes | None]:
        cache = self._caches.get(fmt)
        if cache is None:
            cache = self._caches[fmt] = [None] * len(self._buf)
        return cache

    def encodings(self, fmt: str, first_seq: int, count: int) -> list[bytes | None]:
        """The cached `fmt` encodings of `count` records from `first_seq` (None: not yet)."""
        start = self._index(first_seq)
        return self._cache(fmt)[start : start + count]

    def store_encodings(self, fmt: str, first_seq: int, encoded: list[bytes]) -> None:
        """Keep encodings computed outside the lock, if those records are still here."""
        first = self.first_seq
        if first is None or first_seq < first:
            return
        cache = self._cache(fmt)
        start = self._index(first_seq)
        end = min(start + len(encoded), len(cache))
        cache[start:end] = encoded[: end - start]
