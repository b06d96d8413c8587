"""One file descriptor → framed, levelled lines, read by two daemon threads, or at
ordinary rates by the event loop.

Threads, because the child must never wait for us and the event loop has other work
(`os.read` releases the GIL); two, so that reading never waits for framing to get the GIL.
Given the event loop, a pipe's ordinary output is read there instead, when the loop says
it is readable: a line then waits for no thread and no GIL on its way to the sockets.
A flood, a sink that may hold capture, a loop busy with its readers, or a loop that
stops reading (see `LoopGuard`) gives the reads back to the reader thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import math
import os
import select
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from logcast.capture.framing import MAX_LINE, Framed, LineFramer
from logcast.capture.levels import detect_levels
from logcast.capture.spill import SPILL_BYTES, Spill
from logcast.types import Lines

__all__ = [
    "CALM",
    "GUARD_IDLE_INTERVAL",
    "GUARD_INTERVAL",
    "GUARD_QUIET",
    "INLINE_MAX",
    "PACE_ABOVE",
    "PIPE_SIZE",
    "READ_PACE",
    "READ_SIZE",
    "SPOOL_BYTES",
    "LoopGuard",
    "PipeReader",
]

logger = logging.getLogger(__name__)

PIPE_SIZE = 1 << 20  # asked of the kernel for pipes, so a burst fits while the reader waits for the GIL
READ_SIZE = 1 << 20  # bytes per os.read: a full pipe in one call
SPOOL_BYTES = 64 << 20  # raw bytes a reader may hold for its framer before it stops reading
SPOOL_BEFORE_SPILL = 8 << 20  # ...or before it writes them to its spill file, if it has one
READ_PACE = 0.001  # seconds: at most one read this often while a flood keeps coming
PACE_ABOVE = 4 << 20  # bytes/s: output faster than this is a flood (10,000 lines/s of 100 bytes is 1 MB/s)
RATE_WINDOW = 0.01  # seconds over which the reader tells a flood from ordinary output
INLINE_MAX = 64 * 1024  # bytes: a read no larger, outside a flood, is handed on by the reader itself
CALM = (
    0.1  # s the reader thread keeps a pipe's reads after the last reason to (a flood, a sink that may hold)
)
GUARD_INTERVAL = 0.02  # s: a loop that left a readable pipe unread at two such ticks has stalled
GUARD_IDLE_INTERVAL = 0.25  # s between its ticks once no pipe it watches had output for GUARD_QUIET s
GUARD_QUIET = 1.0
STALL_WARN_EVERY = 60.0  # s: a reader warns of a stalled loop at most this often (then at debug level)

_THREAD, _LOOP = "thread", "loop"  # who reads the fd


def _raise_pipe_size(fd: int) -> int:
    """Make the pipe buffer of `fd` `PIPE_SIZE` if `fd` is a pipe (Linux only; best
    effort) and return the size it has then; 0 if it is not a pipe or cannot be told."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return 0
    except OSError:
        return 0
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    getpipe = getattr(fcntl, "F_GETPIPE_SZ", None)
    if setpipe is not None:
        with contextlib.suppress(OSError):  # over /proc/sys/fs/pipe-max-size, or not allowed
            fcntl.fcntl(fd, setpipe, PIPE_SIZE)
    try:
        return int(fcntl.fcntl(fd, getpipe)) if getpipe is not None else 0
    except OSError:
        return 0


def _short(size: int, asked: int) -> bool:
    """A read of `size` bytes out of `asked` (at most `READ_SIZE`) was a trickle: the pipe
    was far from full, so waiting before the next read cannot make the child wait."""
    return 2 * size < asked


