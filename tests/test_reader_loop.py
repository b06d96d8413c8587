"""PipeReader reading on the event loop: ordinary output there, floods and stalls on its
thread, and never a line lost, repeated or out of order across the hand-overs.

The loop runs in a thread of the test, so that the test can hold it (a stalled loop) and
look at it from outside; the guard's ticks are the test's own calls to `check()`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import logcast.capture.reader as reader_module
from logcast.capture.reader import INLINE_MAX, LoopGuard, PipeReader
from logcast.types import Level, Lines
from tests.test_reader import WAIT, Pipe, ThreadsSeen

LOOP_THREAD = "test-loop"


class LoopThread:
    """An event loop (asyncio's or uvloop's) running in a thread of its own."""

    def __init__(self, kind: str) -> None:
        if kind == "uvloop":
            uvloop = pytest.importorskip("uvloop")
            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=LOOP_THREAD, daemon=True)
        self.thread.start()

    def call(self, fn: Callable[[], Any]) -> Any:
        """`fn()` run on the loop; its result."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(WAIT)

    def hold(self) -> threading.Event:
        """Stall the loop until the returned event is set (as a callback that blocks would)."""
        gate = threading.Event()
        held = threading.Event()

        def block() -> None:
            held.set()
            gate.wait(WAIT)

        self.loop.call_soon_threadsafe(block)
        assert held.wait(WAIT)
        return gate

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> Iterator[LoopThread]:
    running = LoopThread(request.param)
    yield running
    running.stop()


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close()


