"""The dashboard's pure JavaScript (ANSI parsing, line model, highlighting), run in Chromium.

The modules are imported into a real page served by `logcast serve`, under its real CSP,
and fed synthetic input; no child process is involved. Cheaper and more exact than
driving these corner cases through a child's output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_dashboard import browser, open_page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def js(make_server: Callable[..., Server], open_page: Callable[..., Any]) -> Iterator[Callable[..., Any]]:  # noqa: F811
    """`js(body, arg)` runs `async (m, arg) => { body }` with m = every module of the dashboard."""
    server = make_server("")
    page = open_page()
    page.goto(server.url + "/logs.html")  # no process: the picker, a quiet page

    def run(body: str, arg: Any = None) -> Any:
        # Playwright compiles this function through DevTools; building it with `new Function`
        # in the page would be refused by the CSP (no 'unsafe-eval'), as it should.
        source = (
            "async (arg) => { const m = {};"
            " for (const name of ['ansi', 'entries', 'log-model', 'merged-model', 'render', 'dom', 'format', 'debounce'])"
            " Object.assign(m, await import(`/static/js/${name}.js`));\n" + body + "\n}"
        )
        return page.evaluate(source, arg)

    yield run


def test_ansi_sgr_to_classes_and_colours(js: Callable[..., Any]) -> None:
    parse = "return m.parseAnsi(arg).map((s) => [s.text, s.cls, s.fg, s.bg]);"
    assert js(parse, "plain text") == [["plain text", "", None, None]]
    assert js(parse, "\x1b[31mred\x1b[0m back") == [["red", "fg-1", None, None], [" back", "", None, None]]
    assert js(parse, "\x1b[1;4;92mbold\x1b[22m under\x1b[m") == [
        ["bold", "fg-10 b u", None, None],
        [" under", "fg-10 u", None, None],
    ]
    assert js(parse, "\x1b[38;5;208mA\x1b[48;5;4mB") == [
        ["A", "", "rgb(255,135,0)", None],
        ["B", "bg-4", "rgb(255,135,0)", None],
    ]
    assert js(parse, "\x1b[38;2;1;2;3mT\x1b[38:2::9:8:7mC") == [
        ["T", "", "rgb(1,2,3)", None],
        ["C", "", "rgb(9,8,7)", None],
    ]
    assert js(parse, "\x1b[7minv\x1b[27;44;31mx\x1b[7my") == [
        ["inv", "inv-fg inv-bg", None, None],
        ["x", "fg-1 bg-4", None, None],
        ["y", "fg-4 bg-1", None, None],
    ]


def test_ansi_other_escapes_and_controls_are_dropped(js: Callable[..., Any]) -> None:
    strip = "return m.stripAnsi(arg);"
    assert js(strip, "a\x1b]0;window title\x07b") == "ab"
    assert js(strip, "a\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\b") == "alinkb"
    assert js(strip, "x\x1b[2J\x1b[H\x1b[?1049h\x1b[10;20Hy") == "xy"
    assert js(strip, "p\x1bPq#0;2;0;0;0\x1b\\q") == "pq"  # DCS (sixel)
    assert js(strip, "bell\x07 back\x08space\x7f\x00nul\ttab") == "bell backspacenul\ttab"
    assert js(strip, "c1\x9b31mcsi\x9d0;t\x9cz") == "c1csiz"
    assert js(strip, "lone escape at the end\x1b") == "lone escape at the end"
    assert js(strip, "日本語 ünïcode ✓") == "日本語 ünïcode ✓"
    # bidirectional overrides and isolates would show the line in another order
    assert js(strip, "user=\u202eelif.txt\u202c \u2067x\u2069 עברית") == "user=elif.txt x עברית"
    segments = js("return m.parseAnsi(arg);", "\x1b[31mred\u202ederf\u202c\x1b[0m")
    assert [(s["text"], s["cls"]) for s in segments] == [("redderf", "fg-1")]


def test_highlight_crosses_colour_spans_and_uses_text_nodes(js: Callable[..., Any]) -> None:
    body = """
    const box = document.createElement("div");
    m.appendMessage(box, arg, m.makeHighlighter("bc"));
    return {
      text: box.textContent,
      marks: [...box.querySelectorAll("mark")].map((x) => [x.textContent, x.parentElement.className]),
      elements: [...box.querySelectorAll("*")].map((x) => x.tagName),
    };
    """
    out = js(body, "\x1b[31mab\x1b[32mcd <b>bc</b>")
    assert out["text"] == "abcd <b>bc</b>"
    assert out["marks"] == [["b", "fg-1"], ["c", "fg-2"], ["bc", "fg-2"]]
    assert set(out["elements"]) == {"SPAN", "MARK"}  # the <b> stayed text

    # a regex the browser cannot compile is not highlighted; an empty match does not hang
    assert js("return m.makeHighlighter('(', true);") is None
    assert js("return m.makeHighlighter('x*', true).ranges('axxb');") == [[1, 3]]


def test_partial_records_join_and_progress_redraws_collapse(js: Callable[..., Any]) -> None:
    body = """
    const out = [];
    const b = new m.EntryBuilder(out);
    let seq = 0;
    for (const [message, o] of arg) {
      seq += 1;
      b.add({seq, timestamp: 100 + (o.t ?? seq * 0.1), level: o.level || "info", message,
             stream: o.stream || "stdout", process: "p", run: o.run || 1, partial: !!o.partial, cr: o.cr});
    }
    return out.map((e) => [e.text, e.first, e.seq, e.updates, e.open]);
    """
    records = [
        ["head ", {"partial": True}],
        ["and tail", {}],
        ["Downloading:   0%|", {}],
        ["Downloading:  50%|#####", {}],
        ["Downloading: 100%|##########", {}],
        ["  5%|▌    | 5/100 [00:01<00:20, 4.5it/s]", {}],
        [" 60%|██████ | 60/100 [00:12<00:08, 4.9it/s]", {}],
        ["Epoch 1 acc 90%", {"t": 10}],
        ["Epoch 2 acc 91%", {"t": 20}],
        ["plain 1", {}],
        ["plain 2", {}],
        ["err piece", {"stream": "stderr", "partial": True}],
        ["interleaved", {}],
        [" rest", {"stream": "stderr"}],
        ["spinner |", {"cr": True}],
        ["spinner /", {}],
    ]
    assert js(body, records) == [
        ["head and tail", 1, 2, 0, False],
        ["Downloading: 100%|##########", 3, 5, 2, False],
        [" 60%|██████ | 60/100 [00:12<00:08, 4.9it/s]", 6, 7, 1, False],
        ["Epoch 1 acc 90%", 8, 8, 0, False],  # 10 s apart: not a redraw
        ["Epoch 2 acc 91%", 9, 9, 0, False],
        ["plain 1", 10, 10, 0, False],
        ["plain 2", 11, 11, 0, False],
        ["err piece rest", 12, 14, 0, False],
        ["interleaved", 13, 13, 0, False],
        ["spinner /", 15, 16, 1, False],  # cr: true says so exactly
    ]

    # collapsing can be switched off
    off = body.replace("new m.EntryBuilder(out)", "new m.EntryBuilder(out, {collapse: false})")
    assert len(js(off, records[2:5])) == 3


def test_model_is_bounded_and_the_filtered_view_keeps_step(js: Callable[..., Any]) -> None:
    body = """
    const model = new m.LogModel({max: 1000});
    model.setFloor(m.LEVEL_ORDER.error);
    model.takeChange();
    for (let seq = 1; seq <= 5000; seq++) {
      model.addRecord({seq, timestamp: seq, level: seq % 4 ? "info" : "error", message: `line ${seq}`,
                       stream: "stdout", process: "p", run: 1, partial: false});
    }
    const change = model.takeChange();
    model.addEntry(m.gapEntry({from: 5001, to: 5009}, "p"));
    const sorted = model.view.every((e, i, v) => i === 0 || v[i - 1].seq <= e.seq);
    return {
      lines: model.lines, dropped: model.dropped, entries: model.entries.length, view: model.view.length,
      first: model.entries[0].seq, firstShown: model.view[0].seq, removed: change.removedFront,
      allErrors: model.view.slice(0, -1).every((e) => e.level === "error"), gapShown: model.view.at(-1).kind,
      sorted, at: model.indexOfSeq(4800), atSeq: model.view[model.indexOfSeq(4800)].seq,
    };
    """
    out = js(body)
    assert out["lines"] <= 1000
    assert out["dropped"] == 5000 - out["lines"]
    assert out["entries"] == out["lines"] + 1
    assert out["first"] == out["dropped"] + 1
    assert out["firstShown"] >= out["first"] and out["firstShown"] % 4 == 0
    assert out["allErrors"] and out["gapShown"] == "gap" and out["sorted"]
    assert out["atSeq"] == 4800


STATIC = Path(__file__).resolve().parents[2] / "src" / "logcast" / "web" / "static"


def test_static_files_never_parse_html_nor_reach_outside() -> None:
    """Invariant 6 and the CSP, checked in the sources: no HTML parsing of any string, no
    inline script or style, no eval, and every URL a page loads is on this origin."""
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
        r"|setAttribute\(\s*['\"]style|<style|\sstyle=|\son[a-z]+="
    )
    files = sorted(p for p in STATIC.rglob("*") if p.suffix in {".html", ".js", ".css"})
    assert {p.name for p in files} >= {"index.html", "logs.html", "config.html", "login.html", "app.css"}
    # Vendored libraries are others' code, unmodified (their JSDoc `import('./x.js')` types and
    # methods named `eval` are not ours to rename): each is listed with its origin, and the
    # CSP (no 'unsafe-eval', 'self' only) holds them as it holds ours.
    vendored = [p for p in files if p.parent.name == "vendor"]
    listed = (STATIC / "vendor" / "README.md").read_text()
    assert vendored and all(p.name.split(".")[0] in listed for p in vendored)
    for path in (p for p in files if p.parent.name != "vendor"):
        text = path.read_text()
        assert not forbidden.search(text), f"{path.name}: {forbidden.search(text)}"
        if path.suffix == ".html":
            assert not re.search(r"<script(?![^>]*\ssrc=)", text), f"{path.name}: inline <script>"
            for url in re.findall(r"""(?:src|href)="([^"]*)\"""", text):
                assert url.startswith(("/", "#", "data:")), f"{path.name} loads {url}"
        if path.suffix == ".js":
            for url in re.findall(r"""import[^"']*["']([^"']+)["']""", text):
                assert url.startswith(("./", "../vendor/")), f"{path.name} imports {url}"


