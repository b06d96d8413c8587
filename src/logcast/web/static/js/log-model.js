// The single-process viewer's memory: every entry it holds, bounded so that a long-running
// process cannot exhaust the tab, and the level-filtered view the virtual list draws.

import { EntryBuilder, LEVEL_ORDER } from "./entries.js";

/** Characters of text the viewer holds at most (about as many bytes of the tab's memory):
 * a million lines of 130 characters, or 2,000 of 64 KiB. */
export const MAX_CHARS = 128 * 2 ** 20;
const SPAN_LOOK = 4096; // entries `indexOfSeq` looks back for a collapsed line that shows a seq

/** Index of the first of `list` (in the order of `first`) whose first record is after `seq`. */
function afterFirst(list, seq) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid].first <= seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * `entries` holds display entries in arrival order (lines, status rows, gap markers and local
 * notes), bounded to `max` lines and `maxChars` characters of text: past either the oldest
 * 10 % are dropped at once (one splice, amortised) and counted in `dropped`. `view` is
 * `entries` itself when no level filter is set, else the entries that pass it, kept in step
 * on every append. Changes since the last render are reported by `takeChange()` as
 * {removedFront, addedFront, addedBack, updated, reset} counted in view entries, so the
 * virtual list can keep the user's scroll position.
 */
export class LogModel {
  constructor({ max = 1_000_000, maxChars = MAX_CHARS, floor = 0, collapse = true } = {}) {
    this.max = max;
    this.maxChars = maxChars;
    this.chars = 0; // characters of text held
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
    this.view = floor > 0 ? [] : this.entries;
    this._refilter();
  }

  setCollapse(collapse) {
    this.builder.collapse = collapse;
  }

  /** Append a stream event's record (line or status). Returns the entry touched. */
  addRecord(log, kind = "line") {
    const { entry, created, grew } = this.builder.add(log, kind);
    this.chars += grew;
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
    this.chars += entry.text.length;
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
    if (this.lines <= this.max && this.chars <= this.maxChars) return;
    const target = Math.floor(this.max * 0.9);
    const targetChars = Math.floor(this.maxChars * 0.9);
    let cut = 0;
    let removedLines = 0;
    let chars = this.chars;
    const last = this.entries.length - 1; // the newest stays, however long
    while (cut < last && (this.lines - removedLines > target || chars > targetChars)) {
      const e = this.entries[cut];
      if (e.kind === "line") removedLines += 1;
      chars -= e.text.length;
      cut += 1;
    }
    this._dropFront(cut, removedLines);
  }

  _dropFront(cut, removedLines) {
    if (cut <= 0) return;
    const removed = this.entries.splice(0, cut);
    this.lines -= removedLines;
    this.dropped += removedLines;
    for (const e of removed) {
      e.gone = true;
      this.chars -= e.text.length;
    }
    this.builder.forgetGone(); // a redraw of a progress bar that left starts a new entry
    if (this.view === this.entries) {
      this._change.removedFront += cut;
    } else {
      // the view is a subsequence of the entries, so what left is a prefix of it
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
    for (const e of older) {
      if (e.kind === "line") lines += 1;
      this.chars += e.text.length;
    }
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
    this.chars = 0;
    this._change.reset = true;
  }

  /** Forget the entries whose records are all at or below `upto` (the server cleared them),
   * wherever they are (a progress bar redrawn after `upto` keeps its place before them);
   * those with records after it stay. */
  clearUpTo(upto) {
    const kept = [];
    let removedLines = 0;
    for (const e of this.entries) {
      if (e.seq > upto) {
        kept.push(e);
        continue;
      }
      e.gone = true;
      this.chars -= e.text.length;
      if (e.kind === "line") removedLines += 1;
    }
    if (kept.length === this.entries.length) return;
    this.entries.length = 0;
    for (const e of kept) this.entries.push(e); // the same array: the view may be it
    this.lines -= removedLines;
    this.builder.forgetGone();
    this._refilter();
  }

  /** Put `entry` where its first record belongs (entries are in the order of `first`). */
  insertEntry(entry) {
    this.entries.splice(afterFirst(this.entries, entry.first), 0, entry);
    this.chars += entry.text.length;
    if (entry.kind === "line") this.lines += 1;
    this._refilter();
  }

  /** The view built again from the entries (after a change in the middle of them). */
  _refilter() {
    if (this.view !== this.entries) {
      this.view = [];
      for (const e of this.entries) {
        e.shown = this.passes(e);
        if (e.shown) this.view.push(e);
      }
    }
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

  /**
   * Index in `view` of the entry that shows `seq` (its first record up to its newest), else of
   * the first entry after it. Entries are in the order of their first record: a collapsed
   * progress bar or a joined line keeps its place while its `seq` grows, so the entry that
   * shows `seq` may stand before lines that came after its first record (looked for up to
   * `SPAN_LOOK` entries back).
   */
  indexOfSeq(seq) {
    const v = this.view;
    const lo = afterFirst(v, seq);
    // every entry before `lo` begins at or before `seq`: the nearest that reaches it shows it
    for (let i = lo - 1; i >= 0 && i >= lo - SPAN_LOOK; i--) if (v[i].seq >= seq) return i;
    return lo;
  }

  /** Index in `view` of the first entry whose first record came at or after Unix time ts. */
  indexOfTime(ts) {
    const v = this.view;
    let lo = 0;
    let hi = v.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = v[mid];
      const t = e.firstTs ?? e.ts;
      if (t !== null && t !== undefined && t < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
