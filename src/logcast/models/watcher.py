"""The watcher of one process's output: a fixed parser, or one chosen from the first lines."""

from __future__ import annotations

from logcast.models.base import ModelState, Parser
from logcast.models.detect import KINDS, detect
from logcast.models.llamacpp import LlamaCppParser
from logcast.models.sglang import SglangParser
from logcast.models.vllm import VllmParser

__all__ = ["CHOICES", "DETECT_LINES", "ModelWatcher", "make_watcher"]

CHOICES: tuple[str, ...] = (*KINDS, "none")  # what `parse = "..."` may say; absent means auto
DETECT_LINES = 2000  # an undetected watcher gives up after this many lines

_PARSERS: dict[str, type[Parser]] = {
    "llamacpp": LlamaCppParser,
    "vllm": VllmParser,
    "sglang": SglangParser,
}
_NOTHING: tuple[int, ...] = ()


class ModelWatcher:
    """Feed it every chunk of a process's records; read `state` when `feed` says it changed.

    `kind` is the parser in use ("llamacpp", "vllm", "sglang"), "none" for a watcher that
    reads nothing, or None while an auto watcher has not recognised the server yet (it looks
    at its first `detect_lines` lines, then gives up and reads nothing). After each `feed`,
    `last_marked` holds the indexes of the chunk's lines the parser read (used for the
    state), for a viewer to mark. One watcher is for one run of a process: make a new one
    when the process restarts. Not thread-safe.
    """

    __slots__ = ("_detect_left", "_idle_after", "_kind", "_parser", "_start")

    def __init__(
        self,
        kind: str | None = None,
        *,
        start: float | None = None,
        idle_after_s: float = 10.0,
        detect_lines: int = DETECT_LINES,
    ) -> None:
        if kind is not None and kind not in CHOICES:
            raise ValueError(f"unknown model server {kind!r}: one of {', '.join(CHOICES)}")
        self._start = start
        self._idle_after = idle_after_s
        self._kind = kind
        self._parser: Parser | None = None
        self._detect_left = detect_lines if kind is None else 0
        if kind is not None and kind != "none":
            self._parser = _PARSERS[kind](start=start, idle_after_s=idle_after_s)

    @property
    def kind(self) -> str | None:
        return self._kind

    @property
    def state(self) -> ModelState:
        parser = self._parser
        return ModelState() if parser is None else parser.state()

    @property
    def last_marked(self) -> tuple[int, ...]:
        parser = self._parser
        return _NOTHING if parser is None else parser.marked

    def feed(self, texts: list[str], partial: list[bool], timestamp: float) -> bool:
        """Read one chunk as the framer hands it on; True if the state changed."""
        parser = self._parser
        if parser is not None:
            return parser.feed(texts, partial, timestamp)
        if self._detect_left <= 0:
            return False
        if self._start is None:
            self._start = timestamp
        kind = detect(texts)
        if kind is None:
            self._detect_left -= len(texts)
            return False
        self._kind = kind
        self._detect_left = 0
        self._parser = parser = _PARSERS[kind](start=self._start, idle_after_s=self._idle_after)
        return parser.feed(texts, partial, timestamp)

    def ended(self, now: float) -> bool:
        """The server's process is gone: a load that had not finished failed (a SIGKILL by
        the OOM killer prints no error line). True if the state changed."""
        parser = self._parser
        return parser is not None and parser.ended(now)

    def tick(self, now: float) -> bool:
        """Time passed without output: True if the state changed (SGLang's serving ends)."""
        parser = self._parser
        return parser is not None and parser.tick(now)


def make_watcher(kind: str | None, *, start: float | None = None, idle_after_s: float = 10.0) -> ModelWatcher:
    """A watcher for `parse = kind`: "llamacpp", "vllm", "sglang", "none", or None to detect
    the server from its first lines. `start` (a timestamp) is where `ready_after_s` counts
    from when the output shows no load line; by default the first chunk's timestamp."""
    return ModelWatcher(kind, start=start, idle_after_s=idle_after_s)
