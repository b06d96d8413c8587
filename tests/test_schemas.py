"""One shape per API object (`logcast.schemas`): what the encoder writes, what the routes
answer and what the client reads all fit the models, field for field, and `/openapi.json`
describes the routes with them.

The streams are encoded without pydantic (one encoding per line, spliced bytes); these
tests are what keeps their output and the models one shape: every event must validate,
and dumped back it must be exactly what was sent (no field the model lacks, none absent
that the model would write, the same JSON types).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel
from websockets.sync.client import connect

from logcast.client import ProcessInfo
from logcast.client._common import log_page
from logcast.client.events import parse_event
from logcast.config import load
from logcast.schemas import (
    EVENT_MODELS,
    Cleared,
    Config,
    GapEvent,
    Health,
    Healthz,
    HistoryPage,
    Log,
    ModelAction,
    ModelError,
    ModelList,
    Process,
    ProcessList,
    ProcessRun,
    ProcessStats,
    Stats,
    StreamEvent,
)
from logcast.types import EventType, Level, LogRecord, ProcessState, Stream
from logcast.web import encode, routes
from logcast.web.app import create_app
from tests.util import free_port, stop_group, wait_for, wait_healthy

NOW = 1763800000.25

LINE = LogRecord(7, NOW, Level.INFO, "GET / 200 ✓", Stream.STDOUT, "web", 3)
ERROR = LogRecord(8, NOW + 0.5, Level.ERROR, "\x1b[31mboom\x1b[0m", Stream.STDERR, "web", 3)
PIECE = LogRecord(9, NOW + 1, Level.INFO, "x" * 100, Stream.STDOUT, "web", 3, partial=True)
STATUS = LogRecord(
    10,
    NOW + 2,
    Level.WARNING,
    "exited with code 1 (run 3)",
    Stream.SYSTEM,
    "web",
    3,
    state=ProcessState.EXITED,
)
RECORDS = [LINE, ERROR, PIECE, STATUS]


def exact(model: type[BaseModel], data: Any) -> BaseModel:
    """`data` validated by `model`, which must give back exactly `data` (JSON types included)."""
    value = model.model_validate(data)
    dumped = orjson.loads(value.model_dump_json(by_alias=True, exclude_unset=True))
    assert dumped == data, f"{model.__name__} does not give back what was sent"
    assert _types(dumped) == _types(data), f"{model.__name__}: JSON types differ"
    return value


def _types(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _types(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_types(v) for v in data]
    return type(data).__name__


def event(data: bytes | str) -> BaseModel:
    """One event's JSON, checked against `StreamEvent`; the specific event model."""
    obj = orjson.loads(data)
    root: BaseModel = StreamEvent.model_validate(obj).root
    exact(type(root), obj)
    return root


def sse_messages(body: bytes) -> list[tuple[str, bytes]]:
    """(id, data) of each SSE message in `body` (comments and `retry:` skipped)."""
    out = []
    for block in body.split(b"\n\n"):
        fields = dict(
            line.split(b": ", 1) for line in block.split(b"\n") if b": " in line and line[:1] != b":"
        )
        if b"data" in fields:
            out.append((fields[b"id"].decode(), fields[b"data"]))
    return out


def ws_payload(frame: bytes) -> bytes:
    length = frame[1] & 0x7F
    return frame[2 + {126: 2, 127: 8}.get(length, 0) :]


# -- the encoder's output against the event models ----------------------------------------


def test_every_event_type_has_its_model() -> None:
    kinds = {model.model_fields["type"].annotation.__args__[0] for model in EVENT_MODELS}  # type: ignore[union-attr]
    assert kinds == {kind.value for kind in EventType}


def test_the_log_model_is_the_record() -> None:
    assert list(Log.model_fields) == list(LogRecord._fields)
    for record in RECORDS:
        assert Log.of(record).record() == record
        exact(Log, orjson.loads(encode.encode_log(record)))


@pytest.mark.parametrize("kind", [EventType.HISTORICAL, EventType.REALTIME, EventType.STATUS])
def test_record_events_validate(kind: EventType) -> None:
    for record in RECORDS:
        got = event(encode.event_json(kind, record))
        assert got.type == kind.value and got.log.record() == record  # type: ignore[attr-defined]
        cached = encode.encode_log(record)  # the ring's cached `log` bytes, spliced in
        assert event(encode.event_json(kind, record, cached)) == got


