"""glibc's allocator, where the process has it: fixed mmap and trim thresholds, and a trim.

Elsewhere (musl, macOS) both are no-ops that say so by returning False.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

__all__ = ["CAN_TRIM", "fix_mmap_threshold", "fix_trim_threshold", "malloc_trim"]

_M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


def _glibc_function(name: str) -> Any | None:
    """`name` from the process's own libc if that is glibc, else None."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (ValueError, OSError):  # not glibc
        return None
    return getattr(ctypes.CDLL(None), name, None)  # the process's own libc: no search


def _load() -> tuple[Callable[[int, int], int] | None, Callable[[int], int] | None]:
    mallopt = _glibc_function("mallopt")
    if mallopt is not None:
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
    trim = _glibc_function("malloc_trim")
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return mallopt, trim


_MALLOPT, _TRIM = _load()
CAN_TRIM = _TRIM is not None


def fix_mmap_threshold(size: int) -> bool:
    """Serve blocks of `size` bytes and more from mmap, always: glibc's own threshold
    rises each time such a block is freed. False where there is no glibc."""
    return _MALLOPT is not None and bool(_MALLOPT(_M_MMAP_THRESHOLD, size))


def fix_trim_threshold(size: int) -> bool:
    """Give the free top of the heap back to the system only once it is over `size`
    bytes. glibc's own threshold (128 KiB) is raised with its mmap threshold, and no
    longer once that is fixed. False where there is no glibc."""
    return _MALLOPT is not None and bool(_MALLOPT(_M_TRIM_THRESHOLD, size))


def malloc_trim() -> bool:
    """Give the free memory of every malloc arena back to the system (glibc keeps what
    lies between blocks still in use). False where there is no glibc."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
