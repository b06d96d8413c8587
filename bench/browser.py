"""Browser benchmark: the log viewer in a real headless Chromium, against a naive page: the
time from opening it on 1,000,000 lines of history to the last line shown, and the frame
budget while 10,000 lines/s arrive. How it measures, and figures: bench/README.md."""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.lib, tests.util

from bench.lib.browser_measure import measure_history_logcast, measure_history_naive, measure_live
from bench.lib.browser_report import (
    HISTORY_HEAD,
    LIVE_HEAD,
    history_figures,
    live_figures,
    print_history_result,
    print_live_result,
    print_profile,
    print_summary,
)
from bench.lib.browser_server import LogcastServer, raw_history, start_server, wait_history
from bench.lib.devtools import VIEWPORT, Chromium
from bench.lib.meters import BrowserCpuMeter
from bench.lib.naive_page_server import start_naive_server
from bench.lib.watchdog import Watchdog
from tests.util import stop_group

SECOND_POINT = 100_000  # the history is also opened on its last 100,000 lines
WATCHDOG = Watchdog()  # stops Chromium's and the server's process groups if the run overstays


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
        help="baseline: `pre.textContent +=` per line (the original log page's, default) or one <div> per line",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the naive page (for a quick look or a profile)"
    )
    parser.add_argument(
        "--devtools-network",
        action="store_true",
        help="enable DevTools' Network domain on the pages, as Playwright does (to see its overhead)",
    )
    parser.add_argument(
        "--no-unbatched",
        action="store_true",
        help="live: skip the viewer on the one-event-per-message stream (batch=0), measured beside the batched one",
    )
    parser.add_argument("--profile", action="store_true", help="print a CPU profile of the logcast viewer")
    args = parser.parse_args()
    if min(args.lines, args.rate, args.runs, args.hist_rate) < 1 or args.seconds <= 0:
        parser.error("--lines, --rate, --seconds, --runs and --hist-rate must be positive")
    if args.lines > 1_000_000:
        parser.error("the viewer loads at most 1,000,000 lines of history")

    points = sorted({args.lines, min(args.lines, SECOND_POINT)}, reverse=True)
    kinds = ("logcast",) if args.no_baseline else ("logcast", "naive")
    live_kinds = kinds if args.no_unbatched else (kinds[0], "unbatched", *kinds[1:])

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM, and SIGINT even where a shell started us in the background with it ignored,
    # unwind through the `finally` blocks that stop Chromium and the server
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    ingest_timeout = max(300.0, 3 * args.lines / args.hist_rate)
    per_run = len(points) * (len(kinds) + 1) * (args.timeout + 90) + len(live_kinds) * (
        args.seconds * 3 + 30 + args.drain + 90
    )
    WATCHDOG.start(180 + ingest_timeout + 2 * args.timeout + args.runs * per_run)
    load0 = os.getloadavg()
    print(
        f"browser benchmark: {args.lines:,} lines of history, {args.rate:,} lines/s for {args.seconds:g} s, "
        f"{args.runs} run(s); load average {load0[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )

    history: list[dict[str, Any]] = []
    lives: list[dict[str, Any]] = []
    raw: dict[int, tuple[float, float]] = {}
    server: LogcastServer | None = None
    cpu = BrowserCpuMeter()
    httpd: http.server.ThreadingHTTPServer | None = None
    with tempfile.TemporaryDirectory(prefix="logcast-bench-browser-") as d:
        tmp = Path(d)
        try:
            server = start_server(tmp, args)
            WATCHDOG.groups.append(server.proc)
            cpu.server_pid = server.proc.pid
            took = wait_history(server, args.lines, timeout=ingest_timeout)
            print(f"hist: {args.lines:,} lines printed and stored in {took:.1f} s", flush=True)
            for k in points:  # the first read also warms the server's caches for every page after it
                raw[k] = (raw_history(server, k, args.timeout), raw_history(server, k, args.timeout))
                print(
                    f"server alone (a bare socket reads the SSE history): {k:,} lines in {raw[k][0]:.2f} s "
                    f"the first time, {raw[k][1]:.2f} s the second",
                    flush=True,
                )
            httpd, naive_url = start_naive_server(server.port)
            chrome = Chromium(tmp / "chromium-profile", tmp / "chromium.log", on_spawn=WATCHDOG.groups.append)
            cpu.chrome = chrome
            try:
                note = " with DevTools' Network domain on" if args.devtools_network else ""
                print(f"{chrome.version}, headless, viewport {VIEWPORT['width']}x{VIEWPORT['height']}{note}")
                for run_no in range(1, args.runs + 1):
                    print(f"\n--- run {run_no}: history ---\n{HISTORY_HEAD}", flush=True)
                    for k in points:
                        for kind in (*kinds, "sse+json"):
                            if kind == "logcast":
                                result = measure_history_logcast(chrome, cpu, server, k, args.lines - 1, args)
                                print_profile(f"logcast viewer opening {k:,} lines", result["profile"])
                            else:
                                mode = args.naive if kind == "naive" else "floor"
                                result = measure_history_naive(
                                    chrome, cpu, naive_url, k, args.lines - 1, args, mode
                                )
                            history.append(history_figures(result))
                            print_history_result(result, history[-1], args.timeout)
                    print(f"--- run {run_no}: live ---\n{LIVE_HEAD}", flush=True)
                    for kind in live_kinds:
                        result = measure_live(
                            chrome,
                            cpu,
                            server,
                            naive_url if kind == "naive" else None,
                            args,
                            unbatched=kind == "unbatched",
                        )
                        print_profile(
                            f"logcast viewer, {args.rate:,} lines/s for {args.seconds:g} s", result["profile"]
                        )
                        lives.append(live_figures(result))
                        print_live_result(result, lives[-1])
            finally:
                cpu.chrome = None
                chrome.close()
        finally:
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()
            if server is not None:
                stop_group(server.proc)
            WATCHDOG.stop()

    load1 = os.getloadavg()
    print_summary(args, points, raw, history, lives, load0, load1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'Ctrl-C'}); Chromium and the server were stopped", file=sys.stderr)
        sys.exit(130)
