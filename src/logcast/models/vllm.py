"""vLLM's OpenAI server (`vllm serve`): what its lines say, V0 and V1 engines.

Formats read (from vllm-project/vllm): `vllm/v1/metrics/loggers.py` (V1: `[Engine 000: ]Avg
prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s, Running: %d
reqs, Waiting: %d reqs, [Preemptions: %d, ]GPU KV cache usage: ...`), `vllm/engine/metrics.py`
(V0: `... Running: %d reqs, Swapped: %d reqs, Pending: %d reqs, ...`; logged at debug
level, so unseen, while the engine stays idle), `model_executor/model_loader/weight_utils.py`
(`Loading safetensors checkpoint shards:  50% Completed | 1/2 [...]`, a tqdm bar whose format
ends in a newline), `entrypoints/openai/api_server.py` (`vLLM API server version %s`,
`Starting vLLM API server [%d ]on %s`, printed once the engine is up), `v1/engine/async_llm.py`
and `engine/async_llm_engine.py` (`Added request %s.`), uvicorn's `Application startup
complete.` and access lines. Newer releases put `(APIServer pid=N) ` or `(EngineCore_0 pid=N) `
in front of every line.
"""

from __future__ import annotations

from typing import ClassVar

import re2

from logcast.models.base import AFTER_LOAD, ALIVE, PRE, STARTABLE, Row
from logcast.models.torch_servers import TorchServerParser

__all__ = ["VllmParser"]

_THROUGHPUT = re2.compile(
    r"Avg prompt throughput: ([\d.]+) tokens/s.*?Avg generation throughput: ([\d.]+) tokens/s"
    r".*?Running: (\d+) reqs.*?(?:Waiting|Pending): (\d+) reqs"
)
_ENGINE = re2.compile(r"Engine (\d{1,4}): ")
# The last line of a traceback: the exception's name at the front of the message.
_EXCEPTION = re2.compile(
    r"^(?:\x1b\[[\d;]*m)?(?:\([^)]*\) )?(?:\x1b\[[\d;]*m)?(?:[\w.]+\.)?"
    r"(?:ValueError|RuntimeError): "
)
# The inference routes; a POST elsewhere (/tokenize, LoRA loading) is not a request.
INFERENCE_POST = re2.compile(
    r'"POST (?:/v1/(?:chat/completions|completions|embeddings|responses|audio/\w+|rerank|score)'
    r"|/v2/rerank|/generate|/invocations|/pooling|/classify|/score|/rerank)[?\s]"
)


class VllmParser(TorchServerParser):
    exception = _EXCEPTION
    kind: ClassVar[str] = "vllm"
    rows: ClassVar[tuple[Row, ...]] = (
        # the engine died under a running server
        Row("EngineDeadError", "_on_fatal", ALIVE),
        Row("Engine loop has died", "_on_fatal", ALIVE),
        Row("EngineCore encountered a fatal error", "_on_fatal", ALIVE),
        # start-up errors (a traceback ends in the exception's line)
        Row("EngineCore failed to start", "_on_fatal", PRE),
        Row("initialization failed", "_on_fatal", PRE),
        # torch's OutOfMemoryError (not any "out of memory": vLLM 0.6 says "if you are
        # running out of memory, consider ..." on every start that captures CUDA graphs)
        Row("OutOfMemoryError", "_on_fatal", PRE),
        Row("out of memory. Tried to allocate", "_on_fatal", PRE),
        Row("ValueError: ", "_on_exception", PRE),
        Row("RuntimeError: ", "_on_exception", PRE),
        # the load
        Row("vLLM API server version", "_on_start", STARTABLE),
        Row("Initializing a V1 LLM engine", "_on_start", STARTABLE),
        Row("Initializing an LLM engine", "_on_start", STARTABLE),
        Row("Starting to load model", "_on_load", PRE),
        Row("checkpoint shards:", "_on_shards", PRE),
        # up
        Row("Starting vLLM API server", "_on_ready", PRE),
        Row("Application startup complete", "_on_ready", PRE),
        Row("Uvicorn running on", "_on_ready", PRE),
        # requests
        Row("Avg prompt throughput", "_on_throughput", ALIVE),
        Row('"POST /', "_on_access", AFTER_LOAD),
        Row("Added request", "_on_added", AFTER_LOAD),
    )

    def _reset(self) -> None:
        # Two counts of requests: uvicorn's access lines, and "Added request" (logged only
        # with request logging on). The access lines win when there are any.
        self._accessed = 0
        self._added = 0
        # data parallel: each engine says its own figures (`Engine 000: ...`, `Engine 001:
        # ...`); the server's are their sums, and it serves while any of them does
        self._engines: dict[str, tuple[float, float, int]] = {}
        super()._reset()

    def _on_throughput(self, text: str, timestamp: float) -> bool:
        found = _THROUGHPUT.search(text)
        if found is None:
            return False
        prompt, gen, running, waiting = found.groups()
        engine = _ENGINE.search(text)
        self._engines[engine.group(1) if engine is not None else ""] = (
            float(prompt),
            float(gen),
            int(running) + int(waiting),
        )
        figures = self._engines.values()
        self.prompt_tokens_per_s = sum(f[0] for f in figures)
        self.gen_tokens_per_s = sum(f[1] for f in figures)
        if any(f[2] for f in figures):
            self._serving(timestamp)
        elif self.gen_tokens_per_s or self.prompt_tokens_per_s:
            # requests came and went within one window of the figures: served, idle now
            self._serving(timestamp)
            self._idle(timestamp)
        else:
            self._idle(timestamp)
        return True

    def _on_access(self, text: str, timestamp: float) -> bool:
        if INFERENCE_POST.search(text) is None:
            return False
        self._accessed += 1
        self.requests = self._accessed
        self.last_request_at = timestamp
        return True

    def _on_added(self, text: str, timestamp: float) -> bool:
        self._added += 1
        if not self._accessed:
            self.requests = self._added
        self.last_request_at = timestamp
        return True
