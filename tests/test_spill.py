"""The spill file: what a reader cannot keep in memory waits on disk, comes back whole and
in order, and a disk that refuses it costs the child a wait, never a line."""

from __future__ import annotations

import linecache
import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logcast.capture.reader import READ_SIZE, SPOOL_BEFORE_SPILL, SPOOL_BYTES, PipeReader
from logcast.capture.spill import SPILL_BYTES, Spill
from logcast.types import Lines
from tests.test_reader import WAIT, Collector, Pipe, flood_until_stalled

LINE = b"x" * 99 + b"\n"


def test_chunks_come_back_in_order_with_their_times_in_pieces_of_at_most_the_limit(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "spill")
    for i, chunk in enumerate([b"a\n", b"b\n", b"c" * 100 + b"\n", b"d\n"]):
        spill.end = spill.end + spill.write(spill.end, float(i), chunk)
    assert list((tmp_path / "spill").iterdir()) == []  # unlinked at once: nothing left if we die
    stamp, data, position = spill.read(spill.start, spill.end, 50)
    assert (stamp, data) == (1.0, b"a\nb\n")  # the third does not fit beside them
    spill.start = position
    stamp, data, position = spill.read(spill.start, spill.end, 50)
    assert (stamp, data) == (2.0, b"c" * 100 + b"\n")  # alone, a chunk over the limit still comes
    spill.start = position
    stamp, data, spill.start = spill.read(spill.start, spill.end, 50)
    assert (stamp, data, spill.pending) == (3.0, b"d\n", 0)
    assert spill.empty()  # the file is to be truncated, outside the reader's lock
    assert spill.start == spill.end == 0
    assert not spill.fits(1)  # nothing goes in meanwhile
    spill.truncate()
    assert spill._fd is not None and os.fstat(spill._fd).st_size == 0  # its blocks are freed
    assert spill.fits(1)
    spill.close()


def test_the_file_is_bounded(tmp_path: Path) -> None:
    spill = Spill(tmp_path, limit=1000)
    assert spill.fits(900)
    spill.end = spill.write(0, 1.0, b"x" * 900)
    assert not spill.fits(100)  # 912 written, 100 + a header more would pass 1000
    spill.broken = True
    spill.empty()
    spill.truncate()
    assert not spill.fits(1)  # a broken spill takes nothing more
    spill.close()


SPOOL = 256 * 1024


def full_disk(self: Spill) -> int:
    """`Spill._open` on a disk that refuses every write (ENOSPC)."""
    if self._fd is None:
        self._fd = os.open("/dev/full", os.O_RDWR)
    return self._fd


def held_reader(
    pipe: Pipe,
    gate: threading.Event,
    collect: Collector,
    spill_dir: Path,
    spill_bytes: int = SPILL_BYTES,
    on_loss: Callable[[str], None] | None = None,
) -> PipeReader:
    """A started spilling reader of `pipe` whose framer hands lines to `collect` only once
    `gate` is set: until then everything read waits in its spool and spill file."""

    def held(timestamp: float, lines: Lines) -> None:
        gate.wait(WAIT)
        collect(timestamp, lines)

    reader = PipeReader(
        pipe.r, held, spool_bytes=SPOOL, spill_dir=spill_dir, spill_bytes=spill_bytes, on_loss=on_loss
    )
    reader.start()
    return reader


def test_a_flood_past_the_spool_goes_to_the_file_and_comes_back_in_order(tmp_path: Path) -> None:
    """With its framer held, a spilling reader keeps the pipe drained far past its memory
    bound (the child does not wait), up to the file's bound; then every line arrives."""
    gate, collect, pipe = threading.Event(), Collector(), Pipe()
    reader = held_reader(pipe, gate, collect, tmp_path, spill_bytes=8 << 20)
    written, rest = flood_until_stalled(
        pipe, time.monotonic() + WAIT, lambda: reader.spilled > (8 << 20) - READ_SIZE
    )
    assert written > (1 << 20) + SPOOL + (4 << 20)  # pipe + spool + most of the file: it was read
    assert reader.spooled <= SPOOL + (1 << 20)  # memory stays at its bound (a chunk over at most)
    assert 4 << 20 < reader.spilled <= 8 << 20  # the rest waited in the file, within its bound
    gate.set()
    pipe.write(rest)
    pipe.close()
    assert reader.join(WAIT)
    got = [text for text, _, _ in collect.lines]
    assert len(got) == (written + len(rest)) // len(LINE)
    assert all(text == "x" * 99 for text in got)
    assert reader.spooled == reader.spilled == 0


