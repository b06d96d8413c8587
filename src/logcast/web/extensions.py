"""ASGI extensions logcast's server side offers its streams (`scope["extensions"]`): the
connection (`conn`), a response body written directly (`direct`), whole WebSocket frames
(`wsframes`). Each is a dict under its name; a stream takes what it finds there only if it
is of the kind it expects, so that another server's extension of the same name is ignored."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["offer", "offered"]


def offer(scope: MutableMapping[str, Any], name: str, key: str, value: object) -> None:
    """Put `{key: value}` in `scope`'s extensions as `name`, unless `name` is there already."""
    extensions = scope.get("extensions")
    if extensions is None:
        extensions = scope["extensions"] = {}
    extensions.setdefault(name, {key: value})


def offered(scope: MutableMapping[str, Any], name: str, key: str, kind: type[T]) -> T | None:
    """`scope`'s extension `name`'s `key`, if it is a `kind`."""
    extension = (scope.get("extensions") or {}).get(name)
    value = extension.get(key) if isinstance(extension, dict) else None
    return value if isinstance(value, kind) else None
