"""Two agents and two replicas on one Redis: listing, failover of an SSE reader between
replicas, control and clear through a replica, a duplicate process name, the token.

One cluster serves the whole module: agent `a` runs `web` (200 numbered lines a second)
and `worker`, agent `b` runs `llm`; replicas 1 and 2 serve them. No test here changes
what another one reads: the failover test kills a replica of its own, only the control
and clear tests touch `worker`, and nothing stops `web` or `llm`.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psutil
import pytest

from tests.cluster.conftest import (
    UP,
    Cluster,
    Replica,
    child,
    gone,
    open_cluster,
    safe,
    wait_running,
    wait_until,
)
from tests.e2e.sse import Message, messages

pytestmark = pytest.mark.cluster

AGENT_A = f"""
[process.web]
command = {child("ticker.py", 200)}

[process.worker]
command = {child("sleeper.py", "worker")}
"""

AGENT_B = f"""
[process.llm]
command = {child("sleeper.py", "llm")}
"""

HOSTS = {"web": "a", "worker": "a", "llm": "b"}


@dataclass
class Shared:
    cluster: Cluster
    r1: Replica
    r2: Replica


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    with open_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        r1 = cluster.replica("1")
        cluster.agent("a", AGENT_A, watch=r1, processes=["web", "worker"])
        cluster.agent("b", AGENT_B, watch=r1, processes=["llm"])
        r2 = cluster.replica("2")
        yield Shared(cluster, r1, r2)


def test_every_process_is_listed_with_its_host_on_every_replica(shared: Shared) -> None:
    for replica in (shared.r1, shared.r2):
        listed = wait_until(
            lambda r=replica: (got := {n: p.get("host") for n, p in r.processes().items()}) == HOSTS and got,
            15,
            lambda r=replica: f"{HOSTS} in /api/processes of replica {r.name} (last: {safe(r.processes)})",
        )
        assert listed == HOSTS
        assert replica.process("llm")["host"] == "b"
        assert replica.process("web")["host"] == "a"
        for name in HOSTS:
            wait_running(replica, name)

        hosts = replica.hosts()
        assert set(hosts) == {"a", "b"}, hosts
        assert sorted(hosts["a"]["processes"]) == ["web", "worker"]
        assert hosts["b"]["processes"] == ["llm"]
        for host in hosts.values():
            assert host["alive"] is True, host
            assert abs(time.time() - host["last_seen"]) < 10, host


def _log_messages(got: list[Message]) -> list[Message]:
    return [m for m in got if m.seq is not None]


def test_sse_reader_fails_over_to_another_replica_with_last_event_id(shared: Shared) -> None:
    doomed = shared.cluster.replica("failover")
    start = wait_running(doomed, "web")["last_seq"]

    first: list[Message] = []
    killed = False
    with httpx.Client(timeout=httpx.Timeout(10.0, read=10.0), trust_env=False) as client:
        with client.stream(
            "GET", f"{doomed.url}/api/processes/web/logs/stream", params={"after": start}
        ) as r:
            assert r.status_code == 200, r.read()
            try:
                for message in messages(r):
                    first.append(message)
                    if not killed and len(_log_messages(first)) >= 300:
                        os.killpg(doomed.proc.pid, signal.SIGKILL)  # the reader goes on with what arrived
                        killed = True
            except httpx.TransportError:
                pass
    assert killed, f"the stream of replica 1 ended after {len(first)} messages: {first[-3:]}"
    doomed.proc.wait(10)
    last_id = first[-1].id
    assert last_id is not None and int(last_id) == _log_messages(first)[-1].seq

    second: list[Message] = []
    with httpx.Client(timeout=httpx.Timeout(10.0, read=10.0), trust_env=False) as client:
        with client.stream(
            "GET", f"{shared.r2.url}/api/processes/web/logs/stream", headers={"Last-Event-ID": last_id}
        ) as r:
            assert r.status_code == 200, r.read()
            for message in messages(r):
                second.append(message)
                if len(_log_messages(second)) >= 300:
                    break

    for part in (first, second):
        assert [m.type for m in part].count("historical_complete") == 1, [m.data for m in part[:5]]
        odd = [
            m.data for m in part if m.type not in ("historical", "historical_complete", "realtime", "status")
        ]
        assert not odd, f"unexpected events: {odd[:5]}"
        for m in _log_messages(part):
            assert m.id == str(m.seq), f"SSE id {m.id} for seq {m.seq}"

    seqs = [m.seq for m in _log_messages(first) + _log_messages(second)]
    assert seqs[0] == start + 1
    duplicated = sorted({s for s in seqs if seqs.count(s) > 1})
    missing = sorted(set(range(seqs[0], max(seqs) + 1)) - set(seqs))
    assert not duplicated and not missing, f"duplicated seqs {duplicated[:20]}, missing seqs {missing[:20]}"
    assert seqs == sorted(seqs), "seqs out of order"
    assert len(_log_messages(first)) >= 300 and len(_log_messages(second)) >= 300

    history = {log["seq"]: log for log in shared.r2.history("web", after=start)}
    for m in _log_messages(first) + _log_messages(second):
        assert m.seq in history, f"seq {m.seq} streamed but not in the history page"
        assert m.data["log"]["message"] == history[m.seq]["message"], (m.data, history[m.seq])


def test_control_through_replica_2_acts_on_agent_a(shared: Shared) -> None:
    r1, r2 = shared.r1, shared.r2
    before = wait_running(r2, "worker")
    old = psutil.Process(before["pid"])

    restarted = r2.post("/api/processes/worker/restart")
    assert restarted.status_code == 200, restarted.text
    after = restarted.json()
    assert after["name"] == "worker" and after["host"] == "a"
    assert after["run"] == before["run"] + 1, (before, after)
    assert after["pid"] and after["pid"] != before["pid"], (before, after)
    assert after["state"] in UP, after
    new = psutil.Process(after["pid"])
    assert wait_until(lambda: gone(old), 10, f"the old worker pid {old.pid} to end")
    assert not gone(new)
    wait_until(
        lambda: r1.process("worker")["pid"] == new.pid,
        10,
        lambda: f"replica 1 to show worker's new pid {new.pid} (last: {safe(lambda: r1.process('worker'))})",
    )

    stopped = r2.post("/api/processes/worker/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "stopped", stopped.json()
    assert stopped.json().get("pid") is None, stopped.json()
    assert wait_until(lambda: gone(new), 10, f"the stopped worker pid {new.pid} to end")
    wait_until(lambda: r1.process("worker")["state"] == "stopped", 10, "replica 1 to show worker stopped")

    started = r2.post("/api/processes/worker/start")
    assert started.status_code == 200, started.text
    again = started.json()
    assert again["state"] in UP and again["host"] == "a", again
    assert again["run"] == before["run"] + 2, (before, again)
    assert again["pid"] and again["pid"] not in (before["pid"], new.pid), again
    assert not gone(psutil.Process(again["pid"]))


def test_clear_through_a_replica(shared: Shared) -> None:
    wait_running(shared.r1, "worker")
    cleared = shared.r2.post("/api/logs/worker/clear")
    assert cleared.status_code == 200, cleared.text
    body = cleared.json()
    assert body["cleared"] is True and body["process"] == "worker", body
    upto = body["upto"]
    assert isinstance(upto, int) and upto >= 1, body
    wait_until(
        lambda: all(log["seq"] > upto for log in shared.r1.history("worker")),
        10,
        lambda: (
            f"replica 1's history of worker to hold nothing up to {upto}: {safe(lambda: shared.r1.history('worker'))}"
        ),
    )


def test_agent_with_a_name_held_by_a_live_agent_exits(shared: Shared) -> None:
    web = wait_running(shared.r1, "web")
    marker = f"agent-c-web-{uuid.uuid4().hex[:8]}"
    agent = shared.cluster.spawn_agent("c", f"[process.web]\ncommand = {child('sleeper.py', marker)}\n")
    try:
        code = agent.proc.wait(30)
    except Exception:
        raise AssertionError(f"agent c still runs after 30 s:\n{agent.output()}") from None
    assert code == 1, agent.output()
    assert "already run by host 'a'" in agent.stderr(), agent.output()

    strays = [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
    for stray in strays:
        shared.cluster.adopt(stray.pid)
    assert not strays, f"agent c left its web running: {strays}"
    now = shared.r1.process("web")
    assert (now["host"], now["pid"], now["run"]) == ("a", web["pid"], web["run"]), (web, now)


def test_token_on_a_replica(shared: Shared) -> None:
    replica = shared.cluster.replica("token", '[server]\ntoken = "t"\n', token="t")
    with httpx.Client(base_url=replica.url, timeout=10.0, trust_env=False) as anonymous:
        for path in ("/api/processes", "/api/hosts"):
            r = anonymous.get(path)
            assert r.status_code == 401, (path, r.status_code, r.text)
        wrong = anonymous.get("/api/processes", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401, wrong.text
    assert set(replica.processes()) == set(HOSTS)  # with the bearer token: 200


def test_search_download_stats_metrics_and_models_work_across_hosts(shared: Shared) -> None:
    """What a single host answers, a replica answers over every agent's processes."""
    replica = shared.r2
    wait_until(lambda: replica.process("web")["last_seq"] >= 50, 15, "fifty of web's lines")
    found = replica.get("/api/processes/web/logs", q="tick ", limit=5)["logs"]
    assert found and all("tick " in log["message"] for log in found)
    regex = replica.get("/api/processes/web/logs", regex="tick [0-9]+", limit=5)["logs"]
    assert [log["seq"] for log in regex] == [log["seq"] for log in found]
    with replica.client() as c:
        download = c.get("/api/processes/web/logs/download")
        metrics = c.get("/metrics")
    assert download.status_code == 200 and "tick" in download.text
    assert 'logcast_lines_total{process="llm"}' in metrics.text
    assert 'logcast_lines_total{process="web"}' in metrics.text
    stats = replica.get("/api/logs/stats")["processes"]
    assert set(stats) >= {"web", "worker", "llm"} and stats["web"]["lines"] > 0
    models = {m["id"]: m for m in replica.get("/v1/models")["data"]}
    assert set(models) == {"web", "worker", "llm"} and models["llm"]["state"] in ("running", "ready")
    samples = replica.get("/api/samples")["processes"]
    assert set(samples) >= {"web", "llm"}
