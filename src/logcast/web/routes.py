"""The HTTP routes of SPEC.md: processes, history, streams, stats, clear, auth.

Every handler reaches the engine through `Runtime` (hub, supervisor, settings); none
spawns anything from request data: the API only acts on configured processes.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse

from logcast.capture.ansi import strip_ansi
from logcast.errors import UnknownProcess
from logcast.query import Query as LogQuery
from logcast.query import compile_regex, parse_levels
from logcast.types import LogRecord, ProcessState
from logcast.web.runtime import Runtime
from logcast.web.streams import BoundedSSEResponse, last_event_id, sse_body, websocket_stream

router = APIRouter()

MAX_PAGE = 10_000
SECRET_KEY = re.compile(r"(?i)(token|secret|passw|pwd|key|auth|credential|cookie|session|private)")
RUNNING = frozenset({ProcessState.STARTING, ProcessState.RUNNING, ProcessState.READY})
ALIVE = frozenset(s.value for s in ProcessState if s.is_alive)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def ws_runtime(websocket: WebSocket) -> Runtime:
    rt: Runtime = websocket.app.state.runtime
    return rt


RT = Annotated[Runtime, Depends(runtime)]


def known(rt: Runtime, name: str) -> str:
    if name not in rt.supervisor.names() and name not in rt.hub.names():
        raise HTTPException(404, f"unknown process {name!r}")
    return name


def build_query(
    level: str | None = None,
    q: str | None = None,
    regex: str | None = None,
    since: float | None = None,
    until: float | None = None,
    *,
    keep_status: bool = False,
) -> LogQuery:
    try:
        levels = parse_levels(level)
        pattern = compile_regex(regex)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if since is not None and until is not None and until < since:
        raise HTTPException(422, "until is before since")
    return LogQuery(
        levels=levels, text=q or None, regex=pattern, since=since, until=until, keep_status=keep_status
    )


def process_json(rt: Runtime, name: str) -> dict[str, Any]:
    info: dict[str, Any] = (
        dict(rt.supervisor.info(name))
        if name in rt.supervisor.names()
        else {"name": name, "state": "stopped"}
    )
    stats = rt.hub.stats(name)
    started = info.get("started_at")
    alive = str(info.get("state")) in ALIVE
    info["uptime"] = round(time.time() - float(started), 1) if started and alive else None
    for key in (
        "lines",
        "bytes",
        "lines_per_s",
        "warnings",
        "errors",
        "last_error",
        "subscribers",
        "last_seq",
    ):
        info[key] = stats[key]
    return info


# -- processes ---------------------------------------------------------------------------


@router.get("/api/processes", tags=["processes"])
async def list_processes(rt: RT) -> dict[str, Any]:
    return {"processes": [process_json(rt, name) for name in rt.supervisor.names()]}


@router.get("/api/processes/{name}", tags=["processes"])
async def get_process(name: str, rt: RT) -> dict[str, Any]:
    return process_json(rt, known(rt, name))


async def _control(rt: Runtime, name: str, action: str) -> dict[str, Any]:
    if name not in rt.supervisor.names():
        raise HTTPException(404, f"unknown process {name!r}")
    if action == "start":
        state = rt.supervisor.info(name)["state"]
        if ProcessState(state) in RUNNING:
            raise HTTPException(409, f"{name} is already running")
        await rt.supervisor.start(name)
    elif action == "stop":
        await rt.supervisor.stop(name)
    else:
        await rt.supervisor.restart(name)
    return process_json(rt, name)


@router.post("/api/processes/{name}/start", tags=["processes"])
async def start_process(name: str, rt: RT) -> dict[str, Any]:
    return await _control(rt, name, "start")


@router.post("/api/processes/{name}/stop", tags=["processes"])
async def stop_process(name: str, rt: RT) -> dict[str, Any]:
    return await _control(rt, name, "stop")


@router.post("/api/processes/{name}/restart", tags=["processes"])
async def restart_process(name: str, rt: RT) -> dict[str, Any]:
    return await _control(rt, name, "restart")


@router.get("/api/config", tags=["processes"])
async def get_config(rt: RT) -> dict[str, Any]:
    out = []
    for name, p in rt.settings.processes.items():
        ready: dict[str, Any] | None = None
        if p.ready is not None:
            ready = {"log": p.ready.log.pattern} if p.ready.log is not None else {"http": p.ready.http}
            ready["timeout"] = p.ready.timeout
        out.append(
            {
                "name": name,
                "command": list(p.command),
                "cwd": str(p.cwd),
                "env": {k: ("••••••" if SECRET_KEY.search(k) else v) for k, v in p.env.items()},
                "autostart": p.autostart,
                "restart": str(p.restart),
                "pty": p.pty,
                "ready": ready,
                "stop_signal": p.stop_signal.name.removeprefix("SIG"),
                "stop_timeout": p.stop_timeout,
            }
        )
    path = rt.settings.path
    return {"path": str(path) if path else None, "processes": out}


# -- history -----------------------------------------------------------------------------


@router.get("/api/processes/{name}/logs", tags=["logs"])
async def get_logs(
    name: str,
    rt: RT,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    level: str | None = None,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    regex: Annotated[str | None, Query(max_length=1000)] = None,
    since: float | None = None,
    until: float | None = None,
    tail: Annotated[int | None, Query(ge=0, le=MAX_PAGE)] = None,
    before: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    known(rt, name)
    query = build_query(level, q, regex, since, until)
    if tail is not None:
        records = await rt.hub.tail(name, tail, before=before, query=query)
        last = rt.hub.get(name).last_seq if before is None else min(before, rt.hub.get(name).last_seq)
        return _page(records, last)
    records = await rt.hub.page(name, after=after, limit=limit, query=query)
    nxt = records[-1].seq if len(records) >= limit else None
    if nxt is None:
        return _page(records, None, cursor=records[-1].seq if records else after)
    return _page(records, nxt)


def _page(records: list[LogRecord], nxt: int | None, *, cursor: int | None = None) -> Response:
    body = orjson.dumps(
        {"logs": [r.as_dict() for r in records], "next": nxt, "cursor": cursor if cursor is not None else nxt}
    )
    return Response(body, media_type="application/json")


@router.get("/api/processes/{name}/logs/download", tags=["logs"])
async def download_logs(name: str, rt: RT, plain: bool = False) -> StreamingResponse:
    known(rt, name)

    async def lines() -> AsyncIterator[bytes]:
        after = 0
        while True:
            page = await rt.hub.page(name, after=after, limit=MAX_PAGE)
            if not page:
                return
            out = []
            for r in page:
                stamp = dt.datetime.fromtimestamp(r.timestamp, dt.UTC).isoformat(timespec="milliseconds")
                text = strip_ansi(r.message) if plain else r.message
                out.append(
                    f"{stamp.replace('+00:00', 'Z')} [run {r.run}] {r.stream} {r.level.upper()} {text}\n"
                )
            yield "".join(out).encode()
            after = page[-1].seq

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        lines(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.log"'},
    )


# -- streams -----------------------------------------------------------------------------


def _resume_point(after: int | None, header: str | None) -> int | None:
    resumed = last_event_id(header)
    return resumed if resumed is not None else after


SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}
}


@router.get("/api/processes/{name}/logs/stream", tags=["logs"], responses=SSE_DOC)
async def stream_logs(
    name: str,
    rt: RT,
    after: Annotated[int | None, Query(ge=0)] = None,
    lines: Annotated[int | None, Query(ge=0)] = None,
    level: str | None = None,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    known(rt, name)
    query = build_query(level, q, keep_status=True)
    sub = await rt.hub.subscribe(
        name, after=_resume_point(after, last_event_id_header), lines=lines, query=query
    )
    return BoundedSSEResponse(sse_body(rt.hub, sub, rt.shutdown))


@router.get("/api/models/{alias}/logs/stream", tags=["seed"], responses=SSE_DOC)
async def stream_model_logs(
    alias: str,
    rt: RT,
    after: Annotated[int | None, Query(ge=0)] = None,
    lines: Annotated[int | None, Query(ge=0)] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The seed's route: 503 + Retry-After while the model is not running; history, one
    historical_complete, realtime; `stream_end` when the model stops."""
    known(rt, alias)
    state = ProcessState(rt.supervisor.info(alias)["state"]) if alias in rt.supervisor.names() else None
    if state not in RUNNING:
        return JSONResponse(
            {"type": "error", "message": f"model {alias!r} is not running (state: {state or 'unknown'})"},
            status_code=503,
            headers={"Retry-After": "2"},
        )
    sub = await rt.hub.subscribe(alias, after=_resume_point(after, last_event_id_header), lines=lines)
    return BoundedSSEResponse(sse_body(rt.hub, sub, rt.shutdown, end_on_stop=True))


