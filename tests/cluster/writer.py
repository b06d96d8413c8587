"""A child for the Redis-away test: writes `i <counter> <time.monotonic()>` RATE times a
second until SIGTERM, measuring the longest time between two consecutive successful
writes (a capture that blocks on Redis would stall it). At exit it writes
`{"last": <last counter written>, "max_gap": <seconds>}` to REPORT and says it on stderr.

    python -u writer.py RATE REPORT
"""

import json
import os
import signal
import sys
import time

rate = float(sys.argv[1])
report = sys.argv[2]
stopping = False


def stop(signum, frame):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)

start = last_write = time.monotonic()
max_gap = 0.0
counter = 0
while not stopping:
    due = int((time.monotonic() - start) * rate)
    while counter < due and not stopping:
        print(f"i {counter} {time.monotonic():.6f}")  # stdout is unbuffered (-u): one write each
        now = time.monotonic()
        max_gap = max(max_gap, now - last_write)
        last_write = now
        counter += 1
    time.sleep(0.001)

with open(report + ".tmp", "w") as out:
    json.dump({"last": counter - 1, "max_gap": max_gap}, out)
os.replace(report + ".tmp", report)
print(f"writer: {counter} lines, longest write stall {max_gap:.4f} s", file=sys.stderr)
