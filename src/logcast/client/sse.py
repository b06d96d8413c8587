"""Server-sent events: bytes as they arrive → `(data, id)` messages, whole chunks at a time.

Our own decoder rather than httpx-sse's: that one decodes text and splits it line by line
in Python, and a flood of a million lines spent most of its client time there. This one
works on bytes: a chunk inside a long line costs one memchr, a message is cut at its blank
line once, and `data` goes to orjson as a view of what was read, not a copy. It follows
the WHATWG rules a logcast client meets: lines end in `\n`, `\r\n` or `\r`; a blank
line ends a message; `data` lines are joined with `\n`; `id` persists from message to
message (an id with NUL is ignored); comments (`:`), `event` and `retry` are read and
dropped; a message without `data` is not dispatched, nor one the stream ended inside.

A message is held until its blank line comes, at most `MESSAGE_MAX` bytes of it: a
server's are a mebibyte or so (a batch, or one record of at most 64 KiB, escaped), and a
stream that goes on without ending its message (a broken server, a hostile one) fails
with `httpx.DecodingError`, like a body httpx cannot decode, instead of filling memory.
"""

from __future__ import annotations

import httpx

__all__ = ["MESSAGE_MAX", "Message", "SSEDecoder"]

MESSAGE_MAX = 16 << 20  # bytes of one message, its lines and line ends counted
DATA_LINES_MAX = 65_536  # `data` lines of one message (logcast's have one)

# (data, the last event id seen); a data line is handed on as a view of the bytes read, not copied
Message = tuple[bytes | memoryview, str | None]


class SSEDecoder:
    """Feed it chunks (`feed`), take the whole messages each one completed."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the start of a message whose end has not arrived
        self._held = 0  # its bytes
        self._cr = False  # the last chunk ended in `\r`, taken as a line end: a `\n` next is its other half
        self.last_id: str | None = None
        self.comments = 0  # comment lines read (`: ping`): the server is there, though it says nothing
        self.messages = 0  # messages handed on

    def feed(self, chunk: bytes) -> list[Message]:
        if not chunk:
            return []  # nothing: a `\r` the last chunk ended in still waits for its `\n`
        if self._cr:
            self._cr = False
            if chunk.startswith(b"\n"):  # the `\r\n` the last chunk ended inside, already counted
                chunk = chunk[1:]
        if b"\r" in chunk:
            # a `\r` at the end is a line end now (WHATWG), not held back until the next
            # chunk: an event ending in `\r\r` is handed on at once, not a ping later
            self._cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not chunk:
            return []
        parts = self._parts
        if b"\n" not in chunk:  # inside a line (a batch's data line is long): one memchr
            self._hold(chunk)
            return []
        end = chunk.rfind(b"\n\n")
        if end >= 0:
            whole = b"".join([*parts, chunk[:end]]) if parts else chunk[:end]
            rest = chunk[end + 2 :]
        elif parts and parts[-1].endswith(b"\n") and chunk.startswith(b"\n"):
            whole = b"".join(parts)[:-1]  # the blank line began in the previous chunk
            rest = chunk[1:]
        else:
            self._hold(chunk)
            return []
        parts.clear()
        self._held = 0
        if rest:
            self._hold(rest)
        return self._messages(whole)

    def _hold(self, piece: bytes) -> None:
        """Keep `piece` of a message whose end has not come; past `MESSAGE_MAX`, fail."""
        self._held += len(piece)
        if self._held > MESSAGE_MAX:
            self.flush()
            raise httpx.DecodingError(f"an event stream message of over {MESSAGE_MAX:,} bytes")
        self._parts.append(piece)

    @property
    def heard(self) -> int:
        """Messages and pings read so far: how often the server said something."""
        return self.messages + self.comments

    def flush(self) -> list[Message]:
        """The end of the stream: a message without its blank line is not dispatched (WHATWG)."""
        self._parts.clear()
        self._held = 0
        self._cr = False
        return []

    def _messages(self, whole: bytes) -> list[Message]:
        """The messages of `whole`: complete messages separated by blank lines, the last
        one's blank line cut off. Read line by line with `find` (memchr): a batch's data
        line is long, its lines few."""
        out: list[Message] = []
        data: list[bytes | memoryview] = []
        view = memoryview(whole)
        size = len(whole)
        pos = 0
        while pos <= size:
            newline = whole.find(b"\n", pos)
            if newline < 0:
                newline = size
            if newline == pos:  # a blank line: the end of a message
                if data:
                    out.append((b"\n".join(data) if len(data) > 1 else data[0], self.last_id))
                    data = []
                pos += 1
                continue
            if whole.startswith(b"data: ", pos):
                data.append(view[pos + 6 : newline])
                pos = newline + 1
                if len(data) > DATA_LINES_MAX:  # each costs a view: 16 MiB of `data: \n` was 750 MB
                    raise httpx.DecodingError(
                        f"an event stream message of over {DATA_LINES_MAX:,} data lines"
                    )
                continue
            line = whole[pos:newline]
            pos = newline + 1
            if line.startswith(b":"):
                self.comments += 1
                continue
            field, colon, value = line.partition(b":")
            if colon and value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
                if len(data) > DATA_LINES_MAX:  # `data:x`, without the space, counts as well
                    raise httpx.DecodingError(
                        f"an event stream message of over {DATA_LINES_MAX:,} data lines"
                    )
            elif field == b"id" and b"\0" not in value:
                self.last_id = value.decode("utf-8", "replace")
        if data:
            out.append((b"\n".join(data) if len(data) > 1 else data[0], self.last_id))
        self.messages += len(out)
        return out
