"""The HTTP routes: processes, history, streams, stats, clear, and the routes that
keep clients of the LLM manager logcast replaces working (`/v1/models`, `/health`,
`/api/models/{alias}/…`).

Every handler reaches the engine through `Engine` (hub, processes, settings); none
spawns anything from request data: the API only acts on configured processes.

Names: every route that takes a process takes its name or one of its configured
`aliases` (`resolve`), and answers with the process's own name.

Parameters: whatever a client sends is a 4xx with a reason, never a 500. Sequence
numbers and counts are bounded by `MAX_SEQ` (SQLite's signed 64-bit INTEGER), times
must be finite, and a path or query that carries a NUL byte or bytes that are not
UTF-8 is refused before any handler runs (`clean_text`; the WebSocket route, which
reports problems in its own first frame, calls the same check).

Shapes: every JSON answer is a model of `logcast.schemas`, the routes' `response_model`
(so `/docs` and `/openapi.json` are typed); history pages and the streams are encoded
without them for speed, and `document_streams` describes the stream events.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, WebSocket
from fastapi.requests import HTTPConnection
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic.json_schema import models_json_schema

from logcast.capture.ansi import strip_ansi
from logcast.engine import Engine
from logcast.errors import UnknownProcess
from logcast.query import Query as LogQuery
from logcast.query import compile_regex, parse_levels
from logcast.schemas import (
    Cleared,
    Config,
    ErrorEvent,
    Health,
    Healthz,
    HistoryPage,
    HttpReady,
    LogReady,
    ManagerStats,
    Model,
    ModelAction,
    ModelError,
    ModelList,
    ModelStats,
    Process,
    ProcessConfig,
    ProcessList,
    ProcessStats,
    Stats,
    StoreStats,
    StreamEvent,
)
from logcast.secrets import mask_argv, mask_env, mask_text
from logcast.types import LogRecord, ProcessState
from logcast.web.encode import MAX_SEQ, parse_seq
from logcast.web.streams import BoundedSSEResponse, last_event_id, sse_body, websocket_stream

MAX_PAGE = 10_000
REF_TEMPLATE = "#/components/schemas/{model}"  # where OpenAPI keeps the models
STARTED_AT = int(time.time())  # `created` of a model that has not run yet

Seq = Annotated[int, Query(ge=0, le=MAX_SEQ)]
Count = Annotated[int | None, Query(ge=0, le=MAX_SEQ)]
Time = Annotated[float | None, Query(allow_inf_nan=False)]


def bad_text(scope: Mapping[str, Any]) -> str | None:
    """Why the request's path or query cannot be taken as text (a NUL byte, bytes that are
    not UTF-8 once percent-decoded), or None. Starlette would decode them to U+FFFD or
    pass the NUL on; a name or a search term that is not what the client wrote is refused."""
    raw_path: bytes = scope.get("raw_path") or str(scope.get("path", "")).encode()
    problem = _undecodable(unquote_to_bytes(raw_path), "the path")
    if problem:
        return problem
    query: bytes = scope.get("query_string", b"")
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        name = unquote_to_bytes(key.replace(b"+", b" "))
        what = f"query parameter {name.decode('utf-8', 'replace')[:40]!r}"
        problem = _undecodable(name, what) or _undecodable(unquote_to_bytes(value.replace(b"+", b" ")), what)
        if problem:
            return problem
    return None


def _undecodable(data: bytes, what: str) -> str | None:
    if b"\0" in data:
        return f"{what} contains a NUL byte"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return f"{what} is not valid UTF-8"
    return None


def clean_text(conn: HTTPConnection) -> None:
    """Every HTTP route's first check (see `bad_text`); 422 with the reason."""
    if conn.scope["type"] == "http":
        problem = bad_text(conn.scope)
        if problem:
            raise HTTPException(422, problem)


router = APIRouter(dependencies=[Depends(clean_text)])


def engine(request: Request) -> Engine:
    rt: Engine = request.app.state.engine
    return rt


def ws_engine(websocket: WebSocket) -> Engine:
    rt: Engine = websocket.app.state.engine
    return rt


