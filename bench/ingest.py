"""Ingest benchmark: how much slower a flooding child runs under logcast than into `cat`, and
how fast its lines reach the hub and SQLite, with logcast's peak RSS; and what the model
parser costs: the same flood with `parse = "none"`, with the default (auto: it gives up after
2,000 lines that are no model server's) and with `parse = "llamacpp"` (it reads every chunk),
in the same run. What it measures and how, and its targets: bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import sys, time
    n = int(sys.argv[1])
    write = sys.stdout.write  # with PYTHONUNBUFFERED=1 (as logcast sets it): one write(2) per line
    line = "%08d " + "x" * 70 + " level=info msg=benchmark\\n"
    t0 = time.perf_counter()
    for i in range(n):
        write(line % i)
    sys.stdout.flush()
    elapsed = time.perf_counter() - t0
    with open(sys.argv[2], "w") as f:
        f.write(str(elapsed))
    """
)


def child_time(path: Path) -> float:
    return float(path.read_text())


def baseline(script: Path, lines: int, tmp: Path) -> float:
    mark = tmp / "baseline.time"
    cmd = f"PYTHONUNBUFFERED=1 {sys.executable} -u {script} {lines} {mark} | cat > /dev/null"
    subprocess.run(cmd, shell=True, check=True)  # the benchmark's own fixed command, no input
    return child_time(mark)


# The model parser, as each logcast phase is configured: the key's value, None for no key (auto).
PARSE: dict[str, str | None] = {"none": "none", "auto": None, "llamacpp": "llamacpp"}


async def under_logcast(script: Path, lines: int, tmp: Path, model_parser: str | None) -> dict[str, float]:
    from logcast.config import parse
    from logcast.engine import tune_runtime
    from logcast.hub import Hub
    from logcast.store import open_store
    from logcast.supervise.supervisor import Supervisor

    mark = tmp / "logcast.time"
    data = tmp / "data"
    parse_key = "" if model_parser is None else f"parse = {json.dumps(model_parser)}"
    toml = textwrap.dedent(
        f"""
        [storage]
        dir = {json.dumps(str(data))}
        [process.flood]
        command = {json.dumps([sys.executable, "-u", str(script), str(lines), str(mark)])}
        autostart = false
        restart = "never"
        {parse_key}
        """
    )
    settings = parse(toml, str(tmp / "logcast.toml"))
    tune_runtime()  # as `logcast serve` does
    storage = settings.storage
    store = open_store("sqlite", dir=storage.dir, redis_url=None, retain_lines=storage.retain_lines)
    await store.open()
    hub = Hub(store, memory_lines=storage.memory_lines, memory_bytes=storage.memory_bytes)
    await hub.open(settings.processes)
    supervisor = Supervisor(settings, hub)
    plog = hub.get("flood")
    t0 = time.perf_counter()
    await supervisor.start("flood")
    while plog.lines < lines:
        await asyncio.sleep(0.005)
    t_hub = time.perf_counter() - t0
    assert await hub.flush(timeout=120), "store did not catch up"
    t_store = time.perf_counter() - t0
    while supervisor.info("flood")["state"] not in ("exited", "crashed", "stopped"):
        await asyncio.sleep(0.01)
    stats = hub.stats("flood")
    await supervisor.shutdown()
    await hub.close()
    await store.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "child": child_time(mark),
        "hub_rate": lines / t_hub,
        "store_rate": (lines - stats["store_lost"]) / t_store,  # what actually reached SQLite
        "rss_mb": rss_mb,
        "store_lost": float(stats["store_lost"]),
    }


