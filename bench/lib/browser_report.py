"""The browser benchmark's report: its figures flattened into rows, the history and live
tables (per run and as medians over runs), their notes, and a CPU profile's top functions."""

from __future__ import annotations

import argparse
import math
import os
import statistics
from collections import Counter
from typing import Any


def format_ms(v: float | None) -> str:
    """A time in ms for the tables: `n/a` when unknown, `never` for infinity."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "never"
    if abs(v) < 10:
        return f"{v:.1f} ms"
    if abs(v) < 1000:
        return f"{v:.0f} ms"
    return f"{v / 1000:.2f} s"


def history_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of one history measurement, flat, as the table prints them."""
    m = result.get("metrics") or {}
    t = result.get("tasks") or {}
    return {
        "page": result["page"],
        "k": result["k"],
        "ok": bool(result.get("ok")),
        "lastShown": result.get("lastShown") if result.get("ok") else math.nan,
        "firstRow": result.get("firstRow", math.nan),
        "historyDone": result.get("historyDone", math.nan),
        "filled": result.get("filled", math.nan) if result.get("filled_ok") else math.nan,
        "held": result.get("held", 0),
        "task_max": t.get("max", math.nan) if t.get("n") else math.nan,
        "frame_max": (result.get("frames") or {}).get("max", math.nan),
        "frame_open": bool((result.get("frames") or {}).get("open")),
        "task_total": t.get("total", math.nan),
        "heap_mb": m.get("JSHeapUsedSize", math.nan) / 2**20,
        "nodes": m.get("Nodes", math.nan),
        "rows": result.get("rows", math.nan),
        "script": m.get("ScriptDuration", math.nan),
        "layout": m.get("LayoutDuration", math.nan),
        "style": m.get("RecalcStyleDuration", math.nan),
        "task": m.get("TaskDuration", math.nan),
        "reconnects": result.get("reconnects", 0),
        "detail": result.get("detail", ""),
        "cpu": result.get("cpu", ""),
    }


def live_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of one live measurement, flat, as the table prints them."""
    f, t = result["frames"], result["tasks"]
    return {
        "page": result["page"],
        "expected": result["expected"],
        "fps": f["fps"],
        "p50": f["p50"],
        "p95": f["p95"],
        "max": f["max"],
        "over50": f["over50"],
        "open": bool(f["open"]),
        "tasks_n": t["n"],
        "tasks_total": t["total"],
        "tasks_max": t["max"],
        "cpu_pct": result["cpu_pct"],
        "arrived": result["arrived"],
        "by_end": result.get("by_end", math.nan),
        "complete": bool(result["complete"]),
        "caught_up_ms": result["caught_up_ms"],
        "detail": result["detail"],
        "idle_fps": result["idle"]["fps"],
        "idle_p95": result["idle"]["p95"],
        "late_max": result["child"]["late_max"],
        "observing": result.get("observing"),
    }


HISTORY_HEAD = (
    f"  {'page':<8} {'K lines':>9}  {'last line shown':>15}  {'first row':>9}  {'history in':>10}  {'all held':>9}  {'held':>9}"
    f"  {'longest task':>12}  {'longest frame':>13}  {'JS heap':>8}  {'DOM nodes':>9}  {'rows':>5}  {'script':>7}  {'layout':>7}  {'style':>6}  {'all tasks':>9}"
)


def history_row(row: dict[str, Any], timeout: float) -> str:
    shown = format_ms(row["lastShown"]) if row["ok"] else f"not in {timeout:.0f} s"
    heap = f"{row['heap_mb']:.0f} MB" if not math.isnan(row["heap_mb"]) else "busy"

    def num(v: float, spec: str, unit: str = "") -> str:
        return "n/a" if math.isnan(v) else f"{v:{spec}}{unit}"

    return (
        f"  {row['page']:<8} {row['k']:>9,}  {shown:>15}  {format_ms(row['firstRow']):>9}  {format_ms(row['historyDone']):>10}  {format_ms(row['filled']):>9}"
        f"  {row['held']:>9,.0f}  {format_ms(row['task_max']):>12}  {('>=' if row['frame_open'] else '') + format_ms(row['frame_max']):>13}  {heap:>8}  {num(row['nodes'], ',.0f'):>9}"
        f"  {num(row['rows'], '.0f'):>5}  {num(row['script'], '.1f', 's'):>7}  {num(row['layout'], '.2f', 's'):>7}"
        f"  {num(row['style'], '.2f', 's'):>6}  {num(row['task'], '.1f', 's'):>9}"
    )


LIVE_HEAD = (
    f"  {'page':<9} {'fps':>5}  {'p50':>7}  {'p95':>7}  {'max':>9}  {'>50ms':>5}  {'long tasks: n / total / max':>27}"
    f"  {'CPU':>5}  {'shown by end':>12}  {'shown':>7}  {'all?':>4}  {'caught up':>9}"
)


def live_row(row: dict[str, Any]) -> str:
    tasks = f"{row['tasks_n']:.0f} / {format_ms(row['tasks_total'])} / {format_ms(row['tasks_max'])}"
    by_end = f"{row['by_end']:,.0f}" if not math.isnan(row["by_end"]) else "-"
    return (
        f"  {row['page']:<9} {row['fps']:5.1f}  {format_ms(row['p50']):>7}  {format_ms(row['p95']):>7}  {('>=' if row['open'] else '') + format_ms(row['max']):>9}  {row['over50']:>5.0f}"
        f"  {tasks:>27}  {row['cpu_pct']:4.0f}%  {by_end:>12}  {row['arrived']:>7,.0f}  {'yes' if row['complete'] else 'NO':>4}"
        f"  {format_ms(row['caught_up_ms']):>9}"
    )


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over runs (booleans: all of them)."""
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, bool):
            out[key] = all(r[key] for r in rows)
        elif isinstance(value, (int, float)):
            values = [r[key] for r in rows if not (isinstance(r[key], float) and math.isnan(r[key]))]
            out[key] = statistics.median(values) if values else math.nan
    return out


