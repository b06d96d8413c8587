"""A seq names one line forever: reservations on disk, numbering after a crash, and
`store_lost` counting exactly the seqs the store will never have."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from logcast.errors import StoreError
from logcast.hub import Gap, Hub
from logcast.hub.journal import RESERVE_MIN
from logcast.hub.reserver import PARK_AFTER, PARK_MARGIN
from logcast.store import reserve as reserve_module
from logcast.store.reserve import SLOT, InUse, Reservations
from logcast.store.sqlite import SqliteStore
from logcast.types import EventType, Level, Lines, LogRecord, ProcessState, Stream
from tests.fakes import FakeClock, MemoryStore


def write(hub: Hub, n: int, process: str = "app") -> None:
    texts = [f"line {i}" for i in range(n)]
    hub.lines(process, 1, Stream.STDOUT, 1.0, Lines(texts, [Level.INFO] * n, [False] * n))


class GatedStore(MemoryStore):
    """Writes wait while `gate` is clear."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    def write(self, records: Sequence[LogRecord]) -> None:
        self.gate.wait(30)
        super().write(records)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def crash(hub: Hub) -> None:
    """Stop the hub's threads as a SIGKILL would: nothing more is written, nothing flushed."""
    for part in (hub.writer, hub.reserver):
        part.request_stop()
    for part in (hub.writer, hub.reserver):
        assert part.join(10)


async def open_hub(store: MemoryStore | SqliteStore, **kw: int) -> Hub:
    hub = Hub(store, **kw)
    await hub.open(["app"])
    return hub


def test_reservations_survive_reopening_and_a_torn_slot(tmp_path: Path) -> None:
    path = tmp_path / "r.seq"
    first = Reservations(path)
    assert first.open() == {}
    assert path.stat().st_size == 2 * SLOT  # full size from the start: never grows
    first.set({"a": 10})
    first.set({"b": 20})
    first.set({"a": 30})
    first.close()
    again = Reservations(path)
    assert again.open() == {"a": 30, "b": 20}
    again.close()
    # spoil the newest slot (a write torn by a power cut): the previous marks remain
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, b"\xff" * 64, (3 % 2) * SLOT + 20)
    finally:
        os.close(fd)
    torn = Reservations(path)
    assert torn.open() == {"a": 10, "b": 20}
    torn.set({"c": 5})  # and writing goes on above the best generation
    torn.close()
    assert Reservations(path).open() == {"a": 10, "b": 20, "c": 5}


async def test_numbering_resumes_above_the_reservation_after_a_crash() -> None:
    store = MemoryStore()
    hub = await open_hub(store)
    write(hub, 100)
    assert await hub.flush()
    store.fail = True  # the next lines never reach the store
    write(hub, 50)
    await wait_until(lambda: store.reserved.get("app", 0) >= 150)
    reserved = store.reserved["app"]
    crash(hub)  # never closed; a new one opens the same store
    store.fail = False
    again = await open_hub(store)
    try:
        assert await again.flush()
        stats = again.stats("app")
        assert stats["last_seq"] == reserved + 1  # the status record that tells of the loss
        assert stats["persisted_seq"] == reserved + 1
        assert {r.seq for r in await again.page("app", limit=10**6)} == {*range(1, 101), reserved + 1}
        assert stats["store_lost"] == reserved - 100
        status = (await again.page("app", after=reserved))[0]
        assert status.stream is Stream.SYSTEM and status.level is Level.WARNING
        assert f"lines 101..{reserved} were lost" in status.message
        write(again, 3)
        assert [r.seq for r in await again.page("app", after=reserved + 1)] == [
            reserved + 2,
            reserved + 3,
            reserved + 4,
        ]
        # a client that held seq 120 resumes: it is told those lines are lost, then goes on
        sub = await again.subscribe("app", after=120)
        entries = []
        while more := await sub.next(wait=False):
            entries += more
        assert entries[0] == (EventType.GAP, Gap("app", 121, reserved, "lost"))
        assert [p.seq for _, p in entries[1:] if isinstance(p, LogRecord)] == list(
            range(reserved + 1, reserved + 5)
        )
        sub.close()
    finally:
        await again.close()


