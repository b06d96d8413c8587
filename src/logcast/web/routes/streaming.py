"""Live streams: SSE per process (resumable with Last-Event-ID) and the log WebSocket."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, WebSocket
from fastapi.responses import Response
from pydantic.json_schema import models_json_schema

from logcast.errors import UnknownProcess
from logcast.query import Query as LogQuery
from logcast.schemas import ErrorEvent, StreamEvent
from logcast.web.direct import body_of
from logcast.web.encode import parse_seq
from logcast.web.routes.deps import (
    Count,
    EngineDep,
    LevelParam,
    TextParam,
    bad_text,
    build_query,
    get_ws_engine,
    lookup,
    resolve,
)
from logcast.web.streams import BoundedSSEResponse, last_event_id, sse_body, websocket_stream

REF_TEMPLATE = "#/components/schemas/{model}"  # where OpenAPI keeps the models

router = APIRouter()

BatchParam = Annotated[
    Literal["0", "1", "columns"],
    Query(
        description="1: each SSE message carries many events, `data: [<event>,…]`, its `id` the last"
        " event's (docs/api.md); columns: the same, with each run of lines of one process and run"
        " one element holding a list per field; 0 (the default): one event per message"
    ),
]


def resume_point(after: int | None, header: str | None) -> int | None:
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
    request: Request,
    name: str,
    engine: EngineDep,
    after: Count = None,
    lines: Count = None,
    level: LevelParam = None,
    q: TextParam = None,
    batch: BatchParam = "0",
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    name = resolve(engine, name)
    query = build_query(level, q, keep_status=True)
    sub = await engine.hub.subscribe(
        name, after=resume_point(after, last_event_id_header), lines=lines, query=query
    )
    return BoundedSSEResponse(
        sse_body(
            engine.hub,
            sub,
            engine.shutdown,
            batched=batch == "1",
            columns=batch == "columns",
            direct=body_of(request.scope),
        ),
        on_close=sub.close,
    )


CLOSE_REASON_MAX = 123  # bytes of UTF-8 a close frame's reason may hold (RFC 6455 5.5)


def close_reason(text: str) -> str:
    """`text` cut to what a close frame holds, by its UTF-8 bytes: a name or a value in
    it may be any text (cut by characters, one of `é` x 100 made the frame too long, and
    the connection ended with 1006 and a traceback in the server's log)."""
    return text.encode("utf-8", "replace")[:CLOSE_REASON_MAX].decode("utf-8", "ignore")


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
    engine = get_ws_engine(websocket)
    problem = bad_text(websocket.scope)
    name = lookup(engine, process) if process is not None and problem is None else None
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
        await websocket.close(code=1008, reason=close_reason(problem))
        return
    names = [name] if name else engine.processes.names()
    subs = []
    try:  # however this ends, no subscription stays behind (closing one twice is harmless)
        try:
            for each in names:
                subs.append(
                    await engine.hub.subscribe(each, after=start_after, lines=start_lines, query=query)
                )
        except UnknownProcess as exc:
            await websocket.close(code=1008, reason=close_reason(str(exc)))
            return
        await websocket_stream(websocket, engine.hub, subs, engine.shutdown, as_json=format == "json")
    finally:
        for sub in subs:
            sub.close()


def _error_frame(message: str) -> str:
    return ErrorEvent(type="error", message=message).model_dump_json()
