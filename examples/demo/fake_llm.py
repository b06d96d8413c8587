"""A fake LLM model server: loads with a progress bar, then logs requests at mixed levels."""

import random
import sys
import time

random.seed()
print("llama_model_loader: loaded meta data with 24 key-value pairs and 291 tensors from qwen3-0.6b.gguf")
print("llm_load_print_meta: n_ctx_train = 32768, n_embd = 1024, n_layer = 28")
for pct in range(0, 101, 5):
    bar = "#" * (pct // 5) + "." * (20 - pct // 5)
    sys.stdout.write(f"\rloading model tensors [{bar}] {pct:3d}%")
    sys.stdout.flush()
    time.sleep(0.15)
sys.stdout.write("\n")
print("INFO 11-22 13:00:00 [engine.py:212] KV cache: 4096 blocks, 64 MiB")
print("main: server is listening on http://127.0.0.1:8081 - starting the main loop")
n = 0
while True:
    n += 1
    tokens = random.randint(8, 900)
    latency = tokens * random.uniform(0.004, 0.02)
    roll = random.random()
    if roll < 0.05:
        print(
            f"ERROR 11-22 13:00:00 [server.py:88] request {n}: CUDA out of memory while allocating KV block",
            file=sys.stderr,
        )
    elif roll < 0.15:
        print(f"WARNING 11-22 13:00:00 [scheduler.py:41] request {n}: prompt truncated to 4096 tokens")
    else:
        print(
            f"INFO 11-22 13:00:00 [server.py:120] request {n}: \x1b[32m200 OK\x1b[0m {tokens} tokens in {latency:.2f}s"
        )
    time.sleep(random.uniform(0.2, 1.2))
