"""What every route needs: the engine, a process found by name or alias, checked parameters.

Whatever a client sends is a 4xx with a reason, never a 500: seqs and counts are bounded by
`MAX_SEQ`, times are finite, and a path or query with a NUL byte or bytes that are not UTF-8
is refused before any handler runs (`clean_text`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import Depends, HTTPException, Query, Request, WebSocket
from fastapi.requests import HTTPConnection
from pydantic import BeforeValidator

from logcast.engine import Engine
from logcast.query import Query as LogQuery
from logcast.query import compile_regex, parse_levels
from logcast.schemas import Process
from logcast.types import MAX_SEQ

MAX_PAGE = 10_000


def _digits(value: object) -> object:
    """A seq, count or limit as the client wrote it: ASCII digits only, as `Last-Event-ID`
    is read (pydantic would take `+5`, ` 5` and `1_0`, which is 10)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written in the digits 0-9")
    return value


Digits = BeforeValidator(_digits)
Seq = Annotated[int, Digits, Query(ge=0, le=MAX_SEQ)]
Count = Annotated[int | None, Digits, Query(ge=0, le=MAX_SEQ)]
Time = Annotated[float | None, Query(allow_inf_nan=False)]
LevelParam = Annotated[str | None, Query(max_length=200)]
TextParam = Annotated[str | None, Query(max_length=1000)]


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


def get_engine(request: Request) -> Engine:
    """The engine, or 503 with the reason while it cannot answer (its Redis is away)."""
    engine: Engine = request.app.state.engine
    problem = engine.problem
    if problem is not None:
        raise HTTPException(503, problem, headers={"Retry-After": "2"})
    return engine


def get_ws_engine(websocket: WebSocket) -> Engine:
    engine: Engine = websocket.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def aliases(engine: Engine) -> dict[str, str]:
    """Each configured alias → the name of its process (the configuration refuses clashes)."""
    return {alias: name for name, config in engine.configs().items() for alias in config.aliases}


def lookup(engine: Engine, name: str) -> str | None:
    """The process that `name` (its own name or an alias) addresses, or None."""
    if name in engine.processes or name in engine.hub.names():
        return name
    return aliases(engine).get(name)


def resolve(engine: Engine, name: str) -> str:
    """The process `name` addresses; 404 when none."""
    found = lookup(engine, name)
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


def process_model(engine: Engine, name: str) -> Process:
    """The process `name` as the API describes it. One that is no longer configured (its
    history remains) has no run: its `pid`, `run`... stay unset, so absent on the wire."""
    run: Mapping[str, Any] = (
        engine.processes.info(name)
        if name in engine.processes.names()
        else {"name": name, "state": "stopped"}
    )
    if "host" not in run:
        run = {**run, "host": engine.host}
    if name in engine.processes:
        run = {**run, "resources": engine.resources(name)}
    return Process.of(run, engine.hub.stats(name))
