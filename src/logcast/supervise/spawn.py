"""Spawning children: own process group, pipes or a pty, death with logcast, reaping."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from logcast.config import ProcessSettings
from logcast.errors import LogcastError
from logcast.supervise.adopt import FAMILY_ENV, Adopter, subreaper_supported
from logcast.supervise.guard import Guard
from logcast.supervise.prctl import prctl as _prctl

__all__ = ["Child", "SpawnError", "Spawner", "child_env", "spawn"]

logger = logging.getLogger(__name__)

PTY_ROWS, PTY_COLS = 50, 200
SECRET_ENV = ("LOGCAST_TOKEN", "LOGCAST_REDIS_URL")  # never handed to children unless their config sets it
SCAN_EVERY = 1.0  # seconds between looks for adopted descendants (see `adopt`)
KILL_REAP = 2.0  # seconds to reap the adopted descendants SIGKILLed at the end

_PR_SET_PDEATHSIG = 1


class SpawnError(LogcastError):
    """The child could not be started; the message names the cause."""


def child_env(settings: ProcessSettings, family: str | None = None) -> dict[str, str]:
    """os.environ + the configured env, with PYTHONUNBUFFERED=1 unless the config sets it,
    and the run's `LOGCAST_FAMILY` token if it has one."""
    env = dict(os.environ)
    for name in SECRET_ENV:
        env.pop(name, None)
    env.pop(FAMILY_ENV, None)  # logcast run by logcast: its children are its own
    env.update(settings.env)
    if family is not None:
        env[FAMILY_ENV] = family
    if "PYTHONUNBUFFERED" not in settings.env:
        env["PYTHONUNBUFFERED"] = "1"
    if settings.pty and "TERM" not in env:
        env["TERM"] = "xterm-256color"
    return env


def _make_preexec(pty: bool) -> Callable[[], None]:
    parent = os.getpid()
    prctl = _prctl

    def preexec() -> None:  # runs in the forked child, before exec: keep it tiny
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # logcast died before the line above
                os.kill(os.getpid(), signal.SIGKILL)
        if pty:
            with contextlib.suppress(OSError):
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return preexec


def _open_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    with contextlib.suppress(OSError):
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", PTY_ROWS, PTY_COLS, 0, 0))
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR  # oflag: keep "\n" as written
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return master, slave


def _describe_failure(exc: OSError, settings: ProcessSettings) -> str:
    program = settings.command[0]
    if exc.filename is not None and str(exc.filename) == str(settings.cwd):
        if isinstance(exc, FileNotFoundError):
            return f"working directory not found: {settings.cwd}"
        return f"cannot enter working directory {settings.cwd}: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {program}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {program}"
    return f"{exc.strerror or exc}: {program}"


