"""A journal counts each lost seq once, however the losses are reported."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logcast.hub.journal import Journal
from logcast.hub.ring import Ring

ranges = st.lists(st.tuples(st.integers(1, 80), st.integers(-3, 20)), max_size=20)


@given(ranges)
def test_store_lost_counts_each_seq_once_and_the_ranges_cover_exactly_them(
    reports: list[tuple[int, int]],
) -> None:
    journal = Journal("app", Ring(10, 1000))
    lost: set[int] = set()
    for start, length in reports:
        journal.lose(start, start + length)
        lost |= set(range(start, start + length + 1))
        assert journal.store_lost == len(lost)
    covered = {seq for a, b in journal.lost for seq in range(a, b + 1)}
    assert covered == lost
    assert all(a <= b < c - 1 for (a, b), (c, _) in zip(journal.lost, journal.lost[1:], strict=False))
    assert all(journal.was_lost(seq, seq) for seq in lost)
