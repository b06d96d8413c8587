// Log records become display entries here, the way a terminal would draw them: the pieces
// of a partial line are joined, and a progress bar redrawn record by record (the server
// cannot tell a lone `\r` from `\n`) is collapsed into one entry.

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

/**
 * A new entry for one record.
 * Entry: {id, kind: "line"|"status"|"gap"|"note", seq, first, ts, firstTs, level, text, stream,
 *         run, process, open, updates, ver, state?, from?, to?, reason?}
 * `seq` and `ts` are its newest record's, `first` and `firstTs` its first record's: a joined
 * line or a collapsed progress bar stays where its first record came, so entries are in the
 * order of `first`, not of `seq`.
 */
export function entryFromRecord(log, kind = "line") {
  return {
    id: nextId++,
    kind,
    seq: log.seq,
    first: log.seq,
    ts: log.timestamp,
    firstTs: log.timestamp,
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

/**
 * Appends records to an array of entries, joining partial lines and collapsing progress.
 *
 * * A `partial` record does not end its line (a 64 KiB piece of a longer line, or text
 *   flushed after an idle pause): the next record of the same stream and run continues the
 *   same entry, up to JOIN_LIMIT characters.
 * * A redrawn progress line is collapsed into the previous entry (newest text shown, updates
 *   counted) when all of these hold: same stream and run as the previous line of that
 *   stream, both look like progress (a percentage such as `45%` or a bar of `█`/`━`/`#`/`=`),
 *   the same shape (the text with every number read as 0 and bar characters and spaces
 *   removed: "  5%|▌ | 5/100" and " 60%|██████ | 60/100" are both "0%||0/0"), and less than
 *   2 s between them. A record with `cr: true` ("ended by a lone \r") collapses the next one
 *   exactly. `collapse: false` switches the rule off (View ▸ Collapse progress); collapsed
 *   records stay in the server's history, so search and download still see them.
 */
export class EntryBuilder {
  constructor(target, { collapse = true } = {}) {
    this.target = target;
    this.collapse = collapse;
    this.lastByStream = new Map(); // `${process}/${stream}` → last line entry of that stream
  }

  /**
   * Add one record; returns {entry, created, grew}: created false when an entry was updated,
   * grew the characters of text that added (negative when a redraw is shorter).
   */
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
          return { entry: prev, created: false, grew: text.length };
        }
        if (this.collapse && !prev.open && this._isRedraw(prev, log, text)) {
          const grew = text.length - prev.text.length;
          prev.text = text;
          prev.updates += 1;
          this._absorb(prev, log);
          prev.open = Boolean(log.partial);
          return { entry: prev, created: false, grew };
        }
      }
      const entry = entryFromRecord(log, kind);
      this.lastByStream.set(key, entry);
      this.target.push(entry);
      return { entry, created: true, grew: entry.text.length };
    }
    const entry = entryFromRecord(log, kind);
    if (kind === "status") {
      for (const [key, e] of this.lastByStream) if (e.process === log.process) this.lastByStream.delete(key);
    }
    this.target.push(entry);
    return { entry, created: true, grew: entry.text.length };
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

  /** Forget the entries that left the list (`gone`): a later redraw or piece of their line
   * starts a new entry instead of updating one nobody draws. */
  forgetGone() {
    for (const [key, e] of this.lastByStream) if (e.gone) this.lastByStream.delete(key);
  }
}
