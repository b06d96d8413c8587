"""An overall deadline for a benchmark whose waits could each hang: past it, the process
groups it started are stopped and the benchmark exits, leaving nothing behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading

from tests.util import stop_group


class Watchdog:
    """Past the overall deadline: stop the process groups in `groups`, then exit (status 3)."""

    def __init__(self) -> None:
        self.groups: list[subprocess.Popen[bytes]] = []
        self._done = threading.Event()

    def start(self, seconds: float) -> None:
        threading.Thread(target=self._run, args=(seconds,), name="watchdog", daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    def _run(self, seconds: float) -> None:
        if self._done.wait(seconds):
            return
        print(f"\nwatchdog: the benchmark ran past {seconds:.0f} s; stopping everything", flush=True)
        for proc in self.groups:
            with contextlib.suppress(Exception):
                stop_group(proc, 5)
        os._exit(3)
