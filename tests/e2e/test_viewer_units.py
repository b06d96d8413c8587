"""The viewer's models under what a review of the dashboard broke them with: a hostile
regex, long lines in a long-open tab, progress bars that left the list, a clear while lines
arrive, a refused WebSocket, a server that stopped answering. Pure JavaScript, run in
Chromium (as `test_dashboard_units.py`, whose fixtures these are)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.test_dashboard import browser, open_page  # noqa: F401  (fixtures)
from tests.e2e.test_dashboard_units import js  # noqa: F401  (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# ruff: noqa: F811  (`js`, a fixture imported above, is every test's argument)

ADD = """
const add = (model, seq, message, o = {}) => model.addRecord({seq, timestamp: o.t ?? 1000 + seq,
  level: o.level || "info", message, stream: o.stream || "stdout", process: o.process || "p", run: 1,
  partial: !!o.partial, cr: o.cr}, o.kind || "line");
"""


def test_a_regex_is_matched_in_linear_time_with_the_servers_syntax(js: Callable[..., Any]) -> None:
    """A review: `?q=(a%2B)%2B%24&re=1` froze the tab for good (the browser's regex engine
    backtracks on 36 a's and a `!`, on every row drawn and every live line); an RE2-only
    pattern (`(?P<n>…)`) was not highlighted at all."""
    # RE2 syntax is the proof of the engine: the browser's own refuses `(?P<…>)` and takes
    # `(?=…)`, RE2 the other way round; RE2 is linear by construction. (A backtracking run
    # on thousands of a's is not tried here: on the old code it would never end.)
    out = js(
        """
        const h = m.makeHighlighter("(a+)+$", true);
        const evil = "a".repeat(20) + "!";
        const found = h.test(evil) || h.ranges(evil).length > 0;
        const named = m.makeHighlighter("(?P<word>err\\\\w*) (\\\\d+)", true);
        return {found, named: named.ranges("an ERROR 42 and error 7"),
                refused: m.makeHighlighter("(a)\\\\1", true), lookaround: m.makeHighlighter("(?=x)", true),
                scan: m.REGEX_SCAN, far: named.test("x".repeat(m.REGEX_SCAN) + "error 1"),
                literal: m.makeHighlighter("(a+)+$").ranges("x(A+)+$y")};
        """
    )
    assert out["found"] is False
    assert out["named"] == [[3, 11], [16, 23]]  # case-insensitive, as the server's search
    assert out["refused"] is None and out["lookaround"] is None  # RE2 refuses them, as the server
    assert out["far"] is False  # only the first REGEX_SCAN characters are matched
    assert out["literal"] == [[1, 7]]  # a substring search stays literal


def test_next_match_and_jump_to_time_find_lines_beside_a_collapsed_progress_bar(
    js: Callable[..., Any],
) -> None:
    """A review: a progress bar on stderr collapsed into one entry whose seq (and time)
    grew past the stdout lines after it; the binary searches over seq and time then landed
    on the bar, not on "work item 250"."""
    out = js(
        ADD
        + """
        const model = new m.LogModel();
        let seq = 0;
        for (let i = 0; i < 300; i++) {
          add(model, ++seq, `work item ${i}`, {t: seq});
          if (i >= 149) add(model, ++seq, `progress ${i % 100}% |${"#".repeat(i % 40)}|`, {stream: "stderr", t: seq});
        }
        const bar = model.view.find((e) => e.stream === "stderr");
        const item = (n) => model.view[model.indexOfSeq(model.view.find((e) => e.text === `work item ${n}`).first)];
        const target = model.view.find((e) => e.text === "work item 250");
        return {bar: [bar.first, bar.seq, bar.updates], entries: model.view.length,
                bySeq: item(250).text, first: item(0).text, last: item(299).text,
                byTime: model.view[model.indexOfTime(target.ts)].text,
                inside: model.view[model.indexOfSeq(bar.first + 2)].text};
        """
    )
    assert out["bar"][0] < out["bar"][1] and out["bar"][2] == 150  # one entry, seqs 150..449
    assert out["entries"] == 301
    assert (out["bySeq"], out["first"], out["last"]) == ("work item 250", "work item 0", "work item 299")
    assert out["byTime"] == "work item 250"
    assert out["inside"].startswith("progress")  # a seq the bar absorbed: the bar shows it


def test_the_view_is_bounded_in_characters_too(js: Callable[..., Any]) -> None:
    """A review: lines of 64 KiB took the tab's heap to 421 MB at 7,064 lines, the bound
    being a million lines; the text held is bounded too, the newest line kept whatever."""
    out = js(
        ADD
        + """
        const model = new m.LogModel({maxChars: 1_000_000});
        const long = "x".repeat(65536);
        for (let seq = 1; seq <= 100; seq++) add(model, seq, long);
        const held = model.entries.reduce((n, e) => n + e.text.length, 0);
        const huge = new m.LogModel({maxChars: 1000});
        add(huge, 1, "y".repeat(5000));
        return {held, chars: model.chars, lines: model.lines, dropped: model.dropped,
                first: model.entries[0].seq, hugeLines: huge.lines};
        """
    )
    assert out["held"] == out["chars"] <= 1_000_000
    assert out["lines"] >= 13 and out["dropped"] == 100 - out["lines"] and out["first"] == out["dropped"] + 1
    assert out["hugeLines"] == 1  # one line over the bound alone stays


def test_a_progress_bar_that_left_the_list_starts_a_new_entry_when_redrawn(js: Callable[..., Any]) -> None:
    """A review: once the collapsed bar's entry was dropped (the bound) or cleared (the
    merged view's Clear), every later redraw updated that entry, which nobody drew: the bar
    was gone for good."""
    out = js(
        ADD
        + """
        const model = new m.LogModel({max: 100});
        add(model, 1, "download 1% |#|", {stream: "stderr", t: 1});
        for (let seq = 2; seq <= 200; seq++) add(model, seq, `chatter ${seq}`, {t: 1 + seq / 1000});
        add(model, 201, "download 83% |########|", {stream: "stderr", t: 1.3});
        const viewer = model.entries.filter((e) => e.stream === "stderr").map((e) => e.text);

        const merged = new m.MergedModel();
        const put = (seq, message, stream) => merged.add({seq, timestamp: 1 + seq / 1000, level: "info",
          message, stream, process: "bar", run: 1, partial: false});
        put(1, "download 1% |#|", "stderr");
        merged.clear();
        put(2, "download 2% |##|", "stderr");
        return {viewer, merged: merged.entries.map((e) => e.text), chars: merged.chars};
        """
    )
    assert out["viewer"] == ["download 83% |########|"]
    assert out["merged"] == ["download 2% |##|"] and out["chars"] == len("download 2% |##|")


def test_a_clear_keeps_the_lines_that_came_after_it(js: Callable[..., Any]) -> None:
    """A review: "Clear history" dropped every line held, also those after the server's
    `upto` (they had arrived while the request was on its way): 539 lines never shown."""
    out = js(
        ADD
        + """
        const { feed } = await import('/static/js/logs-state.js');
        const model = new m.LogModel();
        for (let seq = 1; seq <= 20; seq++) add(model, seq, `line ${seq}`);
        model.clearUpTo(15);
        feed.setPaused(true);
        for (let seq = 21; seq <= 30; seq++) feed.hold({type: "realtime", log: {seq, message: `line ${seq}`}});
        feed.dropHeldUpTo(25);
        const held = feed.held.map((ev) => ev.log.seq);
        const heldChars = feed.heldChars;
        feed.setPaused(false);
        feed.queued.length = 0;
        return {kept: model.entries.map((e) => e.seq), lines: model.lines, dropped: model.dropped,
                chars: model.chars, held, heldLines: feed.heldLines, heldChars};
        """
    )
    assert out["kept"] == [16, 17, 18, 19, 20] and out["lines"] == 5
    assert out["dropped"] == 0  # cleared, not dropped for room
    assert out["chars"] == sum(len(f"line {s}") for s in range(16, 21))
    assert out["held"] == [26, 27, 28, 29, 30] and out["heldChars"] == 5 * len("line 26")


def test_lines_held_while_paused_are_bounded_in_characters(js: Callable[..., Any]) -> None:
    out = js(
        """
        const { feed } = await import('/static/js/logs-state.js');
        const { MAX_CHARS } = await import('/static/js/log-model.js');
        feed.setPaused(true);
        const long = "z".repeat(2 ** 20);
        const n = MAX_CHARS / 2 ** 20 + 20;
        for (let seq = 1; seq <= n; seq++) feed.hold({type: "realtime", log: {seq, message: long}});
        const out = {chars: feed.heldChars, max: MAX_CHARS, front: feed.held[0], lines: feed.heldLines};
        feed.setPaused(false);
        feed.queued.length = 0;
        return out;
        """
    )
    assert out["chars"] <= out["max"] and out["lines"] * 2**20 == out["chars"]
    assert out["front"]["type"] == "gap" and out["front"]["reason"] == "paused"  # said, not silent


def test_live_matches_of_a_long_open_tab_are_bounded(js: Callable[..., Any]) -> None:
    out = js(
        """
        const { Search, SEARCH_LIMIT } = await import('/static/js/search.js');
        const display = {highlighter: m.makeHighlighter("fast")};
        const search = new Search({display, model: {passes: () => true}});
        search.index = 10;
        for (let seq = 1; seq <= 3 * SEARCH_LIMIT; seq++) {
          search.observe({kind: "line"}, {seq, timestamp: seq, message: `fast ${seq}`});
        }
        return {n: search.matches.length, limit: SEARCH_LIMIT, last: search.matches.at(-1).seq,
                capped: search.capped, index: search.index};
        """
    )
    assert out["n"] <= out["limit"] * 1.1 and out["last"] == 3 * out["limit"]
    assert out["capped"] is True and out["index"] == -1


def test_a_start_whose_run_failed_at_once_is_told_as_a_failure(js: Callable[..., Any]) -> None:
    """A review: `POST …/start` of a command not found answers 200 with state `backoff`;
    the dashboard said "start done"."""
    out = js(
        """
        const { failedAtOnce } = await import('/static/js/api.js');
        const exit = {run: 3, reason: "failed to start: command not found"};
        return [
          failedAtOnce("start", {state: "backoff", run: 3, last_exit: exit}),
          failedAtOnce("restart", {state: "crashed", run: 3, last_exit: exit}),
          failedAtOnce("start", {state: "running", run: 4, last_exit: exit}),
          failedAtOnce("start", {state: "backoff", run: 3, last_exit: exit, waiting_for: "db"}),
          failedAtOnce("stop", {state: "crashed", run: 3, last_exit: exit}),
          failedAtOnce("start", {state: "exited", run: 3, last_exit: null}),
        ];
        """
    )
    assert out == ["failed to start: command not found"] * 2 + [None] * 4


def test_a_stream_refused_after_it_opened_backs_off_and_says_why(js: Callable[..., Any]) -> None:
    """A review: a WebSocket the server accepts and closes at once (1013, too many streams)
    reset the backoff at every open: the tab asked again every second, for good."""
    out = js(
        """
        const { LogStream } = await import('/static/js/stream.js');
        const states = [];
        const s = new LogStream("p", {onEvent: () => {}, onState: (state, info) => states.push([state, info])});
        s.stopped = false;
        const delays = [];
        for (let i = 0; i < 5; i++) {
          s.conn = {close() {}}; s._opened();
          s.closeReason = "too many streams";
          await s._failed();
          delays.push(states.at(-1)[1].delay);
        }
        const reason = states.at(-1)[1].reason;
        s.conn = {close() {}}; s._opened();
        s._message("[]");  // a message: the connection works, the backoff starts over
        const after = s.attempt;
        s.stop();
        return {delays, reason, after, beats: s.beats};
        """
    )
    assert out["delays"] == [1000, 2000, 4000, 8000, 10000]
    assert out["reason"] == "too many streams" and out["after"] == 0 and out["beats"] is True


def test_a_silent_stream_is_reconnected_when_the_server_is_gone(js: Callable[..., Any]) -> None:
    """A review: a server stopped with SIGSTOP for 45 s left the viewer saying "Live". A
    stream whose pings are messages reconnects once they stop; one whose pings are not
    asks the REST API, and reconnects when that does not answer."""
    out = js(
        """
        const { LogStream, SILENCE_MS } = await import('/static/js/stream.js');
        const run = async (beats, process) => {
          const states = [];
          const s = new LogStream(process, {onEvent: () => {}, onState: (state, info) => states.push([state, info.reason || ""])});
          s.stopped = false;
          s.conn = {close() {}};
          s._opened();
          s.beats = beats;
          s.heardAt = Date.now() - SILENCE_MS - 1;
          await s._checkSilence();
          const state = s.state;
          s.stop();
          return [state, states.at(-2)[1]];
        };
        const beats = await run(true, "p");
        const fetch = window.fetch;
        window.fetch = () => Promise.reject(new TypeError("Failed to fetch"));  // the server is away
        try {
          return {beats, asked: await run(false, "p")};
        } finally {
          window.fetch = fetch;
        }
        """
    )
    assert out["beats"] == ["reconnecting", "no word from the server for 40 s"]
    assert out["asked"] == ["reconnecting", "the server does not answer"]


def test_a_wheel_up_over_a_list_too_short_to_scroll_keeps_following(js: Callable[..., Any]) -> None:
    """A review: one turn of the wheel over a list of a few lines (which cannot scroll)
    turned following off for good: new lines came and the view stayed at the top."""
    out = js(
        """
        const { VirtualList } = await import('/static/js/vlist.js');
        const run = (count) => {
          const box = document.createElement('div');
          box.style.cssText = 'position:fixed;left:0;top:0;width:600px;height:400px;overflow:auto';
          document.body.append(box);
          const list = new VirtualList(box, { renderRow: (row, e) => { row.textContent = e.text; } });
          const items = Array.from({length: count}, (_, i) => ({ kind: 'line', seq: i + 1, text: `line ${i + 1}`, ver: 0 }));
          list.apply({ reset: true }, items);
          list.render();
          box.dispatchEvent(new WheelEvent('wheel', { deltaY: -120, bubbles: true }));
          const follow = list.follow;
          box.remove();
          return follow;
        };
        return {short: run(3), long: run(5000)};
        """
    )
    assert out == {"short": True, "long": False}


def test_a_clear_removes_cleared_lines_behind_a_bar_redrawn_after_it(js: Callable[..., Any]) -> None:
    """A review of `clearUpTo`: a progress bar redrawn at seq 10 stood first, and nothing
    behind it was cleared by `clearUpTo(8)`; "next match" for seq 10 went to line 11."""
    out = js(
        ADD
        + """
        const model = new m.LogModel();
        const bar = (seq, n) => add(model, seq, `download ${n}% |${"#".repeat(n / 10)}|`, {t: 1 + seq / 100});
        bar(1, 10);
        for (const seq of [2, 3, 4, 5]) add(model, seq, `warn line ${seq}`, {stream: "stderr", t: 1 + seq / 100});
        bar(6, 50);
        for (const seq of [7, 8, 9]) add(model, seq, `warn line ${seq}`, {stream: "stderr", t: 1 + seq / 100});
        bar(10, 90);
        add(model, 11, "warn line 11", {stream: "stderr", t: 1.11});
        const at10 = model.view[model.indexOfSeq(10)].text;
        const at3 = model.view[model.indexOfSeq(3)].text;
        model.clearUpTo(8);
        model.insertEntry(m.noteEntry("History cleared (up to seq 8).", 2, 8));
        return {at10, at3, left: model.entries.map((e) => [e.first, e.seq, e.kind]), lines: model.lines,
                chars: model.chars, held: model.entries.reduce((n, e) => n + e.text.length, 0)};
        """
    )
    assert out["at10"].startswith("download 90%") and out["at3"] == "warn line 3"
    assert out["left"] == [[1, 10, "line"], [8, 8, "note"], [9, 9, "line"], [11, 11, "line"]]
    assert out["lines"] == 3 and out["chars"] == out["held"]
