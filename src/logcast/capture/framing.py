"""Bytes → lines: the framing of a child's output, one chunk at a time.

A pure state machine (no clock, no I/O), so its rules can be tested with any split of the
input; it is on the hot path, so it works per chunk, not per line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["MAX_LINE", "Framed", "LineFramer", "frame_all"]

MAX_LINE = 65536  # bytes of UTF-8 per record

Record = tuple[str, bool]


class Framed(NamedTuple):
    """Records column-wise: `texts[i]` is partial when `partial[i]` is true."""

    texts: list[str]
    partial: list[bool]

    def records(self) -> list[Record]:
        """The same records as `(text, partial)` pairs."""
        return list(zip(self.texts, self.partial, strict=True))


class _Out:
    """The records of one call, collected column-wise."""

    __slots__ = ("cuts", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.cuts: list[int] = []  # indices of the partial records

    def add(self, text: str, partial: bool) -> None:
        if partial:
            self.cuts.append(len(self.texts))
        self.texts.append(text)

    def framed(self) -> Framed:
        partial = [False] * len(self.texts)
        for i in self.cuts:
            partial[i] = True
        return Framed(self.texts, partial)


def _cut(data: bytes, start: int, limit: int) -> int:
    """End of the piece that starts at `start` and is at most `limit` bytes long.

    The caller knows that more than `limit` bytes follow `start`. The cut moves back to
    the first byte of the character that straddles it, when that is a real UTF-8 lead
    byte at most three bytes back; invalid data is cut at `limit`.
    """
    end = start + limit
    pos = end
    low = max(start + 1, end - 3)
    while pos >= low and (data[pos] & 0xC0) == 0x80:
        pos -= 1
    if pos < end and pos >= start + 1 and data[pos] >= 0xC0:
        return pos
    return end


def _incomplete_tail(data: bytes) -> int:
    """How many bytes at the end of `data` are the beginning of an unfinished character."""
    size = len(data)
    for back in range(1, min(3, size) + 1):
        byte = data[size - back]
        if byte < 0x80:
            return 0
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4 if byte < 0xF8 else 1
            return back if need > back else 0
    return 0


class LineFramer:
    """Frames a stream of byte chunks into records (`Framed`). Not thread-safe.

    A line ends at `\\n`, `\\r\\n` or a lone `\\r` (progress bars redraw with `\\r`). A
    line longer than `max_line` bytes is cut into pieces at UTF-8 character starts, all
    but the last `partial`; the cut depends only on the line's own bytes, so the pieces
    are the same however the input was split into reads.
    """

    __slots__ = ("_buf", "_max", "_skip_lf")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 4:
            raise ValueError("max_line must be at least 4 bytes (one UTF-8 character)")
        self._max = max_line
        # The unfinished line, undecoded (a character split across reads is decoded whole
        # when the rest arrives); never holds a terminator or more than `max_line` bytes.
        self._buf = b""
        # The last chunk ended with "\r", which ended its line at once; a leading "\n"
        # in the next chunk completes that "\r\n" and is dropped.
        self._skip_lf = False

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished line are buffered."""
        return bool(self._buf)

    def feed(self, data: bytes) -> Framed:
        """Take one chunk; return the records it completes, in order."""
        if not data:
            return Framed([], [])
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
                if not data:
                    return Framed([], [])
        if b"\r" in data:
            self._skip_lf = data[-1] == 0x0D
            # Exact, because "\r\n" pairs never overlap.
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        out = _Out()
        limit = self._max
        if self._buf:
            first = data.find(b"\n")
            if first < 0:
                self._buf += data
                if len(self._buf) > limit:
                    self._buf = self._split_pending(self._buf, out)
                return out.framed()
            self._emit_line(self._buf + data[:first], out)
            self._buf = b""
            start = first + 1
        else:
            start = 0

        last = data.rfind(b"\n")
        if last >= start:
            if last - start <= limit:
                # No line in here can be overlong: one decode, one split. Same result as
                # decoding line by line: "\n" is ASCII and ends any invalid UTF-8 before it.
                out.texts.extend(data[start:last].decode("utf-8", "replace").split("\n"))
            else:
                body = data[start:last]
                parts = body.split(b"\n")
                if max(map(len, parts)) <= limit:
                    out.texts.extend(body.decode("utf-8", "replace").split("\n"))
                else:
                    for part in parts:
                        self._emit_line(part, out)
            start = last + 1

        if start < len(data):
            rest = data[start:] if start else data
            if len(rest) > limit:
                rest = self._split_pending(rest, out)
            self._buf = rest
        return out.framed()

    def flush(self, *, idle: bool = False) -> Framed:
        """Hand on the buffered bytes as one `partial` record; nothing if nothing is buffered.

        At EOF (the default) everything goes, and a pending `\\r\\n` is forgotten. With
        `idle=True` (nothing arrived for a while, the line is not over) an incomplete
        UTF-8 character at the end stays buffered until its remaining bytes arrive.
        """
        buf = self._buf
        if not idle:
            self._skip_lf = False
        if not buf:
            return Framed([], [])
        keep = _incomplete_tail(buf) if idle else 0
        if keep == len(buf):
            return Framed([], [])
        self._buf = buf[len(buf) - keep :] if keep else b""
        text = buf[: len(buf) - keep] if keep else buf
        return Framed([text.decode("utf-8", "replace")], [True])

    def _emit_line(self, line: bytes, out: _Out) -> None:
        """Add one complete line, cut into pieces if it is overlong."""
        limit = self._max
        if len(line) <= limit:
            out.texts.append(line.decode("utf-8", "replace"))
            return
        start = 0
        while len(line) - start > limit:
            end = _cut(line, start, limit)
            out.add(line[start:end].decode("utf-8", "replace"), True)
            start = end
        out.texts.append(line[start:].decode("utf-8", "replace"))

    def _split_pending(self, buf: bytes, out: _Out) -> bytes:
        """Cut the full pieces off an overlong unfinished line; return the rest."""
        limit = self._max
        start = 0
        while len(buf) - start > limit:
            end = _cut(buf, start, limit)
            out.add(buf[start:end].decode("utf-8", "replace"), True)
            start = end
        return buf[start:]


def frame_all(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> list[Record]:
    """Feed every chunk, then flush at EOF: the records of a whole stream."""
    framer = LineFramer(max_line)
    out: list[Record] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk).records())
    out.extend(framer.flush().records())
    return out