RT = Annotated[Engine, Depends(engine)]


def aliases(rt: Engine) -> dict[str, str]:
    """Each configured alias → the name of its process (config.py refuses clashes)."""
    return {alias: name for name, p in rt.settings.processes.items() for alias in p.aliases}


def lookup(rt: Engine, name: str) -> str | None:
    """The process that `name` (its own name or an alias) addresses, or None."""
    if name in rt.processes or name in rt.hub.names():
        return name
    return aliases(rt).get(name)


def resolve(rt: Engine, name: str) -> str:
    """The process `name` addresses; 404 when none."""
    found = lookup(rt, name)
    if found is None:
        raise HTTPException(404, f"unknown process {name!r}")
    return found


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


def process_model(rt: Engine, name: str) -> Process:
    """The process `name` as the API describes it. One that is no longer configured (its
    history remains) has no run: its `pid`, `run`... stay unset, so absent on the wire."""
    run: Mapping[str, Any] = (
        rt.processes.info(name) if name in rt.processes.names() else {"name": name, "state": "stopped"}
    )
    return Process.of(run, rt.hub.stats(name))


# -- processes ---------------------------------------------------------------------------
# `response_model_exclude_unset`: fields a process does not have stay absent (`process_model`)


@router.get("/api/processes", tags=["processes"], response_model_exclude_unset=True)
async def list_processes(rt: RT) -> ProcessList:
    return ProcessList(processes=[process_model(rt, name) for name in rt.processes.names()])


@router.get("/api/processes/{name}", tags=["processes"], response_model_exclude_unset=True)
async def get_process(name: str, rt: RT) -> Process:
    return process_model(rt, resolve(rt, name))


async def _control(rt: Engine, name: str, action: str) -> Process:
    name = resolve(rt, name)
    if name not in rt.processes:
        raise HTTPException(404, f"unknown process {name!r}")
    if action == "start":
        state = rt.processes.info(name)["state"]
        if ProcessState(state).is_starting_or_up:
            raise HTTPException(409, f"{name} is already running")
        await rt.processes.start(name)
    elif action == "stop":
        await rt.processes.stop(name)
    else:
        await rt.processes.restart(name)
    return process_model(rt, name)


@router.post("/api/processes/{name}/start", tags=["processes"], response_model_exclude_unset=True)
async def start_process(name: str, rt: RT) -> Process:
    return await _control(rt, name, "start")


@router.post("/api/processes/{name}/stop", tags=["processes"], response_model_exclude_unset=True)
async def stop_process(name: str, rt: RT) -> Process:
    return await _control(rt, name, "stop")


@router.post("/api/processes/{name}/restart", tags=["processes"], response_model_exclude_unset=True)
async def restart_process(name: str, rt: RT) -> Process:
    return await _control(rt, name, "restart")


@router.get("/api/config", tags=["processes"])
async def get_config(rt: RT) -> Config:
    out = []
    for name, p in rt.settings.processes.items():
        ready: LogReady | HttpReady | None = None
        if p.ready is not None:
            if p.ready.log is not None:
                ready = LogReady(log=p.ready.log.pattern, timeout=p.ready.timeout)
            else:
                ready = HttpReady(http=mask_text(p.ready.http or ""), timeout=p.ready.timeout)
        out.append(
            ProcessConfig(
                name=name,
                aliases=list(p.aliases),
                command=mask_argv(p.command),  # credentials in arguments never leave the server
                cwd=str(p.cwd),
                env=mask_env(p.env),
                autostart=p.autostart,
                restart=str(p.restart),
                pty=p.pty,
                ready=ready,
                stop_signal=p.stop_signal.name.removeprefix("SIG"),
                stop_timeout=p.stop_timeout,
            )
        )
    path = rt.settings.path
    return Config(path=str(path) if path else None, processes=out)


# -- history -----------------------------------------------------------------------------


