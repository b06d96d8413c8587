"""The web dashboard in a real headless Chromium against the real `logcast serve`.

Note on `wait_for_function`: pass an arrow function (`"() => …"`), never a bare
expression. Playwright evaluates a bare expression with `eval` inside the page, which
our Content-Security-Policy (no 'unsafe-eval') rightly refuses.

Each test starts its own server with small Python children, opens a page and watches
it with Playwright's auto-waiting `expect`; no test sleeps for a fixed time. Waits on
the server side (a child has printed N lines) poll the REST API.

Every page is also checked for Content-Security-Policy violations and uncaught script
errors when the test ends (the `page` fixture), so each test doubles as a CSP test.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.conftest import Server, py_command
from tests.util import CHROMIUM, CHROMIUM_ARGS, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
# The page's default timeout (`open_page`) does not reach `expect`, whose own is 5 s: a
# Chromium or a server stalled that long on a loaded 2-core machine would fail an assertion
# that holds a moment later.
expect.set_options(timeout=15_000)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


# Registered before any page script runs (DevTools injects it, so the page's CSP does not
# apply to it): records CSP violations so a test can assert there were none.
CSP_PROBE = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class PageProbe:
    """Console errors, CSP violations and uncaught exceptions of one page."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def csp_violations(self) -> list[str]:
        found = [m for m in self.console_errors if "Content Security Policy" in m or "Refused to" in m]
        try:
            found += self.page.evaluate("window.__csp || []")
        except playwright_api.Error:
            pass  # the page is gone
        return found

    def check(self) -> None:
        assert not self.csp_violations(), self.csp_violations()
        assert not self.page_errors, self.page_errors


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """`open_page(width=1280, height=800)` → a fresh page in its own context."""
    contexts: list[tuple[Any, PageProbe]] = []

    def make(width: int = 1280, height: int = 800, **context_args: Any) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, **context_args)
        context.add_init_script(CSP_PROBE)
        page = context.new_page()
        page.set_default_timeout(15_000)
        probe = PageProbe(page)
        page.probe = probe  # type: ignore[attr-defined]
        contexts.append((context, probe))
        return page

    yield make
    try:
        for _, probe in contexts:
            probe.check()
    finally:
        for context, _ in contexts:
            context.close()


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:
    return open_page()


# --- helpers -----------------------------------------------------------------------------


def toml_process(name: str, source: str, **options: Any) -> str:
    lines = [f"[process.{name}]", f"command = {py_command(source)}"]
    options.setdefault("autostart", True)
    options.setdefault("restart", "never")
    for key, value in options.items():
        if isinstance(value, dict):
            pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {pairs} }}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def process_info(server: Server, name: str) -> dict[str, Any]:
    with server.client() as client:
        response = client.get(f"/api/processes/{name}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def wait_lines(server: Server, name: str, count: int, timeout: float = 20.0) -> dict[str, Any]:
    return wait_for(
        lambda: (p := process_info(server, name)) and p["lines"] >= count and p,
        timeout,
        f"{name} to print {count} lines",
    )


def viewer_url(server: Server, process: str, **params: str) -> str:
    return f"{server.url}/logs.html?{urlencode({'process': process, **params})}"


def open_viewer(page: Any, server: Server, process: str, **params: str) -> None:
    page.goto(viewer_url(server, process, **params))
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    page.wait_for_function("() => window.__logcast && window.__logcast.stats().historyDone")


def row_texts(page: Any, root: str = "#log") -> list[str]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        f"{root} .row:not([hidden]) .msg", "els => els.map((e) => e.textContent)"
    )


def stats(page: Any) -> dict[str, Any]:
    return page.evaluate("window.__logcast.stats()")  # type: ignore[no-any-return]


# Children ---------------------------------------------------------------------------------

SLOW_COUNTER = """
import time
for i in range(1, 6):
    print(f"history {i}")
time.sleep(0.5)
i = 0
while True:
    i += 1
    print(f"live {i}")
    time.sleep(0.2)
"""

FAST_COUNTER = """
import time
i = 0
while True:
    i += 1
    print(f"tick {i}")
    time.sleep(0.05)
"""

LEVELS = """
import logging, sys, time
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(levelname)s %(message)s")
log = logging.getLogger("demo")
log.debug("detail for debugging")
log.info("all is well")
log.warning("careful now")
log.error("boom happened")
time.sleep(3600)
"""


# --- the viewer --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_history_then_live(make_server: Callable[..., Server], page: Any, transport: str) -> None:
    server = make_server(toml_process("counter", SLOW_COUNTER))
    wait_lines(server, "counter", 5)
    open_viewer(page, server, "counter", transport=transport)
    log = page.locator("#log")
    for i in range(1, 6):
        expect(log.locator(".row.k-line", has_text=f"history {i}")).to_have_count(1)
    # lines printed after the page connected arrive live, in order
    expect(log.locator(".row .msg", has_text=re.compile(r"^live 3$"))).to_have_count(1)
    seqs = page.eval_on_selector_all(
        "#log .row[data-seq]:not([hidden])", "els => els.map(e => +e.dataset.seq)"
    )
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    texts = row_texts(page)
    assert texts.index("history 5") < texts.index("live 1")
    expect(page.locator("#proc-state")).to_have_attribute("data-state", re.compile("running|ready"))
    assert page.title().startswith("counter")


