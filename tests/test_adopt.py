"""Descendants that leave their process group (a daemon's double fork and `setsid`) are
adopted: stopped with their process, killed when its run ends, killed by the guard when
logcast is SIGKILLed, and reaped. Real processes; each test waits for a condition."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from logcast.supervise.adopt import FAMILY_ENV, Adopter, subreaper_supported
from logcast.supervise.guard import Guard
from logcast.supervise.process import ManagedProcess
from logcast.types import ProcessState
from tests.conftest import stop_group
from tests.test_supervise import DEADLINE, PYTHON, Harness, alive, kill_pids, pids_from, py, until, until_gone

pytestmark = pytest.mark.skipif(not subreaper_supported(), reason="needs prctl and /proc")

S = ProcessState

# Forks a daemon the usual way (fork, setsid, fork); the daemon writes its pid to argv[1]
# and, on SIGTERM, "term" to argv[1].term. The leader stays unless argv[2] is "exit".
DAEMON = """
import os, signal, sys, time
pidfile = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        def term(*_):
            with open(pidfile + ".term", "w") as f:
                f.write("term")
            os._exit(0)
        signal.signal(signal.SIGTERM, term)
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        os.closerange(0, 3)  # a daemon lets go of its output
        while True:
            time.sleep(1)
    os._exit(0)
print("leader up", flush=True)
if sys.argv[2:] == ["exit"]:
    os._exit(0)
time.sleep(300)
"""


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, adopt=True)
    yield harness
    await harness.close()


async def daemon_of(h: Harness, p: ManagedProcess, pidfile: Path) -> int:
    await until(pidfile.exists, "the daemon to write its pid")
    daemon = int(pidfile.read_text())
    h.extra_pids.append(daemon)
    await until(lambda: p.info()["adopted"] == [daemon], "logcast to adopt the daemon")
    return daemon


def reaped(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


async def test_a_daemon_that_left_the_group_is_stopped_with_its_process(h: Harness) -> None:
    pidfile = h.tmp_path / "daemon"
    p = h.process([PYTHON, "-c", DAEMON, str(pidfile)], stop_timeout=5.0)
    await p.start()
    daemon = await daemon_of(h, p, pidfile)
    assert os.getpgid(daemon) != p.pid  # out of reach of the group's killpg
    assert await p.stop()
    assert p.state is S.STOPPED
    assert (h.tmp_path / "daemon.term").read_text() == "term"  # its stop signal, not a SIGKILL
    await until(lambda: reaped(daemon), "the daemon to be reaped")
    assert p.info()["adopted"] == []


async def test_a_daemon_left_by_an_exited_leader_is_stopped_as_a_leftover(h: Harness) -> None:
    pidfile = h.tmp_path / "daemon"
    p = h.process([PYTHON, "-c", DAEMON, str(pidfile), "exit"], stop_timeout=5.0)
    await p.start()
    await until(lambda: p.state is S.EXITED, "the leader's exit")
    assert pidfile.exists()
    daemon = int(pidfile.read_text())
    h.extra_pids.append(daemon)
    await until(lambda: reaped(daemon), "the daemon to be stopped and reaped")
    assert (h.tmp_path / "daemon.term").read_text() == "term"
    assert re.fullmatch(
        r"pid \d+ exited with code 0; stopping what is left of its group and 1 that left it"
        r" \(SIGTERM, SIGKILL after 5s\)",
        h.sink.statuses()[-2].message,
    )


async def test_a_daemon_that_ignores_its_stop_signal_is_killed_after_stop_timeout(h: Harness) -> None:
    pidfile = h.tmp_path / "daemon"
    stubborn = DAEMON.replace(
        "signal.signal(signal.SIGTERM, term)", "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    )
    p = h.process([PYTHON, "-c", stubborn, str(pidfile)], stop_timeout=0.3)
    await p.start()
    daemon = await daemon_of(h, p, pidfile)
    assert await p.stop()
    await until(lambda: reaped(daemon), "the daemon to be killed and reaped")


async def test_a_grandchild_adopted_during_the_stop_gets_the_stop_signal(h: Harness) -> None:
    """Its parent is in the group and alive when the stop begins: it is adopted only when
    the parent died of the stop signal, and gets the signal then."""
    pidfile = h.tmp_path / "kid"
    source = (
        "import signal, subprocess, sys, time\n"
        "kid = '''\nimport os, signal, sys, time\n"
        "def term(*_):\n    open(sys.argv[1] + '.term', 'w').write('term')\n    os._exit(0)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\nos.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "time.sleep(300)\n'''\n"
        "subprocess.Popen([sys.executable, '-c', kid, sys.argv[1]], start_new_session=True)\n"
        "time.sleep(300)\n"
    )
    p = h.process([PYTHON, "-c", source, str(pidfile)], stop_timeout=5.0, reader_grace=0.2)
    await p.start()
    await until(pidfile.exists, "the grandchild up")
    kid = int(pidfile.read_text())
    h.extra_pids.append(kid)
    assert p.info()["adopted"] == []  # its parent lives
    assert await p.stop()
    await until(lambda: reaped(kid), "the grandchild stopped and reaped")
    assert (h.tmp_path / "kid.term").read_text() == "term"


async def test_an_orphan_that_stayed_in_the_group_gets_the_stop_signal_once(h: Harness) -> None:
    """Adopted (and reaped) too, but the group's signal reaches it: logcast adds none."""
    pidfile = h.tmp_path / "kid"
    in_group = (
        DAEMON.replace("    os.setsid()\n", "")
        .replace(
            "            os._exit(0)\n        signal.signal",
            "            time.sleep(0.5)\n            os._exit(0)\n        signal.signal",
        )
        .replace('with open(pidfile + ".term", "w")', 'with open(pidfile + ".term", "a")')
    )
    p = h.process([PYTHON, "-c", in_group, str(pidfile)], stop_timeout=5.0)
    await p.start()
    kid = await daemon_of(h, p, pidfile)
    assert os.getpgid(kid) == p.pid
    assert await p.stop()
    await until(lambda: reaped(kid), "the orphan stopped and reaped")
    assert (h.tmp_path / "kid.term").read_text() == "term"