class QuietGuard(LoopGuard):
    """A guard whose thread never ticks: the test calls `check()` itself."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        super().__init__(interval=0.0, sleep=lambda _: self._stop.wait())

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def guard() -> Iterator[QuietGuard]:
    g = QuietGuard()
    yield g
    g.close()


def on_loop_reader(
    pipe: Pipe, collect: Callable[[float, Lines], None], loop: LoopThread, guard: LoopGuard, **kw: Any
) -> PipeReader:
    kw.setdefault("may_wait", lambda: False)
    reader = PipeReader(pipe.r, collect, on_lines_now=collect, loop=loop.loop, guard=guard, name="r", **kw)
    reader.start()
    return reader


def write_all(pipe: Pipe, data: bytes) -> None:
    """Write all of `data`: a blocking write to a pipe may return early (a signal)."""
    view = memoryview(data)
    while view:
        view = view[os.write(pipe._w, view) :]


def watched(loop: LoopThread, fd: int) -> bool:
    """The loop watches `fd` (asking takes the watch away)."""
    return bool(loop.call(lambda: loop.loop.remove_reader(fd)))


def eventually(predicate: Callable[[], bool]) -> bool:
    """Whether `predicate()` came true within `WAIT` (looked at every 10 ms)."""
    for _ in range(int(WAIT / 0.01)):
        if predicate():
            return True
        threading.Event().wait(0.01)
    return predicate()


def closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno == errno.EBADF
    return False


def test_ordinary_output_is_read_and_handed_on_by_the_loop(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard
) -> None:
    """Each write is read by the loop when it says the pipe is readable, and handed on
    there, not by a thread; at EOF the fd is closed and the loop watches it no more."""
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard)
    for i in range(50):
        pipe.write(b"line %d\n" % i)
        collect.wait_for(lambda lines, i=i: len(lines) == i + 1)
    assert reader.on_loop
    pipe.close()
    assert reader.join(WAIT)
    assert collect.threads == [LOOP_THREAD] * 50
    assert [text for text, _, _ in collect.lines] == [f"line {i}" for i in range(50)]
    assert closed(pipe.r)
    assert not watched(loop, pipe.r)


def test_a_partial_line_read_on_the_loop_gets_its_idle_flush(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard
) -> None:
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard, idle_flush=0.05)
    pipe.write(b"prompt> ")
    collect.wait_for(lambda lines: lines == [("prompt> ", Level.INFO, True)])
    pipe.write(b"yes\n")
    collect.wait_for(lambda lines: len(lines) == 2)
    pipe.close()
    assert reader.join(WAIT)
    assert collect.threads == ["r-frame", LOOP_THREAD]


def test_a_flood_goes_to_the_reader_thread_and_calm_output_back_to_the_loop(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard
) -> None:
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard, calm=0.05)
    pipe.write(b"before\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    flood = b"".join(b"flood %06d %s\n" % (i, b"x" * 80) for i in range(40_000))  # 3.6 MB at once
    write_all(pipe, flood)
    collect.wait_for(lambda lines: len(lines) == 40_001)
    assert set(collect.threads[1:]) - {LOOP_THREAD}, "the flood was framed on the loop"
    seen = len(collect.threads)
    # calm again: once `calm` passed, a read hands the reads back to the loop
    for i in range(20):
        threading.Event().wait(0.01)
        pipe.write(b"after %d\n" % i)
        collect.wait_for(lambda lines, i=i: len(lines) == 40_002 + i)
    assert reader.on_loop
    assert collect.threads[-1] == LOOP_THREAD
    assert LOOP_THREAD in collect.threads[seen:]
    pipe.close()
    assert reader.join(WAIT)
    texts = [text for text, _, _ in collect.lines]
    assert texts == ["before"] + [f"flood {i:06d} {'x' * 80}" for i in range(40_000)] + [
        f"after {i}" for i in range(20)
    ]


def test_a_read_that_fills_the_loops_buffer_gives_the_reads_to_the_thread(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard
) -> None:
    """More than `INLINE_MAX` waiting at once is a burst: the loop frames what it read and
    the next reads are the thread's (pace_above is out of reach, so only the size says so)."""
    collect = ThreadsSeen()
    gate = loop.hold()  # let the burst gather in the pipe
    on_loop = on_loop_reader(pipe, collect, loop, guard, pace_above=1e12, calm=3600)
    burst = b"".join(b"%06d %s\n" % (i, b"y" * 90) for i in range(3 * INLINE_MAX // 98))
    write_all(pipe, burst)
    gate.set()
    count = burst.count(b"\n")
    collect.wait_for(lambda lines: len(lines) == count)
    assert collect.threads[0] == LOOP_THREAD
    assert not on_loop.on_loop
    assert set(collect.threads[1:]) <= {"r-read", "r-frame"} and collect.threads[1:]
    pipe.close()
    assert on_loop.join(WAIT)
    assert [text for text, _, _ in collect.lines] == [f"{i:06d} {'y' * 90}" for i in range(count)]


def back_on_the_loop_after_calm(pipe: Pipe, collect: ThreadsSeen, reader: PipeReader) -> None:
    """Once `calm` (0.2 s at most here) passed, the thread reads one more line and gives
    the reads back: the next line is the loop's. Then EOF."""
    seen = len(collect.lines)
    threading.Event().wait(0.25)
    pipe.write(b"calm\n")
    collect.wait_for(lambda lines: len(lines) == seen + 1)
    assert eventually(lambda: reader.on_loop)
    pipe.write(b"on the loop\n")
    collect.wait_for(lambda lines: len(lines) == seen + 2)
    pipe.close()
    assert reader.join(WAIT)
    assert collect.threads[-1] == LOOP_THREAD
    assert [text for text, _, _ in collect.lines][-2:] == ["calm", "on the loop"]


def test_a_sink_that_may_hold_gets_its_lines_from_the_framer_thread(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard
) -> None:
    """While the sink may hold, and for `calm` after, the thread keeps the reads (not a
    hand-over per chunk); then the loop reads again."""
    collect = ThreadsSeen()
    holding = [False]
    reader = on_loop_reader(pipe, collect, loop, guard, may_wait=lambda: holding[0], calm=0.2)
    pipe.write(b"one\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    holding[0] = True
    for i in range(5):
        pipe.write(b"held %d\n" % i)
        collect.wait_for(lambda lines, i=i: len(lines) == i + 2)
        assert not reader.on_loop
    holding[0] = False
    pipe.write(b"calm?\n")  # within `calm` of the last held read: still the thread's
    collect.wait_for(lambda lines: len(lines) == 7)
    assert not reader.on_loop
    back_on_the_loop_after_calm(pipe, collect, reader)
    assert collect.threads[0] == LOOP_THREAD
    assert set(collect.threads[1:8]) <= {"r-read", "r-frame"}


def test_a_busy_loop_leaves_the_reads_to_the_thread(pipe: Pipe, loop: LoopThread, guard: QuietGuard) -> None:
    """While `loop_busy()` says a read would wait for the loop's turn, the thread reads
    (and frames ordinary output itself); `calm` after it says otherwise, the loop again."""
    collect = ThreadsSeen()
    busy = [False]
    reader = on_loop_reader(pipe, collect, loop, guard, loop_busy=lambda: busy[0], calm=0.1)
    pipe.write(b"one\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    busy[0] = True
    for i in range(4):
        if i == 3:
            threading.Event().wait(0.15)  # `calm` has passed, but the loop is still busy
        pipe.write(b"busy %d\n" % i)
        collect.wait_for(lambda lines, i=i: len(lines) == i + 2)
        assert not reader.on_loop
    busy[0] = False
    back_on_the_loop_after_calm(pipe, collect, reader)
    # the loop read "busy 0" (then gave the reads away); the thread framed the rest itself
    assert collect.threads == [LOOP_THREAD, LOOP_THREAD, "r-read", "r-read", "r-read", "r-read", LOOP_THREAD]


def test_the_guard_thread_takes_the_reads_of_a_held_loop(pipe: Pipe, loop: LoopThread) -> None:
    """The real guard, ticking on its own: a child that writes four pipes' worth while the
    loop is held finishes while the loop is still held."""
    guard = LoopGuard()  # GUARD_INTERVAL
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard)
    pipe.write(b"first\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    gate = loop.hold()
    writer = threading.Thread(target=write_all, args=(pipe, (b"q" * 99 + b"\n") * 40_000))
    writer.start()
    writer.join(WAIT)
    assert not writer.is_alive(), "the child waited for the held loop"
    collect.wait_for(lambda lines: len(lines) == 40_001)
    assert not gate.is_set()
    gate.set()
    pipe.close()
    assert reader.join(WAIT)


def test_a_stalled_loop_gives_the_reads_to_the_reader_thread(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard, caplog: pytest.LogCaptureFixture
) -> None:
    """The guard finds the pipe readable and unread at two ticks: the reader thread reads
    while the loop is still held, so a child writing more than the pipe holds goes on."""
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard)
    pipe.write(b"first\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    gate = loop.hold()
    pipe.write(b"during the stall\n")
    with caplog.at_level(logging.WARNING, logger="logcast.capture.reader"):
        guard.check()  # readable, unread: noted
        assert reader.on_loop
        guard.check()  # still: taken
    assert not reader.on_loop
    collect.wait_for(lambda lines: len(lines) == 2)
    writer = threading.Thread(
        target=write_all, args=(pipe, (b"z" * 99 + b"\n") * 40_000)
    )  # 4 MB, 4 pipes' worth
    writer.start()
    writer.join(WAIT)
    assert not writer.is_alive(), "the child waited for the stalled loop"
    collect.wait_for(lambda lines: len(lines) == 40_002)
    assert not gate.is_set()  # all of it while the loop was held
    assert LOOP_THREAD not in collect.threads[1:]
    assert "left its pipe unread" in caplog.text
    gate.set()
    pipe.close()
    assert reader.join(WAIT)
    loop.call(lambda: None)  # the loop may have watched it still: then it closes it, first
    assert closed(pipe.r)
    assert not watched(loop, pipe.r)


def test_a_busy_loop_that_reads_is_not_taken_from(pipe: Pipe, loop: LoopThread, guard: QuietGuard) -> None:
    """Readable at each tick is not a stall if the loop read in between."""
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard)
    for i in range(5):
        gate = loop.hold()
        pipe.write(b"line %d\n" % i)
        guard.check()
        gate.set()
        collect.wait_for(lambda lines, i=i: len(lines) == i + 1)
        assert reader.on_loop
    guard.check()  # nothing to read: nothing noted
    guard.check()
    assert reader.on_loop
    pipe.close()
    assert reader.join(WAIT)
    assert collect.threads == [LOOP_THREAD] * 5


def test_eof_during_a_stall_closes_the_fd_once_the_loop_let_go_of_it(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard
) -> None:
    """The thread that took the reads from a held loop reads to EOF; the loop still
    watches the fd, so the fd is closed on the loop, after the watch is gone: a pipe
    opened meanwhile under the same number is not watched for this reader."""
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard)
    pipe.write(b"a\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    gate = loop.hold()
    pipe.write(b"b\n")
    guard.check()
    guard.check()
    collect.wait_for(lambda lines: len(lines) == 2)
    pipe.close()
    assert reader.join(WAIT)  # every line handed on, by the thread
    assert not closed(pipe.r)  # the loop, held, still watches it
    gate.set()
    loop.call(lambda: None)
    assert closed(pipe.r)
    assert not watched(loop, pipe.r)
    assert [text for text, _, _ in collect.lines] == ["a", "b"]


def test_a_loop_that_stopped_has_its_watch_taken_and_the_fd_closed_by_the_thread(
    pipe: Pipe, guard: QuietGuard, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop that stopped (not closed) runs no callback: the thread that took its reads
    removes the watch itself at EOF and closes the fd, which would otherwise stay open
    for as long as the process lives. A stopped loop is no stall to warn about."""
    running = LoopThread("asyncio")
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, running, guard)
    pipe.write(b"a\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(WAIT)
    pipe.write(b"b\n")
    with caplog.at_level(logging.DEBUG, logger="logcast.capture.reader"):
        guard.check()
        guard.check()
    collect.wait_for(lambda lines: len(lines) == 2)
    pipe.close()
    assert reader.join(WAIT)
    assert eventually(lambda: closed(pipe.r))
    assert not running.loop.remove_reader(pipe.r)  # nobody else runs it now
    assert "left its pipe unread" not in caplog.text
    assert "event loop stopped" in caplog.text
    running.loop.close()


def test_a_loop_that_stopped_gets_the_reads_back_once_it_runs_again(pipe: Pipe, guard: QuietGuard) -> None:
    running = LoopThread("asyncio")
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, running, guard, calm=0.05)
    pipe.write(b"a\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(WAIT)
    pipe.write(b"b\n")
    guard.check()
    guard.check()
    collect.wait_for(lambda lines: len(lines) == 2)
    assert not reader.on_loop
    running.thread = threading.Thread(target=running.loop.run_forever, name=LOOP_THREAD, daemon=True)
    running.thread.start()
    try:
        back_on_the_loop_after_calm(pipe, collect, reader)
    finally:
        running.stop()


def test_a_loop_that_closed_leaves_the_reads_to_the_thread(pipe: Pipe, guard: QuietGuard) -> None:
    """Shut down under a running child: the guard gives its reads to the thread, which
    reads to EOF and closes the fd itself."""
    running = LoopThread("asyncio")
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, running, guard)
    pipe.write(b"a\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    running.stop()
    pipe.write(b"b\n")
    guard.check()
    guard.check()
    collect.wait_for(lambda lines: len(lines) == 2)
    pipe.close()
    assert reader.join(WAIT)
    assert closed(pipe.r)


def test_started_on_a_closed_loop_the_thread_reads(pipe: Pipe, guard: QuietGuard) -> None:
    closed_loop = asyncio.new_event_loop()
    closed_loop.close()
    collect = ThreadsSeen()
    reader = PipeReader(
        pipe.r, collect, on_lines_now=collect, may_wait=lambda: False, loop=closed_loop, guard=guard
    )
    reader.start()
    assert not reader.on_loop
    pipe.write(b"a\n")
    pipe.close()
    assert reader.join(WAIT)
    assert [text for text, _, _ in collect.lines] == ["a"]


def test_a_pipe_the_kernel_would_not_enlarge_is_read_by_the_thread(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 64 KiB pipe fills while the loop is busy for a moment: such a pipe, a pty or a
    file is read by the thread alone, as is a reader without `on_lines_now`."""
    monkeypatch.setattr(reader_module, "_raise_pipe_size", lambda fd: 64 * 1024)
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard)
    assert not reader.on_loop
    pipe.write(b"a\n")
    pipe.close()
    assert reader.join(WAIT)
    assert collect.threads == ["r-read"]
    monkeypatch.undo()
    other = Pipe()
    plain = PipeReader(other.r, collect, loop=loop.loop, guard=guard, name="p")
    plain.start()
    assert not plain.on_loop
    other.close()
    assert plain.join(WAIT)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chunks_keep_their_order_across_hand_overs(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard, seed: int
) -> None:
    """Bursts, trickles, a sink that holds now and then, a loop held now and then and
    taken from: every hand-over point at once, and each line arrives once, in order."""
    rng = random.Random(seed)
    collect = ThreadsSeen()
    # no flood by rate (the test writes faster than any child), so that the loop reads too:
    # bursts over its buffer, the sink and the stalls hand over
    reader = on_loop_reader(
        pipe, collect, loop, guard, may_wait=lambda: rng.random() < 0.1, calm=0.0, pace_above=1e12
    )
    n = 0
    for _ in range(300):
        action = rng.random()
        if action < 0.05:
            gate = loop.hold()
            pipe.write(b"%07d\n" % n)
            n += 1
            guard.check()
            guard.check()
            gate.set()
        elif action < 0.2:
            count = rng.randrange(100, 3000)
            write_all(pipe, b"".join(b"%07d %s\n" % (i, b"w" * 60) for i in range(n, n + count)))
            n += count
        else:
            pipe.write(b"%07d\n" % n)
            n += 1
    pipe.close()
    assert reader.join(WAIT)
    numbers = [int(text[:7]) for text, _, _ in collect.lines]
    assert numbers == list(range(n))
    # both sides read (who frames what the loop read depends on the framer's pace)
    assert reader._loop_reads > 0
    assert set(collect.threads) & {"r-read", "r-frame"}


def test_a_reader_that_cannot_be_guarded_reads_on_its_thread(pipe: Pipe, loop: LoopThread) -> None:
    class BrokenGuard(LoopGuard):
        def add(self, reader: PipeReader) -> None:
            raise RuntimeError("can't start new thread")

    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, BrokenGuard())
    assert not reader.on_loop
    pipe.write(b"a\n")
    pipe.close()
    assert reader.join(WAIT)
    assert collect.threads == ["r-read"]


def test_a_reader_that_failed_to_start_is_not_guarded(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard
) -> None:
    reader = PipeReader(
        pipe.r, ThreadsSeen(), on_lines_now=ThreadsSeen(), loop=loop.loop, guard=guard, name="r"
    )

    def refuse() -> None:
        raise RuntimeError("can't start new thread")

    reader._reader.start = refuse  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        reader.start()
    assert not guard._readers
    assert not watched(loop, pipe.r)
    os.close(pipe.r)  # the caller's, as process.py does
    assert reader.join(WAIT)


async def test_the_supervisors_readers_read_on_its_loop(pipe: Pipe) -> None:
    """`pipe_readers` made on the running loop gives its readers that loop."""
    from logcast.supervise.process import pipe_readers

    collect = ThreadsSeen()
    reader = pipe_readers()(pipe.r, collect, "p", on_lines_now=collect, may_wait=lambda: False)
    reader.start()
    assert isinstance(reader, PipeReader) and reader.on_loop
    pipe.write(b"a\n")
    for _ in range(int(WAIT / 0.01)):
        if collect.lines:
            break
        await asyncio.sleep(0.01)
    assert collect.threads == [threading.current_thread().name]
    pipe.close()
    await asyncio.wait_for(reader.wait(), WAIT)


def test_the_guard_thread_runs_only_while_a_reader_uses_the_loop(pipe: Pipe, loop: LoopThread) -> None:
    guard = LoopGuard(interval=0.005)
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard)
    assert any(t.name == "logcast-loop-guard" for t in threading.enumerate())
    pipe.write(b"a\n")
    pipe.close()
    assert reader.join(WAIT)
    assert eventually(lambda: not guard._running)


def test_a_loop_that_stalls_again_and_again_is_warned_of_once(
    pipe: Pipe, loop: LoopThread, guard: QuietGuard, caplog: pytest.LogCaptureFixture
) -> None:
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard, calm=0.0)
    with caplog.at_level(logging.DEBUG, logger="logcast.capture.reader"):
        for i in range(3):
            gate = loop.hold()
            pipe.write(b"stall %d\n" % i)
            guard.check()
            guard.check()
            collect.wait_for(lambda lines, i=i: len(lines) == 2 * i + 1)
            gate.set()
            loop.call(lambda: None)  # the loop is back
            pipe.write(b"after %d\n" % i)  # the thread reads it and gives the reads back
            collect.wait_for(lambda lines, i=i: len(lines) == 2 * i + 2)
            assert eventually(lambda: reader.on_loop)
    pipe.close()
    assert reader.join(WAIT)
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "left its pipe unread" in r.message
    ]
    again = [r for r in caplog.records if r.levelno == logging.DEBUG and "unread again" in r.message]
    assert len(warnings) == 1 and len(again) == 2


