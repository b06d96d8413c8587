"""Shared pieces of the streaming benchmarks (`latency.py`, `burst.py`).

- `Server`: a real `logcast serve` (or the naive seed app under uvicorn) on a free
  loopback port, in its own process group, stopped by that group (never by name).
- `ClientProc`: a separate client process (this file run as a script) holding many SSE
  or WebSocket streams. It connects every stream, says `READY`, follows until every
  stream has the expected last line (or it is told to stop, or its own deadline),
  then prints one `RESULT {json}` line. Running the clients in their own processes
  keeps their CPU off the server's process (the machine has 2 cores).
- The children (`CHILD_PACED`, `CHILD_BURST`) write ~100-byte lines
  `<line number, 9 digits> <time.time() when written, 17 chars> xxx…`.
- `Hist`: a latency histogram (0.1 ms buckets up to 1 s, 10 ms up to ~5 min).

How the clients measure:
- SSE: raw asyncio sockets (HTTP/1.1, chunked decoding). Per socket read they count the
  `realtime` events (bytes.count), parse the line number of the first and last event,
  and check first == previous last + 1 and last - first + 1 == count: every line, in
  order, without parsing every event (where that check fails, every event of the read is
  walked to count exactly what was skipped). Latency is taken per read from the first
  (oldest) line of that read and charged to every line of the read: an upper bound.
- WebSocket (`format=text`: the frame is the bare line), with the `websockets` asyncio
  client (default) or `RawWSProtocol` (`ws_client: raw`, a minimal frame parser): every
  frame is checked (line number +1). Latency: per frame with the `websockets` client; per
  socket read with the raw one, from the oldest line of the read, as for SSE (an upper
  bound; a clock read and a float parse per frame were a third of that client's CPU).
- Both count `gap` notices and the lines they announce, so that lines skipped without
  notice (a broken invariant 2) are told apart from lines announced as lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # the helpers tests and benchmarks share (tests/util.py)
    sys.path.insert(0, str(ROOT))

from tests.util import free_port, stop_group, wait_for, wait_healthy  # noqa: E402

__all__ = ["HealthzProbe", "Server", "free_port", "serve", "stop_group", "wait_for"]

# -- children --------------------------------------------------------------------------

CHILD_PACED = textwrap.dedent(
    """
    # argv: rate (lines/s), seconds, batch_ms, report path
    import json, os, sys, time
    rate, seconds, batch_ms, report = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    total = int(rate * seconds)
    per = max(1, round(rate * batch_ms / 1000.0))
    interval = per / rate
    pad = b"x" * 71

    def write(data):
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]

    n = k = 0
    late = 0.0
    t0 = time.time()
    while n < total:
        due = t0 + k * interval
        now = time.time()
        if due > now:
            time.sleep(due - now)
        else:
            late = max(late, now - due)
        m = min(per, total - n)
        now = time.time()
        write(b"".join(b"%09d %17.6f %s\\n" % (i, now, pad) for i in range(n, n + m)))
        n += m
        k += 1
    t1 = time.time()
    with open(report, "w") as f:
        json.dump({"lines": n, "start": t0, "end": t1, "late_max": late}, f)
    """
)

CHILD_BURST = textwrap.dedent(
    """
    # argv: lines, report path; writes as fast as it can, 1000 lines per write
    import json, os, sys, time
    total, report = int(sys.argv[1]), sys.argv[2]
    pad = b"x" * 71

    def write(data):
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]

    t0 = time.time()
    for start in range(0, total, 1000):
        now = time.time()
        write(b"".join(b"%09d %17.6f %s\\n" % (i, now, pad) for i in range(start, min(total, start + 1000))))
    t1 = time.time()
    with open(report, "w") as f:
        json.dump({"lines": total, "start": t0, "end": t1}, f)
    """
)

# -- the naive pattern of seed 000 -------------------------------------------------------

NAIVE_APP = textwrap.dedent(
    '''
    """Seed 000's pattern, as written there: a thread reads the child's stdout with a
    blocking readline (and prints it, to keep the terminal output), puts each line in a
    queue.Queue; one broadcaster task does `await loop.run_in_executor(None, q.get)`
    and `await ws.send_text(line)` to every connected WebSocket."""
    import asyncio, json, os, queue, subprocess, threading
    from contextlib import asynccontextmanager
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    CHILD = json.loads(os.environ["NAIVE_CHILD"])
    log_queue: queue.Queue = queue.Queue()
    active_log_sockets: list = []
    state: dict = {"process": None}


    def log_reader_thread(process, q):
        try:
            for line in iter(process.stdout.readline, ""):
                print(line, end="")
                q.put(line)
        finally:
            q.put(None)


    async def websocket_broadcaster(q):
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, q.get)
            if line is None:
                continue
            text = line.rstrip("\\n")
            dead = []
            for ws in list(active_log_sockets):
                try:
                    await ws.send_text(text)
                except Exception:
                    dead.append(ws)
            for ws in dead:
                if ws in active_log_sockets:
                    active_log_sockets.remove(ws)


    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(websocket_broadcaster(log_queue))
        yield
        task.cancel()
        log_queue.put(None)  # release the executor thread blocked in q.get
        p = state["process"]
        if p is not None and p.poll() is None:
            p.kill()


    app = FastAPI(lifespan=lifespan)


    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}


    @app.get("/stats")
    async def stats():
        return {"subscribers": len(active_log_sockets)}


    @app.post("/start")
    async def start_service():
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            CHILD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            encoding="utf-8", errors="replace", env=env,
        )
        state["process"] = process
        threading.Thread(target=log_reader_thread, args=(process, log_queue), daemon=True).start()
        return {"pid": process.pid}


    @app.websocket("/ws/logs")
    async def websocket_log_endpoint(websocket: WebSocket):
        await websocket.accept()
        active_log_sockets.append(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            if websocket in active_log_sockets:
                active_log_sockets.remove(websocket)
    '''
)

# -- processes ---------------------------------------------------------------------------


def add_ws_client_options(parser: argparse.ArgumentParser) -> None:
    """The benchmarks' choice of WebSocket client (`--ws-client`, `--ws-compression`)."""
    parser.add_argument(
        "--ws-client",
        choices=["websockets", "raw"],
        default="websockets",
        help="WebSocket client: the websockets library (default) or a minimal frame parser (raw)",
    )
    parser.add_argument(
        "--ws-compression",
        action="store_true",
        help="the websockets client offers permessage-deflate, as browsers do (with --ws-client websockets)",
    )