def test_live_wire_bytes_validate() -> None:
    """The encodings the hub caches per record: SSE, WebSocket json (a whole frame)."""
    for record in RECORDS:
        [(ident, data)] = sse_messages(encode.live_sse(record))
        got = event(data)
        assert ident == str(record.seq)
        assert got.type == ("status" if record.stream is Stream.SYSTEM else "realtime")  # type: ignore[attr-defined]
        assert event(ws_payload(encode.live_ws_json(record))) == got
        # the same bytes as the SSE message of an event (`live_sse` writes its own envelope)
        kind = EventType.STATUS if record.stream is Stream.SYSTEM else EventType.REALTIME
        assert encode.live_sse(record) == b"id: %d\ndata: %s\n\n" % (
            record.seq,
            encode.event_json(kind, record),
        )


def test_gap_complete_end_and_error_events_validate() -> None:
    gap = event(encode.event_json(EventType.GAP, encode.Gap("web", 100, 199, "retention")))
    assert isinstance(gap, GapEvent) and (gap.from_, gap.to, gap.count) == (100, 199, 100)
    complete = event(encode.event_json(EventType.HISTORICAL_COMPLETE, 41))
    assert complete.seq == 41  # type: ignore[attr-defined]
    end = event(encode.message_json(EventType.STREAM_END, "web exited: exited with code 1"))
    assert end.type == "stream_end"  # type: ignore[attr-defined]
    assert event(encode.message_json(EventType.ERROR, "too slow")).type == "error"  # type: ignore[attr-defined]
    assert event(routes._error_frame("format must be text or json")).type == "error"  # type: ignore[attr-defined]


def test_the_client_reads_events_as_the_models_do() -> None:
    wire = [
        *(encode.event_json(EventType.HISTORICAL, r) for r in RECORDS),
        encode.event_json(EventType.HISTORICAL_COMPLETE, 10),
        encode.event_json(EventType.GAP, encode.Gap("web", 11, 20, "cleared")),
        *(encode.live_sse(r).split(b"data: ", 1)[1].strip() for r in RECORDS),
        encode.message_json(EventType.STREAM_END, "web exited"),
    ]
    for data in wire:
        model: Any = event(data)
        got = parse_event(data, "", "web")
        assert got is not None and got.type.value == model.type
        if hasattr(model, "log"):
            assert got.log == model.log.record() and got.seq == model.log.seq
        elif isinstance(model, GapEvent):
            assert (got.gap_from, got.gap_to, got.reason) == (model.from_, model.to, model.reason)
        elif hasattr(model, "seq"):
            assert got.seq == model.seq
        else:
            assert got.message == model.message


# -- REST shapes built from the hub's and the supervisor's mappings -------------------------

RUN = {
    "name": "web",
    "state": "running",
    "host": "gpu-1",  # the engine adds it to what the supervisor says
    "pid": 12,
    "started_at": NOW,
    "exit_code": None,
    "run": 3,
    "restarts": 1,
    "resources": None,  # the engine adds it: null until the first sample
    "waiting_for": None,
    "last_exit": None,
    "model": None,
    "adopted": [],
}
HUB_STATS = {
    "lines": 1200,
    "bytes": 98000,
    "subscribers": 2,
    "dropped": 0,
    "lines_per_s": 10.5,
    "warnings": 3,
    "errors": 1,
    "last_error": "boom",
    "memory_lines": 1200,
    "memory_bytes": 5000,
    "last_seq": 1250,
    "persisted_seq": 1250,
    "pending": 0,
    "store_lost": 0,
    "behind": [0, 12],
}


