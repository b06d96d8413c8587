"""A fake vLLM OpenAI server (`vllm serve`, V1 engine): it prints what vLLM prints, serves nothing.

Its lines follow vLLM 0.10's formats: the start-up with `(APIServer pid=N)` and
`(EngineCore_0 pid=N)` prefixes, the checkpoint-shard bars (tqdm, to stderr), "Starting vLLM
API server" and uvicorn's "Application startup complete.", then made-up traffic: uvicorn
access lines for the requests and, every few seconds while anything moves, the engine's
"Avg prompt throughput: ... tokens/s, Avg generation throughput: ... tokens/s, Running: N
reqs, ..." line. As in vLLM, its own log goes to stdout and uvicorn's and tqdm's to stderr.
`--fail` makes the start-up fail (the KV cache does not fit).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass

MODEL = "Qwen/Qwen3-8B"
VERSION = "0.10.1.1"
API_PID = os.getpid()
CORE_PID = API_PID + 71
SHARDS = 5


def now() -> str:
    return time.strftime("%m-%d %H:%M:%S")


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def api(where: str, text: str, level: str = "INFO") -> None:
    out(f"(APIServer pid={API_PID}) {level} {now()} [{where}] {text}")


def core(where: str, text: str, level: str = "INFO") -> None:
    out(f"(EngineCore_0 pid={CORE_PID}) {level} {now()} [{where}] {text}")


def start(shard_seconds: float, fail: bool) -> bool:
    out(f"INFO {now()} [__init__.py:241] Automatically detected platform cuda.")
    api("api_server.py:1805", f"vLLM API server version {VERSION}")
    api(
        "utils.py:326",
        f"non-default args: {{'model_tag': '{MODEL}', 'model': '{MODEL}', 'max_model_len': 16384}}",
    )
    api("__init__.py:711", "Resolved architecture: Qwen3ForCausalLM")
    api("__init__.py:1750", "Using max model len 16384")
    api("scheduler.py:222", "Chunked prefill is enabled with max_num_batched_tokens=8192.")
    time.sleep(0.5)
    core("core.py:644", "Waiting for init message from front-end.")
    core(
        "core.py:74",
        f"Initializing a V1 LLM engine (v{VERSION}) with config: model='{MODEL}', speculative_config=None, "
        f"tokenizer='{MODEL}', dtype=torch.bfloat16, max_seq_len=16384, tensor_parallel_size=1, "
        "quantization=None, enforce_eager=False, kv_cache_dtype=auto, enable_prefix_caching=True",
    )
    core(
        "parallel_state.py:1134",
        "rank 0 in world size 1 is assigned as DP rank 0, PP rank 0, TP rank 0, EP rank 0",
    )
    core("gpu_model_runner.py:1953", f"Starting to load model {MODEL}...")
    core("cuda.py:328", "Using Flash Attention backend on V1 engine.")
    core("weight_utils.py:296", "Using model weights format ['*.safetensors']")
    # tqdm with vLLM's bar format (it ends in a newline), redrawn from a carriage return
    begun = time.monotonic()
    for done in range(SHARDS + 1):
        elapsed = time.monotonic() - begun
        rate = f"{done / elapsed:5.2f}it/s" if done else "?it/s"
        left = "?" if not done else f"00:{int((SHARDS - done) * shard_seconds):02d}"
        sys.stderr.write(
            f"\r(EngineCore_0 pid={CORE_PID}) Loading safetensors checkpoint shards: {100 * done // SHARDS:3d}% "
            f"Completed | {done}/{SHARDS} [00:{int(elapsed):02d}<{left}, {rate}]\n"
        )
        sys.stderr.flush()
        if done < SHARDS:
            time.sleep(shard_seconds)
    err(f"(EngineCore_0 pid={CORE_PID}) ")
    took = time.monotonic() - begun
    core("default_loader.py:262", f"Loading weights took {took:.2f} seconds")
    core("gpu_model_runner.py:2007", f"Model loading took 15.2683 GiB and {took + 0.7:.6f} seconds")
    time.sleep(0.5)
    core(
        "backends.py:548",
        "Using cache directory: /root/.cache/vllm/torch_compile_cache/6a7b3c2d1e/rank_0_0/backbone "
        "for vLLM's torch.compile",
    )
    core("backends.py:215", "Compiling a graph for dynamic shape takes 6.12 s")
    if fail:
        core("gpu_worker.py:276", "Available KV cache memory: 0.93 GiB")
        core("core.py:700", "EngineCore failed to start.", "ERROR")
        core("core.py:700", "Traceback (most recent call last):", "ERROR")
        core(
            "core.py:700",
            '  File "/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/core.py", line 691',
            "ERROR",
        )
        core(
            "core.py:700",
            "ValueError: To serve at least one request with the models's max seq len (16384), (2.25 GiB KV cache "
            "is needed, which is larger than the available KV cache memory (0.93 GiB). Based on the available "
            "memory, the estimated maximum model length is 6768. Try increasing `gpu_memory_utilization` or "
            "decreasing `max_model_len` when initializing the engine.",
            "ERROR",
        )
        err(
            f"(APIServer pid={API_PID}) RuntimeError: Engine core initialization failed. See root cause above. "
            "Failed core proc(s): {}"
        )
        return False
    core("gpu_worker.py:276", "Available KV cache memory: 4.80 GiB")
    core("kv_cache_utils.py:849", "GPU KV cache size: 34,944 tokens")
    core("kv_cache_utils.py:853", "Maximum concurrency for 16,384 tokens per request: 2.13x")
    for done in range(0, 68, 17):  # tqdm's own format: redrawn in place, the newline at the end
        sys.stderr.write(
            f"\rCapturing CUDA graph shapes: {100 * done // 67:3d}%| | {done}/67 [00:0{done // 17}<00:03]"
        )
        sys.stderr.flush()
        time.sleep(0.25)
    sys.stderr.write(
        f"\rCapturing CUDA graph shapes: 100%|██████████| 67/67 [00:01<00:00, {67 / 1.0:.2f}it/s]\n"
    )
    core("gpu_model_runner.py:2708", "Graph capturing finished in 1 secs, took 0.59 GiB")
    core("core.py:214", "init engine (profile, create kv cache, warmup model) took 8.41 seconds")
    api(
        "loggers.py:142",
        "Engine 000: vllm cache_config_info with initialization after num_gpu_blocks is: 2184",
    )
    api("api_server.py:1611", "Supported_tasks: ['generate']")
    api("api_server.py:1880", "Starting vLLM API server 0 on http://0.0.0.0:8000")
    api("launcher.py:29", "Available routes are:")
    for route, methods in [
        ("/health", "GET"),
        ("/v1/models", "GET"),
        ("/v1/chat/completions", "POST"),
        ("/v1/completions", "POST"),
    ]:
        api("launcher.py:37", f"Route: {route}, Methods: {methods}")
    err(f"(APIServer pid={API_PID}) INFO:     Started server process [{API_PID}]")
    err(f"(APIServer pid={API_PID}) INFO:     Waiting for application startup.")
    err(f"(APIServer pid={API_PID}) INFO:     Application startup complete.")
    return True


@dataclass
class Request:
    prompt: int
    left: int  # tokens still to generate


def serve(interval: float, quiet_spell: float) -> None:
    step = 0.1
    running: list[Request] = []
    waiting: list[Request] = []
    prompt_tokens = gen_tokens = 0
    last_prompt = last_gen = 0.0
    next_log = time.monotonic() + interval
    next_arrival = time.monotonic() + random.uniform(0.5, 3.0)
    port = random.randint(40000, 60000)
    while True:
        time.sleep(step)
        clock = time.monotonic()
        if clock >= next_arrival:
            for _ in range(random.choice([1, 1, 1, 2, 3])):
                port += 1
                route = random.choice(["/v1/chat/completions", "/v1/chat/completions", "/v1/completions"])
                out(f'(APIServer pid={API_PID}) INFO:     127.0.0.1:{port} - "POST {route} HTTP/1.1" 200 OK')
                waiting.append(Request(random.randint(20, 2000), random.randint(16, 300)))
            if random.random() < 0.3:
                port += 1
                out(f'(APIServer pid={API_PID}) INFO:     127.0.0.1:{port} - "GET /health HTTP/1.1" 200 OK')
            # bursts of traffic, and now and then a quiet spell long enough to go idle
            quiet = random.random() < 0.25
            spell = random.uniform(quiet_spell * 0.6, quiet_spell)
            next_arrival = clock + (spell if quiet else random.expovariate(1 / 2.5))
        while waiting and len(running) < 4:  # the prefill of a new request
            request = waiting.pop(0)
            prompt_tokens += request.prompt
            running.append(request)
        for request in running:  # decode: ~45 tokens/s each
            made = min(request.left, int(random.uniform(3.5, 5.5)))
            request.left -= made
            gen_tokens += made
        running = [r for r in running if r.left > 0]
        if clock >= next_log:
            prompt_tp, gen_tp = prompt_tokens / interval, gen_tokens / interval
            if prompt_tp or gen_tp or last_prompt or last_gen:  # vLLM logs at debug level when idle
                usage = sum(r.prompt for r in running) / 34944 * 100
                api(
                    "loggers.py:123",
                    f"Engine 000: Avg prompt throughput: {prompt_tp:.1f} tokens/s, "
                    f"Avg generation throughput: {gen_tp:.1f} tokens/s, Running: {len(running)} reqs, "
                    f"Waiting: {len(waiting)} reqs, GPU KV cache usage: {usage:.1f}%, "
                    f"Prefix cache hit rate: {random.uniform(20, 60):.1f}%",
                )
            last_prompt, last_gen = prompt_tp, gen_tp
            prompt_tokens = gen_tokens = 0
            next_log = clock + interval


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shard-seconds", type=float, default=0.6, help="how long each checkpoint shard takes"
    )
    parser.add_argument("--log-interval", type=float, default=3.0, help="seconds between throughput lines")
    parser.add_argument("--fail", action="store_true", help="fail at start-up (the KV cache does not fit)")
    parser.add_argument(
        "--quiet-spell", type=float, default=20.0, help="longest quiet spell between bursts of traffic (s)"
    )
    args = parser.parse_args()
    random.seed()
    if not start(args.shard_seconds, args.fail):
        return 1
    serve(args.log_interval, args.quiet_spell)
    return 0


if __name__ == "__main__":
    sys.exit(main())