@dataclass(eq=False)
class Child:
    """A spawned child. `stdout` is the pipe's read end (the master under a pty).

    `wait_exit` only peeks at the exit status (`waitid(WNOWAIT)`): the leader stays a
    zombie, which pins its process-group id, so killing leftovers of the group can never
    hit a recycled pgid. `reap` collects the zombie afterwards.
    """

    pid: int
    stdout: int
    stderr: int | None
    pty: bool
    popen: subprocess.Popen[bytes] = field(repr=False)  # kept only to mark it reaped
    pidfd: int | None = field(default=None, repr=False)
    exit_code: int | None = None  # known once the leader ended (negative: killed by that signal)
    reaped: bool = False
    family: str | None = None  # the run's LOGCAST_FAMILY token, when descendants are adopted
    adopter: Adopter | None = field(default=None, repr=False)

    @property
    def pgid(self) -> int:
        return self.pid  # the child leads its group (and, under a pty, its session)

    def signal_group(self, sig: int) -> bool:
        """Send `sig` to the whole group and to the descendants that left it and were
        adopted; False when nobody is left."""
        sent = False
        if not self.reaped:
            try:
                os.killpg(self.pgid, sig)
                sent = True
            except (ProcessLookupError, PermissionError):
                pass
        if self.adopter is not None and self.family is not None:
            sent = self.adopter.signal(self.family, sig) or sent
        return sent

    def signal_escaped(self, sig: int) -> bool:
        """Send `sig` to the adopted descendants only (each gets a signal once)."""
        if self.adopter is None or self.family is None:
            return False
        return self.adopter.signal(self.family, sig)

    def escaped(self) -> list[int]:
        """The live descendants that left the group and were adopted."""
        if self.adopter is None or self.family is None:
            return []
        return self.adopter.members(self.family)

    def adopted(self) -> list[int]:
        """The pids of the descendants adopted from this run and not yet reaped."""
        if self.adopter is None or self.family is None:
            return []
        return self.adopter.adopted(self.family)

    def _peek(self, block: bool) -> int | None:
        """The exit code without reaping (the zombie keeps the pgid ours), or None if alive."""
        flags = os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG)
        try:
            result = os.waitid(os.P_PID, self.pid, flags)
        except ChildProcessError:  # someone else reaped it: we cannot know how it ended
            logger.warning("child pid %d was reaped elsewhere; exit status unknown", self.pid)
            self.reaped = True
            return 255
        if result is None:
            return None
        if result.si_code == os.CLD_EXITED:
            return result.si_status
        return -result.si_status  # CLD_KILLED / CLD_DUMPED

    async def wait_exit(self) -> int:
        """Wait until the leader ends; returns its exit code. It stays a zombie until `reap`."""
        if self.exit_code is not None:
            return self.exit_code
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        # A pidfd watched by the loop (`add_reader` works on asyncio's and uvloop's loops),
        # or a waiter thread where pidfds are missing.
        if self.pidfd is not None:
            pidfd = self.pidfd

            def readable() -> None:
                code = self._peek(block=False)
                if code is not None and not done.done():
                    done.set_result(code)

            loop.add_reader(pidfd, readable)
            try:
                code = await done
            finally:
                loop.remove_reader(pidfd)
        else:

            def wait_in_thread() -> None:
                code = self._peek(block=True)

                def deliver() -> None:
                    if not done.done():
                        done.set_result(255 if code is None else code)

                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(deliver)

            threading.Thread(target=wait_in_thread, name=f"reap-{self.pid}", daemon=True).start()
            code = await done
        self.exit_code = code
        return code

    def reap(self) -> None:
        """Collect the zombie (blocking only if the leader is still alive) and close the pidfd."""
        if not self.reaped:
            try:
                _, status = os.waitpid(self.pid, 0)
                code = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                code = self.exit_code if self.exit_code is not None else 255
            self.reaped = True
            if self.exit_code is None:
                self.exit_code = code
        self.popen.returncode = self.exit_code  # so Popen never warns "still running"
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def spawn(settings: ProcessSettings, family: str | None = None) -> Child:
    """Start the child; SpawnError (naming the cause) if it cannot be started.

    The child leads its own process group, so that stop and kill reach its whole family
    with one `killpg` and a Ctrl-C in logcast's terminal does not reach it; under a pty
    it leads its own session with the pty as controlling terminal, as in a terminal. It
    gets `PR_SET_PDEATHSIG(SIGKILL)`, which fires when the *thread* that forked it ends:
    call this from a long-lived thread, the event loop's.
    """
    parent_fds: list[int] = []  # read ends we keep
    child_fds: list[int] = []  # ends the child gets, closed here after the fork
    try:
        try:
            if settings.pty:
                master, slave = _open_pty()
                parent_fds.append(master)
                child_fds.append(slave)
                stdin, stdout, stderr = slave, slave, slave
            else:
                out_r, out_w = os.pipe()
                parent_fds.append(out_r)
                child_fds.append(out_w)
                err_r, err_w = os.pipe()
                parent_fds.append(err_r)
                child_fds.append(err_w)
                stdin, stdout, stderr = subprocess.DEVNULL, out_w, err_w
        except OSError as exc:  # out of descriptors (EMFILE, ENFILE), or of ptys
            where = "a pseudo-terminal" if settings.pty else "pipes"
            raise SpawnError(f"cannot open {where} for its output: {exc.strerror or exc}") from exc
        try:
            # Popen does the fork/exec because it reports exec and chdir errors precisely.
            popen = subprocess.Popen(
                list(settings.command),
                cwd=settings.cwd,
                env=child_env(settings, family),
                close_fds=True,
                start_new_session=settings.pty,
                process_group=None if settings.pty else 0,
                preexec_fn=_make_preexec(settings.pty),
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
            )
        except OSError as exc:
            raise SpawnError(_describe_failure(exc, settings)) from exc
        except subprocess.SubprocessError as exc:
            raise SpawnError(f"cannot start {settings.command[0]}: {exc}") from exc
    except BaseException:
        for fd in parent_fds:
            os.close(fd)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    pidfd: int | None = None
    with contextlib.suppress(OSError, AttributeError):
        pidfd = os.pidfd_open(popen.pid)
    if settings.pty:
        return Child(popen.pid, parent_fds[0], None, True, popen, pidfd, family=family)
    return Child(popen.pid, parent_fds[0], parent_fds[1], False, popen, pidfd, family=family)