def test_a_process_from_its_run_and_its_figures() -> None:
    process = Process.of(RUN, HUB_STATS, now=NOW + 12.5)
    wire = orjson.loads(process.model_dump_json(exclude_unset=True))
    assert list(wire) == [
        *ProcessRun.model_fields,
        *(f for f in Process.model_fields if f not in ProcessRun.model_fields),
    ]
    assert wire["uptime"] == 12.5 and wire["state"] == "running" and wire["last_seq"] == 1250
    stopped = Process.of({**RUN, "state": "exited", "pid": None, "exit_code": 1}, HUB_STATS)
    assert stopped.uptime is None
    # a process no longer configured (its history remains) has no run: those fields stay absent
    ghost = orjson.loads(
        Process.of({"name": "old", "state": "stopped"}, HUB_STATS).model_dump_json(exclude_unset=True)
    )
    assert "pid" not in ghost and "run" not in ghost and ghost["uptime"] is None
    info = ProcessInfo.from_dict(wire)
    assert isinstance(info, Process) and info.raw == wire and info.state is ProcessState.RUNNING
    assert ProcessInfo.from_dict(ghost).pid is None and ProcessInfo.from_dict(ghost).run == 0


def test_stats_of_a_process_hold_what_the_hub_keeps() -> None:
    exact(ProcessStats, HUB_STATS)
    exact(ProcessStats, {**HUB_STATS, "state": "ready"})


def test_history_pages_validate() -> None:
    """`/api/processes/{name}/logs` answers pre-encoded bytes (not through its response_model)."""
    for page in (
        routes._page(RECORDS, 11, 10),
        routes._page(RECORDS, 11, 10, before=6),
        routes._page([], None, 0),
    ):
        body = orjson.loads(page.body)
        exact(HistoryPage, body)
        assert log_page(body).logs == [Log.model_validate(d).record() for d in body["logs"]]


# -- OpenAPI -------------------------------------------------------------------------------


def _ref(schema: dict[str, Any]) -> str:
    ref: str = schema["$ref"]
    return ref.rsplit("/", 1)[-1]


def test_openapi_types_the_routes(tmp_path: Path) -> None:
    config = tmp_path / "logcast.toml"
    config.write_text('[process.web]\ncommand = ["true"]\n')
    spec = create_app(load(config)).openapi()
    paths = spec["paths"]

    def answer(path: str, method: str = "get", status: str = "200") -> str:
        return _ref(paths[path][method]["responses"][status]["content"]["application/json"]["schema"])

    assert answer("/api/processes") == ProcessList.__name__
    assert answer("/api/processes/{name}") == Process.__name__
    for action in ("start", "stop", "restart"):
        assert answer(f"/api/processes/{{name}}/{action}", "post") == Process.__name__
    assert answer("/api/config") == Config.__name__
    assert answer("/api/processes/{name}/logs") == HistoryPage.__name__
    assert answer("/api/logs/stats") == Stats.__name__
    assert answer("/api/logs/{alias}/clear", "post") == Cleared.__name__
    assert answer("/v1/models") == ModelList.__name__
    assert answer("/health") == Health.__name__
    assert answer("/healthz") == Healthz.__name__
    for action in ("start", "stop"):
        assert answer(f"/api/models/{{alias}}/{action}", "post") == ModelAction.__name__
        assert answer(f"/api/models/{{alias}}/{action}", "post", "404") == ModelError.__name__
    assert answer("/api/models/{alias}/logs/stream", status="503") == "ErrorEvent"
    for stream in ("/api/processes/{name}/logs/stream", "/api/models/{alias}/logs/stream"):
        content = paths[stream]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"]
        data = content["text/event-stream"]["itemSchema"]["properties"]["data"]
        assert _ref(data["contentSchema"]) == StreamEvent.__name__
    components = spec["components"]["schemas"]
    for model in (StreamEvent, Log, *EVENT_MODELS, Process, ProcessStats):
        assert model.__name__ in components
    assert set(components["Process"]["required"]) >= {"name", "state", "lines", "last_seq"}
    assert components["GapEvent"]["properties"].keys() >= {"from", "to", "count", "reason"}
    json.dumps(spec)  # serialisable as /openapi.json serves it


# -- a real server: every answer and every streamed event fits -------------------------------

PRINTER = json.dumps(
    [
        sys.executable,
        "-u",
        "-c",
        "import time\nfor i in range(20): print(('ERROR ' if i % 7 == 0 else '') + f'line {i}', flush=True)\n"
        "time.sleep(3600)",
    ]
)
SHORT = json.dumps([sys.executable, "-u", "-c", "import time\nprint('hello', flush=True)\ntime.sleep(1.5)"])
CONFIG = f"""
[process.web]
command = {PRINTER}
aliases = ["w"]
env = {{API_TOKEN = "secret"}}
[process.web.ready]
log = "line 3"

[process.short]
command = {SHORT}
autostart = false
restart = "never"
[process.short.ready]
http = "http://user:pw@127.0.0.1:1/ready"
"""
GHOST = f"""
[process.ghost]
command = {json.dumps([sys.executable, "-c", "print('boo')"])}
"""


