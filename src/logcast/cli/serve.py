"""`logcast serve` and `logcast run`: the manager, the API and the dashboard.

uvicorn runs the app (uvloop where installed, httptools) with request heads bounded in
size, number of fields and time (`web/heads.py`). A subclass of
`uvicorn.Server` ends every open log stream as soon as a shutdown is asked for
(Ctrl-C, SIGTERM), so uvicorn does not sit waiting on streams that never finish;
the app's lifespan then stops the children and flushes the store, in that order.

`--echo` (the default for `run`) also prints every line to this terminal, prefixed
with its process name in a colour per process. The printing goes through a bounded
queue drained by its own thread: a terminal that stops reading (a paused `less`, a
stuck ssh session) fills the queue, further lines are counted instead of queued,
and the count is printed when the terminal moves again. The child never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
import uvicorn

from logcast.capture.ansi import sanitize_for_terminal, strip_ansi
from logcast.config import Settings, load, single_process
from logcast.engine import Engine
from logcast.errors import ConfigError
from logcast.types import Entry, Gap, LogRecord, Stream
from logcast.web.app import create_app
from logcast.web.heads import LimitedHttpToolsProtocol
from logcast.web.wsframes import FramesWebSocketProtocol

log = logging.getLogger(__name__)

ECHO_QUEUE = 10_000
COLOURS = ["36", "33", "32", "35", "34", "91", "96", "93", "92", "95", "94"]


class Echo:
    """Prints records to a terminal without ever making anyone wait for it."""

    def __init__(self, names: list[str], stream: object = None, *, colour: bool | None = None) -> None:
        self.out = stream if stream is not None else sys.stdout
        isatty = getattr(self.out, "isatty", lambda: False)()
        self.colour = colour if colour is not None else (isatty and "NO_COLOR" not in os.environ)
        width = max((len(n) for n in names), default=4)
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
                    nxt = self.queue.get_nowait()
                    if nxt is None:
                        write("".join(parts))
                        flush()
                        return
                    parts.append(nxt)
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


class _Server(uvicorn.Server):
    """Ends the log streams the moment a shutdown is asked for."""

    def __init__(self, config: uvicorn.Config, on_exit: list[object]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Like uvicorn's, without re-raising the signal after a clean shutdown: Ctrl-C
        or SIGTERM that stopped everything in order is a successful exit (code 0)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        for callback in self._on_exit:
            with contextlib.suppress(Exception):
                callback()  # type: ignore[operator]
        super().handle_exit(sig, frame)


def _serve(settings: Settings, *, echo: bool, access_log: bool = False) -> int:
    names = list(settings.processes)
    echo_printer = Echo(names) if echo else None
    running: list[Engine] = []
    tasks: list[asyncio.Task[None]] = []

    async def open_engine() -> Engine:
        engine = await Engine.start(settings)
        running.append(engine)
        if echo_printer is not None:
            tasks.append(asyncio.create_task(echo_printer.follow(engine.follow, names)))
        return engine

    app = create_app(settings, open_engine=open_engine)
    on_exit: list[object] = []
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        loop="auto",
        http=LimitedHttpToolsProtocol,  # uvicorn's httptools + bounded request heads
        ws=FramesWebSocketProtocol,  # uvicorn's websockets protocol + batched frames
        lifespan="on",
        log_level="warning",
        access_log=access_log,
        timeout_graceful_shutdown=5,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
    )
    server = _Server(config, on_exit)
    loops: list[asyncio.AbstractEventLoop] = []

    def end_streams() -> None:
        if running and loops:
            loops[0].call_soon_threadsafe(running[0].end_streams)

    on_exit.append(end_streams)

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        try:
            await server.serve()
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    url = f"http://{settings.server.host}:{settings.server.port}"
    print(f"logcast {len(names)} process(es), dashboard at {url}/", file=sys.stderr, flush=True)
    try:
        asyncio.run(main()) if not _has_uvloop() else _run_uvloop(main)
    finally:
        if echo_printer is not None:
            echo_printer.close()
    return 0 if server.started else 1


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _run_uvloop(main: object) -> None:
    import uvloop

    uvloop.run(main())  # type: ignore[operator]


def _setup_logging() -> None:
    level = os.environ.get("LOGCAST_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, format="%(asctime)s logcast %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _fail(message: str, code: int = 1) -> None:
    print(f"logcast: {message}", file=sys.stderr)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        config: Annotated[Path, typer.Option("-c", "--config", help="The configuration file.")] = Path(
            "logcast.toml"
        ),
        host: Annotated[
            str | None, typer.Option(help="Address to bind (default from the file, else 127.0.0.1).")
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="Port (default from the file, else 8080).", min=1, max=65535)
        ] = None,
        echo: Annotated[bool, typer.Option("--echo/--no-echo", help="Also print every line here.")] = False,
        access_log: Annotated[bool, typer.Option(help="Log every HTTP request.")] = False,
    ) -> None:
        """Start the manager, the API and the web dashboard; autostart processes."""
        _setup_logging()
        if not config.is_file():
            _fail(f"{config}: no such configuration file (see examples/demo.toml)", 2)
        try:
            settings = load(config)
            settings = _override(settings, host, port)
            code = _serve(settings, echo=echo, access_log=access_log)
        except ConfigError as exc:
            _fail(str(exc), 2)
        except OSError as exc:
            _fail(str(exc))
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
        _setup_logging()
        try:
            settings = single_process(command, name, restart=restart)
            settings = _override(settings, host, port)
            code = _serve(settings, echo=echo)
        except ConfigError as exc:
            _fail(str(exc), 2)
        except OSError as exc:
            _fail(str(exc))
        raise typer.Exit(code)


def _override(settings: Settings, host: str | None, port: int | None) -> Settings:
    server = settings.server
    if host is not None:
        server = dataclasses.replace(server, host=host)
    if port is not None:
        server = dataclasses.replace(server, port=port)
    return dataclasses.replace(settings, server=server)


__all__ = ["Echo", "register"]