def check_ws_client_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.ws_compression and args.ws_client != "websockets":
        parser.error("--ws-compression needs --ws-client websockets")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LOGCAST_TOKEN", None)
    env.pop("LOGCAST_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


@dataclass
class Server:
    """A server under test: `logcast` or the `naive` seed app."""

    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ws_url(self, process: str) -> str:
        if self.kind == "naive":
            return f"ws://127.0.0.1:{self.port}/ws/logs"
        return f"ws://127.0.0.1:{self.port}/ws/logs?process={process}&format=text&lines=0"

    def sse_path(self, process: str) -> str:
        return f"/api/processes/{process}/logs/stream?lines=0"

    def http(self, method: str, path: str, timeout: float = 10.0) -> Any:
        import httpx

        r = httpx.request(method, self.url + path, timeout=timeout, trust_env=False)
        r.raise_for_status()
        return r.json()

    def subscribers(self, process: str) -> int:
        if self.kind == "naive":
            return int(self.http("GET", "/stats")["subscribers"])
        stats = self.http("GET", "/api/logs/stats")
        return int(stats["processes"][process]["subscribers"])

    def start(self, process: str) -> None:
        if self.kind == "naive":
            self.http("POST", "/start")
        else:
            self.http("POST", f"/api/processes/{process}/start")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_group(self.proc, timeout=10.0 if self.kind == "logcast" else 3.0)


def start_logcast(tmp: Path, processes: dict[str, list[str]], timeout: float = 30.0) -> Server:
    data = tmp / "data"
    parts = [f"[storage]\ndir = {json.dumps(str(data))}\n"]
    for name, command in processes.items():
        parts.append(
            f'[process.{name}]\ncommand = {json.dumps(command)}\nautostart = false\nrestart = "never"\n'
        )
    config = tmp / "logcast.toml"
    config.write_text("\n".join(parts))
    return serve(tmp, config, timeout)


def serve(
    tmp: Path,
    config: Path,
    timeout: float = 30.0,
    *,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> Server:
    """`logcast serve -c config` (run by `python`, with `env` added to the environment)
    on a free port, in its own session, logging to `tmp/server.log`; returned once
    `/healthz` answers."""
    port = free_port()
    log_path = tmp / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [python, "-m", "logcast", "serve", "-c", str(config), "--port", str(port)],
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**_env(), **(env or {})},
        )
    server = Server("logcast", proc, port, log_path)
    try:
        _wait_healthy(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


class HealthzProbe(threading.Thread):
    """`GET /healthz` every `every` seconds until `stop` is set: each answer's time
    (`times`), the failures, and `sample()` called after each answer (for figures to
    take alongside, such as the server's RSS)."""

    def __init__(self, url: str, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.every = every
        self.times: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    @property
    def worst(self) -> float:
        return max(self.times, default=0.0)

    @property
    def answers(self) -> int:
        return len(self.times) - self.failures

    def sample(self) -> None:
        pass

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=10.0, trust_env=False) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(self.url + "/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.times.append(time.perf_counter() - started)
                self.failures += not ok
                self.sample()
                self.stop.wait(self.every)


def start_naive(tmp: Path, child: list[str], timeout: float = 30.0) -> Server:
    (tmp / "naive_app.py").write_text(NAIVE_APP)
    port = free_port()
    log_path = tmp / "naive.log"
    env = _env()
    env["NAIVE_CHILD"] = json.dumps(child)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "naive_app:app",
                "--app-dir",
                str(tmp),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=tmp,
            stdout=subprocess.DEVNULL,  # the seed prints every line to its terminal
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    server = Server("naive", proc, port, log_path)
    _wait_healthy(server, timeout)
    return server


def _wait_healthy(server: Server, timeout: float) -> None:
    try:
        wait_healthy(server.url, server.proc, timeout, server.output, f"{server.kind} server")
    except TimeoutError:
        server.stop()
        raise


def wait_subscribers(server: Server, process: str, n: int, timeout: float) -> int:
    """Poll until the server counts `n` subscribers of `process`; the last count seen."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            seen = server.subscribers(process)
            if seen >= n:
                return seen
        time.sleep(0.1)
    return seen


class Meter:
    """Server CPU (its own process, children excluded) and RSS, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.cpu0 = self.cpu1 = 0.0
        self.t0 = self.t1 = 0.0
        self.sched0 = (math.nan, math.nan)

    def rss(self) -> int:
        try:
            return int(self.proc.memory_info().rss)
        except Exception:
            return 0

    def cpu(self) -> float:
        try:
            t = self.proc.cpu_times()
            return float(t.user + t.system)
        except Exception:
            return math.nan

    def schedstat(self) -> tuple[float, float]:
        """(seconds on a CPU, seconds runnable but waiting for a CPU) of the main thread,
        which runs the event loop; (nan, nan) where /proc has no schedstat."""
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
                run, wait, _ = f.read().split()
            return int(run) / 1e9, int(wait) / 1e9
        except (OSError, ValueError):
            return math.nan, math.nan

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, self.rss())

    def start(self) -> None:
        self.sched0 = self.schedstat()
        self.cpu0, self.t0 = self.cpu(), time.monotonic()
        self.peak_rss = self.rss()
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self.cpu1, self.t1 = self.cpu(), time.monotonic()
        sched1 = self.schedstat()
        rss = self.rss()
        self.peak_rss = max(self.peak_rss, rss)
        self._stop.set()
        self._thread.join(2)
        wall = max(self.t1 - self.t0, 1e-9)
        return {
            "cpu_s": self.cpu1 - self.cpu0,
            "wall_s": wall,
            "cpu_pct": 100.0 * (self.cpu1 - self.cpu0) / wall,
            "rss_mb": rss / 2**20,
            "peak_rss_mb": self.peak_rss / 2**20,
            "loop_cpu_s": sched1[0] - self.sched0[0],
            "loop_wait_s": sched1[1] - self.sched0[1],
        }


def loop_line(s: dict[str, float]) -> str:
    """How busy the server's event-loop thread was: on a CPU, and runnable but waiting for one
    (the machine is shared: that is time other processes took)."""
    if math.isnan(s.get("loop_cpu_s", math.nan)):
        return ""
    busy = 100.0 * (s["loop_cpu_s"] + s["loop_wait_s"]) / s["wall_s"]
    return (
        f"  event-loop thread: on a CPU {s['loop_cpu_s']:.1f} s, runnable but waiting for a CPU "
        f"{s['loop_wait_s']:.1f} s, of {s['wall_s']:.1f} s ({busy:.0f}% busy or queued)"
    )


# -- latency histogram -------------------------------------------------------------------

FINE = 10_000  # 0.1 ms buckets up to 1 s
COARSE = 30_000  # then 10 ms buckets up to 301 s
NBUCKETS = FINE + COARSE


def bucket(ms: float) -> int:
    if ms < 1000.0:
        return int(ms * 10.0) if ms > 0 else 0
    return min(NBUCKETS - 1, FINE + int((ms - 1000.0) / 10.0))


def bucket_ms(i: int) -> float:
    """Upper edge of bucket `i`, in ms (conservative)."""
    if i < FINE:
        return (i + 1) / 10.0
    return 1000.0 + (i - FINE + 1) * 10.0


class Hist:
    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.max_ms = 0.0

    @classmethod
    def from_list(cls, counts: list[int], max_ms: float) -> Hist:
        h = cls()
        h.counts = {i: c for i, c in enumerate(counts) if c}
        h.max_ms = max_ms
        return h

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Hist:
        h = cls()
        h.counts = {int(k): int(v) for k, v in d["counts"].items()}
        h.max_ms = float(d["max_ms"])
        return h

    def to_json(self) -> dict[str, Any]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "max_ms": self.max_ms}

    def merge(self, other: Hist) -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.max_ms = max(self.max_ms, other.max_ms)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float, expected: int | None = None) -> float:
        """ms at percentile `p` (0..100) of `expected` lines; lines never received count as
        infinitely late, so a percentile that falls among them is `inf`."""
        n = expected if expected is not None else self.total
        if n <= 0:
            return math.nan
        rank = max(1, math.ceil(p / 100.0 * n))
        seen = 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen >= rank:
                return bucket_ms(k)
        return math.inf

    def max_value(self) -> float:
        """The largest latency seen, ms (exact above 1 s, to 0.1 ms below)."""
        if not self.counts:
            return math.nan
        top = max(self.counts)
        return self.max_ms if top >= FINE else bucket_ms(top)