class PipeReader:
    """Reads one fd until EOF (reader thread) and hands framed lines on (framer thread).

    The reader only reads, stamps the arrival time and spools the raw chunk (the most
    compact form a burst can wait in). The spool holds at most `spool_bytes`; when it
    is full the reader stops, the pipe fills and the child waits: memory stays bounded
    and nothing is dropped. With a `spill_dir`, a full spool sends what comes next to a
    file there instead (`Spill`) until the framer has read it all back, so that a flood
    far ahead of framing costs disk cache, not memory; when that file is full or cannot
    be written, the reader waits as without one.

    `on_lines` runs on the framer thread and may block, since the reader keeps draining
    the pipe meanwhile. If it raises, the error is logged and framing goes on; if the
    framer fails, the reader reads on and discards. Either way the child's pipe is still
    read, because a child whose pipe fills blocks. Output lost that way (and a spill file
    that cannot be read back) is told to `on_loss(message)`, from the framer's thread.

    With `on_lines_now` (which hands lines on like `on_lines` but never blocks),
    ordinary output skips the hand-off between the threads: a small read outside a
    flood, with nothing spooled and the framer idle, is framed and handed on by the
    reader thread itself, unless `may_wait()` says that `on_lines` might block now (then
    the framer thread takes it, so that a sink that holds capture holds that thread).
    A line then waits for one thread switch fewer. One thread at a time frames
    (`_framer_busy`), so the order of the chunks is kept.

    With `loop` too (and a pipe the kernel enlarged to `READ_SIZE`, which holds a whole
    read while the loop is late), the event loop reads the fd while its output is
    ordinary, up to `INLINE_MAX` bytes a read, and frames and hands on there what
    `on_lines_now` takes; the reader thread waits meanwhile. A read that finds a flood,
    fills its buffer, finds a sink that may hold capture or a loop busy waking readers
    (`loop_busy()`: there a read would wait for the loop's turn, and the line's stamp
    with it), or comes while the framer is behind gives the reads back to the reader
    thread, which hands them back to the loop once `calm` s passed without any of
    these. One side reads at a time (`_owner`, changed under the lock), so chunks keep
    their order. `guard` (by default one for the
    process, `LoopGuard`) gives the reads of a loop that stopped reading to the thread
    within two of its ticks (40 ms): a child then waits only if it writes more than the
    pipe holds (1 MiB) in that time, and the thread reads until the loop runs again.
    """

    def __init__(
        self,
        fd: int,
        on_lines: Callable[[float, Lines], None],
        *,
        max_line: int = MAX_LINE,
        idle_flush: float = 0.25,
        spool_bytes: int | None = None,
        spill_dir: Path | None = None,
        spill_bytes: int = SPILL_BYTES,
        read_pace: float = READ_PACE,
        pace_above: float = PACE_ABOVE,
        sleep: Callable[[float], None] = time.sleep,
        on_lines_now: Callable[[float, Lines], None] | None = None,
        may_wait: Callable[[], bool] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        loop_busy: Callable[[], bool] | None = None,
        guard: LoopGuard | None = None,
        calm: float = CALM,
        name: str = "reader",
        on_loss: Callable[[str], None] | None = None,
    ) -> None:
        if idle_flush <= 0:
            raise ValueError("idle_flush must be positive")
        self._fd = fd
        self._on_lines = on_lines
        self._framer = LineFramer(max_line)
        self._idle = idle_flush
        self._pace = max(0.0, read_pace)
        self._pace_above = max(0.0, pace_above)
        self._sleep = sleep
        self._on_lines_now = on_lines_now  # None: only the framer thread hands lines on
        self._may_wait = may_wait
        self._paced = False  # decided by start(), once the pipe has its size
        self._name = name
        self._on_loss = on_loss
        self._bytes_read = 0
        self._spool: deque[tuple[float, bytes]] = deque()
        self._spooled = 0  # bytes in the spool, and in the chunk being framed
        self._spool_defaulted = spool_bytes is None
        if spool_bytes is None:
            spool_bytes = SPOOL_BYTES if spill_dir is None else SPOOL_BEFORE_SPILL
        self._spool_max = max(64 * 1024, spool_bytes)  # less would only slow the reads down
        self._spill = Spill(spill_dir, spill_bytes) if spill_dir is not None else None
        self._spill_writing = False  # the reader writes to the spill outside the lock
        self._eof = False  # the reader is done: the spool gets nothing more
        self._framing = True  # False once the framer has ended (then the reader discards)
        self._framer_busy = False  # a thread is framing a chunk (the framer's or the reader)
        self._failed = False  # framing failed on the reader thread: the framer thread ends
        self._framer_waits = False  # the framer thread waits for the reader's chunk to be framed
        self._framer_sleeps = False  # the framer thread waits with no timeout
        # Monotonic time since which the unfinished line's pending bytes wait (the chunk
        # that began it, or its last piece handed on; None: nothing pending): they are
        # handed on `idle_flush` s after it, whether more of the line came or not.
        self._pending_since: float | None = None
        self._idle_flushed = False  # the pending bytes were offered by an idle flush already
        self._fed_at = 0.0  # the read time of the last chunk framed: an unfinished line's, when flushed
        self._cond = threading.Condition(threading.Lock())
        self._reader = threading.Thread(target=self._read_loop, name=f"{name}-read", daemon=True)
        self._thread = threading.Thread(target=self._frame_loop, name=f"{name}-frame", daemon=True)
        self._read_all = _Latch()  # EOF: nothing more will be read
        # Reads on the event loop (None: only the reader thread reads). What follows is
        # changed by the side that reads, or under the lock; `_registered` only on the
        # loop's thread, under the lock.
        self._loop = loop if on_lines_now is not None else None
        self._loop_busy = loop_busy
        self._guard = guard
        self._calm = calm
        self._owner = _THREAD  # who reads the fd now
        self._registered = False  # the loop watches the fd
        self._loop_reads = 0  # reads the loop made: the guard's sign of life
        self._loop_rate = _Rate(self._pace_above)  # the loop's reads, as `_read_until_eof`'s
        self._busy_at = -math.inf  # monotonic: the last read that found a flood or a sink that may hold
        self._stalled = False  # a guard took the reads, and the loop has not run since
        self._warned_at = -math.inf  # monotonic: the last warning of a stalled loop
        self._loop_buffer = memoryview(bytearray(INLINE_MAX)) if self._loop is not None else None
        self._handed_on = _Latch()  # ...and every line was handed on

    def __repr__(self) -> str:
        return f"<PipeReader {self._name} fd={self._fd} bytes_read={self._bytes_read}>"

    @property
    def bytes_read(self) -> int:
        """Bytes read from the fd so far."""
        return self._bytes_read

    @property
    def spooled(self) -> int:
        """Bytes read but not framed yet, in memory."""
        return self._spooled

    @property
    def spilled(self) -> int:
        """Bytes read but not framed yet, waiting in the spill file."""
        return self._spill.pending if self._spill is not None else 0

    @property
    def on_loop(self) -> bool:
        """The event loop reads the fd now (see the class's docstring)."""
        return self._owner is _LOOP

    @property
    def paced(self) -> bool:
        """Reads may wait for `read_pace` after a trickle in a flood (see `_read_until_eof`)."""
        return self._paced

    def start(self) -> None:
        """Start the threads (once)."""
        pipe_size = _raise_pipe_size(self._fd)
        # Pacing needs a pipe that holds a whole read while the reader waits; a pty's
        # master (at most 4 KiB a read) or a pipe the kernel would not enlarge (64 KiB)
        # would make a flooding child wait, so those are read at once.
        self._paced = self._pace > 0 and pipe_size >= READ_SIZE
        loop = self._loop if pipe_size >= READ_SIZE else None
        if loop is not None:
            os.set_blocking(self._fd, False)  # the thread polls when it meets an empty pipe
            self._owner = _LOOP  # before the reader thread runs: it must not read first
        else:
            self._loop = None
        self._thread.start()
        try:
            self._reader.start()
        except BaseException:
            with self._cond:  # the framer must not wait for a reader that never ran
                self._eof = True
                self._cond.notify_all()
            raise
        if loop is None:
            return
        self._guard = self._guard or _default_guard()
        try:
            self._guard.add(self)
        except Exception:  # no guard, no reads on the loop: the thread reads
            logger.exception("reader %s: no loop guard; its thread reads fd %d", self._name, self._fd)
            with self._cond:
                self._owner = _THREAD
                self._loop = None
                self._cond.notify_all()
            return
        self._schedule_register(loop)

    def join(self, timeout: float | None = None) -> bool:
        """Block until every line was handed on (or `timeout` passed); True if so."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    async def eof(self) -> None:
        """Resolve once the fd reached EOF (every byte is read; framing may go on)."""
        if self._thread.ident is None:
            raise RuntimeError("PipeReader.eof() before start()")
        await self._read_all.wait()

    async def wait(self) -> None:
        """Resolve once EOF was reached and every line was handed on."""
        if self._thread.ident is None:
            raise RuntimeError("PipeReader.wait() before start()")
        await self._handed_on.wait()

    # -- the reader thread -------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            self._read_until_eof()
        except Exception:
            logger.exception("reader %s failed; it stops reading fd %d", self._name, self._fd)
        finally:
            if self._guard is not None:
                self._guard.remove(self)  # before the fd goes: the guard polls it
            self._close_fd()
            with self._cond:
                self._eof = True
                self._close_spill()
                self._cond.notify_all()
            self._read_all.set()

    def _close_fd(self) -> None:
        """Close the fd, on the loop if the loop may still watch it (a guard took the reads
        from a loop that stalled): its watch must go first, or a pipe opened later under the
        same number would be watched for this reader."""
        with self._cond:
            self._owner = _THREAD  # for good
            loop = self._loop if self._registered else None
            if loop is not None and not loop.is_running():
                # stopped or closed: nothing runs in it, so its watch can go from here
                with contextlib.suppress(Exception):
                    self._unregister()  # forgets the watch before it removes it
                loop = None
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: close here
                loop.call_soon_threadsafe(self._close_on_loop)
                return
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _close_on_loop(self) -> None:
        with self._cond:
            self._unregister()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _read_until_eof(self) -> None:
        fd = self._fd
        cond = self._cond
        spool = self._spool
        # One buffer for every read, and an exact-size copy of what came: `os.read(fd,
        # 1 MiB)` allocates 1 MiB and shrinks it, leaving a small read holding a page or
        # more, so the spool's bound would not bound memory.
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        pace = self._pace if self._paced else 0.0
        inline = self._on_lines_now is not None
        rate = _Rate(self._pace_above)
        last_read = 0.0
        trickle = False
        while True:
            # A flooding child that writes a line per `write(2)` would wake us once per
            # line, and every chunk costs a GIL switch, a framing call and a hub call. So
            # in a flood, after a trickle (a read that left the pipe far from full), the
            # next read waits until `pace` after the last one. Below the flood rate every
            # read happens at once, since there a line must not wait for company; nor is
            # a read delayed after one that found the pipe half full.
            if trickle:
                wait = last_read + pace - time.monotonic()
                if wait > 0:
                    self._sleep(wait)
            with cond:
                while self._owner is _LOOP:  # the event loop reads: wait for it to give them back
                    cond.wait()
                # read no more than the spool has room for, so that its bound is exact
                room = self._wait_for_room()
                to_file = not room
            asked = min(READ_SIZE, room or READ_SIZE)
            last_read = time.monotonic()
            try:
                size = os.readv(fd, [view[:asked]])
            except BlockingIOError:  # non-blocking (the loop reads it at times): wait for it
                poller.poll()
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # pty master: the child side is closed
                    return
                raise
            if not size:
                return
            now = time.monotonic()
            flooding = rate.flooding(now, size)
            trickle = pace > 0 and flooding and _short(size, asked)
            data = bytes(view[:size])
            stamp = time.time()
            self._bytes_read += size
            if to_file and self._spill_chunk(stamp, data):
                continue
            # Ordinary output is handed on from here, unless the sink might hold capture.
            small = not flooding and size <= INLINE_MAX
            held = small and inline and self._sink_may_wait()
            here = inline and small and not held
            if not small or held:
                self._busy_at = now
            with cond:
                if not self._framing:
                    continue  # nobody frames any more: keep the child running, drop
                here = here and not spool and not self._framer_busy and not self._failed
                if here:
                    self._framer_busy = True
                else:
                    spool.append((stamp, data))
                    self._spooled += len(data)
                    cond.notify_all()
            if here:
                self._frame_here(stamp, data)
            if self._loop is not None and small and now - self._busy_at >= self._calm:
                if self._asks(self._loop_busy, "loop_busy"):
                    self._busy_at = now
                else:
                    self._hand_to_loop()

    # -- reads on the event loop -------------------------------------------------------

    def _hand_to_loop(self) -> None:
        """(Reader thread) Output is calm again: the loop reads from its next turn on."""
        loop = self._loop
        assert loop is not None
        with self._cond:
            # a spill is read back on this thread; a stalled loop is not given the reads back
            if self.spilled or not self._framing or self._stalled:
                return
            self._owner = _LOOP
        self._schedule_register(loop)

    def _schedule_register(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.call_soon_threadsafe(self._register)
        except RuntimeError:  # the loop is closed: this thread reads from now on
            with self._cond:
                self._owner = _THREAD
                self._loop = None
                self._cond.notify_all()

    def _register(self) -> None:
        """(Loop) Watch the fd, if the reads are still the loop's."""
        loop = self._loop
        with self._cond:
            if self._owner is not _LOOP or self._registered or loop is None:
                return
            try:
                loop.add_reader(self._fd, self._loop_readable)
            except Exception:
                logger.exception(
                    "reader %s: the event loop cannot watch fd %d; its thread reads it", self._name, self._fd
                )
                self._give_to_thread()
                return
            self._registered = True

    def _unregister(self) -> None:
        """(Loop, lock held) Stop watching the fd."""
        if self._registered:
            self._registered = False
            assert self._loop is not None
            self._loop.remove_reader(self._fd)

    def _give_to_thread(self) -> None:
        """(Loop, lock held) The reader thread reads from now on, for `calm` s at least."""
        self._busy_at = time.monotonic()
        self._owner = _THREAD
        self._unregister()
        self._cond.notify_all()

    def _loop_readable(self) -> None:
        """(Loop) The fd is readable: read and hand on what came, as the reader thread
        would, or give the reads back to that thread."""
        view = self._loop_buffer
        assert view is not None
        may_wait = self._sink_may_wait()
        busy = self._asks(self._loop_busy, "loop_busy")
        cond = self._cond
        with cond:
            if self._owner is not _LOOP:  # a guard took the reads meanwhile
                self._unregister()
                return
            # the thread's cases: a spill to read back, a framer too far behind, no framer
            if (
                self.spilled
                or self._spool_max - self._spooled < INLINE_MAX
                or not self._framing
                or self._failed
            ):
                self._give_to_thread()
                return
            try:
                size = os.readv(self._fd, [view])
            except BlockingIOError:
                return
            except OSError:
                size = 0  # the thread reads again and meets the error itself
            if not size:  # EOF: the thread reads it too, and ends
                self._give_to_thread()
                return
            self._loop_reads += 1
            data = bytes(view[:size])
            stamp = time.time()
            now = time.monotonic()
            self._bytes_read += size
            flooding = self._loop_rate.flooding(now, size)
            here = not (flooding or may_wait or self._spool or self._framer_busy)
            if here:
                self._framer_busy = True
            else:
                self._spool.append((stamp, data))
                self._spooled += len(data)
                cond.notify_all()
            if flooding or may_wait or busy or size == len(view):  # a flood, a burst, a sink that may hold
                self._give_to_thread()
        if here:
            self._frame_here(stamp, data)

    def _loop_read_count(self) -> int | None:
        """(Guard) The loop's reads so far; None while the thread has the reads."""
        with self._cond:
            return self._loop_reads if self._owner is _LOOP else None

    def _take_from_stalled_loop(self, count: int) -> asyncio.AbstractEventLoop | None:
        """(Guard) Take the reads if the loop still has them and read nothing since it
        had read `count`; the loop they were taken from, or None."""
        with self._cond:
            if self._owner is not _LOOP or self._loop_reads != count:
                return None
            self._owner = _THREAD
            self._stalled = True  # until the loop runs again (`_loop_is_back`)
            self._busy_at = time.monotonic()
            self._cond.notify_all()
            return self._loop

    def _stalled_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """(Guard, no lock held) Say why the thread reads now (a warning at most once a
        `STALL_WARN_EVERY` per reader), and learn when the loop runs again."""
        if loop.is_closed():
            logger.debug("reader %s: the event loop closed; the reader thread reads", self._name)
            return
        now = time.monotonic()
        if not loop.is_running():
            logger.debug("reader %s: the event loop stopped; the reader thread reads", self._name)
        elif now - self._warned_at >= STALL_WARN_EVERY:
            self._warned_at = now
            logger.warning(
                "reader %s: the event loop left its pipe unread; the reader thread reads it meanwhile",
                self._name,
            )
        else:
            logger.debug("reader %s: the event loop left its pipe unread again", self._name)
        with contextlib.suppress(RuntimeError):  # closed meanwhile: it does not come back
            loop.call_soon_threadsafe(self._loop_is_back)  # runs once the loop runs again

    def _loop_is_back(self) -> None:
        """(Loop) The loop runs again after a stall: the thread may give the reads back."""
        with self._cond:
            self._stalled = False

    def _wait_for_room(self) -> int:
        """Wait (lock held) until the next chunk has a place: 0 for the spill file, else
        the bytes the spool has room for (`READ_SIZE` for the bin, once nobody frames)."""
        spill = self._spill
        while self._framing:
            if spill is not None and spill.pending:  # the file is in use: order demands it
                if spill.fits(READ_SIZE):
                    return 0
            elif self._spooled < self._spool_max:
                return self._spool_max - self._spooled
            elif spill is not None and spill.fits(READ_SIZE):
                return 0
            elif spill is not None and self._spool_defaulted and not spill.truncating:
                # the file has no room (a disk nearly full): memory holds what it would
                # without one before the pipe fills
                if self._spooled < SPOOL_BYTES:
                    return SPOOL_BYTES - self._spooled
            # the framer is far behind: let the pipe fill until it catches up
            self._cond.wait()
        return READ_SIZE

    def _spill_chunk(self, stamp: float, data: bytes) -> bool:
        """Write a chunk to the spill file; False if it could not be (it is broken now,
        and the chunk goes to the spool once the file was read back, keeping the order)."""
        spill = self._spill
        assert spill is not None
        with self._cond:
            # The framer may have read the file back and emptied it while this chunk was
            # read: its blocks are freed first, or the truncation would take the chunk.
            while spill.truncating and self._framing:
                self._cond.wait()
            if not self._framing:
                return True  # nobody will read it back: drop it, as the spool would
            position = spill.end
            self._spill_writing = True
        try:
            written = spill.write(position, stamp, data)
        except OSError as exc:
            written = 0
            logger.warning(
                "reader %s cannot spill to %s (%s); it holds what comes in memory, and waits when that is full",
                self._name,
                spill.directory,
                exc,
            )
        free = False
        with self._cond:
            self._spill_writing = False
            if written:
                spill.end = position + written
            else:
                self._spill_broke()
                while spill.pending and self._framing:  # older chunks first
                    self._cond.wait()
                free = spill.empty()
            self._cond.notify_all()
        if free:
            self._truncate_spill()  # the disk that refused it gets its blocks back
        return bool(written)

    def _lost(self, message: str) -> None:
        """Tell `on_loss` (no lock held, either thread) that output was lost: no seq names
        it, so the readers learn of it from what the owner makes of this (a status record)."""
        if self._on_loss is None:
            return
        try:
            self._on_loss(message)
        except Exception:
            logger.exception("reader %s: on_loss failed", self._name)

    def _truncate_spill(self) -> None:
        """Free the blocks of the emptied spill file (no lock held), and wake a reader
        that waits to write a chunk to it."""
        assert self._spill is not None
        self._spill.truncate()
        with self._cond:
            self._cond.notify_all()

    def _spill_broke(self) -> None:
        """No more spilling (lock held): the memory spool gets the bound it has without one."""
        assert self._spill is not None
        self._spill.broken = True
        if self._spool_defaulted:
            self._spool_max = max(self._spool_max, SPOOL_BYTES)

    def _sink_may_wait(self) -> bool:
        return self._asks(self._may_wait, "may_wait")

    def _asks(self, question: Callable[[], bool] | None, name: str) -> bool:
        """`question()`, False without one, True if it fails: whatever it is, the reader
        must go on reading (then through its threads)."""
        if question is None:
            return False
        try:
            return question()
        except Exception:
            logger.exception("reader %s: %s failed; its lines go through its threads", self._name, name)
            return True

    def _frame_here(self, stamp: float, data: bytes) -> None:
        """Frame and hand on a chunk on the reader thread (which holds `_framer_busy`)."""
        assert self._on_lines_now is not None
        failed = True
        framed = None
        try:
            framed = self._framer.feed(data)
            self._fed_at = stamp
            self._deliver(stamp, framed, self._on_lines_now)
            failed = False
        except Exception as exc:
            logger.exception("framer of reader %s failed; its lines are dropped from now on", self._name)
            self._lost(f"capture failed ({exc!r}): this stream's output is dropped from now on")
        finally:
            with self._cond:
                self._framer_busy = False
                self._framed(framed)
                self._failed = self._failed or failed
                # Wake the framer thread only if it has something to do: end, time an idle
                # flush for a line left unfinished, or go on after waiting for this chunk.
                # Waking it for every line would cost a thread switch, the one saved here.
                if failed or self._framer_waits or (self._framer_sleeps and self._framer.pending):
                    self._cond.notify_all()

    # -- the framer thread -------------------------------------------------------------

    def _frame_loop(self) -> None:
        try:
            self._frame_until_eof()
        except Exception as exc:
            logger.exception("framer of reader %s failed; its lines are dropped from now on", self._name)
            self._lost(f"capture failed ({exc!r}): this stream's output is dropped from now on")
        finally:
            with self._cond:
                self._framing = False
                self._spool.clear()
                self._spooled = 0
                # nobody reads the spill back: its blocks go now
                free = self._spill is not None and not self._spill_writing and self._spill.empty()
                self._close_spill()
                self._cond.notify_all()
            if free and self._spill is not None:
                self._truncate_spill()
            try:
                self._deliver(self._fed_at, self._framer.flush())
            finally:
                self._finish()

    def _frame_until_eof(self) -> None:
        framer = self._framer
        cond = self._cond
        spool = self._spool
        spill = self._spill
        while True:
            from_file: tuple[int, int] | None = None
            with cond:
                if not self._wait_for_work():
                    return
                self._framer_busy = True
                if spool:
                    stamp, data = _take_spooled(spool)
                elif spill is not None and spill.pending:
                    from_file, data = (spill.start, spill.end), b""
                else:
                    data = b""  # nothing came within idle_flush
            failed = True
            framed = None
            try:
                if from_file is not None:
                    framed = self._frame_spilled(from_file)
                elif data:
                    framed = framer.feed(data)
                    self._fed_at = stamp
                    self._deliver(stamp, framed)
                else:
                    # Hand the unfinished line on as partial, since a prompt or a progress
                    # bar must not stay invisible.
                    self._deliver(self._fed_at, framer.flush(idle=True))  # when its bytes came
                failed = False
            finally:
                with cond:
                    # Framing failed: the reader must not take the framer up (this thread
                    # still flushes it on its way out); it spools, and the spool is dropped.
                    self._failed = self._failed or failed
                    self._framer_busy = False
                    if data or from_file is not None:
                        self._framed(framed)
                    else:
                        self._idle_flushed = True
                        self._pending_since = time.monotonic() if framer.pending else None
                    self._spooled -= len(data)
                    cond.notify_all()

    def _wait_for_work(self) -> bool:
        """Wait (lock held) until the framer thread has a chunk to frame (spooled or
        spilled) or an idle flush is due; False once it is done (EOF with nothing left,
        or framing failed on the reader thread)."""
        cond = self._cond
        while not self._failed:
            if self._framer_busy:  # the reader is framing a chunk itself
                self._framer_waits = True
                cond.wait()
                self._framer_waits = False
            elif self._spool or self.spilled:
                return True
            elif self._eof:
                return False
            elif self._framer.pending and not self._idle_flushed:
                since = self._pending_since
                left = self._idle if since is None else since + self._idle - time.monotonic()
                if left <= 0:
                    return True
                cond.wait(left)  # woken early or not, `left` is looked at again
            else:
                self._framer_sleeps = True  # only a notify wakes it: see _frame_here
                cond.wait()
                self._framer_sleeps = False
        return False

    def _frame_spilled(self, span: tuple[int, int]) -> Framed | None:
        """Frame the next piece of the spill file (between `span`'s positions); what
        it framed (None: nothing could be read)."""
        spill = self._spill
        assert spill is not None
        cond = self._cond
        try:
            stamp, data, position = spill.read(*span, READ_SIZE)
        except OSError as exc:  # our own file failed us: what it held is gone
            logger.error(
                "reader %s lost %d bytes of output: its spill file could not be read back (%s)",
                self._name,
                span[1] - span[0],
                exc,
            )
            stamp, data, position = time.time(), b"", span[1]
            with cond:
                self._spill_broke()
            self._lost(
                f"{span[1] - span[0]} bytes of output were lost: the spill file could not be read back ({exc})"
            )
        framed = None
        if data:
            framed = self._framer.feed(data)
            self._fed_at = stamp
            self._deliver(stamp, framed)
        with cond:
            spill.start = position
            free = not spill.pending and not self._spill_writing and spill.empty()
            cond.notify_all()
        if free:
            self._truncate_spill()
        return framed

    def _framed(self, framed: Framed | None) -> None:
        """(Lock held) A chunk was framed into `framed` (None: it failed, or nothing was
        read). The unfinished line's bytes wait from now if they began in this chunk
        (it handed records on: whatever waited before was among them), and from when
        they began otherwise: a line that keeps growing, such as a loader's progress
        dots, is handed on piece by piece every `idle_flush` s, not only once it ends
        or its writer pauses. A flood's lines end in the next chunk, and are whole."""
        self._idle_flushed = False
        if not self._framer.pending:
            self._pending_since = None
        elif framed is None or framed.texts or self._pending_since is None:
            self._pending_since = time.monotonic()

    def _deliver(
        self, timestamp: float, framed: Framed, on_lines: Callable[[float, Lines], None] | None = None
    ) -> None:
        texts, partial = framed
        if not texts:
            return
        try:
            (on_lines or self._on_lines)(timestamp, Lines(texts, detect_levels(texts), partial))
        except Exception as exc:
            logger.exception("on_lines of reader %s failed; %d lines dropped", self._name, len(texts))
            count = len(texts)
            self._lost(f"{count} line{'s' if count != 1 else ''} lost: handing them on failed ({exc!r})")

    def _close_spill(self) -> None:
        """Close the spill file once neither thread can touch it again (lock held)."""
        if self._spill is not None and self._eof and not self._framing:
            self._spill.close()

    def _finish(self) -> None:
        self._handed_on.set()


