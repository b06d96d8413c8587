"""Telling of something that may happen many times a second: the first time, then at most
once in a while, with how often it happened."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Rarely"]


class Rarely:
    """Counts what happens; calling it says whether to tell of it now: the first time,
    then at most once every `every` seconds (`count` is how often it happened in all)."""

    def __init__(self, every: float = 60.0, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.count = 0
        self._monotonic = monotonic
        self._told_at = -math.inf

    def __call__(self) -> bool:
        self.count += 1
        now = self._monotonic()
        if now - self._told_at < self.every:
            return False
        self._told_at = now
        return True