def test_level_filter_and_deep_link(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("levels", LEVELS))
    wait_lines(server, "levels", 4)
    open_viewer(page, server, "levels", level="error")
    log = page.locator("#log")
    expect(page.locator("#level")).to_have_value("error")
    expect(log.locator(".row.lvl-error", has_text="boom happened")).to_have_count(1)
    expect(log.locator(".row.k-line", has_text="careful now")).to_have_count(0)
    expect(log.locator(".row.k-line", has_text="all is well")).to_have_count(0)

    page.select_option("#level", "warning")
    expect(log.locator(".row.lvl-warning", has_text="careful now")).to_have_count(1)
    expect(log.locator(".row.k-line", has_text="all is well")).to_have_count(0)
    assert "level=warning" in page.url

    page.select_option("#level", "")
    expect(log.locator(".row.k-line", has_text="detail for debugging")).to_have_count(1)
    expect(log.locator(".row.lvl-debug")).to_have_count(1)

    # a deep link with a search: the query is in the box and highlighted in the rows
    open_viewer(page, server, "levels", q="boom")
    expect(page.locator("#search")).to_have_value("boom")
    expect(log.locator("mark", has_text=re.compile("^boom$", re.I))).to_have_count(1)
    expect(page.locator("#match-count")).to_have_text(re.compile(r"^1 match"))


NEEDLES = """
import time
for i in range(1, 301):
    print(f"needle at {i}" if i in (50, 150, 250) else f"hay {i}")
time.sleep(3600)
"""


def test_search_highlight_next_previous(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("hay", NEEDLES))
    wait_lines(server, "hay", 300)
    open_viewer(page, server, "hay")
    page.locator("#log").focus()
    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.type("NEEDLE")
    count = page.locator("#match-count")
    expect(count).to_have_text("3 matches")

    current = page.locator("#log .row.current")
    page.keyboard.press("Enter")
    expect(count).to_have_text("1 / 3")
    expect(current).to_have_count(1)
    expect(current.locator("mark")).to_have_text("needle")
    expect(current).to_contain_text("needle at 50")
    page.keyboard.press("Enter")
    expect(count).to_have_text("2 / 3")
    expect(current).to_contain_text("needle at 150")
    page.keyboard.press("Shift+Enter")
    expect(count).to_have_text("1 / 3")
    page.click("#prev-match")
    expect(count).to_have_text("3 / 3")
    expect(current).to_contain_text("needle at 250")
    page.click("#next-match")
    expect(count).to_have_text("1 / 3")

    # the list of matches jumps too
    count.click()
    items = page.locator("#match-list button.match")
    expect(items).to_have_count(3)
    items.nth(1).click()
    expect(count).to_have_text("2 / 3")
    expect(current).to_contain_text("needle at 150")
    assert "q=NEEDLE" in page.url

    # a search that finds nothing says so
    page.fill("#search", "no such thing")
    expect(count).to_have_text("no matches")
    expect(page.locator("#log mark")).to_have_count(0)


def test_pause_and_resume_with_waiting_count(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("ticker", FAST_COUNTER))
    wait_lines(server, "ticker", 3)
    open_viewer(page, server, "ticker")
    page.locator("#log").focus()
    page.keyboard.press("Space")
    expect(page.locator("#pause")).to_have_attribute("aria-pressed", "true")
    shown = stats(page)["lines"]
    page.wait_for_function("() => window.__logcast.stats().pending >= 5")
    pending = page.locator("#stat-pending")
    expect(pending).to_have_text(re.compile(r"Paused · \d+ waiting"))
    assert stats(page)["lines"] == shown  # nothing new is drawn while paused
    expect(page.locator("#pause")).to_have_text(re.compile(r"Resume \(\d+\)"))

    page.keyboard.press("Space")
    expect(page.locator("#pause")).to_have_attribute("aria-pressed", "false")
    expect(pending).to_be_hidden()
    page.wait_for_function(f"() => window.__logcast.stats().lines > {shown + 5}")
    # the button works as well as the key
    page.click("#pause")
    expect(page.locator("#pause")).to_have_attribute("aria-pressed", "true")
    page.click("#pause")
    expect(page.locator("#pause")).to_have_attribute("aria-pressed", "false")


def test_reconnect_after_server_restart_loses_and_repeats_nothing(
    make_server: Callable[..., Server], page: Any
) -> None:
    server = make_server(toml_process("ticker", FAST_COUNTER))
    wait_lines(server, "ticker", 10)
    open_viewer(page, server, "ticker", debug="1")
    page.wait_for_function("() => window.__logcast.stats().lastSeq >= 20")
    server.restart()
    before = stats(page)["lastSeq"]
    # the page notices, backs off, reconnects with after=<last seq> and goes on
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=30_000)
    page.wait_for_function(f"() => window.__logcast.stats().lastSeq >= {before + 30}", timeout=30_000)
    s = stats(page)
    seqs = page.evaluate("window.__logcast.seqs()")
    assert s["duplicates"] == 0, s
    assert s["holes"] == 0, s
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a line was lost or repeated"
    assert s["connects"] >= 2
    expect(page.locator("#log .row.k-gap")).to_have_count(0)
    # the restart shows as status rows (the child was stopped and started again)
    assert page.evaluate("window.__logcast.entries().filter((e) => e.kind === 'status').length") >= 1


FLOOD_THEN_WAIT = """
import time
for i in range(1, 1001):
    print(f"flood {i}")
time.sleep(3600)
"""


