"""Where a dotted TOML key is written (its line), since `tomllib` keeps no positions:
every configuration error can then point at its line."""

from __future__ import annotations

import re
import tomllib

Key = tuple[str, ...]
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def parse_key(line: str, i: int) -> tuple[Key, int] | None:
    """Parse a dotted TOML key at `line[i:]`; return its parts and the index after it."""
    parts: list[str] = []
    n = len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return None
        char = line[i]
        if char == '"' or char == "'":
            j = i + 1
            chars: list[str] = []
            while j < n and line[j] != char:
                if char == '"' and line[j] == "\\" and j + 1 < n:
                    chars.append(line[j : j + 2])
                    j += 2
                    continue
                chars.append(line[j])
                j += 1
            if j >= n:
                return None
            raw = "".join(chars)
            if char == '"':
                try:
                    raw = tomllib.loads(f'k = "{raw}"')["k"]
                except tomllib.TOMLDecodeError:
                    pass
            parts.append(raw)
            i = j + 1
        else:
            bare = BARE_KEY.match(line, i)
            if not bare:
                return None
            parts.append(bare.group())
            i = bare.end()
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == ".":
            i += 1
            continue
        return tuple(parts), i


class KeyLocator:
    """Maps dotted keys to the (1-based) line where they are written.

    It scans the text once for table headers and `key =` lines (skipping multi-line
    strings); a key it cannot place (inside an inline table) falls back to its nearest
    placed parent, which is on the same line in TOML 1.0.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[Key, int] = {}  # first line of each key
        self.by_line: dict[int, Key] = {}  # the full key written on each line
        table: Key = ()
        closing: str | None = None  # inside a multi-line string ending with this
        for number, line in enumerate(text.splitlines(), start=1):
            if closing is not None:
                if closing in line:
                    closing = None
                continue
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("["):
                array = stripped.startswith("[[")
                parsed = parse_key(stripped, 2 if array else 1)
                if parsed is not None:
                    table = parsed[0]
                    self._note(table, number)
                    self.by_line[number] = table
                continue
            parsed = parse_key(stripped, 0)
            if parsed is None:
                continue
            key, end = parsed
            if end >= len(stripped) or stripped[end] != "=":
                continue
            self._note(table + key, number)
            self.by_line[number] = table + key
            value = stripped[end + 1 :].lstrip()
            for quote in ('"""', "'''"):
                if value.startswith(quote) and quote not in value[3:]:
                    closing = quote

    def _note(self, key: Key, line: int) -> None:
        for length in range(1, len(key) + 1):
            self.lines.setdefault(key[:length], line)

    def line_of(self, key: Key) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

    def key_at(self, line: int) -> Key | None:
        """The key (or table header) written on that line."""
        return self.by_line.get(line)


def dotted(key: Key) -> str:
    """`("process", "my app", "cwd")` → `process."my app".cwd`, as it is written in TOML."""
    return ".".join(part if BARE_KEY.fullmatch(part) else f'"{part}"' for part in key)
