"""PipeReader on real pipes, real ptys and real child processes."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

import pytest

import logcast.capture.reader as reader_module
from logcast.capture.framing import Framed, LineFramer
from logcast.capture.reader import READ_SIZE, PipeReader
from logcast.hub import Hub
from logcast.types import Level, Lines, Stream
from tests.fakes import MemoryStore

Line = tuple[str, Level, bool]

PYTHON = sys.executable
WAIT = 30.0  # seconds a test waits for something that should happen at once; a guard, not a measure
INFO, WARN, ERR = Level.INFO, Level.WARNING, Level.ERROR


class Collector:
    """An `on_lines` callback that records every call and lets a test wait for lines."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, Lines]] = []
        self._cond = threading.Condition()

    def __call__(self, timestamp: float, lines: Lines) -> None:
        with self._cond:
            self.calls.append((timestamp, lines))
            self._cond.notify_all()

    @property
    def lines(self) -> list[Line]:
        with self._cond:
            return [line for _, lines in self.calls for line in lines.rows()]

    def wait_for(self, predicate: Callable[[list[Line]], bool]) -> None:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: predicate([ln for _, lines in self.calls for ln in lines.rows()]), WAIT
            )
        assert ok, f"lines never matched; got {self.lines!r}"


class Pipe:
    """os.pipe() whose write end the test closes once (a second close could hit a reused fd)."""

    def __init__(self) -> None:
        self.r, self._w = os.pipe()
        self._closed = False

    def write(self, data: bytes) -> None:
        os.write(self._w, data)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._w)


def flood_until_stalled(pipe: Pipe, deadline: float, settled: Callable[[], bool]) -> tuple[int, bytes]:
    """Write lines of 100 bytes without blocking until the pipe has stayed full for 0.5 s
    and `settled()` (the reader is at the bound the test is about; a reader that is only
    slow, on a loaded machine, leaves the pipe full as well), or until `deadline`: (bytes
    written, the rest of the last block, to be written once the reader moves again)."""
    os.set_blocking(pipe._w, False)
    written = 0
    stalled_since = None
    pending = b""
    try:
        while time.monotonic() < deadline:
            try:
                pending = pending or (b"x" * 99 + b"\n") * 100
                n = os.write(pipe._w, pending)
                pending = pending[n:]  # a partial write is finished by the next ones
                written += n
                stalled_since = None
            except BlockingIOError:  # the pipe is full: has the reader stopped for good?
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.5 and settled():
                    break
                time.sleep(0.01)
    finally:
        os.set_blocking(pipe._w, True)
    return written, pending


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close()  # the read end belongs to the reader, which closes it


def test_lines_arrive_with_the_time_of_their_chunk(pipe: Pipe) -> None:
    collect = Collector()
    reader = PipeReader(pipe.r, collect, name="stdout")
    before = time.time()
    reader.start()
    pipe.write(b"INFO: one\nERROR: two\n\n")
    pipe.close()
    assert reader.join(WAIT)
    after = time.time()
    assert collect.lines == [("INFO: one", INFO, False), ("ERROR: two", ERR, False), ("", INFO, False)]
    assert all(before <= ts <= after for ts, _ in collect.calls)
    assert all(lines for _, lines in collect.calls)  # never called with nothing
    assert reader.bytes_read == 22


def test_partial_line_is_flushed_after_idle_time(pipe: Pipe) -> None:
    collect = Collector()
    reader = PipeReader(pipe.r, collect, idle_flush=0.05)
    reader.start()
    pipe.write(b"Password: ")
    collect.wait_for(lambda lines: lines == [("Password: ", INFO, True)])
    pipe.write(b"accepted\n")
    collect.wait_for(lambda lines: len(lines) == 2)
    pipe.close()
    assert reader.join(WAIT)
    assert collect.lines == [("Password: ", INFO, True), ("accepted", INFO, False)]


def test_partial_line_is_flushed_at_eof(pipe: Pipe) -> None:
    collect = Collector()
    reader = PipeReader(pipe.r, collect, idle_flush=3600)
    reader.start()
    pipe.write(b"complete\nno newline at the end")
    pipe.close()
    assert reader.join(WAIT)
    assert collect.lines == [("complete", INFO, False), ("no newline at the end", INFO, True)]