def test_gap_marker_when_history_left_retention(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(
        "[storage]\nmemory_lines = 100\nretain_lines = 100\n" + toml_process("flood", FLOOD_THEN_WAIT)
    )
    wait_lines(server, "flood", 1000)

    def oldest() -> int:
        with server.client() as client:
            logs = client.get("/api/processes/flood/logs", params={"after": 0, "limit": 1}).json()["logs"]
        return int(logs[0]["seq"]) if logs else 0

    wait_for(lambda: oldest() > 500, what="retention to drop the oldest lines")
    # resume from seq 1, long gone: the stream must say what was missed
    open_viewer(page, server, "flood", after="1")
    expect(page.locator("#log .row.k-line", has_text="flood 1000")).to_have_count(1)
    page.locator("#log").focus()
    page.keyboard.press("Home")
    gap = page.locator("#log .row.k-gap").first
    expect(gap).to_be_visible()
    expect(gap).to_contain_text(re.compile(r"⚠ [\d,]+ lines? missed \(2–\d+\)"))


def test_viewer_keeps_the_dom_small_with_100k_lines(make_server: Callable[..., Server], page: Any) -> None:
    source = """
import sys, time
out = sys.stdout
for i in range(100_000):
    out.write(f"line {i:06d} " + "x" * 40 + "\\n")
out.flush()
time.sleep(3600)
"""
    server = make_server(toml_process("big", source))
    wait_lines(server, "big", 100_000, timeout=60)
    page.goto(viewer_url(server, "big"))
    page.wait_for_function(
        "() => window.__logcast && window.__logcast.stats().historyDone"
        " && window.__logcast.stats().lines >= 100000",
        timeout=90_000,
    )
    log = page.locator("#log")
    expect(log.locator(".row.k-line", has_text="line 099999")).to_have_count(1)
    assert stats(page)["rows"] < 500

    log.focus()
    page.keyboard.press("Home")
    expect(log.locator(".row.k-line", has_text="line 000000")).to_be_visible()
    assert stats(page)["rows"] < 500
    assert stats(page)["follow"] is False

    # scroll to the middle by hand
    page.evaluate(
        "document.querySelector('#log').scrollTop = document.querySelector('#log').scrollHeight / 2"
    )
    expect(log.locator(".row.k-line", has_text=re.compile(r"line 0(49|50)\d{3}")).first).to_be_visible()
    assert stats(page)["rows"] < 500

    page.keyboard.press("End")
    expect(log.locator(".row.k-line", has_text="line 099999")).to_be_visible()
    assert stats(page)["follow"] is True

    # scrolling up with the wheel stops following the tail; scrolling back down resumes it
    log.hover()
    page.mouse.wheel(0, -600)
    page.wait_for_function("() => !window.__logcast.stats().follow")
    expect(page.locator("#follow")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#jump-bottom")).to_be_visible()
    page.mouse.wheel(0, 5000)
    page.wait_for_function("() => window.__logcast.stats().follow")
    expect(page.locator("#follow")).to_have_attribute("aria-pressed", "true")

    # wrapping long lines keeps the list virtual too
    page.keyboard.press("w")
    expect(page.locator("#log.wrap")).to_have_count(1)
    expect(log.locator(".row.k-line", has_text="line 099999")).to_be_visible()
    assert stats(page)["rows"] < 500


HOSTILE = r"""
import sys, time
print("<script>window.__pwned=1</script>")
print('<img src=x onerror="window.__pwned=1">')
print("before\x1b]0;pwned title\x07after")
print("clear\x1b[2Jscreen\x1b[Hhome")
print("bell\x07 and \x1b[?1049h alt screen")
print("ERROR <img src=y onerror=\"window.__pwned=2\"> failed", file=sys.stderr)
sys.stdout.flush()
time.sleep(3600)
"""


def test_hostile_text_is_shown_literally_and_never_runs(
    make_server: Callable[..., Server], open_page: Callable[..., Any]
) -> None:
    server = make_server(toml_process("evil", HOSTILE))
    wait_lines(server, "evil", 6)
    page = open_page()
    open_viewer(page, server, "evil")
    log = page.locator("#log")
    expect(log.locator(".row.k-line", has_text="<script>window.__pwned=1</script>")).to_have_count(1)
    expect(log.locator(".row.k-line", has_text='<img src=x onerror="window.__pwned=1">')).to_have_count(1)
    texts = row_texts(page)
    assert "beforeafter" in texts  # the OSC title sequence is dropped, text kept
    assert "clearscreenhome" in texts  # cursor moves and screen clears are dropped
    assert "bell and  alt screen" in texts
    assert page.locator("#log img, #log script").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.title() == "evil · logs · logcast"

    # the dashboard shows the last error as text too
    dash = open_page()
    dash.goto(server.url + "/")
    expect(dash.locator("tr[data-process=evil] .last-error")).to_have_text(
        re.compile(r'<img src=y onerror="window.__pwned=2"> failed')
    )
    assert dash.locator("img").count() == 0
    assert dash.evaluate("window.__pwned") is None


def test_ansi_colours_become_spans(make_server: Callable[..., Server], page: Any) -> None:
    source = r"""
import time
print("\x1b[31mred\x1b[0m plain \x1b[1;32mbold green\x1b[0m "
      "\x1b[38;5;208morange\x1b[0m \x1b[38;2;10;20;30mtrue\x1b[m")
time.sleep(3600)
"""
    server = make_server(toml_process("colours", source))
    wait_lines(server, "colours", 1)
    open_viewer(page, server, "colours")
    row = page.locator("#log .row.k-line", has_text="bold green")
    expect(row).to_have_count(1)
    expect(row.locator(".msg")).to_have_text("red plain bold green orange true")
    expect(row.locator("span.fg-1")).to_have_text("red")
    expect(row.locator("span.b.fg-2")).to_have_text("bold green")
    expect(row.locator(".msg > span", has_text="orange")).to_have_css("color", "rgb(255, 135, 0)")
    expect(row.locator(".msg > span", has_text="true")).to_have_css("color", "rgb(10, 20, 30)")
    # a search hit inside a coloured span keeps the colour around the <mark>
    page.fill("#search", "green")
    expect(row.locator("span.b.fg-2 mark")).to_have_text("green")


def test_progress_bar_redraws_collapse_into_one_row(make_server: Callable[..., Server], page: Any) -> None:
    source = r"""
import sys, time
for i in range(0, 101, 10):
    sys.stdout.write(f"\rDownloading: {i:3d}%|" + "#" * (i // 10))
    sys.stdout.flush()
    time.sleep(0.02)
sys.stdout.write("\ndone\n")
sys.stdout.flush()
time.sleep(3600)
"""
    server = make_server(toml_process("progress", source))
    wait_for(lambda: process_info(server, "progress")["lines"] >= 10, what="progress lines")
    open_viewer(page, server, "progress")
    expect(page.locator("#log .row.k-line", has_text="done")).to_have_count(1)
    bars = page.locator("#log .row.k-line", has_text="Downloading:")
    expect(bars).to_have_count(1)
    expect(bars).to_contain_text("100%")
    expect(bars.locator(".updates")).to_have_text(re.compile(r"↻\d+"))


def test_copy_a_line(make_server: Callable[..., Server], open_page: Callable[..., Any]) -> None:
    server = make_server(toml_process("counter", SLOW_COUNTER))
    wait_lines(server, "counter", 5)
    page = open_page(permissions=["clipboard-read", "clipboard-write"])
    open_viewer(page, server, "counter")
    page.locator("#log .row.k-line", has_text="history 3").click()
    expect(page.locator("#log .row.selected")).to_contain_text("history 3")
    page.keyboard.press("c")
    expect(page.locator(".toast", has_text="Line copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "history 3"


def test_clear_history_asks_first(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("counter", SLOW_COUNTER))
    wait_lines(server, "counter", 5)
    open_viewer(page, server, "counter")
    expect(page.locator("#log .row.k-line", has_text="history 1")).to_have_count(1)
    page.click("#clear-history")
    dialog = page.locator("dialog.dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(page.locator("#log .row.k-line", has_text="history 1")).to_have_count(1)

    page.click("#clear-history")
    page.locator("dialog.dialog").get_by_role("button", name="Clear history").click()
    expect(page.locator("#log .row.k-note", has_text="History cleared")).to_have_count(1)
    expect(page.locator("#log .row.k-line", has_text="history 1")).to_have_count(0)
    with server.client() as client:
        logs = client.get("/api/processes/counter/logs", params={"q": "history"}).json()["logs"]
    assert logs == []
    # the stream goes on after a clear
    last = stats(page)["lastSeq"]
    page.wait_for_function(f"() => window.__logcast.stats().lastSeq > {last}")
    # the download link points at the history download
    assert page.get_attribute("#download", "href") == "/api/processes/counter/logs/download"


def test_unknown_process_says_so(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("counter", SLOW_COUNTER))
    page.goto(viewer_url(server, "nosuch"))
    expect(page.locator("#conn")).to_have_attribute("data-state", "disconnected")
    expect(page.locator("#conn")).to_contain_text("unknown process")
    # without a process the viewer offers the list
    page.goto(server.url + "/logs.html")
    expect(page.locator("#picker a", has_text="counter")).to_have_attribute(
        "href", "/logs.html?process=counter"
    )


# --- dashboard and config page ---------------------------------------------------------------


IDLE = """
import time
print("service up", flush=True)
while True:
    time.sleep(0.5)
"""


def test_dashboard_start_stop_and_errors(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("svc", IDLE, autostart=False) + toml_process("other", IDLE))
    page.goto(server.url + "/")
    row = page.locator("tr[data-process=svc]")
    state = row.locator(".state")
    expect(state).to_have_text("stopped")
    expect(row.get_by_role("button", name="stop svc", exact=True)).to_be_disabled()
    row.get_by_role("button", name="start svc", exact=True).click()
    expect(state).to_have_text(re.compile("running|ready"))
    expect(row.locator("td[data-label=PID]")).to_have_text(re.compile(r"^\d+$"))
    expect(row.get_by_role("button", name="start svc", exact=True)).to_be_disabled()
    row.get_by_role("button", name="stop svc", exact=True).click()
    expect(state).to_have_text(re.compile("stopped|exited"))
    expect(page.locator("#sum-processes")).to_have_text("2")

    # a refused action shows the server's reason in a toast and re-enables the buttons
    page.route(
        "**/api/processes/svc/start",
        lambda route: route.fulfill(
            status=409, content_type="application/json", body=json.dumps({"detail": "svc is already running"})
        ),
    )
    row.get_by_role("button", name="start svc", exact=True).click()
    expect(page.locator(".toast-error", has_text="svc is already running")).to_be_visible()
    expect(row.get_by_role("button", name="start svc", exact=True)).to_be_enabled()

    # a click on the row opens its logs
    row.locator(".proc-name").click()
    expect(page).to_have_url(re.compile(r"/logs\.html\?process=svc(&|$)"))


def fabricated_process(name: str, host: str, state: str, pid: int | None) -> dict[str, Any]:
    return {
        "name": name, "state": state, "host": host, "pid": pid, "started_at": 1733412000.0,
        "uptime": 345.0 if state == "running" else None, "exit_code": None, "run": 1, "restarts": 0,
        "lines": 10, "bytes": 100, "lines_per_s": 0.0, "warnings": 0, "errors": 0, "last_error": None,
        "subscribers": 0, "last_seq": 10,
    }  # fmt: skip


def fulfill_json(status: int, body: Any) -> Callable[[Any], None]:
    return lambda route: route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


def test_dashboard_hosts_lost_hosts_and_an_unavailable_server(
    make_server: Callable[..., Server], page: Any
) -> None:
    server = make_server(toml_process("svc", IDLE))
    page.goto(server.url + "/")
    row = page.locator("tr[data-process=svc]")
    expect(row.locator(".state")).to_have_text(re.compile("running|ready"))
    # one machine: the Host column names it, the hosts API has it alive, nothing is grouped
    expect(page.locator(".proc-table thead th").nth(1)).to_have_text("Host")
    expect(row.locator("td[data-label=Host]")).to_have_text(socket.gethostname())
    assert page.evaluate("window.__logcast.hosts()") == [
        {"host": socket.gethostname(), "alive": True, "last_seen": None, "processes": ["svc"]}
    ]
    expect(page.locator("#proc-rows tr.host-row")).to_have_count(0)
    banner = page.locator("#api-banner")
    expect(banner).to_be_hidden()

    # an agent that does not act in time: the control's 504 is a toast with the server's reason
    timeout = f"host {socket.gethostname()!r} did not restart svc within 10 s: no answer"
    page.route("**/api/processes/svc/restart", fulfill_json(504, {"detail": timeout}))
    row.get_by_role("button", name="restart svc", exact=True).click()
    expect(page.locator(".toast-error", has_text=timeout)).to_be_visible()
    expect(row.get_by_role("button", name="restart svc", exact=True)).to_be_enabled()

    # the replica loses its Redis: every API answer is a 503, and the banner says why
    problem = "redis at redis://10.0.0.9:6379 is unreachable: Error 111 connecting. Connection refused."
    page.route("**/api/processes", fulfill_json(503, {"detail": problem}))
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(problem)
    expect(page.locator("#poll")).to_have_attribute("data-state", "reconnecting")
    page.unroute("**/api/processes")
    expect(banner).to_be_hidden()
    expect(page.locator("#poll")).to_have_attribute("data-state", "live")

    # eleven processes on two hosts, one of them lost: grouped under a header per host
    listed = [fabricated_process(f"train-{i}", "gpu-1", "running", 100 + i) for i in range(6)]
    listed += [fabricated_process(f"infer-{i}", "gpu-2", "unknown", 200 + i) for i in range(5)]
    hosts = [
        {"host": "gpu-1", "alive": True, "last_seen": time.time(), "processes": [f"train-{i}" for i in range(6)]},
        {"host": "gpu-2", "alive": False, "last_seen": time.time() - 60, "processes": [f"infer-{i}" for i in range(5)]},
    ]  # fmt: skip
    page.route("**/api/processes", fulfill_json(200, {"processes": listed}))
    page.route("**/api/hosts", fulfill_json(200, {"hosts": hosts}))
    headers = page.locator("#proc-rows tr.host-row")
    expect(headers).to_have_count(2)
    expect(headers.nth(0)).to_contain_text("gpu-1")
    expect(headers.nth(0).locator(".host-state")).to_have_text("alive")
    expect(headers.nth(0)).to_contain_text("6 of 6 running")
    expect(headers.nth(1)).to_contain_text("gpu-2")
    expect(headers.nth(1).locator(".host-state")).to_have_text("lost")
    expect(headers.nth(1)).to_contain_text("0 of 5 running")
    # each header sits over its host's processes
    order = page.eval_on_selector_all(
        "#proc-rows > tr",
        "rows => rows.map((r) => r.dataset.process ? r.dataset.process : `[${r.dataset.host}]`)",
    )
    assert order == [
        "[gpu-1]",
        *[f"train-{i}" for i in range(6)],
        "[gpu-2]",
        *[f"infer-{i}" for i in range(5)],
    ]
    # a process of the lost host is unknown: greyed, not counted as running, no pid, no controls
    lost = page.locator("tr[data-process=infer-0]")
    expect(lost.locator(".state")).to_have_text("unknown")
    expect(lost.locator("td[data-label=Host]")).to_have_text(re.compile(r"^gpu-2\s*lost$"))
    expect(lost.locator("td[data-label=PID]")).to_have_text("–")
    assert float(lost.locator("td[data-label=State]").evaluate("(td) => getComputedStyle(td).opacity")) < 1
    for action in ("start", "stop", "restart"):
        expect(lost.get_by_role("button", name=f"{action} infer-0", exact=True)).to_be_disabled()
    expect(page.locator("tr[data-process=train-0] td[data-label=Host]")).to_have_text("gpu-1")
    expect(page.locator("tr[data-process=train-0] .state")).to_have_text("running")
    expect(page.locator("#sum-processes")).to_have_text("11")
    expect(page.locator("#sum-running")).to_have_text("6")

    # back to the real server: one host again, no headers
    page.unroute("**/api/processes")
    page.unroute("**/api/hosts")
    expect(page.locator("#proc-rows tr.host-row")).to_have_count(0)
    expect(page.locator("#proc-rows > tr")).to_have_count(1)
    expect(row.locator("td[data-label=Host]")).to_have_text(socket.gethostname())


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_dashboard_merged_live_view(make_server: Callable[..., Server], page: Any, transport: str) -> None:
    alpha = "import time\nwhile True:\n    print('from alpha', flush=True)\n    time.sleep(0.2)\n"
    beta = "import time\nwhile True:\n    print('from beta', flush=True)\n    time.sleep(0.2)\n"
    server = make_server(toml_process("alpha", alpha) + toml_process("beta", beta))
    page.goto(server.url + ("/?merge=sse" if transport == "sse" else "/"))
    expect(page.locator("tr[data-process=alpha] .state")).to_have_text(re.compile("running|ready"))
    page.get_by_label("Watch alpha in the live view").check()
    page.get_by_label("Watch beta in the live view").check()
    merged = page.locator("#merged-log")
    expect(merged.locator(".row .proc", has_text="alpha").first).to_be_visible()
    expect(merged.locator(".row .proc", has_text="beta").first).to_be_visible()
    # one colour per process, and the lines are in timestamp order
    alpha_class = merged.locator(".row .proc", has_text="alpha").first.get_attribute("class")
    beta_class = merged.locator(".row .proc", has_text="beta").first.get_attribute("class")
    assert alpha_class != beta_class
    stamps = page.evaluate("window.__logcast.merged().map((e) => e.ts)")
    assert stamps == sorted(stamps)
    # the choice survives a reload
    page.reload()
    expect(page.get_by_label("Watch beta in the live view")).to_be_checked()
    expect(merged.locator(".row .proc", has_text="beta").first).to_be_visible()
    page.get_by_label("Watch beta in the live view").uncheck()
    expect(merged.locator(".row .proc", has_text="beta")).to_have_count(0)
    if transport == "ws":
        # the first poll fails (a server restarting, a replica without its Redis): the watched
        # stream starts with the next poll that works (a review: never, until a reload)
        page.route("**/api/processes", fulfill_json(503, {"detail": "redis is unreachable"}), times=1)
        page.reload()
        expect(merged.locator(".row .proc", has_text="alpha").first).to_be_visible()


def test_config_page(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(
        toml_process("svc", IDLE, autostart=False, env={"API_TOKEN": "hunter2", "MODE": "demo"})
    )
    page.goto(server.url + "/config.html")
    card = page.locator("section[data-process=svc]")
    expect(card.locator(".state")).to_have_text("stopped")
    expect(card).to_contain_text("MODE")
    expect(card).to_contain_text("demo")
    expect(card).not_to_contain_text("hunter2")
    expect(page.locator(".sidebar a.nav-item[href='/logs.html']")).to_contain_text("Service logs")
    card.get_by_role("button", name="start svc", exact=True).click()
    expect(card.locator(".state")).to_have_text(re.compile("running|ready"))
    card.get_by_role("link", name=re.compile("Logs")).click()
    expect(page).to_have_url(re.compile(r"/logs\.html\?process=svc(&|$)"))
    expect(page.locator("#log .row.k-line", has_text="service up")).to_have_count(1)


def test_login_with_a_token(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("counter", SLOW_COUNTER), token="s3cret-token")
    page.goto(viewer_url(server, "counter"))
    expect(page).to_have_url(re.compile(r"/login\.html\?next="))
    page.fill("#token", "wrong")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("Wrong token.")
    page.fill("#token", "s3cret-token")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/logs\.html\?process=counter(&|$)"))
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#log .row.k-line", has_text="history 1")).to_have_count(1)
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login\.html"))


WIDER_THAN_VIEWPORT = """() => {
  const root = document.documentElement;
  if (root.scrollWidth <= root.clientWidth) return null;
  const wide = [...document.querySelectorAll("body *")].filter(
    (e) => e.getBoundingClientRect().right > root.clientWidth + 0.5);
  return wide.slice(0, 5).map(
    (e) => `${e.tagName}.${e.className} → ${Math.round(e.getBoundingClientRect().right)}px`);
}"""


@pytest.mark.parametrize("width", [360, 2560])
def test_layout_fits_narrow_and_wide_screens(
    make_server: Callable[..., Server], open_page: Callable[..., Any], width: int
) -> None:
    server = make_server(toml_process("counter", SLOW_COUNTER) + toml_process("levels", LEVELS))
    wait_lines(server, "counter", 5)
    page = open_page(width=width, height=800)
    for path in ("/", "/config.html", "/logs.html?process=counter"):
        page.goto(server.url + path)
        if "logs" in path:
            expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        else:
            expect(page.locator("[data-process=counter]").first).to_be_visible()
        too_wide = page.evaluate(WIDER_THAN_VIEWPORT)
        assert not too_wide, f"{path} is wider than {width}px: {too_wide}"
    # every control of the viewer is reachable with the keyboard and shows its focus
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement && getComputedStyle(document.activeElement).outlineStyle")
    assert focused not in (None, "none")


PHASES = """
import time
for i in range(1, 201):
    print(f"a {i}")
time.sleep(1.1)
for i in range(1, 31):
    print(f"b {i}", flush=True)
    time.sleep(0.1)
time.sleep(3600)
"""


def test_view_menu_time_formats_jump_to_time_and_earlier_lines(
    make_server: Callable[..., Server], page: Any
) -> None:
    server = make_server(toml_process("phases", PHASES))
    wait_lines(server, "phases", 230)
    # only the last 50 lines as history: the older ones are one click away
    open_viewer(page, server, "phases", lines="50")
    assert stats(page)["lines"] == 50
    page.click("#view-menu summary")
    page.select_option("#time-mode", "utc")
    expect(page.locator("#log .row.k-line .ts").first).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}Z$"))
    page.select_option("#time-mode", "off")
    expect(page.locator("#log.no-time")).to_have_count(1)
    expect(page.locator("#log .row.k-line .ts").first).to_be_hidden()
    page.select_option("#time-mode", "utc")

    page.click("#jump-top")
    page.click("#load-earlier")
    page.wait_for_function("() => window.__logcast.stats().lines >= 230")
    page.keyboard.press("Home")
    expect(page.locator("#log .row.k-line .msg", has_text=re.compile(r"^a 1$"))).to_be_visible()

    # jump to the first second boundary after "b 1": lands on one of the b lines
    with server.client() as client:
        first_b = client.get("/api/processes/phases/logs", params={"q": "b 1", "limit": 1}).json()["logs"][0]
    target = time.gmtime(int(first_b["timestamp"]) + 1)
    if not page.locator("#view-menu[open]").count():
        page.click("#view-menu summary")
    page.fill("#jump-time", time.strftime("%Y-%m-%dT%H:%M:%S", target))
    page.click("#jump-go")
    selected = page.locator("#log .row.selected .msg")
    expect(selected).to_have_text(re.compile(r"^b \d+$"))
    assert stats(page)["follow"] is False


def test_viewer_stays_open_across_process_restarts(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("counter", SLOW_COUNTER))
    wait_lines(server, "counter", 5)
    open_viewer(page, server, "counter")
    with server.client() as client:
        client.post("/api/processes/counter/restart").raise_for_status()
    # the state change arrives as status rows and the badge follows; the stream never drops
    expect(page.locator("#log .row.k-status", has_text="run 2").first).to_be_attached()
    expect(page.locator("#proc-state")).to_have_attribute("data-state", re.compile("running|ready"))
    expect(page.locator("#log .row.k-line .msg", has_text=re.compile(r"^history 1$"))).to_have_count(2)
    assert stats(page)["connects"] == 1
    assert stats(page)["duplicates"] == 0 and stats(page)["holes"] == 0


def test_a_regex_search_deep_link_reaches_past_one_scan_window(
    make_server: Callable[..., Server], page: Any
) -> None:
    # The server looks at 200,000 records per search request and says where to go on;
    # the viewer asks again, further back, until it has looked at everything.
    source = """
import sys, time
print("needle old one")
sys.stdout.write("hay\\n" * 450_000)
print("needle new one", flush=True)
time.sleep(600)
"""
    server = make_server(toml_process("deep", source))
    wait_lines(server, "deep", 450_002, timeout=60)
    open_viewer(page, server, "deep", q="needle (old|new)", re="1")
    expect(page.locator("#search")).to_have_value("needle (old|new)")
    expect(page.locator("#match-count")).to_have_text("2 matches", timeout=30_000)
    # a pattern RE2 refuses is an error the viewer shows, not a frozen server
    page.fill("#search", r"(a)\1")
    expect(page.locator("#match-count")).to_have_text("error")
    with server.client() as client:
        assert client.get("/healthz").status_code == 200


# --- model servers, resources, sparklines, why a process died --------------------------------

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


def toml_command(name: str, argv: list[str], **options: Any) -> str:
    """A process that runs `argv` (toml_process runs Python source instead)."""
    lines = [f"[process.{name}]", f"command = {json.dumps(argv)}"]
    options.setdefault("autostart", True)
    options.setdefault("restart", "never")
    for key, value in options.items():
        if isinstance(value, dict):
            pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {pairs} }}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def fake_llama(name: str = "llama", load_seconds: float = 6.0, **options: Any) -> str:
    argv = [sys.executable, "-u", str(DEMO / "fake_llm.py"), "--load-seconds", str(load_seconds)]
    return toml_command(name, argv, ready={"log": "server is listening on"}, **options)


def fake_vllm(name: str = "vllm", **options: Any) -> str:
    argv = [sys.executable, "-u", str(DEMO / "fake_vllm.py"), "--shard-seconds", "0.2", "--log-interval", "1"]
    return toml_command(name, argv, parse="vllm", **options)


def test_model_server_load_bar_phase_waiting_and_sparklines(
    make_server: Callable[..., Server], page: Any
) -> None:
    server = make_server(fake_llama(load_seconds=8) + fake_vllm(depends_on={"llama": "ready"}))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
    page.goto(server.url + "/")
    llama = page.locator("tr[data-process=llama]")
    vllm = page.locator("tr[data-process=vllm]")

    # while the weights load: the phase, a bar with its percentage, and the time it has taken
    phase = llama.locator(".phase")
    expect(phase).to_have_text("loading")
    bar = llama.get_by_role("progressbar", name="llama loading")
    expect(bar).to_be_visible()
    expect(llama.locator(".load-text")).to_have_text(re.compile(r"^\d{1,3}% · \d+s$"))
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^\d{1,3}$"))
    # the vLLM server waits for it, and says so
    expect(vllm.locator(".waiting-for")).to_have_text("waiting for llama (ready)")
    expect(vllm.locator(".state")).to_have_text("stopped")
    # what it uses, in human units
    expect(llama.locator("td[data-label=Memory] .metric-value")).to_have_text(
        re.compile(r"^[\d.]+ (KiB|MiB|GiB)$")
    )
    expect(llama.locator("td[data-label=CPU] .metric-value")).to_have_text(re.compile(r"^[\d.]+%$"))

    # ready: the bar goes, the badge follows the model server's phase, vLLM starts and loads
    expect(bar).to_be_hidden(timeout=30_000)
    expect(phase).to_have_text(re.compile("^(ready|serving|idle)$"))
    expect(vllm.locator(".waiting-for")).to_be_hidden()
    expect(vllm.locator(".phase")).to_have_text(re.compile("^(loading|ready|serving|idle)$"), timeout=20_000)
    # serving: generated tokens per second
    expect(llama.locator(".tps")).to_have_text(re.compile(r"^[\d.,]+ tok/s$"), timeout=30_000)

    # a sparkline per figure: uPlot canvases, each titled with its last value
    expect(llama.locator(".spark canvas")).to_have_count(5, timeout=20_000)
    expect(vllm.locator("td[data-label='Lines/s'] .spark canvas")).to_have_count(1)
    expect(llama.locator("td[data-label='Lines/s'] .spark")).to_have_attribute(
        "title", re.compile(r"^lines/s: now [\d.,]+ · peak [\d.,]+ over \d+ min$")
    )
    expect(llama.locator("td[data-label=Errors] .spark")).to_have_attribute(
        "title", re.compile(r"^errors: \d+ in the last \d+ min$")
    )
    page.wait_for_function("() => Object.values(window.__logcast.samples()).every((n) => n >= 3)")

    # one request for the samples per poll, not one per figure: the first for 15 minutes,
    # then only what came after the newest sample held
    samples = [u for u in requests if "/api/samples" in u]
    polls = [u for u in requests if u.endswith("/api/processes")]
    assert samples and len(samples) <= len(polls) + 1, (len(samples), len(polls))
    assert "after=" not in samples[0]
    assert all("after=" in u for u in samples[1:])


DIES_ONCE = """
import os, sys, time
print("starting up", flush=True)
if not os.path.exists("ran-once"):
    open("ran-once", "w").close()
    print("ERROR: cannot open <b>/data/model.bin</b>: no such file", flush=True)
    sys.exit(3)
print("second run is fine", flush=True)
time.sleep(3600)
"""


def test_why_it_died_with_its_last_errors_and_the_history_of_that_run(
    make_server: Callable[..., Server], open_page: Callable[..., Any]
) -> None:
    server = make_server(toml_process("dies", DIES_ONCE) + toml_process("other", IDLE))
    info = wait_for(lambda: (p := process_info(server, "dies"))["last_exit"] and p, what="dies to fail")
    exit_ = info["last_exit"]
    assert exit_["exit_code"] == 3
    page = open_page()
    page.goto(server.url + "/")
    panel = page.locator("tr.exit-row[data-exit-for=dies]")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("group", name="Why dies died")).to_be_visible()
    expect(panel.locator(".exit-reason")).to_have_text(exit_["reason"])
    # the last error line, as text: the markup in it is shown, never made
    expect(panel.locator(".exit-errors li").last).to_have_text(
        "ERROR: cannot open <b>/data/model.bin</b>: no such file"
    )
    assert panel.locator("b:not(.exit-title)").count() == 0
    # a process that runs has no such panel, and the rows keep their order
    expect(page.locator("tr.exit-row")).to_have_count(1)
    order = page.eval_on_selector_all(
        "#proc-rows > tr", "rows => rows.map((r) => r.dataset.process || `exit:${r.dataset.exitFor}`)"
    )
    assert order == ["dies", "exit:dies", "other"]

    # the link opens the viewer on exactly that run: from its first record to its last
    link = panel.get_by_role("link", name=re.compile(r"History of run 1"))
    expected = f"/logs.html?process=dies&after={exit_['first_seq'] - 1}&until={exit_['last_seq']}"
    expect(link).to_have_attribute("href", expected)
    link.click()
    expect(page).to_have_url(re.compile(re.escape(expected) + "$"))
    page.wait_for_function("() => window.__logcast && window.__logcast.stats().rangeDone")
    expect(
        page.locator("#log .row.k-line", has_text="ERROR: cannot open <b>/data/model.bin</b>")
    ).to_have_count(1)
    expect(page.locator("#log .row.k-line", has_text="starting up")).to_have_count(1)
    seqs = [e["seq"] for e in page.evaluate("window.__logcast.entries()") if e["kind"] in ("line", "status")]
    assert seqs[0] == exit_["first_seq"] and seqs[-1] == exit_["last_seq"]
    expect(page.locator("#log .row.k-note", has_text="End of the range")).to_have_count(1)
    expect(page.locator("#conn")).to_have_attribute("data-state", "disconnected")

    # started again, it runs: the panel goes (the run that failed is still in last_exit)
    page.goto(server.url + "/")
    expect(panel).to_be_visible()
    page.get_by_role("button", name="start dies", exact=True).click()
    expect(page.locator("tr[data-process=dies] .state")).to_have_text(re.compile("running|ready"))
    expect(panel).to_have_count(0)
    expect(page.locator("#proc-rows > tr")).to_have_count(2)


def test_viewer_marks_the_lines_the_model_parser_read(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(fake_llama(load_seconds=0.5))
    info = wait_for(
        lambda: (p := process_info(server, "llama"))["model"] and p["model"]["phase"] != "loading" and p,
        30,
        "llama to be ready",
    )
    marked = set(info["model"]["marked"])
    assert marked
    open_viewer(page, server, "llama")
    rows = page.locator("#log .row.k-line.parsed")
    expect(rows.first).to_be_attached()
    expect(rows.first).to_have_attribute("title", "read by the model parser")
    shown = page.eval_on_selector_all(
        "#log .row.k-line.parsed", "rows => rows.map((r) => Number(r.dataset.seq))"
    )
    latest = set(process_info(server, "llama")["model"]["marked"])
    assert set(shown) <= marked | latest | set(range(min(marked), max(latest) + 1))
    # rows the parser did not read carry no mark
    plain = page.locator("#log .row.k-line:not(.parsed)").first
    expect(plain).not_to_have_attribute("title", "read by the model parser")


def fabricated_model_process(i: int) -> dict[str, Any]:
    p = fabricated_process(f"model-{i:02d}", "gpu-1", "running", 1000 + i)
    p["resources"] = {
        "cpu_percent": 12.5 + i, "rss_bytes": (1 + i) << 28, "threads": 12, "open_fds": 30,
        "gpu_memory_bytes": {"0": 8 << 30}, "cpu_seconds_total": 120.0, "sampled_at": time.time(),
    }  # fmt: skip
    p["model"] = {
        "kind": "vllm", "phase": "loading" if i % 5 == 0 else "serving", "load_progress": None if i % 10 == 0 else 0.4,
        "ready_after_s": None, "requests": 10 * i, "prompt_tokens_per_s": 900.0, "gen_tokens_per_s": 42.0 + i,
        "last_request_at": time.time(), "marked": [],
    }  # fmt: skip
    return p


def fabricated_samples(names: list[str], count: int = 450) -> dict[str, Any]:
    now = time.time()
    t = [round(now - 2.0 * (count - k), 3) for k in range(count)]
    wave = [abs((k % 40) - 20) / 20 for k in range(count)]
    return {
        "interval": 2.0,
        "processes": {
            name: {
                "t": t,
                "lines_per_s": [10 * w for w in wave],
                "errors": [1 if k % 97 == 0 else 0 for k in range(count)],
                "cpu_percent": [50 * w for w in wave],
                "rss_bytes": [(1 << 30) + int((1 << 26) * w) for w in wave],
                "gen_tokens_per_s": [None if k < 30 else 60 * w for k, w in enumerate(wave)],
            }
            for name in names
        },
    }


def test_fifty_processes_stay_light(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("svc", IDLE))
    listed = [fabricated_model_process(i) for i in range(50)]
    names = [p["name"] for p in listed]
    page.route("**/api/processes", fulfill_json(200, {"processes": listed}))
    page.route(re.compile(r".*/api/samples(\?.*)?$"), fulfill_json(200, fabricated_samples(names)))
    page.goto(server.url + "/")
    expect(page.locator("#proc-rows > tr[data-process]")).to_have_count(50)
    page.wait_for_function("() => Object.keys(window.__logcast.samples()).length === 50")
    # a loading model: an indeterminate bar when the loader gives no percentage
    expect(page.locator("tr[data-process=model-00] .loadbar.indeterminate")).to_be_visible()
    expect(page.locator("tr[data-process=model-05] .load-text")).to_have_text(re.compile(r"^40% · "))
    expect(page.locator("tr[data-process=model-01] td[data-label=Memory] .gpu-mem")).to_have_text(
        "GPU 8.0 GiB"
    )
    # only the sparklines on screen are drawn
    drawn = page.evaluate(
        "() => Object.values(window.__logcast.sparks()).flatMap((s) => Object.values(s)).filter(Boolean).length"
    )
    assert 0 < drawn < 200, drawn
    page.locator("tr[data-process=model-49]").scroll_into_view_if_needed()
    expect(page.locator("tr[data-process=model-49] td[data-label=CPU] .spark canvas")).to_have_count(1)
    # a poll's work (the table and the sparklines) stays small
    first = page.evaluate("window.__logcast.timing()")
    page.wait_for_function(f"() => window.__logcast.timing().polls > {first['polls']}")
    timing = page.evaluate("window.__logcast.timing()")
    assert timing["render"] + timing["sparks"] < 250, timing
