"""libc's `prctl`, resolved once at import: a forked child only calls it (`spawn`), and
the child subreaper flag is set with it (`adopt`). None where there is no such call."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

__all__ = ["prctl"]


def _load() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return call


prctl = _load()