async def test_a_clean_stop_leaves_no_gap_and_numbering_goes_on() -> None:
    store = MemoryStore()
    hub = await open_hub(store)
    write(hub, 10)
    await hub.close()
    assert store.reserved["app"] == 10
    again = await open_hub(store)
    try:
        assert again.stats("app")["store_lost"] == 0
        write(again, 1)
        assert [r.seq for r in await again.page("app")] == list(range(1, 12))
    finally:
        await again.close()


async def test_capture_never_waits_for_a_reservation_and_readers_never_pass_it() -> None:
    store = MemoryStore()
    hub = await open_hub(store)
    try:
        store.fail_reserve = True
        store.fail = True  # nothing committed either: only the reservation makes lines visible
        reserved = store.reserved["app"]
        sub = await hub.subscribe("app", after=0)
        threads = [threading.Thread(target=write, args=(hub, 3 * RESERVE_MIN)) for _ in range(2)]
        for t in threads:  # two pipes of one process at once
            t.start()
        for t in threads:
            t.join(10)
            assert not t.is_alive()  # capture went on without a reservation
        hub.status("app", 1, ProcessState.RUNNING, "a status record goes on too")
        assert hub.get("app").last_seq == 6 * RESERVE_MIN + 1
        seen: list[int] = []
        while entries := await sub.next(wait=False):
            seen += [p.seq for _, p in entries if isinstance(p, LogRecord)]
        assert seen == list(range(1, reserved + 1))  # no seq the store could hand out again
        assert (await hub.read_page("app", limit=10**6)).records[-1].seq == reserved
        assert (await hub.tail_page("app", 5)).records[-1].seq == reserved
        assert hub.stats("app")["last_seq"] == reserved
        store.fail_reserve = False  # the reservation can be written again: the rest shows
        hub.reserver.poke()
        await wait_until(lambda: hub.get("app").visible_seq == 6 * RESERVE_MIN + 1)
        while entries := await sub.next(wait=False):
            seen += [p.seq for _, p in entries if isinstance(p, LogRecord)]
        assert seen == list(range(1, 6 * RESERVE_MIN + 2))
        sub.close()
    finally:
        store.fail = False
        await hub.close()


async def test_reads_find_records_whose_write_is_in_flight() -> None:
    store = GatedStore()
    hub = await open_hub(store, memory_lines=50)
    try:
        write(hub, 50)
        assert await hub.flush()
        store.gate.clear()  # the next write is held in flight
        write(hub, 100)
        await wait_until(lambda: hub.get("app").writing == 150)
        write(hub, 1)  # trims the ring while 51..150 are in flight
        page = await hub.read_page("app", limit=1000)
        assert [r.seq for r in page.records] == list(range(1, 152))
        tail = await hub.tail_page("app", 151)
        assert [r.seq for r in tail.records] == list(range(1, 152))
    finally:
        store.gate.set()
        await hub.close()


async def test_store_lost_equals_the_holes_in_history() -> None:
    store = MemoryStore()
    hub = await open_hub(store, memory_lines=50)
    try:
        write(hub, 30)
        assert await hub.flush()
        store.fail = True
        for _ in range(40):  # far beyond four times the ring while writes fail
            write(hub, 17)
        store.fail = False
        assert await hub.flush()
        last = hub.stats("app")["last_seq"]
        held = {r.seq for r in await hub.page("app", limit=10**6)}
        holes = last - len(held)
        stats = hub.stats("app")
        assert holes > 0
        assert stats["store_lost"] == holes
        assert stats["persisted_seq"] == last
        assert stats["pending"] == 0
    finally:
        await hub.close()


