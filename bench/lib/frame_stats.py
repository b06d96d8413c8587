"""The frame budget of a page, from the times it drew animation frames and from its long
tasks, over a window of its own clock: what a user sees as smooth or stuck."""

from __future__ import annotations

import itertools
import math
from typing import Any


def frame_stats(frames: list[float], w0: float, w1: float, now: float) -> dict[str, Any]:
    """Frames in the window [w0, w1] (page clock, ms; `frames`: the times of animation frames). Every frame interval that overlaps the
    window counts whole; if no frame came after w1 by `now`, the frame still open counts too,
    up to w1 (`open`: the longest frame is then at least that long)."""
    frames = sorted(frames)
    gaps = [b - a for a, b in itertools.pairwise(frames) if b > w0 and a < w1]
    still_open = bool(frames) and frames[-1] < w1 and now > w1
    if still_open:
        gaps.append(w1 - frames[-1])
    elif not frames:
        gaps.append(w1 - w0)
        still_open = True
    inside = sum(1 for t in frames if w0 <= t <= w1)
    gaps.sort()

    def pct(p: float) -> float:
        return gaps[min(len(gaps) - 1, max(0, math.ceil(p / 100 * len(gaps)) - 1))]

    return {
        "fps": inside / ((w1 - w0) / 1000),
        "p50": pct(50),
        "p95": pct(95),
        "max": gaps[-1],
        "over50": sum(1 for g in gaps if g > 50),
        "open": still_open and gaps[-1] == w1 - (frames[-1] if frames else w0),
    }


def task_stats(tasks: list[list[float]], w0: float, w1: float) -> dict[str, float]:
    """Long tasks ([start, duration], page clock, ms) that overlap [w0, w1]: count, total, longest."""
    durations = [d for s, d in tasks if s + d >= w0 and s <= w1]
    return {"n": len(durations), "total": sum(durations), "max": max(durations, default=0.0)}