def fmt_ms(ms: float, missing_note: str = "missing") -> str:
    if math.isnan(ms):
        return "n/a"
    if math.isinf(ms):
        return missing_note
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


# -- client processes --------------------------------------------------------------------


class ClientProc:
    """One client process holding `sse` SSE and `ws` WebSocket streams."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_common.py"), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,
            env=_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.result: dict[str, Any] | None = None
        self.ready: tuple[int, int] | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def _next(self, deadline: float) -> str | None:
        try:
            return self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def wait_ready(self, timeout: float) -> tuple[int, int]:
        """(connected, failed); (0, -1) if it never said READY in time."""
        deadline = time.monotonic() + timeout
        while self.ready is None and time.monotonic() < deadline:
            line = self._next(deadline)
            if line is None:
                break
            self._line(line)
        return self.ready or (0, -1)

    def _line(self, line: str) -> None:
        if line.startswith("READY "):
            a, b = line.split()[1:3]
            self.ready = (int(a), int(b))
        elif line.startswith("RESULT "):
            self.result = json.loads(line[7:])

    def done(self) -> bool:
        """Non-blocking: has it printed its result?"""
        while self.result is None:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return False
            if line is None:
                return True  # exited without a result
            self._line(line)
        return True

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"stop\n")
                self.proc.stdin.flush()

    def finish(self, timeout: float = 20.0) -> dict[str, Any] | None:
        """Ask it to stop (if it has not finished), collect its result, end its group."""
        if not self.done():
            self.stop()
            deadline = time.monotonic() + timeout
            while self.result is None and time.monotonic() < deadline:
                line = self._next(deadline)
                if line is None:
                    break
                self._line(line)
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        stop_group(self.proc, timeout=3.0)
        return self.result

    def kill(self) -> None:
        stop_group(self.proc, timeout=2.0)


def wait_clients(clients: list[ClientProc], deadline: float, poll: Callable[[], None] | None = None) -> bool:
    """Until every client printed its result or `deadline` (monotonic); True if all did."""
    while time.monotonic() < deadline:
        if all(c.done() for c in clients):
            return True
        if poll is not None:
            poll()
        time.sleep(0.05)
    return all(c.done() for c in clients)


# ---------------------------------------------------------------------------------------
# The client process itself (this file run as a script). Imports nothing from above that
# spawns anything; only the histogram helpers.
# ---------------------------------------------------------------------------------------


@dataclass
class StreamState:
    kind: str
    connected: bool = False
    error: str | None = None
    lines: int = 0
    last: int = -1
    order_errors: int = 0  # places where the next line was not the previous one + 1
    skipped: int = 0  # lines jumped over at those places
    backwards: int = 0  # places where a line number went back (repeat or disorder)
    first_skip: tuple[int, int] | None = None  # (line before, line after) of the first such place
    announced: int = 0  # lines that gap notices said would not come
    gaps: int = 0
    status: int = 0
    t_first: float | None = None
    t_last: float | None = None  # time the expected last line arrived
    closed_early: bool = False
    done: asyncio.Future[None] | None = None
    cap_ms: list[float] = field(default_factory=list)  # child -> capture, per read (SSE)

    def note_jump(self, before: int, after: int) -> None:
        if after > before + 1:
            self.skipped += after - before - 1
        else:
            self.backwards += 1
        if self.first_skip is None:
            self.first_skip = (before, after)

    def report(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "error": self.error,
            "lines": self.lines,
            "last": self.last,
            "order_errors": self.order_errors,
            "skipped": self.skipped,
            "backwards": self.backwards,
            "first_skip": self.first_skip,
            "announced": self.announced,
            "gaps": self.gaps,
            "t_first": self.t_first,
            "t_last": self.t_last,
            "closed_early": self.closed_early,
        }


_RT = b'"type":"realtime"'
_MSG = b'"message":"'
_TS = b'"timestamp":'


class _RawStream(asyncio.Protocol):
    """What the raw SSE and WebSocket clients share: send the request on connect; on a
    close, fail the opening if it had not happened (`awaiting` names what was awaited)
    and mark the stream as closed early if it had not got its last line."""

    awaiting = "the response"
    st: StreamState
    request: bytes
    opened: asyncio.Future[None]
    transport: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transport is not an asyncio.Transport subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before {self.awaiting}: {exc!r}"))
        assert self.st.done is not None
        if not self.st.done.done():
            self.st.closed_early = True
            self.st.done.set_result(None)


class SSEProtocol(_RawStream):
    """A raw HTTP/1.1 SSE reader that checks and times whole reads, not single events."""

    def __init__(self, st: StreamState, request: bytes, expect: int, hist: list[int], hmax: list[float]):
        self.st = st
        self.request = request
        self.expect = expect
        self.hist = hist
        self.hmax = hmax
        self.head = b""
        self.headers_done = False
        self.chunked = False
        self.raw = b""
        self.need = 0
        self.skip = 0
        self.body = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.headers_done:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            head, data = self.head[:i], self.head[i + 4 :]
            self.head = b""
            self.headers_done = True
            status = head.split(b"\r\n", 1)[0]
            if b" 200" not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            self.opened.set_result(None)
        if self.chunked:
            data = self._dechunk(data)
        if not data:
            return
        body = self.body + data if self.body else data
        end = body.rfind(b"\n\n")
        if end < 0:
            self.body = body
            return
        end += 2
        self.body = body[end:]
        self._events(body, end, now)

    def _check_each(self, w: bytes, end: int) -> None:
        """Walk every realtime event of `w` and note each place the line numbers do not go +1."""
        st = self.st
        prev = st.last
        i = w.find(_RT, 0, end)
        while i >= 0:
            m = w.find(_MSG, i) + 11
            n = int(w[m : m + 9])
            if n != prev + 1:
                st.order_errors += 1
                st.note_jump(prev, n)
            prev = n
            i = w.find(_RT, m, end)

    def _dechunk(self, data: bytes) -> bytes:
        raw = self.raw + data if self.raw else data
        out: list[bytes] = []
        pos, n = 0, len(raw)
        while pos < n:
            if self.skip:
                k = min(self.skip, n - pos)
                pos += k
                self.skip -= k
                continue
            if self.need:
                k = min(self.need, n - pos)
                out.append(raw[pos : pos + k])
                pos += k
                self.need -= k
                if not self.need:
                    self.skip = 2
                continue
            j = raw.find(b"\r\n", pos)
            if j < 0:
                break
            size = int(raw[pos:j].split(b";", 1)[0], 16)
            pos = j + 2
            if size == 0:
                pos = n
                break
            self.need = size
        self.raw = raw[pos:]
        return b"".join(out)

    def _events(self, w: bytes, end: int, now: float) -> None:
        st = self.st
        n = w.count(_RT, 0, end)
        if n:
            i = w.find(_RT, 0, end)
            m = w.find(_MSG, i) + 11
            first = int(w[m : m + 9])
            t_child = float(w[m + 10 : m + 27])
            j = w.rfind(_RT, 0, end)
            m2 = w.find(_MSG, j) + 11
            last = int(w[m2 : m2 + 9])
            if first != st.last + 1 or last - first + 1 != n:
                self._check_each(w, end)  # slow path, only where something is wrong
            st.last = last
            st.lines += n
            if st.t_first is None:
                st.t_first = now
            ms = (now - t_child) * 1000.0
            self.hist[bucket(ms)] += n
            if ms > self.hmax[0]:
                self.hmax[0] = ms
            if len(st.cap_ms) < 20000:
                t = w.find(_TS, i, m)
                if t > 0:
                    comma = w.find(b",", t)
                    st.cap_ms.append((float(w[t + 12 : comma]) - t_child) * 1000.0)
            if last >= self.expect - 1 and st.done is not None and not st.done.done():
                st.t_last = now
                st.done.set_result(None)
        if b'"type":"gap"' in w:
            i = w.find(b'"type":"gap"', 0, end)
            while i >= 0:
                st.gaps += 1
                c = w.find(b'"count":', i) + 8
                st.announced += int(w[c : w.find(b",", c)])
                i = w.find(b'"type":"gap"', c, end)
        if b'"type":"status"' in w:
            st.status += w.count(b'"type":"status"', 0, end)


async def _sse_stream(spec: dict[str, Any], st: StreamState, hist: list[int], hmax: list[float]) -> None:
    port = spec["port"]
    request = (
        f"GET {spec['sse_path']} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    await _follow_raw(st, lambda: SSEProtocol(st, request, spec["expect"], hist, hmax), port)


async def _follow_raw(st: StreamState, protocol: Callable[[], _RawStream], port: int) -> None:
    """Connect a raw client's protocol to the server on `port`; return once its stream is over."""
    loop = asyncio.get_running_loop()
    transport, proto = await asyncio.wait_for(loop.create_connection(protocol, "127.0.0.1", port), 30)
    try:
        await asyncio.wait_for(proto.opened, 30)
        st.connected = True
        assert st.done is not None
        await st.done
    finally:
        transport.close()


