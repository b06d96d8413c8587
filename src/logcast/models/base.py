"""What every model-server parser shares: the state, the phase rules and the fast path.

A parser reads the lines of one run of one server and keeps a `ModelState`. It runs on the
capture path, once per chunk, so the common case, a chunk that holds nothing it reads, costs
one `"\\n".join` and a few substring tests (`needle in blob`) over the joined text: the
needles are plain literals, and only the ones that can matter in the current phase are
tested (a serving llama.cpp looks for 6, a loading one for more). A chunk that holds one
goes the slow way, line by line, through the parser's table of (needle, handler) rows.

Rows are active in a set of phases; the fast needles of a phase are exactly the needles of
its active rows, so a line is read the same whichever chunk it arrives in. A partial record
(a piece of a line) is read like a line: a needle cut in two by a flush is not seen.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import re2

__all__ = ["ModelState", "Parser", "Phase", "Row"]


class Phase(enum.StrEnum):
    LOADING = "loading"  # the first load line was seen; weights are going in
    READY = "ready"  # listening, nothing served yet
    SERVING = "serving"  # a request is in flight
    IDLE = "idle"  # served, and nothing is in flight now
    FAILED = "failed"  # the load (or the engine) died


@dataclass(frozen=True, slots=True)
class ModelState:
    """What the output of a model server says about it.

    `phase` is None until a line says anything. `load_progress` is 0..1 while the loader
    reports progress (checkpoint shards; llama.cpp's dots, an estimate: at most one dot a
    percent) and 1.0 from ready on. `ready_after_s` counts from the first load line, or
    from the watcher's start when no load line was seen. `prompt_tokens_per_s` and
    `gen_tokens_per_s` are the last request's (llama.cpp) or the last periodic report's
    (vLLM, SGLang). Times are the chunk timestamps handed to `feed`.
    """

    phase: Phase | None = None
    load_progress: float | None = None
    ready_after_s: float | None = None
    requests: int = 0
    prompt_tokens_per_s: float | None = None
    gen_tokens_per_s: float | None = None
    last_request_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": None if self.phase is None else self.phase.value,
            "load_progress": self.load_progress,
            "ready_after_s": self.ready_after_s,
            "requests": self.requests,
            "prompt_tokens_per_s": self.prompt_tokens_per_s,
            "gen_tokens_per_s": self.gen_tokens_per_s,
            "last_request_at": self.last_request_at,
        }


# Phase sets for the rows. None is "nothing read yet".
PRE: frozenset[Phase | None] = frozenset({None, Phase.LOADING})
UP: frozenset[Phase | None] = frozenset({Phase.READY, Phase.SERVING, Phase.IDLE})
STARTABLE: frozenset[Phase | None] = frozenset({None, Phase.LOADING, Phase.FAILED})
ALIVE: frozenset[Phase | None] = PRE | UP
AFTER_LOAD: frozenset[Phase | None] = UP | {None}
_ALL_PHASES: tuple[Phase | None, ...] = (None, *Phase)

Handler = Callable[[str, float], bool]  # (line, timestamp) -> the line was used


@dataclass(frozen=True, slots=True)
class Row:
    """`needle` in a line hands the line to the parser method `handler` in these phases.
    Rows are tried in order, so a specific needle goes before a more general one."""

    needle: str
    handler: str
    phases: frozenset[Phase | None]


_NOT_MARKED: tuple[int, ...] = ()


def number(text: str) -> float | None:
    """A float, or None for nan, inf and anything unreadable."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class Parser:
    """The state machine of one server's output; subclasses give `kind`, `rows` and handlers.

    `feed` returns whether the state changed; `marked` holds the indexes (into that chunk's
    `texts`) of the lines the parser read. Not thread-safe: one capture thread feeds it.
    """

    kind: ClassVar[str]
    rows: ClassVar[tuple[Row, ...]]
    implicit_idle: ClassVar[bool] = False  # no "idle" line: serving ends after `idle_after_s` of silence
    _needles_by_phase: ClassVar[dict[Phase | None, tuple[str, ...]]]
    # One RE2 alternation of a phase's needles: a single linear pass over a chunk that
    # matches nothing, where a substring search per needle was four times as long.
    _prefilter_by_phase: ClassVar[dict[Phase | None, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "rows" in cls.__dict__:
            cls._needles_by_phase = {
                phase: _unique(row.needle for row in cls.rows if phase in row.phases) for phase in _ALL_PHASES
            }
            cls._prefilter_by_phase = {
                phase: re2.compile("|".join(map(re.escape, needles))) if needles else None
                for phase, needles in cls._needles_by_phase.items()
            }

    def __init__(self, *, start: float | None = None, idle_after_s: float = 10.0) -> None:
        bound = {row.handler: getattr(self, row.handler) for row in self.rows}
        self._tables: dict[Phase | None, tuple[tuple[str, Handler], ...]] = {
            phase: tuple((row.needle, bound[row.handler]) for row in self.rows if phase in row.phases)
            for phase in _ALL_PHASES
        }
        self._idle_after = idle_after_s
        self._start = start
        self.marked: tuple[int, ...] = _NOT_MARKED
        self._reset()

    # --- state ------------------------------------------------------------------------

    def _reset(self) -> None:
        self.phase: Phase | None = None
        self.load_progress: float | None = None
        self.ready_after_s: float | None = None
        self.requests = 0
        self.prompt_tokens_per_s: float | None = None
        self.gen_tokens_per_s: float | None = None
        self.last_request_at: float | None = None
        self._load_started: float | None = None
        self._idle_at: float | None = None  # implicit idle: when serving ends without a line
        self._enter(None)

    def _enter(self, phase: Phase | None) -> None:
        self.phase = phase
        self._needles = self._needles_by_phase[phase]
        self._prefilter = self._prefilter_by_phase[phase]
        self._table = self._tables[phase]
        self._scan_lines = self._scans(phase)
        if phase is not Phase.SERVING:
            self._idle_at = None

    def _scans(self, phase: Phase | None) -> bool:
        """Whether every line of a chunk must be looked at in this phase (llama.cpp's dots)."""
        return False

    def state(self) -> ModelState:
        return ModelState(
            self.phase,
            self.load_progress,
            self.ready_after_s,
            self.requests,
            self.prompt_tokens_per_s,
            self.gen_tokens_per_s,
            self.last_request_at,
        )

    def _values(self) -> tuple[object, ...]:
        return (
            self.phase,
            self.load_progress,
            self.ready_after_s,
            self.requests,
            self.prompt_tokens_per_s,
            self.gen_tokens_per_s,
            self.last_request_at,
        )

    # --- the capture path -------------------------------------------------------------

    def feed(self, texts: list[str], partial: list[bool], timestamp: float) -> bool:
        """Read one chunk of framed records (`partial[i]`: `texts[i]` is a piece of a line
        with no end yet). Returns whether the state changed."""
        if self._start is None:
            self._start = timestamp
        blob = "\n".join(texts)
        prefilter = self._prefilter
        if prefilter is None or prefilter.search(blob) is None:
            if not (self._scan_lines and self._may_scan(blob)):
                self.marked = _NOT_MARKED
                idle_at = self._idle_at
                return idle_at is not None and timestamp >= idle_at and self._expire()
        return self._read(texts, partial, timestamp)

    def tick(self, now: float) -> bool:
        """Let time pass without output: an implicit-idle server stops serving."""
        idle_at = self._idle_at
        return idle_at is not None and now >= idle_at and self._expire()

    def _expire(self) -> bool:
        self._enter(Phase.IDLE)
        return True

    def _read(self, texts: list[str], partial: list[bool], timestamp: float) -> bool:
        before = self._values()
        if self._idle_at is not None and timestamp >= self._idle_at:
            self._enter(Phase.IDLE)
        marked: list[int] = []
        for index, text in enumerate(texts):
            if self._scan_lines and self._scan(text, partial[index], timestamp):
                marked.append(index)
                continue
            for needle, handler in self._table:
                if needle in text and handler(text, timestamp):
                    marked.append(index)
                    break
        self.marked = tuple(marked) if marked else _NOT_MARKED
        return self._values() != before

    def _may_scan(self, blob: str) -> bool:
        """In a `_scans` phase, whether the chunk (joined) may hold a line for `_scan`."""
        return True

    def _scan(self, text: str, partial: bool, timestamp: float) -> bool:
        """The per-line look of `_scans` phases; True if it used the line."""
        return False

    # --- phase rules shared by the servers --------------------------------------------
    # Each returns whether the line told the state something (a line that only repeats
    # the phase, another loader line in the middle of the load, is not marked).

    def _begin(self, timestamp: float) -> bool:
        """A line that opens a server's start-up: a fresh load unless one is under way."""
        if self.phase is Phase.LOADING:
            return False
        if self.phase is Phase.FAILED:
            self._reset()
        self._enter(Phase.LOADING)
        self._load_started = timestamp
        return True

    def _loading(self, timestamp: float) -> bool:
        """A line of the load: the load has begun, if nothing said so yet."""
        if self.phase is not None:
            return False
        self._enter(Phase.LOADING)
        self._load_started = timestamp
        return True

    def _progress(self, value: float, timestamp: float) -> bool:
        self._loading(timestamp)
        if self.phase is not Phase.LOADING:
            return False
        self.load_progress = min(max(value, 0.0), 1.0)
        return True

    def _ready(self, timestamp: float) -> bool:
        if self.phase is not None and self.phase is not Phase.LOADING:
            return False
        since = self._load_started if self._load_started is not None else self._start
        self.ready_after_s = None if since is None else max(timestamp - since, 0.0)
        self.load_progress = 1.0
        self._enter(Phase.READY)
        return True

    def _serving(self, timestamp: float) -> bool:
        """A request is in flight (so the server is up, whether or not a line said so)."""
        if self.phase is Phase.FAILED:
            return False
        if self.phase is None or self.phase is Phase.LOADING:
            self._ready(timestamp)
        if self.phase is not Phase.SERVING:
            self._enter(Phase.SERVING)
        if self.implicit_idle:
            self._idle_at = timestamp + self._idle_after
        return True

    def _idle(self, timestamp: float) -> bool:
        """Nothing is in flight: idle after serving; a sign of ready before."""
        if self.phase is Phase.SERVING:
            self._enter(Phase.IDLE)
            return True
        return self._ready(timestamp)

    def _request(self, timestamp: float) -> None:
        self.requests += 1
        self.last_request_at = timestamp

    def _fail(self, timestamp: float) -> bool:
        if self.phase is Phase.FAILED:
            return False
        self._enter(Phase.FAILED)
        return True

    def ended(self, timestamp: float) -> bool:
        """The process ended: while loading, that is a failed load."""
        return self.phase is Phase.LOADING and self._fail(timestamp)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    """In order, without repeats; a needle that contains another one is dropped (the
    shorter one finds its lines already)."""
    seen = list(dict.fromkeys(items))
    return tuple(n for n in seen if not any(o != n and o in n for o in seen))