@router.websocket("/ws/logs")
async def ws_logs(
    websocket: WebSocket,
    process: str | None = None,
    format: str = "text",
    after: int | None = None,
    lines: int | None = None,
    level: str | None = None,
    q: str | None = None,
) -> None:
    rt = ws_runtime(websocket)
    problem = None
    if format not in ("text", "json"):
        problem = "format must be text or json"
    elif process is not None and process not in rt.supervisor.names() and process not in rt.hub.names():
        problem = f"unknown process {process!r}"
    elif (after is not None and after < 0) or (lines is not None and lines < 0):
        problem = "after and lines must be >= 0"
    try:
        query = build_query(level, q, keep_status=True)
    except HTTPException as exc:
        problem = str(exc.detail)
        query = LogQuery()
    await websocket.accept()
    if problem:
        await websocket.send_text(
            _error_frame(problem) if format == "json" else f"[logcast] error: {problem}"
        )
        await websocket.close(code=1008, reason=problem[:120])
        return
    names = [process] if process else rt.supervisor.names()
    subs = []
    try:
        for name in names:
            subs.append(
                await rt.hub.subscribe(name, after=after if process else None, lines=lines, query=query)
            )
    except UnknownProcess as exc:
        for sub in subs:
            sub.close()
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    await websocket_stream(websocket, rt.hub, subs, rt.shutdown, as_json=format == "json")


