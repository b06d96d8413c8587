"""Model servers' output → model state: llama.cpp's `llama-server`, vLLM and SGLang.

Pure and cheap on the capture path: `make_watcher(kind)` gives a `ModelWatcher`; feed it each
chunk of framed records (`texts`, `partial`, the chunk's timestamp) and read `state` (a
`ModelState`: phase loading/ready/serving/idle/failed, load progress, time to ready, request
count, tokens/s, last request time) when `feed` returns True. `last_marked` names the lines
of the last chunk it read. Nothing else of the project is imported here.
"""

from logcast.models.base import ModelState, Phase
from logcast.models.detect import KINDS, detect
from logcast.models.watcher import CHOICES, ModelWatcher, make_watcher

__all__ = ["CHOICES", "KINDS", "ModelState", "ModelWatcher", "Phase", "detect", "make_watcher"]
