// Older history on demand: the view opens on the newest lines, and earlier pages are fetched
// when the user, a search match or a jump to a time needs them.

import { api, enc } from "./api.js";
import { EntryBuilder, gapEntry } from "./entries.js";
import { toast } from "./feedback.js";
import { formatCount, fromDateTimeLocal } from "./format.js";
import { ui } from "./logs-elements.js";
import { display, feed, model, settings } from "./logs-state.js";

export const PAGE_LINES = 10_000;
export const FILL_LINES = 5_000; // a page of the history filled in on opening: short tasks

/** Fetches pages of lines older than the first one held and puts them in front. */
export class EarlierLines {
  /** @param {{vlist: object, onLoaded: () => void}} deps  onLoaded: after a page went in */
  constructor({ vlist, onLoaded }) {
    this.vlist = vlist;
    this.onLoaded = onLoaded;
    this.loading = null; // the page being fetched (a promise of the records it brought)
    this.filling = false; // fill() is at work
    this.ahead = null; // {before, count, data}: the next page, asked for while this one goes in
  }

  /** Load one page; true when it brought lines. A call while one is loading joins it. */
  async load(count = PAGE_LINES) {
    return (await this._page(count, false)) > 0;
  }

  /** The newest `count` records with seq ≤ `before` (the server's page). */
  _fetch(before, count) {
    const q = new URLSearchParams({ tail: String(count), before: String(before) });
    return api(`/api/processes/${enc(settings.process)}/logs?${q}`);
  }

  /**
   * Fetch up to `count` records older than the first one held and put them in front; the
   * number of records it brought (0: none, or the view is full, or it failed). `quiet`: no
   * toast when the view is full (the history filled in on opening stops there by itself).
   * `next`: as soon as the page is here, ask for the one before it (`count` more), so that
   * the server reads it while this one goes in.
   */
  _page(count, quiet, next = 0) {
    if (this.loading) return this.loading;
    const before = model.firstSeq();
    if (before === null || !feed.moreOlder || before <= 1) return Promise.resolve(0);
    count = Math.min(count, settings.maxLines - model.lines);
    if (count <= 0 || model.chars >= model.maxChars) {
      const most = count <= 0 ? `${formatCount(settings.maxLines)} lines` : `${formatCount(model.maxChars)} characters of text`;
      if (!quiet) toast(`The view holds ${most} at most; download the log for everything.`, "info");
      return Promise.resolve(0);
    }
    ui.earlier.disabled = true;
    ui.earlier.textContent = "Loading…";
    this.loading = (async () => {
      try {
        // `before` is inclusive on the server: ask for the lines before our first one
        const ahead = this.ahead;
        this.ahead = null;
        const data = ahead && ahead.before === before - 1 && ahead.count === count ? await ahead.data : await this._fetch(before - 1, count);
        const logs = (data.logs || []).filter((log) => log.seq < before);
        // the server's page may be shorter than asked (it stops at 4 Mi characters of text):
        // `before` says whether there is more, null once the oldest line was looked at
        const more = logs.length > 0 && data.before !== null && data.before !== undefined;
        if (more && next > 0 && logs[0].seq > 1) {
          const ask = { before: logs[0].seq - 1, count: next, data: this._fetch(logs[0].seq - 1, next) };
          ask.data.catch(() => {}); // not taken if the view changes meanwhile
          this.ahead = ask;
        }
        const older = [];
        const builder = new EntryBuilder(older, { collapse: display.collapse });
        let expected = logs.length ? logs[0].seq : before;
        const hole = (to) => {
          // seqs that no page holds (lost before they were stored): said, as the stream does
          older.push(gapEntry({ from: expected, to }, settings.process));
          builder.forget();
        };
        for (const log of logs) {
          if (log.seq > expected) hole(log.seq - 1);
          builder.add(log, log.stream === "system" ? "status" : "line");
          expected = log.seq + 1;
        }
        if (logs.length && expected < before) hole(before - 1);
        if (model.firstSeq() !== before) return 0; // the view was cleared meanwhile
        // no more text than the view has room for: the newest of the page, the rest left
        // for "Load earlier" (long lines: a page of 5,000 was 325 M characters)
        let room = model.maxChars - model.chars;
        let keep = older.length;
        while (keep > 0 && room - older[keep - 1].text.length >= 0) room -= older[--keep].text.length;
        const kept = keep > 0 ? older.slice(keep) : older;
        model.prepend(kept);
        const from = kept.length ? kept[0].first : Infinity;
        const took = keep > 0 ? logs.filter((log) => log.seq >= from).length : logs.length;
        feed.historyRecords += took;
        if (!more && keep === 0) feed.moreOlder = false;
        this.vlist.apply(model.takeChange(), model.view);
        this.onLoaded();
        return took;
      } catch (err) {
        this.ahead = null;
        toast(`Could not load earlier lines: ${err.message}`, "error");
        return 0;
      } finally {
        this.loading = null;
        ui.earlier.disabled = false;
        ui.earlier.textContent = "⇡ Load earlier lines";
        ui.earlierMenu.disabled = !feed.moreOlder;
      }
    })();
    return this.loading;
  }

  /**
   * The history the address asked for (`lines`), filled in backwards once the stream has
   * shown its last lines: pages of FILL_LINES in front of what is held, each asked for while
   * the one after it goes in, until `wanted` history records are held, the oldest is reached
   * or the view is full. The list keeps the user's place (or its bottom, while following).
   */
  async fill(wanted) {
    if (this.filling) return;
    this.filling = true;
    try {
      while (feed.historyRecords < wanted && feed.moreOlder) {
        const count = Math.min(FILL_LINES, wanted - feed.historyRecords);
        const next = Math.min(FILL_LINES, wanted - feed.historyRecords - count);
        const got = await this._page(count, true, next);
        if (!got) break;
      }
    } finally {
      this.filling = false;
      this.ahead = null;
      feed.filled = true;
      this.onLoaded();
    }
  }

  /** Load pages until `reached(firstSeq)` or up to 20 pages; true when reached. */
  async loadUntil(reached) {
    for (let page = 0; page < 20; page++) {
      const first = model.firstSeq();
      if (first === null || reached(first)) return true;
      if (!feed.moreOlder) return false;
      const got = await this.load(PAGE_LINES);
      if (!got) return reached(model.firstSeq() ?? Infinity);
    }
    return reached(model.firstSeq() ?? Infinity);
  }
}

/** Select and show the first line at or after the time in the View menu's field. */
export async function jumpToTime(earlier, vlist) {
  const ts = fromDateTimeLocal(ui.jumpTime.value, display.time === "utc");
  if (!Number.isFinite(ts)) {
    toast("Pick a date and time first.", "info");
    return;
  }
  const firstEntry = model.entries.find((e) => e.ts !== null && e.ts !== undefined);
  if (firstEntry && ts < firstEntry.ts && feed.moreOlder) {
    await earlier.loadUntil(() => {
      const e = model.entries.find((x) => x.ts !== null && x.ts !== undefined);
      return !e || e.ts <= ts;
    });
    vlist.render();
  }
  const idx = model.indexOfTime(ts);
  if (idx >= model.view.length) {
    toast("No lines at or after that time yet.", "info");
    vlist.toBottom();
    return;
  }
  display.selected = model.view[idx];
  vlist.scrollToIndex(idx, "top");
  vlist.refresh();
}
