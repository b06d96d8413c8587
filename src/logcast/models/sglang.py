"""SGLang's server (`python -m sglang.launch_server`): what its lines say.

Formats read (from sgl-project/sglang): `python/sglang/srt/managers/scheduler.py`, later
`scheduler_metrics_mixin.py` (`Prefill batch. #new-seq: %d, #new-token: %d, #cached-token:
%d, [cache hit rate: %.2f%%, ]token usage: %.2f, #running-req: %d, #queue-req: %d`, in
disaggregated prefill with `input throughput (token/s): %.2f`; `Decode batch. #running-req:
%d, #token: %d, token usage: %.2f, [cuda graph: %s, ]gen throughput (token/s): %.2f,
#queue-req: %d`, every `decode_log_interval` (40) steps), `model_executor/model_runner.py`
(`Load weight begin. avail mem=%.2f GB`, `Load weight end. ...`), `entrypoints/http_server.py`
(`The server is fired up and ready to roll!` after the warmup request, whose batch lines are
not counted), `server_args=ServerArgs(...)` first of all, and uvicorn's access lines.

SGLang prints nothing when the last request ends, so serving turns idle after
`idle_after_s` without a batch line (`implicit_idle`).
"""

from __future__ import annotations

from typing import ClassVar

import re2

from logcast.models.base import AFTER_LOAD, ALIVE, PRE, STARTABLE, Row, number
from logcast.models.torch_servers import TorchServerParser
from logcast.models.vllm import INFERENCE_POST

__all__ = ["SglangParser"]

_NEW_SEQ = re2.compile(r"#new-seq: (\d+)")
_RUNNING = re2.compile(r"#running-req: (\d+)")
_GEN = re2.compile(r"gen throughput \(token/s\): ([\d.]+)")
_INPUT = re2.compile(r"input throughput \(token/s\): ([\d.]+)")
_EXCEPTION = re2.compile(r"^(?:[\w.]+\.)?(?:ValueError|RuntimeError): ")


class SglangParser(TorchServerParser):
    exception = _EXCEPTION
    kind: ClassVar[str] = "sglang"
    implicit_idle: ClassVar[bool] = True
    rows: ClassVar[tuple[Row, ...]] = (
        # a scheduler died: the server goes down with it
        Row("Scheduler hit an exception", "_on_fatal", ALIVE),
        Row("Received sigquit from a child", "_on_fatal", ALIVE),
        # start-up errors
        Row("Initialization failed", "_on_fatal", PRE),
        Row("Not enough memory", "_on_fatal", PRE),
        Row("out of memory", "_on_fatal", PRE),
        Row("ValueError: ", "_on_exception", PRE),
        Row("RuntimeError: ", "_on_exception", PRE),
        # the load
        Row("server_args=ServerArgs", "_on_start", STARTABLE),
        Row("Load weight begin", "_on_load", PRE),
        Row("Load weight end", "_on_load", PRE),
        Row("checkpoint shards:", "_on_shards", PRE),
        # up, after the warmup request
        Row("fired up and ready to roll", "_on_ready", PRE),
        # requests (the warmup's batch lines come while loading: not rows then)
        Row("Prefill batch", "_on_prefill", AFTER_LOAD),
        Row("Decode batch", "_on_decode", AFTER_LOAD),
        Row('"POST /', "_on_access", AFTER_LOAD),
    )

    def _reset(self) -> None:
        # Access lines count requests; without them (access log off) the prefill batches'
        # new sequences do, a little over (a chunked prompt is prefilled in pieces).
        self._accessed = 0
        self._new_seqs = 0
        super()._reset()

    def _on_prefill(self, text: str, timestamp: float) -> bool:
        found = _NEW_SEQ.search(text)
        if found is None or not self._serving(timestamp):
            return False
        self._new_seqs += int(found.group(1))
        if not self._accessed:
            self.requests = self._new_seqs
            self.last_request_at = timestamp
        rate = _INPUT.search(text)
        if rate is not None:
            self.prompt_tokens_per_s = number(rate.group(1))
        return True

    def _on_decode(self, text: str, timestamp: float) -> bool:
        found = _RUNNING.search(text)
        if found is None:
            return False
        if int(found.group(1)) > 0:
            self._serving(timestamp)
        rate = _GEN.search(text)
        if rate is not None:
            self.gen_tokens_per_s = number(rate.group(1))
        return True

    def _on_access(self, text: str, timestamp: float) -> bool:
        if INFERENCE_POST.search(text) is None:
            return False
        self._accessed += 1
        self.requests = self._accessed
        self.last_request_at = timestamp
        return True