class _Rate:
    """Tells a flood (over `pace_above` bytes/s) from ordinary output, by the bytes read
    within `RATE_WINDOW`."""

    def __init__(self, pace_above: float) -> None:
        self._most = pace_above * RATE_WINDOW  # more than this in a window is a flood
        self._start = time.monotonic()
        self._bytes = 0

    def flooding(self, now: float, size: int) -> bool:
        """`size` bytes were read at `now`: is this a flood?"""
        if now - self._start > RATE_WINDOW:
            self._start, self._bytes = now, 0
        self._bytes += size
        return self._bytes > self._most


def _take_spooled(spool: deque[tuple[float, bytes]]) -> tuple[float, bytes]:
    """The spool's oldest chunks as one, up to `READ_SIZE` bytes (at least one chunk):
    a framer that fell behind frames and hands on what waited in one call, not one per
    read. The stamp is the last chunk's: every line in it had been read by then."""
    stamp, data = spool.popleft()
    if not spool or len(data) + len(spool[0][1]) > READ_SIZE:
        return stamp, data
    parts = [data]
    size = len(data)
    while spool and size + len(spool[0][1]) <= READ_SIZE:
        stamp, data = spool.popleft()
        parts.append(data)
        size += len(data)
    return stamp, b"".join(parts)