def test_a_million_entries_move_without_overflowing_the_stack(js: Callable[..., Any]) -> None:
    """Resuming after a long pause and dropping a process from the merged view move every
    entry; a spread (`push(...list)`) of that many overflowed the call stack."""
    moved = js(
        """
        const { feed } = await import('/static/js/logs-state.js');
        feed.setPaused(true);
        for (let i = 0; i < arg; i++) feed.held.push({ type: 'realtime', log: { seq: i + 1 } });
        feed.setPaused(false);
        const resumed = feed.queued.length;
        feed.queued.length = 0;
        const merged = new m.MergedModel({ max: 2 * arg });
        for (let i = 0; i < arg; i++) merged.entries.push({ process: i % 2 ? 'a' : 'b', seq: i, text: '' });
        merged.removeProcess('a');
        return [resumed, merged.entries.length];
        """,
        1_000_000,
    )
    assert moved == [1_000_000, 500_000]


def test_rows_in_view_stay_put_when_older_ones_go_in_front_past_the_height_cap(
    js: Callable[..., Any],
) -> None:
    """The viewer fills in older history in front of what the user looks at. Past the
    browser's height cap the list maps positions by a ratio that every page changes: the
    rows in view must stay where they were, at the top of a list of a million rows too."""
    out = js(
        """
        const { VirtualList } = await import('/static/js/vlist.js');
        const box = document.createElement('div');
        box.style.cssText = 'position:fixed;left:0;top:0;width:600px;height:400px;overflow:auto';
        document.body.append(box);
        const list = new VirtualList(box, { renderRow: (row, e) => { row.textContent = e.text; } });
        const entry = (seq) => ({ kind: 'line', seq, text: `line ${seq}`, ver: 0 });
        const items = [];
        for (let seq = arg.first; seq <= arg.last; seq++) items.push(entry(seq));
        list.apply({ reset: true }, items);
        list.render();
        list.scrollToIndex(items.length - 500, 'top');
        list.render();
        const rows = () => [...box.querySelectorAll('.row:not([hidden])')];
        const top = box.getBoundingClientRect().top;
        const watched = rows().find((r) => r.getBoundingClientRect().top >= top).textContent;
        // where the row the user looked at is now (px from the top of the scroller)
        const topRow = () => {
          const row = rows().find((r) => r.textContent === watched);
          return row ? Math.round(row.getBoundingClientRect().top - top) : null;
        };
        const before = topRow();
        const seen = [];
        for (let page = 0; page < 5; page++) {
          const first = items[0].seq;
          // in place, as the model does: the list tells a reset by a new array
          const n = items.length;
          items.length = n + arg.page;
          items.copyWithin(arg.page, 0, n);
          for (let i = 0; i < arg.page; i++) items[i] = entry(first - arg.page + i);
          list.apply({ addedFront: arg.page }, items);
          list.render();
          seen.push(topRow());
        }
        box.remove();
        return { before, seen, capped: box.scrollHeight < items.length * list.rowH };
        """,
        {"first": 500_001, "last": 1_000_000, "page": 100_000},
    )
    assert out["capped"], "the list is not past the height cap: the test shows nothing"
    # a scroll position is whole pixels: each page may move it by a pixel or two of rounding
    assert all(top is not None and abs(top - out["before"]) <= 4 for top in out["seen"]), out


