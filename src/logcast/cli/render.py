"""Terminal rendering shared by `tail`, `ps` and `monitor`: colours, times, safe text.

Log text is data: a terminal gets it with every control sequence but colours removed, and
a file or a pipe (or `NO_COLOR`) gets it without colours too.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from typing import TextIO

from logcast.ansi import sanitize_for_terminal, strip_ansi
from logcast.types import Level, ProcessState

RESET = "\x1b[0m"

# Rich style names; `ANSI` maps them to SGR parameters for plain output.
LEVEL_STYLE: dict[Level, str] = {
    Level.DEBUG: "dim",
    Level.INFO: "",
    Level.SUCCESS: "green",
    Level.WARNING: "yellow",
    Level.ERROR: "red",
    Level.CRITICAL: "bold red",
}

STATE_STYLE: dict[ProcessState, str] = {
    ProcessState.STOPPED: "dim",
    ProcessState.STARTING: "yellow",
    ProcessState.RUNNING: "green",
    ProcessState.READY: "bold green",
    ProcessState.STOPPING: "yellow",
    ProcessState.EXITED: "dim",
    ProcessState.CRASHED: "bold red",
    ProcessState.BACKOFF: "red",
    ProcessState.UNKNOWN: "dim",  # its host is lost: not running, nor known to have stopped
}

# One colour per process, none of them a level colour.
PROCESS_STYLES = ("cyan", "magenta", "blue", "bright_cyan", "bright_magenta", "bright_blue")

ANSI: dict[str, str] = {
    "": "",
    "dim": "2",
    "bold": "1",
    "red": "31",
    "bold red": "1;31",
    "green": "32",
    "bold green": "1;32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "bright_blue": "94",
    "bright_magenta": "95",
    "bright_cyan": "96",
}


def color_enabled(stream: TextIO) -> bool:
    """Colours when the stream is a terminal and `NO_COLOR` is not set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def safe_text(text: str, *, raw: bool = False, color: bool = True) -> str:
    """Log text made safe to print: controls removed, colours kept only when `color`."""
    if raw:
        return text
    return sanitize_for_terminal(text) if color else strip_ansi(text)


def plain(text: str) -> str:
    """Words that may come from a server (a name, a host, an error, a reason) made safe
    to print, colours removed too: `safe_text` without colour."""
    return safe_text(text, color=False)


_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def _printable(text: str) -> bool:
    """`text.isprintable()`, four times faster on ASCII text (a flood's usual batch):
    `isprintable` asks Unicode of every character, where ASCII text is printable when
    deleting its printable bytes (0x20-0x7E) leaves nothing."""
    if text.isascii():
        return not text.encode("ascii").translate(None, _PRINTABLE_ASCII)
    return text.isprintable()


def safe_texts(texts: list[str], *, raw: bool = False, color: bool = True) -> list[str]:
    """`safe_text` of each text, a batch at a time.

    The batch is looked at once, joined by spaces: when it is all printable (no control
    character at all, the usual case), or when making the whole safe changes nothing, none
    of its texts needs a change (what crosses a space is a sequence that is removed, so
    the whole would change; the colours kept hold no space), and the list comes back as
    is; otherwise each text is made safe on its own, as `safe_text` does it.
    """
    if raw or not texts:
        return texts
    joined = " ".join(texts)
    if _printable(joined):
        return texts
    clean = sanitize_for_terminal if color else strip_ansi
    if clean(joined) == joined:
        return texts
    return [clean(text) for text in texts]


# In orjson's output (UTF-8), what it leaves as it is but a terminal obeys: DEL, the C1
# controls (U+0080-U+009F: 0x9B is CSI to some terminals) and the bidirectional controls.
_JSON_UNSAFE = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")


def _escaped(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(match[0].decode("utf-8"))


def safe_json(data: bytes) -> bytes:
    """JSON bytes (orjson's) to print: what a terminal would obey is written as a `\\uXXXX`
    escape, the same JSON for whoever reads it (orjson escapes the C0 controls itself)."""
    if b"\x7f" not in data and b"\xc2" not in data and b"\xe2" not in data:
        return data
    return _JSON_UNSAFE.sub(_escaped, data)


def paint(text: str, style: str, color: bool) -> str:
    """`text` in a style of `ANSI`, or as is when colours are off."""
    code = ANSI.get(style, "")
    if not color or not code or not text:
        return text
    return f"\x1b[{code}m{text}{RESET}"


def process_style(index: int) -> str:
    return PROCESS_STYLES[index % len(PROCESS_STYLES)]


_second: tuple[int, str] = (-1, "")  # the last second `clock` wrote: a flood stays in one for long


# Times a clock can show: after 1970 and before the year 5138. A server may send any
# number (infinity, 1e300), which `localtime` and `int` refuse.
_TIME_MAX = 1e11


def clock(timestamp: float) -> str:
    """`13:04:05.123`, local time; `--:--:--.---` for a time no clock shows."""
    global _second
    if not 0 < timestamp < _TIME_MAX:  # also NaN
        return "--:--:--.---"
    whole = int(timestamp)
    last, text = _second
    if whole != last:
        text = time.strftime("%H:%M:%S", time.localtime(whole))
        _second = (whole, text)
    return f"{text}.{int((timestamp - whole) * 1000):03d}"


_MILLIS = [f".{ms:03d}" for ms in range(1001)]  # 1000: a fraction a rounding away from 1


def clocks(timestamps: Iterable[float]) -> list[str]:
    """`clock` of each timestamp, a batch at a time."""
    out: list[str] = []
    last, text = -1, ""
    for timestamp in timestamps:
        if not 0 < timestamp < _TIME_MAX:  # also NaN
            out.append("--:--:--.---")
            continue
        whole = int(timestamp)
        if whole != last:
            last, text = whole, time.strftime("%H:%M:%S", time.localtime(whole))
        out.append(text + _MILLIS[int((timestamp - whole) * 1000)])
    return out


def duration(seconds: float | None) -> str:
    """A short uptime: `12s`, `5m03s`, `1h02m`, `3d04h`; `-` when unknown (or not a
    number of seconds a process can have run: infinity, NaN)."""
    if seconds is None or not 0 <= seconds < _TIME_MAX:
        return "-"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def size(count: float | None) -> str:
    """Bytes, short: `512B`, `14.2M`, `3.1G`; `-` when unknown."""
    if count is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if count < 1024 or unit == "G":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    return "-"
