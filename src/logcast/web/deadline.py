"""A send timeout shared by all the writes of one stream, with no timer per write.

`asyncio.timeout` around each write schedules a timer and cancels it again (a handle, a
heap push, the current task looked up): for a client taking a line at a time that cost
as much as the write itself. Writes almost never wait, so one timer can watch them all.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["SendDeadline"]


class SendDeadline:
    """`with deadline:` around a write raises TimeoutError in it once the write has
    waited `timeout` seconds, like `asyncio.timeout(timeout)` would, for one task's writes
    one after another.

    The first write arms a timer `timeout` ahead. When it fires it looks at the write in
    progress, if any: one that began `timeout` ago or more has its task cancelled, which
    the `with` turns into TimeoutError; a later one gets the timer again, for its own
    due time. So a stream of short writes costs a timer per `timeout`, not per write.
    """

    def __init__(self, timeout: float, task: asyncio.Task[object] | None = None) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._loop = asyncio.get_running_loop()
        current = task if task is not None else asyncio.current_task()
        if current is None:
            raise RuntimeError("SendDeadline outside a task")
        self._task = current
        self.timeout = timeout
        self._since: float | None = None  # loop time the write in progress began
        self._timer: asyncio.TimerHandle | None = None
        self._cancelling = 0  # the task's cancellation count when the write began
        self._fired = False  # this deadline cancelled the task during the write in progress
        self.armed = 0  # timers scheduled so far

    def __enter__(self) -> SendDeadline:
        if self._since is not None:
            raise RuntimeError("SendDeadline is not reentrant")
        self._since = now = self._loop.time()
        # As asyncio.timeout: counted on entry, so that a cancellation from elsewhere
        # (which raises the count before our timer fires) stays a cancellation.
        self._cancelling = self._task.cancelling()
        if self._timer is None:
            self._arm(now + self.timeout)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._since = None
        if self._fired:
            self._fired = False
            if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                raise TimeoutError from error

    def close(self) -> None:
        """Drop the timer (the stream ended)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        self._timer = self._loop.call_at(when, self._expire)
        self.armed += 1

    def _expire(self) -> None:
        self._timer = None
        since = self._since
        if since is None or self._fired:
            return  # no write waits (the next one arms the timer again)
        due = since + self.timeout
        if self._loop.time() < due:
            self._arm(due)
            return
        self._fired = True
        self._task.cancel()