class Spawner:
    """Spawns children and tells the orphan guard (if any) about their groups.

    With `adopt`, logcast is a child subreaper while it has children, and the descendants
    of a run that leave its group are followed (`adopt.Adopter`): signalled with the
    group, killed when the run ends, known to the guard, reaped. `close` kills what is
    left of them. Call `spawn` on the event loop: a task there looks for new orphans every
    `SCAN_EVERY` seconds.
    """

    def __init__(
        self,
        guard: Guard | None = None,
        *,
        adopt: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.guard = guard
        self.adopter = Adopter(guard) if adopt and subreaper_supported() else None
        self._sleep = sleep
        self._scanning: asyncio.Task[None] | None = None

    def spawn(self, settings: ProcessSettings) -> Child:
        if self.guard is not None:
            try:
                self.guard.start()  # first spawn only; before the child exists
            except OSError as exc:  # tried again at the next spawn
                raise SpawnError(f"cannot start the orphan guard: {exc.strerror or exc}") from exc
        if self.adopter is None:
            child = spawn(settings)
        else:
            with self.adopter.spawning() as (family, leader):
                child = spawn(settings, family)
                leader(child.pid)
            child.adopter = self.adopter
        if self.guard is not None:
            self.guard.register(child.pgid)
        if self.adopter is not None and self._scanning is None:
            self._scanning = asyncio.get_running_loop().create_task(self._scan(self.adopter), name="adopt")
        return child

    async def _scan(self, adopter: Adopter) -> None:
        while True:
            await self._sleep(SCAN_EVERY)
            try:
                await asyncio.to_thread(adopter.scan)
            except Exception:  # a bug here must not end the scans
                logger.exception("scan for adopted descendants failed")

    def release(self, child: Child) -> None:
        """Forget the child's group, then reap it (call once its group was killed); what
        is left of the descendants that left the group is SIGKILLed.

        In this order: until the zombie is reaped its pgid cannot be recycled, so the
        guard never holds the id of someone else's group.
        """
        if self.adopter is not None and child.family is not None:
            self.adopter.end(child.family)
        if self.guard is not None:
            self.guard.unregister(child.pgid)
        child.reap()
        if self.adopter is not None:
            self.adopter.spawned_ended(child.pid)

    def close(self) -> None:
        """Stop the guard; SIGKILL the adopted descendants (reaping only those dead already)."""
        self._stop_scanning()
        if self.adopter is not None:
            self.adopter.close()
        if self.guard is not None:
            self.guard.close()

    async def aclose(self) -> None:
        """`close`, reaping the adopted descendants it killed (up to `KILL_REAP` s, in a thread)."""
        self._stop_scanning()
        if self.adopter is not None:
            await asyncio.to_thread(self.adopter.close, KILL_REAP)
        if self.guard is not None:
            self.guard.close()

    def _stop_scanning(self) -> None:
        if self._scanning is not None:
            self._scanning.cancel()
            self._scanning = None