async def test_sqlite_keeps_the_reservation_beside_the_database(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "history.db")
    await store.open()
    hub = await open_hub(store)
    write(hub, 5)
    assert await hub.flush()
    reserved = (await store.meta("app")).reserved
    assert reserved >= RESERVE_MIN
    crash(hub)
    await store.close()
    store = SqliteStore(tmp_path / "history.db")
    await store.open()
    again = await open_hub(store)
    try:
        assert again.stats("app")["last_seq"] == reserved + 1
        assert again.stats("app")["store_lost"] == reserved - 5
    finally:
        await again.close()
        await store.close()


def power_cut(hub: Hub, folder: Path) -> Path:
    """The hub's threads stop dead, and its SQLite store (in `folder`) loses its WAL, never
    synced: a copy of what survives, in a new folder."""
    crash(hub)
    after = folder / "after"
    after.mkdir()
    for name in ("history.db", "history.db.seq"):
        shutil.copyfile(folder / name, after / name)
    return after


async def next_seq_after(folder: Path) -> int:
    """The seq a new line gets from a store reopened in `folder`."""
    store = SqliteStore(folder / "history.db")
    await store.open()
    hub = await open_hub(store)
    try:
        write(hub, 1)
        return hub.get("app").last_seq
    finally:
        await hub.close()
        await store.close()


class SlowToReserve(SqliteStore):
    """SQLite whose reservation cannot be written while `held` (a disk slow to sync it)."""

    held = False

    def reserve(self, marks: Mapping[str, int]) -> None:
        if self.held:
            raise StoreError("the reservation is not synced yet")
        super().reserve(marks)


async def test_a_power_cut_that_loses_the_last_commits_reuses_no_seq_a_reader_saw(tmp_path: Path) -> None:
    """SQLite commits with synchronous=NORMAL are not synced: a power cut may lose them.
    A reader saw lines committed past the (synced) reservation, and after the cut their
    seqs named other lines (a review, by dropping the WAL after a SIGKILL). Lines show
    once the reservation covers them; the commit alone is not enough."""
    store = SlowToReserve(tmp_path / "history.db")
    await store.open()
    assert not store.commits_durable
    hub = await open_hub(store)
    seen: list[int] = []
    try:
        sub = await hub.subscribe("app", after=0)
        store.held = True
        write(hub, 3 * RESERVE_MIN)
        assert await hub.flush()  # committed, in the WAL, not synced
        assert hub.get("app").committed == 3 * RESERVE_MIN
        while entries := await sub.next(wait=False):
            seen += [p.seq for _, p in entries if isinstance(p, LogRecord)]
        seen += [r.seq for r in (await hub.read_page("app", limit=10**6)).records]
        seen += [r.seq for r in (await hub.tail_page("app", 10)).records]
        assert seen and max(seen) <= RESERVE_MIN
        sub.close()
        after = power_cut(hub, tmp_path)
    finally:
        await store.close()
    assert await next_seq_after(after) > max(seen)  # no seq a reader saw names a new line


async def test_a_synced_store_shows_lines_once_committed(tmp_path: Path) -> None:
    """With `synchronous = FULL` a commit survives a power cut: it is enough to show a line."""
    store = SlowToReserve(tmp_path / "history.db", pragmas={"synchronous": "FULL"})
    await store.open()
    assert store.commits_durable
    hub = await open_hub(store)
    try:
        store.held = True
        write(hub, 3 * RESERVE_MIN)
        assert await hub.flush()
        assert (await hub.read_page("app", limit=10**6)).records[-1].seq == 3 * RESERVE_MIN
    finally:
        await hub.close()
        await store.close()


