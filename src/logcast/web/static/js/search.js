// The viewer's search covers the whole history, not only the lines the page holds: the server
// finds the matches, lines arriving afterwards are matched here, and hits are highlighted.

import { api, enc } from "./api.js";
import { stripAnsi } from "./ansi.js";
import { appendMessage, makeHighlighter } from "./render.js";
import { el } from "./dom.js";
import { toast } from "./feedback.js";
import { formatClock, formatCount } from "./format.js";

export const SEARCH_LIMIT = 5000;

/**
 * The server searches (`GET …/logs?q=` or `regex=`, newest SEARCH_LIMIT matches, window by
 * window). Matches are listed, stepped through (next/previous wrap around) and highlighted in
 * the visible rows through the highlighter it sets in `display`.
 */
export class Search {
  /**
   * @param {{process: string, model: object, vlist: object, display: object, ui: object,
   *          level: () => string, lastSeq: () => number, loadOlderUntil: (reached: Function) => Promise<boolean>,
   *          onQuery: () => void}} deps
   */
  constructor(deps) {
    Object.assign(this, deps);
    this.query = "";
    this.regex = false;
    this.matches = []; // [{seq, ts, text}] oldest first
    this.index = -1; // the current match, -1: none yet
    this.capped = false;
    this.controller = null;
    this.upto = 0; // matches are complete up to this seq
  }

  /** True when the box holds something else than what was searched last. */
  stale() {
    const typed = this.ui.search.value.trim() ? this.ui.search.value : "";
    return typed !== this.query || this.ui.regex.checked !== this.regex;
  }

  async run() {
    const { ui, display } = this;
    this.query = ui.search.value.trim() ? ui.search.value : "";
    this.regex = ui.regex.checked;
    this.onQuery();
    if (this.controller) this.controller.abort();
    display.highlighter = makeHighlighter(this.query, this.regex);
    display.current = null;
    this.matches = [];
    this.index = -1;
    this.capped = false;
    this.vlist.refresh();
    if (!this.query) {
      ui.count.dataset.state = "";
      this.label();
      this.renderList();
      return;
    }
    const controller = new AbortController();
    this.controller = controller;
    ui.count.textContent = "…";
    ui.count.dataset.state = "busy";
    const q = new URLSearchParams();
    q.set(this.regex ? "regex" : "q", this.query);
    if (this.level()) q.set("level", this.level());
    try {
      // The server looks through a bounded window per request and says where to go on
      // (`before`); ask again, further back, until enough matches or the oldest line.
      let found = [];
      for (;;) {
        q.set("tail", String(SEARCH_LIMIT - found.length));
        const data = await api(`/api/processes/${enc(this.process)}/logs?${q}`, { signal: controller.signal });
        if (controller !== this.controller) return;
        found = (data.logs || []).concat(found);
        if (found.length >= SEARCH_LIMIT || data.before === null || data.before === undefined) break;
        q.set("before", String(data.before));
        ui.count.textContent = `… ${formatCount(found.length)}`;
      }
      const logs = found.filter((log) => log.stream !== "system");
      this.matches = logs.map((log) => ({ seq: log.seq, ts: log.timestamp, text: log.message }));
      this.capped = found.length >= SEARCH_LIMIT;
      this.upto = logs.length ? logs[logs.length - 1].seq : this.lastSeq() || 0;
      this._catchUp();
      ui.count.dataset.state = this.matches.length ? "" : "none";
      this.label();
      this.renderList();
    } catch (err) {
      if (err && err.name === "AbortError") return;
      ui.count.textContent = "error";
      ui.count.dataset.state = "error";
      toast(`Search failed: ${err.message}`, "error");
    } finally {
      if (controller === this.controller) this.controller = null;
    }
  }

  /** Lines that arrived while the server searched. */
  _catchUp() {
    const { highlighter } = this.display;
    if (!highlighter) return;
    const fresh = [];
    const shown = this.model.view;
    for (let i = shown.length - 1; i >= 0; i--) {
      const e = shown[i];
      if (e.seq <= this.upto) break;
      if (e.kind === "line" && highlighter.test(stripAnsi(e.text))) fresh.push({ seq: e.seq, ts: e.ts, text: e.text });
    }
    for (const match of fresh.reverse()) this.matches.push(match);
    if (fresh.length) this.upto = fresh[fresh.length - 1].seq;
    if (this.matches.length > SEARCH_LIMIT) this._keepNewest();
  }

