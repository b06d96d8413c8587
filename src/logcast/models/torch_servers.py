"""What vLLM and SGLang print alike: Python servers that load checkpoint shards, fail with
a traceback's last line, and say when they are up."""

from __future__ import annotations

from typing import Any, ClassVar

import re2

from logcast.models.base import Parser

# Lines that quote what users typed or what the model answered, which may say anything,
# "Engine loop has died" too: a request logged with its prompt (vLLM's "Received request",
# before 0.10 by default), a response with its text (vLLM's --enable-log-outputs), and
# SGLang's --log-requests ("Receive: obj=GenerateReqInput(text=…)", "Finish: obj=…, out=…").
_USER_TEXT = ("Received request", "Generated response", "Receive: obj=", "Finish: obj=")


def _quotes_users(text: str) -> bool:
    return any(marker in text for marker in _USER_TEXT)


SHARDS = re2.compile(r"checkpoint shards:.*?(\d+)/(\d+) \[")


class TorchServerParser(Parser):
    exception: ClassVar[Any]  # (RE2) the last line of a traceback that means it failed

    def _on_fatal(self, text: str, timestamp: float) -> bool:
        if _quotes_users(text):
            return False
        return self._fail(timestamp)

    def _on_exception(self, text: str, timestamp: float) -> bool:
        if _quotes_users(text) or self.exception.search(text) is None:
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
