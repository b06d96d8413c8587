"""The FastAPI application factory and its lifespan.

`create_app(settings)` wires the security middleware, the routes, the dashboard
pages (with a strict Content-Security-Policy) and error handlers that answer JSON
and never a stack trace. The lifespan starts the engine (`Engine`) and stops it in
order; `logcast serve` also ends the streams as soon as a shutdown is asked for, so
that uvicorn does not wait on open streams.

The streams' own limits are wired here too: `StreamGate` counts the open streams
against `[server] max_streams` (`app.state.streams`), `app.state.send_timeout` (from
`LOGCAST_SEND_TIMEOUT`) is how long a stream waits on a client that stopped reading,
and every request announces its connection (`conn.attach`) so that such a client can
be aborted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from logcast import __version__
from logcast.config import Settings
from logcast.engine import Engine
from logcast.errors import ControlRefused, ControlTimeout, StoreError, UnknownProcess
from logcast.secrets import mask_text
from logcast.web import auth, metrics
from logcast.web.bodies import BodyLimit
from logcast.web.conn import attach, send_timeout_setting
from logcast.web.limits import StreamGate, StreamSlots
from logcast.web.routes import document_streams, router
from logcast.web.security import HostPolicy, SecurityMiddleware

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("logcast.web") / "static"))
PAGES = {
    "/": "index.html",
    "/logs.html": "logs.html",
    "/config.html": "config.html",
    "/login.html": "login.html",
}


class _App(FastAPI):
    """FastAPI that hands each request its connection (see `conn`): the server's `send`
    is only ever seen here, before Starlette's middleware wraps it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            attach(scope, send)
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, with the stream events described (`routes.document_streams`)."""
        if self.openapi_schema is None:
            self.openapi_schema = document_streams(super().openapi())
        return self.openapi_schema


def create_app(
    settings: Settings,
    *,
    autostart: bool = True,
    open_engine: Callable[[], Awaitable[Engine]] | None = None,
) -> FastAPI:
    """The app serving `settings`; its lifespan runs the engine `open_engine` opens
    (by default `Engine.start(settings)`), or the one `web.server.run` opened before it
    serves, and stops it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # opened before the server serves (`web.server.run`), taken once; else opened here
        engine: Engine | None = getattr(app.state, "opened_engine", None)
        if engine is not None:
            del app.state.opened_engine
        else:
            engine = await (open_engine() if open_engine else Engine.start(settings, autostart=autostart))
        app.state.engine = engine
        try:
            yield
        finally:
            await engine.stop()

    app = _App(title="logcast", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.include_router(router)
    app.include_router(auth.router)

    @app.get("/metrics", tags=["meta"], include_in_schema=True)
    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(request.app.state.engine), media_type="text/plain; version=0.0.4")

    for route, filename in PAGES.items():
        app.add_api_route(route, _page_handler(filename), methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.exception_handler(UnknownProcess)
    async def unknown_process(request: Request, exc: UnknownProcess) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ControlRefused)
    async def control_refused(request: Request, exc: ControlRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(ControlTimeout)
    async def control_timeout(request: Request, exc: ControlTimeout) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=504)

    @app.exception_handler(StoreError)
    async def store_away(request: Request, exc: StoreError) -> JSONResponse:
        # the store (a replica's Redis) failed under the request: say so, as while it is away
        log.warning("%s %s: %s", request.method, request.url.path, mask_text(str(exc)))
        return JSONResponse({"detail": mask_text(str(exc))}, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    server = settings.server
    app.state.send_timeout = send_timeout_setting()
    app.state.streams = StreamSlots(server.max_streams)
    app.add_middleware(StreamGate, slots=app.state.streams)  # inside the security checks
    app.add_middleware(
        SecurityMiddleware, token=server.token, hosts=HostPolicy(server.host, server.allowed_hosts)
    )
    app.add_middleware(BodyLimit)  # outside them all: a body is bounded before anyone reads it
    return app


def _page_handler(filename: str):  # type: ignore[no-untyped-def]
    async def page() -> FileResponse:
        path = STATIC / filename
        if not path.is_file():
            raise HTTPException(404, "page not found")
        return FileResponse(
            path, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
        )

    return page