def test_a_flushed_partial_line_has_the_time_its_bytes_were_read(pipe: Pipe) -> None:
    """A review: "Password: " written at +0.000 was stamped +0.250, when the idle flush
    handed it on; a line's time is when logcast read its bytes (SPEC), at EOF too."""
    delivered: list[tuple[float, float]] = []  # (stamp, when handed on)
    collect = Collector()

    def on_lines(timestamp: float, lines: Lines) -> None:
        delivered.append((timestamp, time.time()))
        collect(timestamp, lines)

    reader = PipeReader(pipe.r, on_lines, idle_flush=0.2)
    reader.start()
    pipe.write(b"Password: ")
    collect.wait_for(lambda lines: lines == [("Password: ", INFO, True)])
    stamp, handed_on = delivered[0]
    assert handed_on - stamp >= 0.2  # read, then flushed `idle_flush` later
    pipe.write(b"tail")
    while reader.bytes_read < len(b"Password: tail"):
        time.sleep(0.001)
    read_by = time.time()
    pipe.close()
    assert reader.join(WAIT)
    assert collect.lines[-1] == ("tail", INFO, True)
    assert delivered[-1][0] <= read_by  # the EOF flush too


def test_character_split_across_writes_survives_an_idle_flush(pipe: Pipe) -> None:
    collect = Collector()
    reader = PipeReader(pipe.r, collect, idle_flush=0.02)
    reader.start()
    pipe.write(b"caf\xc3")
    collect.wait_for(lambda lines: lines == [("caf", INFO, True)])
    pipe.write(b"\xa9 ok\n")
    pipe.close()
    assert reader.join(WAIT)
    assert collect.lines == [("caf", INFO, True), ("é ok", INFO, False)]


def test_a_line_that_keeps_growing_is_shown_while_it_grows(pipe: Pipe) -> None:
    """llama.cpp's loader prints a dot at a time on one line, never pausing for the idle
    flush: the pending dots are handed on `idle_flush` s after they began waiting, again
    and again, not only at the line's end."""
    collect = Collector()
    reader = PipeReader(pipe.r, collect, idle_flush=0.1)
    reader.start()
    dots = 0
    started = time.monotonic()
    while time.monotonic() - started < WAIT:
        pipe.write(b".")
        dots += 1
        time.sleep(0.005)  # far less than idle_flush: the writer never pauses for it
        if len(collect.lines) >= 3:
            break
    shown = collect.lines
    pipe.write(b"\n")
    pipe.close()
    assert reader.join(WAIT)
    assert len(shown) >= 3 and all(partial for _, _, partial in shown), shown
    lines = collect.lines
    assert all(partial for _, _, partial in lines[:-1]) and not lines[-1][2], lines
    assert "".join(text for text, _, _ in lines) == "." * dots


def test_lines_that_end_in_the_next_chunk_are_never_cut_by_the_idle_flush(pipe: Pipe) -> None:
    """Every write ends in the middle of a line that the next one finishes, for many idle
    flush times: the unfinished line is a new one each time, so none is handed on early."""
    collect = Collector()
    reader = PipeReader(pipe.r, collect, idle_flush=0.03)
    reader.start()
    sent = []
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < 0.5:
        pipe.write(b"end of %d\nstart of %d, " % (i, i + 1))
        sent.append(f"start of {i}, end of {i}")
        i += 1
        time.sleep(0.002)
    pipe.write(b"end of %d\n" % i)
    sent.append(f"start of {i}, end of {i}")
    pipe.close()
    assert reader.join(WAIT)
    assert collect.lines[0] == ("end of 0", INFO, False)
    assert [text for text, _, _ in collect.lines[1:]] == sent[1:]
    assert not any(partial for _, _, partial in collect.lines)


