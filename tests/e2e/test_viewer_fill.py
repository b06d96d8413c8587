"""The viewer opens on the newest lines and fills in the rest of the history before them.

A real server, a real Chromium. The history pages the viewer asks for (`GET …/logs?tail=`)
are held back by the test (Playwright's routing) until it lets them go, so that what the
page shows before and while they come in is checked, not raced.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_dashboard import (  # noqa: F401  (fixtures)
    browser,
    expect,
    open_page,
    open_viewer,
    stats,
    toml_process,
    viewer_url,
    wait_lines,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:  # noqa: F811
    return open_page()


LINES = 30_000

NUMBERED = f"""
import sys, time
out = sys.stdout
for i in range({LINES}):
    level = "ERROR" if i in (7, 12_345) else "INFO"
    out.write(f"{{level}} line {{i:06d}}\\n")
out.flush()
time.sleep(3600)
"""


# The text and top of the first row wholly inside the scroller.
FIRST_ROW_INSIDE = """(() => {
  const box = document.querySelector("#log").getBoundingClientRect();
  for (const row of document.querySelectorAll("#log .row:not([hidden])")) {
    const r = row.getBoundingClientRect();
    if (r.top >= box.top) return [row.querySelector(".msg").textContent, Math.round(r.top)];
  }
  return null;
})()"""


class HeldPages:
    """The viewer's history page requests, answered only when the test says so."""

    def __init__(self, page: Any) -> None:
        self.held: list[Any] = []
        self.asked: list[str] = []
        self.streams: list[str] = []
        page.route(re.compile(r"/api/processes/[^/]+/logs\?.*tail="), self._hold)
        page.on("request", self._request)

    def _hold(self, route: Any) -> None:
        self.asked.append(route.request.url)
        self.held.append(route)

    def _request(self, request: Any) -> None:
        if "/logs/stream?" in request.url:
            self.streams.append(request.url)

    def wait_held(self, page: Any) -> None:
        """Until a request is held (Playwright hands them over while the test talks to the page)."""
        for _ in range(1000):
            if self.held:
                return
            page.wait_for_timeout(20)
        raise AssertionError("the viewer asked for no page")

    def release(self) -> int:
        held, self.held = self.held, []
        for route in held:
            route.continue_()
        return len(held)


def test_the_last_lines_show_first_and_the_history_fills_in_before_them(
    make_server: Callable[..., Server], page: Any
) -> None:
    server = make_server(toml_process("num", NUMBERED))
    wait_lines(server, "num", LINES, timeout=60)
    pages = HeldPages(page)
    page.goto(viewer_url(server, "num", debug="1"))
    page.wait_for_function("() => window.__logcast && window.__logcast.stats().historyDone")
    log = page.locator("#log")
    # the newest lines are on screen while every older page is still held back
    expect(log.locator(".row.k-line .msg", has_text=f"line {LINES - 1:06d}")).to_be_visible()
    page.wait_for_function("() => document.querySelectorAll('#log .row.k-line').length > 10")
    pages.wait_held(page)
    assert len(pages.held) == 1, pages.asked  # the next page is asked for once this one is in
    s = stats(page)
    assert s["lines"] == 1000 and s["filled"] is False and s["follow"] is True
    assert pages.streams and all("batch=1" in url for url in pages.streams)
    assert "lines=1000" in pages.streams[0]

    # the user scrolls up to a line; pages coming in must not move it
    page.evaluate("document.querySelector('#log').scrollTop = 18 * 500")
    page.wait_for_function("() => !window.__logcast.stats().follow")
    anchor_text, top = page.evaluate(FIRST_ROW_INSIDE)
    while not stats(page)["filled"]:
        if not pages.release():
            page.wait_for_timeout(20)
    s = stats(page)
    assert s["lines"] == LINES and s["historyRecords"] >= LINES and s["follow"] is False
    assert s["duplicates"] == 0 and s["holes"] == 0
    assert all("before=" in url and "tail=" in url for url in pages.asked)
    page.wait_for_function(f"() => {FIRST_ROW_INSIDE}[0] === {anchor_text!r}")
    assert page.evaluate(FIRST_ROW_INSIDE) == [anchor_text, top], "the rows the user looked at moved"
    seqs = page.evaluate("window.__logcast.entries().map((e) => e.seq)")
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a line is missing or repeated"

    # every line is there, the oldest at the top
    log.focus()
    page.keyboard.press("Home")
    expect(log.locator(".row.k-line .msg", has_text=re.compile(r"^INFO line 000000$"))).to_be_visible()
    page.keyboard.press("End")
    expect(log.locator(".row.k-line .msg", has_text=f"line {LINES - 1:06d}")).to_be_visible()
    assert stats(page)["follow"] is True


def test_a_level_deep_link_sees_errors_from_the_filled_history(
    make_server: Callable[..., Server], page: Any
) -> None:
    server = make_server(toml_process("num", NUMBERED))
    wait_lines(server, "num", LINES, timeout=60)
    page.goto(viewer_url(server, "num", level="error"))
    # both error lines are older than the first screen the stream sends: they come with the pages
    page.wait_for_function("() => window.__logcast && window.__logcast.stats().filled", timeout=60_000)
    expect(page.locator("#level")).to_have_value("error")
    shown = page.eval_on_selector_all(
        "#log .row.k-line:not([hidden]) .msg", "els => els.map((e) => e.textContent)"
    )
    assert shown == ["ERROR line 000007", "ERROR line 012345"]
    assert stats(page)["lines"] == LINES