async def park(hub: Hub, clock: FakeClock, last: int) -> None:
    """Let "app", whose last seq is `last`, be idle for `PARK_AFTER` s: one look of the
    reserver sees its last seq, a later one parks its reservation."""
    for step in (1.0, PARK_AFTER + 1):
        clock.advance(step)
        hub.reserver.poke()
        await asyncio.sleep(0.05)
    await wait_until(lambda: hub.get("app").reserved == last + PARK_MARGIN)


async def test_an_idle_process_parks_its_reservation_and_a_crash_then_announces_no_loss(
    tmp_path: Path,
) -> None:
    """Every SIGKILL of logcast was followed by "lines 9..1000 were lost" (and `store_lost`
    of up to two million) for seqs that never named a line: the whole reservation was taken
    for lost. A process with no new line for `PARK_AFTER` s and all of it stored has its
    reservation brought down to `PARK_MARGIN` above its last seq; a burst past that waits
    for a new one."""
    clock = FakeClock()
    store = SqliteStore(tmp_path / "history.db")
    await store.open()
    hub = Hub(store, monotonic=clock)
    await hub.open(["app"])

    async def parked(last: int) -> None:
        await park(hub, clock, last)
        assert store._reservations.reserved_upto("app") == last + PARK_MARGIN  # written, synced

    try:
        write(hub, 5)
        assert await hub.flush()
        assert hub.get("app").reserved >= RESERVE_MIN
        await parked(5)
        sub = await hub.subscribe("app", after=5)
        write(hub, 2 * PARK_MARGIN)  # past the parked reservation: shown once reserved again
        seen: list[int] = []
        while len(seen) < 2 * PARK_MARGIN:
            entries = await asyncio.wait_for(sub.next(), 10)
            seen += [p.seq for _, p in entries if isinstance(p, LogRecord)]
        assert seen == list(range(6, 6 + 2 * PARK_MARGIN))
        last = 5 + 2 * PARK_MARGIN
        assert store._reservations.reserved_upto("app") >= last + RESERVE_MIN // 2
        assert await hub.flush()
        await parked(last)
        sub.close()
        crash(hub)
    finally:
        await store.close()
    store = SqliteStore(tmp_path / "history.db")
    await store.open()
    again = await open_hub(store)
    try:
        assert again.stats("app")["store_lost"] == PARK_MARGIN  # not the whole lead
        write(again, 1)
        assert again.get("app").last_seq > last + PARK_MARGIN  # above the parked reservation
    finally:
        await again.close()
        await store.close()


async def test_the_exit_record_after_a_parked_reservation_is_covered_by_it(tmp_path: Path) -> None:
    """A review: parked at exactly its last seq, a process's exit status record took the
    next seq, shown at once in `last_exit.last_seq`; a power cut before the reservation
    caught up gave that seq to another line. The margin covers it."""
    clock = FakeClock()
    store = SlowToReserve(tmp_path / "history.db")
    await store.open()
    hub = Hub(store, monotonic=clock)
    await hub.open(["app"])
    try:
        write(hub, 1)
        assert await hub.flush()
        await park(hub, clock, 1)
        store.held = True  # the next reservation does not come through
        hub.status("app", 1, ProcessState.CRASHED, "exited with code 1")
        exit_seq = hub.get("app").last_seq  # what `last_exit.last_seq` shows
        assert await hub.flush()
        assert hub.get("app").visible_seq == exit_seq  # shown: the margin covers it
        after = power_cut(hub, tmp_path)
    finally:
        await store.close()
    assert await next_seq_after(after) > exit_seq


class Unsynced(MemoryStore):
    commits_durable = False  # as SQLite's commits with synchronous = NORMAL


