"""History: pages (forward, or a tail going back), filtered and bounded; the download."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from logcast.ansi import strip_ansi
from logcast.loop import raise_if_cancelled
from logcast.schemas import HistoryPage
from logcast.types import LogRecord
from logcast.web.routes.deps import (
    MAX_PAGE,
    Count,
    Digits,
    EngineDep,
    LevelParam,
    Seq,
    TextParam,
    Time,
    build_query,
    resolve,
)
from logcast.web.streams import BoundedStreamingResponse

router = APIRouter()


@router.get("/api/processes/{name}/logs", tags=["logs"], response_model=HistoryPage)
async def get_logs(
    name: str,
    engine: EngineDep,
    after: Seq = 0,
    limit: Annotated[int, Digits, Query(ge=1, le=MAX_PAGE)] = 1000,
    level: LevelParam = None,
    q: TextParam = None,
    regex: TextParam = None,
    since: Time = None,
    until: Time = None,
    tail: Annotated[int | None, Digits, Query(ge=0, le=MAX_PAGE)] = None,
    before: Count = None,
) -> Response:
    name = resolve(engine, name)
    query = build_query(level, q, regex, since, until)
    if tail is not None:
        found = await engine.hub.tail_page(name, tail, before=before, query=query)
        # `next` and `cursor`: the newest seq the read looked at, not the last seq now (lines
        # that came while it read, or numbered and not yet visible, are above it); `before`:
        # where a search further back goes on, null once the oldest line was looked at
        return _page(found.records, found.last, found.last, before=found.before)
    page = await engine.hub.read_page(name, after=after, limit=limit, query=query)
    return _page(page.records, page.next, page.cursor)


def _page(records: list[LogRecord], nxt: int | None, cursor: int, **extra: int | None) -> Response:
    """A `HistoryPage`, encoded by orjson from the records' own dicts: the page is the
    route's `response_model` for the documentation only, since building and dumping a
    thousand `Log` models per page took several times as long (tests/test_schemas.py
    checks that these pages validate against the model)."""
    body = {"logs": [r.as_dict() for r in records], "next": nxt, "cursor": cursor, **extra}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/api/processes/{name}/logs/download", tags=["logs"])
async def download_logs(name: str, engine: EngineDep, plain: bool = False) -> StreamingResponse:
    """The whole history as text, a page at a time; it counts as a stream against
    `max_streams`, and a client that stops reading is cut after the send timeout."""
    name = resolve(engine, name)

    async def lines() -> AsyncIterator[bytes]:
        after = 0
        while True:
            raise_if_cancelled()  # the store may be Redis
            page = await engine.hub.page(name, after=after, limit=MAX_PAGE)
            if not page:
                return
            yield await asyncio.to_thread(_download_text, page, plain)  # 10,000 lines: tens of ms
            after = page[-1].seq

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return BoundedStreamingResponse(
        lines(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.log"'},
    )


def _download_text(records: list[LogRecord], plain: bool) -> bytes:
    """A download's lines for `records`: time, run, stream, level and the text (without
    terminal sequences when `plain`)."""
    out = []
    for r in records:
        stamp = dt.datetime.fromtimestamp(r.timestamp, dt.UTC).isoformat(timespec="milliseconds")
        text = strip_ansi(r.message) if plain else r.message
        out.append(f"{stamp.replace('+00:00', 'Z')} [run {r.run}] {r.stream} {r.level.upper()} {text}\n")
    return "".join(out).encode()