def test_child_process_stdout_and_stderr() -> None:
    script = (
        "import sys\n"
        "print('INFO:     Started server process [1]')\n"
        "print('WARNING: disk almost full', file=sys.stderr)\n"
        "sys.stdout.write('progress 10%\\rprogress 100%\\n')\n"
        "sys.stdout.write('bye')\n"
    )
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    out, err = Collector(), Collector()
    readers = [PipeReader(out_r, out, name="stdout"), PipeReader(err_r, err, name="stderr")]
    for reader in readers:
        reader.start()
    try:
        proc = subprocess.Popen([PYTHON, "-c", script], stdout=out_w, stderr=err_w)
    finally:
        os.close(out_w)
        os.close(err_w)
    assert proc.wait(WAIT) == 0
    assert all(reader.join(WAIT) for reader in readers)
    assert out.lines == [
        ("INFO:     Started server process [1]", INFO, False),
        ("progress 10%", INFO, False),
        ("progress 100%", INFO, False),
        ("bye", INFO, True),
    ]
    assert err.lines == [("WARNING: disk almost full", WARN, False)]


def test_pty_child_is_read_to_eof() -> None:
    master, slave = os.openpty()
    collect = Collector()
    reader = PipeReader(master, collect, name="pty")
    reader.start()
    script = "print('INFO: hello from a tty'); print('Traceback (most recent call last):'); print('done')"
    try:
        proc = subprocess.Popen([PYTHON, "-c", script], stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    assert proc.wait(WAIT) == 0
    assert reader.join(WAIT)  # the master's read fails with EIO once the child side is closed
    # the tty turns "\n" into "\r\n"; framing makes lines of it all the same
    assert collect.lines == [
        ("INFO: hello from a tty", INFO, False),
        ("Traceback (most recent call last):", ERR, False),
        ("done", INFO, False),
    ]


def test_flood_from_a_child_arrives_complete_and_in_order() -> None:
    n = 100_000
    script = (
        f"import sys\nw = sys.stdout.write\nfor i in range({n}):\n    w(f'line {{i}} ' + 'x' * 60 + '\\n')\n"
    )
    r, w = os.pipe()
    collect = Collector()
    reader = PipeReader(r, collect)
    reader.start()
    try:
        proc = subprocess.Popen([PYTHON, "-c", script], stdout=w)
    finally:
        os.close(w)
    assert proc.wait(WAIT * 4) == 0
    assert reader.join(WAIT)
    texts = [text for text, _, partial in collect.lines if not partial]
    assert texts == [f"line {i} " + "x" * 60 for i in range(n)]
    assert reader.bytes_read == sum(len(t) + 1 for t in texts)


def test_failing_callback_is_logged_and_reading_goes_on(pipe: Pipe, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Line] = []
    first = threading.Event()
    done = threading.Event()

    def on_lines(timestamp: float, lines: Lines) -> None:
        if not first.is_set():
            first.set()
            raise RuntimeError("subscriber exploded")
        seen.extend(lines.rows())
        done.set()

    losses: list[str] = []
    reader = PipeReader(pipe.r, on_lines, name="fragile", on_loss=losses.append)
    with caplog.at_level(logging.ERROR, logger="logcast.capture.reader"):
        reader.start()
        pipe.write(b"first\n")
        assert first.wait(WAIT)
        pipe.write(b"second\n")
        assert done.wait(WAIT)
        pipe.close()
        assert reader.join(WAIT)
    assert seen == [("second", INFO, False)]
    assert any("fragile" in rec.getMessage() and rec.exc_info for rec in caplog.records)
    assert losses == ["1 line lost: handing them on failed (RuntimeError('subscriber exploded'))"]


async def test_wait_from_asyncio() -> None:
    r, w = os.pipe()
    collect = Collector()
    reader = PipeReader(r, collect)
    reader.start()
    try:
        proc = subprocess.Popen([PYTHON, "-c", "print('ERROR: from a child'); print('end')"], stdout=w)
    finally:
        os.close(w)
    await asyncio.wait_for(asyncio.gather(reader.wait(), reader.wait()), WAIT)
    assert proc.wait(WAIT) == 0
    assert collect.lines == [("ERROR: from a child", ERR, False), ("end", INFO, False)]
    await reader.wait()  # finished already: returns at once


async def test_wait_can_be_cancelled(pipe: Pipe) -> None:
    reader = PipeReader(pipe.r, Collector())
    reader.start()
    task = asyncio.ensure_future(reader.wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pipe.close()
    await asyncio.wait_for(reader.wait(), WAIT)


def test_wait_under_uvloop(pipe: Pipe) -> None:
    uvloop = pytest.importorskip("uvloop")
    collect = Collector()
    reader = PipeReader(pipe.r, collect)

    async def main() -> None:
        reader.start()
        pipe.write(b"INFO under uvloop\n")
        pipe.close()
        await asyncio.wait_for(reader.wait(), WAIT)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    assert collect.lines == [("INFO under uvloop", INFO, False)]


async def test_wait_before_start_is_an_error(pipe: Pipe) -> None:
    reader = PipeReader(pipe.r, Collector())
    with pytest.raises(RuntimeError):
        await reader.wait()
    os.close(pipe.r)


def test_reading_goes_on_while_lines_wait_to_be_handed_on_up_to_the_spool_bound(pipe: Pipe) -> None:
    """The reader keeps the pipe drained while the framer is held (the child does not
    wait), up to `spool_bytes`; past that the pipe fills; once the framer goes on,
    every line arrives, in order."""
    gate = threading.Event()
    collect = Collector()

    def held(timestamp: float, lines: Lines) -> None:
        gate.wait(WAIT)
        collect(timestamp, lines)

    spool = 256 * 1024
    reader = PipeReader(pipe.r, held, spool_bytes=spool)
    reader.start()
    line = b"x" * 99 + b"\n"
    written, _ = flood_until_stalled(pipe, time.monotonic() + WAIT, lambda: reader.spooled > spool // 2)
    pipe_size = 1 << 20  # the reader asks for a 1 MiB pipe
    assert written > pipe_size + spool // 2  # far more than the pipe alone holds: it was read
    # ...but bounded: the pipe, the spool (which takes any one chunk when empty, and a
    # read is up to READ_SIZE), and the one read the reader holds back
    assert written <= pipe_size + max(spool, READ_SIZE) + READ_SIZE + len(line) * 100
    assert spool // 2 < reader.spooled <= max(spool, READ_SIZE)
    gate.set()
    pipe.close()
    assert reader.join(WAIT)
    got = collect.lines
    assert len(got) == -(-written // len(line))  # a write may have ended mid-line: kept as partial
    assert all(text == "x" * 99 for text, _, partial in got if not partial)
    assert sum(len(text) + (not partial) for text, _, partial in got) == written
    assert reader.spooled == 0


def test_reads_are_paced_so_a_line_per_write_arrives_in_big_chunks(pipe: Pipe) -> None:
    """A flooding child that writes a line per `write(2)` must not cost a read, a framing
    call and a hub call per line: the reader reads at most once per `read_pace` while a
    flood keeps coming, and the lines arrive whole and in order all the same."""
    collect = Collector()
    pace = 0.05
    reader = PipeReader(pipe.r, collect, read_pace=pace, pace_above=0)  # any output is a flood
    reader.start()
    assert reader.paced  # a pipe made 1 MiB large
    started = time.monotonic()
    for i in range(3000):
        pipe.write(b"line %d\n" % i)
    writing = time.monotonic() - started
    pipe.close()
    assert reader.join(WAIT)
    assert [text for text, _, _ in collect.lines] == [f"line {i}" for i in range(3000)]
    # one chunk per pace while the writes went on, then the rest in one read, then EOF
    assert len(collect.calls) <= writing / pace + 2


def test_ordinary_output_is_read_at_once_and_only_a_flood_is_paced(pipe: Pipe) -> None:
    """Below the flood rate a line must not wait for company: no read waits. Past it
    (here: any output), reads after a trickle wait for the pace."""
    slept: list[float] = []
    collect = Collector()
    reader = PipeReader(pipe.r, collect, read_pace=0.05, sleep=slept.append)
    reader.start()
    assert reader.paced
    for i in range(50):
        pipe.write(b"line %d\n" % i)
        collect.wait_for(lambda lines, i=i: len(lines) == i + 1)  # each before the next write
    pipe.close()
    assert reader.join(WAIT)
    assert slept == []
    assert len(collect.calls) == 50

    flood_pipe = Pipe()
    flooded: list[float] = []
    flood = PipeReader(flood_pipe.r, Collector(), read_pace=0.05, pace_above=0, sleep=flooded.append)
    flood.start()
    for i in range(3):
        flood_pipe.write(b"line %d\n" % i)  # each read finds the 1 MiB pipe far from full
    flood_pipe.close()
    assert flood.join(WAIT)
    assert flooded and all(0 < wait <= 0.05 for wait in flooded)


def test_a_reader_with_no_pace_hands_on_each_write_at_once(pipe: Pipe) -> None:
    collect = Collector()
    reader = PipeReader(pipe.r, collect, read_pace=0)
    reader.start()
    for i in range(3):
        pipe.write(b"line %d\n" % i)
        collect.wait_for(lambda lines, i=i: len(lines) == i + 1)  # each before the next write
    pipe.close()
    assert reader.join(WAIT)
    assert len(collect.calls) == 3


def test_a_pty_or_a_small_pipe_is_read_at_once(pipe: Pipe, monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting between reads is safe only where a millisecond of a flood fits in the fd:
    a pty returns 4 KiB a read, and a pipe the kernel would not enlarge holds 64 KiB."""
    master, slave = os.openpty()
    tty = PipeReader(master, Collector(), read_pace=0.05)
    tty.start()
    assert not tty.paced
    os.close(slave)
    assert tty.join(WAIT)

    monkeypatch.setattr(reader_module, "PIPE_SIZE", 64 * 1024)  # as if the kernel would not enlarge it
    small = PipeReader(pipe.r, Collector(), read_pace=0.05)
    small.start()
    assert not small.paced
    pipe.close()
    assert small.join(WAIT)


def test_only_a_trickle_makes_the_next_read_wait() -> None:
    assert reader_module._short(100, READ_SIZE)  # a line in a 1 MiB pipe
    assert not reader_module._short(READ_SIZE // 2, READ_SIZE)  # half full: read on at once
    assert not reader_module._short(4096, 4096)  # all the spool had room for


def test_a_framer_that_fell_behind_takes_what_waited_in_one_piece() -> None:
    """Chunks that queued while the framer was busy are framed in one call (up to
    READ_SIZE bytes, at least one chunk), stamped when the last of them was read."""
    big = b"x" * (READ_SIZE // 2) + b"\n"  # two of them do not fit in one piece
    spool = deque([(1.0, b"a\n"), (2.0, b"b\n"), (3.0, big), (4.0, big), (5.0, b"c\n")])
    assert reader_module._take_spooled(spool) == (3.0, b"a\nb\n" + big)
    assert reader_module._take_spooled(spool) == (5.0, big + b"c\n")
    assert not spool
    huge = b"y" * (2 * READ_SIZE)
    spool = deque([(1.0, huge), (2.0, b"z\n")])
    assert reader_module._take_spooled(spool) == (1.0, huge)  # one chunk over the bound still goes
    assert reader_module._take_spooled(spool) == (2.0, b"z\n")


class ThreadsSeen(Collector):
    """A Collector that notes which thread handed each chunk on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def __call__(self, timestamp: float, lines: Lines) -> None:
        self.threads.append(threading.current_thread().name)
        super().__call__(timestamp, lines)


def test_ordinary_output_is_handed_on_by_the_reader_thread_when_the_sink_cannot_hold(pipe: Pipe) -> None:
    """One thread switch fewer per line: with a sink that says it will not wait, a small
    read outside a flood is framed and handed on by the reader thread itself; a partial
    line still gets its idle flush from the framer thread."""
    collect = ThreadsSeen()
    reader = PipeReader(
        pipe.r, collect, on_lines_now=collect, may_wait=lambda: False, idle_flush=0.05, name="r"
    )
    reader.start()
    for i in range(20):
        pipe.write(b"line %d\n" % i)
        collect.wait_for(lambda lines, i=i: len(lines) == i + 1)
    pipe.write(b"prompt> ")
    collect.wait_for(lambda lines: lines[-1] == ("prompt> ", INFO, True))
    pipe.write(b"yes\n")
    pipe.close()
    assert reader.join(WAIT)
    assert collect.threads[:20] == ["r-read"] * 20
    assert collect.threads[20] == "r-frame"  # the idle flush
    assert [text for text, _, _ in collect.lines] == [f"line {i}" for i in range(20)] + ["prompt> ", "yes"]


def test_a_sink_that_may_wait_or_a_flood_keeps_the_framer_thread(pipe: Pipe) -> None:
    """`on_lines` may block only where the reader does not wait for it: when the sink
    might hold (`may_wait()`), in a flood, or without `on_lines_now`, the framer thread
    hands the lines on."""
    for kw in ({"may_wait": lambda: True}, {"pace_above": 0}, {"no_now": True}):
        p = Pipe()
        collect = ThreadsSeen()
        now = None if kw.pop("no_now", False) else collect
        reader = PipeReader(p.r, collect, on_lines_now=now, name="r", **kw)  # type: ignore[arg-type]
        reader.start()
        for i in range(5):
            p.write(b"line %d\n" % i)
            collect.wait_for(lambda lines, i=i: len(lines) == i + 1)
        p.close()
        assert reader.join(WAIT)
        assert set(collect.threads) == {"r-frame"}, kw


def test_chunks_keep_their_order_when_the_sink_holds_now_and_then(pipe: Pipe) -> None:
    """While the framer thread is held with a chunk, what comes meanwhile is spooled
    behind it, even when the sink would let the reader hand it on: one thread at a time
    frames, and no line overtakes another."""
    import random

    rng = random.Random(7)
    collect = ThreadsSeen()

    def slow(timestamp: float, lines: Lines) -> None:
        if threading.current_thread().name.endswith("-frame"):
            time.sleep(0.002)  # a held framer thread (a test thread, not the event loop)
        collect(timestamp, lines)

    reader = PipeReader(pipe.r, slow, on_lines_now=slow, may_wait=lambda: rng.random() < 0.3, name="r")
    reader.start()
    for i in range(2000):
        pipe.write(b"line %d\n" % i)
        if i % 50 == 0:
            time.sleep(0.001)
    pipe.close()
    assert reader.join(WAIT)
    assert [text for text, _, _ in collect.lines] == [f"line {i}" for i in range(2000)]
    assert {"r-read", "r-frame"} <= set(collect.threads)


def test_framing_that_fails_on_the_reader_thread_drops_lines_but_reading_goes_on(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    """A framer bug met on the reader thread ends framing as it would on the framer
    thread: logged, later lines dropped, the pipe still drained, `join` returns."""

    class Broken(LineFramer):
        calls = 0

        def feed(self, data: bytes) -> Framed:
            Broken.calls += 1
            if Broken.calls == 2:
                raise RuntimeError("framer bug")
            return super().feed(data)

    collect = Collector()
    losses: list[str] = []
    reader = PipeReader(pipe.r, collect, on_lines_now=collect, may_wait=lambda: False, on_loss=losses.append)
    reader._framer = Broken()
    reader.start()
    pipe.write(b"first\n")
    collect.wait_for(lambda lines: len(lines) == 1)
    chunk = (b"y" * 1023 + b"\n") * 100
    with caplog.at_level(logging.ERROR, logger="logcast.capture.reader"):
        pipe.write(b"second\n")
        # 4 MiB, four times the pipe: a writer that a stopped reader would block for good
        writer = threading.Thread(target=lambda: [pipe.write(chunk) for _ in range(40)], daemon=True)
        writer.start()
        writer.join(WAIT)
        assert not writer.is_alive()
        pipe.close()
        assert reader.join(WAIT)
        reader._reader.join(WAIT)  # the framer ended first: the reader drains to EOF
    assert reader.bytes_read == len(b"first\nsecond\n") + 40 * len(chunk)
    assert collect.lines == [("first", INFO, False)]
    assert "framer bug" in caplog.text
    assert losses == [
        "capture failed (RuntimeError('framer bug')): this stream's output is dropped from now on"
    ]


def test_the_reader_thread_is_never_held_by_the_store(pipe: Pipe) -> None:
    """`may_wait()` is a look at one moment: the process's other stream may fill the
    memory tail right after it said no. The reader thread's own lines then go in without
    waiting for the store (the tail goes past its bounds by that chunk), later reads go
    through the framer thread, which is held, and the pipe stays drained."""
    hub = Hub(MemoryStore(), memory_lines=10)  # no writer running: the store stays behind
    burst = Lines([f"err {i}" for i in range(20)], [INFO] * 20, [False] * 20)
    injected = threading.Event()

    def may_wait() -> bool:
        held = hub.would_hold("p")
        if not held and not injected.is_set():
            injected.set()  # stderr's thread hands on a burst at this very moment
            hub.lines("p", 1, Stream.STDERR, time.time(), burst)
        return held

    reader = PipeReader(
        pipe.r,
        lambda ts, lines: hub.lines("p", 1, Stream.STDOUT, ts, lines),
        on_lines_now=lambda ts, lines: hub.lines("p", 1, Stream.STDOUT, ts, lines, hold=False),
        may_wait=may_wait,
        name="p-stdout",
    )
    reader.start()
    pipe.write(b"hello\n")
    # The reader asks `may_wait()` of a small read only: let it read "hello" alone before the
    # flood comes (a reader scheduled late would find both in one read, and never ask).
    assert injected.wait(WAIT), "the reader did not read the first line alone"
    chunk = (b"x" * 99 + b"\n") * 1000
    writer = threading.Thread(target=lambda: [pipe.write(chunk) for _ in range(40)], daemon=True)
    writer.start()  # 4 MiB, four times the pipe: a reader held by the store would block it
    writer.join(WAIT)
    try:
        assert not writer.is_alive()
        assert hub.get("p").ring.first_seq == 1  # nothing was dropped: the store has nothing yet
    finally:
        hub.writer.request_stop()  # lets the held framer thread go
        pipe.close()
        assert reader.join(WAIT)
    assert hub.stats("p")["lines"] == 20 + 1 + 40 * 1000


def test_after_framing_failed_on_the_framer_thread_the_reader_does_not_frame(pipe: Pipe) -> None:
    """Between a failure on the framer thread and its end (which flushes the framer),
    the reader must not take the framer up: its lines are dropped as announced, and no
    two threads are ever in the LineFramer at once."""

    class Probe(LineFramer):
        failed = False
        inside = 0
        overlap = False

        def feed(self, data: bytes) -> Framed:
            if threading.current_thread().name.endswith("-frame") and not Probe.failed:
                Probe.failed = True
                raise RuntimeError("framer bug")
            return self._inside(super().feed, data)

        def flush(self, *, idle: bool = False) -> Framed:
            return self._inside(super().flush, idle=idle)

        def _inside(self, call: Callable[..., Framed], *args: object, **kw: object) -> Framed:
            Probe.overlap = Probe.overlap or Probe.inside > 0
            Probe.inside += 1
            try:
                return call(*args, **kw)
            finally:
                Probe.inside -= 1

    failed_logged = threading.Event()
    go_on = threading.Event()

    class Pause(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:  # the framer thread, in the window
            if record.getMessage().startswith("framer of reader"):
                failed_logged.set()
                go_on.wait(WAIT)

    delivered = ThreadsSeen()
    may = [True]
    reader = PipeReader(pipe.r, delivered, on_lines_now=delivered, may_wait=lambda: may[0], name="r")
    reader._framer = Probe()
    handler = Pause()
    log = logging.getLogger("logcast.capture.reader")
    log.addHandler(handler)
    try:
        reader.start()
        pipe.write(b"first\n")  # through the framer thread, which fails
        assert failed_logged.wait(WAIT)
        may[0] = False
        pipe.write(b"second\n")  # ordinary output, while the failure is being logged
        while reader.bytes_read < len(b"first\nsecond\n"):
            time.sleep(0.001)
        go_on.set()
        pipe.close()
        assert reader.join(WAIT)
    finally:
        go_on.set()
        log.removeHandler(handler)
    assert "second" not in [text for text, _, _ in delivered.lines]
    assert not Probe.overlap
