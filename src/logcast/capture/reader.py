"""One file descriptor → framed, levelled lines, read by two daemon threads.

Threads, because the child must never wait for us and the event loop has other work
(`os.read` releases the GIL); two, so that reading never waits for framing to get the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
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

__all__ = ["INLINE_MAX", "PACE_ABOVE", "PIPE_SIZE", "READ_PACE", "READ_SIZE", "SPOOL_BYTES", "PipeReader"]

logger = logging.getLogger(__name__)

PIPE_SIZE = 1 << 20  # asked of the kernel for pipes, so a burst fits while the reader waits for the GIL
READ_SIZE = 1 << 20  # bytes per os.read: a full pipe in one call
SPOOL_BYTES = 64 << 20  # raw bytes a reader may hold for its framer before it stops reading
SPOOL_BEFORE_SPILL = 8 << 20  # ...or before it writes them to its spill file, if it has one
READ_PACE = 0.001  # seconds: at most one read this often while a flood keeps coming
PACE_ABOVE = 4 << 20  # bytes/s: output faster than this is a flood (10,000 lines/s of 100 bytes is 1 MB/s)
RATE_WINDOW = 0.01  # seconds over which the reader tells a flood from ordinary output
INLINE_MAX = 64 * 1024  # bytes: a read no larger, outside a flood, is handed on by the reader itself


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
    read, because a child whose pipe fills blocks.

    With `on_lines_now` (which hands lines on like `on_lines` but never blocks),
    ordinary output skips the hand-off between the threads: a small read outside a
    flood, with nothing spooled and the framer idle, is framed and handed on by the
    reader thread itself, unless `may_wait()` says that `on_lines` might block now (then
    the framer thread takes it, so that a sink that holds capture holds that thread).
    A line then waits for one thread switch fewer. One thread at a time frames
    (`_framer_busy`), so the order of the chunks is kept.
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
        name: str = "reader",
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
        self._fed = 0.0  # monotonic time of the last chunk framed, for the idle flush
        self._idle_flushed = False  # the pending bytes were offered by an idle flush already
        self._cond = threading.Condition(threading.Lock())
        self._reader = threading.Thread(target=self._read_loop, name=f"{name}-read", daemon=True)
        self._thread = threading.Thread(target=self._frame_loop, name=f"{name}-frame", daemon=True)
        self._read_all = _Latch()  # EOF: nothing more will be read
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
        self._thread.start()
        try:
            self._reader.start()
        except BaseException:
            with self._cond:  # the framer must not wait for a reader that never ran
                self._eof = True
                self._cond.notify_all()
            raise

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
            with contextlib.suppress(OSError):
                os.close(self._fd)
            with self._cond:
                self._eof = True
                self._close_spill()
                self._cond.notify_all()
            self._read_all.set()

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
        flood_bytes = self._pace_above * RATE_WINDOW  # more than this in a window is a flood
        window_start = time.monotonic()
        window_bytes = 0
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
                to_file = self._wait_for_room()
                # read no more than the spool has room for, so that its bound is exact
                room = READ_SIZE if to_file or not self._framing else self._spool_max - self._spooled
            asked = min(READ_SIZE, room)
            last_read = time.monotonic()
            try:
                size = os.readv(fd, [view[:asked]])
            except BlockingIOError:  # someone made the fd non-blocking: wait for it
                poller.poll()
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # pty master: the child side is closed
                    return
                raise
            if not size:
                return
            now = time.monotonic()
            if now - window_start > RATE_WINDOW:
                window_start, window_bytes = now, 0
            window_bytes += size
            flooding = window_bytes > flood_bytes
            trickle = pace > 0 and flooding and _short(size, asked)
            data = bytes(view[:size])
            stamp = time.time()
            self._bytes_read += size
            if to_file and self._spill_chunk(stamp, data):
                continue
            # Ordinary output is handed on from here, unless the sink might hold capture.
            here = inline and not flooding and size <= INLINE_MAX and not self._sink_may_wait()
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

    def _wait_for_room(self) -> bool:
        """Wait (lock held) until the next chunk has a place: True for the spill file,
        False for the spool (or for the bin, once nobody frames)."""
        spill = self._spill
        while self._framing:
            if spill is not None and spill.pending:  # the file is in use: order demands it
                if spill.fits(READ_SIZE):
                    return True
            elif self._spooled < self._spool_max:
                return False
            elif spill is not None and spill.fits(READ_SIZE):
                return True
            # the framer is far behind: let the pipe fill until it catches up
            self._cond.wait()
        return False

    def _spill_chunk(self, stamp: float, data: bytes) -> bool:
        """Write a chunk to the spill file; False if it could not be (it is broken now,
        and the chunk goes to the spool once the file was read back, keeping the order)."""
        spill = self._spill
        assert spill is not None
        with self._cond:
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
            spill.truncate()  # the disk that refused it gets its blocks back
        return bool(written)

    def _spill_broke(self) -> None:
        """No more spilling (lock held): the memory spool gets the bound it has without one."""
        assert self._spill is not None
        self._spill.broken = True
        if self._spool_defaulted:
            self._spool_max = max(self._spool_max, SPOOL_BYTES)

    def _sink_may_wait(self) -> bool:
        may_wait = self._may_wait
        if may_wait is None:
            return False
        try:
            return may_wait()
        except Exception:  # whatever it is, the reader must go on reading
            logger.exception("reader %s: may_wait failed; its lines go through the framer thread", self._name)
            return True

    def _frame_here(self, stamp: float, data: bytes) -> None:
        """Frame and hand on a chunk on the reader thread (which holds `_framer_busy`)."""
        assert self._on_lines_now is not None
        failed = True
        try:
            self._deliver(stamp, self._framer.feed(data), self._on_lines_now)
            failed = False
        except Exception:
            logger.exception("framer of reader %s failed; its lines are dropped from now on", self._name)
        finally:
            with self._cond:
                self._framer_busy = False
                self._fed, self._idle_flushed = time.monotonic(), False
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
        except Exception:
            logger.exception("framer of reader %s failed; its lines are dropped from now on", self._name)
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
                self._spill.truncate()
            try:
                self._deliver(time.time(), self._framer.flush())
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
            try:
                if from_file is not None:
                    self._frame_spilled(from_file)
                elif data:
                    self._deliver(stamp, framer.feed(data))
                else:
                    # Hand the unfinished line on as partial, since a prompt or a progress
                    # bar must not stay invisible.
                    self._deliver(time.time(), framer.flush(idle=True))
                failed = False
            finally:
                with cond:
                    # Framing failed: the reader must not take the framer up (this thread
                    # still flushes it on its way out); it spools, and the spool is dropped.
                    self._failed = self._failed or failed
                    self._framer_busy = False
                    if data or from_file is not None:
                        self._fed, self._idle_flushed = time.monotonic(), False
                    else:
                        self._idle_flushed = True
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
                left = self._fed + self._idle - time.monotonic()
                if left <= 0:
                    return True
                cond.wait(left)  # woken early or not, `left` is looked at again
            else:
                self._framer_sleeps = True  # only a notify wakes it: see _frame_here
                cond.wait()
                self._framer_sleeps = False
        return False

    def _frame_spilled(self, span: tuple[int, int]) -> None:
        """Frame the next piece of the spill file (between `span`'s positions)."""
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
        if data:
            self._deliver(stamp, self._framer.feed(data))
        with cond:
            spill.start = position
            free = not spill.pending and not self._spill_writing and spill.empty()
            cond.notify_all()
        if free:
            spill.truncate()

    def _deliver(
        self, timestamp: float, framed: Framed, on_lines: Callable[[float, Lines], None] | None = None
    ) -> None:
        texts, partial = framed
        if not texts:
            return
        try:
            (on_lines or self._on_lines)(timestamp, Lines(texts, detect_levels(texts), partial))
        except Exception:
            logger.exception("on_lines of reader %s failed; %d lines dropped", self._name, len(texts))

    def _close_spill(self) -> None:
        """Close the spill file once neither thread can touch it again (lock held)."""
        if self._spill is not None and self._eof and not self._framing:
            self._spill.close()

    def _finish(self) -> None:
        self._handed_on.set()


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
