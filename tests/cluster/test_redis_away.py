"""Redis away for 5 s under 2,000 lines/s: the child is never held up, a replica says 503
(redis) meanwhile and recovers by itself, and every line the child wrote is afterwards in
the history or inside a `gap` announced as lost: none is missing silently."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import Replica, child, open_cluster, safe, wait_running, wait_until
from tests.e2e.sse import Message, messages

pytestmark = pytest.mark.cluster

RATE = 2000
OUTAGE = 5.0


def unavailable(replica: Replica) -> str | None:
    """The detail of a 503 that mentions redis, from /api/processes; None otherwise."""
    with replica.client(5.0) as client:
        r = client.get("/api/processes")
    if r.status_code != 503:
        return None
    detail = str(r.json().get("detail", ""))
    return detail if "redis" in detail.lower() else None


def whole_stream(replica: Replica, name: str) -> list[Message]:
    """The SSE stream from after=0 until `historical_complete`."""
    got: list[Message] = []
    with httpx.Client(timeout=httpx.Timeout(10.0, read=60.0), trust_env=False) as client:
        url = f"{replica.url}/api/processes/{name}/logs/stream"
        with client.stream("GET", url, params={"after": 0}) as r:
            assert r.status_code == 200, r.read()
            for message in messages(r):
                got.append(message)
                if message.type == "historical_complete":
                    return got
    raise AssertionError(f"the stream ended before historical_complete: {[m.data for m in got[-3:]]}")


def test_lines_written_while_redis_is_away_are_stored_or_announced_lost(tmp_path: Path) -> None:
    report = tmp_path / "writer.json"
    with open_cluster(tmp_path / "cluster") as cluster:
        replica = cluster.replica("1")
        cluster.agent(
            "w",
            f"""
            [storage]
            memory_lines = 1000  # small, so that lines are dropped while Redis is away

            [process.writer]
            command = {child("writer.py", RATE, report)}
            """,
            watch=replica,
            processes=["writer"],
        )
        wait_running(replica, "writer")
        wait_until(
            lambda: replica.process("writer")["last_seq"] >= RATE,
            15,
            lambda: (
                f"a second of the writer's lines in Redis (last: {safe(lambda: replica.process('writer'))})"
            ),
        )

        cluster.redis.stop()
        down_at = time.monotonic()
        detail = wait_until(
            lambda: unavailable(replica), OUTAGE, "the replica to answer 503 naming redis while Redis is away"
        )
        print(f"replica while Redis is away: 503 {detail!r}")
        time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))  # the outage lasts OUTAGE seconds

        cluster.redis.start()
        up_at = time.monotonic()
        wait_until(replica.processes, 12, "the replica to answer /api/processes again after Redis came back")
        print(f"replica answered again {time.monotonic() - up_at:.1f} s after Redis came back")
        resumed = replica.process("writer")["last_seq"]
        wait_until(
            lambda: replica.process("writer")["last_seq"] >= resumed + RATE,
            15,
            lambda: (
                f"the writer's lines to reach Redis again (last: {safe(lambda: replica.process('writer'))})"
            ),
        )

        stopped = replica.post("/api/processes/writer/stop")
        assert stopped.status_code == 200, stopped.text
        wait_until(report.exists, 15, "the writer's report (it ends on SIGTERM)")

        def final_record() -> dict[str, Any] | None:
            logs = replica.get("/api/processes/writer/logs", tail=1)["logs"]
            return logs[-1] if logs and logs[-1].get("state") in ("stopped", "exited") else None

        last_record = wait_until(final_record, 15, "the writer's stop to be the last record in the history")
        history = replica.history("writer")
        events = whole_stream(replica, "writer")
        stats = replica.get("/api/logs/stats")["processes"]["writer"]

    written = json.loads(report.read_text())
    last_counter, max_gap = written["last"], written["max_gap"]
    final_seq = last_record["seq"]

    by_seq = {log["seq"]: log for log in history}
    assert len(by_seq) == len(history), "a seq twice in the history"
    lines = [log for log in history if log["stream"] == "stdout"]
    counters = [int(log["message"].split()[1]) for log in lines]
    seqs = [log["seq"] for log in lines]
    assert seqs == sorted(seqs)
    assert counters == sorted(counters) and len(set(counters)) == len(counters), "lines reordered or doubled"
    assert counters and counters[-1] <= last_counter, (counters[-1:], last_counter)

    gaps = [m.data for m in events if m.type == "gap"]
    lost = {s for g in gaps if g["reason"] == "lost" for s in range(g["from"], g["to"] + 1)}
    other = [g for g in gaps if g["reason"] != "lost"]
    assert not other, f"gaps that are not 'lost' in a history nobody cleared: {other}"
    streamed = [m.seq for m in events if m.seq is not None]
    assert set(streamed) == set(by_seq), "the stream's history differs from the history pages"

    unannounced = sorted(set(range(1, final_seq + 1)) - set(by_seq) - lost)
    assert not unannounced, (
        f"seqs neither in the history nor in a lost gap: {unannounced[:20]} ({len(unannounced)})"
    )

    # every counter missing between two stored lines has a lost seq between them
    present = [(-1, 0), *zip(counters, seqs, strict=True), (last_counter + 1, final_seq + 1)]
    silently_missing = []
    for (c1, s1), (c2, s2) in itertools.pairwise(present):
        missing = c2 - c1 - 1
        if missing > 0 and sum(1 for s in range(s1 + 1, s2) if s in lost) < missing:
            silently_missing.append((c1 + 1, c2 - 1))
    assert not silently_missing, f"counter ranges neither stored nor announced lost: {silently_missing[:10]}"

    n_missing = last_counter + 1 - len(counters)
    print(
        f"writer: {last_counter + 1} lines at {RATE}/s, longest write stall {max_gap:.3f} s; "
        f"{n_missing} lines lost while Redis was away, {len(lost)} seqs announced lost, "
        f"store_lost {stats.get('store_lost')}"
    )
    assert max_gap < 1.0, f"the writer was held up {max_gap:.3f} s"
    assert stats["store_lost"] == len(lost), (
        f"store_lost {stats['store_lost']}, lost seqs {len(lost)}: {stats}"
    )


def test_a_replica_started_while_redis_is_away_serves_503_then_the_cluster(tmp_path: Path) -> None:
    """It exited with code 3 and a traceback; a replica that cannot reach Redis answers 503."""
    with open_cluster(tmp_path / "cluster") as cluster:
        cluster.redis.stop()
        replica = cluster.replica("1")  # /healthz answers: the server is up
        detail = wait_until(lambda: unavailable(replica), 10, "503 naming redis")
        print(f"replica started without Redis: 503 {detail!r}")
        cluster.redis.start()
        cluster.agent(
            "w",
            f"""
            [process.writer]
            command = {child("writer.py", 100, tmp_path / "writer.json")}
            """,
            watch=replica,
            processes=["writer"],
        )
        wait_running(replica, "writer")
        wait_until(lambda: replica.process("writer")["last_seq"] >= 100, 15, "the writer's lines mirrored")
        assert "Traceback" not in replica.output()
