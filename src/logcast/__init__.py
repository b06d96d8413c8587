"""logcast: run processes and watch their logs live.

`Client` and `AsyncClient` are imported on first use, so that the engine does not pull
in the HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logcast.types import EventType, Level, LogRecord, ProcessState, Stream

if TYPE_CHECKING:
    from logcast.client import AsyncClient, Client

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "EventType",
    "Level",
    "LogRecord",
    "ProcessState",
    "Stream",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from logcast import client

        return getattr(client, name)
    raise AttributeError(f"module 'logcast' has no attribute {name!r}")
