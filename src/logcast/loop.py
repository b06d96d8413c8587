"""The event loop a long-running logcast command runs on: uvloop where it is installed (it
comes with `uvicorn[standard]`), asyncio's own otherwise.

uvloop wakes and reads in C: a `logcast tail` following 1,000 lines/s used about a fifth
less CPU on it, and `serve` has run on it from the start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

__all__ = ["cancel_all", "raise_if_cancelled", "run"]

T = TypeVar("T")

STOP_GRACE = 5.0  # s for a cancelled task to end before a stop goes on without it


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop when it is there."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def raise_if_cancelled() -> None:
    """Raise CancelledError in a task that was cancelled without being told.

    On Python 3.11, `asyncio.wait_for` returns its result when a cancel arrives just as
    what it awaits completes, and the cancel is lost (python/cpython#86296, fixed in
    3.12). redis-py sends every command through it, so a loop awaiting Redis went on
    after `cancel()` and whoever awaited the task waited for ever: a replica's and an
    agent's stop hung in CI. The task still counts the request, so a loop that may await
    Redis calls this at its head."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_all(
    tasks: Iterable[asyncio.Task[Any]], grace: float = STOP_GRACE
) -> list[asyncio.Task[Any]]:
    """Cancel `tasks` and wait up to `grace` s for them to end, so that a stop cannot hang
    on a cancel some library lost. What they raised is taken (and dropped: they were
    being stopped). Returns those still running, for the caller to name in its log."""
    running = [task for task in tasks if not task.done()]
    for task in running:
        task.cancel()
    if not running:
        return []
    done, pending = await asyncio.wait(running, timeout=grace)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" at exit
    return list(pending)
