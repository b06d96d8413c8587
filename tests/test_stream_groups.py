"""How a stream cuts its frames into writes: whole frames, at most `limit` bytes a write
(a longer frame alone), nothing lost or reordered, from a list or from an iterator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcast.hub import Entry
from logcast.types import EventType, Gap, GapReason, Level, LogRecord, Stream
from logcast.web import streams
from logcast.web.streams import _groups

frames_st = st.lists(st.binary(min_size=1, max_size=40), max_size=60)


def reference(frames: list[bytes], limit: int) -> list[list[bytes]]:
    """The rule, spelled out: frames go into the current write while it stays within limit."""
    writes: list[list[bytes]] = []
    for frame in frames:
        if writes and sum(map(len, writes[-1])) + len(frame) <= limit:
            writes[-1].append(frame)
        else:
            writes.append([frame])
    return writes


@given(frames_st, st.integers(min_value=1, max_value=200))
def test_a_list_and_an_iterator_are_cut_alike_and_by_the_rule(frames: list[bytes], limit: int) -> None:
    from_list = list(_groups(frames, limit))
    from_iterator = list(_groups(iter(frames), limit))
    assert from_list == from_iterator == [b"".join(w) for w in reference(frames, limit)]


def test_a_batch_that_fits_is_one_write() -> None:
    assert list(_groups([b"a" * 10, b"b" * 10], 20)) == [b"a" * 10 + b"b" * 10]


def test_a_frame_longer_than_the_limit_goes_alone() -> None:
    assert list(_groups([b"ab", b"x" * 50, b"cd"], 10)) == [b"ab", b"x" * 50, b"cd"]


def test_nothing_is_no_write() -> None:
    assert list(_groups([], 10)) == [] and list(_groups(iter([]), 10)) == []


# -- the parts a stream encodes at a time ----------------------------------------------


def _record(seq: int, size: int) -> LogRecord:
    return LogRecord(seq, 1.0, Level.INFO, "x" * size, Stream.STDOUT, "p", 1, False, None)


@given(
    st.lists(st.one_of(st.integers(0, 3000), st.none()), max_size=80),
    st.integers(1, 40),
    st.integers(1, 5000),
)
def test_parts_are_bounded_in_entries_and_text_and_keep_every_entry(
    sizes: list[int | None], size: int, budget: int
) -> None:
    """A part is encoded at once on the event loop: 1,024 history lines of 64 KiB were
    hundreds of MB of JSON in one go (a review). At most `size` entries and `PART_TEXT`
    characters of text a part (but for a record longer than that, which starts one),
    every entry once, in order; a gap among them counts for no text."""
    entries: list[Entry] = [
        (EventType.GAP, Gap("p", i, i, GapReason.LOST))
        if n is None
        else (EventType.HISTORICAL, _record(i, n))
        for i, n in enumerate(sizes)
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(streams, "PART_TEXT", budget)
        parts = list(streams._parts(entries, size))
    assert [e for part in parts for e in part] == entries
    for part in parts:
        texts = [len(p.message) if isinstance(p, LogRecord) else 0 for _, p in part]
        assert 1 <= len(part) <= size
        assert sum(texts) <= budget or (isinstance(part[0][1], LogRecord) and not any(texts[1:]))
