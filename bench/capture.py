"""framing + level detection, exactly as PipeReader does per chunk (columns, no tuple per line)."""

import time

from logcast.capture.framing import LineFramer
from logcast.capture.levels import detect_levels
from logcast.types import Lines

POOLS = {
    "vllm/uvicorn/python (token)": [
        "INFO 01-01 12:00:00 [engine.py:123] Avg prompt throughput: 0.0 tokens/s, running: 1 reqs, waiting: 0",
        'INFO:     127.0.0.1:50000 - "GET /v1/models HTTP/1.1" 200 OK .......................................',
        "2024-01-01 12:00:00,123 - myapp.db - WARNING - connection pool is almost exhausted (9/10) .......",
        "2024-01-01T12:00:00.123456Z  INFO hyper::server: listening on 0.0.0.0:8080 with 16 worker threads ..",
    ],
    "llama.cpp/prints (no token)": [
        "llama_model_loader: - kv  12:                       general.file_type u32              = 15 ......",
        "slot update_slots: id  0 | task 123 | prompt processing progress, n_past = 2048, n_tokens = 2048 ..",
        "Epoch 1 step 100 loss=0.1234 lr=0.0001 grad_norm=1.234 tokens/sec=12345.6 elapsed=123.4s eta=2h ..",
        "print_info: file format = GGUF V3 (latest), file type = Q4_K - Medium, file size = 4.58 GiB .......",
    ],
    "bench/ingest.py line (logfmt)": [f"{1:08d} " + "x" * 80 + " level=info msg=benchmark"],
}


def _one_of(i: int, names: tuple[str, str, str]) -> str:
    """The first name for 90% of the lines, the second for 7%, the third for 3%, spread out."""
    r = i * 37 % 100
    return names[0] if r < 90 else names[1] if r < 97 else names[2]


# One program each (what a flood from one child is), its levels mixed.
WORDS = ("INFO", "WARNING", "ERROR")
POOLS["Python logging, 90/7/3% levels"] = [
    f"2026-12-06 12:00:{i % 60:02d},{i % 1000:03d} - vllm.engine - {_one_of(i, WORDS)} - Avg prompt throughput: {i % 97}.0 tokens/s"
    for i in range(1000)
]
POOLS["logfmt with time=, 90/7/3% levels"] = [
    f'time="2026-12-06T12:00:{i % 60:02d}Z" level={_one_of(i, ("info", "warning", "error"))} msg="request {i} handled" status=200'
    for i in range(1000)
]
POOLS["uvicorn access log"] = [
    f'INFO:     127.0.0.1:{50000 + i % 999} - "GET /v1/models HTTP/1.1" 200 OK' for i in range(1000)
]
POOLS["mixed"] = POOLS["vllm/uvicorn/python (token)"] + POOLS["llama.cpp/prints (no token)"]


def run(pool, n=1_000_000):
    data = b"".join(pool[i % len(pool)].encode() + b"\n" for i in range(n))
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    best = best_f = 1e9
    for _ in range(5):
        t = time.thread_time()
        framer = LineFramer()
        count = 0
        for c in chunks:
            texts, partial = framer.feed(c)
            lines = Lines(texts, detect_levels(texts), partial)
            count += len(lines.texts)
        best = min(best, time.thread_time() - t)
        t = time.thread_time()
        framer = LineFramer()
        for c in chunks:
            framer.feed(c)
        best_f = min(best_f, time.thread_time() - t)
    assert count == n
    return len(data) / n, best_f, best


for name, pool in POOLS.items():
    avg, f, total = run(pool)
    print(f"{name:32s} 1,000,000 lines of ~{avg:.0f} B: framing {f:.3f} s, framing+levels {total:.3f} s")
