"""An agent killed with SIGKILL: its host is reported lost, its processes `unknown`, its
children do not outlive it (the guard), and a control command for them times out."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from logcast.cluster.keys import HEARTBEAT, LOST_AFTER
from logcast.cluster.replica import REFRESH
from tests.cluster.conftest import (
    UP,
    Agent,
    Cluster,
    Replica,
    child,
    gone,
    open_cluster,
    safe,
    wait_running,
    wait_until,
)
from tests.util import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def two_agents(tmp_path: Path) -> Iterator[tuple[Cluster, Replica]]:
    """Agent `a` runs `web`, agent `b` runs `llm`; one replica."""
    with open_cluster(tmp_path) as cluster:
        replica = cluster.replica("1")
        cluster.agent(
            "a", f"[process.web]\ncommand = {child('sleeper.py', 'web')}\n", watch=replica, processes=["web"]
        )
        cluster.agent(
            "b", f"[process.llm]\ncommand = {child('sleeper.py', 'llm')}\n", watch=replica, processes=["llm"]
        )
        yield cluster, replica


def test_sigkilled_agent_is_lost_and_its_children_go(two_agents: tuple[Cluster, Replica]) -> None:
    cluster, replica = two_agents
    agent = cluster.agents["b"]
    llm = wait_running(replica, "llm")
    assert llm["host"] == "b"
    llm_child = psutil.Process(llm["pid"])
    for descendant in psutil.Process(agent.pid).children(recursive=True):
        cluster.adopt(descendant.pid)  # killed at teardown should the guard fail
    assert llm_child.pid in {d.pid for d in psutil.Process(agent.pid).children(recursive=True)}

    # the LLM manager's stream of llm: it ends when the model stops, and so when its host is lost
    seed: list[str] = []
    reader = threading.Thread(target=read_seed_stream, args=(replica, "llm", seed), daemon=True)
    reader.start()
    wait_for(lambda: bool(seed), 10, "the seed stream of llm to begin")

    os.kill(agent.pid, signal.SIGKILL)  # the leader only: its children survive unless the guard acts
    killed_at = time.monotonic()
    agent.proc.wait(10)

    wait_for(
        lambda: gone(llm_child),
        5,
        f"llm's child (pid {llm_child.pid}) to end within 5 s of its agent's SIGKILL (the guard)",
    )

    def lost() -> bool:
        return replica.hosts()["b"]["alive"] is False and replica.process("llm")["state"] == "unknown"

    # The key expires LOST_AFTER after the last heartbeat (up to HEARTBEAT before the kill),
    # the replica sees it at its next refresh; 3 s more for Redis, HTTP and a loaded machine.
    within = LOST_AFTER + HEARTBEAT + REFRESH + 3.0
    wait_until(
        lost,
        max(0.0, within - (time.monotonic() - killed_at)),
        lambda: (
            f"host b not alive and llm unknown within {within:.1f} s of the SIGKILL "
            f"(hosts: {safe(replica.hosts)}, llm: {safe(lambda: replica.process('llm'))})"
        ),
    )
    print(f"host b seen lost {time.monotonic() - killed_at:.1f} s after its agent's SIGKILL")
    listed = replica.processes()
    assert listed["llm"]["state"] == "unknown" and listed["llm"]["host"] == "b", listed["llm"]
    hosts = replica.hosts()
    assert hosts["a"]["alive"] is True, hosts  # the other host is not affected
    assert listed["web"]["state"] in UP, listed["web"]

    asked_at = time.monotonic()
    answer = replica.post("/api/processes/llm/restart", timeout=60)
    took = time.monotonic() - asked_at
    print(f"restart of llm on a lost host answered {answer.status_code} after {took:.1f} s")
    assert answer.status_code == 504, (answer.status_code, answer.text)
    detail = answer.json()["detail"]
    assert re.search(r"(?<![\w-])b(?![\w-])", detail), f"the 504's detail does not name host b: {detail!r}"
    assert took < 20, f"the 504 took {took:.1f} s (expected ~10 s)"

    # a review: the stream stayed open, saying nothing, for as long as the host was lost
    reader.join(10)
    assert not reader.is_alive(), f"the seed stream of llm is still open: {seed[-3:]}"
    end = json.loads(seed[-1])
    assert end["type"] == "stream_end" and "llm unknown: its host 'b' is lost" in end["message"], end


def read_seed_stream(replica: Replica, name: str, out: list[str]) -> None:
    """The `data:` lines of `/api/models/{name}/logs/stream` until the stream ends."""
    with replica.client(timeout=60.0) as client, client.stream("GET", f"/api/models/{name}/logs/stream") as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                out.append(line[5:].strip())


# A child that ignores SIGTERM, with a stop_timeout no test waits out.
STUBBORN_SOURCE = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(3600)"
STUBBORN_TOML = f"[process.stubborn]\ncommand = {json.dumps([sys.executable, '-c', STUBBORN_SOURCE])}\nstop_timeout = 60\n"


@contextmanager
def stubborn_agent(tmp_path: Path) -> Iterator[tuple[Agent, psutil.Process]]:
    """An agent running that child, and the child."""
    with open_cluster(tmp_path) as cluster:
        replica = cluster.replica("1")
        agent = cluster.agent("a", STUBBORN_TOML, watch=replica, processes=["stubborn"])
        kid = psutil.Process(wait_running(replica, "stubborn")["pid"])
        cluster.adopt(kid.pid)
        yield agent, kid


def test_a_second_ctrl_c_makes_an_agent_kill_its_children_instead_of_waiting(tmp_path: Path) -> None:
    """As `logcast serve` does: Ctrl-C stops in order, each process within its stop_timeout;
    Ctrl-C again meanwhile kills the children now (the agent waited the whole stop_timeout)."""
    with stubborn_agent(tmp_path) as (agent, kid):
        started = time.monotonic()
        os.kill(agent.pid, signal.SIGINT)
        time.sleep(1.0)  # its stop under way (an agent stops telling Redis of states first)
        os.kill(agent.pid, signal.SIGINT)  # again
        assert agent.proc.wait(30) == 0, agent.output()
        assert time.monotonic() - started < 30  # not the 60 s stop_timeout
        assert gone(kid)


def test_a_sighup_after_sigterm_still_stops_an_agent_in_order(tmp_path: Path) -> None:
    """systemd sends SIGHUP after SIGTERM (and a closed terminal does during a Ctrl-C stop):
    that is no second Ctrl-C, and the children still get their stop_timeout (a review)."""
    with stubborn_agent(tmp_path) as (agent, kid):
        os.kill(agent.pid, signal.SIGTERM)
        time.sleep(1.0)
        os.kill(agent.pid, signal.SIGHUP)
        time.sleep(2.0)
        assert not gone(kid) and agent.proc.poll() is None  # still given its stop_timeout
        os.kill(agent.pid, signal.SIGINT)  # a Ctrl-C now: no more waiting
        assert agent.proc.wait(30) == 0, agent.output()
        assert gone(kid)
