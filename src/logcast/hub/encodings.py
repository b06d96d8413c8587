"""The wire bytes of each record, computed once per format and shared by every reader.

A live record is the same bytes for every subscriber of one format, so its encoding is
kept in the ring beside it; but not for a lone subscriber (the one asking), which never
asks for the same record twice: a full cache is about as large as the records themselves
(~300 bytes a line; bench/burst.py's peak RSS, when its one SSE reader comes back from
the store into a ring of 100,000 lines and encodes all of them).
"""

from __future__ import annotations

from collections.abc import Callable

from logcast.hub.journal import Journal
from logcast.types import LogRecord

Encoder = Callable[[list[LogRecord]], list[bytes]]  # the encodings of many records, in order


def encode_records(journal: Journal, records: list[LogRecord], encode: Encoder, fmt: str) -> list[bytes]:
    """The `fmt` encoding of each record: from the ring's cache where it has them."""
    if not records:
        return []
    first = records[0].seq
    with journal.lock:
        ring_first = journal.ring.first_seq
        cached: list[bytes | None] = (
            journal.ring.encodings(fmt, first, len(records))
            if ring_first is not None and first >= ring_first
            else []
        )
    if len(cached) == len(records) and records[-1].seq - first == len(records) - 1:
        return complete(journal, fmt, records, cached, encode)
    return encode(records)


def filled(
    records: list[LogRecord], cached: list[bytes | None], encode: Encoder
) -> tuple[list[bytes], list[bytes]]:
    """`cached` (the encodings of `records` known so far, None where not) with those it
    lacks made by `encode`, in one call; and the ones made."""
    if cached.count(None) == len(cached):  # the usual case: a lone reader, or new lines
        out = encode(records)
        return out, out
    made = encode([r for r, enc in zip(records, cached, strict=True) if enc is None])
    fresh = iter(made)
    return [enc if enc is not None else next(fresh) for enc in cached], made


def complete(
    journal: Journal, fmt: str, records: list[LogRecord], cached: list[bytes | None], encode: Encoder
) -> list[bytes]:
    """`cached` with the encodings it lacks filled in, and those kept in the ring."""
    # Encodings are never empty, so "all truthy" means "none missing"; `all` is the
    # cheapest test of that.
    if all(cached):
        return cached  # type: ignore[return-value]
    out, _ = filled(records, cached, encode)
    with journal.lock:
        if len(journal.subscribers) != 1:  # not only the one asking: others may read them
            journal.ring.store_encodings(fmt, records[0].seq, out)
    return out
