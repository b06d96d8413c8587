// The dashboard's merged live view: the lines of several processes in one list, ordered by
// timestamp and bounded, so that they can be read side by side as they happen.

import { EntryBuilder } from "./entries.js";

/**
 * At most `max` lines and `maxChars` characters of text (the oldest go). Each process's lines
 * arrive in order; merging inserts a line before any newer line of another process (binary
 * search from the end, usually zero steps).
 */
export class MergedModel {
  constructor({ max = 5000, maxChars = 16 * 2 ** 20 } = {}) {
    this.max = max;
    this.maxChars = maxChars;
    this.chars = 0;
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
    const { entry, created, grew } = this.builder.add(log, kind);
    this.chars += grew;
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
    if (list.length > this.max || this.chars > this.maxChars) {
      let cut = Math.max(0, list.length - Math.floor(this.max * 0.9));
      let chars = this.chars;
      for (let i = 0; i < cut; i++) chars -= list[i].text.length;
      while (cut < list.length - 1 && chars > this.maxChars * 0.9) chars -= list[cut++].text.length;
      this._drop(list.splice(0, cut));
      this._change.removedFront += cut;
    }
  }

  /** Forget every entry (the Clear button). */
  clear() {
    this._drop(this.entries.splice(0));
    this._change.reset = true;
  }

  _drop(removed) {
    for (const e of removed) {
      e.gone = true;
      this.chars -= e.text.length;
    }
    this.builder.forgetGone(); // a progress bar that left starts a new entry when redrawn
  }

  removeProcess(name) {
    const kept = [];
    for (const e of this.entries) {
      if (e.process !== name) kept.push(e);
      else this.chars -= e.text.length;
    }
    this.entries.length = 0;
    for (const entry of kept) this.entries.push(entry);
    this.builder.forget();
    this._change.reset = true;
  }
}
