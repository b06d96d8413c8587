"""SendDeadline: one timer for a stream's writes, TimeoutError for a write that waits too long."""

from __future__ import annotations

import asyncio
import time

import pytest

from logcast.web.deadline import SendDeadline

SHORT = 0.05  # s: the deadline under test; the waits below are futures nobody resolves


async def test_a_write_that_waits_past_the_timeout_raises_timeout_error() -> None:
    deadline = SendDeadline(SHORT)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        with deadline:
            await never
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    deadline.close()


async def test_many_quick_writes_share_one_timer_and_none_is_cut() -> None:
    deadline = SendDeadline(3600)
    for _ in range(1000):
        with deadline:
            await asyncio.sleep(0)
    assert deadline.armed == 1
    deadline.close()


async def test_the_timer_follows_the_write_in_progress() -> None:
    """A write that began after the timer was armed is given its full timeout: the
    timer, finding it younger, is armed again for that write's own due time."""
    loop = asyncio.get_running_loop()
    deadline = SendDeadline(SHORT)
    with deadline:
        await asyncio.sleep(0)  # arms the timer at t0 + SHORT
    idle = loop.create_future()
    loop.call_later(SHORT * 0.6, idle.set_result, None)
    await idle  # no write in progress meanwhile
    started = loop.time()
    never: asyncio.Future[None] = loop.create_future()
    with pytest.raises(TimeoutError):
        with deadline:
            await never
    assert loop.time() - started >= SHORT  # not cut at the first timer's time
    assert deadline.armed == 2
    deadline.close()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def writer(ready: asyncio.Event) -> None:
        deadline = SendDeadline(3600)
        with deadline:
            ready.set()
            await asyncio.get_running_loop().create_future()

    ready = asyncio.Event()
    task = asyncio.create_task(writer(ready))
    await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_stream_goes_on_after_a_write_that_was_not_cut() -> None:
    """The timer that fires between writes does nothing; the next write arms it again."""
    loop = asyncio.get_running_loop()
    deadline = SendDeadline(SHORT)
    with deadline:
        pass
    between = loop.create_future()
    loop.call_later(SHORT * 2, between.set_result, None)
    await between  # the timer fired with no write in progress
    with deadline:
        await asyncio.sleep(0)
    assert deadline.armed == 2
    deadline.close()


async def test_bad_use_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        SendDeadline(0)
    deadline = SendDeadline(1)
    with deadline, pytest.raises(RuntimeError, match="reentrant"):
        with deadline:
            pass
    deadline.close()


def test_outside_a_loop_is_refused() -> None:
    with pytest.raises(RuntimeError):
        SendDeadline(1)


def test_a_cancellation_from_elsewhere_due_with_the_deadline_stays_a_cancellation() -> None:
    """An outside `cancel()` that lands in the same loop turn as the deadline, before
    it, is that caller's cancellation, not a timeout (as with `asyncio.timeout`): the
    task's cancellation count is taken when the write begins."""

    async def writer(started: asyncio.Event) -> None:
        deadline = SendDeadline(SHORT)
        try:
            with deadline:
                started.set()
                await asyncio.get_running_loop().create_future()  # a write that never gets room
        finally:
            deadline.close()

    async def main() -> BaseException | None:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        begun = loop.time()
        task = asyncio.create_task(writer(started))
        await started.wait()
        loop.call_at(begun + SHORT / 2, task.cancel)  # due before the deadline's timer
        time.sleep(SHORT * 3)  # the loop is busy (a test's stand-in): both timers come due at once
        try:
            await task
        except BaseException as exc:
            return exc
        return None

    assert isinstance(asyncio.run(main()), asyncio.CancelledError)