def test_the_viewer_preloads_every_module_it_imports() -> None:
    """logs.html names every module logs.js needs (modulepreload), so that the browser asks
    for them all at once instead of one import level after another; a list that went stale
    would quietly bring the waterfall back."""
    graph: set[str] = set()

    def walk(name: str) -> None:
        if name in graph:
            return
        graph.add(name)
        for dep in re.findall(r"""import[^"']*["']\./([^"']+)["']""", (STATIC / "js" / name).read_text()):
            walk(dep)

    walk("logs.js")
    html = (STATIC / "logs.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/js/([^"]+)">', html))
    assert preloaded == graph - {"logs.js"}
    assert '<script type="module" src="/static/js/logs.js">' in html


def test_a_batched_message_is_taken_event_by_event(js: Callable[..., Any]) -> None:
    """The stream's data is one event or an array of them (batch=1): each event of an
    array is checked like a lone one (seq tracked, repeats dropped, holes counted) and
    handed on in order; a message that is not JSON is ignored."""
    out = js(
        """
        const { LogStream } = await import('/static/js/stream.js');
        const got = [];
        const s = new LogStream('p', { lines: 10, onEvent: (ev) => got.push(ev.type + ':' + (ev.log ? ev.log.seq : ev.seq ?? ev.to)) });
        const line = (type, seq) => ({ type, log: { seq, message: `line ${seq}` } });
        s._message(JSON.stringify([line('historical', 1), line('historical', 2), { type: 'historical_complete', seq: 2 }]));
        s._message(JSON.stringify([line('realtime', 2), line('realtime', 3)]));  // 2 again: dropped
        s._message('not json');
        s._message(JSON.stringify(line('realtime', 4)));  // one event alone, as without batch=1
        s._message(JSON.stringify([{ type: 'gap', from: 5, to: 9 }, line('realtime', 10), line('realtime', 12)]));
        return { got, lastSeq: s.lastSeq, stats: s.stats, url: s.url() };
        """
    )
    assert out["got"] == [
        "historical:1",
        "historical:2",
        "historical_complete:2",
        "realtime:3",
        "realtime:4",
        "gap:9",
        "realtime:10",
        "realtime:12",
    ]
    assert out["lastSeq"] == 12
    assert out["stats"]["duplicates"] == 1 and out["stats"]["holes"] == 1 and out["stats"]["received"] == 6
    assert out["url"] == "/api/processes/p/logs/stream?after=12&batch=1"


