"""One file descriptor → framed, levelled lines, read by two daemon threads.

Why threads and not the event loop: the child must never wait for us (ARCHITECTURE,
invariant 1), and the loop that serves subscribers has other work. `os.read`
releases the GIL, so a blocked reader costs nothing.

Why two: reading and framing compete for one GIL with everything else logcast does
(the store writer, the streams). When one thread both read and framed, the pipe was
read only as fast as that thread got the GIL for its framing, and a flooding child
spent half its time blocked on a full pipe (measured: 2.1-2.3x its time into `cat`).
Now the *reader* only reads: up to `READ_SIZE` bytes per `os.read` (the pipe is made
as large, 1 MiB), stamps the arrival time and appends the raw chunk to a spool; it
needs the GIL for a few microseconds per chunk. The *framer* takes chunks from the
spool and does the per-chunk work: one framing pass, one batch of level detection, one
call of `on_lines`, with the chunk's own arrival time. Raw bytes are the most compact
form a burst can wait in (about a third of a framed record), so the spool is where a
burst waits when logcast is busy. It is bounded (`spool_bytes`, exactly: a read asks
for no more than the spool has room for); only if the framer is that far behind does
the reader stop reading, and then the pipe fills and the child waits: memory stays
bounded, and nothing is dropped.

While output trickles in, the reader of a 1 MiB pipe reads at most once per
`read_pace` (1 ms): a child that writes a line per `write(2)` would otherwise wake it
for every line, and each tiny chunk costs a GIL switch and a call of everything
downstream. A pty, or a pipe the kernel would not enlarge, is read at once.

When the framer holds an unfinished line, it waits for more bytes for at most
`idle_flush` seconds; if none come, the line is handed on as `partial` (a prompt or a
progress bar must not stay invisible), keeping back only an incomplete UTF-8
character. At EOF (`b""` from a pipe, `EIO` from a pty master whose child side closed)
the reader closes the fd, the framer frames what is left and flushes the rest as
`partial`, and the reader is finished.

`on_lines` runs on the framer thread; it may wait (the hub's `lines()` holds it while
the store writer is a whole memory tail behind), since the reader keeps draining the
pipe meanwhile. An exception in it is logged and framing goes on: losing a callback is
bad, silently stopping to read a child is worse, because its pipe fills and it blocks.
If the framer itself fails, the reader goes on reading and discards, for the same reason.

`eof()` resolves when the fd reached EOF, `wait()` once every line was also handed on.

`wait()` lets asyncio code await the end of a reader: every waiting task registers a
future of its own loop, which the thread resolves with `call_soon_threadsafe`, the one
loop method that may be called from another thread (asyncio's and uvloop's loops alike).
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

from logcast.capture.framing import MAX_LINE, Framed, LineFramer
from logcast.capture.levels import detect_levels
from logcast.types import Lines

__all__ = ["PIPE_SIZE", "READ_PACE", "READ_SIZE", "SPOOL_BYTES", "PipeReader"]

logger = logging.getLogger(__name__)

PIPE_SIZE = 1 << 20  # asked of the kernel for pipes, so a burst fits while the reader waits for the GIL
READ_SIZE = 1 << 20  # bytes per os.read: a full pipe in one call
SPOOL_BYTES = 64 << 20  # raw bytes a reader may hold for its framer before it stops reading
READ_PACE = 0.001  # seconds: at most one read this often while output keeps coming


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


def _short(n: int, asked: int) -> bool:
    """A read of `n` bytes out of `asked` (at most `READ_SIZE`) was a trickle: the pipe
    was far from full, so waiting before the next read cannot make the child wait."""
    return 2 * n < asked


class PipeReader:
    """Reads one fd until EOF (reader thread) and hands framed lines on (framer thread)."""

    def __init__(
        self,
        fd: int,
        on_lines: Callable[[float, Lines], None],
        *,
        max_line: int = MAX_LINE,
        idle_flush: float = 0.25,
        spool_bytes: int = SPOOL_BYTES,
        read_pace: float = READ_PACE,
        name: str = "reader",
    ) -> None:
        if idle_flush <= 0:
            raise ValueError("idle_flush must be positive")
        self._fd = fd
        self._on_lines = on_lines
        self._framer = LineFramer(max_line)
        self._idle = idle_flush
        self._pace = max(0.0, read_pace)
        self._paced = False  # decided by start(), once the pipe has its size
        self._name = name
        self._bytes_read = 0
        self._spool: deque[tuple[float, bytes]] = deque()
        self._spooled = 0  # bytes in the spool, and in the chunk being framed
        self._spool_max = max(64 * 1024, spool_bytes)  # less would only slow the reads down
        self._eof = False  # the reader is done: the spool gets nothing more
        self._framing = True  # False once the framer has ended (then the reader discards)
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
        """Bytes read but not framed yet."""
        return self._spooled

    @property
    def paced(self) -> bool:
        """Reads wait for `read_pace` after a trickle (see `_read_until_eof`)."""
        return self._paced

    def start(self) -> None:
        """Start the threads (once)."""
        pipe_size = _raise_pipe_size(self._fd)
        # Only a pipe as large as a whole read holds what a millisecond of a flood brings
        # (about 100 KiB). A pty's master returns at most 4 KiB a read, and a pipe the
        # kernel would not enlarge holds 64 KiB: waiting there made a flooding child
        # wait (a pty flood ran ten times longer), so they are read at once, as before.
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
                self._cond.notify_all()
            self._read_all.set()

    def _read_until_eof(self) -> None:
        fd = self._fd
        cond = self._cond
        spool = self._spool
        # One buffer for every read, and an exact-size copy of what came: `os.read(fd,
        # 1 MiB)` allocates 1 MiB each time and shrinks it, which leaves a small read
        # holding a whole page or more (measured: 4 KiB per 100-byte chunk), so the
        # spool's bound would not be a bound on memory.
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        pace = self._pace if self._paced else 0.0
        last_read = 0.0
        trickle = False
        while True:
            # A child that writes a line per `write(2)` wakes a reader that is waiting in
            # `read` once per line. Reading again at once gave chunks of 13 lines on
            # average, and every chunk costs a GIL switch, a framing call and a hub call.
            # So after a trickle (a read that left the pipe far from full), a read that
            # would follow the last one within `pace` waits out the rest: the 1 MiB pipe
            # holds a millisecond of output (about 100 KiB in a flood) easily, the chunks
            # grow a hundredfold, and a line waits at most `pace` longer. A quiet child is
            # not delayed (its read comes long after the last one), nor is a read after
            # one that found the pipe half full or filled the spool's room.
            if trickle:
                wait = last_read + pace - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            with cond:
                # the framer is far behind: let the pipe fill until it catches up
                while self._spooled >= self._spool_max and self._framing:
                    cond.wait()
                # read no more than the spool has room for, so that its bound is exact
                room = self._spool_max - self._spooled if self._framing else READ_SIZE
            asked = min(READ_SIZE, room)
            last_read = time.monotonic()
            try:
                n = os.readv(fd, [view[:asked]])
            except BlockingIOError:  # someone made the fd non-blocking: wait for it
                poller.poll()
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # pty master: the child side is closed
                    return
                raise
            if not n:
                return
            trickle = pace > 0 and _short(n, asked)
            data = bytes(view[:n])
            stamp = time.time()
            self._bytes_read += n
            with cond:
                if not self._framing:
                    continue  # nobody frames any more: keep the child running, drop
                spool.append((stamp, data))
                self._spooled += len(data)
                cond.notify_all()

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
                self._cond.notify_all()
            try:
                self._deliver(time.time(), self._framer.flush())
            finally:
                self._finish()

    def _frame_until_eof(self) -> None:
        framer = self._framer
        cond = self._cond
        spool = self._spool
        idle_flushed = False  # the pending bytes were offered by an idle flush already
        while True:
            with cond:
                if not spool and not self._eof:
                    if framer.pending and not idle_flushed:
                        cond.wait(self._idle)
                    else:
                        cond.wait()
                if spool:
                    stamp, data = spool.popleft()
                elif self._eof:
                    return
                else:
                    data = b""
            if not data:
                if framer.pending and not idle_flushed:  # nothing came within idle_flush
                    self._deliver(time.time(), framer.flush(idle=True))
                    idle_flushed = True
                continue
            self._deliver(stamp, framer.feed(data))
            idle_flushed = False
            with cond:
                self._spooled -= len(data)
                cond.notify_all()

    def _deliver(self, timestamp: float, framed: Framed) -> None:
        texts, partial = framed
        if not texts:
            return
        try:
            self._on_lines(timestamp, Lines(texts, detect_levels(texts), partial))
        except Exception:
            logger.exception("on_lines of reader %s failed; %d lines dropped", self._name, len(texts))

    def _finish(self) -> None:
        self._handed_on.set()


class _Latch:
    """A one-way flag set by a thread and awaited from any event loop."""

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
