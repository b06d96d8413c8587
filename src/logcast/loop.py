"""The event loop a long-running logcast command runs on: uvloop where it is installed (it
comes with `uvicorn[standard]`), asyncio's own otherwise.

uvloop wakes and reads in C: a `logcast tail` following 1,000 lines/s used about a fifth
less CPU on it, and `serve` has run on it from the start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

__all__ = ["STOP_SIGNALS", "cancel_all", "raise_if_cancelled", "run", "running_loop", "stop_signals"]

T = TypeVar("T")

log = logging.getLogger(__name__)

STOP_GRACE = 5.0  # s for a cancelled task to end before a stop goes on without it
RECANCEL = 0.25  # s between two cancels of a task that goes on


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each stops serve or an agent in order


def stop_signals() -> tuple[signal.Signals, ...]:
    """The `STOP_SIGNALS` to catch now: SIGHUP only if it is not ignored, as under
    `nohup`, which asks for the terminal's closing to leave the process running."""
    return tuple(
        sig for sig in STOP_SIGNALS if sig != signal.SIGHUP or signal.getsignal(sig) != signal.SIG_IGN
    )


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop when it is there."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def raise_if_cancelled() -> None:
    """Raise CancelledError in a task that was cancelled without being told.

    On Python 3.11, `asyncio.wait_for` returns its result when a cancel arrives just as
    what it awaits completes, and the cancel is lost (python/cpython#86296, fixed in
    3.12). redis-py sends every command through it, so a loop awaiting Redis went on
    after `cancel()` and whoever awaited the task waited for ever: a replica's and an
    agent's stop hung in CI. The task still counts the request, so a loop that may await
    Redis calls this at its head or between two rounds. Not in cleanup that runs after a
    cancel was caught (an `except` or `finally`): the count is still up there, and this
    would raise again."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_all(
    tasks: Iterable[asyncio.Task[Any]], grace: float = STOP_GRACE
) -> list[asyncio.Task[Any]]:
    """Cancel `tasks` and wait up to `grace` s for them to end, cancelling again every
    RECANCEL s those that go on (a cancel can be lost, see `raise_if_cancelled`), so that a
    stop cannot hang. What they raised is taken and dropped (they were being stopped), now
    or when they end. Those still running are named in the log, and returned."""
    tasks = list(tasks)
    for task in tasks:
        task.add_done_callback(_drop_outcome)
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + grace
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL, left))
    running = [task for task in tasks if task in pending]
    for task in running:
        log.warning("%s did not end when cancelled; stopping without it", task.get_name())
    return running


def _drop_outcome(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit
