"""Several hosts on Redis Streams, black-box: a real `redis-server`, real
`python -m logcast agent` and `python -m logcast serve --redis` processes, read over HTTP.

`open_cluster(folder)` gives a `Cluster`: a redis-server on a free loopback port with its
data in `folder/redis` (append-only, fsync always; `cluster.redis.stop()` / `.start()` take
it away and bring it back on the same port and folder), `cluster.replica(name)` and
`cluster.agent(host, toml, watch=replica)` launchers that wait until the replica answers
`/healthz` / until the agent's host is alive in the replica's `/api/hosts`. Every process
runs in its own process group with its output in a file; all are stopped by process group
(and an agent's children by pid) when the cluster closes. When a test fails, the tail of
every output of the clusters open at that moment is added to its report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.util import free_port, popen_logged, stop_group, wait_for, wait_healthy, wait_port

HERE = Path(__file__).parent
PYTHON = sys.executable
UP = frozenset({"starting", "running", "ready"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: several hosts on Redis (real redis-server, logcast agents and replicas)"
    )


def child(script: str, *args: object) -> str:
    """A TOML array running one of this folder's child scripts."""
    return json.dumps([PYTHON, "-u", str(HERE / script), *map(str, args)])


def _read(path: Path, tail: int | None = None) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[-tail:] if tail else text


class RedisServer:
    """A redis-server whose data survives a stop: `stop()` (SIGTERM, wait) and `start()`
    again on the same port and folder."""

    def __init__(self, folder: Path, port: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: apt-get install redis-server")
        self.binary = binary
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.log_path = folder / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "redis-server is already running"
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes"]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)]
        self.proc = popen_logged(args, self.dir, self.log_path)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def output(self) -> str:
        return _read(self.log_path)


@dataclass
class Agent:
    host: str
    dir: Path
    config: Path
    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return _read(self.err_path)

    def output(self, tail: int | None = None) -> str:
        return f"--- stdout ---\n{_read(self.out_path, tail)}\n--- stderr ---\n{_read(self.err_path, tail)}"


@dataclass
class Replica:
    name: str
    url: str
    port: int
    dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout, trust_env=False)

    def get(self, path: str, **params: Any) -> Any:
        """GET `path` and its JSON; an AssertionError with the answer unless 200."""
        with self.client() as c:
            r = c.get(path, params=params or None)
        assert r.status_code == 200, f"GET {path} on replica {self.name}: {r.status_code} {r.text[:500]}"
        return r.json()

    def post(self, path: str, timeout: float = 30.0, **params: Any) -> httpx.Response:
        with self.client(timeout) as c:
            return c.post(path, params=params or None)

    def output(self, tail: int | None = None) -> str:
        return _read(self.log_path, tail)

    # reads the tests share

    def hosts(self) -> dict[str, dict[str, Any]]:
        return {h["host"]: h for h in self.get("/api/hosts")["hosts"]}

    def processes(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.get("/api/processes")["processes"]}

    def process(self, name: str) -> dict[str, Any]:
        return dict(self.get(f"/api/processes/{name}"))

    def history(self, name: str, after: int = 0) -> list[dict[str, Any]]:
        """Every record after `after`, page by page."""
        logs: list[dict[str, Any]] = []
        while True:
            page = self.get(f"/api/processes/{name}/logs", after=after, limit=10_000)
            logs += page["logs"]
            if page["next"] is None:
                return logs
            assert page["next"] > after, f"history of {name} does not advance: {page['next']} after {after}"
            after = page["next"]


