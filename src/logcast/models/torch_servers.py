"""What vLLM and SGLang print alike: Python servers that load checkpoint shards, fail with
a traceback's last line, and say when they are up."""

from __future__ import annotations

from typing import Any, ClassVar

import re2

from logcast.models.base import Parser

# A request logged with its prompt (vLLM before 0.10 by default, SGLang with
# --log-requests): what users typed, which may say anything, "Engine loop has died" too.
_USER_TEXT = "Received request"
SHARDS = re2.compile(r"checkpoint shards:.*?(\d+)/(\d+) \[")


class TorchServerParser(Parser):
    exception: ClassVar[Any]  # (RE2) the last line of a traceback that means it failed

    def _on_fatal(self, text: str, timestamp: float) -> bool:
        if _USER_TEXT in text:
            return False
        return self._fail(timestamp)

    def _on_exception(self, text: str, timestamp: float) -> bool:
        if _USER_TEXT in text or self.exception.search(text) is None:
            return False
        return self._fail(timestamp)

    def _on_start(self, text: str, timestamp: float) -> bool:
        return self._begin(timestamp)

    def _on_load(self, text: str, timestamp: float) -> bool:
        return self._loading(timestamp)

    def _on_shards(self, text: str, timestamp: float) -> bool:
        found = SHARDS.search(text)
        if found is None:
            return False
        done, total = int(found.group(1)), int(found.group(2))
        return total > 0 and self._progress(done / total, timestamp)

    def _on_ready(self, text: str, timestamp: float) -> bool:
        return self._ready(timestamp)