@router.get("/api/processes/{name}/logs", tags=["logs"], response_model=HistoryPage)
async def get_logs(
    name: str,
    rt: RT,
    after: Seq = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    level: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    regex: Annotated[str | None, Query(max_length=1000)] = None,
    since: Time = None,
    until: Time = None,
    tail: Annotated[int | None, Query(ge=0, le=MAX_PAGE)] = None,
    before: Count = None,
) -> Response:
    name = resolve(rt, name)
    query = build_query(level, q, regex, since, until)
    if tail is not None:
        found = await rt.hub.tail_page(name, tail, before=before, query=query)
        last = rt.hub.get(name).last_seq if before is None else min(before, rt.hub.get(name).last_seq)
        # `before`: where a search further back goes on; null once the oldest line was looked at
        return _page(found.records, last, last, before=found.before)
    page = await rt.hub.read_page(name, after=after, limit=limit, query=query)
    return _page(page.records, page.next, page.cursor)


def _page(records: list[LogRecord], nxt: int | None, cursor: int, **extra: int | None) -> Response:
    """A `HistoryPage`, encoded by orjson from the records' own dicts: the page is the
    route's `response_model` for the documentation only, since building and dumping a
    thousand `Log` models per page took several times as long (tests/test_schemas.py
    checks that these pages validate against the model)."""
    body = {"logs": [r.as_dict() for r in records], "next": nxt, "cursor": cursor, **extra}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/api/processes/{name}/logs/download", tags=["logs"])
async def download_logs(name: str, rt: RT, plain: bool = False) -> StreamingResponse:
    name = resolve(rt, name)

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
    try:
        resumed = last_event_id(header)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return resumed if resumed is not None else after


SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}
}


def document_streams(openapi: dict[str, Any]) -> dict[str, Any]:
    """`openapi` with the stream events: their models among the components, and the items
    of every `text/event-stream` answer described as `StreamEvent` in their `data`. FastAPI
    does so only for endpoints that yield models; ours hand it pre-encoded bytes."""
    _, found = models_json_schema([(StreamEvent, "serialization")], ref_template=REF_TEMPLATE)
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model, schema in found.get("$defs", {}).items():
        components.setdefault(model, schema)
    item = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": REF_TEMPLATE.format(model="StreamEvent")},
            },
            "id": {"type": "string", "description": "the seq of the event (resume with Last-Event-ID)"},
            "retry": {"type": "integer", "minimum": 0},
        },
    }
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("responses", {}).get("200", {}).get("content", {})
            if "text/event-stream" in content:
                content.pop("application/json", None)  # FastAPI's default, not what is sent
                content["text/event-stream"] = {"itemSchema": item}
    return openapi


