"""The process lifecycle as an explicit table of allowed moves.

Every state change of a `ManagedProcess` goes through `check_transition`, so that a
bug in the (concurrent) control flow shows up as an `InvalidTransition` naming the
move rather than as a process that is silently "running" with no child. The table is
data, imports only the vocabulary, and is tested on its own.

    stopped ──start──▶ starting ──spawned──▶ running ──probe──▶ ready
                          │ spawn failed        │ exit             │ exit
                          ▼                     ▼                  ▼
                       crashed ◀─────────── exited / crashed ◀─────┘
                          │ restart policy
                          ▼
                       backoff ──delay──▶ starting
    any live state ──stop──▶ stopping ──▶ stopped

- `starting`: the child is being spawned (brief; spawn failure → `crashed`).
- `running`: the child exists; `ready`: its readiness probe passed (only for processes
  that have one).
- `exited`: ended by itself with code 0; `crashed`: non-zero code, a signal logcast did
  not send, or a failed spawn. A process logcast stopped ends `stopped`, whatever its code.
- `backoff`: waiting to restart under the restart policy.
"""

from __future__ import annotations

from collections.abc import Mapping

from logcast.errors import InvalidTransition
from logcast.types import ProcessState

__all__ = ["TRANSITIONS", "check_transition"]

S = ProcessState

TRANSITIONS: Mapping[ProcessState, frozenset[ProcessState]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.READY, S.EXITED, S.CRASHED, S.STOPPING}),
    S.RUNNING: frozenset({S.READY, S.STOPPING, S.EXITED, S.CRASHED}),
    S.READY: frozenset({S.STOPPING, S.EXITED, S.CRASHED}),
    S.STOPPING: frozenset({S.STOPPED, S.EXITED, S.CRASHED}),
    S.EXITED: frozenset({S.STARTING, S.BACKOFF, S.STOPPED}),
    S.CRASHED: frozenset({S.STARTING, S.BACKOFF, S.STOPPED}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED}),
}


def check_transition(old: ProcessState, new: ProcessState) -> None:
    """Raise InvalidTransition unless the table allows `old → new`."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"invalid process state change: {old.value} → {new.value}")
