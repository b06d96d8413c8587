"""A send timeout shared by all the writes of one stream, and the quiet spell after which
a stream pings, each with one timer, not a timer per write or per wait.

`asyncio.timeout` around each write schedules a timer and cancels it again (a handle, a
heap push, the current task looked up): for a client taking a line at a time that cost
as much as the write itself. Writes almost never wait, so one timer can watch them all.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from types import TracebackType

__all__ = ["LazyTimer", "Quiet", "SendDeadline"]


class LazyTimer:
    """Calls `fire()` once the loop's time reaches the latest due time given (`set`),
    unless it was taken back (`clear`) first; one timer, armed again only when it comes
    early. A due time moved on at every write or wait costs two attribute writes, where
    a timer each time would cost a handle, a heap push and a cancellation."""

    def __init__(self, fire: Callable[[], object]) -> None:
        self._loop = asyncio.get_running_loop()
        self._fire = fire
        self.due: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.armed = 0  # timers scheduled so far

    def time(self) -> float:
        return self._loop.time()

    def set(self, due: float) -> None:
        self.due = due
        if self._timer is None:
            self._arm(due)

    def clear(self) -> None:
        self.due = None

    def close(self) -> None:
        """Drop the timer (its user is done)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        self._timer = self._loop.call_at(when, self._expire)
        self.armed += 1

    def _expire(self) -> None:
        self._timer = None
        due = self.due
        if due is None:
            return  # taken back (the next `set` arms it again)
        if self._loop.time() < due:
            self._arm(due)
            return
        self.due = None
        self._fire()


class SendDeadline:
    """`with deadline:` around a write raises TimeoutError in it once the write has
    waited `timeout` seconds, like `asyncio.timeout(timeout)` would, for one task's writes
    one after another.

    Each write sets a `LazyTimer` `timeout` ahead and takes it back when done: one that
    began `timeout` ago or more when the timer fires has its task cancelled, which the
    `with` turns into TimeoutError. So a stream of short writes costs a timer per
    `timeout`, not per write.
    """

    def __init__(self, timeout: float, task: asyncio.Task[object] | None = None) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        current = task if task is not None else asyncio.current_task()
        if current is None:
            raise RuntimeError("SendDeadline outside a task")
        self._task = current
        self.timeout = timeout
        self._timer = LazyTimer(self._expire)
        self._writing = False
        self._cancelling = 0  # the task's cancellation count when the write began
        self._fired = False  # this deadline cancelled the task during the write in progress

    @property
    def armed(self) -> int:
        """Timers scheduled so far."""
        return self._timer.armed

    def __enter__(self) -> SendDeadline:
        if self._writing:
            raise RuntimeError("SendDeadline is not reentrant")
        self._writing = True
        # As asyncio.timeout: counted on entry, so that a cancellation from elsewhere
        # (which raises the count before our timer fires) stays a cancellation.
        self._cancelling = self._task.cancelling()
        self._timer.set(self._timer.time() + self.timeout)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._writing = False
        self._timer.clear()
        if self._fired:
            self._fired = False
            if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                raise TimeoutError from error

    def close(self) -> None:
        """Drop the timer (the stream ended)."""
        self._timer.close()

    def _expire(self) -> None:
        self._fired = True
        self._task.cancel()


class Quiet:
    """Wakes a stream's reader once `interval` seconds passed with nothing to send, so
    that it can ping: a `LazyTimer` that each wait for new lines moves on, where a timer
    per wait (`asyncio.timeout` around `event.wait()`) would be scheduled and cancelled
    for every line a live reader takes."""

    def __init__(self, event: asyncio.Event, interval: float) -> None:
        self._interval = interval
        self._timer = LazyTimer(event.set)
        self.due = math.inf  # when the current spell ends

    def start(self) -> float:
        """Begin a quiet spell now (again, after something was sent without the stream's
        task: `streams._direct`); the loop time it ends, when the event is set."""
        self.due = due = self._timer.time() + self._interval
        self._timer.set(due)
        return due

    def over(self) -> bool:
        """The current spell has ended."""
        return self._timer.time() >= self.due

    def close(self) -> None:
        self._timer.close()
