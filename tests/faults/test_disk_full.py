"""Item 3 of the fault issue: a full disk. Capture goes on from memory while writes
fail; `persisted_seq` never claims more than the store committed; once the disk has
room again, `store_lost` equals exactly the holes in the history, and each hole is a
`lost` gap for a reader.

The store lives on a small tmpfs that the test mounts, so it needs root (skipped
otherwise); "room again" is a remount with a larger size.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from logcast.store import SqliteStore
from tests.e2e.conftest import Server, py_command
from tests.e2e.sse import messages
from tests.store_contract import rec
from tests.util import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

STEADY = """
import sys, time
i = 0
while True:
    sys.stdout.write("".join(f"line {i + k:08d} " + "z" * 100 + "\\n" for k in range(200)))
    sys.stdout.flush()
    i += 200
    time.sleep(0.01)
"""


@contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with _tmpfs(tmp_path / "disk", "1m") as where:
        yield where


def _stats(client: httpx.Client) -> dict[str, object]:
    body = client.get("/api/logs/stats").json()
    return {**body["processes"]["steady"], "store": body["store"]}


def _stored_seqs(client: httpx.Client) -> list[int]:
    seqs: list[int] = []
    cursor: int | None = 0
    while cursor is not None:
        page = client.get("/api/processes/steady/logs", params={"after": cursor, "limit": 10_000}).json()
        seqs += [log["seq"] for log in page["logs"]]
        cursor = page["next"]
    return seqs


def test_a_full_disk_loses_only_what_it_counts(make_server: Callable[..., Server], small_disk: Path) -> None:
    server = make_server(
        f"""
        [storage]
        dir = "{small_disk}"
        memory_lines = 2000
        [process.steady]
        command = {py_command(STEADY)}
        """
    )
    with server.client() as client:
        wait_for(lambda: int(_stats(client)["store"]["errors"]) > 0, 60, "the disk to fill")  # type: ignore[index]
        # while it is full: lines keep coming, and nothing claims to be stored that is not
        full_since = _stats(client)["last_seq"]
        wait_for(
            lambda: int(_stats(client)["last_seq"]) > int(full_since) + 12_000, 60, "lines beyond four rings"
        )  # type: ignore[call-overload]
        during = _stats(client)
        with client.stream("GET", "/api/processes/steady/logs/stream", params={"after": 0}) as stream:
            kinds = []
            for message in messages(stream):
                kinds.append(message.data)
                if message.type == "gap" or len(kinds) > 50_000:
                    break
        gaps = [m for m in kinds if m.get("type") == "gap"]
        assert gaps and gaps[0]["reason"] == "lost", gaps[:1]
        stored_now = max(_stored_seqs(client), default=0)
        assert int(during["persisted_seq"]) <= stored_now  # type: ignore[call-overload]
        assert int(during["store_lost"]) > 0  # type: ignore[call-overload]
        # room again: the writer catches up by itself
        subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
        client.post("/api/processes/steady/stop")
        wait_for(lambda: int(_stats(client)["pending"]) == 0, 60, "the store to catch up")  # type: ignore[call-overload]
        after = _stats(client)
        seqs = _stored_seqs(client)
    last = int(after["last_seq"])  # type: ignore[call-overload]
    assert seqs[-1] == last
    holes = last - len(seqs)
    assert holes > 0
    assert after["store_lost"] == holes
    assert after["persisted_seq"] == last


async def test_a_flood_through_a_small_disk_never_fills_it_with_wal(tmp_path: Path) -> None:
    """The writer lets a flood's WAL grow to 64 MiB before a checkpoint, but only where the
    disk has four times that free: with retention, a flood many times the size of an
    8 MiB disk goes through it without one failed write."""
    with _tmpfs(tmp_path / "disk", "8m") as where:
        store = SqliteStore(where / "h.sqlite3", retain_lines=4_000)
        await store.open()
        try:
            for first in range(1, 120_001, 2_000):  # ~16 MB of rows in writes of 2,000
                batch = [rec(seq, f"{seq:08d} " + "x" * 100) for seq in range(first, first + 2_000)]
                await asyncio.to_thread(store.write, batch)
            assert store.stats.errors == 0
            # no more than SQLite's own checkpoints leave: 1,000 pages, and a write's
            assert Path(f"{where}/h.sqlite3-wal").stat().st_size < 5_500_000
            meta = await store.meta("p")
            assert (meta.last_seq, meta.lines) == (120_000, 120_000)
            assert [r.seq for r in await store.tail("p", 2)] == [119_999, 120_000]
        finally:
            await store.close()
