"""Which model server is talking: llama.cpp, vLLM or SGLang, from lines only it prints.

The signs are literals that the other two never print. The first line with a sign decides;
within a line SGLang's signs are tried before vLLM's (an SGLang log may name vLLM, the
reverse does not happen), and vLLM's before llama.cpp's.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["KINDS", "SIGNS", "detect", "detect_line"]

KINDS: tuple[str, ...] = ("llamacpp", "vllm", "sglang")

SIGNS: tuple[tuple[str, str], ...] = (
    ("server_args=ServerArgs", "sglang"),
    ("fired up and ready to roll", "sglang"),
    ("Load weight begin", "sglang"),
    ("Prefill batch", "sglang"),
    ("Decode batch", "sglang"),
    ("sglang", "sglang"),
    ("SGLang", "sglang"),
    ("vLLM", "vllm"),
    ("EngineCore", "vllm"),
    ("Avg prompt throughput", "vllm"),
    # llama.cpp's own functions, not any `llama_`: LlamaIndex logs `llama_index.core…`
    ("llama_model_load", "llamacpp"),
    ("llama_context", "llamacpp"),
    ("llama_new_context", "llamacpp"),
    ("llama_kv_cache", "llamacpp"),
    ("llama_load_model", "llamacpp"),
    ("llama_init_from", "llamacpp"),
    ("llama_print_timings", "llamacpp"),
    ("llm_load_", "llamacpp"),
    ("load_tensors:", "llamacpp"),
    ("print_timing", "llamacpp"),
    ("launch_slot", "llamacpp"),
    ("all slots are idle", "llamacpp"),
    ("server is listening on", "llamacpp"),
    ("main: loading model", "llamacpp"),
    ("HTTP server listening", "llamacpp"),
)
_NEEDLES: tuple[str, ...] = tuple(needle for needle, _ in SIGNS)


def detect_line(text: str) -> str | None:
    """The server a single line belongs to, if it says."""
    for needle, kind in SIGNS:
        if needle in text:
            return kind
    return None


def detect(texts: Sequence[str], limit: int | None = None) -> str | None:
    """The server whose output `texts` (its first lines) is: "llamacpp", "vllm", "sglang",
    or None when no line says. Only the first `limit` lines are looked at, if given."""
    lines = texts if limit is None else texts[:limit]
    blob = "\n".join(lines)
    for needle in _NEEDLES:
        if needle in blob:
            break
    else:
        return None
    for text in lines:
        kind = detect_line(text)
        if kind is not None:
            return kind
    return None