  /** A live line was added to the model: count it when it matches. Returns true if it did. */
  observe(entry, log) {
    const { highlighter } = this.display;
    if (!highlighter || this.controller || entry.kind !== "line" || log.seq <= this.upto || !this.model.passes(entry)) return false;
    if (!highlighter.test(stripAnsi(log.message || ""))) return false;
    this.matches.push({ seq: log.seq, ts: log.timestamp, text: log.message });
    this.upto = log.seq;
    if (this.matches.length > SEARCH_LIMIT * 1.1) this._keepNewest();
    return true;
  }

  /** At most SEARCH_LIMIT matches are kept, the newest (as the server's search gives them):
   * live matches of a long-open tab let the oldest go, a tenth at a time. */
  _keepNewest() {
    const excess = this.matches.length - SEARCH_LIMIT;
    this.matches.splice(0, excess);
    if (this.index >= 0) this.index = Math.max(-1, this.index - excess);
    this.capped = true;
  }

  /** Forget the matches (the view or the history was cleared). */
  forget() {
    this.matches = [];
    this.index = -1;
    this.label();
    this.renderList();
  }

  label() {
    const { ui } = this;
    const n = this.matches.length;
    const total = `${formatCount(n)}${this.capped ? "+" : ""}`;
    if (!this.query) ui.count.textContent = "";
    else if (!n) ui.count.textContent = "no matches";
    else if (this.index < 0) ui.count.textContent = `${total} match${n === 1 ? "" : "es"}`;
    else ui.count.textContent = `${formatCount(this.index + 1)} / ${total}`;
    ui.count.title = this.capped ? `showing the newest ${formatCount(SEARCH_LIMIT)} matches` : "List of matches";
  }

  renderList() {
    const { ui, display } = this;
    if (ui.matches.hidden) return;
    const items = this.matches.slice(-2000);
    const offset = this.matches.length - items.length;
    ui.matchList.replaceChildren(...items.map((m, k) => {
      const text = el("span", { class: "match-text" });
      appendMessage(text, stripAnsi(m.text || "").slice(0, 300), display.highlighter);
      const button = el("button", { type: "button", class: "match", dataset: { index: String(offset + k) } },
        el("span", { class: "ts", text: formatClock(m.ts, display.time === "utc") }), text);
      if (offset + k === this.index) button.setAttribute("aria-current", "true");
      return el("li", {}, button);
    }));
    if (!items.length) ui.matchList.append(el("li", { class: "muted", text: this.query ? "No matches." : "Type to search." }));
  }

  /** Seq of the first (or last) visible row: where stepping starts without a current match. */
  _visibleSeq(end) {
    const [first, last] = this.vlist.range;
    const entry = this.model.view[end ? last : first];
    return entry ? entry.seq : 0;
  }

  async step(direction) {
    const n = this.matches.length;
    if (!n) {
      if (this.query && !this.controller) toast("No matches", "info");
      return;
    }
    let i;
    if (this.index < 0) {
      if (direction > 0) {
        const from = this.vlist.follow ? Infinity : this._visibleSeq(false);
        i = this.matches.findIndex((m) => m.seq >= from);
        if (i < 0) i = 0;
      } else {
        const to = this.vlist.follow ? Infinity : this._visibleSeq(true);
        i = n - 1;
        while (i > 0 && this.matches[i].seq > to) i -= 1;
      }
    } else {
      i = (this.index + direction + n) % n;
    }
    await this.goTo(i);
  }

  async goTo(i) {
    const { model, vlist, display, ui } = this;
    const match = this.matches[i];
    if (!match) return;
    this.index = i;
    this.label();
    const first = model.firstSeq();
    if (first !== null && match.seq < first) {
      const ok = await this.loadOlderUntil((seq) => seq <= match.seq);
      if (!ok) {
        toast("That match is older than the lines this view holds.", "info");
        return;
      }
      vlist.render();
    }
    const idx = model.indexOfSeq(match.seq);
    const entry = model.view[idx];
    if (!entry) return;
    display.current = entry;
    display.selected = entry;
    vlist.scrollToIndex(idx, "center");
    vlist.refresh();
    if (!ui.matches.hidden) {
      for (const b of ui.matchList.querySelectorAll("[aria-current]")) b.removeAttribute("aria-current");
      const active = ui.matchList.querySelector(`[data-index="${i}"]`);
      if (active) {
        active.setAttribute("aria-current", "true");
        active.scrollIntoView({ block: "nearest" });
      }
    }
  }
}
