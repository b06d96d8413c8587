"""A client process of the streaming benchmarks (run by `clients.ClientProcess` with a JSON
spec): the streams live in a process of their own, on uvloop where it is installed, so that
the benchmark measures the server, not its clients."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import threading
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the repo root, not this folder, first on sys.path
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from bench.lib.histogram import BUCKET_COUNT, LatencyHistogram
from bench.lib.stream_readers import StreamState, follow_sse, follow_ws_library, follow_ws_raw


async def run_streams(spec: dict[str, Any]) -> dict[str, Any]:
    """Follow `spec["sse"]` SSE and `spec["ws"]` WebSocket streams of the server on `spec["port"]`
    (`sse_path`, `ws_url`, `ws_client`, `ws_compression`) until each has line `expect` - 1,
    `stop` comes on stdin, or `max_seconds` pass (`mode`: "latency" times lines, "burst" counts
    them, "idle" only holds the streams); print `READY <connected> <failed>` once every stream
    is connected or failed; return each kind's stream reports, histogram and errors."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    deadline = loop.time() + float(spec["max_seconds"])
    gate = asyncio.Semaphore(int(spec.get("connect_parallel", 50)))
    bucket_counts = {"sse": [0] * BUCKET_COUNT, "ws": [0] * BUCKET_COUNT}
    max_ms = {"sse": [0.0], "ws": [0.0]}
    states: list[StreamState] = []
    tasks: list[asyncio.Task[None]] = []

    async def run_sse(state: StreamState) -> None:
        async with gate:  # the gate covers the connect only
            task = asyncio.ensure_future(follow_sse(spec, state, bucket_counts["sse"], max_ms["sse"]))
            while not state.connected and not task.done():
                await asyncio.sleep(0.005)
        try:
            await task
        except Exception as exc:
            state.error = repr(exc)[:300]

    async def run_ws(state: StreamState) -> None:
        opened = asyncio.Event()
        async with gate:  # the gate covers the connect only
            if spec.get("ws_client") == "websockets":
                task = asyncio.ensure_future(
                    follow_ws_library(spec, state, bucket_counts["ws"], max_ms["ws"], opened)
                )
                await asyncio.wait(
                    [task, asyncio.ensure_future(opened.wait())], return_when=asyncio.FIRST_COMPLETED
                )
            else:
                task = asyncio.ensure_future(follow_ws_raw(spec, state, bucket_counts["ws"], max_ms["ws"]))
                while not state.connected and not task.done():
                    await asyncio.sleep(0.005)
        try:
            await task
        except Exception as exc:
            state.error = repr(exc)[:300]

    for kind, n in (("sse", spec.get("sse", 0)), ("ws", spec.get("ws", 0))):
        for _ in range(n):
            state = StreamState(kind, done=loop.create_future())
            states.append(state)
            tasks.append(asyncio.create_task(run_sse(state) if kind == "sse" else run_ws(state)))

    # READY once every stream is connected or has failed
    while loop.time() < deadline and not stop.is_set():
        if all(s.connected or s.error or t.done() for s, t in zip(states, tasks, strict=True)):
            break
        await asyncio.sleep(0.02)
    ok = sum(1 for s in states if s.connected)
    print(f"READY {ok} {len(states) - ok}", flush=True)

    if spec["mode"] == "idle":
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter], timeout=max(0.0, deadline - loop.time()))
    else:
        everything: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*tasks, return_exceptions=True)
        )
        stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        await asyncio.wait(
            [everything, stopper],
            timeout=max(0.0, deadline - loop.time()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        stopper.cancel()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {"cpu_s": usage.ru_utime + usage.ru_stime, "kinds": {}}
    for kind in ("sse", "ws"):
        mine = [s for s in states if s.kind == kind]
        if not mine:
            continue
        cap = sorted(c for s in mine for c in s.cap_ms)
        out["kinds"][kind] = {
            "streams": [s.report() for s in mine],
            "hist": LatencyHistogram.from_list(bucket_counts[kind], max_ms[kind][0]).to_json(),
            "errors": sorted({s.error for s in mine if s.error}),
            "capture_ms_p50": cap[len(cap) // 2] if cap else None,
            "capture_ms_p99": cap[int(len(cap) * 0.99)] if cap else None,
        }
    return out


def main(spec: dict[str, Any]) -> None:
    try:
        import uvloop

        result = uvloop.run(run_streams(spec))
    except ImportError:
        result = asyncio.run(run_streams(spec))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