def test_a_disk_that_refuses_the_spill_costs_a_wait_not_a_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (here /dev/full) breaks the spill: the reader falls back to its memory
    bound and lets the pipe fill, and every line still arrives, in order."""

    monkeypatch.setattr(Spill, "_open", full_disk)
    gate, collect, pipe = threading.Event(), Collector(), Pipe()
    reader = held_reader(pipe, gate, collect, tmp_path)
    numbered = b"".join(
        b"%08d " % i + b"y" * 90 + b"\n" for i in range(40_000)
    )  # 4 MB, more than pipe + spool
    done = threading.Event()

    def child() -> None:
        view = memoryview(numbered)
        while view:
            view = view[os.write(pipe._w, view) :]
        done.set()

    writer = threading.Thread(target=child, daemon=True)
    writer.start()
    assert not done.wait(1.0)  # the child waits: the pipe is full, the spill refused
    assert reader.spilled == 0 and reader.spooled <= SPOOL + (1 << 20)
    gate.set()
    assert done.wait(WAIT)
    pipe.close()
    assert reader.join(WAIT)
    assert [text for text, _, _ in collect.lines] == [f"{i:08d} " + "y" * 90 for i in range(40_000)]


def no_room(self: Spill, size: int) -> bool:
    """`Spill._disk_has_room` on a disk with less than the spill's headroom free."""
    return False


@pytest.mark.parametrize(
    ("attribute", "unusable"),
    [("_open", full_disk), ("_disk_has_room", no_room)],
    ids=["spill broke", "disk nearly full"],
)
def test_without_a_usable_spill_the_memory_spool_gets_its_usual_bound_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attribute: str, unusable: Callable[..., object]
) -> None:
    """A reader whose spill broke, or whose spill's disk has less than its headroom free,
    holds as much in memory as one that never had a spill (not the smaller bound it keeps
    beside a file: a review found the child waiting after 9 MiB, not 64, on a nearly full
    disk)."""
    monkeypatch.setattr(Spill, attribute, unusable)
    gate, pipe = threading.Event(), Pipe()

    def held(timestamp: float, lines: Lines) -> None:
        gate.wait(WAIT)

    reader = PipeReader(pipe.r, held, spill_dir=tmp_path)  # the default bounds
    reader.start()
    written, rest = flood_until_stalled(
        pipe, time.monotonic() + WAIT, lambda: reader.spooled > SPOOL_BYTES // 2
    )
    assert written > SPOOL_BYTES // 2 > SPOOL_BEFORE_SPILL  # it read on past the spill's bound
    assert reader.spilled == 0 and reader.spooled <= SPOOL_BYTES
    gate.set()
    pipe.write(rest)
    pipe.close()
    assert reader.join(WAIT)


def test_a_spill_that_cannot_be_read_back_loses_its_bytes_loudly_and_framing_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gate, collect, pipe = threading.Event(), Collector(), Pipe()
    losses: list[str] = []
    reader = held_reader(pipe, gate, collect, tmp_path, spill_bytes=8 << 20, on_loss=losses.append)
    written, rest = flood_until_stalled(pipe, time.monotonic() + WAIT, lambda: reader.spilled > 0)
    assert reader.spilled > 0

    def failing_read(self: Spill, position: int, end: int, limit: int) -> tuple[float, bytes, int]:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Spill, "read", failing_read)
    gate.set()
    pipe.write(rest)
    pipe.write(b"after\n")
    pipe.close()
    assert reader.join(WAIT)
    texts = [text for text, _, _ in collect.lines]
    assert texts[-1] == "after"  # the framer lived on
    assert len(texts) < (written + len(rest)) // len(LINE)  # what the file held is gone...
    assert "could not be read back" in caplog.text  # ...and said so, in the log...
    assert len(losses) == 1 and "bytes of output were lost" in losses[0]  # ...and to the owner


