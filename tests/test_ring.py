"""The ring: per-format encoding caches that follow the records, and the status list."""

from __future__ import annotations

import random

from logcast.hub.ring import RECORD_OVERHEAD, Ring
from logcast.types import Level, LogRecord, ProcessState, Stream


def rec(seq: int, *, status: bool = False) -> LogRecord:
    if status:
        return LogRecord(
            seq, float(seq), Level.INFO, f"s{seq}", Stream.SYSTEM, "app", 1, False, ProcessState.RUNNING
        )
    return LogRecord(seq, float(seq), Level.INFO, f"m{seq}", Stream.STDOUT, "app", 1)


def enc(fmt: str, seq: int) -> bytes:
    return f"{fmt}:{seq}".encode()


def add(ring: Ring, first: int, n: int, *, status: bool = False) -> list[LogRecord]:
    records = [rec(s, status=status) for s in range(first, first + n)]
    ring.extend(records, [10] * n, status=status)
    return records


def big_ring() -> Ring:
    return Ring(max_lines=1_000_000, max_bytes=1 << 40)


def test_formats_are_independent() -> None:
    ring = big_ring()
    add(ring, 1, 5)
    assert ring.encodings("sse", 1, 5) == [None] * 5
    ring.store_encodings("sse", 1, [enc("sse", s) for s in range(1, 6)])
    assert ring.encodings("sse", 1, 5) == [enc("sse", s) for s in range(1, 6)]
    assert ring.encodings("log", 1, 5) == [None] * 5  # storing "sse" did not fill "log"
    ring.store_encodings("log", 3, [enc("log", 3), enc("log", 4)])
    assert ring.encodings("log", 1, 5) == [None, None, enc("log", 3), enc("log", 4), None]
    assert ring.encodings("sse", 1, 5) == [enc("sse", s) for s in range(1, 6)]  # untouched
    assert ring.encodings("sse", 2, 2) == [enc("sse", 2), enc("sse", 3)]


def test_extend_adds_empty_slots_to_every_cache() -> None:
    ring = big_ring()
    add(ring, 1, 3)
    ring.store_encodings("sse", 1, [enc("sse", s) for s in (1, 2, 3)])
    ring.store_encodings("ws-text", 2, [enc("ws-text", 2)])
    add(ring, 4, 2)
    add(ring, 6, 1, status=True)
    assert ring.encodings("sse", 1, 6) == [enc("sse", 1), enc("sse", 2), enc("sse", 3), None, None, None]
    assert ring.encodings("ws-text", 1, 6) == [None, enc("ws-text", 2), None, None, None, None]
    ring.store_encodings("sse", 4, [enc("sse", s) for s in (4, 5, 6)])
    assert ring.encodings("sse", 1, 6) == [enc("sse", s) for s in range(1, 7)]


def test_store_encodings_beyond_the_newest_record_is_cut() -> None:
    ring = big_ring()
    add(ring, 1, 3)
    ring.store_encodings("sse", 2, [enc("sse", 2), enc("sse", 3), b"too far", b"further"])
    assert ring.encodings("sse", 1, 10) == [None, enc("sse", 2), enc("sse", 3)]
    add(ring, 4, 2)
    assert ring.encodings("sse", 1, 5) == [None, enc("sse", 2), enc("sse", 3), None, None]


def test_encodings_line_up_with_seqs_through_many_drops_and_compactions() -> None:
    rnd = random.Random(7)
    ring = big_ring()
    model: dict[str, dict[int, bytes]] = {"sse": {}, "ws-json": {}}
    next_seq = 1
    compactions = 0
    for _ in range(600):
        n = rnd.randint(1, 40)
        add(ring, next_seq, n, status=rnd.random() < 0.1)
        next_seq += n
        first, last = ring.first_seq, ring.last_seq
        assert first is not None and last is not None
        # fill a random slice of a random format, as a subscriber would
        fmt = rnd.choice(list(model))
        a = rnd.randint(first, last)
        b = rnd.randint(a, last)
        encoded = [enc(fmt, s) for s in range(a, b + 1)]
        ring.store_encodings(fmt, a, encoded)
        model[fmt].update(zip(range(a, b + 1), encoded, strict=True))
        head_before = ring._head
        ring.drop(rnd.randint(0, len(ring)))
        if ring._head < head_before:
            compactions += 1
        first, last = ring.first_seq, ring.last_seq
        if first is None:
            continue
        assert last is not None
        assert len(ring) == last - first + 1
        assert [r.seq for r in ring.since(first - 1, len(ring))] == list(range(first, last + 1))
        for name, seen in model.items():
            got = ring.encodings(name, first, len(ring))
            assert got == [seen.get(s) for s in range(first, last + 1)], name
    assert compactions > 50  # the internal `del` of the dead prefix really happened


def test_drop_then_compaction_keeps_each_cache_aligned() -> None:
    ring = big_ring()
    add(ring, 1, 10)
    ring.store_encodings("sse", 1, [enc("sse", s) for s in range(1, 11)])
    ring.drop(3)  # head moves, no compaction yet (3 < 7)
    assert ring.first_seq == 4
    assert ring.encodings("sse", 4, 7) == [enc("sse", s) for s in range(4, 11)]
    ring.drop(3)  # head 6 >= 4 live: the dead prefix goes
    assert ring.first_seq == 7
    assert ring.encodings("sse", 7, 4) == [enc("sse", s) for s in range(7, 11)]
    # a format first asked for after a compaction lines up too
    assert ring.encodings("log", 7, 4) == [None] * 4
    ring.store_encodings("log", 8, [enc("log", 8)])
    add(ring, 11, 2)
    assert ring.encodings("log", 7, 6) == [None, enc("log", 8), None, None, None, None]
    assert ring.encodings("sse", 9, 4) == [enc("sse", 9), enc("sse", 10), None, None]