def test_pausing_keeps_back_the_lines_that_were_not_drawn_yet(js: Callable[..., Any]) -> None:
    """Lines that arrived just before the pause wait for the next frame to be drawn: they
    are held with those that come after, so that the screen stays as it was paused (they
    were drawn after the pause, now and then)."""
    out = js(
        """
        const { feed } = await import('/static/js/logs-state.js');
        feed.queued = [
          { type: 'realtime', log: { seq: 1 } },
          { type: 'historical_complete' },
          { type: 'gap', from: 2, to: 3 },
          { type: 'status', log: { seq: 4 } },
        ];
        feed.setPaused(true);
        const out = {
          queued: feed.queued.map((e) => e.type),
          held: feed.held.map((e) => e.type),
          lines: feed.heldLines,
        };
        feed.setPaused(false);
        out.resumed = feed.queued.map((e) => e.type);
        feed.queued = [];
        return out;
        """
    )
    assert out == {
        "queued": ["historical_complete"],
        "held": ["realtime", "gap", "status"],
        "lines": 2,
        "resumed": ["historical_complete", "realtime", "gap", "status"],
    }


def test_lines_let_go_while_paused_are_a_gap_not_a_silent_hole(js: Callable[..., Any]) -> None:
    """Past `max` lines held while paused, the oldest go: a gap at the front says which (a
    review: 2,000 of 3,000 lines went with no gap and no count)."""
    out = js(
        """
        const { feed, settings } = await import('/static/js/logs-state.js');
        const { gapText } = await import('/static/js/render.js');
        const { gapEntry } = await import('/static/js/entries.js');
        const max = settings.maxLines;
        settings.maxLines = 10;
        feed.setPaused(true);
        feed.hold({ type: 'gap', from: 1, to: 4, reason: 'lost' });
        for (let seq = 5; seq <= 40; seq += 1) feed.hold({ type: 'realtime', log: { seq } });
        const held = feed.held.map((e) => e.type === 'gap' ? `gap ${e.from}-${e.to} ${e.reason}` : e.log.seq);
        const lines = feed.heldLines;
        feed.setPaused(false);
        feed.queued = [];
        settings.maxLines = max;
        return { held, lines, text: gapText(gapEntry({ from: 1, to: 31, reason: 'paused' }, 'p')) };
        """
    )
    first = out["held"][0]
    assert first.startswith("gap 1-") and first.endswith(" paused"), out
    last_gone = int(first.split()[1].split("-")[1])
    assert out["held"][1:] == list(range(last_gone + 1, 41))  # the rest, in order, none missing
    assert out["lines"] == len(out["held"]) - 1 <= 10
    assert "while paused" in out["text"]


def test_the_login_page_follows_next_only_to_a_path_of_this_origin(js: Callable[..., Any]) -> None:
    """The browser's URL parser drops tabs and newlines: "/\\t/evil.example/" was checked as
    a path and followed as "//evil.example/" (a review: an open redirect)."""
    out = js(
        """
        const { safeNext } = await import('/static/js/api.js');
        return arg.map((value) => safeNext(value));
        """,
        [
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/\r\n/evil.example/x",
            "//evil.example/",
            "/\\evil.example/",
            "/\\\\evil.example/",
            "https://evil.example/",
            "javascript:alert(1)",
            "",
            "/..//evil.example",
            "/.//evil.example/x",
            "/%2e%2e//evil.example",
            "/logs.html?process=web&after=10#end",
            "/config.html",
        ],
    )
    assert out == ["/"] * 12 + ["/logs.html?process=web&after=10#end", "/config.html"]
