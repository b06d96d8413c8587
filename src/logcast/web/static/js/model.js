// The viewer's memory: every line it holds, and the filtered view the list renders.
//
// `entries` holds display entries in arrival order — lines, status rows, gap markers and
// local notes — bounded to `max` lines: past it the oldest 10 % are dropped at once (one
// splice, amortised) and counted in `dropped`. `view` is `entries` itself when no level
// filter is set, else the entries that pass it, kept in step on every append.
//
// Records become entries by two rules, both about how terminals draw:
// * A `partial` record does not end its line (a 64 KiB piece of a longer line, or text
//   flushed after an idle pause): the next record of the same stream and run continues the
//   same entry, up to JOIN_LIMIT characters.
// * Progress lines. The server ends a line at a lone `\r` as at `\n` and does not say which
//   it was, so a redrawn progress bar arrives as many records. They are collapsed into one
//   entry that shows the newest text and counts the updates when all of these hold: same
//   stream and run as the previous line of that stream, both look like progress (a
//   percentage such as `45%` or a bar of `█`/`━`/`#`/`=`), the same shape (the text with
//   every number read as 0 and bar characters and spaces removed: "  5%|▌ | 5/100" and
//   " 60%|██████ | 60/100" are both "0%||0/0"), and less than 2 s between them. A record
//   that carries `cr: true` (a future server field: "ended by a lone \r") collapses the
//   next one exactly. The rule can be switched off in the viewer (View ▸ Collapse progress).
//   Collapsed records stay in the server's history: search and download still see them.
//
// Entry: {id, kind: "line"|"status"|"gap"|"note", seq, first, ts, level, text, stream, run,
//         process, open, updates, ver, state?, from?, to?, reason?}

import { stripAnsi } from "./ansi.js";