def test_clear_empties_every_cache() -> None:
    ring = big_ring()
    add(ring, 1, 4)
    ring.store_encodings("sse", 1, [enc("sse", s) for s in range(1, 5)])
    ring.store_encodings("log", 1, [enc("log", s) for s in range(1, 5)])
    add(ring, 5, 1, status=True)
    ring.clear()
    assert len(ring) == 0 and ring.first_seq is None and ring.bytes == 0
    assert ring.statuses(0, 100) == []
    add(ring, 10, 3)  # numbering goes on after a clear
    assert ring.encodings("sse", 10, 3) == [None] * 3
    assert ring.encodings("log", 10, 3) == [None] * 3
    # an encoding computed before the clear, for a seq gone with it, is not kept
    ring.store_encodings("sse", 3, [enc("sse", s) for s in range(3, 12)])
    assert ring.encodings("sse", 10, 3) == [None] * 3


def test_store_encodings_ignores_records_dropped_meanwhile() -> None:
    ring = big_ring()
    add(ring, 1, 20)
    stale = [enc("sse", s) for s in range(3, 9)]  # computed outside the lock for 3..8
    ring.drop(5)  # 1..5 left the ring meanwhile
    ring.store_encodings("sse", 3, stale)
    got = ring.encodings("sse", 6, 15)
    # nothing is written at the wrong place: every slot is empty or holds its own seq
    assert all(g is None or g == enc("sse", s) for s, g in zip(range(6, 21), got, strict=True))
    assert got[3:] == [None] * 12
    ring.drop(10)  # compaction; then the same stale write again
    ring.store_encodings("sse", 3, stale)
    assert ring.encodings("sse", 16, 5) == [None] * 5
    # whereas records that are still here are kept
    ring.store_encodings("sse", 16, [enc("sse", s) for s in range(16, 21)])
    assert ring.encodings("sse", 16, 5) == [enc("sse", s) for s in range(16, 21)]


def test_store_encodings_on_an_empty_ring_is_ignored() -> None:
    ring = big_ring()
    ring.store_encodings("sse", 1, [b"x"])
    add(ring, 1, 1)
    assert ring.encodings("sse", 1, 1) == [None]


def test_statuses_in_range_and_forgotten_when_dropped() -> None:
    ring = big_ring()
    add(ring, 1, 3)
    add(ring, 4, 1, status=True)
    add(ring, 5, 4)
    add(ring, 9, 2, status=True)
    add(ring, 11, 5)
    add(ring, 16, 1, status=True)
    seqs = lambda a, b: [r.seq for r in ring.statuses(a, b)]  # noqa: E731
    assert seqs(1, 16) == [4, 9, 10, 16]
    assert seqs(4, 4) == [4]
    assert seqs(5, 8) == []
    assert seqs(5, 9) == [9]
    assert seqs(10, 15) == [10]
    assert seqs(11, 16) == [16]
    assert seqs(17, 30) == []
    assert all(r.stream is Stream.SYSTEM for r in ring.statuses(1, 16))
    ring.drop(4)  # 1..4 go, with status 4
    assert seqs(0, 100) == [9, 10, 16]
    ring.drop(5)  # 5..9: status 9 goes, 10 stays
    assert seqs(0, 100) == [10, 16]
    ring.drop(6)  # 10..15
    assert seqs(0, 100) == [16]
    add(ring, 17, 1, status=True)
    assert seqs(0, 100) == [16, 17]
    ring.drop(2)
    assert seqs(0, 100) == [] and len(ring) == 0


def test_statuses_follow_the_ring_through_random_drops() -> None:
    rnd = random.Random(11)
    ring = big_ring()
    statuses: set[int] = set()
    seq = 1
    for _ in range(400):
        n = rnd.randint(1, 5)
        status = rnd.random() < 0.3
        add(ring, seq, n, status=status)
        if status:
            statuses.update(range(seq, seq + n))
        seq += n
        ring.drop(rnd.randint(0, 6))
        first, last = ring.first_seq, ring.last_seq
        if first is None:
            assert ring.statuses(0, seq) == []
            continue
        assert last is not None
        a = rnd.randint(first, last)
        b = rnd.randint(a, last)
        assert [r.seq for r in ring.statuses(a, b)] == sorted(s for s in statuses if a <= s <= b)
        assert [r.seq for r in ring.statuses(0, seq)] == sorted(s for s in statuses if s >= first)


def test_text_size_is_the_characters_of_the_records_since_through_drops() -> None:
    """What the store writer counts toward its heap trim: the text of the records `since`
    returns, read from the ring's sizes (text + RECORD_OVERHEAD each)."""
    rnd = random.Random(5)
    ring = big_ring()
    seq = 1
    for _ in range(300):
        n = rnd.randint(1, 6)
        records = [
            LogRecord(s, float(s), Level.INFO, "x" * rnd.randint(0, 40), Stream.STDOUT, "app", 1)
            for s in range(seq, seq + n)
        ]
        ring.extend(records, [len(r.message) + RECORD_OVERHEAD for r in records])
        seq += n
        ring.drop(rnd.randint(0, 5))
        first = ring.first_seq
        if first is None:
            assert ring.text_size(0, 10) == 0
            continue
        after = rnd.randint(first - 1, seq)
        count = rnd.randint(0, 12)
        assert ring.text_size(after, count) == sum(len(r.message) for r in ring.since(after, count))
