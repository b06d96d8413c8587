"""A child for the cluster tests: prints `tick <n>` RATE times a second, forever."""

import sys
import time

rate = float(sys.argv[1]) if len(sys.argv) > 1 else 200.0
start = time.monotonic()
n = 0
while True:
    due = int((time.monotonic() - start) * rate)
    while n < due:
        print(f"tick {n}")
        n += 1
    time.sleep(0.002)
