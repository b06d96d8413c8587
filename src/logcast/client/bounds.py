"""What a server's answer may cost the client: its size, its time, no compression.

The client reads what a server it was pointed at sends, and that server (or a proxy in
between) may be broken or hostile. httpx bounds each read by the timeout, not the whole
answer, and inflates whatever `Content-Encoding` the server names. So the client asks for
no compression (`Accept-Encoding: identity`; logcast's server never compresses) and, as
httpx's response hook (`bound` / `bound_async`), refuses an answer that is compressed
anyway, and reads an answer that is not an event stream through a stream that fails past
`ANSWER_MAX` bytes or `deadline` seconds after its head. An event stream is long by
nature: its messages are bounded by `sse.MESSAGE_MAX` and its silences by the read timeout.

The failures are httpx's `DecodingError` (a body the client will not decode) and
`ReadTimeout`, which the client's callers turn into a `ClientError` or a dropped stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx

__all__ = ["ANSWER_MAX", "DEADLINE_FACTOR", "ENCODING", "bound", "bound_async", "refuse_compressed"]

ANSWER_MAX = 64 << 20  # bytes of an answer that is not an event stream (a page of history is a few MiB)
ENCODING = "identity"  # the only Content-Encoding the client takes
DEADLINE_FACTOR = 3.0  # an answer's body within this many read timeouts after its head


def refuse_compressed(response: httpx.Response) -> None:
    """Raise `httpx.DecodingError` when `response` is compressed: the client asked for
    none, and inflating it could cost any memory."""
    encoding = response.headers.get("content-encoding", ENCODING).strip().lower()
    if encoding not in ("", ENCODING):
        raise httpx.DecodingError(
            f"the server compressed its answer ({encoding[:40]}) though asked not to",
            request=response.request,
        )


def _is_event_stream(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.lower().startswith("text/event-stream")


def _deadline(response: httpx.Response) -> float:
    read = response.request.extensions.get("timeout", {}).get("read")
    return time.monotonic() + DEADLINE_FACTOR * (read if read is not None else 10.0)


def _too_long(response: httpx.Response, size: int, deadline: float) -> None:
    if size > ANSWER_MAX:
        raise httpx.DecodingError(f"an answer of over {ANSWER_MAX:,} bytes", request=response.request)
    if time.monotonic() > deadline:
        raise httpx.ReadTimeout("the answer took too long to arrive", request=response.request)


class _Bounded(httpx.SyncByteStream):
    def __init__(self, response: httpx.Response, inner: httpx.SyncByteStream) -> None:
        self._response = response
        self._inner = inner
        self._deadline = _deadline(response)

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self._inner:
            size += len(chunk)
            _too_long(self._response, size, self._deadline)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _BoundedAsync(httpx.AsyncByteStream):
    def __init__(self, response: httpx.Response, inner: httpx.AsyncByteStream) -> None:
        self._response = response
        self._inner = inner
        self._deadline = _deadline(response)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._inner:
            size += len(chunk)
            _too_long(self._response, size, self._deadline)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def bound(response: httpx.Response) -> None:
    """httpx's response hook of `Client`: see the module."""
    refuse_compressed(response)
    if not _is_event_stream(response) and isinstance(response.stream, httpx.SyncByteStream):
        response.stream = _Bounded(response, response.stream)


async def bound_async(response: httpx.Response) -> None:
    """httpx's response hook of `AsyncClient`: see the module."""
    refuse_compressed(response)
    if not _is_event_stream(response) and isinstance(response.stream, httpx.AsyncByteStream):
        response.stream = _BoundedAsync(response, response.stream)