export const LEVELS = ["debug", "info", "success", "warning", "error", "critical"];
export const LEVEL_ORDER = { debug: 10, info: 20, success: 25, warning: 30, error: 40, critical: 50 };
const JOIN_LIMIT = 256 * 1024;
const PROGRESS_WINDOW_S = 2;
const PROGRESS = /\d(?:\.\d+)?\s?%|[█▉▊▋▌▍▎▏━╸#=]{3,}/;
const NUMBER = /\d+(?:[.,]\d+)*/g;
const BAR_AND_SPACE = /[\s█▉▊▋▌▍▎▏━╸#=>-]+/g;

let nextId = 1;

/** The shape of a progress line (numbers → "0", bars and spaces removed), or null. */
function progressShape(text) {
  const plain = stripAnsi(text);
  if (!PROGRESS.test(plain)) return null;
  return plain.replace(NUMBER, "0").replace(BAR_AND_SPACE, "");
}

export function entryFromRecord(log, kind = "line") {
  return {
    id: nextId++,
    kind,
    seq: log.seq,
    first: log.seq,
    ts: log.timestamp,
    level: LEVEL_ORDER[log.level] ? log.level : "info",
    text: typeof log.message === "string" ? log.message : String(log.message ?? ""),
    stream: log.stream,
    run: log.run,
    process: log.process,
    state: log.state,
    open: Boolean(log.partial) && kind === "line",
    cr: log.cr === true,
    updates: 0,
    ver: 0,
  };
}

export function gapEntry(ev, process) {
  const from = Number(ev.from);
  const to = Number(ev.to);
  return {
    id: nextId++, kind: "gap", seq: to, first: from, from, to, reason: ev.reason || "",
    ts: null, level: "warning", text: "", process, ver: 0,
  };
}

export function noteEntry(text, ts = Date.now() / 1000, seq = 0, level = "info") {
  return { id: nextId++, kind: "note", seq, first: seq, ts, level, text, ver: 0 };
}

/** Appends records to an array of entries, joining partial lines and collapsing progress. */
export class EntryBuilder {
  constructor(target, { collapse = true } = {}) {
    this.target = target;
    this.collapse = collapse;
    this.lastByStream = new Map(); // `${process}/${stream}` → last line entry of that stream
  }

  /** Add one record; returns {entry, created} (created false when an entry was updated). */
  add(log, kind = "line") {
    if (kind === "line") {
      const key = `${log.process}/${log.stream}`;
      const prev = this.lastByStream.get(key);
      if (prev && prev.run === log.run) {
        const text = typeof log.message === "string" ? log.message : String(log.message ?? "");
        if (prev.open && prev.text.length + text.length <= JOIN_LIMIT) {
          prev.text += text;
          this._absorb(prev, log);
          prev.open = Boolean(log.partial);
          return { entry: prev, created: false };
        }
        if (this.collapse && !prev.open && this._isRedraw(prev, log, text)) {
          prev.text = text;
          prev.updates += 1;
          this._absorb(prev, log);
          prev.open = Boolean(log.partial);
          return { entry: prev, created: false };
        }
      }
      const entry = entryFromRecord(log, kind);
      this.lastByStream.set(key, entry);
      this.target.push(entry);
      return { entry, created: true };
    }
    const entry = entryFromRecord(log, kind);
    if (kind === "status") {
      for (const [key, e] of this.lastByStream) if (e.process === log.process) this.lastByStream.delete(key);
    }
    this.target.push(entry);
    return { entry, created: true };
  }

  _absorb(entry, log) {
    entry.seq = log.seq;
    entry.ts = log.timestamp;
    entry.cr = log.cr === true;
    if ((LEVEL_ORDER[log.level] || 0) > (LEVEL_ORDER[entry.level] || 0)) entry.level = log.level;
    entry.ver += 1;
  }

  _isRedraw(prev, log, text) {
    if (prev.cr) return true;
    if (log.timestamp - prev.ts > PROGRESS_WINDOW_S) return false;
    const a = progressShape(prev.text);
    if (a === null) return false;
    const b = progressShape(text);
    return b !== null && a === b;
  }

  forget() {
    this.lastByStream.clear();
  }
}

/**
 * The single-process viewer's model. Changes since the last render are reported by
 * `takeChange()` as {removedFront, addedFront, addedBack, updated, reset} counted in
 * view entries, so the virtual list can keep the user's scroll position.
 */
export class LogModel {
  constructor({ max = 1_000_000, floor = 0, collapse = true } = {}) {
    this.max = max;
    this.floor = floor;
    this.entries = [];
    this.view = this.entries;
    this.builder = new EntryBuilder(this.entries, { collapse });
    this.dropped = 0;
    this.lines = 0; // line entries' records held (for the status bar)
    this._change = this._noChange();
  }

  _noChange() {
    return { removedFront: 0, addedFront: 0, addedBack: 0, updated: false, reset: false };
  }

  takeChange() {
    const change = this._change;
    this._change = this._noChange();
    return change;
  }

  passes(entry) {
    return entry.kind !== "line" || (LEVEL_ORDER[entry.level] || 0) >= this.floor;
  }

  setFloor(floor) {
    if (floor === this.floor) return;
    this.floor = floor;
    if (floor > 0) {
      this.view = [];
      for (const e of this.entries) {
        e.shown = this.passes(e);
        if (e.shown) this.view.push(e);
      }
    } else {
      this.view = this.entries;
    }
    this._change.reset = true;
  }

  setCollapse(collapse) {
    this.builder.collapse = collapse;
  }

  /** Append a stream event's record (line or status). Returns the entry touched. */
  addRecord(log, kind = "line") {
    const { entry, created } = this.builder.add(log, kind);
    if (created) {
      this._appendToView(entry);
    } else {
      this._change.updated = true;
      if (this.view !== this.entries && !entry.shown && this.passes(entry)) {
        // a continuation raised its level above the filter's floor: show it from now on
        entry.shown = true;
        this.view.push(entry);
        this._change.addedBack += 1;
      }
    }
    this._bound();
    return entry;
  }

  addEntry(entry) {
    if (entry.kind === "note" && !entry.seq && this.entries.length) {
      // keep `entries` sorted by seq for indexOfSeq(): a note sits at its predecessor's seq
      entry.seq = entry.first = this.entries[this.entries.length - 1].seq;
    }
    this.entries.push(entry);
    this.builder.forget();
    this._appendToView(entry);
    this._bound();
    return entry;
  }

  _appendToView(entry) {
    if (entry.kind === "line") this.lines += 1;
    if (this.view !== this.entries) {
      entry.shown = this.passes(entry);
      if (entry.shown) {
        this.view.push(entry);
        this._change.addedBack += 1;
      }
    } else {
      this._change.addedBack += 1;
    }
  }

  _bound() {
    if (this.lines <= this.max) return;
    const target = Math.floor(this.max * 0.9);
    let cut = 0;
    let removedLines = 0;
    while (cut < this.entries.length && this.lines - removedLines > target) {
      if (this.entries[cut].kind === "line") removedLines += 1;
      cut += 1;
    }
    this._dropFront(cut, removedLines);
  }

  _dropFront(cut, removedLines) {
    if (cut <= 0) return;
    const removed = this.entries.splice(0, cut);
    this.lines -= removedLines;
    this.dropped += removedLines;
    if (this.view === this.entries) {
      this._change.removedFront += cut;
    } else {
      // the view is a subsequence of the entries, so what left is a prefix of it
      for (const e of removed) e.gone = true;
      let n = 0;
      while (n < this.view.length && this.view[n].gone) n += 1;
      this.view.splice(0, n);
      this._change.removedFront += n;
    }
  }

  /** Put older entries (from a history page) in front. They must all be older than ours. */
  prepend(older) {
    if (!older.length) return;
    let lines = 0;
    for (const e of older) if (e.kind === "line") lines += 1;
    this.entries.unshift(...older);
    this.lines += lines;
    if (this.view === this.entries) {
      this._change.addedFront += older.length;
    } else {
      const shown = older.filter((e) => {
        e.shown = this.passes(e);
        return e.shown;
      });
      this.view.unshift(...shown);
      this._change.addedFront += shown.length;
    }
  }

  /** Forget everything held (the user cleared the view or the history). */
  clear() {
    this.entries.length = 0;
    this.view = this.floor > 0 ? [] : this.entries;
    this.builder.forget();
    this.lines = 0;
    this._change.reset = true;
  }

  /** Smallest seq held (for "load earlier"), or null. */
  firstSeq() {
    for (const e of this.entries) {
      if (e.kind === "gap") return e.from;
      if (e.kind === "line" || e.kind === "status") return e.first;
    }
    return null;
  }

  /** Index in `view` of the first entry whose seq ≥ seq (entries are in seq order). */
  indexOfSeq(seq) {
    const v = this.view;
    let lo = 0;
    let hi = v.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v[mid].seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index in `view` of the first entry at or after Unix time ts. */
  indexOfTime(ts) {
    const v = this.view;
    let lo = 0;
    let hi = v.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const t = v[mid].ts;
      if (t !== null && t !== undefined && t < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * The dashboard's merged view: lines of several processes ordered by timestamp, bounded
 * to `max` lines. Each process's lines arrive in order; merging inserts a line before
 * any newer line of another process (binary search from the end, usually zero steps).
 */
export class MergedModel {
  constructor({ max = 5000 } = {}) {
    this.max = max;
    this.entries = [];
    this.view = this.entries;
    this.builder = new EntryBuilder([], { collapse: true });
    this._change = { removedFront: 0, addedFront: 0, addedBack: 0, updated: false, reset: false };
  }

  takeChange() {
    const change = this._change;
    this._change = { removedFront: 0, addedFront: 0, addedBack: 0, updated: false, reset: false };
    return change;
  }

  add(log, kind = "line") {
    const scratch = [];
    this.builder.target = scratch;
    const { entry, created } = this.builder.add(log, kind);
    if (!created) {
      this._change.updated = true;
      return entry;
    }
    this.insert(entry);
    return entry;
  }

  insert(entry) {
    const list = this.entries;
    const ts = entry.ts ?? Date.now() / 1000;
    if (!list.length || (list[list.length - 1].ts ?? 0) <= ts) {
      list.push(entry);
      this._change.addedBack += 1;
    } else {
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((list[mid].ts ?? 0) <= ts) lo = mid + 1;
        else hi = mid;
      }
      list.splice(lo, 0, entry);
      this._change.reset = true;
    }
    if (list.length > this.max) {
      const cut = list.length - Math.floor(this.max * 0.9);
      list.splice(0, cut);
      this._change.removedFront += cut;
    }
  }

  removeProcess(name) {
    const kept = this.entries.filter((e) => e.process !== name);
    this.entries.length = 0;
    this.entries.push(...kept);
    this.builder.forget();
    this._change.reset = true;
  }
}
