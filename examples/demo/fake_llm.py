"""A fake llama.cpp `llama-server`: it prints what the real one prints, and serves nothing.

Its lines follow llama-server's formats (b6xxx, started with `--log-prefix --log-timestamps`,
so each line carries the time since start and a level letter): the model load, the loader's
progress dots on one line that only ends at 100 % (flushed dot by dot), "model loaded" and
"server is listening on", then made-up requests with llama.cpp's slot lines and timings.
Everything goes to stderr, as llama-server's logs do. `--fail` makes the load fail.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

MODEL = "models/qwen3-0.6b-q8_0.gguf"
N_TENSORS = 310
START = time.monotonic()


def stamp() -> str:
    """common_log's timestamp: minutes.seconds.milliseconds.microseconds since start."""
    us = int((time.monotonic() - START) * 1e6)
    return f"{us // 60_000_000}.{us // 1_000_000 % 60:02d}.{us // 1000 % 1000:03d}.{us % 1000:03d}"


def log(text: str, level: str = "I") -> None:
    sys.stderr.write(f"{stamp()} {level} {text}\n")
    sys.stderr.flush()


def load(seconds: float, fail: bool) -> bool:
    log("build: 6713 (a1b2c3d4) with cc (Ubuntu 13.3.0-6ubuntu2~24.04) 13.3.0 for x86_64-linux-gnu")
    log("system info: n_threads = 8, n_threads_batch = 8, total_threads = 16")
    log("srv          main: binding port with default address family")
    # as llama-server says it, before the model loads: a readiness pattern must not match it
    log("srv          main: HTTP server is listening, hostname: 127.0.0.1, port: 8081, http threads: 15")
    log("srv          main: loading model")
    log(f"srv    load_model: loading model '{MODEL}'")
    log("llama_model_load_from_file_impl: using device CUDA0 (NVIDIA GeForce RTX 4090) - 23717 MiB free")
    log(
        f"llama_model_loader: loaded meta data with 32 key-value pairs and {N_TENSORS} tensors "
        f"from {MODEL} (version GGUF V3 (latest))"
    )
    log("llama_model_loader: Dumping metadata keys/values. Note: KV overrides do not apply in this output.")
    for i, (key, kind, value) in enumerate(
        [
            ("general.architecture", "str", "qwen3"),
            ("general.type", "str", "model"),
            ("general.name", "str", "Qwen3 0.6B"),
            ("qwen3.block_count", "u32", "28"),
            ("qwen3.context_length", "u32", "40960"),
            ("qwen3.embedding_length", "u32", "1024"),
            ("tokenizer.ggml.model", "str", "gpt2"),
        ]
    ):
        log(f"llama_model_loader: - kv {i:3d}: {key:>42} {kind:<16} = {value}")
        time.sleep(0.02)
    if fail:
        log(
            "llama_model_load: error loading model: error loading model architecture: "
            "unknown model architecture: 'qwen35'",
            "E",
        )
        log("llama_model_load_from_file_impl: failed to load model", "E")
        log(f"common_init_from_params: failed to load model '{MODEL}'", "E")
        log(f"srv    load_model: failed to load model, '{MODEL}'", "E")
        log("srv    operator(): operator(): cleaning up before exit...")
        log("srv          main: exiting due to model loading error", "E")
        return False
    log("print_info: file format = GGUF V3 (latest)")
    log("print_info: file type   = Q8_0")
    log("print_info: file size   = 604.15 MiB (8.50 BPW)")
    log("load: special tokens cache size = 26")
    log("load_tensors: loading model tensors, this can take a while... (mmap = true)")
    log("load_tensors: offloading 28 repeating layers to GPU")
    log("load_tensors: offloaded 29/29 layers to GPU")
    log("load_tensors:        CUDA0 model buffer size =   604.15 MiB")
    log("load_tensors:   CPU_Mapped model buffer size =   157.65 MiB")
    # llama_model_load's default progress callback: a dot each time the loaded percentage
    # grows, continuing the same line (no prefix), and the newline at 100 %. The tensors
    # load at a steady pace, so the line grows without a pause until it ends.
    shown = 0
    for tensor in range(1, N_TENSORS + 1):
        percentage = 100 * tensor // N_TENSORS
        if percentage > shown:
            shown = percentage
            sys.stderr.write(".")
            if percentage >= 100:
                sys.stderr.write("\n")
            sys.stderr.flush()
        time.sleep(seconds / N_TENSORS)
    log("llama_context: constructing llama_context")
    log("llama_context: n_seq_max     = 1")
    log("llama_context: n_ctx         = 4096")
    log("llama_context: n_batch       = 2048")
    log("llama_kv_cache:      CUDA0 KV buffer size =   448.00 MiB")
    log("llama_context:      CUDA0 compute buffer size =   298.75 MiB")
    log(
        "common_init_from_params: warming up the model with an empty run - please wait ... (--no-warmup to disable)"
    )
    time.sleep(0.3)
    log("srv          init: initializing slots, n_slots = 1")
    log("slot         init: id  0 | task -1 | new slot, n_ctx = 4096")
    log("srv          main: model loaded")
    log("srv          main: chat template, chat_template: {%- if tools %}, example_format: '<|im_start|>user")
    sys.stderr.write("Hello<|im_end|>\n<|im_start|>assistant\n'\n")
    log("srv          main: server is listening on http://127.0.0.1:8081")
    log("srv  update_slots: all slots are idle")
    return True


