"""One file descriptor → framed, levelled lines, read by a daemon thread.

Why a thread per pipe and not the event loop: the child must never wait for us
(ARCHITECTURE, invariant 1), and the loop that serves subscribers has other work.
`os.read` releases the GIL, so a blocked reader costs nothing, and a flooding child is
read in 64 KiB chunks while the loop keeps serving; measured on a prototype, capture on
the serving loop slowed a flooding child 2–11×, a reader thread about 2×.

The work is per chunk, not per line: one `os.read` of up to 64 KiB, one `time.time()`
stamp for every line in it, one framing pass, one batch of level detection and one
call of `on_lines`. When the framer holds an unfinished line, the thread waits for more
bytes with `select.poll` for at most `idle_flush` seconds; if none come, the line is
handed on as `partial` (a prompt or a progress bar must not stay invisible), keeping
back only an incomplete UTF-8 character. At EOF — `b""` from a pipe, `EIO` from a pty
master whose child side closed — the rest is flushed as `partial`, the fd is closed and
the reader is finished.

`on_lines` runs on the reader thread; it must be quick and must not block (the hub's
`lines()` is). An exception in it is logged and reading goes on: losing a callback is
bad, silently stopping to read a child is worse, because its pipe fills and it blocks.

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
from collections.abc import Callable

from logcast.capture.framing import MAX_LINE, LineFramer
from logcast.capture.levels import detect_levels
from logcast.types import Line

__all__ = ["CHUNK", "PIPE_SIZE", "PipeReader"]

logger = logging.getLogger(__name__)

CHUNK = 65536  # bytes per os.read
PIPE_SIZE = 1 << 20  # asked of the kernel for pipes, so a burst fits while we are busy

_POLL_MASK = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


def _raise_pipe_size(fd: int) -> None:
    """Make the pipe buffer 1 MiB if `fd` is a pipe (Linux only; best effort)."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is None:
        return
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, setpipe, PIPE_SIZE)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size, or not allowed: the default will do


class PipeReader:
    """Reads one fd in a daemon thread until EOF and hands framed lines on."""

    def __init__(
        self,
        fd: int,
        on_lines: Callable[[float, list[Line]], None],
        *,
        max_line: int = MAX_LINE,
        idle_flush: float = 0.25,
        name: str = "reader",
    ) -> None:
        if idle_flush <= 0:
            raise ValueError("idle_flush must be positive")
        self._fd = fd
        self._on_lines = on_lines
        self._framer = LineFramer(max_line)
        self._idle_ms = max(1, round(idle_flush * 1000))
        self._name = name
        self._bytes_read = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()
        self._finished = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __repr__(self) -> str:
        return f"<PipeReader {self._name} fd={self._fd} bytes_read={self._bytes_read}>"

    @property
    def bytes_read(self) -> int:
        """Bytes read from the fd so far."""
        return self._bytes_read

    def start(self) -> None:
        """Start the reading thread (once)."""
        _raise_pipe_size(self._fd)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Block until the reader finished (or `timeout` passed); True if it finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    async def wait(self) -> None:
        """Resolve once EOF was reached and every line was handed on."""
        if self._thread.ident is None:
            raise RuntimeError("PipeReader.wait() before start()")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._finished:
                return
            self._waiters.append((loop, future))
        try:
            await future
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._read_until_eof()
        except Exception:
            logger.exception("reader %s failed; it stops reading fd %d", self._name, self._fd)
        finally:
            try:
                self._deliver(time.time(), self._framer.flush())
            finally:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._finish()

    def _read_until_eof(self) -> None:
        fd = self._fd
        framer = self._framer
        poller = select.poll()
        poller.register(fd, _POLL_MASK)
        idle_flushed = False  # the pending bytes were offered by an idle flush already
        while True:
            if framer.pending and not idle_flushed and not poller.poll(self._idle_ms):
                self._deliver(time.time(), framer.flush(idle=True))
                idle_flushed = True
                continue
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:  # someone made the fd non-blocking: wait for it
                poller.poll()
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # pty master: the child side is closed
                    return
                raise
            if not data:
                return
            self._bytes_read += len(data)
            self._deliver(time.time(), framer.feed(data))
            idle_flushed = False

    def _deliver(self, timestamp: float, records: list[tuple[str, bool]]) -> None:
        if not records:
            return
        levels = detect_levels([text for text, _ in records])
        lines = [(text, level, partial) for (text, partial), level in zip(records, levels, strict=True)]
        try:
            self._on_lines(timestamp, lines)
        except Exception:
            logger.exception("on_lines of reader %s failed; %d lines dropped", self._name, len(lines))

    def _finish(self) -> None:
        with self._lock:
            self._finished = True
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
