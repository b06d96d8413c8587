"""glibc's allocator as `serve` sets it (`tune_runtime`) and trims it (`libc.malloc_trim`),
seen from malloc's own counts and the process's RSS.

Each check runs in a child interpreter: the settings are process-wide."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from logcast.libc import CAN_TRIM  # glibc, whose malloc_trim the process can call

pytestmark = pytest.mark.skipif(not CAN_TRIM, reason="glibc only")
needs_mallinfo2 = pytest.mark.skipif(
    not CAN_TRIM or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33 and later"
)

COMMON = """
import ctypes, resource
from logcast.capture.reader import READ_SIZE
from logcast.engine import tune_runtime
from logcast.libc import malloc_trim

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
if hasattr(libc, "mallinfo2"):
    libc.mallinfo2.restype = MallInfo2

def mapped():  # bytes malloc holds in blocks mapped apart
    return libc.mallinfo2().hblkhd

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

import os
# One thread, one malloc arena: another thread's allocations would move these counts.
assert len(os.listdir("/proc/self/task")) == 1, "the probe is not single-threaded"
"""


def probe(code: str) -> list[int]:
    script = COMMON + textwrap.dedent(code)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return [int(word) for word in out.stdout.split()]


@needs_mallinfo2
def test_a_flood_s_read_buffers_come_from_the_heap_and_large_blocks_are_mapped() -> None:
    read_mapped, big_mapped = probe(
        """
        tune_runtime()
        # A pipe read's worth, as a flood makes and frees several a read: from the heap,
        # not a mapping of its own (glibc's own threshold starts at 128 KiB).
        base = mapped()
        read = b"x" * READ_SIZE
        read_mapped = mapped() - base
        del read
        # A block well above the threshold stays mapped apart (given back when freed), also
        # after one was freed: the threshold is fixed, where glibc's own would rise.
        big = b"x" * (16 << 20)
        del big
        big = b"x" * (16 << 20)
        print(read_mapped, mapped() - base)
        """
    )
    assert read_mapped == 0
    assert big_mapped >= 16 << 20


def test_a_trim_gives_back_what_a_flood_left_between_blocks_in_use() -> None:
    """What `StoreWriter` does once a flood is over: the heap, holed by freed read buffers
    between smaller blocks that live on (the lists of a chunk's lines), shrinks back."""
    held, kept, trimmed = probe(
        """
        tune_runtime()
        base = rss()
        reads, records = [], []
        for i in range(64):
            reads.append(b"x" * READ_SIZE)
            records.append([None] * 10_000)  # a chunk's list of lines, living on in the ring
        held = rss() - base
        del reads
        kept = rss() - base
        malloc_trim()
        print(held, kept, rss() - base)
        """
    )
    assert held >= 60 << 20
    assert kept >= 48 << 20, "the heap kept no holes: this check would prove nothing"
    assert trimmed < 16 << 20


@needs_mallinfo2
def test_a_freed_read_buffer_at_the_heap_s_top_stays_until_the_trim_threshold() -> None:
    """A flood frees and makes pipe reads at the top of the heap read after read: freed,
    they stay (no fault per page for the next one) up to `TRIM_THRESHOLD`; more than that
    goes back at once. With glibc's 128 KiB, which fixing the mmap threshold leaves, the
    same free gives them back."""
    from logcast.engine import TRIM_THRESHOLD

    kept, over, default = probe(
        """
        from logcast.engine import TRIM_THRESHOLD
        from logcast.libc import fix_mmap_threshold
        def top_after_free(total):
            reads = [b"x" * READ_SIZE for _ in range(total // READ_SIZE)]
            held = libc.mallinfo2().arena
            del reads
            return held - libc.mallinfo2().arena  # what the free gave back
        fix_mmap_threshold(2 << 20)  # what glibc does then, for the control
        default = top_after_free(8 << 20)
        tune_runtime()
        malloc_trim()
        kept = top_after_free(TRIM_THRESHOLD // 2)
        over = top_after_free(2 * TRIM_THRESHOLD)
        print(kept, over, default)
        """
    )
    assert default >= 7 << 20, "glibc kept the freed reads anyway: this check would prove nothing"
    assert kept == 0
    assert over >= TRIM_THRESHOLD
