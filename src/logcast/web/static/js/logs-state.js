// The log page's state in one place, apart from the code that wires it to the page: what the
// URL asked for, how rows are drawn, the line model, and where the feed of lines stands.

import { LogModel, MAX_CHARS } from "./log-model.js";
import { prefs } from "./prefs.js";
import { intParam } from "./query.js";

const params = new URLSearchParams(location.search);

/** What the page's URL asks for, read once at load. */
export const settings = {
  process: params.get("process") || "",
  historyLines: intParam(params, "lines", 100_000, 0, 1_000_000), // history asked for on opening
  maxLines: intParam(params, "max", 1_000_000, 1000, 5_000_000), // lines the view holds at most
  maxChars: intParam(params, "max_chars", MAX_CHARS, 1_000_000, 4 * MAX_CHARS), // ...and characters of text
  startAfter: params.has("after") ? intParam(params, "after", null, 0, Number.MAX_SAFE_INTEGER) : null,
  // the last seq shown: the view of one run (`after` its start, `until` its end) stops there
  until: params.has("until") ? intParam(params, "until", null, 0, Number.MAX_SAFE_INTEGER) : null,
  debug: params.get("debug") === "1",
  transport: params.get("transport") === "ws" ? "ws" : "sse",
  batch: params.get("batch") !== "0", // batch=0: one event per SSE message (as before batch=1)
  level: params.get("level") || "",
  query: params.get("q") || "",
  regex: params.get("re") === "1",
};

/** How rows are drawn; shared with the search, which sets the highlighter and current match. */
export const display = {
  time: prefs.get("time", "local"), // "local" | "utc" | "off"
  wrap: prefs.get("wrap", "0") === "1",
  collapse: prefs.get("collapse", "1") === "1", // collapse redrawn progress lines
  highlighter: null, // the search's, or null
  selected: null, // the entry the user clicked (copied by `c`)
  current: null, // the entry of the current search match
};

/** The seqs of the lines the model server's parser read (`model.marked`), kept as they come. */
export const parsed = {
  seqs: new Set(),
  max: 20_000,

  /** Take in a description's `marked`; true when a seq was new. */
  add(marked) {
    let added = false;
    for (const seq of Array.isArray(marked) ? marked : []) {
      if (!Number.isInteger(seq) || this.seqs.has(seq)) continue;
      this.seqs.add(seq);
      added = true;
    }
    if (this.seqs.size > this.max) {
      const drop = this.seqs.size - this.max;
      let i = 0;
      for (const seq of this.seqs) {
        if (i++ >= drop) break;
        this.seqs.delete(seq);
      }
    }
    return added;
  },

  /** True when the parser read one of the records an entry shows. */
  has(entry) {
    if (!this.seqs.size || entry.kind !== "line" || !Number.isInteger(entry.seq)) return false;
    const first = Number.isInteger(entry.first) ? entry.first : entry.seq;
    if (entry.seq - first > 64) return this.seqs.has(entry.seq) || this.seqs.has(first);
    for (let s = first; s <= entry.seq; s += 1) if (this.seqs.has(s)) return true;
    return false;
  },
};

export const model = new LogModel({ max: settings.maxLines, maxChars: settings.maxChars, collapse: display.collapse });

/** Characters of text an event held back brings. */
function heldText(ev) {
  const message = ev.log && ev.log.message;
  return typeof message === "string" ? message.length : 0;
}

/** An event that is a row of the log (held back while paused), not news of the stream. */
export function isLineEvent(ev) {
  return ev.type === "historical" || ev.type === "realtime" || ev.type === "status" || ev.type === "gap";
}

/** Where the feed of lines stands: the stream, events waiting to be taken in, pause, history. */
export const feed = {
  stream: null, // the LogStream, once a process is open
  queued: [], // events taken into the model on the next frame
  paused: false,
  held: [], // events kept back while paused
  heldLines: 0, // lines among them (gap markers not counted)
  heldChars: 0, // characters of their text
  unseen: 0, // lines that arrived while the user was scrolled up
  historyDone: false, // the stream's history part has been taken in
  moreOlder: false, // the server holds lines older than the first one held
  historyRecords: 0, // history records taken in (the stream's, then the pages filled in before them)
  filled: false, // the history asked for on opening is all in (or could not be had)
  rangeDone: false, // the range the address asked for (`until`) is all in: the stream stopped
  seqLog: settings.debug ? [] : null, // every seq received, for tests (`?debug=1`)

  /**
   * Keep an event back while paused; past `maxLines` lines (or `maxChars` characters) the
   * oldest are let go, and a gap at the front of what is held says which (`reason:
   * "paused"`): nothing is skipped silently. Let go a tenth at a time, so that a long pause
   * costs one splice in many.
   */
  hold(ev) {
    this.held.push(ev);
    if (ev.type !== "gap") this.heldLines += 1;
    this.heldChars += heldText(ev);
    if (this.heldLines <= settings.maxLines && this.heldChars <= settings.maxChars) return;
    const keep = Math.max(1, Math.floor(settings.maxLines * 0.9));
    const keepChars = Math.floor(settings.maxChars * 0.9);
    let lines = this.heldLines;
    let chars = this.heldChars;
    let cut = 0;
    let from = null;
    let to = null;
    while (cut < this.held.length - 1 && (lines > keep || chars > keepChars)) {
      const e = this.held[cut];
      chars -= heldText(e);
      const first = e.type === "gap" ? Number(e.from) : Number(e.log && e.log.seq);
      const last = e.type === "gap" ? Number(e.to) : first;
      if (Number.isInteger(first) && first > 0) {
        if (from === null || first < from) from = first;
        if (to === null || last > to) to = last;
      }
      if (e.type !== "gap") lines -= 1;
      cut += 1;
    }
    this.held.splice(0, cut);
    this.heldLines = lines;
    this.heldChars = chars;
    if (from !== null) this.held.unshift({ type: "gap", from, to, reason: "paused" });
  },

  /**
   * Pause or resume; resuming queues what was held. Returns false when nothing changed.
   * Pausing keeps back the lines that arrived but were not drawn yet (they wait for the
   * next frame): the screen stays as it was when the user paused.
   */
  setPaused(on) {
    if (on === this.paused) return false;
    this.paused = on;
    if (on) {
      const kept = [];
      for (const ev of this.queued) {
        if (isLineEvent(ev)) this.hold(ev);
        else kept.push(ev);
      }
      this.queued = kept;
    } else {
      for (const ev of this.held) this.queued.push(ev); // a spread of a million overflows the stack
      this.held = [];
      this.heldLines = 0;
      this.heldChars = 0;
    }
    return true;
  },

  /** Let go of the events held or queued whose records are at or below `upto` (cleared). */
  dropHeldUpTo(upto) {
    const after = (ev) => {
      const last = ev.type === "gap" ? Number(ev.to) : Number(ev.log && ev.log.seq);
      return !Number.isInteger(last) || last > upto;
    };
    this.queued = this.queued.filter((ev) => !isLineEvent(ev) || after(ev));
    this.held = this.held.filter(after);
    this.heldLines = this.held.filter((ev) => ev.type !== "gap").length;
    this.heldChars = this.held.reduce((n, ev) => n + heldText(ev), 0);
  },
};
