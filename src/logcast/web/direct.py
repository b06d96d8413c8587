"""A live stream's new lines written from the hub's wake, without a turn of its task.

A reader that has caught up waits for new lines in its task. Woken, the task would take
them, make their bytes and pass them down the ASGI `send` chain to the transport: about
0.1 ms a reader on this machine, paid one reader after another. Instead, while the task
waits with nothing of its own in flight, the hub calls the reader's `Subscription.on_wake`
on the loop, and that takes the lines (`Subscription.take_ready`), makes the same bytes
and hands them to the transport itself.

It may only where the bytes go out exactly as the task's `send` would put them: a
streaming HTTP/1.1 response of uvicorn's httptools protocol (`ChunkedBody`, announced by
`conn.attach` as `scope["extensions"]["logcast.http.body"]`) and our WebSocket protocol
(`wsframes`). Each says whether it can take bytes now (the response is under way, the
transport is not over its high-water mark, the client is there); when it cannot, the task
takes over, with its flow control and its send timeout.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol

from logcast.web.extensions import offer, offered

try:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
except ImportError:  # no httptools: uvicorn serves HTTP with h11, and streams write through `send`
    RequestResponseCycle = None  # type: ignore[assignment,misc]

BODY = "logcast.http.body"

__all__ = ["BODY", "ChunkedBody", "Direct", "announce_body", "body_of"]


class Direct(Protocol):
    """Where a stream's bytes can be written synchronously, on the loop."""

    def writable(self) -> bool:
        """Whether `write` may be called now."""
        ...

    def write(self, data: bytes) -> None:
        """Hand `data` to the transport (only after `writable()` said so, in the same turn)."""
        ...


class ChunkedBody:
    """The body of a streaming response under uvicorn's httptools protocol: chunks written
    as its `send` would write an `http.response.body` message with `more_body`. Only a
    chunked body (HTTP/1.1, no length given; never the answer to HEAD) is written to."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle

    def writable(self) -> bool:
        cycle = self._cycle
        return bool(
            cycle.response_started
            and not cycle.response_complete
            and cycle.chunked_encoding is True
            and not cycle.disconnected
            and not cycle.flow.write_paused
            and not cycle.transport.is_closing()
        )

    def write(self, data: bytes) -> None:
        if data:
            self._cycle.transport.write(b"%x\r\n%b\r\n" % (len(data), data))


def announce_body(scope: MutableMapping[str, Any], owner: object) -> None:
    """Offer `ChunkedBody` in `scope` when `owner` (the object whose method is the server's
    `send`) is uvicorn's httptools request cycle."""
    if RequestResponseCycle is not None and type(owner) is RequestResponseCycle:
        offer(scope, BODY, "writer", ChunkedBody(owner))


def body_of(scope: MutableMapping[str, Any]) -> Direct | None:
    """The direct writer of the response to `scope`, if the server offers one."""
    return offered(scope, BODY, "writer", ChunkedBody)
