"""llama.cpp's `llama-server`: what its lines say, across its log formats.

Formats read (from ggml-org/llama.cpp, `tools/server/server.cpp`, `server-context.cpp`,
`utils.hpp`/`server-common.h`, `src/llama.cpp`; `examples/server/` before the move):

- 2024-09 on, `common/log`: plain lines, `srv  %12.*s: ` and `slot %12.*s: id %2d | task %d | `
  prefixes (`srv  update_slots: all slots are idle`, `slot launch_slot_: id  0 | task 0 |
  processing task`), `main: ...` or, newest, `srv          main: ...`; with `--log-prefix`
  or timestamps a `0.05.583.301 I ` in front, which is why nothing here is anchored.
- mid-2024, `server_log`: JSON objects (`"msg":"slot is processing task"`) or, with
  `--log-format text`, `INFO [  function] message | key=value`; the timings read
  `prompt eval time     = ...` and `generation eval time = ... runs ...`.
- The load: `llama_model_loader:`, `llm_load_*`, `load_tensors:` lines (among others), then the
  default progress callback prints one `.` each time the loaded percentage grows, all on
  one line that ends at 100 %; logcast hands that on as partial pieces, then the last one.
"""

from __future__ import annotations

from typing import ClassVar

import re2

from logcast.models.base import AFTER_LOAD, ALIVE, PRE, STARTABLE, Parser, Phase, Row, number

__all__ = ["LlamaCppParser"]

_NOT_FAILED = ALIVE

_TOKENS_PER_SECOND = re2.compile(r"([-+\w.]+) tokens per second")


class LlamaCppParser(Parser):
    kind: ClassVar[str] = "llamacpp"
    rows: ClassVar[tuple[Row, ...]] = (
        # fatal in any phase: the process aborts after these
        Row("CUDA error", "_on_fatal", _NOT_FAILED),
        Row("GGML_ASSERT", "_on_fatal", _NOT_FAILED),
        Row("exiting due to", "_on_fatal", _NOT_FAILED),
        # fatal while loading
        Row("failed to load model", "_on_fatal", PRE),
        Row("error loading model", "_on_fatal", PRE),
        Row("unable to load model", "_on_fatal", PRE),
        Row("out of memory", "_on_fatal", PRE),
        Row("failed to allocate", "_on_fatal", PRE),
        Row("failed to initialize the context", "_on_fatal", PRE),
        Row("couldn't bind", "_on_fatal", PRE),
        # the load
        Row("main: loading model", "_on_load_start", STARTABLE),
        Row("load_model: loading model", "_on_load_start", STARTABLE),
        Row("llama_model_load", "_on_load", PRE),
        Row("llama_load_model", "_on_load", PRE),
        Row("llm_load_", "_on_load", PRE),
        Row("load_tensors:", "_on_load", PRE),
        # up
        Row("model loaded", "_on_ready", PRE),
        Row("server is listening", "_on_listening", PRE),
        # requests
        Row("processing task", "_on_task", ALIVE),
        Row("all slots are idle", "_on_all_idle", ALIVE),
        Row("tokens per second", "_on_timing", AFTER_LOAD),
    )

    def _reset(self) -> None:
        self._dots = 0  # dots of the progress line so far
        self._dots_open = False  # a piece of the dots line came, its end not yet
        super()._reset()

    def _scans(self, phase: Phase | None) -> bool:
        return phase is Phase.LOADING

    def _may_scan(self, blob: str) -> bool:
        # a line that starts with a dot, or any line while the dots line is open (its end
        # may come as an empty piece)
        return self._dots_open or blob[:1] == "." or "\n." in blob

    def _scan(self, text: str, partial: bool, timestamp: float) -> bool:
        """The loader's dots: one line of `.` only, arriving as partial pieces (flushed
        while it grows) and a last piece (maybe empty) when its newline comes."""
        if text[:1] != ".":
            if not (self._dots_open and not text and not partial):
                return False
        elif text.strip("."):
            return False
        if not self._dots_open:
            self._dots = 0
        self._dots += len(text)
        if partial:
            self._dots_open = True
            self.load_progress = min(self._dots, 99) / 100
        else:
            self._dots_open = False
            self.load_progress = 1.0
        return True

    def _on_fatal(self, text: str, timestamp: float) -> bool:
        if "pinned memory" in text:  # a warning: it falls back to pageable memory and goes on
            return False
        return self._fail(timestamp)

    def _on_load_start(self, text: str, timestamp: float) -> bool:
        return self._begin(timestamp)

    def _on_load(self, text: str, timestamp: float) -> bool:
        return self._loading(timestamp)

    def _on_ready(self, text: str, timestamp: float) -> bool:
        return self._ready(timestamp)

    def _on_listening(self, text: str, timestamp: float) -> bool:
        # "HTTP server is listening, hostname: ..." (late 2024) is printed before the load
        if "HTTP server is listening" in text:
            return False
        return self._ready(timestamp)

    def _on_task(self, text: str, timestamp: float) -> bool:
        if not self._serving(timestamp):
            return False
        if "is_child = 1" not in text:  # a child task is a part of its parent's request
            self._request(timestamp)
        return True

    def _on_all_idle(self, text: str, timestamp: float) -> bool:
        return self._idle(timestamp)

    def _on_timing(self, text: str, timestamp: float) -> bool:
        """`prompt eval time = ... ( ... tokens per second)` and `eval time = ...` (or, mid
        2024, `generation eval time = ... runs ...`): the request that just ended."""
        found = _TOKENS_PER_SECOND.search(text)
        if found is None:
            return False
        if "prompt eval time" in text:
            self.prompt_tokens_per_s = number(found.group(1))
        elif "eval time" in text:
            self.gen_tokens_per_s = number(found.group(1))
        else:
            return False
        return True