async def test_an_orphan_that_leaves_the_group_after_it_was_adopted_gets_the_stop_signal(h: Harness) -> None:
    """Adopted in the run's group, then `setsid` (as the tool of that name does after its
    fork): it is followed to its new group (a review: it got no stop signal)."""
    pidfile = h.tmp_path / "kid"
    go = h.tmp_path / "go"
    late = DAEMON.replace("    os.setsid()\n", "").replace(
        "        os.closerange(0, 3)",
        f"        while not os.path.exists({str(go)!r}):\n            time.sleep(0.01)\n"
        "        os.setsid()\n        os.closerange(0, 3)",
    )
    p = h.process([PYTHON, "-c", late, str(pidfile)], stop_timeout=5.0)
    await p.start()
    kid = await daemon_of(h, p, pidfile)
    assert os.getpgid(kid) == p.pid  # adopted while in the run's group
    go.touch()
    await until(lambda: os.getpgid(kid) == kid, "the kid to leave the group")
    assert await p.stop()
    await until(lambda: reaped(kid), "the kid stopped and reaped")
    assert (h.tmp_path / "kid.term").read_text() == "term"


async def test_a_descendant_without_the_family_token_is_not_followed(h: Harness) -> None:
    """`env -i` and `setsid`: not followed (documented), and the stop does not hang on it."""
    source = (
        "import subprocess, sys, time\n"
        "sleep = [sys.executable, '-c', 'import time; time.sleep(300)']\n"
        "kid = subprocess.Popen(sleep, start_new_session=True, env={})\n"
        "print('pids', kid.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    p = h.process(py(source), stop_timeout=1.0, reader_grace=0.2)
    await p.start()
    await until(lambda: any(t.startswith("pids ") for t in h.sink.texts()), "grandchild up")
    (escaped,) = pids_from(h, "pids")
    h.extra_pids.append(escaped)
    try:
        assert await p.stop()
        assert alive(escaped)
        assert p.info()["adopted"] == []
    finally:
        kill_pids([escaped])
    await until_gone([escaped])


async def test_the_family_token_names_the_run_and_is_not_inherited_from_logcast(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAMILY_ENV, "someone-else")
    p = h.process(py(f"import os\nprint('family', os.environ['{FAMILY_ENV}'], flush=True)"))
    await p.start()
    await until(lambda: p.state is S.EXITED, "exit")
    await p.start()
    await until(lambda: p.state is S.EXITED and p.run == 2, "second exit")
    families = [t.split()[1] for t in h.sink.texts() if t.startswith("family ")]
    assert len(families) == 2 and len(set(families)) == 2
    assert all(re.fullmatch(rf"{os.getpid()}\.\d+\.\d+", f) for f in families)


def test_an_orphan_of_an_ended_run_is_killed_when_it_turns_up() -> None:
    """A descendant reparented after its run ended (its parent died late) goes at once."""
    adopter = Adopter()
    sleeper = (
        "import subprocess, sys; k = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])"
    )
    with adopter.spawning() as (token, leader):
        env = {**os.environ, FAMILY_ENV: token}
        parent = subprocess.Popen(
            [PYTHON, "-c", sleeper + "; print(k.pid, flush=True)"], env=env, stdout=subprocess.PIPE
        )
        leader(parent.pid)
    kid: int | None = None
    try:
        assert parent.stdout is not None
        kid = int(parent.stdout.readline())
        adopter.end(token)  # the run is over; its parent still lives
        assert parent.wait(DEADLINE) == 0  # and now leaves the kid to us
        assert psutil.Process(kid).ppid() == os.getpid()
        deadline = time.monotonic() + DEADLINE
        while not reaped(kid):  # each scan finds it (SIGKILL), then reaps it
            assert time.monotonic() < deadline, "the orphan was not killed and reaped"
            adopter.scan()
            time.sleep(0.01)
        assert adopter.adopted(token) == []
    finally:
        adopter.close()
        if kid is not None:
            kill_pids([kid])
        if parent.stdout is not None:
            parent.stdout.close()
        stop_group(parent)


MANAGER = """
import asyncio, sys
from pathlib import Path
from logcast.config import ProcessSettings, Settings
from logcast.supervise.supervisor import Supervisor

class Sink:
    def lines(self, *args):
        pass
    def status(self, *args, **kwargs):
        pass

async def main():
    command = (sys.executable, "-c", sys.argv[1], sys.argv[2])
    process = ProcessSettings(name="child", command=command, cwd=Path.cwd())
    supervisor = Supervisor(Settings(processes={"child": process}), Sink())
    await supervisor.start_autostart()
    while not supervisor.info("child")["adopted"]:
        await asyncio.sleep(0.01)
    print(supervisor.info("child")["adopted"][0], flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


# A daemon (fork, setsid, fork: it does not lead the group it is in) with a worker of its
# own in that group; both pids go to argv[1], "worker" line last.
DAEMON_WITH_WORKER = DAEMON.replace(
    '        with open(pidfile + ".tmp", "w") as f:\n            f.write(str(os.getpid()))',
    "        worker = os.fork()\n"
    "        if worker == 0:\n"
    "            signal.signal(signal.SIGTERM, lambda *_: (open(pidfile + '.worker-term', 'w').close(), os._exit(0)))\n"
    "            while True:\n"
    "                time.sleep(1)\n"
    '        with open(pidfile + ".tmp", "w") as f:\n            f.write(f"{os.getpid()} {worker}")',
)


async def test_a_daemon_s_workers_are_stopped_with_it(h: Harness) -> None:
    """Its group goes whole (a review: the daemon went, its worker was left to init)."""
    pidfile = h.tmp_path / "daemon"
    p = h.process([PYTHON, "-c", DAEMON_WITH_WORKER, str(pidfile)], stop_timeout=5.0)
    await p.start()
    await until(pidfile.exists, "the daemon and its worker")
    daemon, worker = (int(x) for x in pidfile.read_text().split())
    h.extra_pids += [daemon, worker]
    await until(lambda: p.info()["adopted"] == [daemon], "the daemon adopted")
    assert os.getpgid(worker) == os.getpgid(daemon) != p.pid
    assert await p.stop()
    await until(lambda: reaped(daemon) and not alive(worker), "the daemon and its worker gone")
    assert (h.tmp_path / "daemon.worker-term").exists()  # the stop signal, with its group


async def test_a_sigkilled_manager_leaves_no_daemon_behind(tmp_path: Path) -> None:
    script = tmp_path / "manager.py"
    script.write_text(MANAGER)
    pidfile = tmp_path / "daemon"
    manager = subprocess.Popen(
        [PYTHON, str(script), DAEMON_WITH_WORKER, str(pidfile)],
        stdout=subprocess.PIPE,
        start_new_session=True,
        cwd=tmp_path,
    )
    pids: list[int] = []
    try:
        assert manager.stdout is not None
        daemon = int(manager.stdout.readline())  # adopted, so the guard knows it
        pids = [int(x) for x in pidfile.read_text().split()]
        assert pids[0] == daemon and all(alive(pid) for pid in pids)
        manager.kill()
        assert manager.wait(DEADLINE) == -signal.SIGKILL
        await until_gone(pids)  # the daemon, and its worker with its group
    finally:
        kill_pids(pids)
        if manager.stdout is not None:
            manager.stdout.close()
        stop_group(manager)


def test_the_guard_kills_single_registered_processes() -> None:
    proc = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(300)"], stdout=subprocess.DEVNULL)
    kept = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(300)"], stdout=subprocess.DEVNULL)
    guard = Guard()
    try:
        guard.start()
        guard.register_pid(proc.pid)
        guard.register_pid(kept.pid)
        guard.unregister_pid(kept.pid)
        guard.close()
        assert proc.wait(DEADLINE) == -signal.SIGKILL
        assert kept.poll() is None
    finally:
        guard.close()
        for p in (proc, kept):
            p.kill()
            p.wait()


def test_logcast_is_a_subreaper_only_while_an_adopter_needs_it() -> None:
    def flag() -> int:
        out = subprocess.run(
            [PYTHON, "-c", ADOPTERS], capture_output=True, text=True, check=True, timeout=DEADLINE
        ).stdout
        return int(out)

    assert flag() == 0


ADOPTERS = """
import ctypes, ctypes.util
from logcast.supervise.adopt import Adopter
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
def flag():
    value = ctypes.c_int(-1)
    libc.prctl(37, ctypes.byref(value), 0, 0, 0)
    return value.value
a, b = Adopter(), Adopter()
assert flag() == 0
a.token(); b.token()
assert flag() == 1
a.close()
assert flag() == 1  # b still needs it
b.close()
print(flag())
"""


# Forks 3 grandchildren that leave their parent at once and die 0.1 s later: orphans that
# are zombies before any scan sees them alive. argv[2] "setsid": each in a session of its
# own, with no environment (no token). Their pids go to argv[1].
SHORT_ORPHANS = """
import os, sys, time
pids = []
for _ in range(3):
    read, write = os.pipe()
    if os.fork() == 0:
        if sys.argv[2:] == ["setsid"]:
            os.setsid()
        kid = os.fork()
        if kid == 0:
            time.sleep(0.1)
            if sys.argv[2:] == ["setsid"]:
                os.execve(sys.executable, [sys.executable, "-c", "pass"], {})
            os._exit(0)
        os.write(write, b"%d" % kid)
        os._exit(0)
    os.close(write)
    pids.append(os.read(read, 32).decode())
    os.close(read)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(" ".join(pids))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"""


def zombies_of(parent: int, pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            if proc.ppid() == parent and proc.status() == psutil.STATUS_ZOMBIE:
                out.append(pid)
    return out


async def test_orphans_of_a_run_s_group_that_died_unseen_are_reaped(h: Harness) -> None:
    """Their environment is gone with them, but their group says whose they were (a
    review: each `cmd &` of a shell that exits left a zombie under logcast for good)."""
    pidfile = h.tmp_path / "orphans"
    p = h.process([PYTHON, "-c", SHORT_ORPHANS, str(pidfile)])
    await p.start()
    await until(pidfile.exists, "the orphans")
    pids = [int(x) for x in pidfile.read_text().split()]
    await until(lambda: all(reaped(pid) for pid in pids), "the orphans reaped", timeout=10)


MANAGER_OF_STRANGERS = """
import asyncio, sys, time
from pathlib import Path
import psutil
from logcast.config import ProcessSettings, Settings
from logcast.supervise.adopt import every_child_is_ours
from logcast.supervise.supervisor import Supervisor

class Sink:
    def lines(self, *args):
        pass
    def status(self, *args, **kwargs):
        pass

async def main():
    every_child_is_ours()  # as `logcast serve` says it
    command = (sys.executable, "-c", sys.argv[1], sys.argv[2], "setsid")
    process = ProcessSettings(name="child", command=command, cwd=Path.cwd())
    async with Supervisor(Settings(processes={"child": process}), Sink()) as supervisor:
        await supervisor.start_autostart()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if not Path(sys.argv[2]).exists():
                continue
            pids = [int(x) for x in Path(sys.argv[2]).read_text().split()]
            if not any(psutil.pid_exists(pid) for pid in pids):
                print("reaped", flush=True)
                return
        print("left:", [p.pid for p in psutil.Process().children() if p.status() == "zombie"], flush=True)

asyncio.run(main())
"""


def test_in_logcast_serve_every_orphan_that_died_is_reaped(tmp_path: Path) -> None:
    """Without their environment and in sessions of their own, nothing says whose they
    were; in `logcast serve` no child is anyone else's, and they are reaped all the same."""
    script = tmp_path / "manager.py"
    script.write_text(MANAGER_OF_STRANGERS)
    result = subprocess.run(
        [PYTHON, str(script), SHORT_ORPHANS, str(tmp_path / "orphans")],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 20,
        start_new_session=True,
    )
    assert result.stdout.strip() == "reaped", (result.stdout, result.stderr[-2000:])
