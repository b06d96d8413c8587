"""Reading a JSON object written by someone else (another host, an earlier run, a file):
the object, or None, never an exception."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["json_object"]


def json_object(data: bytes | str | None) -> dict[str, Any] | None:
    """`data` as a JSON object, or None if it is not one (not JSON, or another kind of value)."""
    try:
        value = orjson.loads(data or b"")
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
