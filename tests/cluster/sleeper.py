"""A child for the cluster tests: says it is up, then sleeps (argv[1:] only marks it in `ps`)."""

import time

print("up", flush=True)
time.sleep(3600)