@router.get("/api/processes/{name}/logs/stream", tags=["logs"], responses=SSE_DOC)
async def stream_logs(
    name: str,
    rt: RT,
    after: Count = None,
    lines: Count = None,
    level: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    name = resolve(rt, name)
    query = build_query(level, q, keep_status=True)
    sub = await rt.hub.subscribe(
        name, after=_resume_point(after, last_event_id_header), lines=lines, query=query
    )
    return BoundedSSEResponse(sse_body(rt.hub, sub, rt.shutdown))


@router.get(
    "/api/models/{alias}/logs/stream",
    tags=["llm-manager"],
    responses={**SSE_DOC, 503: {"model": ErrorEvent, "description": "The model is not running"}},
)
async def stream_model_logs(
    alias: str,
    rt: RT,
    after: Count = None,
    lines: Count = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The LLM manager's route: 503 + Retry-After while the model is not running; history, one
    historical_complete, realtime; `stream_end` when the model stops."""
    alias = resolve(rt, alias)
    state = ProcessState(rt.processes.info(alias)["state"]) if alias in rt.processes.names() else None
    if state is None or not state.is_starting_or_up:
        problem = ErrorEvent(
            type="error", message=f"model {alias!r} is not running (state: {state or 'unknown'})"
        )
        return JSONResponse(
            problem.model_dump(mode="json"),
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
    after: str | None = None,
    lines: str | None = None,
    level: str | None = None,
    q: str | None = None,
) -> None:
    """The log WebSocket. Without `after` or `lines` it starts at the live end, as the
    original log server did (its page keeps what it has when it reconnects); `after=SEQ` (with
    `process`) or `lines=N` ask for history first. Problems are told in the first frame
    (then close 1008), so that a browser's page can show them."""
    rt = ws_engine(websocket)
    problem = bad_text(websocket.scope)
    name = lookup(rt, process) if process is not None and problem is None else None
    start_after = start_lines = None
    if problem is not None:
        pass
    elif format not in ("text", "json"):
        problem = "format must be text or json"
    elif process is not None and name is None:
        problem = f"unknown process {process!r}"
    elif after is not None and process is None:
        problem = "after needs process= (sequence numbers are per process); use lines= for all processes"
    else:
        try:
            start_after = parse_seq(after, "after") if after is not None else None
            start_lines = parse_seq(lines, "lines") if lines is not None else None
        except ValueError as exc:
            problem = str(exc)
    if start_after is None and start_lines is None:
        start_lines = 0  # the live end
    try:
        query = build_query(level, q, keep_status=True)
    except HTTPException as exc:
        problem = problem or str(exc.detail)
        query = LogQuery()
    await websocket.accept()
    if problem:
        await websocket.send_text(
            _error_frame(problem) if format == "json" else f"[logcast] error: {problem}\n"
        )
        await websocket.close(code=1008, reason=problem[:120])
        return
    names = [name] if name else rt.processes.names()
    subs = []
    try:
        for each in names:
            subs.append(await rt.hub.subscribe(each, after=start_after, lines=start_lines, query=query))
    except UnknownProcess as exc:
        for sub in subs:
            sub.close()
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    await websocket_stream(websocket, rt.hub, subs, rt.shutdown, as_json=format == "json")


def _error_frame(message: str) -> str:
    return ErrorEvent(type="error", message=message).model_dump_json()


# -- stats, clear ------------------------------------------------------------------------


def process_stats(rt: Engine, name: str) -> ProcessStats:
    """The hub's figures of `name`'s log, with the state of a configured process (a process
    that is no longer configured has none: `state` stays unset, so absent on the wire)."""
    if name in rt.processes.names():
        return ProcessStats.model_validate({**rt.hub.stats(name), "state": rt.processes.info(name)["state"]})
    return ProcessStats.model_validate(rt.hub.stats(name))


@router.get("/api/logs/stats", tags=["logs"], response_model_exclude_unset=True)
async def log_stats(rt: RT) -> Stats:
    """logcast's totals and per-process figures, and beside them the original manager's
    envelope (`success`, `stats`) that its tools read."""
    per = {name: process_stats(rt, name) for name in rt.hub.names()}
    store = rt.hub.store.stats
    model_stats = {
        name: ModelStats(log_count=await _retained(rt, name, s), subscriber_count=s.subscribers)
        for name, s in per.items()
    }
    subscribers = sum(s.subscribers for s in per.values())
    return Stats(
        total_logs=sum(s.lines for s in per.values()),
        total_bytes=sum(s.bytes for s in per.values()),
        subscribers=subscribers,
        dropped=sum(s.dropped for s in per.values()),
        lines_per_s=round(sum((s.lines_per_s for s in per.values()), 0.0), 2),
        processes=per,
        store=StoreStats(
            engine=rt.settings.storage.engine,
            written=store.written,
            errors=store.errors,
            last_error=store.last_error,
            pending=sum(s.pending for s in per.values()),
        ),
        success=True,
        stats=ManagerStats(
            total_models=len(per),
            total_log_entries=sum(m.log_count for m in model_stats.values()),
            total_subscribers=subscribers,
            model_stats=model_stats,
        ),
    )


async def _retained(rt: Engine, name: str, stats: ProcessStats) -> int:
    """How many records of `name` the history holds now (what a clear removes; status
    records included, as they are part of the history)."""
    last = stats.last_seq
    in_memory = stats.memory_lines
    first = (await rt.hub.store.meta(name)).first_seq
    if in_memory:
        first = min(first, last - in_memory + 1) if first else last - in_memory + 1
    if not first:
        return 0
    first = max(first, rt.hub.get(name).cleared_upto + 1)
    return max(0, last - first + 1)


@router.post("/api/logs/{alias}/clear", tags=["logs"])
async def clear_logs(
    alias: str,
    rt: RT,
    keep_minutes: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
) -> Cleared:
    """Clear the history of a process, or (`keep_minutes=N`) only its records older than
    N minutes. Sequence numbers go on either way."""
    name = resolve(rt, alias)
    if keep_minutes is None:
        upto = await rt.hub.clear(name)
        message = f"cleared the logs of {name}"
    else:
        cutoff = time.time() - keep_minutes * 60.0
        # the whole history may lie between now and the cutoff: look back as far as it goes
        older = await rt.hub.tail(name, 1, query=LogQuery(until=cutoff), scan=None)
        if older:
            upto = await rt.hub.clear(name, upto=older[-1].seq)
        else:
            upto = rt.hub.get(name).cleared_upto
        message = f"cleared the logs of {name} older than {keep_minutes:g} minutes"
    return Cleared(
        success=True, message=message, cleared=True, process=name, upto=upto, keep_minutes=keep_minutes
    )


# -- the original LLM manager's routes ------------------------------------------------------


@router.get("/v1/models", tags=["llm-manager"])
async def list_models(rt: RT) -> ModelList:
    """Every configured process as an OpenAI-style model; `aliases` holds its own name
    first, then its configured aliases (the LLM manager's terminal tool looks for its name in there)."""
    data = []
    for name, p in rt.settings.processes.items():
        info = rt.processes.info(name)
        started = info.get("started_at")
        data.append(
            Model(
                id=name,
                object="model",
                created=int(started) if started else STARTED_AT,
                owned_by="logcast",
                aliases=list(dict.fromkeys((name, *p.aliases))),
                state=info["state"],
            )
        )
    return ModelList(object="list", data=data)


@router.get("/health", tags=["llm-manager"])
async def health(rt: RT) -> Health:
    """The original manager's health: needs the token like the rest of the API (unlike
    `/healthz`). `running_models` counts the processes that run (running or ready)."""
    states = [ProcessState(rt.processes.info(name)["state"]) for name in rt.processes.names()]
    return Health(status="healthy", models_count=len(states), running_models=sum(s.is_up for s in states))


def _model(rt: Engine, alias: str) -> str | JSONResponse:
    name = lookup(rt, alias)
    if name is None or name not in rt.processes:
        message = f"unknown model {alias!r}"
        unknown = ModelError(success=False, message=message, detail=message)
        return JSONResponse(unknown.model_dump(mode="json"), status_code=404)
    return name


MODEL_DOC: dict[int | str, dict[str, Any]] = {404: {"model": ModelError, "description": "Unknown model"}}


def _model_answer(success: bool, message: str, rt: Engine, name: str) -> JSONResponse:
    state = rt.processes.info(name)["state"]
    answer = ModelAction(success=success, message=message, process=name, state=state)
    return JSONResponse(answer.model_dump(mode="json"))


@router.post(
    "/api/models/{alias}/start", tags=["llm-manager"], response_model=ModelAction, responses=MODEL_DOC
)
async def start_model(alias: str, rt: RT) -> Response:
    """`{"success", "message"}` as the original answered, plus `process` and `state`."""
    name = _model(rt, alias)
    if isinstance(name, JSONResponse):
        return name
    if ProcessState(rt.processes.info(name)["state"]).is_starting_or_up:
        success, message = True, f"{name} is already running"
    else:
        await rt.processes.start(name)
        info = process_model(rt, name)
        success = info.state.is_alive
        message = f"{name} started" if success else f"{name} did not start ({info.state})"
        if not success and info.last_error:
            message += f": {info.last_error}"
    return _model_answer(success, message, rt, name)


@router.post(
    "/api/models/{alias}/stop", tags=["llm-manager"], response_model=ModelAction, responses=MODEL_DOC
)
async def stop_model(alias: str, rt: RT) -> Response:
    name = _model(rt, alias)
    if isinstance(name, JSONResponse):
        return name
    stopped = await rt.processes.stop(name)
    message = f"{name} stopped" if stopped else f"{name} was not running"
    return _model_answer(True, message, rt, name)


@router.get("/healthz", tags=["meta"])
async def healthz() -> Healthz:
    return Healthz(status="ok")
