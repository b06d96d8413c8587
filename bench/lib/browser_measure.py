"""What the browser benchmark measures in a page: the history phase (open the viewer, or the
naive page, on K lines) and the live phase (follow a paced child), each in a fresh browser
context, from what the page's own clock and console tell and what DevTools reports."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import time
from pathlib import Path
from typing import Any

from bench.lib.browser_server import LogcastServer, start_live, wait_live_report
from bench.lib.devtools import Chromium, DevToolsError, Tab
from bench.lib.frame_stats import frame_stats, task_stats
from bench.lib.meters import BrowserCpuMeter
from bench.lib.naive_page_server import NaiveHandler

PAGES = Path(__file__).resolve().parents[1] / "pages"


@functools.cache
def page_script(name: str) -> str:
    """A script of `bench/pages`, read once."""
    return (PAGES / name).read_text()


# The viewer's milestones on the page's clock: its document, its last script, the stream's
# first event and its history (`performance.mark` in logs.js).
TIMELINE = """(() => {
  const out = {};
  const nav = performance.getEntriesByType("navigation")[0];
  if (nav) out.html = Math.round(nav.responseEnd);
  const scripts = performance.getEntriesByType("resource").filter((e) => e.name.endsWith(".js"));
  if (scripts.length) out.scripts = Math.round(Math.max(...scripts.map((e) => e.responseEnd)));
  for (const m of performance.getEntriesByType("mark")) {
    if (m.name.startsWith("logcast:")) out[m.name.slice(8)] = Math.round(m.startTime);
  }
  return out;
})()"""


class MeasuredTab(Tab):
    """A tab running `bench-init.js`, and what its console told: frame times, long tasks, the
    viewer's marks (with `watch`, the prefix of the last line to wait for), the naive page's
    progress."""

    def __init__(self, chrome: Chromium, watch: str | None, network: bool = False) -> None:
        self.origin = math.nan  # performance.timeOrigin of the current document (Unix ms)
        self.observing: bool | None = None
        self.frames: list[float] = []
        self.tasks: list[list[float]] = []
        self.marks: dict[str, float] = {}
        self.naive: dict[str, Any] = {}
        self.naive_log: list[dict[str, Any]] = []
        init_script = page_script("bench-init.js").replace("__WATCH__", json.dumps(watch))
        super().__init__(chrome, init_script, network)

    def on_console(self, text: str) -> bool:
        if text.startswith("__bench "):
            self._bench(*text[8:].partition(" ")[::2])
        elif text.startswith("__naive "):
            self.naive = json.loads(text[8:])
            self.naive["at"] = self.page_now()
            self.naive_log.append(self.naive)
        else:
            return False
        return True

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


def measure_history_logcast(
    chrome: Chromium, cpu: BrowserCpuMeter, server: LogcastServer, k: int, last: int, args: argparse.Namespace
) -> dict[str, Any]:
    """The logcast viewer opened on the last `k` lines of `hist` (the last one is line `last`):
    when its first row, the end of the stream's history and the last line showed, and when
    it held all `k` (`filled`); frames, long tasks and CPU until then, heap and DOM after."""
    tab = MeasuredTab(chrome, watch=f"{last:09d} ", network=args.devtools_network)
    out: dict[str, Any] = {"page": "logcast", "k": k}
    try:
        tab.navigate(server.url + "/healthz", wait_load=True)  # the renderer exists: the clock is the page's
        if args.profile:
            tab.start_profile()
        cpu0, t0 = cpu.snapshot(), time.monotonic()
        tab.navigate(f"{server.url}/logs.html?process=hist&lines={k}", wait_load=False)
        out["ok"] = tab.wait_until(lambda: "lastShown" in tab.marks, args.timeout)
        # the viewer shows the last lines first, then fills in the older history before them:
        # what it holds, its heap and the CPU are measured once all of it is in
        left = max(1.0, args.timeout - (time.monotonic() - t0))
        out["filled_ok"] = out["ok"] and tab.wait_until(lambda: "filled" in tab.marks, left)
        out["cpu"] = cpu.line(cpu.delta(cpu0, cpu.snapshot()), time.monotonic() - t0)
        profile = tab.stop_profile()
        out.update(tab.marks if out["ok"] else tab.evaluate("window.__bench.marks"))
        stats = tab.evaluate("window.__logcast.stats()")
        out["held"] = stats["lines"]
        out["detail"] = (
            f"received {stats.get('received', 0):,}, dropped {stats['dropped']:,}, holes {stats.get('holes')}, "
            f"duplicates {stats.get('duplicates')}, connects {stats.get('connects')}"
        )
        out["rows"] = tab.evaluate("document.querySelectorAll('#log .row').length")
        # where the time to the first row went: the page's own marks and its scripts' loading
        out["timeline"] = tab.evaluate(TIMELINE)
        end = out.get("filled") or out.get("lastShown") or tab.page_now()
        tab.evaluate("window.__bench.flush(), true")
        time.sleep(0.2)
        out["frames"] = frame_stats(tab.frames, 0, end, tab.page_now())
        out["tasks"] = task_stats(tab.tasks, 0, end)
        out["metrics"] = tab.metrics()
        out["errors"] = tab.errors
        out["profile"] = profile
    finally:
        tab.close()
    return out


def measure_history_naive(
    chrome: Chromium,
    cpu: BrowserCpuMeter,
    naive_url: str,
    k: int,
    last: int,
    args: argparse.Namespace,
    mode: str,
) -> dict[str, Any]:
    """The naive page (`mode`: pre, div, or floor for sse+json) on the last `k` lines of `hist`:
    when the last line showed (or how many it had by the timeout), frames and long tasks."""
    NaiveHandler.resume()
    tab = MeasuredTab(chrome, watch=None, network=args.devtools_network)
    out: dict[str, Any] = {"page": "naive" if mode != "floor" else "sse+json", "k": k}
    try:
        tab.navigate(naive_url + "/naive.css", wait_load=True)
        cpu0, t0 = cpu.snapshot(), time.monotonic()
        tab.navigate(
            f"{naive_url}/naive.html?process=hist&lines={k}&last={last}&mode={mode}", wait_load=False
        )
        out["ok"] = tab.wait_until(lambda: tab.naive.get("shownAt") is not None, args.timeout)
        out["cpu"] = cpu.line(cpu.delta(cpu0, cpu.snapshot()), time.monotonic() - t0)
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


def measure_live(
    chrome: Chromium,
    cpu: BrowserCpuMeter,
    server: LogcastServer,
    naive_url: str | None,
    args: argparse.Namespace,
    unbatched: bool = False,
) -> dict[str, Any]:
    """The logcast viewer (or, with `naive_url`, the naive page) following `live` while it
    writes `args.rate` lines/s: frames, long tasks and CPU over the child's writing window; did
    every line arrive, and how long after the child's last write the last one showed.
    `unbatched`: the viewer on the one-event-per-message stream (`batch=0`), as it was before."""
    expected = int(args.rate * args.seconds)
    last = expected - 1
    NaiveHandler.resume()
    tab = MeasuredTab(chrome, watch=None if naive_url else f"{last:09d} ", network=args.devtools_network)
    page = "naive" if naive_url else "unbatched" if unbatched else "logcast"
    out: dict[str, Any] = {"page": page, "expected": expected}
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
            batch = "&batch=0" if unbatched else ""
            tab.navigate(f"{server.url}/logs.html?process=live&lines=0&debug=1{batch}", wait_load=True)
            tab.wait_for(
                "window.__logcast && window.__logcast.stats().historyDone && window.__logcast.stats().state === 'live'",
                timeout=30,
            )
        time.sleep(2.0)  # an idle stretch, as the reference
        now = tab.page_now()
        out["idle"] = frame_stats(tab.frames, now - 2000, now - 600, now)
        out["observing"] = tab.observing
        snap0 = cpu.snapshot()
        start_live(server)
        report = wait_live_report(server, args.seconds * 3 + 30)
        used = cpu.delta(snap0, cpu.snapshot())
        wall = report["end"] - report["start"]
        out["cpu"] = cpu.line(used, wall).replace("while loading", "while the child wrote")
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
            check = tab.evaluate(page_script("seq-check.js"))
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
        out["profile"] = profile
    finally:
        tab.close()
        NaiveHandler.resume()
    return out
