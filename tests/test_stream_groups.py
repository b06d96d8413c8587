"""How a stream cuts its frames into writes: whole frames, at most `limit` bytes a write
(a longer frame alone), nothing lost or reordered, from a list or from an iterator."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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
