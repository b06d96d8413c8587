"""The orphan guard: a tiny process that kills our process groups when logcast dies.

`PR_SET_PDEATHSIG` kills a direct child even when logcast is SIGKILLed, but not that
child's children (a model server's workers holding the GPU and the port); nothing inside
a SIGKILLed process can react, so a process outside must.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

from logcast.supervise.adopt import FAMILY_ENV

__all__ = ["Guard"]

logger = logging.getLogger(__name__)

GUARD_SOURCE = """\
import os, signal
for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(ignored, signal.SIG_IGN)
groups = set()
pids = set()
pending = b""
while True:
    try:
        chunk = os.read(0, 4096)
    except OSError:
        chunk = b""
    if not chunk:
        break
    pending += chunk
    *lines, pending = pending.split(b"\\n")
    for line in lines:
        kind, number = (pids, line[2:]) if line[1:2] == b"p" else (groups, line[1:])
        try:
            number = int(number)
        except ValueError:
            continue
        if line[:1] == b"+":
            kind.add(number)
        elif line[:1] == b"-":
            kind.discard(number)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
for pid in pids:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""


class Guard:
    """Owns the guard process; `register`/`unregister` are thread-safe and never block long.

    The guard reads `+PGID` (a child was spawned; each leads its own group) and `-PGID`
    (done with that group) on its stdin, and `+pPID`/`-pPID` for single processes (the
    descendants logcast adopted, see `adopt`). When the pipe reaches EOF, closed by us or
    by the kernel for a dead logcast, it SIGKILLs every group and process still registered. The write
    end is close-on-exec and children are spawned with `close_fds`, so no child can keep
    the pipe open. A process that leaves its group (`setsid`) is registered once logcast
    adopted it.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._broken = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._fd is not None and not self._broken

    def start(self) -> None:
        """Start the guard process (once; later calls do nothing)."""
        with self._lock:
            if self._proc is not None:
                return
            read_end, write_end = os.pipe()  # both close-on-exec
            try:
                # A fresh interpreter, not a fork of a multi-threaded process.
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", GUARD_SOURCE],
                    stdin=read_end,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,  # no terminal signal reaches it before it did its job
                    close_fds=True,
                    # not of any run of a logcast this one runs under: that one would stop it
                    # with the run's descendants (`adopt`) before it did its job
                    env={name: value for name, value in os.environ.items() if name != FAMILY_ENV},
                )
            except BaseException:
                os.close(write_end)
                raise
            finally:
                os.close(read_end)
            self._fd = write_end

    def register(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid)

    def unregister(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    def register_pid(self, pid: int) -> None:
        """A single process to kill (an adopted descendant that stayed in a group)."""
        self._send(b"+p%d\n" % pid)

    def unregister_pid(self, pid: int) -> None:
        self._send(b"-p%d\n" % pid)

    def _send(self, data: bytes) -> None:
        with self._lock:
            if self._fd is None or self._broken:
                return
            try:
                os.write(self._fd, data)  # < PIPE_BUF: atomic, and the guard reads at once
            except OSError as exc:
                self._broken = True
                logger.warning("orphan guard is gone (%s): children may outlive a crash of logcast", exc)

    def close(self, timeout: float = 5.0) -> None:
        """Close the pipe (the guard kills any group still registered) and reap the guard."""
        with self._lock:
            fd, self._fd = self._fd, None
            proc, self._proc = self._proc, None
        if fd is not None:
            os.close(fd)
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("orphan guard pid %d did not exit; killing it", proc.pid)
                proc.kill()
                proc.wait()
