"""The shapes of the HTTP API, once: what the routes answer (their `response_model`, so
`/docs` and `/openapi.json` are typed), what the client reads and what the metrics read.

Field names are the API's (docs/api.md). The models describe the wire exactly; where a
field is sometimes absent on the wire (a process no longer configured has no `pid`, a
record that is not a status change has no `state`), the model gives it a default and the
route answers with `response_model_exclude_unset`, so that it stays absent.

The stream events (`StreamEvent`) are documentation and typed access only: the server
encodes them without pydantic (web/encode.py splices cached bytes, one encoding per
line) and the client parses them without it; tests/test_schemas.py checks that what the
encoder writes validates against these models and holds no field they lack.

A leaf module: it imports pydantic and `logcast.types` and no other room.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from logcast.types import GapReason, Level, LogRecord, ProcessState, Stream


class Shape(BaseModel):
    """The base of every API shape: immutable; attribute docstrings describe the fields."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)


# -- processes -----------------------------------------------------------------------------


class ModelStatus(Shape):
    """What a model server's own output says of it (llama.cpp's llama-server, vLLM, SGLang)."""

    kind: str
    """The server recognised (`llamacpp`, `vllm`, `sglang`), or the one `parse` names."""
    phase: str
    """loading, ready, serving, idle or failed."""
    load_progress: float | None
    """0..1 while it loads (null when the loader says nothing of it); 1 from ready on."""
    ready_after_s: float | None
    """Seconds from the first load line to ready."""
    requests: int
    prompt_tokens_per_s: float | None
    gen_tokens_per_s: float | None
    last_request_at: float | None
    marked: list[int]
    """The seqs of the recent lines this was read from (the viewer marks them)."""


class LastExit(Shape):
    """How the last run that failed ended."""

    run: int
    at: float
    """Unix time it ended."""
    exit_code: int | None
    signal: str | None
    """The signal that killed it (`SIGKILL`, ...), if one did."""
    oom_killed: bool
    """The kernel's OOM killer killed it (its memory cgroup counted an OOM kill)."""
    reason: str
    """In a few words, e.g. `killed by the kernel's OOM killer (SIGKILL) after 2m13s`."""
    last_errors: list[str]
    """The last error lines of that run (at most 5)."""
    first_seq: int | None
    """The first and last seq of that run: its whole history is the range between them."""
    last_seq: int | None


class ProcessRun(Shape):
    """A process and its current run, as the supervisor describes them (`uptime` aside)."""

    name: str
    state: ProcessState
    """`unknown` while the host that runs it is lost (several hosts: its agent is silent)."""
    host: str | None = None
    """The host that runs it: its agent's host id, or this machine's name on one host."""
    pid: int | None = None
    """The child's pid while it runs (absent for a process that is no longer configured)."""
    started_at: float | None = None
    """Unix time of the current (or last) run's start."""
    exit_code: int | None = None
    """How the last run ended; null while it runs."""
    run: int = 0
    """Starts of the process, over its whole life."""
    restarts: int = 0
    """Automatic restarts."""
    uptime: float | None = None
    """Seconds since the current run started; null when no child runs (the web computes it
    from `started_at`)."""
    resources: Resources | None = None
    """What its process tree uses now; null when no child runs."""
    waiting_for: str | None = None
    """The dependency it waits for before it starts (`db (ready)`), if any."""
    last_exit: LastExit | None = None
    """How the last run that failed ended; null until one did."""
    model: ModelStatus | None = None
    """Null unless its output is a model server's."""
    adopted: list[int] = []
    """Pids of the run's descendants whose parent exited (a daemon's double fork) and that
    logcast now follows: they are stopped with the process and killed when its run ends."""


class Resources(Shape):
    """What a process tree (the process and its descendants) uses, sampled every 2 s."""

    cpu_percent: float
    """Of one core, summed over the tree."""
    rss_bytes: int
    """Resident memory summed over the tree (memory they share is counted in each)."""
    threads: int
    open_fds: int
    gpu_memory_bytes: dict[str, int] | None
    """Per GPU index, where NVIDIA's driver is present; null otherwise."""
    cpu_seconds_total: float
    """CPU time of the tree in this run, exited descendants included (only grows)."""
    sampled_at: float


class Counters(Shape):
    """The figures the hub keeps of a process's log, shared by `Process` and `ProcessStats`."""

    lines: int
    """Lines captured over the process's whole life."""
    bytes: int
    lines_per_s: float
    """Lines per second, over the last 5 s."""
    warnings: int
    errors: int
    last_error: str | None
    """The text of the last line at level error or above."""
    subscribers: int
    """Open log streams of this process."""
    last_seq: int
    """The highest sequence number a reader can see."""


