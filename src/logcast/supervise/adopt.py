"""Descendants that left their process group: adopted, stopped with their run, reaped.

A child that daemonizes (a double fork and `setsid`) leaves its process group, so the
group's `killpg` never reaches it and it would outlive its process and logcast. logcast
is therefore a *child subreaper* (`PR_SET_CHILD_SUBREAPER`) while it runs children: an
orphaned descendant is reparented to logcast rather than to init. Each run's children get
`LOGCAST_FAMILY=<token>` in their environment, which their descendants inherit; an
adopted process carrying the token of one of our runs belongs to that run:

- it gets the run's stop signal with the group, and its SIGKILL;
- it is SIGKILLed when its run has ended (as leftovers of a group are);
- the orphan guard knows it, so it dies too if logcast is SIGKILLed;
- it is reaped when it dies, so no zombie is left.

Orphans are found by a scan of `/proc/self/task/*/children` (cheap: only logcast's own
children), at every signal to a run and once a second. A descendant that clears its
environment (`env -i`) and leaves its group is not followed; one that escapes and is
SIGKILLed with logcast within a second of escaping may survive. Only a cgroup holds
every descendant.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import itertools
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from logcast.supervise.prctl import prctl as _prctl

if TYPE_CHECKING:
    from logcast.supervise.guard import Guard


__all__ = ["FAMILY_ENV", "Adopter", "every_child_is_ours", "gone", "subreaper_supported"]

logger = logging.getLogger(__name__)

FAMILY_ENV = "LOGCAST_FAMILY"
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37

_adopters = itertools.count(1)
_subreaper_users = 0  # adopters of this process that need the flag; the last one clears it
_subreaper_lock = threading.Lock()
_subreaper_was = 0


def subreaper_supported() -> bool:
    return _prctl is not None and os.path.exists(f"/proc/{os.getpid()}/task")


def _hold_subreaper() -> bool:
    """Make this process a child subreaper (counted, so that adopters may nest)."""
    global _subreaper_users, _subreaper_was
    if _prctl is None:
        return False
    with _subreaper_lock:
        if _subreaper_users == 0:
            was = ctypes.c_int(0)
            _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0)
            _subreaper_was = was.value
            if _prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                logger.warning(
                    "cannot become a child subreaper (%s): a child that leaves its process group"
                    " may outlive it",
                    os.strerror(ctypes.get_errno()),
                )
                return False
        _subreaper_users += 1
        return True


def _release_subreaper() -> None:
    global _subreaper_users
    if _prctl is None:
        return
    with _subreaper_lock:
        _subreaper_users -= 1
        if _subreaper_users == 0 and not _subreaper_was:
            _prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _own_children() -> set[int]:
    """The pids whose parent is this process (any of its threads)."""
    pids: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with contextlib.suppress(OSError, ValueError):
            with open(path, "rb") as file:
                pids.update(int(word) for word in file.read().split())
    return pids


def _family_of(pid: int) -> str | None:
    """The `LOGCAST_FAMILY` a process was started with; None if it has none or is a zombie."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            environ = file.read()
    except OSError:
        return None
    key = FAMILY_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(key):
            return entry[len(key) :].decode("ascii", "replace")
    return None


