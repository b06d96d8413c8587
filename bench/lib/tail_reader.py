"""The far end of a follower's pipe in bench/tail.py: reads it as fast as it can, finds the
flood child's lines in whatever the follower prints around them (a marker, a time, a prefix,
colours), checks that they come all and in order, and writes a JSON report as soon as the
last one arrives (`last_at`, the time of the read that brought it), then again at EOF.

Run as `python tail_reader.py LINES REPORT < pipe`; a script of its own (no imports from
the repo), so that its start costs little and its work is the same for every follower."""

from __future__ import annotations

import json
import os
import re
import sys
import time

# a child line (bench/lib/children.py): number, time written, padding
LINE = re.compile(rb"(\d{9}) \d+\.\d+ x{71}")


def write_report(path: str, report: dict[str, object]) -> None:
    partial = path + ".part"
    with open(partial, "w") as f:
        json.dump(report, f)
    os.replace(partial, path)


def main() -> None:
    expect, path = int(sys.argv[1]), sys.argv[2]
    fd = sys.stdin.fileno()
    pending = b""
    lines = 0  # child lines seen
    following = 0  # the number the next line should carry
    disorder = 0  # lines that did not carry it (a repeat, a skip, a step back)
    first_at = last_at = 0.0
    reported = False
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        now = time.time()
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        numbers = [int(n) for n in LINE.findall(data, 0, cut)]
        if not numbers:
            continue
        if not lines:
            first_at = now
        lines += len(numbers)
        for number in numbers:
            if number != following:
                disorder += 1
            following = number + 1
        if numbers[-1] == expect - 1 and not reported:
            last_at = now
            reported = True
            write_report(path, _report(expect, lines, disorder, first_at, last_at, eof=False))
    write_report(path, _report(expect, lines, disorder, first_at, last_at, eof=True))


def _report(
    expect: int, lines: int, disorder: int, first_at: float, last_at: float, *, eof: bool
) -> dict[str, object]:
    return {
        "expect": expect,
        "lines": lines,
        "disorder": disorder,
        "complete": lines == expect and disorder == 0,
        "first_at": first_at,
        "last_at": last_at or None,
        "eof": eof,
    }


if __name__ == "__main__":
    main()
