"""A worker that processes jobs and crashes now and then (loguru-style lines)."""

import random
import sys
import time


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"


print(f"{stamp()} | INFO     | worker:main:10 - worker started, waiting for jobs")
for job in range(1, random.randint(15, 40)):
    time.sleep(random.uniform(0.3, 1.0))
    if random.random() < 0.1:
        print(f"{stamp()} | WARNING  | worker:run:22 - job {job} is slow, retrying")
    print(f"{stamp()} | SUCCESS  | worker:run:30 - job {job} done")
print(f"{stamp()} | CRITICAL | worker:run:41 - lost connection to the queue", file=sys.stderr)
sys.exit(3)
