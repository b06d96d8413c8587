"""Browser benchmark: the log viewer in a real headless Chromium, against the naive page.

What it measures (the issue's words): "time from opening a viewer on 1,000,000 lines of
history to the last line shown, and the frame budget while 10,000 lines/s arrive".

1. History. `logcast serve` (a subprocess in its own process group, SQLite) supervises `hist`,
   a child that prints `--lines` numbered lines of 100 bytes (`<n, 9 digits> <time> xxx…`) at
   `--hist-rate` lines/s and then sleeps. Once `/api/processes/hist` counts them all and
   `/api/logs/stats` shows `store.pending == 0` (and `store_lost`, if any, is reported), a bare
   socket reads the SSE history twice per point (the server alone, cold and warm; the first read
   also warms the server's caches, so every page gets the same server). Then a fresh browser
   context opens `/logs.html?process=hist&lines=K` (the viewer asks for the last K lines:
   100,000 when `lines` is absent, 1,000,000 at most) for K = `--lines` and K = 100,000.
   Measured on the page's own clock (`performance.now()`, 0 = navigation start): the first row
   drawn, the `historical_complete` event taken in (`window.__logcast.stats().historyDone`), and
   the last line (number `--lines` - 1) shown as a visible row inside the scroller (checked once
   per animation frame by the bench's init script); the longest long task and the longest time
   between two frames while loading; the CPU time of each Chromium process kind and of the
   server meanwhile. Then, after a forced GC (`HeapProfiler.collectGarbage`), the JS heap and DOM
   node count (`Performance.getMetrics`), the `.row` elements in the list, and the renderer
   main thread's cumulative script / layout / style / task time from the same metrics.
2. Live. `live`, a child that writes `--rate` lines/s for `--seconds` s (paced, one write per
   10 ms), is started (`POST /api/processes/live/start`) while the viewer is open on it with no
   history (`lines=0`) and following. The init script times every animation frame and observes
   `longtask` entries, and sends both out as console messages twice a second, so they can be
   read even from a page whose main thread is stuck. Over the child's writing window: frames
   per second, p50 / p95 / max frame time, frames over 50 ms, long tasks (count, total,
   longest), the renderer's CPU. Then: did every line arrive (`window.__logcast.stats()`: lines
   held, holes, duplicates; `debug=1` seqs contiguous; no gap rows), and how long after the
   child's last write the last line was shown (`--drain` s at most).
3. Baseline, same run, same server, same SSE stream: the naive page a seed would write (its
   HTML, CSS and JS files served from a temp dir by a small `http.server` in this process): one
   `EventSource`, and per message `pre.textContent += line + "\\n"` followed by
   `pre.scrollTop = pre.scrollHeight` (the seed's auto-scroll, on by default; `--naive div`
   appends one <div> per line instead). logcast sends no CORS headers, so that server also
   relays `/api/…` to logcast as a raw byte copy of the response (same events, one extra
   loopback hop); when a measurement ends it cuts the relayed stream, so a page that fell
   behind can come to rest. The same figures: time to the last line (or `--timeout` s,
   reported with how many lines the page had by then) and the frame budget at `--rate`
   lines/s. The page reports its progress in console messages (every 250 ms at most). A third
   history row, `sse+json`, is the same page drawing nothing (EventSource + JSON.parse per
   line): the least any page pays for this stream, for reading the viewer's figure.

How Chromium is driven. `/usr/bin/chromium --headless` with the tests' flags, started by this
bench in its own process group and driven over `--remote-debugging-pipe` with a few DevTools
commands (Target, Page, Runtime, Performance, HeapProfiler, Profiler, SystemInfo), each with
a deadline; the init script goes in with `Page.addScriptToEvaluateOnNewDocument`, which the
page's CSP does not apply to (the bench checks that it ran). Not Playwright: Playwright enables
the DevTools `Network` domain on every page, and Chromium then sends every EventSource message
to the driver (`Network.eventSourceMessageReceived`); measured here, that alone made the viewer
take 3-4.5x longer to show 100,000 lines of history (about 1 s → 3-4.5 s) and 3.6x for
1,000,000 (8.6 s → 31 s), with the browser process as busy as the renderer. `--devtools-network`
turns the domain on, to see that overhead.

    python bench/browser.py [--lines 1000000] [--rate 10000] [--seconds 10] [--runs 1]
                            [--timeout 120] [--drain 30] [--hist-rate 100000]
                            [--naive pre|div] [--no-baseline] [--profile] [--devtools-network]

`--profile` also takes a V8 CPU profile of the logcast viewer in each phase and prints the
functions with the most self time. The machine (2 cores) is shared by Chromium, the server and
the children; the load average is printed with the results. Viewport 1280×800, software
compositing (`--disable-gpu`). Every wait has a deadline, and a watchdog stops the server's and
Chromium's process groups if the whole run overstays.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import http.server
import itertools
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.lib, tests.util

from bench.lib.children import HISTORY_CHILD, PACED_CHILD
from bench.lib.servers import serve
from tests.util import stop_group

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# as Playwright adds them: a headless page is never treated as a background one
CHROMIUM_EXTRA = [
    "--headless",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--mute-audio",
    "--window-size=1280,800",
]
VIEWPORT = {"width": 1280, "height": 800}
SECOND_POINT = 100_000

# -- children -------------------------------------------------------------------------------

# The live child is the latency benchmark's paced writer: one implementation for both.
CHILD_LIVE = PACED_CHILD

# -- what runs in the page ----------------------------------------------------------------------

# Added through DevTools before any page script (the page's CSP does not apply to it). Frame
# times and long tasks leave the page as console messages (about two a second), so the bench
# can read them even while the page's main thread is stuck in a long task. With a `watch`
# prefix it also checks, once per frame, whether a visible row of the logcast viewer starts
# with it and lies inside the scroller, and says when (with the first row and the end of
# history) in a console message.
BENCH_INIT = """
(() => {
  const watch = __WATCH__;
  const marks = {};
  let frames = [];
  let lastFlush = 0;
  let done = watch === null;
  const flush = () => {
    if (frames.length) console.debug("__bench frames " + JSON.stringify(frames));
    frames = [];
  };
  const check = (now) => {
    const msgs = document.querySelectorAll("#log .row:not([hidden]) .msg");
    if (msgs.length && marks.firstRow === undefined) marks.firstRow = now;
    const lc = window.__logcast;
    if (lc && marks.historyDone === undefined && lc.stats().historyDone) marks.historyDone = now;
    for (let i = msgs.length - 1; i >= 0; i--) {
      if (!msgs[i].textContent.startsWith(watch)) continue;
      const r = msgs[i].getBoundingClientRect();
      const s = document.getElementById("log").getBoundingClientRect();
      if (r.bottom <= s.bottom + 1 && r.top >= s.top - 1) {
        marks.lastShown = now;
        done = true;
        console.debug("__bench shown " + JSON.stringify(marks));
      }
      return;
    }
  };
  const tick = (t) => {
    frames.push(t);
    if (!done) check(performance.now());
    if (t - lastFlush >= 500) {
      lastFlush = t;
      flush();
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  let observing = false;
  try {
    new PerformanceObserver((list) => {
      const tasks = list.getEntries().map((e) => [e.startTime, e.duration]);
      console.debug("__bench longtasks " + JSON.stringify(tasks));
    }).observe({ type: "longtask", buffered: true });
    observing = true;
  } catch {
    // no Long Tasks API: reported as such
  }
  window.__bench = { observing, flush, marks };
  console.debug("__bench init " + JSON.stringify({ observing, origin: performance.timeOrigin, url: location.href }));
})();
"""

NAIVE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>naive log page</title>
<link rel="stylesheet" href="/naive.css">
<script src="/naive.js" defer></script>
</head>
<body>
<div class="bar"><span id="status">connecting…</span> <label><input id="autoscroll" type="checkbox" checked> auto-scroll</label></div>
<pre id="log-output"></pre>
</body>
</html>
"""

NAIVE_CSS = """
html, body { margin: 0; height: 100%; background: #0f172a; color: #e2e8f0; }
body { display: flex; flex-direction: column; font: 13px/1.4 ui-monospace, monospace; }
.bar { padding: 6px 10px; }
#log-output { flex: 1; margin: 0; padding: 6px 10px; overflow: auto; white-space: pre; }
"""

# The seed's pattern (a <pre>, `textContent +=` per line, auto-scroll to the bottom), reading
# logcast's SSE stream; `mode=div` appends one <div> per line instead (`--naive div`);
# `mode=floor` only parses each event and draws nothing (the cost of one EventSource message
# plus JSON.parse per line, a floor for any page on this stream). The bench's bookkeeping is a few integer operations per line and a console message every 250 ms
# at most (read by the bench even while the page is busy).
NAIVE_JS = """
const params = new URLSearchParams(location.search);
const output = document.getElementById("log-output");
const status = document.getElementById("status");
const autoScroll = document.getElementById("autoscroll");
const expectLast = Number.parseInt(params.get("last") || "-1", 10);
const mode = params.get("mode") || "pre";
const state = { open: false, errors: 0, lines: 0, first: -1, last: -1, order: 0, lastAt: null, shownAt: null };
let reported = 0;
const report = () => {
  reported = performance.now();
  console.debug("__naive " + JSON.stringify(state));
};
const url = `/api/processes/${encodeURIComponent(params.get("process"))}/logs/stream?lines=${params.get("lines") || "0"}`;
const source = new EventSource(url);
window.__naive = { state, report, stop: () => source.close() };

source.onopen = () => {
  state.open = true;
  status.textContent = "connected";
  report();
};
source.onerror = () => {
  state.errors += 1;
  status.textContent = "disconnected";
  report();
};
source.onmessage = (event) => {
  const data = JSON.parse(event.data);
  if (data.type !== "historical" && data.type !== "realtime") return;
  const line = data.log.message;
  if (mode === "div") {
    const row = document.createElement("div");
    row.textContent = line;
    output.append(row);
  } else if (mode === "pre") {
    output.textContent += line + "\\n";
  }
  if (mode !== "floor" && autoScroll.checked) output.scrollTop = output.scrollHeight;
  // bench bookkeeping
  const n = Number.parseInt(line.slice(0, 9), 10);
  if (state.last >= 0 && n !== state.last + 1) state.order += 1;
  if (state.first < 0) state.first = n;
  state.last = n;
  state.lines += 1;
  if (n === expectLast && state.lastAt === null) {
    state.lastAt = performance.now();
    requestAnimationFrame(() => {
      state.shownAt = performance.now();
      report();
    });
  }
  if (performance.now() - reported >= 250) report();
};
"""


# -- processes --------------------------------------------------------------------------------


@dataclass
class Logcast:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    live_report: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, timeout=10.0)
        r.raise_for_status()
        return r.json()

    def post(self, path: str) -> Any:
        r = httpx.post(self.url + path, timeout=10.0)
        r.raise_for_status()
        return r.json()


def start_logcast(tmp: Path, args: argparse.Namespace) -> Logcast:
    (tmp / "hist.py").write_text(HISTORY_CHILD)
    (tmp / "live.py").write_text(CHILD_LIVE)
    report = tmp / "live.json"
    hist = [sys.executable, "-u", str(tmp / "hist.py"), str(args.lines), str(args.hist_rate)]
    live = [sys.executable, "-u", str(tmp / "live.py"), str(args.rate), str(args.seconds), "10", str(report)]
    config = tmp / "logcast.toml"
    config.write_text(
        f"[storage]\ndir = {json.dumps(str(tmp / 'data'))}\n\n"
        f'[process.hist]\ncommand = {json.dumps(hist)}\nautostart = true\nrestart = "never"\n\n'
        f'[process.live]\ncommand = {json.dumps(live)}\nautostart = false\nrestart = "never"\n'
    )
    started = serve(tmp, config)
    WATCH.groups.append(started.proc)
    return Logcast(started.proc, started.port, started.log_path, report)


def wait_history(server: Logcast, lines: int, timeout: float) -> float:
    """Wait until `hist` has printed every line and SQLite has them all; seconds taken. Lines
    the server dropped before persisting them (`store_lost`) are reported."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = server.get("/api/processes/hist")
        stats = server.get("/api/logs/stats")
        if info["lines"] >= lines and stats["store"]["pending"] == 0:
            last = server.get("/api/processes/hist/logs", tail=1)["logs"]
            if last and last[0]["message"].startswith(f"{lines - 1:09d} "):
                lost = stats["processes"]["hist"]["store_lost"]
                if lost:
                    print(
                        f"WARNING: the server dropped {lost:,} lines of hist from memory before SQLite had "
                        "them (store_lost): the history has holes; try a lower --hist-rate",
                        flush=True,
                    )
                return time.monotonic() - t0
        if info.get("state") in ("exited", "crashed"):
            raise RuntimeError(f"hist ended early: {info}")
        time.sleep(0.2)
    raise TimeoutError(f"hist did not reach {lines} stored lines in {timeout:.0f} s (last: {info})")


def raw_history(server: Logcast, k: int, timeout: float) -> float:
    """Seconds for a bare socket reader to get the last K lines over SSE, up to the
    `historical_complete` event: what the server alone takes, without a browser."""
    request = (
        f"GET /api/processes/hist/logs/stream?lines={k} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + timeout
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        tail = b""
        while time.monotonic() < deadline:
            data = sock.recv(1 << 20)
            if not data:
                break
            tail = tail[-64:] + data
            if b"historical_complete" in tail:
                return time.perf_counter() - t0
    return math.inf


# -- the naive page's server --------------------------------------------------------------------


class NaiveHandler(http.server.SimpleHTTPRequestHandler):
    """Static files from the temp dir; `/api/…` relayed to logcast as raw bytes. `cut()` ends
    every relayed stream and answers 204 from then on (an EventSource does not retry a 204),
    so a page that fell behind stops getting more; `resume()` relays again."""

    upstream_port = 0
    refuse = False
    upstreams: ClassVar[set[socket.socket]] = set()
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @classmethod
    def cut(cls) -> None:
        with cls.lock:
            cls.refuse = True
            for up in cls.upstreams:
                with contextlib.suppress(OSError):
                    up.shutdown(socket.SHUT_RDWR)

    @classmethod
    def resume(cls) -> None:
        with cls.lock:
            cls.refuse = False

    def do_GET(self) -> None:
        if not self.path.startswith("/api/"):
            super().do_GET()
            return
        self.close_connection = True
        if self.refuse:
            self.send_response(204)
            self.end_headers()
            return
        head = (
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.upstream_port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n"
        )
        last_id = self.headers.get("Last-Event-ID")
        if last_id:
            head += f"Last-Event-ID: {last_id}\r\n"
        try:
            with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10) as up:
                with self.lock:
                    self.upstreams.add(up)
                try:
                    up.sendall((head + "\r\n").encode())
                    up.settimeout(60)  # logcast pings every 15 s
                    while True:
                        data = up.recv(1 << 16)
                        if not data:
                            break
                        self.wfile.write(data)
                finally:
                    with self.lock:
                        self.upstreams.discard(up)
        except OSError:
            pass  # the page went away, the stream was cut or the server stopped: drop both ends


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a page that went away mid-response: nothing to report


def start_naive_server(folder: Path, upstream_port: int) -> tuple[http.server.ThreadingHTTPServer, str]:
    (folder / "naive.html").write_text(NAIVE_HTML)
    (folder / "naive.css").write_text(NAIVE_CSS)
    (folder / "naive.js").write_text(NAIVE_JS)
    handler = functools.partial(NaiveHandler, directory=str(folder))
    NaiveHandler.upstream_port = upstream_port
    httpd = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, name="naive-http", daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


# -- an overall deadline --------------------------------------------------------------------------


class Watchdog:
    """Past the overall deadline: stop the process groups of Chromium and the server, then exit."""

    def __init__(self) -> None:
        self.groups: list[subprocess.Popen[bytes]] = []
        self._done = threading.Event()

    def start(self, seconds: float) -> None:
        threading.Thread(target=self._run, args=(seconds,), name="watchdog", daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    def _run(self, seconds: float) -> None:
        if self._done.wait(seconds):
            return
        print(f"\nwatchdog: the benchmark ran past {seconds:.0f} s; stopping everything", flush=True)
        for proc in self.groups:
            with contextlib.suppress(Exception):
                stop_group(proc, 5)
        os._exit(3)


WATCH = Watchdog()


# -- Chromium over DevTools -----------------------------------------------------------------------


class DevToolsError(RuntimeError):
    pass


class Chromium:
    """`/usr/bin/chromium`, started by this bench in its own process group and driven over
    `--remote-debugging-pipe` (fd 3: commands in; fd 4: answers and events out; each message
    is JSON ended by a NUL byte). A reader thread matches answers to commands and hands
    events to the tab whose session they belong to. Every command has a deadline."""

    def __init__(self, folder: Path, log_path: Path) -> None:
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        # Chromium wants the pipe on fds 3 and 4: bash moves them there and execs it
        # (first above 10, so that neither number is already 3 or 4)
        hi_r, hi_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(out_w)
        command = [
            CHROMIUM,
            *CHROMIUM_ARGS,
            *CHROMIUM_EXTRA,
            "--remote-debugging-pipe",
            f"--user-data-dir={folder}",
            "about:blank",
        ]
        shell = f'exec "$@" 3<&{hi_r} 4>&{hi_w} {hi_r}<&- {hi_w}>&-'
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/bash", "-c", shell, "bash", *command],
                pass_fds=(hi_r, hi_w),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        os.close(hi_r)
        os.close(hi_w)
        WATCH.groups.append(self.proc)
        self._w = cmd_w
        self._r = out_r
        self._ids = itertools.count(1)
        self._answers: dict[int, dict[str, Any]] = {}
        self._waiting: set[int] = set()
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self.listeners: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self.gone = False
        threading.Thread(target=self._read, name="devtools-reader", daemon=True).start()
        self.version = self.send("Browser.getVersion", timeout=60)["product"]

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                data = os.read(self._r, 1 << 20)
                if not data:
                    break
                buf += data
                pos = 0
                while (end := buf.find(b"\0", pos)) >= 0:
                    self._dispatch(json.loads(buf[pos:end]))
                    pos = end + 1
                buf = buf[pos:]
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self.gone = True
                self._cond.notify_all()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "id" in msg:
            with self._cond:
                if msg["id"] in self._waiting:
                    self._answers[msg["id"]] = msg
                    self._cond.notify_all()
            return
        listener = self.listeners.get(msg.get("sessionId", ""))
        if listener is not None:
            listener(msg.get("method", ""), msg.get("params", {}))

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        i = next(self._ids)
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        with self._cond:
            if self.gone:
                raise DevToolsError("Chromium is gone")
            self._waiting.add(i)
        with self._write_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._w, view) :]
        deadline = time.monotonic() + timeout
        with self._cond:
            try:
                while i not in self._answers:
                    left = deadline - time.monotonic()
                    if self.gone:
                        raise DevToolsError(f"{method}: Chromium is gone")
                    if left <= 0:
                        raise TimeoutError(f"{method}: no answer within {timeout:g} s")
                    self._cond.wait(left)
                answer = self._answers.pop(i)
            finally:
                self._waiting.discard(i)
        if "error" in answer:
            raise DevToolsError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        stop_group(self.proc, 5)  # renderers, the GPU process and zygotes are in its group
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)


class Tab:
    """One page in its own browser context, and what its console told: frame times, long
    tasks, the viewer's marks, the naive page's progress."""

    def __init__(self, chrome: Chromium, watch: str | None, network: bool = False) -> None:
        self.chrome = chrome
        self.origin = math.nan  # performance.timeOrigin of the current document (Unix ms)
        self.observing: bool | None = None
        self.frames: list[float] = []
        self.tasks: list[list[float]] = []
        self.marks: dict[str, float] = {}
        self.naive: dict[str, Any] = {}
        self.naive_log: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.loaded = threading.Event()
        self.profiling = False
        self.context = chrome.send("Target.createBrowserContext")["browserContextId"]
        self.target = chrome.send(
            "Target.createTarget", {"url": "about:blank", "browserContextId": self.context, **VIEWPORT}
        )["targetId"]
        self.session = chrome.send("Target.attachToTarget", {"targetId": self.target, "flatten": True})[
            "sessionId"
        ]
        chrome.listeners[self.session] = self._event
        for method in ("Page.enable", "Runtime.enable", "Performance.enable"):
            self.send(method)
        if network:
            self.send("Network.enable")
        self.send("Emulation.setDeviceMetricsOverride", {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False})
        self.send(
            "Page.addScriptToEvaluateOnNewDocument",
            {"source": BENCH_INIT.replace("__WATCH__", json.dumps(watch))},
        )

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        return self.chrome.send(method, params, self.session, timeout)

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            args = params.get("args") or [{}]
            text = str(args[0].get("value", ""))
            if text.startswith("__bench "):
                self._bench(*text[8:].partition(" ")[::2])
            elif text.startswith("__naive "):
                self.naive = json.loads(text[8:])
                self.naive["at"] = self.page_now()
                self.naive_log.append(self.naive)
            elif params.get("type") == "error" and len(self.errors) < 20:
                self.errors.append(text[:200])
        elif method == "Runtime.exceptionThrown" and len(self.errors) < 20:
            details = params.get("exceptionDetails", {})
            self.errors.append(
                str(details.get("exception", {}).get("description") or details.get("text"))[:200]
            )
        elif method == "Page.loadEventFired":
            self.loaded.set()

    def _bench(self, kind: str, payload: str) -> None:
        data = json.loads(payload)
        if kind == "init":  # a new document, with its own clock
            self.origin = float(data["origin"])
            self.observing = bool(data["observing"])
            self.frames, self.tasks, self.marks = [], [], {}
        elif kind == "frames":
            self.frames.extend(data)
        elif kind == "longtasks":
            self.tasks.extend(data)
        elif kind == "shown":
            self.marks = data

    def page_now(self) -> float:
        """Now, on the page's clock (ms since its navigation started)."""
        return time.time() * 1000 - self.origin

    def navigate(self, url: str, wait_load: bool, timeout: float = 30.0) -> None:
        self.loaded.clear()
        result = self.send("Page.navigate", {"url": url}, timeout)
        if result.get("errorText"):
            raise DevToolsError(f"navigate {url}: {result['errorText']}")
        if wait_load and not self.loaded.wait(timeout):
            raise TimeoutError(f"{url} did not load within {timeout:g} s")

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The JSON value of `expression` (DevTools' Runtime.evaluate: not subject to the CSP)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise DevToolsError(str(details.get("exception", {}).get("description") or details.get("text")))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"not true within {timeout:g} s: {expression}")
            value = self.evaluate(expression, timeout=left)
            if value:
                return value
            time.sleep(0.05)

    def wait_until(self, predicate: Callable[[], Any], timeout: float) -> bool:
        """Wait for what the page's console tells (no command to the page)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def metrics(self) -> dict[str, float]:
        """Performance metrics after a forced GC (JSHeapUsedSize is then what the page keeps)."""
        self.send("HeapProfiler.collectGarbage", timeout=60)
        return {m["name"]: m["value"] for m in self.send("Performance.getMetrics")["metrics"]}

    def start_profile(self) -> None:
        self.send("Profiler.enable")
        self.send("Profiler.setSamplingInterval", {"interval": 500})
        self.send("Profiler.start")
        self.profiling = True

    def stop_profile(self) -> dict[str, Any] | None:
        if not self.profiling:
            return None
        self.profiling = False
        try:
            return self.send("Profiler.stop", timeout=60)["profile"]  # type: ignore[no-any-return]
        except Exception as exc:
            print(f"  (profile failed: {exc})")
            return None

    def close(self) -> None:
        self.chrome.listeners.pop(self.session, None)
        with contextlib.suppress(Exception):
            self.chrome.send("Target.closeTarget", {"targetId": self.target}, timeout=10)
        with contextlib.suppress(Exception):
            self.chrome.send("Target.disposeBrowserContext", {"browserContextId": self.context}, timeout=10)


# -- measuring -----------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds per Chromium process kind (DevTools SystemInfo.getProcessInfo) and of the
    logcast server process (its threads, not its children)."""

    def __init__(self) -> None:
        self.chrome: Chromium | None = None
        self.server_pid: int | None = None

    def snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.chrome is not None:
            with contextlib.suppress(Exception):
                for p in self.chrome.send("SystemInfo.getProcessInfo", timeout=10)["processInfo"]:
                    kind = str(p.get("type", "other"))
                    kind = "network" if "Network" in kind else kind.lower()
                    out[kind] = out.get(kind, 0.0) + float(p["cpuTime"])
        if self.server_pid:
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{self.server_pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out["logcast server"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: b[k] - a.get(k, 0.0) for k in b if b[k] - a.get(k, 0.0) > 0.005}

    @staticmethod
    def line(d: dict[str, float], wall: float) -> str:
        order = ["renderer", "network", "browser", "gpu", "logcast server"]
        keys = [k for k in order if k in d] + sorted(k for k in d if k not in order)
        parts = ", ".join(f"{k} {d[k]:.1f} s" for k in keys)
        total = sum(d.values())
        return f"CPU while loading: {parts}; {total:.1f} s of {wall:.1f} s wall on {os.cpu_count()} CPUs"


CPU = CpuMeter()


def print_profile(title: str, profile: dict[str, Any] | None, top: int = 14) -> None:
    """The functions with the most self time (sample i lasts until sample i + 1)."""
    if not profile:
        return
    nodes = {n["id"]: n for n in profile["nodes"]}
    samples = profile.get("samples", [])
    deltas = profile.get("timeDeltas", [])
    self_us: Counter[str] = Counter()
    for i, sid in enumerate(samples):
        dt = deltas[i + 1] if i + 1 < len(deltas) else 0
        frame = nodes[sid]["callFrame"]
        name = frame.get("functionName") or "(anonymous)"
        url = frame.get("url", "")
        where = f" {url.rsplit('/', 1)[-1]}:{frame.get('lineNumber', -1) + 1}" if url else ""
        self_us[name + where] += max(0, dt)
    total = sum(self_us.values()) or 1
    busy = total - self_us.get("(idle)", 0)
    print(
        f"\n  CPU profile, {title}: {total / 1e6:.1f} s sampled, {busy / 1e6:.1f} s not idle; top self time:"
    )
    for name, us in self_us.most_common(top):
        print(f"    {us / 1e3:9.0f} ms  {100 * us / total:5.1f}%  {name}")


def frame_stats(frames: list[float], w0: float, w1: float, now: float) -> dict[str, Any]:
    """Frames in the window [w0, w1] (page clock, ms). Every frame interval that overlaps the
    window counts whole; if no frame came after w1 by `now`, the frame still open counts too,
    up to w1 (`open`: the longest frame is then at least that long)."""
    frames = sorted(frames)
    gaps = [b - a for a, b in itertools.pairwise(frames) if b > w0 and a < w1]
    still_open = bool(frames) and frames[-1] < w1 and now > w1
    if still_open:
        gaps.append(w1 - frames[-1])
    elif not frames:
        gaps.append(w1 - w0)
        still_open = True
    inside = sum(1 for t in frames if w0 <= t <= w1)
    gaps.sort()

    def pct(p: float) -> float:
        return gaps[min(len(gaps) - 1, max(0, math.ceil(p / 100 * len(gaps)) - 1))]

    return {
        "fps": inside / ((w1 - w0) / 1000),
        "p50": pct(50),
        "p95": pct(95),
        "max": gaps[-1],
        "over50": sum(1 for g in gaps if g > 50),
        "open": still_open and gaps[-1] == w1 - (frames[-1] if frames else w0),
    }


def task_stats(tasks: list[list[float]], w0: float, w1: float) -> dict[str, float]:
    durations = [d for s, d in tasks if s + d >= w0 and s <= w1]
    return {"n": len(durations), "total": sum(durations), "max": max(durations, default=0.0)}


# -- 1. history ---------------------------------------------------------------------------------


def history_logcast(
    chrome: Chromium, server: Logcast, k: int, last: int, args: argparse.Namespace
) -> dict[str, Any]:
    tab = Tab(chrome, watch=f"{last:09d} ", network=args.devtools_network)
    out: dict[str, Any] = {"page": "logcast", "k": k}
    try:
        tab.navigate(server.url + "/healthz", wait_load=True)  # the renderer exists: the clock is the page's
        if args.profile:
            tab.start_profile()
        cpu0, t0 = CPU.snapshot(), time.monotonic()
        tab.navigate(f"{server.url}/logs.html?process=hist&lines={k}", wait_load=False)
        out["ok"] = tab.wait_until(lambda: "lastShown" in tab.marks, args.timeout)
        out["cpu"] = CPU.line(CPU.delta(cpu0, CPU.snapshot()), time.monotonic() - t0)
        profile = tab.stop_profile()
        out.update(tab.marks if out["ok"] else tab.evaluate("window.__bench.marks"))
        st = tab.evaluate("window.__logcast.stats()")
        out["held"] = st["lines"]
        out["detail"] = (
            f"received {st.get('received', 0):,}, dropped {st['dropped']:,}, holes {st.get('holes')}, "
            f"duplicates {st.get('duplicates')}, connects {st.get('connects')}"
        )
        out["rows"] = tab.evaluate("document.querySelectorAll('#log .row').length")
        end = out.get("lastShown") or tab.page_now()
        tab.evaluate("window.__bench.flush(), true")
        time.sleep(0.2)
        out["frames"] = frame_stats(tab.frames, 0, end, tab.page_now())
        out["tasks"] = task_stats(tab.tasks, 0, end)
        out["metrics"] = tab.metrics()
        out["errors"] = tab.errors
        if profile:
            print_profile(f"logcast viewer opening {k:,} lines", profile)
    finally:
        tab.close()
    return out


def history_naive(
    chrome: Chromium, naive_url: str, k: int, last: int, args: argparse.Namespace, mode: str
) -> dict[str, Any]:
    NaiveHandler.resume()
    tab = Tab(chrome, watch=None, network=args.devtools_network)
    out: dict[str, Any] = {"page": "naive" if mode != "floor" else "sse+json", "k": k}
    try:
        tab.navigate(naive_url + "/naive.css", wait_load=True)
        cpu0, t0 = CPU.snapshot(), time.monotonic()
        tab.navigate(
            f"{naive_url}/naive.html?process=hist&lines={k}&last={last}&mode={mode}", wait_load=False
        )
        out["ok"] = tab.wait_until(lambda: tab.naive.get("shownAt") is not None, args.timeout)
        out["cpu"] = CPU.line(CPU.delta(cpu0, CPU.snapshot()), time.monotonic() - t0)
        out["lastShown"] = tab.naive.get("shownAt")
        out["held"] = tab.naive.get("lines", 0)
        out["detail"] = f"reconnects {tab.naive.get('errors', 0)}"
        end = out["lastShown"] if out["ok"] else tab.page_now()
        time.sleep(0.6)  # frame times come twice a second, when the page draws at all
        out["frames"] = frame_stats(tab.frames, 0, end, tab.page_now())
        out["tasks"] = task_stats(tab.tasks, 0, end)
        NaiveHandler.cut()  # no more lines: let it come to rest, if it can
        try:
            tab.evaluate("window.__naive.stop(), true", timeout=20)
            out["rows"] = tab.evaluate("Math.max(1, document.getElementById('log-output').childElementCount)")
            out["metrics"] = tab.metrics()
        except (TimeoutError, DevToolsError):
            pass  # still inside its backlog 20 s later: no heap figure ('busy')
        out["errors"] = tab.errors
    finally:
        tab.close()
        NaiveHandler.resume()
    return out


# -- 2. live ------------------------------------------------------------------------------------


def start_live(server: Logcast, timeout: float = 30.0) -> None:
    """Start `live` once it is not running (the previous run may still be on its way out)."""
    deadline = time.monotonic() + timeout
    while server.get("/api/processes/live")["state"] in ("starting", "running", "ready", "stopping"):
        if time.monotonic() > deadline:
            raise TimeoutError("live is still running from before")
        time.sleep(0.1)
    server.live_report.unlink(missing_ok=True)
    server.post("/api/processes/live/start")


def wait_report(server: Logcast, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.live_report.exists():
            return json.loads(server.live_report.read_text())  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise TimeoutError(f"the live child did not finish within {timeout:.0f} s")


SEQ_CHECK = """(() => {
  const s = window.__logcast.seqs();
  let bad = 0;
  for (let i = 1; i < s.length; i++) if (s[i] !== s[i - 1] + 1) bad += 1;
  const gaps = window.__logcast.entries().filter((e) => e.kind === "gap").length;
  return { seqs: s.length, bad, gaps };
})()"""


def live(
    chrome: Chromium, server: Logcast, naive_url: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    expected = int(args.rate * args.seconds)
    last = expected - 1
    NaiveHandler.resume()
    tab = Tab(chrome, watch=None if naive_url else f"{last:09d} ", network=args.devtools_network)
    out: dict[str, Any] = {"page": "naive" if naive_url else "logcast", "expected": expected}
    try:
        if naive_url:
            tab.navigate(naive_url + "/naive.css", wait_load=True)
            tab.navigate(
                f"{naive_url}/naive.html?process=live&lines=0&last={last}&mode={args.naive}", wait_load=True
            )
            tab.wait_for("window.__naive && window.__naive.state.open", timeout=30)
        else:
            tab.navigate(server.url + "/healthz", wait_load=True)
            if args.profile:
                tab.start_profile()
            tab.navigate(f"{server.url}/logs.html?process=live&lines=0&debug=1", wait_load=True)
            tab.wait_for(
                "window.__logcast && window.__logcast.stats().historyDone && window.__logcast.stats().state === 'live'",
                timeout=30,
            )
        time.sleep(2.0)  # an idle stretch, as the reference
        now = tab.page_now()
        out["idle"] = frame_stats(tab.frames, now - 2000, now - 600, now)
        out["observing"] = tab.observing
        snap0 = CPU.snapshot()
        start_live(server)
        report = wait_report(server, args.seconds * 3 + 30)
        used = CPU.delta(snap0, CPU.snapshot())
        wall = report["end"] - report["start"]
        out["cpu"] = CPU.line(used, wall).replace("while loading", "while the child wrote")
        out["cpu_pct"] = 100 * used.get("renderer", math.nan) / max(1e-9, wall)
        w0 = report["start"] * 1000 - tab.origin
        w1 = report["end"] * 1000 - tab.origin
        out["child"] = report
        # then wait (bounded) for the last line to be shown
        if naive_url:
            tab.wait_until(lambda: tab.naive.get("shownAt") is not None, args.drain)
            shown = tab.naive.get("shownAt")
            now = tab.page_now()
            time.sleep(0.6)  # frame times come twice a second, when the page draws at all
        else:
            tab.wait_until(lambda: "lastShown" in tab.marks, args.drain)
            shown = tab.marks.get("lastShown")
            now = tab.page_now()
            tab.evaluate("window.__bench.flush(), true")
            time.sleep(0.2)
        out["caught_up_ms"] = shown - w1 if shown is not None else math.inf
        profile = tab.stop_profile()
        out["frames"] = frame_stats(tab.frames, w0, w1, now)
        out["tasks"] = task_stats(tab.tasks, w0, w1)
        if naive_url:
            at_end = [r for r in tab.naive_log if r["at"] <= w1]
            out["by_end"] = at_end[-1]["lines"] if at_end else 0
            NaiveHandler.cut()
            with contextlib.suppress(TimeoutError, DevToolsError):
                tab.evaluate("window.__naive.stop(), window.__naive.report(), true", timeout=20)
                time.sleep(0.1)
            s = tab.naive
            out["arrived"] = s.get("lines", 0)
            out["complete"] = (
                s.get("lines") == expected
                and s.get("order") == 0
                and s.get("first") == 0
                and s.get("last") == last
            )
            out["detail"] = f"order errors {s.get('order')}, reconnects {s.get('errors')}"
        else:
            s = tab.evaluate("window.__logcast.stats()")
            check = tab.evaluate(SEQ_CHECK)
            out["arrived"] = s["lines"]
            out["complete"] = (
                s["lines"] == expected
                and s["holes"] == 0
                and s["duplicates"] == 0
                and check["bad"] == 0
                and check["gaps"] == 0
            )
            out["detail"] = (
                f"holes {s['holes']}, duplicates {s['duplicates']}, seq breaks {check['bad']}, "
                f"gap rows {check['gaps']}, dropped {s['dropped']}, connects {s['connects']}"
            )
        out["errors"] = tab.errors
        if profile:
            print_profile(f"logcast viewer, {args.rate:,} lines/s for {args.seconds:g} s", profile)
    finally:
        tab.close()
        NaiveHandler.resume()
    return out


# -- output ---------------------------------------------------------------------------------------


def ms(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "never"
    if abs(v) < 10:
        return f"{v:.1f} ms"
    if abs(v) < 1000:
        return f"{v:.0f} ms"
    return f"{v / 1000:.2f} s"


def flat_history(r: dict[str, Any]) -> dict[str, Any]:
    m = r.get("metrics") or {}
    t = r.get("tasks") or {}
    return {
        "page": r["page"],
        "k": r["k"],
        "ok": bool(r.get("ok")),
        "lastShown": r.get("lastShown") if r.get("ok") else math.nan,
        "firstRow": r.get("firstRow", math.nan),
        "historyDone": r.get("historyDone", math.nan),
        "held": r.get("held", 0),
        "task_max": t.get("max", math.nan) if t.get("n") else math.nan,
        "frame_max": (r.get("frames") or {}).get("max", math.nan),
        "frame_open": bool((r.get("frames") or {}).get("open")),
        "task_total": t.get("total", math.nan),
        "heap_mb": m.get("JSHeapUsedSize", math.nan) / 2**20,
        "nodes": m.get("Nodes", math.nan),
        "rows": r.get("rows", math.nan),
        "script": m.get("ScriptDuration", math.nan),
        "layout": m.get("LayoutDuration", math.nan),
        "style": m.get("RecalcStyleDuration", math.nan),
        "task": m.get("TaskDuration", math.nan),
        "reconnects": r.get("reconnects", 0),
        "detail": r.get("detail", ""),
        "cpu": r.get("cpu", ""),
    }


def flat_live(r: dict[str, Any]) -> dict[str, Any]:
    f, t = r["frames"], r["tasks"]
    return {
        "page": r["page"],
        "expected": r["expected"],
        "fps": f["fps"],
        "p50": f["p50"],
        "p95": f["p95"],
        "max": f["max"],
        "over50": f["over50"],
        "open": bool(f["open"]),
        "tasks_n": t["n"],
        "tasks_total": t["total"],
        "tasks_max": t["max"],
        "cpu_pct": r["cpu_pct"],
        "arrived": r["arrived"],
        "by_end": r.get("by_end", math.nan),
        "complete": bool(r["complete"]),
        "caught_up_ms": r["caught_up_ms"],
        "detail": r["detail"],
        "idle_fps": r["idle"]["fps"],
        "idle_p95": r["idle"]["p95"],
        "late_max": r["child"]["late_max"],
        "observing": r.get("observing"),
    }


HISTORY_HEAD = (
    f"  {'page':<8} {'K lines':>9}  {'last line shown':>15}  {'first row':>9}  {'history in':>10}  {'held':>9}"
    f"  {'longest task':>12}  {'longest frame':>13}  {'JS heap':>8}  {'DOM nodes':>9}  {'rows':>5}  {'script':>7}  {'layout':>7}  {'style':>6}  {'all tasks':>9}"
)


def history_row(h: dict[str, Any], timeout: float) -> str:
    shown = ms(h["lastShown"]) if h["ok"] else f"not in {timeout:.0f} s"
    heap = f"{h['heap_mb']:.0f} MB" if not math.isnan(h["heap_mb"]) else "busy"

    def num(v: float, spec: str, unit: str = "") -> str:
        return "n/a" if math.isnan(v) else f"{v:{spec}}{unit}"

    return (
        f"  {h['page']:<8} {h['k']:>9,}  {shown:>15}  {ms(h['firstRow']):>9}  {ms(h['historyDone']):>10}"
        f"  {h['held']:>9,.0f}  {ms(h['task_max']):>12}  {('>=' if h['frame_open'] else '') + ms(h['frame_max']):>13}  {heap:>8}  {num(h['nodes'], ',.0f'):>9}"
        f"  {num(h['rows'], '.0f'):>5}  {num(h['script'], '.1f', 's'):>7}  {num(h['layout'], '.2f', 's'):>7}"
        f"  {num(h['style'], '.2f', 's'):>6}  {num(h['task'], '.1f', 's'):>9}"
    )


LIVE_HEAD = (
    f"  {'page':<8} {'fps':>5}  {'p50':>7}  {'p95':>7}  {'max':>9}  {'>50ms':>5}  {'long tasks: n / total / max':>27}"
    f"  {'CPU':>5}  {'shown by end':>12}  {'shown':>7}  {'all?':>4}  {'caught up':>9}"
)


def live_row(v: dict[str, Any]) -> str:
    tasks = f"{v['tasks_n']:.0f} / {ms(v['tasks_total'])} / {ms(v['tasks_max'])}"
    by_end = f"{v['by_end']:,.0f}" if not math.isnan(v["by_end"]) else "-"
    return (
        f"  {v['page']:<8} {v['fps']:5.1f}  {ms(v['p50']):>7}  {ms(v['p95']):>7}  {('>=' if v['open'] else '') + ms(v['max']):>9}  {v['over50']:>5.0f}"
        f"  {tasks:>27}  {v['cpu_pct']:4.0f}%  {by_end:>12}  {v['arrived']:>7,.0f}  {'yes' if v['complete'] else 'NO':>4}"
        f"  {ms(v['caught_up_ms']):>9}"
    )


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, bool):
            out[key] = all(r[key] for r in rows)
        elif isinstance(value, (int, float)):
            values = [r[key] for r in rows if not (isinstance(r[key], float) and math.isnan(r[key]))]
            out[key] = statistics.median(values) if values else math.nan
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of history (default 1,000,000)")
    parser.add_argument("--rate", type=int, default=10_000, help="live lines per second (default 10,000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="live phase length (default 10)")
    parser.add_argument("--runs", type=int, default=1, help="repeat everything (default 1); medians printed")
    parser.add_argument("--timeout", type=float, default=120.0, help="history: give up after (default 120 s)")
    parser.add_argument(
        "--drain", type=float, default=30.0, help="live: wait for the last line (default 30 s)"
    )
    parser.add_argument(
        "--hist-rate",
        type=int,
        default=100_000,
        help="lines/s the history child writes (default 100,000: an unpaced flood outruns the SQLite "
        "writer on a busy machine and the server drops lines, store_lost)",
    )
    parser.add_argument(
        "--naive",
        choices=["pre", "div"],
        default="pre",
        help="baseline: `pre.textContent +=` per line (the seed's, default) or one <div> per line",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the naive page (for a quick look or a profile)"
    )
    parser.add_argument(
        "--devtools-network",
        action="store_true",
        help="enable DevTools' Network domain on the pages, as Playwright does (to see its overhead)",
    )
    parser.add_argument("--profile", action="store_true", help="print a CPU profile of the logcast viewer")
    args = parser.parse_args()
    if min(args.lines, args.rate, args.runs, args.hist_rate) < 1 or args.seconds <= 0:
        parser.error("--lines, --rate, --seconds, --runs and --hist-rate must be positive")
    if args.lines > 1_000_000:
        parser.error("the viewer loads at most 1,000,000 lines of history")

    points = sorted({args.lines, min(args.lines, SECOND_POINT)}, reverse=True)
    kinds = ("logcast",) if args.no_baseline else ("logcast", "naive")

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM, and SIGINT even where a shell started us in the background with it ignored,
    # unwind through the `finally` blocks that stop Chromium and the server
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    ingest_timeout = max(300.0, 3 * args.lines / args.hist_rate)
    per_run = len(points) * (len(kinds) + 1) * (args.timeout + 90) + len(kinds) * (
        args.seconds * 3 + 30 + args.drain + 90
    )
    WATCH.start(180 + ingest_timeout + 2 * args.timeout + args.runs * per_run)
    load0 = os.getloadavg()
    print(
        f"browser benchmark: {args.lines:,} lines of history, {args.rate:,} lines/s for {args.seconds:g} s, "
        f"{args.runs} run(s); load average {load0[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )

    history: list[dict[str, Any]] = []
    lives: list[dict[str, Any]] = []
    raw: dict[int, tuple[float, float]] = {}
    server: Logcast | None = None
    httpd: http.server.ThreadingHTTPServer | None = None
    with tempfile.TemporaryDirectory(prefix="logcast-bench-browser-") as d:
        tmp = Path(d)
        try:
            server = start_logcast(tmp, args)
            CPU.server_pid = server.proc.pid
            took = wait_history(server, args.lines, timeout=ingest_timeout)
            print(f"hist: {args.lines:,} lines printed and stored in {took:.1f} s", flush=True)
            for k in points:  # the first read also warms the server's caches for every page after it
                raw[k] = (raw_history(server, k, args.timeout), raw_history(server, k, args.timeout))
                print(
                    f"server alone (a bare socket reads the SSE history): {k:,} lines in {raw[k][0]:.2f} s "
                    f"the first time, {raw[k][1]:.2f} s the second",
                    flush=True,
                )
            (tmp / "naive").mkdir()
            httpd, naive_url = start_naive_server(tmp / "naive", server.port)
            chrome = Chromium(tmp / "chromium-profile", tmp / "chromium.log")
            CPU.chrome = chrome
            try:
                note = " with DevTools' Network domain on" if args.devtools_network else ""
                print(f"{chrome.version}, headless, viewport {VIEWPORT['width']}x{VIEWPORT['height']}{note}")
                for run_no in range(1, args.runs + 1):
                    print(f"\n--- run {run_no}: history ---\n{HISTORY_HEAD}", flush=True)
                    for k in points:
                        for kind in (*kinds, "sse+json"):
                            if kind == "logcast":
                                r = history_logcast(chrome, server, k, args.lines - 1, args)
                            else:
                                mode = args.naive if kind == "naive" else "floor"
                                r = history_naive(chrome, naive_url, k, args.lines - 1, args, mode)
                            history.append(flat_history(r))
                            detail = f"   ({r['detail']})" if r.get("detail") else ""
                            print(history_row(history[-1], args.timeout) + detail, flush=True)
                            print(f"    {r['cpu']}", flush=True)
                            if r.get("errors"):
                                print(f"    page errors: {r['errors'][:3]}")
                    print(f"--- run {run_no}: live ---\n{LIVE_HEAD}", flush=True)
                    for kind in kinds:
                        r = live(chrome, server, naive_url if kind == "naive" else None, args)
                        lives.append(flat_live(r))
                        print(f"{live_row(lives[-1])}   ({r['detail']})", flush=True)
                        print(f"    {r['cpu']}", flush=True)
                        if r.get("errors"):
                            print(f"    page errors: {r['errors'][:3]}")
            finally:
                CPU.chrome = None
                chrome.close()
        finally:
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()
            if server is not None:
                stop_group(server.proc)
            WATCH.stop()

    load1 = os.getloadavg()
    print_summary(args, points, raw, history, lives, load0, load1)


def print_summary(
    args: argparse.Namespace,
    points: list[int],
    raw: dict[int, tuple[float, float]],
    history: list[dict[str, Any]],
    lives: list[dict[str, Any]],
    load0: tuple[float, float, float],
    load1: tuple[float, float, float],
) -> None:
    runs = f"median of {args.runs} runs" if args.runs > 1 else "1 run"
    print(f"\n=== history: open the viewer on K lines; page clock from navigation start ({runs}) ===")
    print(HISTORY_HEAD)
    for k in points:
        for kind in ("logcast", "naive", "sse+json"):
            rows = [h for h in history if h["k"] == k and h["page"] == kind]
            if rows:
                detail = f"   ({rows[0]['detail']})" if rows[0]["detail"] else ""
                print(history_row(median_row(rows), args.timeout) + detail)
    print(
        "  (held: lines the page holds when the last line shows, or at the timeout; JS heap after a forced GC,\n"
        "   'busy' when the page was still working through its backlog 20 s after the stream was cut;\n"
        "   longest task: the longest that ended (PerformanceObserver 'longtask'); longest frame: the longest\n"
        "   time between two animation frames while loading, '>=' when the page had not drawn again by the end;\n"
        "   rows: row elements in the list (the naive page: its <pre>, or its <div>s with --naive div);\n"
        "   script / layout / style / all tasks: the renderer main thread's cumulative time in each,\n"
        "   CDP Performance.getMetrics ScriptDuration, LayoutDuration, RecalcStyleDuration, TaskDuration)"
    )
    print(
        "  sse+json: a page that only parses each event (EventSource + JSON.parse per line, no DOM), served\n"
        "   like the naive page through the bench's relay: what any page on this stream pays at least"
    )
    for k, (cold, warm) in raw.items():
        print(
            f"  server alone, {k:,} lines to a bare socket reader: {cold:.2f} s cold (before any page), "
            f"{warm:.2f} s warm (as every page gets it)"
        )
    print(f"\n=== live: {args.rate:,} lines/s for {args.seconds:g} s; frames while they arrive ({runs}) ===")
    print(LIVE_HEAD)
    for kind in ("logcast", "naive"):
        rows = [v for v in lives if v["page"] == kind]
        if rows:
            med = median_row(rows)
            print(f"{live_row(med)}   ({rows[0]['detail']})")
    ref = [v for v in lives if v["page"] == "logcast"]
    if ref:
        print(
            f"  (reference: the logcast page idle before the child starts: {ref[0]['idle_fps']:.1f} fps, "
            f"p95 {ms(ref[0]['idle_p95'])};\n"
            "   max: '>=' when the page had not drawn again by the child's last write (a task still running);\n"
            "   CPU: the renderer's, over the child's writing window; shown by end: lines on the page when\n"
            "   the child wrote its last line (naive page; the logcast viewer's figure is 'caught up');\n"
            f"   caught up: last line shown after the child's last write, 'never' = not within {args.drain:g} s)"
        )
    late = max((v["late_max"] for v in lives), default=0.0)
    observed = {v["observing"] for v in lives}
    print(
        f"  child pacing: worst batch {late * 1000:.0f} ms late; the init script ran under the page's CSP "
        f"and observed long tasks: {'yes' if observed == {True} else observed}"
    )
    print(
        f"\nload average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end ({os.cpu_count()} CPUs, shared by "
        "Chromium, the server, the children and whatever else runs on the machine)"
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'Ctrl-C'}); Chromium and the server were stopped", file=sys.stderr)
        sys.exit(130)
