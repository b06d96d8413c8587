"""A cancel that Python 3.11's `asyncio.wait_for` loses still ends a logcast loop.

On 3.11, when the awaited thing completes in the same turn as the cancel, `wait_for`
returns its result and the CancelledError is gone (python/cpython#86296). redis-py sends
every command through `wait_for`; a replica's refresh loop went on after `cancel()` this
way and its `stop()` waited for ever (CI hung). Here the race is made on purpose, the
same way each time: the awaited future gets its result and the task its cancel in one
callback."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from logcast.loop import cancel_all, raise_if_cancelled


async def loop_awaiting_wait_for(rounds: list[int], check: bool, lose: asyncio.Event) -> None:
    """A loop like the agent's: each round awaits something through `wait_for`."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    while True:
        if check:
            raise_if_cancelled()
        rounds.append(len(rounds))
        done = loop.create_future()
        if len(rounds) == 1:  # the first round: its result and the cancel in one turn

            def race(done: asyncio.Future[None] = done) -> None:
                done.set_result(None)
                task.cancel()
                lose.set()

            loop.call_soon(race)
        else:
            loop.call_soon(done.set_result, None)
        await asyncio.wait_for(done, timeout=10)
        if len(rounds) >= 50:
            return  # went on after the cancel: lost


async def run_loop(check: bool) -> tuple[asyncio.Task[None], list[int]]:
    rounds: list[int] = []
    lose = asyncio.Event()
    task = asyncio.create_task(loop_awaiting_wait_for(rounds, check, lose))
    await lose.wait()
    await asyncio.wait([task], timeout=5)
    assert task.done()
    return task, rounds


async def test_a_loop_that_checks_ends_cancelled_even_when_wait_for_lost_the_cancel() -> None:
    task, rounds = await run_loop(check=True)
    assert task.cancelled()
    assert len(rounds) <= 2


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps the cancel from 3.12 on")
async def test_without_the_check_the_cancel_is_lost_on_3_11() -> None:
    """What the check is for: the same loop without it goes on, cancelled in name only."""
    task, rounds = await run_loop(check=False)
    assert not task.cancelled() and len(rounds) == 50


async def test_a_task_not_cancelled_goes_on() -> None:
    async def body() -> int:
        raise_if_cancelled()
        await asyncio.sleep(0)
        raise_if_cancelled()
        return 7

    assert await asyncio.create_task(body()) == 7
    raise_if_cancelled()  # the test's own task is not cancelled either


async def test_a_cancel_that_was_delivered_and_handled_does_not_count_again() -> None:
    """A task that catches a cancel and says so (`uncancel`) goes on; asyncio.timeout does this."""

    async def body() -> str:
        try:
            async with asyncio.timeout(0.001):
                await asyncio.sleep(10)
        except TimeoutError:
            pass
        raise_if_cancelled()
        return "went on"

    assert await asyncio.create_task(body()) == "went on"


async def test_cancel_all_ends_what_ends_and_names_what_does_not(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def obeys() -> None:
        await asyncio.sleep(10)

    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("while stopping") from None

    async def deaf() -> None:  # swallows every cancel, as a lost one looks from outside
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass

    async def finished() -> str:
        return "done"

    tasks = [asyncio.create_task(f(), name=f.__name__) for f in (obeys, fails_on_cancel, deaf, finished)]
    await asyncio.sleep(0)
    left = await cancel_all(tasks, grace=0.2)
    assert [t.get_name() for t in left] == ["deaf"]
    assert [r.getMessage() for r in caplog.records if r.name == "logcast.loop"] == [
        "deaf did not end when cancelled; stopping without it"
    ]
    assert tasks[0].cancelled()
    assert isinstance(tasks[1].exception(), RuntimeError)
    assert tasks[3].result() == "done"  # it had ended: not cancelled
    release.set()
    await tasks[2]


async def test_cancel_all_of_nothing_running_returns_at_once() -> None:
    assert await cancel_all([], grace=100) == []


async def test_cancel_all_cancels_again_a_task_whose_first_cancel_was_lost() -> None:
    lost = 0

    async def loses_the_first() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost += 1  # as wait_for on 3.11: the cancel is gone, the task goes on

    task = asyncio.create_task(loses_the_first())
    await asyncio.sleep(0)
    assert await cancel_all([task], grace=5) == []
    assert task.cancelled() and lost == 1


async def test_what_a_stopped_task_raised_is_taken_even_if_it_ended_before() -> None:
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(str(context.get("message"))))

    async def dies() -> None:
        raise RuntimeError("died earlier")

    async def dies_later(release: asyncio.Event) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await release.wait()  # ends after the grace, and then fails
            raise RuntimeError("died after the grace") from None

    release = asyncio.Event()
    tasks = [asyncio.create_task(dies()), asyncio.create_task(dies_later(release))]
    await asyncio.sleep(0)
    left = await cancel_all(tasks, grace=0.1)
    assert left == [tasks[1]]
    release.set()
    await asyncio.wait(left)
    await asyncio.sleep(0)  # the done callbacks
    del tasks, left
    gc.collect()
    assert not [m for m in reported if "never retrieved" in m], reported
    loop.set_exception_handler(None)
