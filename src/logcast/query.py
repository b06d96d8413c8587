"""Filters over records: level, text, regex, time range.

One `Query` is built from request parameters and applied the same way by the
memory tail, the SQLite store, the Redis store and the streams, so that a filter
means the same thing everywhere.

`levels`: a single level means "this level or more severe"; several levels
(`"info,error"`) mean exactly those. Status records (stream `system`) pass every
filter when `keep_status` is set (streams keep them so that a filtered view still
shows starts and exits); history pages leave it off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from logcast.types import LEVEL_ORDER, Level, LogRecord, Stream


def parse_levels(spec: str | None) -> frozenset[Level] | None:
    """`"warning"` → warning and above; `"info,error"` → exactly those. Raises ValueError."""
    if spec is None or not spec.strip():
        return None
    names = [part.strip().lower() for part in spec.split(",") if part.strip()]
    try:
        levels = [Level(name) for name in names]
    except ValueError:
        valid = ", ".join(level.value for level in Level)
        raise ValueError(f"unknown level in {spec!r}; valid levels: {valid}") from None
    if len(levels) == 1:
        floor = LEVEL_ORDER[levels[0]]
        return frozenset(level for level, order in LEVEL_ORDER.items() if order >= floor)
    return frozenset(levels)


def compile_regex(pattern: str | None) -> re.Pattern[str] | None:
    """Compile a user's regex, case-insensitive. Raises ValueError with a readable reason."""
    if pattern is None or pattern == "":
        return None
    if len(pattern) > 1000:
        raise ValueError("regex longer than 1000 characters")
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Query:
    levels: frozenset[Level] | None = None
    text: str | None = None  # case-insensitive substring
    regex: re.Pattern[str] | None = None
    since: float | None = None  # Unix seconds, inclusive
    until: float | None = None  # Unix seconds, exclusive
    keep_status: bool = False
    _folded: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", self.text.casefold() if self.text else None)

    @property
    def is_empty(self) -> bool:
        return not (
            self.levels or self.text or self.regex or self.since is not None or self.until is not None
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
        if self._folded is not None and self._folded not in record.message.casefold():
            return False
        return not (self.regex is not None and self.regex.search(record.message) is None)

    def filter(self, records: list[LogRecord]) -> list[LogRecord]:
        if self.is_empty:
            return records
        return [r for r in records if self.matches(r)]


EVERYTHING = Query()
