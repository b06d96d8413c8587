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
from logcast.loop import STOP_SIGNALS
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
        (the terminal or ssh session that ran it closed) stops in the same order; by
        default it would end the process at once, its children killed by their guards
        without their stop signal and lines not yet stored lost."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first stop signal stops everything in order; a second one while that goes
        on (Ctrl-C again) kills the children instead of waiting for their stop_timeout."""
        engine = getattr(self._app.state, "engine", None)
        if engine is not None and self._loop is not None:
            again = self.should_exit
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
    sock = listen(settings.host, settings.port)

    async def main() -> None:
        if open_engine is not None:
            app.state.engine = await open_engine()
        if ready is not None:
            ready()
        try:
            await server.serve([sock])
        finally:
            # the lifespan stops the engine, unless the server ended before it began
            engine = getattr(app.state, "engine", None)
            if engine is not None and not getattr(app.state, "engine_stopped", False):
                app.state.engine_stopped = True
                await engine.stop()

    try:
        loop.run(main())
    except SystemExit as exc:  # uvicorn's exit when the app's startup failed
        if exc.code != STARTUP_FAILURE:
            raise
    finally:
        sock.close()
    return server.started


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on `host`:`port` (as uvicorn binds it); OSError saying where."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock  # not inheritable (Python's default): no child may hold the port
