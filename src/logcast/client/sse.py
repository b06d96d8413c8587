"""Server-sent events: bytes as they arrive → `(data, id)` messages, whole chunks at a time.

Our own decoder rather than httpx-sse's: that one decodes text and splits it line by line
in Python, and a flood of a million lines spent most of its client time there. This one
works on bytes, finds message ends with one search per chunk and keeps `data` as bytes for
orjson. It follows the WHATWG rules a logcast client meets: lines end in `\\n`, `\\r\\n` or
`\\r`; a blank line ends a message; `data` lines are joined with `\\n`; `id` persists
from message to message (an id with NUL is ignored); comments (`:`), `event` and `retry`
are read and dropped; a message without `data` is not dispatched.
"""

from __future__ import annotations

__all__ = ["Message", "SSEDecoder"]

Message = tuple[bytes, str | None]  # (data, the last event id seen)


class SSEDecoder:
    """Feed it chunks (`feed`), take the whole messages each one completed."""

    def __init__(self) -> None:
        self._pending = bytearray()  # the start of a message whose end has not arrived
        self._cr = False  # the last chunk ended in `\r`: it may be half of a `\r\n`
        self.last_id: str | None = None

    def feed(self, chunk: bytes) -> list[Message]:
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                self._cr = True
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not chunk:
            return []
        pending = self._pending
        start = max(len(pending) - 1, 0)  # a `\n\n` may straddle the old and the new bytes
        pending += chunk
        end = pending.rfind(b"\n\n", start)
        if end < 0:
            return []
        whole = bytes(pending[:end])
        del pending[: end + 2]
        return self._messages(whole)

    def flush(self) -> list[Message]:
        """The end of the stream: a message without its blank line is not dispatched (WHATWG)."""
        self._pending.clear()
        self._cr = False
        return []

    def _messages(self, whole: bytes) -> list[Message]:
        out: list[Message] = []
        for block in whole.split(b"\n\n"):
            if not block:
                continue
            # The shape logcast sends: `id: N` then one `data:` line.
            if block.startswith(b"id: "):
                newline = block.find(b"\n")
                if (
                    newline > 0
                    and block.startswith(b"data: ", newline + 1)
                    and block.find(b"\n", newline + 1) < 0
                ):
                    ident = block[4:newline]
                    if b"\0" not in ident:
                        self.last_id = ident.decode("utf-8", "replace")
                    out.append((block[newline + 7 :], self.last_id))
                    continue
            message = self._block(block)
            if message is not None:
                out.append(message)
        return out

    def _block(self, block: bytes) -> Message | None:
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            field, colon, value = line.partition(b":")
            if colon and value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"id" and b"\0" not in value:
                self.last_id = value.decode("utf-8", "replace")
        if not data:
            return None
        return b"\n".join(data), self.last_id