def test_a_short_history_or_a_range_asks_for_no_page(make_server: Callable[..., Server], page: Any) -> None:
    server = make_server(toml_process("num", NUMBERED))
    wait_lines(server, "num", LINES, timeout=60)
    pages = HeldPages(page)
    open_viewer(page, server, "num", lines="500")
    page.wait_for_function("() => window.__logcast.stats().filled")
    assert stats(page)["lines"] == 500 and not pages.asked
    assert "batch=1" in pages.streams[-1] and "lines=500" in pages.streams[-1]
    # batch=0: the one-event-per-message stream, the same lines
    open_viewer(page, server, "num", lines="500", batch="0")
    page.wait_for_function("() => window.__logcast.stats().filled")
    assert stats(page)["lines"] == 500 and not pages.asked
    assert "batch" not in pages.streams[-1] and "lines=500" in pages.streams[-1]
    expect(page.locator("#log .row.k-line .msg", has_text=f"line {LINES - 1:06d}")).to_be_visible()
    # one run's range (after/until): the stream sends all of it, nothing is filled in
    page.goto(viewer_url(server, "num", after="100", until="5100"))
    page.wait_for_function("() => window.__logcast.stats().rangeDone && window.__logcast.stats().filled")
    assert stats(page)["lines"] == 5000 and not pages.asked


def test_seqs_no_page_holds_show_as_a_gap(make_server: Callable[..., Server], page: Any) -> None:
    """Lines lost before they were stored leave a hole in the pages' seqs: the viewer says
    so with a gap row, as the stream does for the lines it sends. The page is the server's
    answer with ten seqs taken out (a store that lost them cannot be made on purpose)."""
    server = make_server(toml_process("num", NUMBERED))
    wait_lines(server, "num", LINES, timeout=60)

    def answer(route: Any) -> None:
        before = int(parse_qs(urlparse(route.request.url).query)["before"][0])
        real = route.fetch().json()["logs"]
        kept = [r for r in real if r["seq"] > before - 30 and not before - 20 < r["seq"] <= before - 10]
        route.fulfill(json={"logs": kept, "next": None, "cursor": before, "before": None})

    page.route(re.compile(r"/api/processes/[^/]+/logs\?.*tail="), answer)
    page.goto(viewer_url(server, "num"))
    page.wait_for_function("() => window.__logcast && window.__logcast.stats().filled")
    entries = page.evaluate("window.__logcast.entries()")
    gaps = [e for e in entries if e["kind"] == "gap"]
    assert len(gaps) == 1, gaps
    first_streamed = next(e["seq"] for e in entries if e["kind"] == "line" and e["seq"] > gaps[0]["to"] + 10)
    assert (gaps[0]["from"], gaps[0]["to"]) == (first_streamed - 20, first_streamed - 11)
    assert stats(page)["lines"] == 1000 + 20
    page.locator("#log").focus()
    page.keyboard.press("Home")
    expect(page.locator("#log .row.k-gap")).to_contain_text(
        f"⚠ 10 lines missed ({first_streamed - 20}–{first_streamed - 11})"
    )


def long_lines(count: int, width: int) -> str:
    """A child that prints `count` numbered lines of `width` characters more, then waits."""
    return f"""
import sys, time
for i in range({count}):
    sys.stdout.write(f"{{i:06d}} " + "k" * {width} + "\\n")
sys.stdout.flush()
time.sleep(3600)
"""


def test_history_pages_the_server_cut_short_are_followed_to_the_oldest_line(
    make_server: Callable[..., Server], page: Any
) -> None:
    """A review: the server ends a page at 4 Mi characters of text and says where to go on
    (`before`); the viewer took a page shorter than it asked for as the oldest one, and of
    10,000 lines of 1 KB held 5,152, "Load earlier" disabled."""
    server = make_server(toml_process("long", long_lines(6000, 2000)))
    wait_lines(server, "long", 6000, timeout=60)
    page.goto(viewer_url(server, "long"))
    page.wait_for_function("() => window.__logcast && window.__logcast.stats().filled", timeout=60_000)
    entries = page.evaluate("window.__logcast.entries()")
    lines = [e for e in entries if e["kind"] == "line"]
    assert len(lines) == 6000 and stats(page)["lines"] == 6000
    assert lines[0]["seq"] == min(e["seq"] for e in lines) and not [e for e in entries if e["kind"] == "gap"]


def test_the_history_filled_in_stops_at_the_views_bound_in_characters(
    make_server: Callable[..., Server], page: Any
) -> None:
    """A review: pages filled in before the first line held were bounded in lines only:
    2,600 lines of 65,000 characters were 169 M characters against a bound of 128 Mi (with
    the default 100,000 lines, gigabytes). Here the bound is a million (`max_chars`)."""
    server = make_server(toml_process("vlong", long_lines(60, 60_000)))
    wait_lines(server, "vlong", 60, timeout=60)
    page.goto(viewer_url(server, "vlong", max_chars="1000000"))
    page.wait_for_function("() => window.__logcast && window.__logcast.stats().filled", timeout=60_000)
    entries = page.evaluate("window.__logcast.entries()")
    held = sum(len(e["text"]) for e in entries)
    lines = [e for e in entries if e["kind"] == "line"]
    assert held <= 1_000_000 and 10 <= len(lines) < 60
    assert [e["seq"] for e in lines] == list(range(lines[0]["seq"], lines[-1]["seq"] + 1))  # the newest
    assert page.locator("#load-earlier-menu").is_enabled()  # the rest on demand
