"""Several hosts on this machine, for `bench/cluster.py`: a real `redis-server` on a free
loopback port (data in a temp folder, append-only), one `logcast agent` supervising the
benchmark's child, and `logcast serve --redis` replicas. Each runs in its own process group
and is stopped by that group (never by name); the agent first, so that it stops its child."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.lib.servers import Server, popen_logged
from tests.util import free_port, stop_group, wait_healthy, wait_port

HOST_ID = "bench-host"


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class Cluster:
    """redis-server, one agent and the replicas, once `start_cluster` returned."""

    tmp: Path
    redis: subprocess.Popen[bytes]
    redis_port: int
    agent: subprocess.Popen[bytes] | None = None
    agent_log: Path | None = None
    replicas: list[Server] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def redis_memory(self) -> dict[str, str]:
        """`INFO memory`: used_memory_human and used_memory_peak_human ({} if unreachable)."""
        import redis

        try:
            client = redis.Redis(port=self.redis_port, socket_timeout=5)
            try:
                info = client.info("memory")
            finally:
                client.close()
        except Exception:
            return {}
        return {k: str(info.get(k, "?")) for k in ("used_memory_human", "used_memory_peak_human")}

    def stop(self) -> None:
        """The agent (it stops its child), then the replicas, then redis-server."""
        if self.agent is not None:
            stop_group(self.agent, timeout=20.0)
        for replica in self.replicas:
            replica.stop()
        stop_group(self.redis, timeout=10.0)


def start_cluster(
    tmp: Path, processes: dict[str, list[str]], replicas: int = 2, timeout: float = 60.0
) -> Cluster:
    """redis-server, an agent running `processes` (name: command; not started by themselves,
    never restarted) and `replicas` replicas, each answering /healthz and listing every
    process with its host alive."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    data = tmp / "redis"
    data.mkdir()
    port = free_port()
    redis_args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes"]
    redis_args += ["--save", "", "--appendonly", "yes", "--dir", str(data)]
    cluster = Cluster(tmp, popen_logged(redis_args, data, tmp / "redis.log"), port)
    try:
        wait_port(port, 10.0)
        parts = []
        for name, command in processes.items():
            parts.append(
                f'[process.{name}]\ncommand = {json.dumps(command)}\nautostart = false\nrestart = "never"\n'
            )
        config = tmp / "agent.toml"
        config.write_text("\n".join(parts))
        cluster.agent_log = tmp / "agent.log"
        cluster.agent = popen_logged(
            [
                sys.executable,
                "-m",
                "logcast",
                "agent",
                "-c",
                str(config),
                "--redis",
                cluster.redis_url,
                "--host-id",
                HOST_ID,
            ],
            tmp,
            cluster.agent_log,
        )
        for i in range(replicas):
            replica_port = free_port()
            log_path = tmp / f"replica-{i + 1}.log"
            proc = popen_logged(
                [
                    sys.executable,
                    "-m",
                    "logcast",
                    "serve",
                    "--redis",
                    cluster.redis_url,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(replica_port),
                ],
                tmp,
                log_path,
            )
            replica = Server("logcast", proc, replica_port, log_path)
            cluster.replicas.append(replica)
            wait_healthy(replica.url, proc, timeout, replica.output, f"replica {i + 1}")
        deadline = time.monotonic() + timeout
        for i, replica in enumerate(cluster.replicas):
            while not _sees(replica, list(processes)):
                if cluster.agent.poll() is not None:
                    raise RuntimeError(
                        f"the agent exited with {cluster.agent.returncode}:\n{_tail(cluster.agent_log)}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"replica {i + 1} does not list {list(processes)} on a live host after "
                        f"{timeout:.0f} s:\n{_tail(cluster.agent_log)}\n{replica.output()}"
                    )
                time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _sees(replica: Server, names: list[str]) -> bool:
    with contextlib.suppress(Exception):
        hosts = replica.http("GET", "/api/hosts", timeout=5.0)["hosts"]
        return any(h["host"] == HOST_ID and h["alive"] and set(names) <= set(h["processes"]) for h in hosts)
    return False