@dataclass
class Cluster:
    root: Path
    redis: RedisServer
    agents: dict[str, Agent] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)
    adopted: list[psutil.Process] = field(default_factory=list)

    def replica(self, name: str, toml: str | None = None, token: str | None = None) -> Replica:
        """Start `logcast serve --redis` (with `-c` only when `toml` is given) and wait for /healthz."""
        folder = self.root / f"replica-{name}"
        folder.mkdir()
        port = free_port()
        args = [PYTHON, "-m", "logcast", "serve", "--redis", self.redis.url]
        if toml is not None:
            config = folder / "logcast.toml"
            config.write_text(textwrap.dedent(toml))
            args += ["-c", str(config)]
        args += ["--host", "127.0.0.1", "--port", str(port)]
        log_path = folder / "replica.log"
        replica = Replica(
            name,
            f"http://127.0.0.1:{port}",
            port,
            folder,
            popen_logged(args, folder, log_path),
            log_path,
            token,
        )
        self.replicas.append(replica)
        wait_healthy(
            replica.url, replica.proc, 30.0, replica.output, f"replica {name} (logcast serve --redis)"
        )
        return replica

    def spawn_agent(self, host: str, toml: str, label: str | None = None) -> Agent:
        """Start `logcast agent` for `host` without waiting for anything (`label`: its name
        here, where two agents are started under one host id)."""
        label = label or host
        folder = self.root / f"agent-{label}"
        folder.mkdir()
        config = folder / "logcast.toml"
        config.write_text(textwrap.dedent(toml))
        args = [
            PYTHON,
            "-m",
            "logcast",
            "agent",
            "-c",
            str(config),
            "--redis",
            self.redis.url,
            "--host-id",
            host,
        ]
        out, err = folder / "agent.out", folder / "agent.err"
        agent = Agent(host, folder, config, popen_logged(args, folder, out, err=err), out, err)
        self.agents[label] = agent
        return agent

    def agent(
        self, host: str, toml: str, *, watch: Replica, processes: list[str], timeout: float = 30.0
    ) -> Agent:
        """Start an agent and wait until `watch` lists its host alive with `processes`."""
        agent = self.spawn_agent(host, toml)

        def ready() -> bool:
            if agent.proc.poll() is not None:
                raise AssertionError(f"agent {host} exited with {agent.proc.returncode}:\n{agent.output()}")
            try:
                entry = watch.hosts().get(host)
            except (AssertionError, httpx.HTTPError):
                return False
            return bool(entry and entry["alive"] and set(processes) <= set(entry["processes"]))

        wait_for(
            ready,
            timeout,
            lambda: (
                f"host {host} alive with {processes} in /api/hosts of replica {watch.name}\n"
                f"agent output:\n{agent.output(3000)}\nreplica output:\n{watch.output(3000)}"
            ),
            interval=0.1,
        )
        return agent

    def adopt(self, pid: int) -> None:
        """Make sure a process (an agent's child, say) is gone when the cluster closes."""
        try:
            self.adopted.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass

    def close(self) -> None:
        for agent in self.agents.values():
            if agent.proc.poll() is None:
                try:
                    for descendant in psutil.Process(agent.pid).children(recursive=True):
                        self.adopted.append(descendant)
                except psutil.NoSuchProcess:
                    pass
            stop_group(agent.proc)
        for replica in self.replicas:
            stop_group(replica.proc)
        self.redis.stop()
        for leftover in self.adopted:  # an agent's child its agent did not take along
            try:
                if leftover.is_running():
                    leftover.kill()
                    leftover.wait(5)
            except psutil.NoSuchProcess:
                pass

    def outputs(self, tail: int = 4000) -> list[tuple[str, str]]:
        sections = [(f"agent {a.host} ({a.dir})", a.output(tail)) for a in self.agents.values()]
        sections += [(f"replica {r.name} ({r.dir})", r.output(tail)) for r in self.replicas]
        sections.append(("redis-server", self.redis.output()[-tail:]))
        return sections


_OPEN: list[Cluster] = []


@contextmanager
def open_cluster(root: Path) -> Iterator[Cluster]:
    cluster = Cluster(root, RedisServer(root / "redis", free_port()))
    _OPEN.append(cluster)
    try:
        cluster.redis.start()
        yield cluster
    finally:
        _OPEN.remove(cluster)
        cluster.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for cluster in _OPEN:
            for title, text in cluster.outputs():
                report.sections.append((title, text))


def gone(proc: psutil.Process) -> bool:
    """The process no longer runs (a zombie waiting for its parent counts as gone)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> Any:
    """wait_for that treats a failing read (an AssertionError from Replica.get, a connection
    error) as "not yet"."""

    def attempt() -> Any:
        try:
            return predicate()
        except (AssertionError, httpx.HTTPError, KeyError):
            return None

    return wait_for(attempt, timeout, what, interval=0.1)


def safe(read: Callable[[], Any]) -> str:
    """`repr(read())`, or the error reading it: for failure messages."""
    try:
        return repr(read())
    except Exception as exc:
        return f"<{type(exc).__name__}: {exc}>"


def wait_running(replica: Replica, name: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until `name` is up with a pid, as `replica` sees it; its process object."""
    return dict(
        wait_until(
            lambda: (p := replica.process(name))["state"] in UP and p.get("pid") and p,
            timeout,
            lambda: (
                f"{name} up with a pid on replica {replica.name} (last: {safe(lambda: replica.process(name))})"
            ),
        )
    )
