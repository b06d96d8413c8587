// One log row, built from nodes only: ANSI colours as spans with classes, search hits as
// <mark> elements, the text itself always as text nodes (never parsed as HTML).

import { parseAnsi, stripAnsi } from "./ansi.js";
import { formatClock, formatDateTime } from "./format.js";
import { RE2JS } from "../vendor/re2js.js";

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// A regex is matched within the first REGEX_SCAN characters of a line: RE2's time is linear,
// but in JavaScript about 0.5 µs a character (a 64 KiB line: 36 ms), and the rows drawn and
// every live line are matched.
export const REGEX_SCAN = 8192;

/**
 * A search highlighter: `ranges(plain)` → [[start, end], …] of the hits in a line's visible
 * text, `test(plain)` whether there is one. Case-insensitive, as the server's search. A
 * substring is found by the browser's own engine (a literal cannot make it backtrack); a
 * regex by RE2JS, the server's syntax in linear time, since a user's pattern, or a shared
 * link's (`(a+)+$`), would hold the browser's backtracking engine for minutes. A regex RE2
 * refuses is not highlighted (the server's search says why).
 */
export function makeHighlighter(query, isRegex = false) {
  if (!query) return null;
  if (isRegex) {
    let pattern;
    try {
      pattern = RE2JS.compile(query, RE2JS.CASE_INSENSITIVE);
    } catch {
      return null;
    }
    return {
      query,
      isRegex,
      test: (plain) => pattern.test(plain.length > REGEX_SCAN ? plain.slice(0, REGEX_SCAN) : plain),
      ranges(plain) {
        const out = [];
        const m = pattern.matcher(plain.length > REGEX_SCAN ? plain.slice(0, REGEX_SCAN) : plain);
        while (out.length < 200 && m.find()) if (m.end() > m.start()) out.push([m.start(), m.end()]);
        return out;
      },
    };
  }
  const re = new RegExp(escapeRegExp(query), "gi");
  return {
    query,
    isRegex,
    test(plain) {
      re.lastIndex = 0;
      return re.test(plain);
    },
    ranges(plain) {
      const out = [];
      re.lastIndex = 0;
      for (let m = re.exec(plain); m !== null && out.length < 200; m = re.exec(plain)) out.push([m.index, m.index + m[0].length]);
      return out;
    },
  };
}

/** Append a line's styled, highlighted text to `container`. */
export function appendMessage(container, text, highlighter) {
  const segments = parseAnsi(text);
  let ranges = [];
  if (highlighter) {
    const plain = segments.length === 1 ? segments[0].text : segments.map((s) => s.text).join("");
    ranges = highlighter.ranges(plain);
  }
  let offset = 0;
  let r = 0;
  for (const seg of segments) {
    const start = offset;
    const end = offset + seg.text.length;
    offset = end;
    let target = container;
    if (seg.cls || seg.fg || seg.bg) {
      target = document.createElement("span");
      if (seg.cls) target.className = seg.cls;
      if (seg.fg) target.style.color = seg.fg;
      if (seg.bg) target.style.backgroundColor = seg.bg;
      container.append(target);
    }
    if (!ranges.length) {
      target.append(document.createTextNode(seg.text));
      continue;
    }
    let pos = start;
    while (pos < end) {
      while (r < ranges.length && ranges[r][1] <= pos) r += 1;
      const hitRange = ranges[r];
      if (!hitRange || hitRange[0] >= end) {
        target.append(document.createTextNode(seg.text.slice(pos - start)));
        pos = end;
      } else if (hitRange[0] > pos) {
        target.append(document.createTextNode(seg.text.slice(pos - start, hitRange[0] - start)));
        pos = hitRange[0];
      } else {
        const stop = Math.min(hitRange[1], end);
        const hitElement = document.createElement("mark");
        hitElement.textContent = seg.text.slice(pos - start, stop - start);
        target.append(hitElement);
        pos = stop;
      }
    }
  }
}

const STATE_ICON = {
  running: "▶", ready: "✔", starting: "…", stopping: "■", stopped: "■", exited: "■", crashed: "✖", backoff: "↻",
};

/** The text copied for an entry: what the row shows, without colours. */
export function plainText(entry) {
  if (entry.kind === "gap") return gapText(entry);
  return stripAnsi(entry.text || "");
}

export function gapText(entry) {
  const n = entry.to - entry.from + 1;
  const reasons = {
    retention: "they left retention",
    slow: "the stream fell too far behind",
    cleared: "history was cleared",
    lost: "logcast lost them before they were stored",
    paused: "more came while paused than the view holds (max); the download has them",
  };
  const why = reasons[entry.reason] ? ` — ${reasons[entry.reason]}` : "";
  return `⚠ ${n.toLocaleString("en-US")} line${n === 1 ? "" : "s"} missed (${entry.from}–${entry.to})${why}`;
}

/**
 * Fill a pooled row element for an entry.
 * opts: {time: "local"|"utc"|"off", highlighter, slotOf(process) → 0..7 | null, selected, current}
 */
export function renderRow(row, entry, opts) {
  const kind = entry.kind;
  let cls = `row k-${kind} lvl-${entry.level || "info"}`;
  if (entry.stream === "stderr") cls += " stderr";
  if (opts.selected) cls += " selected";
  if (opts.current) cls += " current";
  row.className = cls;
  if (kind === "line" || kind === "status") row.dataset.seq = String(entry.seq);
  else delete row.dataset.seq;
  if (kind === "gap") {
    row.dataset.from = String(entry.from);
    row.dataset.to = String(entry.to);
  } else {
    delete row.dataset.from;
    delete row.dataset.to;
  }
  row.replaceChildren();

  if (opts.time !== "off") {
    const ts = document.createElement("span");
    ts.className = "ts";
    if (entry.ts !== null && entry.ts !== undefined) {
      ts.textContent = formatClock(entry.ts, opts.time === "utc");
      let title = formatDateTime(entry.ts, opts.time === "utc");
      if (kind === "line") title += ` · ${entry.stream} · run ${entry.run} · seq ${entry.first === entry.seq ? entry.seq : `${entry.first}–${entry.seq}`}`;
      ts.title = title;
    }
    row.append(ts);
  }
  const slot = opts.slotOf && entry.process ? opts.slotOf(entry.process) : null;
  if (slot !== null && slot !== undefined) {
    const tag = document.createElement("span");
    tag.className = `proc pc-${slot}`;
    tag.textContent = entry.process;
    row.append(tag);
  }
  const msg = document.createElement("span");
  msg.className = "msg";
  if (kind === "line") {
    appendMessage(msg, entry.text, opts.highlighter);
    if (entry.open) msg.classList.add("open");
  } else if (kind === "status") {
    const icon = STATE_ICON[entry.state] || "●";
    msg.textContent = `${icon} ${entry.process ? `${entry.process}: ` : ""}${stripAnsi(entry.text)}`;
  } else if (kind === "gap") {
    msg.textContent = gapText(entry);
  } else {
    msg.textContent = entry.text;
  }
  row.append(msg);
  if (kind === "line" && entry.updates > 0) {
    const badge = document.createElement("span");
    badge.className = "updates";
    badge.title = `redrawn ${entry.updates} time${entry.updates === 1 ? "" : "s"} (progress line)`;
    badge.textContent = `↻${entry.updates}`;
    row.append(badge);
  }
  if (kind === "line") {
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "row-copy";
    copy.tabIndex = -1;
    copy.title = "Copy this line";
    copy.setAttribute("aria-label", "Copy this line");
    copy.textContent = "❐";
    row.append(copy);
  }
}
