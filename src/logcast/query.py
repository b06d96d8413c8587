"""Filters over records: level, text, regex, time range.

One `Query` is applied alike by the memory tail, both stores and the streams, so that a
filter means the same thing everywhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import re2

from logcast.ansi import strip_ansi
from logcast.types import LEVEL_ORDER, Level, LogRecord, Stream


def parse_levels(spec: str | None) -> frozenset[Level] | None:
    """`"warning"` → warning and above; `"info,error"` → exactly those. Raises ValueError."""
    if spec is None or not spec.strip():
        return None
    names = [part.strip().lower() for part in spec.split(",") if part.strip()]
    if not names:  # "," names no level: no filter, as an empty value
        return None
    try:
        levels = [Level(name) for name in names]
    except ValueError:
        valid = ", ".join(level.value for level in Level)
        raise ValueError(f"unknown level in {spec!r}; valid levels: {valid}") from None
    if len(levels) == 1:
        floor = LEVEL_ORDER[levels[0]]
        return frozenset(level for level, order in LEVEL_ORDER.items() if order >= floor)
    return frozenset(levels)


MAX_PATTERN = 1000  # characters
MAX_PROGRAM = 2000  # RE2 program size; `(.{1000}.{1000})z` is 16,007: linear, but slow per line
_RE2_MEMORY = 8 << 20  # bytes RE2 may use per pattern for its automata


class Regex:
    """A compiled, case-insensitive RE2 pattern with the one method filters need.

    RE2 because its matching time is linear in the text: Python's `re` backtracks, and a
    user's `(.+)+z` could hold the GIL for minutes, freezing the server and every capture
    thread. RE2 refuses what it cannot match in linear time (backreferences, lookaround);
    we refuse what is linear but slow (a large program, as large counted repetitions
    give). Either is a ValueError saying why, which the API turns into a 422.
    """

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        options = re2.Options()
        options.case_sensitive = False
        options.log_errors = False  # RE2 would print every refused pattern to stderr
        options.max_mem = _RE2_MEMORY
        try:
            self._compiled = re2.compile(pattern, options)
        except UnicodeEncodeError:
            raise ValueError(f"invalid regex {pattern!r}: not valid Unicode text") from None
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise ValueError(
                f"invalid regex {pattern!r}: {reason} (RE2 syntax: no backreferences, no lookaround)"
            ) from None
        if self._compiled.programsize > MAX_PROGRAM:
            raise ValueError(
                f"regex {pattern!r} is too complex (RE2 program size {self._compiled.programsize},"
                f" at most {MAX_PROGRAM}): use smaller repetition counts"
            )
        self.pattern = pattern

    def search(self, text: str) -> bool:
        """The pattern occurs somewhere in `text`."""
        try:
            return self._compiled.search(text) is not None
        except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8
            return self._compiled.search(text.encode("utf-8", "replace").decode("utf-8")) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Regex) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


@functools.lru_cache(maxsize=64)
def cached_regex(pattern: str) -> Regex:
    """`Regex(pattern)`, compiled once for the many calls of one search."""
    return Regex(pattern)


def compile_regex(pattern: str | None) -> Regex | None:
    """Compile a user's regex, case-insensitive, on RE2. Raises ValueError with a readable reason."""
    if pattern is None or pattern == "":
        return None
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"regex longer than {MAX_PATTERN} characters")
    return cached_regex(pattern)


@dataclass(frozen=True, slots=True)
class Query:
    levels: frozenset[Level] | None = None
    text: str | None = None  # case-insensitive substring
    regex: Regex | None = None  # RE2, case-insensitive
    since: float | None = None  # Unix seconds, inclusive
    until: float | None = None  # Unix seconds, exclusive
    # Status records pass every filter: a filtered stream still shows starts and exits.
    keep_status: bool = False
    _folded: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", self.text.casefold() if self.text else None)

    @property
    def is_empty(self) -> bool:
        return self.levels is None and not (  # an empty set of levels matches nothing
            self.text or self.regex or self.since is not None or self.until is not None
        )

    def matches(self, record: LogRecord) -> bool:
        if self.keep_status and record.stream is Stream.SYSTEM:
            return True
        if self.levels is not None and record.level not in self.levels:
            return False
        if self.since is not None and record.timestamp < self.since:
            return False
        if self.until is not None and record.timestamp >= self.until:
            return False
        if self._folded is None and self.regex is None:
            return True
        message = shown(record.message)
        if self._folded is not None and self._folded not in message.casefold():
            return False
        return self.regex is None or self.regex.search(message)


def shown(message: str) -> str:
    """A line's text as a reader sees it, which is what searches look in: escape sequences
    (a uvicorn's coloured `INFO:`) left out."""
    return strip_ansi(message) if "\x1b" in message else message


EVERYTHING = Query()
