"""Latency as a histogram (0.01 ms buckets up to 1 s, then 10 ms up to ~5 min): a client adds
a million lines a second at the cost of one list increment each, and percentiles stay exact
to the bucket."""

from __future__ import annotations

import math
from typing import Any

FINE_BUCKETS = 100_000  # 0.01 ms buckets up to 1 s: a target of 0.3 ms is read to 3%
COARSE_BUCKETS = 30_000  # then 10 ms buckets up to 301 s
BUCKET_COUNT = FINE_BUCKETS + COARSE_BUCKETS


def bucket_index(ms: float) -> int:
    if ms < 1000.0:
        return int(ms * 100.0) if ms > 0 else 0
    return min(BUCKET_COUNT - 1, FINE_BUCKETS + int((ms - 1000.0) / 10.0))


def bucket_upper_ms(i: int) -> float:
    """Upper edge of bucket `i`, in ms (conservative)."""
    if i < FINE_BUCKETS:
        return (i + 1) / 100.0
    return 1000.0 + (i - FINE_BUCKETS + 1) * 10.0


class LatencyHistogram:
    """Line counts per bucket (only the buckets used) and the largest latency seen."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.max_ms = 0.0

    @classmethod
    def from_list(cls, counts: list[int], max_ms: float) -> LatencyHistogram:
        histogram = cls()
        histogram.counts = {i: c for i, c in enumerate(counts) if c}
        histogram.max_ms = max_ms
        return histogram

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LatencyHistogram:
        histogram = cls()
        histogram.counts = {int(k): int(v) for k, v in d["counts"].items()}
        histogram.max_ms = float(d["max_ms"])
        return histogram

    def to_json(self) -> dict[str, Any]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "max_ms": self.max_ms}

    def merge(self, other: LatencyHistogram) -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.max_ms = max(self.max_ms, other.max_ms)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float, expected: int | None = None) -> float:
        """ms at percentile `p` (0..100) of `expected` lines; lines never received count as
        infinitely late, so a percentile that falls among them is `inf`."""
        n = expected if expected is not None else self.total
        if n <= 0:
            return math.nan
        rank = max(1, math.ceil(p / 100.0 * n))
        seen = 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen >= rank:
                return bucket_upper_ms(k)
        return math.inf

    def max_value(self) -> float:
        """The largest latency seen, ms (exact above 1 s, to 0.01 ms below)."""
        if not self.counts:
            return math.nan
        top = max(self.counts)
        return self.max_ms if top >= FINE_BUCKETS else bucket_upper_ms(top)


def format_ms(ms: float, missing_note: str = "missing") -> str:
    """A latency for the tables: `n/a` for nan, `missing_note` for a line that never came."""
    if math.isnan(ms):
        return "n/a"
    if math.isinf(ms):
        return missing_note
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"
