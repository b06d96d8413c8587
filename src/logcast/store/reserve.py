"""Sequence numbers reserved on disk before they are handed out.

A seq names one line forever, also after SIGKILL or a power cut: when logcast starts
again it must number above every seq a client may hold. The hub hands out numbers
only below a mark that this file holds durably, and moves the mark ahead in blocks,
so the file is written a few times a second under a flood, not per line.

The file must be writable when the disk is full (capture goes on from memory then,
and keeps numbering): it has a fixed size, is filled with real bytes when created,
and is only ever overwritten in place (`pwrite` into blocks it already owns). On a
copy-on-write filesystem (btrfs, ZFS) even that needs new blocks; if a reservation
cannot be written, capture still goes on and readers wait for the new lines until it
can be, or until they are stored (`Hub._reserve_loop`). Two
slots are written in turn, each with a generation and a CRC: a write torn by a
power cut spoils one slot, and the other still holds the previous marks.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path

import orjson

SLOT = 32 * 1024  # bytes per slot; two slots per file
_HEADER = struct.Struct("<QII")  # generation, payload length, CRC-32 of the payload


class ReservationError(OSError):
    pass


class Reservations:
    """The reserved marks of every process, in one small file of fixed size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._generation = 0
        self._marks: dict[str, int] = {}

    def open(self) -> dict[str, int]:
        """Open (creating it full size if needed) and return the marks it holds."""
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size < 2 * SLOT:
                    os.pwrite(fd, bytes(2 * SLOT - size), size)  # real bytes: no hole to fill later
                    os.fsync(fd)
                    _fsync_dir(self.path.parent)  # the new file's name survives a power cut too
                best: tuple[int, dict[str, int]] = (0, {})
                for slot in (0, 1):
                    found = _read_slot(fd, slot)
                    if found is not None and found[0] > best[0]:
                        best = found
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            self._generation, self._marks = best
            return dict(self._marks)

    def set(self, marks: Mapping[str, int]) -> None:
        """Make `marks` (merged over the others) durable: written and fsynced."""
        with self._lock:
            if self._fd is None:
                raise ReservationError("reservations file is not open")
            merged = {**self._marks, **marks}
            payload = orjson.dumps(merged)
            if _HEADER.size + len(payload) > SLOT:
                raise ReservationError(f"too many processes for {self.path} ({len(merged)})")
            generation = self._generation + 1
            header = _HEADER.pack(generation, len(payload), zlib.crc32(payload))
            os.pwrite(self._fd, header + payload, (generation % 2) * SLOT)
            os.fsync(self._fd)
            self._generation, self._marks = generation, merged

    def mark(self, process: str) -> int:
        with self._lock:
            return self._marks.get(process, 0)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._marks)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_slot(fd: int, slot: int) -> tuple[int, dict[str, int]] | None:
    data = os.pread(fd, SLOT, slot * SLOT)
    if len(data) < _HEADER.size:
        return None
    generation, length, crc = _HEADER.unpack_from(data)
    payload = data[_HEADER.size : _HEADER.size + length]
    if generation == 0 or len(payload) != length or zlib.crc32(payload) != crc:
        return None
    try:
        marks = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(marks, dict):
        return None
    return generation, {str(k): int(v) for k, v in marks.items() if isinstance(v, int)}