def test_the_guard_ticks_slowly_while_no_pipe_has_output(pipe: Pipe, loop: LoopThread) -> None:
    """An idle supervisor's guard: after `quiet` without output it ticks every
    `idle_interval`; a pipe with output brings the short ticks back at once."""
    intervals: list[float] = []
    ticked = threading.Semaphore(0)
    proceed = threading.Semaphore(0)

    def sleep(seconds: float) -> None:  # the test's clock: one tick at a time
        intervals.append(seconds)
        ticked.release()
        assert proceed.acquire(timeout=WAIT)

    guard = LoopGuard(interval=0.02, sleep=sleep, idle_interval=0.25, quiet=0.1)  # quiet: 5 ticks
    collect = ThreadsSeen()
    reader = on_loop_reader(pipe, collect, loop, guard)

    def tick() -> float:
        proceed.release()
        assert ticked.acquire(timeout=WAIT)
        return intervals[-1]

    assert ticked.acquire(timeout=WAIT) and intervals == [0.02]
    for _ in range(6):  # the new reader counts as output once, then five quiet ticks
        tick()
    assert intervals[-1] == 0.25
    assert tick() == 0.25
    pipe.write(b"a\n")  # read by the loop, or still readable: either is output
    collect.wait_for(lambda lines: len(lines) == 1)
    assert tick() == 0.02
    assert reader.on_loop
    pipe.close()
    assert reader.join(WAIT)
    proceed.release()  # the guard ends: nobody left to watch
    assert eventually(lambda: not guard._running)