def test_the_spill_leaves_the_disk_its_headroom(tmp_path: Path) -> None:
    """The store shares the disk: a spill that would leave less than its headroom free
    takes nothing (the reader then waits, as without one)."""
    disk = os.statvfs(tmp_path)
    free = disk.f_bavail * disk.f_frsize
    assert Spill(tmp_path, headroom=0).fits(1024)
    crowded = Spill(tmp_path, headroom=free + (1 << 30))
    assert not crowded.fits(1024)
    crowded.headroom = 0  # space came back: it is asked again
    assert crowded.fits(1024)


def frames_of(thread: threading.Thread) -> list[tuple[str, str]]:
    """(function, source line) of each Python frame `thread` is in now, innermost first."""
    frame = sys._current_frames().get(thread.ident or 0)
    out = []
    while frame is not None:
        out.append(
            (frame.f_code.co_name, linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip())
        )
        frame = frame.f_back
    return out


def wait_for(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not ready():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.001)


def numbered(first: int, count: int) -> bytes:
    return b"".join(b"%08d " % i + b"z" * 91 + b"\n" for i in range(first, first + count))


def test_a_chunk_read_while_the_framer_empties_the_file_waits_for_the_truncation(tmp_path: Path) -> None:
    """A review: the reader chose the file for its next chunk (the file held a backlog),
    and while it waited for the pipe the framer read the backlog back, emptied the file
    and began to truncate it; the chunk then went in at offset 0 and the truncation took
    it. Lines vanished with no notice, or two lines were joined into one."""
    gate, collect, pipe = threading.Event(), Collector(), Pipe()
    reader = held_reader(pipe, gate, collect, tmp_path)
    first = numbered(0, 40_000)  # 4 MB: past the pipe, the chunk held and the spool, into the file
    writer = threading.Thread(target=pipe.write, args=(first,), daemon=True)
    writer.start()
    wait_for("the backlog is read", lambda: reader.bytes_read == len(first))
    writer.join(WAIT)
    assert reader.spilled > 0

    def at_readv() -> bool:
        frames = frames_of(reader._reader)
        return bool(frames) and frames[0][0] == "_read_until_eof" and "os.readv" in frames[0][1]

    wait_for("the reader waits for the pipe, its chunk bound for the file", at_readv)
    spill = reader._spill
    assert spill is not None
    truncating, release = threading.Event(), threading.Event()
    truncate, write = spill.truncate, spill.write
    written_while_truncating: list[int] = []

    def held_truncate() -> None:
        truncating.set()
        release.wait(WAIT)
        truncate()

    def watched_write(position: int, stamp: float, data: bytes) -> int:
        if spill.truncating:
            written_while_truncating.append(position)
        return write(position, stamp, data)

    spill.truncate = held_truncate  # type: ignore[method-assign]
    spill.write = watched_write  # type: ignore[method-assign]
    gate.set()  # the framer reads the backlog back, empties the file, truncates it
    assert truncating.wait(WAIT)
    second = numbered(40_000, 50)
    pipe.write(second)

    def chunk_placed_or_waiting() -> bool:
        names = [name for name, _ in frames_of(reader._reader)]
        return bool(written_while_truncating) or ("_spill_chunk" in names and names[0] == "wait")

    wait_for("the chunk was written, or waits for the truncation", chunk_placed_or_waiting)
    release.set()
    pipe.close()
    assert reader.join(WAIT)
    assert written_while_truncating == []
    texts = [text for text, _, _ in collect.lines]
    assert texts == [f"{i:08d} " + "z" * 91 for i in range(40_050)]


def test_a_header_that_runs_past_the_end_is_refused(tmp_path: Path) -> None:
    """A damaged file (a chunk lost under a truncation) must not be read as a length of
    gigabytes and allocated."""
    spill = Spill(tmp_path)
    spill.end = spill.write(0, 1.0, b"a\n")
    spill.end += spill.write(spill.end, 2.0, b"b\n")
    assert spill._fd is not None
    os.pwrite(spill._fd, struct.pack("<dI", 3.0, 0xDAC0_0000), 0)  # the first header says 3.67 GB
    with pytest.raises(OSError, match="runs past its end"):
        spill.read(0, spill.end, 1 << 20)
    spill.close()
