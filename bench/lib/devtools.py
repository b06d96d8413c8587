"""Headless Chromium driven over `--remote-debugging-pipe` with a few DevTools commands, each
with a deadline. Not Playwright: it enables DevTools' Network domain on every page, and that
alone made the viewer several times slower (figures: bench/README.md)."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.util import CHROMIUM, CHROMIUM_ARGS, stop_group

# as Playwright adds them: a headless page is never treated as a background one
CHROMIUM_EXTRA = [
    "--headless",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--mute-audio",
    "--window-size=1280,800",
]
VIEWPORT = {"width": 1280, "height": 800}


class DevToolsError(RuntimeError):
    pass


class Chromium:
    """`/usr/bin/chromium`, started by this bench in its own process group and driven over
    `--remote-debugging-pipe` (fd 3: commands in; fd 4: answers and events out; each message
    is JSON ended by a NUL byte). A reader thread matches answers to commands and hands
    events to the tab whose session they belong to. Every command has a deadline."""

    def __init__(
        self,
        folder: Path,
        log_path: Path,
        on_spawn: Callable[[subprocess.Popen[bytes]], None] = lambda proc: None,
    ) -> None:
        """Start Chromium (profile in `folder`, output to `log_path`); `on_spawn` is told
        its process as soon as it exists (for a watchdog), before the first command."""
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        # Chromium wants the pipe on fds 3 and 4: bash moves them there and execs it
        # (first above 10, so that neither number is already 3 or 4)
        hi_r, hi_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(out_w)
        command = [
            CHROMIUM,
            *CHROMIUM_ARGS,
            *CHROMIUM_EXTRA,
            "--remote-debugging-pipe",
            f"--user-data-dir={folder}",
            "about:blank",
        ]
        shell = f'exec "$@" 3<&{hi_r} 4>&{hi_w} {hi_r}<&- {hi_w}>&-'
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/bash", "-c", shell, "bash", *command],
                pass_fds=(hi_r, hi_w),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        os.close(hi_r)
        os.close(hi_w)
        on_spawn(self.proc)
        self._w = cmd_w
        self._r = out_r
        self._ids = itertools.count(1)
        self._answers: dict[int, dict[str, Any]] = {}
        self._waiting: set[int] = set()
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self.listeners: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self.gone = False
        threading.Thread(target=self._read, name="devtools-reader", daemon=True).start()
        self.version = self.send("Browser.getVersion", timeout=60)["product"]

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                data = os.read(self._r, 1 << 20)
                if not data:
                    break
                buf += data
                pos = 0
                while (end := buf.find(b"\0", pos)) >= 0:
                    self._dispatch(json.loads(buf[pos:end]))
                    pos = end + 1
                buf = buf[pos:]
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self.gone = True
                self._cond.notify_all()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "id" in msg:
            with self._cond:
                if msg["id"] in self._waiting:
                    self._answers[msg["id"]] = msg
                    self._cond.notify_all()
            return
        listener = self.listeners.get(msg.get("sessionId", ""))
        if listener is not None:
            listener(msg.get("method", ""), msg.get("params", {}))

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        i = next(self._ids)
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        with self._cond:
            if self.gone:
                raise DevToolsError("Chromium is gone")
            self._waiting.add(i)
        with self._write_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._w, view) :]
        deadline = time.monotonic() + timeout
        with self._cond:
            try:
                while i not in self._answers:
                    left = deadline - time.monotonic()
                    if self.gone:
                        raise DevToolsError(f"{method}: Chromium is gone")
                    if left <= 0:
                        raise TimeoutError(f"{method}: no answer within {timeout:g} s")
                    self._cond.wait(left)
                answer = self._answers.pop(i)
            finally:
                self._waiting.discard(i)
        if "error" in answer:
            raise DevToolsError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        stop_group(self.proc, 5)  # renderers, the GPU process and zygotes are in its group
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)


class Tab:
    """One page in its own browser context, with the viewport set and `init_script` (if any)
    run before any page script. Console messages go to `on_console`; what a subclass does
    not take, if logged as an error, and uncaught exceptions are kept in `errors`."""

    def __init__(self, chrome: Chromium, init_script: str | None = None, network: bool = False) -> None:
        self.chrome = chrome
        self.errors: list[str] = []
        self.loaded = threading.Event()
        self.profiling = False
        self.context = chrome.send("Target.createBrowserContext")["browserContextId"]
        self.target = chrome.send(
            "Target.createTarget", {"url": "about:blank", "browserContextId": self.context, **VIEWPORT}
        )["targetId"]
        self.session = chrome.send("Target.attachToTarget", {"targetId": self.target, "flatten": True})[
            "sessionId"
        ]
        chrome.listeners[self.session] = self._event
        for method in ("Page.enable", "Runtime.enable", "Performance.enable"):
            self.send(method)
        if network:
            self.send("Network.enable")
        self.send("Emulation.setDeviceMetricsOverride", {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False})
        if init_script is not None:
            self.send("Page.addScriptToEvaluateOnNewDocument", {"source": init_script})

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        return self.chrome.send(method, params, self.session, timeout)

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            args = params.get("args") or [{}]
            text = str(args[0].get("value", ""))
            if not self.on_console(text) and params.get("type") == "error" and len(self.errors) < 20:
                self.errors.append(text[:200])
        elif method == "Runtime.exceptionThrown" and len(self.errors) < 20:
            details = params.get("exceptionDetails", {})
            self.errors.append(
                str(details.get("exception", {}).get("description") or details.get("text"))[:200]
            )
        elif method == "Page.loadEventFired":
            self.loaded.set()

    def on_console(self, text: str) -> bool:
        """A console message (its first argument, as text); True if it was taken. Called on
        the DevTools reader thread."""
        return False

    def navigate(self, url: str, wait_load: bool, timeout: float = 30.0) -> None:
        self.loaded.clear()
        result = self.send("Page.navigate", {"url": url}, timeout)
        if result.get("errorText"):
            raise DevToolsError(f"navigate {url}: {result['errorText']}")
        if wait_load and not self.loaded.wait(timeout):
            raise TimeoutError(f"{url} did not load within {timeout:g} s")

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The JSON value of `expression` (DevTools' Runtime.evaluate: not subject to the CSP)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise DevToolsError(str(details.get("exception", {}).get("description") or details.get("text")))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"not true within {timeout:g} s: {expression}")
            value = self.evaluate(expression, timeout=left)
            if value:
                return value
            time.sleep(0.05)

    def wait_until(self, predicate: Callable[[], Any], timeout: float) -> bool:
        """Wait for what the page's console tells (no command to the page)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def metrics(self) -> dict[str, float]:
        """Performance metrics after a forced GC (JSHeapUsedSize is then what the page keeps)."""
        self.send("HeapProfiler.collectGarbage", timeout=60)
        return {m["name"]: m["value"] for m in self.send("Performance.getMetrics")["metrics"]}

    def start_profile(self) -> None:
        self.send("Profiler.enable")
        self.send("Profiler.setSamplingInterval", {"interval": 500})
        self.send("Profiler.start")
        self.profiling = True

    def stop_profile(self) -> dict[str, Any] | None:
        if not self.profiling:
            return None
        self.profiling = False
        try:
            return self.send("Profiler.stop", timeout=60)["profile"]  # type: ignore[no-any-return]
        except Exception as exc:
            print(f"  (profile failed: {exc})")
            return None

    def close(self) -> None:
        self.chrome.listeners.pop(self.session, None)
        with contextlib.suppress(Exception):
            self.chrome.send("Target.closeTarget", {"targetId": self.target}, timeout=10)
        with contextlib.suppress(Exception):
            self.chrome.send("Target.disposeBrowserContext", {"browserContextId": self.context}, timeout=10)