async def _ws_stream(
    spec: dict[str, Any], st: StreamState, hist: list[int], hmax: list[float], opened: asyncio.Event
) -> None:
    from websockets.asyncio.client import connect

    expect = spec["expect"]
    timed = spec["mode"] == "latency"  # burst: count and order only
    tt = time.time
    count = order = gaps = 0
    last = -1
    worst = 0.0
    try:
        async with connect(
            spec["ws_url"],
            compression="deflate" if spec.get("ws_compression") else None,
            max_queue=1024,
            max_size=None,
            open_timeout=30,
            ping_interval=None,
            close_timeout=1,
            proxy=None,
        ) as ws:
            st.connected = True
            opened.set()
            async for msg in ws:
                if msg[:1] == "[":  # a logcast note: status change or gap
                    if " lines missed " in msg:
                        gaps += 1
                        st.announced += int(msg.split(": ", 1)[1].split(" ", 1)[0])
                    continue
                n = int(msg[:9])
                if n != last + 1:
                    order += 1
                    st.note_jump(last, n)
                last = n
                count += 1
                if timed:
                    ms = (tt() - float(msg[10:27])) * 1000.0
                    if ms < 1000.0:
                        hist[int(ms * 10.0) if ms > 0 else 0] += 1
                    else:
                        hist[min(NBUCKETS - 1, FINE + int((ms - 1000.0) / 10.0))] += 1
                        if ms > worst:
                            worst = ms
                if n >= expect - 1:
                    st.t_last = tt()
                    break
            else:
                st.closed_early = True
    finally:
        st.lines, st.last, st.order_errors, st.gaps = count, last, order, gaps
        hmax[0] = max(hmax[0], worst)
        opened.set()


