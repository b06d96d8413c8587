"""Two `logcast agent`s and one name: a second agent under a live agent's host id exits and
says whose it is; an agent stopped (SIGSTOP) past LOST_AFTER while another host took its
process, once continued, writes nothing over the new owner, stops its copy of the process
and exits 1 saying why."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from logcast.cluster.keys import LOST_AFTER
from tests.cluster.conftest import Cluster, Replica, child, gone, open_cluster, safe, wait_running, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
def one_agent(tmp_path: Path) -> Iterator[tuple[Cluster, Replica]]:
    """Agent `a` runs `web` (`from-a <n>`, 50 lines a second); one replica."""
    with open_cluster(tmp_path) as cluster:
        replica = cluster.replica("1")
        cluster.agent(
            "a",
            f"[process.web]\ncommand = {child('ticker.py', 50, 'from-a')}\n",
            watch=replica,
            processes=["web"],
        )
        yield cluster, replica


def exited(agent_proc: object, seconds: float, output: str) -> int:
    try:
        return int(agent_proc.wait(seconds))  # type: ignore[attr-defined]
    except Exception:
        raise AssertionError(f"the agent still runs after {seconds} s:\n{output}") from None


def test_a_second_agent_under_a_live_host_id_exits_and_names_the_first(
    one_agent: tuple[Cluster, Replica],
) -> None:
    cluster, replica = one_agent
    first = cluster.agents["a"]
    second = cluster.spawn_agent("a", f"[process.api]\ncommand = {child('sleeper.py', 'api')}\n", label="a2")
    code = exited(second.proc, 30, second.output())
    assert code == 1, second.output()
    assert f"host id 'a' is used by another live agent (pid {first.pid} on " in second.stderr(), (
        second.output()
    )
    time.sleep(1.0)  # a heartbeat of the first, were anything taken
    assert "api" not in replica.processes()
    assert wait_running(replica, "web")["host"] == "a"


def test_an_agent_stopped_past_its_heartbeat_while_another_took_its_name_is_fenced_off(
    one_agent: tuple[Cluster, Replica],
) -> None:
    cluster, replica = one_agent
    a = cluster.agents["a"]
    web_a = wait_running(replica, "web")
    child_a = psutil.Process(web_a["pid"])
    cluster.adopt(child_a.pid)

    os.kill(a.pid, signal.SIGSTOP)  # the agent only: its child goes on until its pipe is full
    try:
        wait_until(
            lambda: replica.hosts()["a"]["alive"] is False,
            LOST_AFTER + 10,
            lambda: f"host a lost: {safe(replica.hosts)}",
        )
        b = cluster.agent(
            "b",
            f"[process.web]\ncommand = {child('ticker.py', 50, 'from-b')}\n",
            watch=replica,
            processes=["web"],
        )
        web_b = wait_until(
            lambda: (p := replica.process("web"))["host"] == "b" and p["state"] == "running" and p,
            20,
            lambda: f"web running on b: {safe(lambda: replica.process('web'))}",
        )
        taken_at = web_b["last_seq"]
    finally:
        os.kill(a.pid, signal.SIGCONT)

    code = exited(a.proc, 30, a.output())
    assert code == 1, a.output()
    assert "host 'b' took process 'web' while this agent was away" in a.stderr(), a.output()
    wait_until(lambda: gone(child_a), 10, f"a's copy of web (pid {child_a.pid}) to be stopped")

    # b goes on, and what it holds was not written over
    upto = replica.process("web")["last_seq"]
    wait_until(lambda: replica.process("web")["last_seq"] > upto + 20, 20, "b's lines to go on")
    now = replica.process("web")
    assert (now["host"], now["pid"], now["state"]) == ("b", web_b["pid"], "running"), now
    assert replica.hosts()["b"]["alive"] is True
    messages = [line["message"] for line in replica.history("web", after=taken_at)]
    assert any(m.startswith("from-b") for m in messages), messages[-5:]
    assert not any(m.startswith("from-a") for m in messages), [m for m in messages if "from-a" in m][:5]
    assert b.proc.poll() is None, b.output()