class Process(Counters, ProcessRun):
    """A process: `GET /api/processes/{name}`, and the answer of start, stop and restart."""

    @classmethod
    def of(cls, run: Mapping[str, Any], counters: Mapping[str, Any], *, now: float | None = None) -> Process:
        """A process from the supervisor's description of its run and the hub's figures of
        its log (`Hub.stats`); keys that are neither's stay unset, so absent on the wire."""
        started = run.get("started_at")
        alive = ProcessState(run.get("state", ProcessState.STOPPED)).is_alive
        uptime = (
            round((time.time() if now is None else now) - float(started), 1) if started and alive else None
        )
        return cls.model_validate({**counters, **run, "uptime": uptime})


class Host(Shape):
    """A host that runs processes: one on a single machine, one per agent on several."""

    host: str
    alive: bool
    """False once its agent has been silent for 10 s (its processes show as `unknown`)."""
    last_seen: float | None = None
    """Unix time of its last heartbeat (null on a single machine: it is this one)."""
    processes: list[str]


class ProcessSamples(Shape):
    """One process's samples, column by column (the `t` of each, then its figures)."""

    t: list[float]
    """Unix time of each sample."""
    lines_per_s: list[float | None]
    errors: list[float | None]
    """Error lines since the sample before."""
    cpu_percent: list[float | None]
    rss_bytes: list[float | None]
    gen_tokens_per_s: list[float | None]


class Samples(Shape):
    """`GET /api/samples`: every process's figures every `interval` s over the last 15
    minutes, for sparklines (one request for all of them)."""

    interval: float
    processes: dict[str, ProcessSamples]


class HostList(Shape):
    """`GET /api/hosts`."""

    hosts: list[Host]


class ProcessList(Shape):
    """`GET /api/processes`: every configured process, in configuration order."""

    processes: list[Process]


class LogReady(Shape):
    log: str
    """The pattern a line must match for the process to be ready."""
    timeout: float


class HttpReady(Shape):
    http: str
    """The URL that must answer 2xx for the process to be ready (credentials masked)."""
    timeout: float


class ProcessConfig(Shape):
    """A configured process, credentials masked."""

    name: str
    aliases: list[str]
    command: list[str]
    cwd: str
    env: dict[str, str]
    autostart: bool
    restart: str
    pty: bool
    ready: LogReady | HttpReady | None
    stop_signal: str
    """The signal's name without `SIG` (`TERM`)."""
    stop_timeout: float
    depends_on: dict[str, str] = {}
    """Each process it starts after, and when: `started`, `ready` or `exited_ok`."""
    restart_with: bool = False
    """It is restarted when a dependency restarts."""


class Config(Shape):
    """`GET /api/config`."""

    path: str | None
    """The configuration file, if there is one."""
    processes: list[ProcessConfig]


# -- history -------------------------------------------------------------------------------


class Log(Shape):
    """A record: one captured line, or one status change of a process (`stream` "system",
    `state` set). The `log` object of stream events and history pages
    (`logcast.types.LogRecord` on the wire)."""

    seq: int
    """Grows by one per record of a process, for its whole life."""
    timestamp: float
    """Unix time when logcast read the bytes."""
    level: Level
    message: str
    stream: Stream
    process: str
    run: int
    partial: bool
    """The record does not end a line (a piece of an overlong line, or text not ended yet)."""
    state: ProcessState | None = None
    """The state a status record reports; absent on other records."""

    @classmethod
    def of(cls, record: LogRecord) -> Log:
        return cls.model_validate(record.as_dict())

    def record(self) -> LogRecord:
        """The same record as the `LogRecord` the rest of logcast speaks."""
        return LogRecord(
            self.seq,
            self.timestamp,
            self.level,
            self.message,
            self.stream,
            self.process,
            self.run,
            self.partial,
            self.state,
        )


class HistoryPage(Shape):
    """`GET /api/processes/{name}/logs`: a page of history, oldest first."""

    logs: list[Log]
    next: int | None
    """Pass as `after` for the following page; null when no more follow."""
    cursor: int
    """The last seq this page covered (to poll from with `after=` once `next` is null)."""
    before: int | None = None
    """With `tail=` only: pass as `before=` to look further back; null once the oldest line
    was looked at."""


