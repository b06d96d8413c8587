// Older history on demand: the view opens on the newest lines, and earlier pages are fetched
// when the user, a search match or a jump to a time needs them.

import { api, enc } from "./api.js";
import { EntryBuilder } from "./entries.js";
import { toast } from "./feedback.js";
import { formatCount, fromDateTimeLocal } from "./format.js";
import { ui } from "./logs-elements.js";
import { display, feed, model, settings } from "./logs-state.js";

export const PAGE_LINES = 10_000;

/** Fetches pages of lines older than the first one held and puts them in front. */
export class EarlierLines {
  /** @param {{vlist: object, onLoaded: () => void}} deps  onLoaded: after a page went in */
  constructor({ vlist, onLoaded }) {
    this.vlist = vlist;
    this.onLoaded = onLoaded;
    this.loading = null; // the page being fetched (a promise of "got any lines")
  }

  /** Load one page; true when it brought lines. A call while one is loading joins it. */
  async load(count = PAGE_LINES) {
    if (this.loading) return this.loading;
    const before = model.firstSeq();
    if (before === null || !feed.moreOlder) return false;
    if (model.lines + count > settings.maxLines) {
      toast(`The view holds ${formatCount(settings.maxLines)} lines at most; download the log for everything.`, "info");
      return false;
    }
    ui.earlier.disabled = true;
    ui.earlier.textContent = "Loading…";
    this.loading = (async () => {
      try {
        const q = new URLSearchParams({ tail: String(count), before: String(before) });
        const data = await api(`/api/processes/${enc(settings.process)}/logs?${q}`);
        const logs = (data.logs || []).filter((log) => log.seq < before);
        const older = [];
        const builder = new EntryBuilder(older, { collapse: display.collapse });
        for (const log of logs) builder.add(log, log.stream === "system" ? "status" : "line");
        model.prepend(older);
        if (logs.length < count) feed.moreOlder = false;
        this.vlist.apply(model.takeChange(), model.view);
        this.onLoaded();
        return logs.length > 0;
      } catch (err) {
        toast(`Could not load earlier lines: ${err.message}`, "error");
        return false;
      } finally {
        this.loading = null;
        ui.earlier.disabled = false;
        ui.earlier.textContent = "⇡ Load earlier lines";
        ui.earlierMenu.disabled = !feed.moreOlder;
      }
    })();
    return this.loading;
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
