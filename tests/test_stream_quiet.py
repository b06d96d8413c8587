"""A stream's reader wakes to ping after a quiet spell (`Quiet`), on one timer per stream."""

from __future__ import annotations

import asyncio

import pytest

from logcast.hub import LiveBatch
from logcast.web import streams
from logcast.web.encode import SSE
from logcast.web.streams import Quiet, _next
from tests.test_hub_live import go_live, make_hub, write

SHORT = 0.05  # s: the quiet spell under test


async def test_a_quiet_stream_gets_an_empty_batch_to_ping_with() -> None:
    hub = await make_hub()
    sub = await hub.subscribe("app")
    await go_live(sub)
    quiet = Quiet(sub.event, SHORT)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await _next(sub, asyncio.Event(), quiet, 100, SSE) == []
    assert loop.time() - started >= SHORT
    quiet.close()
    sub.close()
    await hub.close()


async def test_lines_come_at_once_and_many_waits_share_one_timer() -> None:
    hub = await make_hub()
    sub = await hub.subscribe("app")
    await go_live(sub)
    loop = asyncio.get_running_loop()
    quiet = Quiet(sub.event, 3600)
    armed = 0
    call_at = loop.call_at

    def counting_call_at(*args: object, **kw: object) -> asyncio.TimerHandle:
        nonlocal armed
        armed += getattr(args[1], "__self__", None) is quiet._timer  # its one timer
        return call_at(*args, **kw)  # type: ignore[arg-type]

    loop.call_at = counting_call_at  # type: ignore[method-assign]
    try:
        for i in range(50):
            loop.call_soon(write, hub, i, 1)  # a line after the reader began to wait
            batch = await _next(sub, asyncio.Event(), quiet, 100, SSE)
            assert isinstance(batch, LiveBatch) and batch.last_seq == sub.cursor
        quiet.close()
    finally:
        del loop.call_at
    assert armed == 1
    sub.close()
    await hub.close()


async def test_a_timer_that_fires_early_waits_for_the_latest_spell() -> None:
    """The timer armed by an earlier spell finds a later one under way: it does not wake
    the reader then, but at the end of that spell."""
    event = asyncio.Event()
    quiet = Quiet(event, SHORT)
    loop = asyncio.get_running_loop()
    quiet.start()
    pause = loop.create_future()
    loop.call_later(SHORT / 2, pause.set_result, None)
    await pause
    due = quiet.start()  # a new spell halfway through the first
    await event.wait()
    assert loop.time() >= due
    assert quiet.over() and quiet.due == due
    quiet.close()


async def test_a_closed_subscription_ends_the_stream() -> None:
    hub = await make_hub()
    sub = await hub.subscribe("app")
    await go_live(sub)
    quiet = Quiet(sub.event, 3600)
    asyncio.get_running_loop().call_soon(sub.close)
    assert await _next(sub, asyncio.Event(), quiet, 100, SSE) is None
    quiet.close()
    await hub.close()


@pytest.mark.parametrize(
    ("options", "ping"),
    [
        ({}, b": ping\n\n"),
        ({"batched": True}, b": ping\ndata: []\n\n"),
        ({"columns": True}, b": ping\ndata: []\n\n"),
    ],
)
async def test_a_batched_streams_ping_is_also_an_empty_batch(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, bool], ping: bytes
) -> None:
    """A review: the web viewer showed "Live" for a server stopped with SIGSTOP, since an
    EventSource never sees comments; a batched stream's ping is also `data: []`, which it
    sees (and which no client takes for an event: no id, no element). The one-event stream's
    ping stays the comment alone, byte for byte."""
    monkeypatch.setattr(streams, "PING_INTERVAL", SHORT)
    hub = await make_hub()
    sub = await hub.subscribe("app")
    await go_live(sub)
    body = streams.sse_body(hub, sub, asyncio.Event(), **options)
    try:
        assert await anext(body) == b"retry: 1000\n\n"
        assert await anext(body) == ping
    finally:
        await body.aclose()
        sub.close()
        await hub.close()