def _stat(pid: int) -> tuple[bytes, int, bytes] | None:
    """A process's state letter, process group and start time (`/proc/PID/stat`), which a
    zombie still has; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return fields[0], int(fields[2]), fields[19]
    except (IndexError, ValueError):
        return None


_every_child_is_ours = False


def every_child_is_ours() -> None:
    """Say that this process spawns children only through logcast's `Spawner` (`logcast
    serve`, `logcast agent`): a zombie child that is no run's leader and no guard is then
    an orphan that died before a scan saw it, and is reaped, whatever its environment
    said. In a process that spawns children of its own (a test suite, a program using
    logcast as a library) only orphans known to be ours are."""
    global _every_child_is_ours
    _every_child_is_ours = True


@dataclass(eq=False)
class _Adopted:
    pid: int
    token: str
    group: int  # its process group when adopted: the run's own, or one it made (`setsid`)
    grouped: bool  # that group is one a descendant made in a session of its own: it goes whole
    sent: set[int] = field(default_factory=set)  # signals it was sent: none twice


class Adopter:
    """Follows the adopted descendants of the runs it named (`token`). Thread-safe: the
    scan runs in a worker thread; signals come from the event loop.

    A process group another than a run's own (a daemon's, after `setsid`) is signalled
    whole, so that the daemon's workers go with it, and is known to the guard, as long as
    one of its members is adopted and not reaped: a group id cannot be reused while a
    process of it, a zombie too, is left."""

    def __init__(self, guard: Guard | None = None) -> None:
        self._guard = guard
        self._prefix = f"{os.getpid()}.{next(_adopters)}."
        self._runs = itertools.count(1)
        self._live: set[str] = set()  # tokens of runs not yet ended
        self._adopted: dict[int, _Adopted] = {}  # our children until reaped: pins their pids
        self._groups: Counter[int] = Counter()  # groups of adopted processes (not a run's own): members
        self._leaders: dict[int, str] = {}  # the runs' own children (not orphans): their tokens
        self._strangers: dict[int, bytes] = {}  # children seen not to be ours: pid -> start time
        self._lock = threading.Lock()
        self._holding = False
        self._closed = False

    def token(self) -> str:
        """A token for a new run's environment; the first makes this process a subreaper."""
        with self._lock:
            return self._token_locked()

    @contextlib.contextmanager
    def spawning(self) -> Iterator[tuple[str, Callable[[int], None]]]:
        """`with adopter.spawning() as (token, leader):` spawn with the token, then call
        `leader(pid)`: no scan in between takes the run's own leader for an orphan."""
        with self._lock:
            token = self._token_locked()
            yield token, lambda pid: self._leaders.__setitem__(pid, token)

    def spawned_ended(self, pid: int) -> None:
        """The leader was reaped: its pid is not ours any more."""
        with self._lock:
            self._leaders.pop(pid, None)

    def _token_locked(self) -> str:
        if not self._holding and not self._closed:
            self._holding = _hold_subreaper()
        token = f"{self._prefix}{next(self._runs)}"
        self._live.add(token)
        return token

    def members(self, token: str) -> list[int]:
        """The live adopted pids of that run outside its process group (after a scan)."""
        with self._lock:
            self._scan_locked()
            return [a.pid for a in self._outside_locked(token) if _alive(a.pid)]

    def signal(self, token: str, sig: int) -> bool:
        """Send `sig` to the adopted descendants of that run outside its group (the
        group's `killpg` reaches the others) with their groups, to each at most once (a
        second SIGINT makes many servers quit at once); False when there are none."""
        with self._lock:
            self._scan_locked()
            sent = False
            for adopted in self._outside_locked(token):
                sent = self._send(adopted, sig) or sent
            return sent

    def end(self, token: str) -> None:
        """The run is over: SIGKILL what is left of its adopted descendants, now and when
        more of them turn up."""
        with self._lock:
            self._live.discard(token)
            self._scan_locked()
            for adopted in list(self._adopted.values()):
                if adopted.token == token:
                    self._send(adopted, signal.SIGKILL)
            self._reap_locked()

    def scan(self) -> None:
        """Adopt the new orphans, SIGKILL those of ended runs, reap the dead."""
        with self._lock:
            self._scan_locked()

    def adopted(self, token: str) -> list[int]:
        """The pids adopted from that run that have not been reaped (no scan)."""
        with self._lock:
            return sorted(a.pid for a in self._adopted.values() if a.token == token)

    def close(self, within: float = 0.0) -> None:
        """SIGKILL every adopted descendant, reap those that died within `within` seconds
        (a process stuck in the kernel may take longer: it is left to init), then stop
        being a subreaper. Blocks up to `within`: call it off the event loop."""
        with self._lock:
            self._closed = True
            self._live.clear()
            self._scan_locked()  # SIGKILLs what it finds: no run is live now
            for adopted in list(self._adopted.values()):
                self._send(adopted, signal.SIGKILL)
            deadline = time.monotonic() + within
            self._reap_locked()
            while self._adopted and time.monotonic() < deadline:
                time.sleep(0.005)
                self._reap_locked()
            for adopted in list(self._adopted.values()):
                logger.warning("adopted pid %d has not died of SIGKILL; left to init", adopted.pid)
                self._forget(adopted)
            if self._holding:
                self._holding = False
                _release_subreaper()

    # -------------------------------------------------------------------- under the lock

    def _scan_locked(self) -> None:
        guard = self._guard.pid if self._guard is not None else None
        children = _own_children()
        for pid in self._strangers.keys() - children:
            del self._strangers[pid]
        for pid in children - self._adopted.keys() - self._leaders.keys():
            if pid == guard:
                continue
            stat = _stat(pid)
            if stat is None:
                continue
            state, group, started = stat
            if state == b"Z":  # died before a scan saw it alive: its environment is gone
                if _every_child_is_ours or group in self._leaders or group in self._groups:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                continue
            if self._strangers.get(pid) == started:
                continue
            token = _family_of(pid)
            if token is None or not token.startswith(self._prefix):
                self._strangers[pid] = started  # not one of ours: not looked at again
                continue
            self._adopt(pid, token, group)
        self._regroup_locked()
        self._reap_locked()

    def _adopt(self, pid: int, token: str, group: int) -> None:
        adopted = _Adopted(pid, token, group, False)
        self._adopted[pid] = adopted
        self._join(adopted, group)
        if self._guard is not None:
            self._guard.register_pid(pid)
        logger.info("adopted pid %d (%s) after its parent exited", pid, token)
        if token not in self._live:
            self._send(adopted, signal.SIGKILL)

    def _join(self, adopted: _Adopted, group: int) -> None:
        """Count it in `group` (a run's own is the guard's already)."""
        adopted.group = group
        adopted.grouped = group not in self._leaders and _made_by_a_descendant(adopted.pid, group)
        if adopted.grouped:
            self._groups[group] += 1
            if self._groups[group] == 1 and self._guard is not None:
                self._guard.register(group)

    def _leave(self, adopted: _Adopted) -> None:
        """Count it out of its group; the guard forgets a group with no adopted member."""
        group = adopted.group
        if adopted.grouped and group in self._groups:
            self._groups[group] -= 1
            if self._groups[group] <= 0:
                del self._groups[group]
                if self._guard is not None:
                    self._guard.unregister(group)
        adopted.grouped = False

    def _regroup_locked(self) -> None:
        """An adopted process may leave its group after it was adopted (`setsid`, as the
        tool of that name does after its fork): follow it to the new one."""
        for adopted in self._adopted.values():
            try:
                group = os.getpgid(adopted.pid)
            except ProcessLookupError:
                continue
            if group != adopted.group:
                self._leave(adopted)
                self._join(adopted, group)

    def _outside_locked(self, token: str) -> list[_Adopted]:
        group = next((pid for pid, of in self._leaders.items() if of == token), None)
        return [a for a in self._adopted.values() if a.token == token and a.group != group]

    def _reap_locked(self) -> None:
        for adopted in list(self._adopted.values()):
            try:
                # Peek first: the guard must forget it while its pid is still pinned.
                result = os.waitid(os.P_PID, adopted.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                self._forget(adopted)
                continue
            if result is None:
                continue
            self._forget(adopted)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(adopted.pid, 0)

    def _forget(self, adopted: _Adopted) -> None:
        """Before it is reaped: while it is a zombie, its pid and group are still its own."""
        self._adopted.pop(adopted.pid, None)
        if self._guard is not None:
            self._guard.unregister_pid(adopted.pid)
        self._leave(adopted)

    def _send(self, adopted: _Adopted, sig: int) -> bool:
        """To its group, where it made one, else to it alone. Safe from reuse: an adopted
        process is our child, its pid (and the group it is in) ours until it is reaped."""
        if sig in adopted.sent:
            return True
        group = adopted.group
        try:
            whole = adopted.grouped and os.getpgid(adopted.pid) == group
        except ProcessLookupError:
            whole = False
        # the others of its group get it now too: none of them gets it twice
        for other in [a for a in self._adopted.values() if a.group == group] if whole else [adopted]:
            other.sent.add(sig)
        try:
            if whole:
                os.killpg(group, sig)
            else:
                os.kill(adopted.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def _made_by_a_descendant(pid: int, group: int) -> bool:
    """The process is in a session other than logcast's, which only a descendant of ours
    could have made (`setsid`): its group is all our descendants. Never logcast's own
    group, nor one of logcast's session (a shell's other jobs may be there)."""
    try:
        return group != os.getpgrp() and os.getsid(pid) != os.getsid(0)
    except ProcessLookupError:
        return False


def _alive(pid: int) -> bool:
    """Not yet exited (a zombie is not alive)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in (b"Z", b"X")


async def gone(pids: list[int]) -> None:
    """Until each of these processes (our children) has exited, watched by pidfd."""
    loop = asyncio.get_running_loop()
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # gone already (or no pidfds: it is SIGKILLed at the run's end)
            continue
        exited: asyncio.Future[None] = loop.create_future()

        def readable(exited: asyncio.Future[None] = exited) -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await exited
        finally:
            loop.remove_reader(fd)
            os.close(fd)