class _Latch:
    """A one-way flag set by a thread and awaited from any event loop.

    Waiters are resolved with `call_soon_threadsafe`, the one loop method that may be
    called from another thread (asyncio's and uvloop's loops alike).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def set(self) -> None:
        with self._lock:
            self._set = True
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._set:
                return
            self._waiters.append((loop, future))
        try:
            await future
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LoopGuard:
    """Gives the reads of a pipe to its reader thread when the event loop left it
    readable and unread at two ticks `interval` apart: a stalled loop must not make a
    child wait (its pipe holds 1 MiB meanwhile). One thread, one `poll` a tick, for every
    reader the loop reads for (a `PipeReader` adds and removes itself); it runs only
    while there are some. Once none of their pipes had output for `quiet` s, it ticks
    every `idle_interval` s instead (an idle supervisor's CPU), until one has again: a
    burst after such a silence is then taken from a stalled loop within `idle_interval`
    + `interval` s."""

    def __init__(
        self,
        interval: float = GUARD_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
        *,
        idle_interval: float = GUARD_IDLE_INTERVAL,
        quiet: float = GUARD_QUIET,
    ) -> None:
        self._interval = interval
        self._idle_interval = max(interval, idle_interval)
        self._quiet_ticks = max(1, round(quiet / interval)) if interval > 0 else 1
        self._sleep = sleep
        self._lock = threading.Lock()
        self._readers: dict[PipeReader, int | None] = {}  # reader: its loop's reads when last seen readable
        self._counts: dict[PipeReader, int | None] = {}  # reader: its loop's reads at the last tick
        self._running = False

    def add(self, reader: PipeReader) -> None:
        with self._lock:
            self._readers[reader] = None
            if self._running:
                return
            self._running = True
        try:
            threading.Thread(target=self._run, name="logcast-loop-guard", daemon=True).start()
        except BaseException:
            with self._lock:
                self._running = False
                self._readers.pop(reader, None)
            raise

    def remove(self, reader: PipeReader) -> None:
        """Once this returns, `reader`'s fd is not looked at again."""
        with self._lock:
            self._readers.pop(reader, None)
            self._counts.pop(reader, None)

    def check(self) -> bool:
        """One tick: take the reads of every pipe its loop left readable and unread since
        the last tick, and note which are readable now. Whether any pipe had output (it
        is readable, or the loop read since the last tick, or it is new)."""
        taken: list[tuple[PipeReader, asyncio.AbstractEventLoop]] = []
        with self._lock:  # held while polling: `remove` returns once the fd is not looked at
            counts = {reader: reader._loop_read_count() for reader in self._readers}
            active = any(self._counts.get(reader, -1) != count for reader, count in counts.items())
            self._counts = counts
            on_loop = {reader._fd: reader for reader, count in counts.items() if count is not None}
            ready: set[PipeReader] = set()
            if on_loop:
                poller = select.poll()
                for fd in on_loop:
                    poller.register(fd, select.POLLIN)
                ready = {on_loop[fd] for fd, _ in poller.poll(0)}
            for reader, count in counts.items():
                if count is None or reader not in ready:
                    self._readers[reader] = None
                elif self._readers[reader] == count and (loop := reader._take_from_stalled_loop(count)):
                    self._readers[reader] = None
                    taken.append((reader, loop))
                else:
                    self._readers[reader] = count
        for reader, loop in taken:
            reader._stalled_loop(loop)
        return active or bool(ready)

    def _run(self) -> None:
        quiet = 0  # ticks since a pipe last had output
        while True:
            self._sleep(self._interval if quiet < self._quiet_ticks else self._idle_interval)
            with self._lock:
                if not self._readers:
                    self._running = False
                    return
            try:
                quiet = 0 if self.check() else quiet + 1
            except Exception:  # a guard that dies would leave stalled loops unguarded
                logger.exception("the loop guard failed a check")


_guard: LoopGuard | None = None
_guard_lock = threading.Lock()


def _default_guard() -> LoopGuard:
    global _guard
    with _guard_lock:
        if _guard is None:
            _guard = LoopGuard()
        return _guard
