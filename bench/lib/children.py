"""The children the benchmarks supervise, as Python sources written to a temp file and run:
each writes ~100-byte lines `<line number, 9 digits> <time.time() when written, 17 chars> xxx…`,
which the clients check (line number + 1) and time (child's write → client's receive)."""

import textwrap

PACED_CHILD = textwrap.dedent(
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

BURST_CHILD = textwrap.dedent(
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

# the history the browser benchmark opens
HISTORY_CHILD = textwrap.dedent(
    """
    # argv: lines, rate (lines/s). Writes them (1000 per write, paced), then sleeps until stopped.
    import os, sys, time
    total, rate = int(sys.argv[1]), float(sys.argv[2])
    pad = b"x" * 71

    def write(data):
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]

    t0 = time.time()
    for start in range(0, total, 1000):
        due = t0 + start / rate
        if due > time.time():
            time.sleep(due - time.time())
        now = time.time()
        write(b"".join(b"%09d %17.6f %s\\n" % (i, now, pad) for i in range(start, min(total, start + 1000))))
    while True:
        time.sleep(3600)
    """
)