def logcast_phase(tmp: str, lines: int, mode: str) -> dict[str, float]:
    """One flood under logcast, in a fresh process (so that RSS is logcast's own)."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            "logcast",
            "--tmp",
            tmp,
            "--lines",
            str(lines),
            "--parse",
            mode,
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--phase", choices=["logcast"], help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--parse", choices=list(PARSE), default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase == "logcast":
        work = under_logcast(Path(args.tmp) / "child.py", args.lines, Path(args.tmp), PARSE[args.parse])
        try:
            import uvloop

            result = uvloop.run(work)
        except ImportError:
            result = asyncio.run(work)
        print(json.dumps(result))
        return

    modes = list(PARSE)
    print(
        f"{args.lines:,} lines, {args.runs} run(s); each run: the child into cat, then under logcast with "
        f"parse = {', '.join(modes)} (order rotated per run); load average (1 min) at the start of each "
        f"measurement in brackets, {os.cpu_count()} CPUs",
        flush=True,
    )
    rows = []  # the default configuration's (auto) figures, as before the model parser
    hub_rates: dict[str, list[float]] = {mode: [] for mode in modes}
    loads: list[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            script = tmp / "child.py"
            script.write_text(CHILD)
            load = os.getloadavg()[0]
            loads.append(load)
            base = baseline(script, args.lines, tmp)
            order = modes[run % len(modes) :] + modes[: run % len(modes)]
            results: dict[str, dict[str, float]] = {}
            for mode in order:
                mode_load = os.getloadavg()[0]
                loads.append(mode_load)
                own = tmp / mode  # a fresh folder: its own SQLite history, its own child's time
                own.mkdir()
                (own / "child.py").write_text(CHILD)
                results[mode] = result = logcast_phase(str(own), args.lines, mode)
                result["load"] = mode_load
                hub_rates[mode].append(result["hub_rate"])
            result = results["auto"]
            result["cat"] = base
            rows.append(result)
            print(
                f"run {run + 1} [load {load:.2f}]: child into cat {base:.2f}s, under logcast {result['child']:.2f}s "
                f"({result['child'] / base:.2f}x); hub {result['hub_rate']:,.0f} lines/s; "
                f"SQLite {result['store_rate']:,.0f} lines/s; peak RSS {result['rss_mb']:.0f} MB; "
                f"store_lost {result['store_lost']:.0f}",
                flush=True,
            )
            print(
                "  into the hub by parse: "
                + "; ".join(
                    f"{mode} {results[mode]['hub_rate']:,.0f} lines/s [load {results[mode]['load']:.2f}]"
                    for mode in order
                ),
                flush=True,
            )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    ratio = statistics.median(r["child"] / r["cat"] for r in rows)
    print(f"\nmedian of {len(rows)} runs, {args.lines:,} lines of ~100 bytes (parse: auto, the default):")
    print(f"  child into `cat > /dev/null`   {med('cat'):.2f} s   (baseline, this run)")
    print(
        f"  child under logcast            {med('child'):.2f} s   = {ratio:.2f}x   (target <= 1.0x, issue #14)"
    )
    print(f"  into the hub                   {med('hub_rate'):,.0f} lines/s")
    print(
        f"  persisted in SQLite            {med('store_rate'):,.0f} lines/s   (target >= 600,000, issue #14)"
    )
    print(f"  peak RSS                       {med('rss_mb'):.0f} MB   (target <= 200)")
    print(
        f"  lost before SQLite had them    {med('store_lost'):,.0f} lines   "
        "(announced to readers as gaps; 0 is the goal)"
    )
    off = statistics.median(hub_rates["none"])
    print('\nthe model parser\'s cost, into the hub (median; difference against parse = "none": of the')
    print("medians, and the median of each run's own difference, the runs being paired):")
    for mode in modes:
        rate = statistics.median(hub_rates[mode])
        paired = statistics.median(
            (mine / none - 1) * 100 for mine, none in zip(hub_rates[mode], hub_rates["none"], strict=True)
        )
        label = {"none": 'parse = "none"', "auto": "auto (no key)", "llamacpp": 'parse = "llamacpp"'}[mode]
        diff = "" if mode == "none" else f"   {(rate / off - 1) * 100:+.1f}% (paired {paired:+.1f}%)"
        print(f"  {label:22s} {rate:,.0f} lines/s{diff}")
    print(
        f"load average (1 min) over the measurements: {min(loads):.2f} to {max(loads):.2f}, "
        f"{os.getloadavg()[0]:.2f} at the end ({os.cpu_count()} CPUs, shared)"
    )


if __name__ == "__main__":
    main()