class RawWSProtocol(_RawStream):
    """A minimal WebSocket client (RFC 6455, no extensions) that parses frames in place:
    about a microsecond of Python per frame, several times less than a full client
    library, so that at a million frames a second the clients are not what is measured.
    Answers pings, handles fragmented and masked frames, echoes a close."""

    awaiting = "the handshake"

    def __init__(
        self, st: StreamState, request: bytes, spec: dict[str, Any], hist: list[int], hmax: list[float]
    ) -> None:
        self.st = st
        self.request = request
        self.expect = int(spec["expect"])
        self.timed = spec["mode"] == "latency"
        self.hist = hist
        self.hmax = hmax
        self.head = b""
        self.upgraded = False
        self.buf = b""
        self.fragments: list[bytes] = []
        self.oldest: float | None = None  # write time of the oldest line of the current read
        self.counted = 0  # lines of the current read
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            status = self.head.split(b"\r\n", 1)[0]
            data, self.head = self.head[i + 4 :], b""
            if b" 101" not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self.upgraded = True
            self.opened.set_result(None)
        buf = self.buf + data if self.buf else data
        self.oldest, self.counted = None, 0
        try:
            self._frames(buf, len(buf))
        finally:
            if self.counted:
                self._charge(self.oldest, self.counted)

    def _charge(self, oldest: float | None, count: int) -> None:
        """Latency of one read, from its oldest line, charged to each of its `count` lines."""
        if oldest is None:
            return
        ms = (time.time() - oldest) * 1000.0
        self.hist[bucket(ms)] += count
        if ms >= 1000.0 and ms > self.hmax[0]:
            self.hmax[0] = ms

    def _frames(self, buf: bytes, n: int) -> None:
        pos = 0
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            size, hdr = b1 & 0x7F, 2
            if size == 126:
                if n - pos < 4:
                    break
                size, hdr = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif size == 127:
                if n - pos < 10:
                    break
                size, hdr = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            masked = b1 & 0x80
            if masked:
                hdr += 4
            if n - pos < hdr + size:
                break
            payload = buf[pos + hdr : pos + hdr + size]
            if masked:
                key = buf[pos + hdr - 4 : pos + hdr]
                payload = bytes(c ^ key[j % 4] for j, c in enumerate(payload))
            pos += hdr + size
            opcode = b0 & 0x0F
            if opcode == 1 and b0 & 0x80:
                self._line(payload)
            elif opcode in (0, 1):  # fragments of a text message
                self.fragments.append(payload)
                if b0 & 0x80:
                    self._line(b"".join(self.fragments))
                    self.fragments = []
            elif opcode == 9:  # ping: pong with the same payload, masked with a zero key
                self._send(0xA, payload)
            elif opcode == 8:  # close: echo it
                self._send(0x8, payload[:2])
                self.transport.close()
                return
        self.buf = buf[pos:]

    def _send(self, opcode: int, payload: bytes) -> None:
        if len(payload) < 126:
            self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def _line(self, msg: bytes) -> None:
        st = self.st
        if msg[:1] == b"[":  # a logcast note: status change or gap
            if b" lines missed " in msg:
                st.gaps += 1
                st.announced += int(msg.split(b": ", 1)[1].split(b" ", 1)[0])
            return
        n = int(msg[:9])
        if n != st.last + 1:
            st.order_errors += 1
            st.note_jump(st.last, n)
        st.last = n
        st.lines += 1
        if self.timed:
            if self.oldest is None:
                self.oldest = float(msg[10:27])
            self.counted += 1
        if n >= self.expect - 1 and st.done is not None and not st.done.done():
            st.t_last = time.time()
            st.done.set_result(None)


