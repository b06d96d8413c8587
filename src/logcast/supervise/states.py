"""The process lifecycle as an explicit table of allowed moves.

Every state change goes through `check_transition`, so that a bug in the concurrent
control flow shows up as an `InvalidTransition` naming the move, not as a process
silently "running" with no child.
"""

from __future__ import annotations

from collections.abc import Mapping

from logcast.errors import InvalidTransition
from logcast.types import ProcessState

__all__ = ["TRANSITIONS", "check_transition"]

State = ProcessState  # short, so that each row of the table fits on one line

#     stopped ──start──▶ starting ──spawned──▶ running ──probe──▶ ready
#                           │ spawn failed        │ exit             │ exit
#                           ▼                     ▼                  ▼
#                        crashed ◀─────────── exited / crashed ◀─────┘
#                           │ restart policy
#                           ▼
#                        backoff ──delay──▶ starting
#     any live state ──stop──▶ stopping ──▶ stopped
#
# `ready`: the readiness probe passed (only processes that have one). `exited`: ended by
# itself with code 0; `crashed`: a non-zero code, a signal logcast did not send, or a
# failed spawn. A process logcast stopped ends `stopped`, whatever its code.
TRANSITIONS: Mapping[ProcessState, frozenset[ProcessState]] = {
    State.STOPPED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.RUNNING, State.READY, State.EXITED, State.CRASHED, State.STOPPING}),
    State.RUNNING: frozenset({State.READY, State.STOPPING, State.EXITED, State.CRASHED}),
    State.READY: frozenset({State.STOPPING, State.EXITED, State.CRASHED}),
    State.STOPPING: frozenset({State.STOPPED, State.EXITED, State.CRASHED}),
    State.EXITED: frozenset({State.STARTING, State.BACKOFF, State.STOPPED}),
    State.CRASHED: frozenset({State.STARTING, State.BACKOFF, State.STOPPED}),
    State.BACKOFF: frozenset({State.STARTING, State.STOPPED}),
    State.UNKNOWN: frozenset(),  # what a replica shows for a lost host; no process is ever in it
}


def check_transition(old: ProcessState, new: ProcessState) -> None:
    """Raise InvalidTransition unless the table allows `old → new`."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"invalid process state change: {old.value} → {new.value}")
