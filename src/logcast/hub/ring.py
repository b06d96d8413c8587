"""The memory tail of one process: a ring of records, bounded in lines and bytes.

Records of a process are contiguous in `seq` from the oldest kept to the newest, so
a record is found by arithmetic (`seq - first_seq`), not by search. The ring is a
Python list with a moving head rather than a `deque`: a deque cannot be sliced or
indexed in the middle in constant time, and subscribers read slices all the time.
The dead prefix is dropped in one `del` once it is as long as the live part, so the
cost is amortised to O(1) per record.

Beside each record the ring keeps a slot for its JSON encoding (`log` object bytes),
filled lazily by the first subscriber that needs it and shared by every other one:
a record is serialised once, not once per subscriber.

Not thread-safe by itself: the hub holds its process lock around every call.
"""

from __future__ import annotations

from logcast.types import LogRecord


class Ring:
    __slots__ = ("_buf", "_enc", "_head", "_sizes", "bytes", "max_bytes", "max_lines")

    def __init__(self, max_lines: int, max_bytes: int) -> None:
        self.max_lines = max(1, max_lines)
        self.max_bytes = max(1, max_bytes)
        self._buf: list[LogRecord] = []
        self._enc: list[bytes | None] = []
        self._sizes: list[int] = []
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

    def extend(self, records: list[LogRecord], sizes: list[int]) -> None:
        self._buf.extend(records)
        self._enc.extend([None] * len(records))
        self._sizes.extend(sizes)
        self.bytes += sum(sizes)

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
        if self._head >= len(self._buf) - self._head:
            del self._buf[: self._head]
            del self._enc[: self._head]
            del self._sizes[: self._head]
            self._head = 0

    def clear(self) -> None:
        self._buf.clear()
        self._enc.clear()
        self._sizes.clear()
        self._head = 0
        self.bytes = 0

    def _index(self, seq: int) -> int:
        first = self.first_seq
        assert first is not None
        return self._head + (seq - first)

    def since(self, after: int, limit: int) -> list[LogRecord]:
        """Records with seq > after, oldest first, at most `limit`; after must be >= first_seq - 1."""
        first = self.first_seq
        if first is None:
            return []
        start = self._head + max(0, after + 1 - first)
        return self._buf[start : start + limit]

    def last(self, n: int) -> list[LogRecord]:
        if n <= 0:
            return []
        return self._buf[max(self._head, len(self._buf) - n) :]

    def encodings(self, first_seq: int, count: int) -> list[bytes | None]:
        start = self._index(first_seq)
        return self._enc[start : start + count]

    def store_encodings(self, first_seq: int, encoded: list[bytes]) -> None:
        """Keep encodings computed outside the lock, if those records are still here."""
        first = self.first_seq
        if first is None or first_seq < first:
            return
        start = self._index(first_seq)
        end = min(start + len(encoded), len(self._enc))
        self._enc[start:end] = encoded[: end - start]