async def _ws_raw_stream(spec: dict[str, Any], st: StreamState, hist: list[int], hmax: list[float]) -> None:
    import base64
    from urllib.parse import urlsplit

    url = urlsplit(spec["ws_url"])
    port = url.port or 80
    path = url.path + (f"?{url.query}" if url.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    await _follow_raw(st, lambda: RawWSProtocol(st, request, spec, hist, hmax), port)


async def _client_main(spec: dict[str, Any]) -> dict[str, Any]:
    import resource

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
    hists = {"sse": [0] * NBUCKETS, "ws": [0] * NBUCKETS}
    hmaxes = {"sse": [0.0], "ws": [0.0]}
    states: list[StreamState] = []
    tasks: list[asyncio.Task[None]] = []

    async def run_sse(st: StreamState) -> None:
        async with gate:  # the gate covers the connect only
            task = asyncio.ensure_future(_sse_stream(spec, st, hists["sse"], hmaxes["sse"]))
            while not st.connected and not task.done():
                await asyncio.sleep(0.005)
        try:
            await task
        except Exception as exc:
            st.error = repr(exc)[:300]

    async def run_ws(st: StreamState) -> None:
        opened = asyncio.Event()
        async with gate:  # the gate covers the connect only
            if spec.get("ws_client") == "websockets":
                task = asyncio.ensure_future(_ws_stream(spec, st, hists["ws"], hmaxes["ws"], opened))
                await asyncio.wait(
                    [task, asyncio.ensure_future(opened.wait())], return_when=asyncio.FIRST_COMPLETED
                )
            else:
                task = asyncio.ensure_future(_ws_raw_stream(spec, st, hists["ws"], hmaxes["ws"]))
                while not st.connected and not task.done():
                    await asyncio.sleep(0.005)
        try:
            await task
        except Exception as exc:
            st.error = repr(exc)[:300]

    for kind, n in (("sse", spec.get("sse", 0)), ("ws", spec.get("ws", 0))):
        for _ in range(n):
            st = StreamState(kind, done=loop.create_future())
            states.append(st)
            tasks.append(asyncio.create_task(run_sse(st) if kind == "sse" else run_ws(st)))

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
        everything = asyncio.ensure_future(asyncio.gather(*tasks, return_exceptions=True))
        stopper = asyncio.ensure_future(stop.wait())
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
            "hist": Hist.from_list(hists[kind], hmaxes[kind][0]).to_json(),
            "errors": sorted({s.error for s in mine if s.error}),
            "capture_ms_p50": cap[len(cap) // 2] if cap else None,
            "capture_ms_p99": cap[int(len(cap) * 0.99)] if cap else None,
        }
    return out


def _client_entry(spec: dict[str, Any]) -> None:
    try:
        import uvloop

        result = uvloop.run(_client_main(spec))
    except ImportError:
        result = asyncio.run(_client_main(spec))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    _client_entry(json.loads(sys.argv[1]))
