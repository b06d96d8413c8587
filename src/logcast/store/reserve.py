"""Sequence numbers reserved on disk before they are handed out.

A seq names one line forever, even after SIGKILL or a power cut, so a restarted logcast
must number above every seq a client may hold.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path

import orjson

from logcast.jsonobj import json_object

logger = logging.getLogger(__name__)

SLOT = 32 * 1024  # bytes per slot; two slots per file
_HEADER = struct.Struct("<QII")  # generation, payload length, CRC-32 of the payload


class ReservationError(OSError):
    pass


class InUse(ReservationError):
    """Another process holds the reservations file: two writers would give one seq to two lines."""


class Reservations:
    """The highest reserved seq of every process, in one small file of fixed size.

    The hub hands out seqs only below a reservation held here, moving it ahead in blocks
    so that this file is not written per line. The file must stay writable when the disk
    is full (capture goes on from memory and keeps numbering): it is filled with real
    bytes when created and only ever overwritten in place. On a copy-on-write filesystem
    (btrfs, ZFS) even that needs new blocks; then readers wait for the new lines until a
    reservation can be written or the lines are stored (`hub.reserver.Reserver`).

    Two slots are written in turn, each with a generation and a CRC: a write torn by a
    power cut spoils one slot, and the other still holds the previous reservations.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._generation = 0
        self._reserved: dict[str, int] = {}  # process -> highest seq that may be handed out

    def open(self) -> dict[str, int]:
        """Open (creating it full size if needed) and return the reservations it holds."""
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                _lock_alone(fd, self.path)
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
            self._generation, self._reserved = best
            return dict(self._reserved)

    def set(self, marks: Mapping[str, int]) -> None:
        """Make `marks` (process -> highest reserved seq, merged over the others) durable:
        written and fsynced."""
        with self._lock:
            if self._fd is None:
                raise ReservationError("reservations file is not open")
            merged = {**self._reserved, **marks}
            payload = orjson.dumps(merged)
            if _HEADER.size + len(payload) > SLOT:
                raise ReservationError(f"too many processes for {self.path} ({len(merged)})")
            generation = self._generation + 1
            header = _HEADER.pack(generation, len(payload), zlib.crc32(payload))
            os.pwrite(self._fd, header + payload, (generation % 2) * SLOT)
            os.fsync(self._fd)
            self._generation, self._reserved = generation, merged

    def reserved_upto(self, process: str) -> int:
        with self._lock:
            return self._reserved.get(process, 0)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._reserved)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _lock_alone(fd: int, path: Path) -> None:
    """Hold `fd`'s file alone for as long as it is open (the kernel lets go when the process
    ends, however it ends); `InUse` naming the holder when another process has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _flock_holder(os.fstat(fd).st_ino)
        who = f"pid {holder}" if holder else "another process"
        raise InUse(
            errno.EBUSY,
            f"{path} is in use by another logcast ({who}): two of them on one storage folder would"
            " give one sequence number to two lines; give each its own ([storage] dir, or another"
            " working folder for `logcast run`)",
        ) from None
    except OSError as exc:  # a filesystem without locks (NFS without lockd): go on unguarded
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        logger.warning(
            "%s cannot be locked (%s): nothing stops a second logcast on this storage folder",
            path,
            exc.strerror,
        )


def _flock_holder(inode: int) -> int | None:
    """The pid holding a flock on the file with `inode`, from /proc/locks (Linux); None if unknown."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()  # 1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
                    return int(fields[4]) if fields[4].isdigit() else None
    except OSError:
        pass
    return None


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
    reserved = json_object(payload)
    if reserved is None:
        return None
    return generation, {str(name): int(upto) for name, upto in reserved.items() if isinstance(upto, int)}
