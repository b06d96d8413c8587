"""Why a run died: its exit code or signal, the kernel's OOM killer, a readiness probe that
timed out, and its last error lines, as `last_exit` in `info()` and the status record say.

OOM kills are told by the `oom_kill` counter of the child's memory cgroup (cgroup v2
`memory.events`, v1 `memory.oom_control`), read when the child is spawned and when it
has ended: readable without privileges, unlike the kernel log (`dmesg`, `/dev/kmsg`),
which is not relied on. An increment with a SIGKILL that logcast did not send is an OOM
kill; the counter is per cgroup, so this is an inference, and children usually share
logcast's cgroup.
"""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "LAST_ERRORS",
    "LastExit",
    "OomCounter",
    "RunHistory",
    "cgroup_oom_counter",
    "duration",
    "how_it_ended",
    "oom_counter_file",
    "read_oom_kills",
]

logger = logging.getLogger(__name__)

LAST_ERRORS = 5  # error lines of a run kept for its `last_exit`
ERROR_TEXT = 500  # characters kept of each
SUMMARY_TEXT = 200  # characters of the last error quoted in the status record

OomCounter = Callable[[int], Callable[[], int | None]]
"""Given a live child's pid, a function that reads the OOM-kill counter of its memory
cgroup (None when unknown). The cgroup is looked up at once: an ended child's
`/proc/<pid>/cgroup` no longer names it."""


class _Numbered(Protocol):
    @property
    def last_seq(self) -> int: ...


class RunHistory(Protocol):
    """Where the supervisor reads the number of the last record of a process, to tell the
    first and last seq of a run (`logcast.hub.Hub` is one: its `get(name).last_seq`)."""

    def get(self, name: str, /) -> _Numbered: ...


def _unknown() -> int | None:
    return None


def read_oom_kills(path: Path) -> int | None:
    """The `oom_kill` count in a cgroup's `memory.events` (v2) or `memory.oom_control` (v1)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def oom_counter_file(
    pid: int, *, proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")
) -> Path | None:
    """The file that counts OOM kills in `pid`'s memory cgroup, or None: cgroup v2
    (`0::/path` → `<cgroup>/path/memory.events`, or under `unified/` on a hybrid host),
    else v1 (`N:memory:/path` → `<cgroup>/memory/path/memory.oom_control`)."""
    try:
        text = (proc / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    candidates: list[Path] = []
    v1: list[Path] = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        relative = path.strip().lstrip("/")
        if ".." in Path(relative).parts:
            continue
        if hierarchy == "0" and not controllers:
            candidates += [
                cgroup / relative / "memory.events",
                cgroup / "unified" / relative / "memory.events",
            ]
        elif "memory" in controllers.split(","):
            v1.append(cgroup / "memory" / relative / "memory.oom_control")
    for candidate in candidates + v1:
        if read_oom_kills(candidate) is not None:
            return candidate
    return None


def cgroup_oom_counter(pid: int) -> Callable[[], int | None]:
    """The production `OomCounter`: reads the real cgroup files."""
    path = oom_counter_file(pid)
    if path is None:
        return _unknown
    return functools.partial(read_oom_kills, path)


def duration(seconds: float) -> str:
    """`0.4s`, `12s`, `2m13s`, `1h05m`."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def how_it_ended(code: int, *, killed_by_logcast: bool, oom_kills: int) -> tuple[str, str | None, bool]:
    """(reason, signal name or None, OOM-killed) of a run that ended by itself with `code`
    (negative: killed by that signal). `oom_kills`: the increase of its cgroup's counter."""
    if code >= 0:
        reason, name, oom = f"exited with code {code}", None, False
    else:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        oom = code == -signal.SIGKILL and not killed_by_logcast and oom_kills > 0
        if oom:
            reason = "killed by the kernel's OOM killer (SIGKILL)"
        elif code == -signal.SIGKILL and not killed_by_logcast:
            reason = "killed by SIGKILL (not by logcast)"
        else:
            reason = f"killed by {name}"
    if oom_kills > 0 and not oom:
        reason += " (the kernel's OOM killer killed a process of its memory cgroup during this run)"
    return reason, name, oom


@dataclass(frozen=True)
class LastExit:
    """The last run of a process that ended in failure (`info()["last_exit"]`)."""

    run: int
    at: float  # Unix time
    exit_code: int | None  # None: it failed to start
    signal: str | None  # "SIGKILL" when a signal ended it
    oom_killed: bool
    reason: str
    last_errors: tuple[str, ...]  # its last error-level lines, oldest first
    first_seq: int | None  # its first record (the "starting" status), when the history is known
    last_seq: int | None  # its last record (the status that says it ended)

    @property
    def short(self) -> str:
        """`exit code 1`, `SIGSEGV`, `OOM-killed`, `failed to start`: for other processes' reasons."""
        if self.oom_killed:
            return "OOM-killed"
        if self.signal is not None:
            return self.signal
        if self.exit_code is not None:
            return f"exit code {self.exit_code}"
        return "failed to start"

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["last_errors"] = list(self.last_errors)
        return fields