async def test_stored_lines_above_the_reservation_are_not_skipped_as_lost() -> None:
    """A review: the store came back before the reservation (a full disk): a reader's hole
    ran up to the ring's first record, past what may be shown, and stored lines between
    were announced lost and never sent."""
    store = Unsynced()
    hub = await open_hub(store, memory_lines=100)
    try:
        write(hub, 10)
        assert await hub.flush()
        sub = await hub.subscribe("app", after=10)
        store.fail = store.fail_reserve = True
        for _ in range(40):
            write(hub, 50)
            await asyncio.sleep(0.02)
        store.fail = False  # the store first
        assert await hub.flush(20)
        write(hub, 1)
        assert await hub.flush(20)
        got: list[int] = []
        gaps: list[Gap] = []

        def take(entries: list[tuple[EventType, object]]) -> None:
            got.extend(p.seq for _, p in entries if isinstance(p, LogRecord))
            gaps.extend(p for _, p in entries if isinstance(p, Gap))

        while entries := await sub.next(wait=False):
            take(entries)
        store.fail_reserve = False  # then the reservation
        hub.reserver.poke()
        last = hub.get("app").last_seq
        while not got or got[-1] < last:
            take(await asyncio.wait_for(sub.next(), 10))
        stored = sorted(s for s in store.records["app"] if s > 10)
        assert set(stored) <= set(got), "stored lines were skipped"
        missing = set(range(11, last + 1)) - set(got)
        assert missing == {s for g in gaps for s in range(g.start, g.end + 1)}
        sub.close()
    finally:
        store.fail = store.fail_reserve = False
        await hub.close()


async def test_two_pipes_of_one_process_never_see_the_ring_half_trimmed() -> None:
    # The stdout framer trims the ring (under the process lock) while the stderr framer
    # hands on its line: looking at the ring without the lock once caught it half
    # compacted (a negative length), raised, and dropped the stderr line.
    store = MemoryStore()
    hub = await open_hub(store, memory_lines=64)
    try:
        write(hub, 10)
        plog = hub.get("app")
        ring = plog.ring
        outcome: list[object] = []

        def stderr_line() -> None:
            try:
                hub.lines("app", 1, Stream.STDERR, 1.0, Lines(["last words"], [Level.INFO], [False]))
                outcome.append("delivered")
            except BaseException as exc:
                outcome.append(exc)

        with plog.lock:
            head = ring._head
            ring._head = len(ring._buf) + 5  # the moment inside a compaction
            thread = threading.Thread(target=stderr_line)
            thread.start()
            thread.join(0.3)
            ring._head = head
        thread.join(10)
        assert outcome == ["delivered"]
        assert (await hub.page("app"))[-1].message == "last words"
    finally:
        await hub.close()


def test_a_reservations_file_held_by_another_process_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3.seq"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from logcast.store.reserve import Reservations\n"
            "r = Reservations(Path(sys.argv[1])); r.open(); print('held', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(InUse, match=f"in use by another logcast \\(pid {holder.pid}\\)"):
            Reservations(path).open()
    finally:
        holder.communicate("", timeout=10)  # its stdin closed: it ends, and the kernel lets the lock go
    again = Reservations(path)
    assert again.open() == {}
    again.close()


async def test_a_store_in_use_is_refused_before_it_touches_the_database(tmp_path: Path) -> None:
    """A second logcast must not run its schema (a newer one might migrate it) under the
    first: the lock comes first."""
    first = SqliteStore(tmp_path / "history.sqlite3")
    await first.open()
    (tmp_path / "history.sqlite3").unlink()  # so that a touch would show
    for name in ("history.sqlite3-wal", "history.sqlite3-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    second = SqliteStore(tmp_path / "history.sqlite3")
    with pytest.raises(StoreError, match="in use by another logcast"):
        await second.open()
    assert not (tmp_path / "history.sqlite3").exists()
    await first.close()


async def test_a_filesystem_without_locks_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """NFS without lockd answers ENOLCK: logcast starts, unguarded, and says so."""

    def no_locks(fd: int, how: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(reserve_module.fcntl, "flock", no_locks)
    store = SqliteStore(tmp_path / "history.sqlite3")
    await store.open()
    assert "cannot be locked (No locks available)" in caplog.text
    await store.close()