def _error_frame(message: str) -> str:
    return orjson.dumps({"type": "error", "message": message}).decode()


# -- stats, clear ------------------------------------------------------------------------


@router.get("/api/logs/stats", tags=["logs"])
async def log_stats(rt: RT) -> dict[str, Any]:
    per: dict[str, Any] = {}
    totals = {"total_logs": 0, "total_bytes": 0, "subscribers": 0, "dropped": 0, "lines_per_s": 0.0}
    for name in rt.hub.names():
        s = rt.hub.stats(name)
        if name in rt.supervisor.names():
            s["state"] = str(rt.supervisor.info(name)["state"])
        per[name] = s
        totals["total_logs"] += s["lines"]
        totals["total_bytes"] += s["bytes"]
        totals["subscribers"] += s["subscribers"]
        totals["dropped"] += s["dropped"]
        totals["lines_per_s"] += s["lines_per_s"]
    store = rt.hub.store.stats
    return {
        **totals,
        "lines_per_s": round(float(totals["lines_per_s"]), 2),
        "processes": per,
        "store": {
            "engine": rt.settings.storage.engine,
            "written": store.written,
            "errors": store.errors,
            "last_error": store.last_error,
            "pending": sum(max(0, p["last_seq"] - p["persisted_seq"]) for p in per.values()),
        },
    }


@router.post("/api/logs/{alias}/clear", tags=["logs"])
async def clear_logs(alias: str, rt: RT) -> dict[str, Any]:
    known(rt, alias)
    upto = await rt.hub.clear(alias)
    return {"cleared": True, "process": alias, "upto": upto}


@router.get("/healthz", tags=["meta"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
