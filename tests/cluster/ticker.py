"""A child for the cluster tests: prints `tick <n>` (or `WORD <n>`) RATE times a second, forever."""

import sys
import time

rate = float(sys.argv[1]) if len(sys.argv) > 1 else 200.0
word = sys.argv[2] if len(sys.argv) > 2 else "tick"
start = time.monotonic()
n = 0
while True:
    due = int((time.monotonic() - start) * rate)
    while n < due:
        print(f"{word} {n}")
        n += 1
    time.sleep(0.002)
