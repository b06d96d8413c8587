"""Running the app under uvicorn with logcast's protocols (`heads`: bounded request heads;
`wsframes`: batched WebSocket frames). A shutdown ends every log stream first, so that
uvicorn does not wait on streams that never finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from logcast import loop
from logcast.config import ServerSettings
from logcast.engine import Engine
from logcast.loop import stop_signals
from logcast.web.heads import LimitedHttpToolsProtocol
from logcast.web.wsframes import FramesWebSocketProtocol

GRACEFUL_SHUTDOWN = 5  # s uvicorn gives open requests once the streams were ended
WS_PING = 20.0  # s between WebSocket pings, and how long a pong may take


class Server(uvicorn.Server):
    """uvicorn's server; a shutdown first ends the app engine's streams."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Like uvicorn's, without re-raising the signal after a clean shutdown: Ctrl-C
        or SIGTERM that stopped everything in order is a successful exit (code 0). SIGHUP
        (the terminal or ssh session that ran it closed) stops in the same order, unless it
        is ignored (`nohup`); by default it would end the process at once, its children
        killed by their guards without their stop signal and lines not yet stored lost."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in stop_signals()}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first stop signal stops everything in order; Ctrl-C again while that goes
        on kills the children instead of waiting for their stop_timeout (another signal,
        say systemd's SIGHUP after its SIGTERM, does not)."""
        engine = getattr(self._app.state, "engine", None)
        if engine is not None and self._loop is not None:
            again = self.should_exit and sig == signal.SIGINT
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self._loop.call_soon_threadsafe(engine.hurry if again else engine.end_streams)
        super().handle_exit(sig, frame)
        # uvicorn's second Ctrl-C skips the lifespan's shutdown: the children would be left
        # to their guards and the store unflushed. Here it hurries that shutdown instead.
        self.force_exit = False


def run(
    app: FastAPI,
    settings: ServerSettings,
    *,
    access_log: bool = False,
    open_engine: Callable[[], Awaitable[Engine]] | None = None,
    ready: Callable[[], None] | None = None,
) -> bool:
    """Serve `app` until a signal stops it; False if it never started.

    The port is bound first and the engine opened next (`open_engine`, if given; else
    the app's lifespan opens it), so that a port in use or a store that cannot open is
    an `OSError` or `StoreError` with the reason before any process was started, not a
    traceback from uvicorn's lifespan after the children were. `ready` is called once
    both went well, before the server serves."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http=LimitedHttpToolsProtocol,
        ws=FramesWebSocketProtocol,
        lifespan="on",
        log_level="warning",
        access_log=access_log,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        ws_ping_interval=WS_PING,
        ws_ping_timeout=WS_PING,
    )
    server = Server(config, app)
    sockets = listen(settings.host, settings.port)
    stopped_early: list[int] = []  # a stop signal while the engine opened

    async def main() -> None:
        if open_engine is not None:
            with _noting(stopped_early):  # uvicorn's handlers come with serving
                engine = await open_engine()
            if stopped_early:
                await engine.stop()  # in order, as it would have been once serving
                return
            app.state.opened_engine = engine  # the lifespan takes it
        if ready is not None:
            ready()
        try:
            await server.serve(sockets)
        finally:
            left = getattr(app.state, "opened_engine", None)  # the server ended before its lifespan
            if left is not None:
                del app.state.opened_engine
                await left.stop()

    try:
        loop.run(main())
    except SystemExit as exc:  # uvicorn's exit when the app's startup failed
        if exc.code != STARTUP_FAILURE:
            raise
    finally:
        for sock in sockets:
            sock.close()
    return server.started or bool(stopped_early)


@contextlib.contextmanager
def _noting(signals: list[int]) -> Iterator[None]:
    """While it lasts, a stop signal is noted in `signals` instead of ending the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    original = {sig: signal.signal(sig, lambda sig, _frame: signals.append(sig)) for sig in stop_signals()}
    try:
        yield
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on `host`:`port`, one per address it names (`localhost` may be
    127.0.0.1 and ::1; an empty host is every interface), as asyncio binds them for
    uvicorn: IPv6 sockets take IPv6 only. OSError saying where."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(2048)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sockets  # not inheritable (Python's default): no child may hold the port
