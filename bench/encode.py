"""The wire bytes of a store page: each format's encoding of 2,000 lines one record at a time
(the baseline, what a page cost before `encode.Bulk`) against the whole list at once.

Thread CPU time per line, the best of `--repeat` passes over `--pages` pages, for lines
as bench/burst.py's child writes them and for Python logging lines of mixed levels.

    python bench/encode.py [--pages 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from logcast.types import Level, LogRecord, Stream
from logcast.web import encode

PAGE = 2000
FORMATS: dict[str, tuple[Callable[[LogRecord], bytes], Callable[[list[LogRecord]], list[bytes]]]] = {
    "SSE (one message a line)": (encode.live_sse, encode.SSE.encode),
    "batched SSE (event JSON)": (encode.live_json, encode.JSON.encode),
    "WebSocket, format=json": (encode.live_ws_json, encode.WS_JSON.encode),
    "log object (history)": (encode.encode_log, encode.LOG),
}


def burst_page(first: int) -> list[LogRecord]:
    """Lines like bench/burst.py's child's, stored 50 to a timestamp as packs hold them."""
    return [
        LogRecord(
            seq,
            1_765_000_000.0 + seq // 50 * 0.001,
            Level.INFO,
            f"{seq:09d} {1_765_000_000.0 + seq * 1e-6:17.6f} " + "x" * 60,
            Stream.STDOUT,
            "flood",
            1,
        )
        for seq in range(first, first + PAGE)
    ]


def logging_page(first: int) -> list[LogRecord]:
    levels = (Level.INFO,) * 18 + (Level.WARNING, Level.ERROR)
    return [
        LogRecord(
            seq,
            1_765_000_000.0 + seq // 20 * 0.01,
            levels[seq % 20],
            f'2026-12-06 12:00:{seq % 60:02d},{seq % 1000:03d} - app - {levels[seq % 20].value.upper()} - "GET /v1" {seq}',
            Stream.STDERR,
            "api",
            3,
        )
        for seq in range(first, first + PAGE)
    ]


def per_line(
    encode_page: Callable[[list[LogRecord]], object], pages: list[list[LogRecord]], repeat: int
) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        for page in pages:
            encode_page(page)
        best = min(best, time.thread_time() - started)
    return best / (len(pages) * PAGE) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for label, make in (
        ("bench/burst.py's lines", burst_page),
        ("Python logging, mixed levels", logging_page),
    ):
        pages = [make(1 + i * PAGE) for i in range(args.pages)]
        print(f"{label}: ns of CPU a line, {args.pages} pages of {PAGE}, best of {args.repeat}")
        for name, (one, many) in FORMATS.items():
            for page in pages[:2]:
                assert many(page) == [one(r) for r in page], name
            alone = per_line(lambda page, one=one: [one(r) for r in page], pages, args.repeat)
            at_once = per_line(many, pages, args.repeat)
            print(f"  {name:<28} one by one {alone:6.0f}   at once {at_once:6.0f}   ({alone / at_once:.2f}x)")


if __name__ == "__main__":
    main()
