"""The dashboard's session table, on a fake clock."""

from __future__ import annotations

import re

import pytest

from logcast.web.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_login_gets_a_new_random_id() -> None:
    table = Sessions(clock=Clock())
    ids = {table.create(60) for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", i) for i in ids)
    assert all(table.valid(i) for i in ids)
    assert len(table) == 100


def test_a_session_expires_at_its_deadline() -> None:
    clock = Clock()
    table = Sessions(clock=clock)
    sid = table.create(30)
    clock.now += 29.9
    assert table.valid(sid)
    clock.now += 0.1
    assert not table.valid(sid)
    clock.now -= 10  # a clock that went back does not bring it back: it was removed
    assert not table.valid(sid)
    assert len(table) == 0


def test_logout_ends_a_session_and_only_that_one() -> None:
    clock = Clock()
    table = Sessions(clock=clock)
    a, b = table.create(60), table.create(60)
    assert table.end(a)
    assert not table.valid(a) and table.valid(b)
    assert not table.end(a)  # twice: nothing left to end
    assert not table.end("made-up") and not table.end("")
    clock.now += 61
    assert not table.end(b)  # expired before the logout


def test_unknown_and_empty_ids_are_refused() -> None:
    table = Sessions(clock=Clock())
    table.create(60)
    for sid in ("", "x", "\udcff", "A" * 10_000):
        assert not table.valid(sid)


def test_the_table_is_bounded_and_evicts_the_oldest() -> None:
    clock = Clock()
    table = Sessions(capacity=3, clock=clock)
    first = table.create(60)
    clock.now += 1
    rest = [table.create(60) for _ in range(3)]
    assert len(table) == 3
    assert not table.valid(first)
    assert all(table.valid(s) for s in rest)


def test_expired_sessions_make_room_before_live_ones_are_evicted() -> None:
    clock = Clock()
    table = Sessions(capacity=2, clock=clock)
    short = table.create(5)
    long = table.create(100)
    clock.now += 6
    fresh = table.create(100)
    assert not table.valid(short)
    assert table.valid(long) and table.valid(fresh)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Sessions(capacity=0)
    with pytest.raises(ValueError):
        Sessions().create(0)
