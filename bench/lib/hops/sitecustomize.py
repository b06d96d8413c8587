"""Where an ordinary line's time goes inside `logcast serve`, hop by hop (`bench/ordinary.py
--hops`).

Python imports this at the start of every process whose PYTHONPATH holds this folder; it
does nothing unless `LOGCAST_BENCH_HOPS` names an output file and the process is
`logcast serve`. Then it wraps, by monkeypatching, the steps a line takes: the reader
framing it on its own thread, `Hub.lines`, the hub's wake of the event loop, and the bytes
each stream makes of it (SSE, WebSocket frames, `batch=columns` for `logcast tail`),
stamping each with `time.time()`, and the writes the hub's wake makes itself
(`web/direct.py`: "bytes made" is when such a write began). At exit it writes, per hop,
p50 / p90 / p99 in ms over the lines of the benchmark's child (whose text carries its line
number and write time).

A benchmark's instrument, never the product's: it names private functions, and where one
is gone the file says which, instead of figures.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
import time
from typing import Any

OUT = os.environ.get("LOGCAST_BENCH_HOPS")
LINE = re.compile(r"(\d{9}) +(\d+\.\d{6}) x")  # bench/lib/children.py's lines: number, write time


def _percentiles(values: list[float]) -> list[float] | None:
    values = sorted(values)
    if not values:
        return None
    return [round(values[min(len(values) - 1, int(len(values) * q))] * 1000, 3) for q in (0.5, 0.9, 0.99)]


def _install(out: str) -> None:
    from logcast.capture import reader
    from logcast.hub import hub
    from logcast.web import direct, streams, wsframes

    written: dict[int, float] = {}  # seq of a chunk's last line -> the child's write time
    stamped: dict[int, float] = {}  # -> the reader's read stamp (the record's timestamp)
    framing: dict[int, float] = {}  # -> when the reader thread began framing it
    counted: dict[int, float] = {}  # -> when Hub.lines had numbered and kept it
    woken: dict[int, float] = {}  # last seq at a wake -> when the loop's wake ran
    seq_of: dict[int, int] = {}  # the child's line number -> its seq
    sent: dict[str, dict[int, tuple[float, float]]] = {"sse": {}, "ws": {}, "tail": {}}
    state: dict[str, Any] = {"framing": 0.0, "sse": False}

    frame_here = reader.PipeReader._frame_here

    def traced_frame_here(self: Any, stamp: float, data: bytes) -> None:
        state["framing"] = time.time()
        frame_here(self, stamp, data)

    lines = hub.Hub.lines

    def traced_lines(
        self: Any, process: str, run: int, stream: Any, timestamp: float, chunk: Any, **kw: Any
    ) -> Any:
        seq = lines(self, process, run, stream, timestamp, chunk, **kw)
        now = time.time()
        if seq is not None and chunk.texts:
            last = seq + len(chunk.texts) - 1
            match = LINE.search(chunk.texts[-1])
            if match is not None:
                written[last], stamped[last], counted[last] = float(match[2]), timestamp, now
                framing[last] = state["framing"]
                seq_of[int(match[1])] = last
        return seq

    wake = hub.Hub._wake

    def traced_wake(self: Any) -> None:
        now = time.time()
        for journal in self._journals.values():
            woken.setdefault(journal.last_seq, now)
        wake(self)

    def timed(kind: str, last: int | None, pieces: Any) -> Any:
        began = time.time()
        yield from pieces
        if last is not None:
            sent[kind].setdefault(last, (began, time.time()))

    sse_pieces = streams._sse_pieces

    def traced_sse_pieces(hub_: Any, sub: Any, batch: Any) -> Any:
        if isinstance(batch, streams.LiveBatch):
            state["sse"] = True
            return timed("sse", batch.last_seq, sse_pieces(hub_, sub, batch))
        return sse_pieces(hub_, sub, batch)

    groups = streams._groups

    def traced_groups(frames: Any, limit: int) -> Any:
        sse, state["sse"] = state["sse"], False
        if sse or not isinstance(frames, list) or not frames:
            return groups(frames, limit)
        match = LINE.search(frames[-1].decode("utf-8", "replace"))
        last = seq_of.get(int(match[1])) if match is not None else None
        return timed("ws", last, groups(frames, limit))

    column_pieces = streams._column_pieces

    def traced_column_pieces(hub_: Any, sub: Any, batch: Any) -> Any:
        payload = batch[-1][1] if batch else None
        return timed("tail", getattr(payload, "seq", None), column_pieces(hub_, sub, batch))

    # Lines written from the hub's wake (web/direct.py): stamped around the write itself,
    # by the child's last line number in the bytes (SSE `id:` messages, `batch=columns`
    # messages for the tail, WebSocket frames).
    def traced_direct(kind_of: Any, write: Any) -> Any:
        def traced(self: Any, data: bytes) -> None:
            began = time.time()
            write(self, data)
            matches = LINE.findall(data[-4096:].decode("utf-8", "replace"))
            last = seq_of.get(int(matches[-1][0])) if matches else None
            if last is not None:
                sent[kind_of(data)].setdefault(last, (began, time.time()))

        return traced

    direct.ChunkedBody.write = traced_direct(  # type: ignore[method-assign]
        lambda data: "sse" if data.startswith(b"id:") else "tail",
        direct.ChunkedBody.write,
    )
    wsframes._DirectFrames.write = traced_direct(lambda data: "ws", wsframes._DirectFrames.write)  # type: ignore[method-assign]

    reader.PipeReader._frame_here = traced_frame_here  # type: ignore[method-assign]
    hub.Hub.lines = traced_lines  # type: ignore[method-assign]
    hub.Hub._wake = traced_wake  # type: ignore[method-assign]
    streams._sse_pieces = traced_sse_pieces
    streams._groups = traced_groups
    streams._column_pieces = traced_column_pieces

    def report() -> None:
        seqs = [s for s in counted if s in woken]
        hops: dict[str, Any] = {
            "lines": len(counted),
            "write -> read stamp": _percentiles([stamped[s] - written[s] for s in counted]),
            "read stamp -> framing began": _percentiles(
                [framing[s] - stamped[s] for s in counted if framing[s]]
            ),
            "framing began -> Hub.lines done": _percentiles(
                [counted[s] - framing[s] for s in counted if framing[s]]
            ),
            # read on the loop, the wake (and the writes it makes) run within Hub.lines
            "framing began -> the loop's wake": _percentiles(
                [woken[s] - framing[s] for s in seqs if framing[s] and woken[s] >= framing[s]]
            ),
            "Hub.lines done -> the loop's wake": _percentiles(
                [max(0.0, woken[s] - counted[s]) for s in seqs]
            ),
        }
        for kind, times in sent.items():
            done = [s for s in times if s in woken]
            hops[f"wake -> {kind} bytes made"] = _percentiles([times[s][0] - woken[s] for s in done])
            hops[f"{kind} bytes made -> sent"] = _percentiles([times[s][1] - times[s][0] for s in done])
            hops[f"write -> {kind} sent"] = _percentiles(
                [times[s][1] - written[s] for s in done if s in written]
            )
        with open(out, "w") as f:
            json.dump(hops, f)

    atexit.register(report)


if OUT and "serve" in sys.argv:
    try:
        _install(OUT)
    except (ImportError, AttributeError) as exc:  # the server changed: say so, measure nothing
        with open(OUT, "w") as f:
            json.dump({"error": f"hops not traced: {exc!r}"}, f)