def _serve(folder: Path, text: str) -> tuple[subprocess.Popen[bytes], str]:
    (folder / "logcast.toml").write_text(textwrap.dedent(text))
    port = free_port()
    log = folder / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "logcast", "serve", "-c", "logcast.toml", "--port", str(port)],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, 20.0, lambda: log.read_text(errors="replace"))
    return proc, url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose store also holds `ghost`, a process that is no longer configured."""
    folder = tmp_path_factory.mktemp("schemas")
    proc, url = _serve(folder, CONFIG + GHOST)
    try:
        wait_for(lambda: httpx.get(url + "/api/processes/ghost/logs").json()["logs"], what="ghost's output")
    finally:
        stop_group(proc)
    proc, url = _serve(folder, CONFIG)
    try:
        yield url
    finally:
        stop_group(proc)


@pytest.mark.e2e
def test_every_answer_fits_its_model(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10.0) as c:
        wait_for(lambda: c.get("/api/processes/web").json()["state"] == "ready", what="web ready")
        processes = exact(ProcessList, c.get("/api/processes").json())
        assert [p.name for p in processes.processes] == ["web", "short"]  # type: ignore[attr-defined]
        exact(Process, c.get("/api/processes/w").json())
        ghost = c.get("/api/processes/ghost").json()
        exact(Process, ghost)
        assert "pid" not in ghost and "restarts" not in ghost
        exact(Config, c.get("/api/config").json())
        exact(HistoryPage, c.get("/api/processes/web/logs", params={"limit": 5}).json())
        exact(HistoryPage, c.get("/api/processes/web/logs", params={"tail": 5, "level": "error"}).json())
        stats = c.get("/api/logs/stats").json()
        exact(Stats, stats)
        assert "state" in stats["processes"]["web"] and "state" not in stats["processes"]["ghost"]
        exact(ModelList, c.get("/v1/models").json())
        exact(Health, c.get("/health").json())
        exact(Healthz, c.get("/healthz").json())
        not_running = c.get("/api/models/short/logs/stream")
        assert not_running.status_code == 503 and event(not_running.content).type == "error"  # type: ignore[attr-defined]
        assert c.post("/api/models/nope/start").status_code == 404
        exact(ModelError, c.post("/api/models/nope/start").json())
        exact(ModelAction, c.post("/api/models/web/start").json())
        exact(Process, c.post("/api/processes/short/start").json())
        exact(Process, c.post("/api/processes/short/stop").json())
        exact(Cleared, c.post("/api/logs/ghost/clear", params={"keep_minutes": 5}).json())


@pytest.mark.e2e
def test_streamed_events_fit_their_models(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10.0) as c:
        # history, historical_complete and a live status: the model route of a process that
        # exits on its own, up to its stream_end
        assert c.post("/api/models/short/start").json()["success"] is True
        with c.stream("GET", "/api/models/short/logs/stream", params={"after": 0}, timeout=30.0) as r:
            body = r.read()
        kinds = [event(data).type for _, data in sse_messages(body)]  # type: ignore[attr-defined]
        assert {"historical", "historical_complete", "status", "stream_end"} <= set(kinds)
        assert kinds[-1] == "stream_end"

    frames: list[str] = []
    with connect(server.replace("http", "ws") + "/ws/logs?process=web&format=json&lines=5", proxy=None) as ws:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(frames) < 6:
            frames.append(str(ws.recv(timeout=10)))
    kinds = [event(frame).type for frame in frames]  # type: ignore[attr-defined]
    assert kinds[:6] == ["historical"] * 5 + ["historical_complete"]
    with connect(server.replace("http", "ws") + "/ws/logs?process=nope&format=json", proxy=None) as ws:
        assert "nope" in event(str(ws.recv(timeout=10))).message  # type: ignore[attr-defined]