class Cleared(Shape):
    """`POST /api/logs/{alias}/clear`."""

    success: bool
    message: str
    cleared: bool
    process: str
    upto: int
    """The last seq cleared (numbering goes on)."""
    keep_minutes: float | None


# -- stats ---------------------------------------------------------------------------------


class ProcessStats(Counters):
    """The figures of one process's log in `GET /api/logs/stats` (what `Hub.stats` keeps)."""

    dropped: int
    """Lines announced to readers as gaps."""
    memory_lines: int
    memory_bytes: int
    persisted_seq: int
    """The highest seq the store has committed."""
    pending: int
    """Records the store writer still has to write."""
    store_lost: int
    """Seqs the store will never hold."""
    behind: list[int]
    """How far behind the last seq each open stream is, ascending."""
    state: ProcessState | None = None
    """Absent for a process that is no longer configured."""


class StoreStats(Shape):
    engine: str
    written: int
    errors: int
    last_error: str | None
    pending: int


class ModelStats(Shape):
    log_count: int
    """Records the history holds now (status records included; a clear lowers it)."""
    subscriber_count: int


class ManagerStats(Shape):
    """The LLM manager's statistics, which its tools read."""

    total_models: int
    total_log_entries: int
    total_subscribers: int
    model_stats: dict[str, ModelStats]


class Stats(Shape):
    """`GET /api/logs/stats`: totals, per process, the store, and the LLM manager's envelope
    (`success`, `stats`)."""

    total_logs: int
    total_bytes: int
    subscribers: int
    dropped: int
    lines_per_s: float
    processes: dict[str, ProcessStats]
    store: StoreStats
    success: bool
    stats: ManagerStats


# -- the LLM manager's routes --------------------------------------------------------------


class Model(Shape):
    """A configured process as an OpenAI-style model."""

    id: str
    object: Literal["model"]
    created: int
    """The start of the current run, or of logcast for a process that never ran."""
    owned_by: str
    aliases: list[str]
    """The process's own name first, then its configured aliases."""
    state: ProcessState


class ModelList(Shape):
    """`GET /v1/models`."""

    object: Literal["list"]
    data: list[Model]


class Health(Shape):
    """`GET /health`, the LLM manager's."""

    status: str
    models_count: int
    running_models: int
    """Processes running or ready."""


class ModelAction(Shape):
    """`POST /api/models/{alias}/start|stop`."""

    success: bool
    message: str
    process: str
    state: ProcessState


class ModelError(Shape):
    """An unknown model: 404 from `POST /api/models/{alias}/start|stop`."""

    success: bool
    message: str
    detail: str


class Healthz(Shape):
    status: str


# -- stream events (SSE `data:`, WebSocket `format=json` frames) ---------------------------


class HistoricalEvent(Shape):
    type: Literal["historical"]
    log: Log


class HistoricalCompleteEvent(Shape):
    type: Literal["historical_complete"]
    seq: int
    """The seq of the last history line (also the SSE id)."""
    process: str | None = None
    """Whose history is complete: in WebSocket `json` frames, which may carry several
    processes (one such event each)."""


class RealtimeEvent(Shape):
    type: Literal["realtime"]
    log: Log


class StatusEvent(Shape):
    """A state change as it happens (`log.stream` "system", `log.state` set)."""

    type: Literal["status"]
    log: Log


class GapEvent(Shape):
    """Lines `from`..`to` will not arrive."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["gap"]
    from_: int = Field(alias="from")
    to: int
    count: int
    reason: GapReason
    """`retention` (gone from memory and store), `cleared`, or `lost` (never stored)."""
    process: str


class StreamEndEvent(Shape):
    """The stream ends: the process stopped (the LLM manager's route)."""

    type: Literal["stream_end"]
    message: str


class ErrorEvent(Shape):
    """A problem, told in a stream (or as the 503 of the LLM manager's stream route)."""

    type: Literal["error"]
    message: str


Event = Annotated[
    HistoricalEvent
    | HistoricalCompleteEvent
    | RealtimeEvent
    | StatusEvent
    | GapEvent
    | StreamEndEvent
    | ErrorEvent,
    Field(discriminator="type"),
]


class StreamEvent(RootModel[Event]):
    """One stream event: an SSE message's `data`, or a WebSocket frame with `format=json`."""

    model_config = ConfigDict(frozen=True)


EVENT_MODELS: tuple[type[Shape], ...] = (
    HistoricalEvent,
    HistoricalCompleteEvent,
    RealtimeEvent,
    StatusEvent,
    GapEvent,
    StreamEndEvent,
    ErrorEvent,
)