def print_history_result(result: dict[str, Any], figures: dict[str, Any], timeout: float) -> None:
    """One history measurement as its run prints it: the row, the CPU, any page errors."""
    detail = f"   ({result['detail']})" if result.get("detail") else ""
    print(history_row(figures, timeout) + detail, flush=True)
    if result.get("timeline"):
        steps = ", ".join(f"{name} {ms} ms" for name, ms in result["timeline"].items())
        print(f"    page timeline: {steps}", flush=True)
    print(f"    {result['cpu']}", flush=True)
    if result.get("errors"):
        print(f"    page errors: {result['errors'][:3]}")


def print_live_result(result: dict[str, Any], figures: dict[str, Any]) -> None:
    """One live measurement as its run prints it: the row, the CPU, any page errors."""
    print(f"{live_row(figures)}   ({result['detail']})", flush=True)
    print(f"    {result['cpu']}", flush=True)
    if result.get("errors"):
        print(f"    page errors: {result['errors'][:3]}")


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
        "  (history in: the stream's history taken in (the viewer asks it for the last 1,000 lines and fills in\n"
        "   the rest before them in pages); all held: the viewer holds every line it asked for (n/a: the naive\n"
        "   pages, which show the last line only once they hold all); held: lines the page holds then (when the\n"
        "   last line shows for the naive pages), or at the timeout; JS heap after a forced GC, then,\n"
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
    for kind in ("logcast", "unbatched", "naive"):
        rows = [v for v in lives if v["page"] == kind]
        if rows:
            med = median_row(rows)
            print(f"{live_row(med)}   ({rows[0]['detail']})")
    ref = [v for v in lives if v["page"] == "logcast"]
    if ref:
        print(
            f"  (reference: the logcast page idle before the child starts: {ref[0]['idle_fps']:.1f} fps, "
            f"p95 {format_ms(ref[0]['idle_p95'])};\n"
            "   max: '>=' when the page had not drawn again by the child's last write (a task still running);\n"
            "   CPU: the renderer's, over the child's writing window; shown by end: lines on the page when\n"
            "   the child wrote its last line (naive page; the logcast viewer's figure is 'caught up');\n"
            f"   caught up: last line shown after the child's last write, 'never' = not within {args.drain:g} s;\n"
            "   unbatched: the same viewer on the one-event-per-message stream, batch=0, as it was before)"
        )
    late = max((v["late_max"] for v in lives), default=0.0)
    observed = {v["observing"] for v in lives}
    print(
        f"  child pacing: worst batch {late * 1000:.0f} ms late; the init script ran under the page's CSP "
        f"and observed long tasks: {'yes' if observed == {True} else observed}"
    )
    print_headline(args, points, history, lives)
    print(
        f"\nload average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end ({os.cpu_count()} CPUs, shared by "
        "Chromium, the server, the children and whatever else runs on the machine)"
    )


def print_headline(
    args: argparse.Namespace, points: list[int], history: list[dict[str, Any]], lives: list[dict[str, Any]]
) -> None:
    """The figures the viewer is held to, medians, beside the baselines of the same run."""
    runs = f"medians of {args.runs} runs" if args.runs > 1 else "1 run"
    print(f"\n=== headline ({runs}) ===")
    k = points[0]

    def med(kind: str) -> dict[str, Any] | None:
        rows = [h for h in history if h["k"] == k and h["page"] == kind]
        return median_row(rows) if rows else None

    def shown(row: dict[str, Any] | None) -> str:
        if row is None:
            return "not measured"
        return format_ms(row["lastShown"]) if row["ok"] else f"not in {args.timeout:.0f} s"

    ours = med("logcast")
    if ours is not None:
        heap = f"{ours['heap_mb']:.0f} MB" if not math.isnan(ours["heap_mb"]) else "n/a"
        print(
            f"  viewer opened on {k:,} lines: last line on screen {shown(ours)} (target <= 1 s), first row "
            f"{format_ms(ours['firstRow'])}, all {k:,} held after {format_ms(ours['filled'])}, JS heap {heap} "
            f"with them all (target < 250 MB), longest task {format_ms(ours['task_max'])}"
        )
    print(
        f"  baselines, same run: the naive page {shown(med('naive'))}; a page that only parses the "
        f"one-event-per-message stream {shown(med('sse+json'))}"
    )
    for kind, name in (("logcast", "viewer"), ("unbatched", "viewer, batch=0"), ("naive", "naive page")):
        rows = [v for v in lives if v["page"] == kind]
        if rows:
            m = median_row(rows)
            print(
                f"  {args.rate:,} lines/s, {name}: {m['fps']:.1f} fps, frame p95 {format_ms(m['p95'])}, longest "
                f"{format_ms(m['max'])}, {m['over50']:.0f} frames over 50 ms, long tasks {m['tasks_n']:.0f} "
                f"(longest {format_ms(m['tasks_max'])}), renderer CPU {m['cpu_pct']:.0f}%, every line: "
                f"{'yes' if m['complete'] else 'NO'}"
            )


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
