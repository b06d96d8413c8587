"""What the memory tail holds beyond its records (issue #14, bench/burst.py's peak RSS):
the dead prefix of the ring's lists, and encodings cached for nobody."""

from __future__ import annotations

import sys

from logcast.hub import Hub
from logcast.hub.ring import DEAD_MIN, DEAD_SHARE, Ring
from logcast.types import Level, LogRecord, Stream
from tests.fakes import MemoryStore, MessageEncoder
from tests.test_hub_live import lines


def rec(seq: int) -> LogRecord:
    return LogRecord(seq, float(seq), Level.INFO, f"m{seq}", Stream.STDOUT, "app", 1)


def test_a_flood_through_the_ring_keeps_at_most_a_sixteenth_more_records_alive() -> None:
    ring = Ring(max_lines=100_000, max_bytes=1 << 40)
    seq = 1
    for _ in range(300):  # three ringfuls, a chunk at a time, trimmed as the hub trims
        ring.extend([rec(s) for s in range(seq, seq + 1000)], [10] * 1000)
        ring.store_encodings("sse", seq, [b"x"] * 1000)
        seq += 1000
        ring.drop(ring.over())
        held = len(ring._buf)  # the records the ring's lists still reference
        assert len(ring) <= ring.max_lines
        assert held <= len(ring) + max(DEAD_MIN, len(ring) // DEAD_SHARE) + 1000
        assert all(len(cache) == held for cache in ring._caches.values())
    first = ring.first_seq
    assert first is not None and ring.since(first - 1, 3)[0].seq == first
    assert ring.encodings("sse", first, 2) == [b"x", b"x"]


def test_dropped_records_are_freed() -> None:
    ring = Ring(max_lines=50_000, max_bytes=1 << 40)
    records = [rec(s) for s in range(1, 60_001)]
    ring.extend(records, [10] * len(records))
    oldest = records[0]
    before = sys.getrefcount(oldest)
    ring.drop(ring.over())  # 10,000 go: more than a sixteenth of what stays
    assert sys.getrefcount(oldest) == before - 1


async def test_a_lone_subscriber_does_not_fill_the_cache_and_a_second_one_does() -> None:
    hub = Hub(MemoryStore())
    await hub.open(["app"])
    encode = MessageEncoder()
    try:
        hub.lines("app", 1, Stream.STDOUT, 1.0, lines("a", "b", "c"))
        journal = hub.get("app")
        records = journal.ring.since(0, 10)
        with await hub.subscribe("app", after=0):
            assert hub.encode_logs(journal, records, encode) == [b"a", b"b", b"c"]
            assert journal.ring.encodings("log", 1, 3) == [None, None, None]  # kept for nobody
            with await hub.subscribe("app", after=0):
                hub.encode_logs(journal, records, encode)
                assert encode.calls == 6
                assert journal.ring.encodings("log", 1, 3) == [b"a", b"b", b"c"]
                assert hub.encode_logs(journal, records, encode) == [b"a", b"b", b"c"]
                assert encode.calls == 6  # the second reader's come from the cache
    finally:
        await hub.close()
