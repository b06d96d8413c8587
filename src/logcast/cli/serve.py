"""`logcast serve` and `logcast run`: the supervisor, the API and the dashboard.

Ctrl-C or SIGTERM ends the streams, then the engine stops the children and flushes the
store, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated

import typer

from logcast.ansi import sanitize_for_terminal, strip_ansi
from logcast.config import Settings, load, single_process
from logcast.engine import Engine
from logcast.errors import ConfigError, StoreError
from logcast.secrets import mask_text
from logcast.types import Entry, Gap, LogRecord, Stream
from logcast.web import server
from logcast.web.app import create_app

log = logging.getLogger(__name__)

ECHO_QUEUE = 10_000
COLOURS = ["36", "33", "32", "35", "34", "91", "96", "93", "92", "95", "94"]


class Echo:
    """Prints records to a terminal without ever making anyone wait for it (`--echo`).

    A bounded queue is drained by a thread of its own: a terminal that stops reading (a
    paused `less`, a stuck ssh session) fills it, further lines are counted instead of
    queued, and the count is printed when the terminal moves again.
    """

    def __init__(self, names: list[str], stream: object = None, *, colour: bool | None = None) -> None:
        self.out = stream if stream is not None else sys.stdout
        isatty = getattr(self.out, "isatty", lambda: False)()
        self.colour = colour if colour is not None else (isatty and "NO_COLOR" not in os.environ)
        width = max((len(name) for name in names), default=4)
        self.prefix = {
            name: (
                f"\x1b[{COLOURS[i % len(COLOURS)]}m{name:<{width}} |\x1b[0m "
                if self.colour
                else f"{name:<{width}} | "
            )
            for i, name in enumerate(names)
        }
        self.queue: queue.Queue[str | None] = queue.Queue(ECHO_QUEUE)
        self.missed = 0
        self._thread = threading.Thread(target=self._drain, name="logcast-echo", daemon=True)
        self._thread.start()

    def line(self, record: LogRecord) -> str:
        text = sanitize_for_terminal(record.message)
        if not self.colour:
            text = strip_ansi(text)
        prefix = self.prefix.get(record.process) or f"{record.process} | "
        if record.stream is Stream.SYSTEM:
            text = f"[logcast] {text}"
        return prefix + text + "\n"

    def offer(self, text: str) -> None:
        if self.missed and not self.queue.full():
            with contextlib.suppress(queue.Full):
                self.queue.put_nowait(
                    f"[logcast] {self.missed} lines not shown: the terminal was not reading\n"
                )
                self.missed = 0
        try:
            self.queue.put_nowait(text)
        except queue.Full:
            self.missed += 1

    def _drain(self) -> None:
        write = getattr(self.out, "write")  # noqa: B009
        flush = getattr(self.out, "flush", lambda: None)
        while True:
            item = self.queue.get()
            if item is None:
                return
            parts = [item]
            with contextlib.suppress(queue.Empty):
                while len(parts) < 1000:
                    queued = self.queue.get_nowait()
                    if queued is None:
                        write("".join(parts))
                        flush()
                        return
                    parts.append(queued)
            try:
                write("".join(parts))
                flush()
            except (OSError, ValueError):
                return

    async def follow(self, follow: Callable[[str], AsyncIterator[Entry]], names: list[str]) -> None:
        """Print what `follow(name)` yields for every name, until it ends."""

        async def pump(name: str) -> None:
            async for _kind, payload in follow(name):
                if isinstance(payload, LogRecord):
                    self.offer(self.line(payload))
                elif isinstance(payload, Gap):
                    self.offer(f"[logcast] {payload.process}: {payload.count} lines not shown\n")

        await asyncio.gather(*(pump(name) for name in names))

    def close(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=timeout)
        self._thread.join(timeout)


def _serve(settings: Settings, *, echo: bool, access_log: bool = False, redis_url: str | None = None) -> int:
    names = list(settings.processes)
    echo_printer = Echo(names) if echo and not redis_url else None
    followers: set[asyncio.Task[None]] = set()

    async def open_engine() -> Engine:
        if redis_url:
            # here, not at the top: redis-py costs every other `serve` ~8 MB of RSS
            from logcast.cluster.replica import ClusterEngine

            return await ClusterEngine.open(settings, redis_url)
        engine = await Engine.start(settings, sole=True)
        if echo_printer is not None:
            # ends by itself when the engine stops
            follower = asyncio.create_task(echo_printer.follow(engine.follow, names))
            followers.add(follower)
            follower.add_done_callback(followers.discard)
        return engine

    app = create_app(settings)
    url = f"http://{settings.server.host}:{settings.server.port}"
    what = f"replica of {mask_text(redis_url)}" if redis_url else f"{len(names)} process(es)"
    try:
        started = server.run(
            app,
            settings.server,
            access_log=access_log,
            open_engine=open_engine,
            ready=lambda: print(f"logcast {what}, dashboard at {url}/", file=sys.stderr, flush=True),
        )
    finally:
        if echo_printer is not None:
            echo_printer.close()
    return 0 if started else 1


def setup_logging() -> None:
    level = os.environ.get("LOGCAST_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, format="%(asctime)s logcast %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def fail(message: str, code: int = 1) -> None:
    print(f"logcast: {message}", file=sys.stderr)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        config: Annotated[
            Path | None,
            typer.Option("-c", "--config", help="The configuration file (default logcast.toml)."),
        ] = None,
        host: Annotated[
            str | None, typer.Option(help="Address to bind (default from the file, else 127.0.0.1).")
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="Port (default from the file, else 8080).", min=1, max=65535)
        ] = None,
        echo: Annotated[bool, typer.Option("--echo/--no-echo", help="Also print every line here.")] = False,
        access_log: Annotated[bool, typer.Option(help="Log every HTTP request.")] = False,
        redis: Annotated[
            str | None,
            typer.Option(
                "--redis",
                envvar="LOGCAST_REDIS_URL",
                help="Several hosts: serve every agent's processes from this Redis (redis:// or"
                " rediss://; or $LOGCAST_REDIS_URL, which keeps a password out of `ps`); the file then"
                " gives only \\[server] settings and nothing is supervised here.",
            ),
        ] = None,
    ) -> None:
        """Start the manager, the API and the web dashboard; autostart processes."""
        setup_logging()
        if config is None and not redis:
            config = Path("logcast.toml")
        if config is not None and not config.is_file():
            fail(f"{config}: no such configuration file (see examples/demo.toml)", 2)
        try:
            settings = load(config) if config is not None else Settings()
            settings = _override(settings, host, port)
            code = _serve(settings, echo=echo, access_log=access_log, redis_url=redis)
        except ConfigError as exc:
            fail(str(exc), 2)
        except (OSError, StoreError) as exc:  # a port in use, a storage folder that cannot open
            fail(_reason(exc))
        raise typer.Exit(code)

    @app.command(context_settings={"allow_interspersed_args": False})
    def run(
        command: Annotated[list[str], typer.Argument(help="The command to supervise, after --.")],
        name: Annotated[str | None, typer.Option(help="Process name (default: the command's).")] = None,
        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
        restart: Annotated[str, typer.Option(help="never | on-failure | always")] = "never",
        echo: Annotated[bool, typer.Option("--echo/--no-echo")] = True,
    ) -> None:
        """Zero-config: supervise one command and serve its logs and dashboard."""
        setup_logging()
        try:
            settings = single_process(command, name, restart=restart)
            settings = _override(settings, host, port)
            code = _serve(settings, echo=echo)
        except ConfigError as exc:
            fail(str(exc), 2)
        except (OSError, StoreError) as exc:  # a port in use, a storage folder that cannot open
            fail(_reason(exc))
        raise typer.Exit(code)


def _reason(exc: Exception) -> str:
    """What went wrong, without Python's `[Errno N]`."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    return str(exc)


def _override(settings: Settings, host: str | None, port: int | None) -> Settings:
    server = settings.server
    if host is not None:
        server = dataclasses.replace(server, host=host)
    if port is not None:
        server = dataclasses.replace(server, port=port)
    return dataclasses.replace(settings, server=server)


__all__ = ["Echo", "register"]
