"""PM2 as the peer of a benchmark: its own daemon in a private `PM2_HOME`, started and
stopped with that home (`pm2 kill`), so that a PM2 someone else runs on the machine is never
touched; the daemon's pid is read from its home and checked gone afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


def pm2_path() -> str | None:
    return shutil.which("pm2")


class PM2:
    """`pm2` commands against a daemon of our own, living in `home`."""

    def __init__(self, home: Path) -> None:
        pm2 = pm2_path()
        if pm2 is None:
            raise RuntimeError("pm2 is not installed (npm install -g pm2)")
        self.pm2 = pm2
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PM2_HOME": str(home)}
        self.daemon_pid: int | None = None

    def run(self, *args: str, timeout: float = 60.0) -> str:
        """`pm2 ARGS…`, its output; RuntimeError when it fails."""
        done = subprocess.run(
            [self.pm2, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"pm2 {' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-500:]}"
            )
        return done.stdout.decode(errors="replace")

    def start_daemon(self) -> None:
        self.run("ping")
        with contextlib.suppress(OSError, ValueError):
            self.daemon_pid = int((self.home / "pm2.pid").read_text().strip())

    def follower(self, args: list[str], stdout: int, stderr: int) -> subprocess.Popen[bytes]:
        """`pm2 ARGS…` left running (`pm2 logs …`), in a session of its own."""
        return subprocess.Popen(
            [self.pm2, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )

    def kill(self) -> None:
        """`pm2 kill` of our daemon (its apps die with it); SIGKILL of its pid if it stays."""
        with contextlib.suppress(Exception):
            self.run("kill", timeout=30)
        pid = self.daemon_pid
        if pid is None:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self._ours(pid):
            time.sleep(0.1)
        if self._ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _ours(self, pid: int) -> bool:
        """`pid` is alive and still our daemon (its command line names our home)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return str(self.home).encode() in f.read()
        except OSError:
            return False
