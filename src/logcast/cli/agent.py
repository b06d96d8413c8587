"""`logcast agent`: this host's processes, their logs written to Redis; no HTTP."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from logcast.cluster.agent import Agent
from logcast.cluster.redis import HostIdTaken, NameTaken
from logcast.config import Settings, load
from logcast.errors import ConfigError, FencedOff, StoreError
from logcast.loop import cancel_all, run, stop_signals
from logcast.secrets import mask_text


async def _run(settings: Settings, url: str, host: str) -> None:
    agent = await Agent.start(settings, url, host, sole=True)
    print(
        f"logcast agent {host}: {len(settings.processes)} process(es), writing to {mask_text(url)}",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def asked(sig: signal.Signals) -> None:
        # Ctrl-C again while it stops: the children are not waited for (as `serve`); not a
        # SIGHUP after a SIGTERM (systemd sends both), nor a SIGTERM after a Ctrl-C
        if stop.is_set() and sig == signal.SIGINT:
            agent.engine.hurry()
        stop.set()

    for sig in stop_signals():  # SIGHUP too (unless ignored): a closed terminal stops it in order
        loop.add_signal_handler(sig, asked, sig)
    fenced = asyncio.ensure_future(agent.fenced.wait())
    fenced.add_done_callback(lambda _: stop.set())
    try:
        await stop.wait()
    finally:
        await cancel_all([fenced])
        await agent.stop()
    if agent.fenced.is_set():
        raise FencedOff(f"logcast agent {host} stopped: {agent.fenced_reason}")


def register(app: typer.Typer) -> None:
    @app.command()
    def agent(
        config: Annotated[Path, typer.Option("-c", "--config", help="The configuration file.")] = Path(
            "logcast.toml"
        ),
        redis: Annotated[
            str,
            typer.Option(
                "--redis",
                envvar="LOGCAST_REDIS_URL",
                help="redis:// or rediss:// URL, password included (or $LOGCAST_REDIS_URL, which keeps it out of `ps`).",
            ),
        ] = "",
        host_id: Annotated[
            str | None,
            typer.Option("--host-id", help="This host's name in the cluster (default: the hostname)."),
        ] = None,
    ) -> None:
        """Several hosts: run this host's processes and write their logs, states and heartbeats
        to Redis, for `logcast serve --redis` replicas to serve. Serves no HTTP."""
        from logcast.cli.serve import fail, setup_logging

        setup_logging()
        if not redis:
            fail("--redis URL (or LOGCAST_REDIS_URL) is required: the Redis every host and replica shares", 2)
        if not config.is_file():
            fail(f"{config}: no such configuration file (see examples/cluster/)", 2)
        host = host_id or socket.gethostname()
        try:
            settings = load(config)
            run(_run(settings, redis, host))
        except ConfigError as exc:
            fail(str(exc), 2)
        except (NameTaken, HostIdTaken) as exc:
            fail(str(exc))
        except (StoreError, OSError) as exc:
            fail(mask_text(str(exc)))
