"""A thread that times `GET /healthz` while a benchmark does its worst: the server's event
loop is only as free as this answer is quick."""

from __future__ import annotations

import threading
import time


class HealthzProbe(threading.Thread):
    """`GET /healthz` every `every` seconds until `stop` is set: each answer's time
    (`times`), the failures, and `sample()` called after each answer (for figures to
    take alongside, such as the server's RSS)."""

    def __init__(self, url: str, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.every = every
        self.times: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    @property
    def worst(self) -> float:
        return max(self.times, default=0.0)

    @property
    def answers(self) -> int:
        return len(self.times) - self.failures

    def sample(self) -> None:
        pass

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=10.0, trust_env=False) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(self.url + "/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.times.append(time.perf_counter() - started)
                self.failures += not ok
                self.sample()
                self.stop.wait(self.every)