def serve() -> None:
    task = 0
    while True:
        time.sleep(random.uniform(0.5, 4.0))
        log("srv  params_from_: Chat format: Content-only")
        prompt = random.randint(20, 1500)
        if prompt > 1400:  # the request does not fit: refused before any slot takes it
            log(
                f"srv    send_error: task id = {task}, error: the request exceeds the available context size, "
                "try increasing it",
                "E",
            )
            log("srv  log_server_r: request: POST /v1/chat/completions 127.0.0.1 400")
            task += 1
            continue
        gen = random.randint(16, 400)
        prompt_tps = random.uniform(800.0, 1600.0)
        gen_tps = random.uniform(60.0, 120.0)
        head = f"id  0 | task {task} |"
        log("slot get_availabl: id  0 | task -1 | selected slot by LRU, t_last = -1")
        log(f"slot launch_slot_: {head} processing task, is_child = 0")
        log(f"slot update_slots: {head} new prompt, n_ctx_slot = 4096, n_keep = 0, task.n_tokens = {prompt}")
        log(f"slot update_slots: {head} n_tokens = 0, memory_seq_rm [0, end)")
        t_prompt = prompt / prompt_tps
        time.sleep(t_prompt)
        log(
            f"slot update_slots: {head} prompt processing progress, n_tokens = {prompt}, "
            f"batch.n_tokens = {prompt}, progress = 1.000000"
        )
        log(f"slot update_slots: {head} prompt done, n_tokens = {prompt}, batch.n_tokens = {prompt}")
        t_gen = gen / gen_tps
        time.sleep(t_gen)
        ms_prompt, ms_gen = t_prompt * 1e3, t_gen * 1e3
        log(
            f"slot print_timing: {head} prompt eval time = {ms_prompt:10.2f} ms / {prompt:5d} tokens "
            f"({ms_prompt / prompt:8.2f} ms per token, {prompt_tps:8.2f} tokens per second)"
        )
        log(
            f"slot print_timing: {head}        eval time = {ms_gen:10.2f} ms / {gen:5d} tokens "
            f"({ms_gen / gen:8.2f} ms per token, {gen_tps:8.2f} tokens per second)"
        )
        log(
            f"slot print_timing: {head}       total time = {ms_prompt + ms_gen:10.2f} ms / {prompt + gen:5d} tokens"
        )
        log(f"slot      release: {head} stop processing: n_tokens = {prompt + gen}, truncated = 0")
        log("srv  update_slots: all slots are idle")
        log("srv  log_server_r: request: POST /v1/chat/completions 127.0.0.1 200")
        task += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-seconds", type=float, default=5.0, help="how long the weights take to load")
    parser.add_argument("--fail", action="store_true", help="fail to load the model (unknown architecture)")
    args = parser.parse_args()
    random.seed()
    if not load(args.load_seconds, args.fail):
        return 1
    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
