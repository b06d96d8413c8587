"""`tune_runtime`: glibc's mmap threshold as `serve` sets it, seen from malloc's own counts.

Each check runs in a child interpreter: the settings are process-wide."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(os, "confstr") or "CS_GNU_LIBC_VERSION" not in os.confstr_names,
    reason="glibc only",
)

PROBE = textwrap.dedent(
    """
    import ctypes
    from logcast.capture.reader import READ_SIZE
    from logcast.engine import tune_runtime

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2

    def mapped():  # bytes malloc holds in blocks mapped apart
        return libc.mallinfo2().hblkhd

    tune_runtime()
    # A pipe read's worth, made and freed again and again as a flood does per read: from
    # the heap, not a fresh mapping each time (faulted in page by page). glibc's own
    # threshold would rise past it too, but only after the first large block was freed.
    base = mapped()
    read = b"x" * READ_SIZE
    read_mapped = mapped() - base
    del read
    # A block far above the threshold stays mapped apart (given back when freed), also
    # after one was freed: the threshold is fixed, where glibc's own would rise.
    big = b"x" * (16 << 20)
    del big
    big = b"x" * (16 << 20)
    big_mapped = mapped() - base
    print(read_mapped, big_mapped)
    """
)


def test_a_flood_s_read_buffers_come_from_the_heap_and_large_blocks_are_mapped() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    read_mapped, big_mapped = map(int, out.split())
    assert read_mapped == 0
    assert big_mapped >= 16 << 20
