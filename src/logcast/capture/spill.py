"""What a reader cannot keep in memory waits in a file: a flood far ahead of framing is
held by the page cache, not by the process, and the child still never waits.

One unlinked file per reader, appended to by its reader thread and read in order by its
framer thread; `PipeReader` says, under its lock, who may touch which range.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from pathlib import Path

__all__ = ["SPILL_BYTES", "Spill"]

SPILL_BYTES = 1 << 30  # the file's bound: past it the reader waits for the framer, as without one
DISK_HEADROOM = 512 << 20  # free bytes the spill leaves on its disk (the store is there too)
_LOOK_EVERY = 16 << 20  # the disk's free space is asked again after this much more is written
_HEADER = struct.Struct("<dI")  # a chunk's read time and its length


class Spill:
    """Chunks `(stamp, data)` in an append-only file, taken back in order.

    `start`..`end` is what waits in it; the file is emptied each time it is drained,
    so it is only ever as large as the longest backlog (at most `limit` bytes). The
    file is created on the first write; a write that fails (a full disk) leaves it
    `broken`: what it holds is still read back, nothing more goes in.
    """

    def __init__(self, directory: Path, limit: int = SPILL_BYTES, headroom: int = DISK_HEADROOM) -> None:
        self.directory = directory
        self.limit = limit
        self.headroom = headroom
        self._room_until = -1  # `end` up to which the disk was found to have room (-1: not asked)
        self.start = 0  # the next byte to read back
        self.end = 0  # the end of what was written
        self.broken = False
        self.truncating = False  # emptied, its blocks being freed: nothing may be written yet
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"<Spill {self.directory} {self.pending} bytes waiting{' broken' if self.broken else ''}>"

    @property
    def pending(self) -> int:
        """Bytes written and not read back yet (headers included)."""
        return self.end - self.start

    def fits(self, size: int) -> bool:
        """A chunk of `size` bytes may be written now: within the file's bound, and the
        disk keeps `headroom` free after it (asked of the disk every `_LOOK_EVERY` bytes)."""
        end = self.end + _HEADER.size + size
        if self.broken or self.truncating or end > self.limit:
            return False
        if end > self._room_until:
            self._room_until = end + _LOOK_EVERY if self._disk_has_room(_LOOK_EVERY) else -1
        return self._room_until >= end

    def _disk_has_room(self, size: int) -> bool:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            disk = os.statvfs(self.directory)
        except OSError:
            return False  # no spill where nothing can be told
        return disk.f_bavail * disk.f_frsize >= size + self.headroom

    def write(self, position: int, stamp: float, data: bytes) -> int:
        """Write one chunk at `position` (the `end` the caller saw); the bytes taken.
        Raises OSError (the caller marks the spill broken)."""
        fd = self._open()
        parts = [memoryview(_HEADER.pack(stamp, len(data))), memoryview(data)]
        total = sum(map(len, parts))
        at = position
        while parts:
            written = os.pwritev(fd, parts, at)
            if written <= 0:
                raise OSError("spill file took nothing")
            at += written
            while parts and written >= len(parts[0]):
                written -= len(parts[0])
                parts.pop(0)
            if parts and written:
                parts[0] = parts[0][written:]
        return total

    def read(self, position: int, end: int, limit: int) -> tuple[float, bytes, int]:
        """The chunks from `position` (before `end`) as one piece of about `limit` bytes
        at most (at least one chunk): (the last chunk's stamp, their bytes, where the
        next read starts)."""
        assert self._fd is not None
        parts: list[bytes] = []
        size = 0
        stamp = 0.0
        while position < end:
            stamp_of, length = _HEADER.unpack(self._pread(_HEADER.size, position))
            if position + _HEADER.size + length > end:  # not a header we wrote
                raise OSError(
                    f"spill file damaged: a chunk of {length} bytes at {position} runs past its end"
                )
            if parts and size + length > limit:
                break
            parts.append(self._pread(length, position + _HEADER.size))
            stamp = stamp_of
            size += length
            position += _HEADER.size + length
        return stamp, b"".join(parts) if len(parts) != 1 else parts[0], position

    def empty(self) -> bool:
        """Everything was read back: start over (under the caller's lock); True if the
        file's blocks are to be freed now with `truncate`, outside the lock (a large
        file takes milliseconds), before anything more is written."""
        self.start = self.end = 0
        self._room_until = -1
        self.truncating = self._fd is not None
        return self.truncating

    def truncate(self) -> None:
        """Free the blocks of an emptied file (no lock needed: nobody writes meanwhile);
        then it may be written again (the caller wakes whoever waits for that)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        self.truncating = False

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _open(self) -> int:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix="spill-", dir=self.directory)  # 0600
            with contextlib.suppress(OSError):
                os.unlink(path)  # gone when closed, or when logcast dies
            self._fd = fd
        return self._fd

    def _pread(self, size: int, position: int) -> bytes:
        assert self._fd is not None
        data = os.pread(self._fd, size, position)
        while len(data) < size:
            more = os.pread(self._fd, size - len(data), position + len(data))
            if not more:
                raise OSError(f"spill file ends {size - len(data)} bytes early")
            data += more
        return data
