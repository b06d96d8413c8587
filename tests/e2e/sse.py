"""A small independent SSE reader for tests: raw httpx streaming, no client library."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.util import wait_for

__all__ = ["Message", "messages", "wait_for"]


@dataclass
class Message:
    id: str | None
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data.get("type"))

    @property
    def seq(self) -> int | None:
        log = self.data.get("log")
        return int(log["seq"]) if log else None


def messages(response: httpx.Response) -> Iterator[Message]:
    """Parse `text/event-stream` from a streaming httpx response."""
    ident: str | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield Message(ident, json.loads("\n".join(data)))
            ident, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("id:"):
            ident = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def collect(
    url: str,
    *,
    until: Any,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    timeout: float = 30.0,
) -> list[Message]:
    """Read messages until `until(messages_so_far)` is true (or the stream ends)."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(10.0, read=timeout)) as client:
        with client.stream("GET", url, headers=headers or {}, params=params) as response:
            response.raise_for_status()
            for message in messages(response):
                got.append(message)
                if until(got) or time.monotonic() > deadline:
                    break
    return got
