"""The process state table: every allowed move passes, every other raises."""

from __future__ import annotations

import itertools

import pytest

from logcast.errors import InvalidTransition
from logcast.supervise.states import TRANSITIONS, check_transition
from logcast.types import ProcessState as S

EXPECTED = {
    (S.STOPPED, S.STARTING),
    (S.STARTING, S.RUNNING), (S.STARTING, S.READY), (S.STARTING, S.EXITED),
    (S.STARTING, S.CRASHED), (S.STARTING, S.STOPPING),
    (S.RUNNING, S.READY), (S.RUNNING, S.STOPPING), (S.RUNNING, S.EXITED), (S.RUNNING, S.CRASHED),
    (S.READY, S.STOPPING), (S.READY, S.EXITED), (S.READY, S.CRASHED),
    (S.STOPPING, S.STOPPED), (S.STOPPING, S.EXITED), (S.STOPPING, S.CRASHED),
    (S.EXITED, S.STARTING), (S.EXITED, S.BACKOFF), (S.EXITED, S.STOPPED),
    (S.CRASHED, S.STARTING), (S.CRASHED, S.BACKOFF), (S.CRASHED, S.STOPPED),
    (S.BACKOFF, S.STARTING), (S.BACKOFF, S.STOPPED),
}  # fmt: skip


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(S)


def test_table_is_exactly_the_documented_one() -> None:
    assert {(old, new) for old, news in TRANSITIONS.items() for new in news} == EXPECTED


@pytest.mark.parametrize(("old", "new"), sorted(itertools.product(S, S)))
def test_check_transition(old: S, new: S) -> None:
    if (old, new) in EXPECTED:
        check_transition(old, new)
    else:
        with pytest.raises(InvalidTransition, match=f"{old.value} → {new.value}"):
            check_transition(old, new)


def test_no_state_moves_to_itself() -> None:
    for state in S:
        assert state not in TRANSITIONS[state]


def test_every_state_reachable_from_stopped_and_back() -> None:
    def reachable(start: S) -> set[S]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    supervised = set(S) - {S.UNKNOWN}  # UNKNOWN: a replica's view of a lost host, not a move
    assert reachable(S.STOPPED) == supervised
    for state in supervised:
        assert S.STOPPED in reachable(state)


def test_alive_states_can_be_stopped() -> None:
    for state in S:
        if state.is_alive and state is not S.STOPPING:
            assert S.STOPPING in TRANSITIONS[state]


def test_the_state_groups_nest_and_do_not_overlap() -> None:
    from logcast.types import ProcessState

    for state in ProcessState:
        assert not (state.is_up and not state.is_starting_or_up)
        assert not (state.is_starting_or_up and not state.is_alive)
        assert not (state.has_ended and state.is_alive)
    assert {s for s in ProcessState if s.is_up} == {ProcessState.RUNNING, ProcessState.READY}
    assert {s for s in ProcessState if s.has_ended} == {
        ProcessState.STOPPED,
        ProcessState.EXITED,
        ProcessState.CRASHED,
    }
    assert not ProcessState.BACKOFF.is_alive and not ProcessState.BACKOFF.has_ended


def test_the_viewer_groups_states_as_process_state_does() -> None:
    """The dashboard's one list of states (static/js/states.js) agrees with ProcessState."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "src/logcast/web/static/js/states.js").read_text()
    alive = re.search(r"ALIVE = new Set\(\[(.*?)\]\)", source)
    assert alive is not None
    assert set(re.findall(r'"(\w+)"', alive.group(1))) == {state.value for state in S if state.is_alive}
