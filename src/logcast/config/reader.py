"""Typed values read out of parsed TOML tables, each refusal carrying the file, the line
and the dotted key of the value it refuses."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from logcast.config.locate import Key, KeyLocator, dotted
from logcast.errors import ConfigError


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _shown(value: object) -> str:
    """`string '80'`, `boolean true`, `array [1, 2]`: what was found, briefly."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        return "table"
    else:
        text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{_type_name(value)} {text}"


class Reader:
    """Validation helpers bound to one text: every error knows its line."""

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.locator = KeyLocator(text)

    def error(self, key: Key, message: str) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.locator.line_of(key), key=dotted(key) or None)

    def expected(self, key: Key, what: str, value: object) -> ConfigError:
        return self.error(key, f"expected {what}, got {_shown(value)}")

    def keys(self, table: Mapping[str, Any], key: Key, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for name in table:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(allowed)})"
                raise self.error((*key, name), "unknown key" + hint)

    def table(self, value: object, key: Key) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.expected(key, "a table", value)
        return value

    def string(self, table: Mapping[str, Any], key: Key, default: str, *, empty: bool = False) -> str:
        value = table.get(key[-1], default)
        if not isinstance(value, str):
            raise self.expected(key, "a string", value)
        if not empty and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def optional_string(self, table: Mapping[str, Any], key: Key) -> str | None:
        if key[-1] not in table:
            return None
        return self.string(table, key, "")

    def boolean(self, table: Mapping[str, Any], key: Key, default: bool) -> bool:
        value = table.get(key[-1], default)
        if not isinstance(value, bool):
            raise self.expected(key, "a boolean (true or false)", value)
        return value

    def integer(self, table: Mapping[str, Any], key: Key, default: int, *, minimum: int = 1) -> int:
        value = table.get(key[-1], default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.expected(key, "an integer", value)
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def seconds(self, table: Mapping[str, Any], key: Key, default: float, *, positive: bool = False) -> float:
        value = table.get(key[-1], default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.expected(key, "a number of seconds", value)
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value}")
        if value < 0 or (positive and value == 0):
            raise self.error(key, f"must be {'greater than 0' if positive else 'at least 0'}, got {value}")
        return float(value)
