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
import ctypes.util
import glob
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from logcast.supervise.guard import Guard

__all__ = ["FAMILY_ENV", "Adopter", "gone", "subreaper_supported"]

logger = logging.getLogger(__name__)

FAMILY_ENV = "LOGCAST_FAMILY"
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37

_adopters = itertools.count(1)
_subreaper_users = 0  # adopters of this process that need the flag; the last one clears it
_subreaper_lock = threading.Lock()
_subreaper_was = 0


def _load_prctl() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()


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


@dataclass(eq=False)
class _Adopted:
    pid: int
    token: str
    leads_group: bool  # it left the group with `setsid`/`setpgid`: its own group goes with it
    sent: set[int] = field(default_factory=set)  # signals it was sent: none twice


class Adopter:
    """Follows the adopted descendants of the runs it named (`token`). Thread-safe: the
    scan runs in a worker thread; signals come from the event loop."""

    def __init__(self, guard: Guard | None = None) -> None:
        self._guard = guard
        self._prefix = f"{os.getpid()}.{next(_adopters)}."
        self._runs = itertools.count(1)
        self._live: set[str] = set()  # tokens of runs not yet ended
        self._adopted: dict[int, _Adopted] = {}  # our children until reaped: pins their pids
        self._leaders: dict[int, str] = {}  # the runs' own children (not orphans): their tokens
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
        group's `killpg` reaches the others), and to the groups they lead, to each at most
        once (a second SIGINT makes many servers quit at once); False when there are none."""
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
        for pid in _own_children() - self._adopted.keys() - self._leaders.keys():
            token = _family_of(pid)
            if token is None or not token.startswith(self._prefix):
                continue  # not one of ours (or gone already): someone else's child to reap
            try:
                leads_group = os.getpgid(pid) == pid
            except ProcessLookupError:
                leads_group = False
            adopted = _Adopted(pid, token, leads_group)
            self._adopted[pid] = adopted
            if self._guard is not None:
                self._guard.register_pid(pid)
                if leads_group:
                    self._guard.register(pid)
            logger.info("adopted pid %d (%s) after its parent exited", pid, token)
            if token not in self._live:
                self._send(adopted, signal.SIGKILL)
        self._reap_locked()

    def _outside_locked(self, token: str) -> list[_Adopted]:
        group = next((pid for pid, of in self._leaders.items() if of == token), None)
        outside = []
        for adopted in self._adopted.values():
            if adopted.token != token:
                continue
            try:
                if os.getpgid(adopted.pid) == group:
                    continue
            except ProcessLookupError:
                pass
            outside.append(adopted)
        return outside

    def _reap_locked(self) -> None:
        for adopted in list(self._adopted.values()):
            try:
                # Peek first: the guard must forget it while its pid is still pinned.
                result = os.waitid(os.P_PID, adopted.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                result = None
                self._forget(adopted)
                continue
            if result is None:
                continue
            self._forget(adopted)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(adopted.pid, 0)

    def _forget(self, adopted: _Adopted) -> None:
        self._adopted.pop(adopted.pid, None)
        if self._guard is not None:
            self._guard.unregister_pid(adopted.pid)
            if adopted.leads_group:
                self._guard.unregister(adopted.pid)

    @staticmethod
    def _send(adopted: _Adopted, sig: int) -> bool:
        """Safe from pid reuse: an adopted process is our child, its pid ours until reaped."""
        if sig in adopted.sent:
            return True
        adopted.sent.add(sig)
        try:
            if adopted.leads_group:
                os.killpg(adopted.pid, sig)
            else:
                os.kill(adopted.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def _alive(pid: int) -> bool:
    """Not yet exited (a zombie is not alive)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


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
