// Every process's samples (GET /api/samples) kept in the page: the whole 15 minutes once,
// then only what came after the newest one (`?after=`), so that one small request per poll
// feeds every sparkline on the dashboard.

import { api } from "./api.js";
import { WINDOW_S } from "./sparkline.js";

export const COLUMNS = ["lines_per_s", "errors", "cpu_percent", "rss_bytes", "gen_tokens_per_s"];

export class SampleStore {
  constructor() {
    this.byName = new Map(); // name → {t: [], lines_per_s: [], …}
    this.end = 0; // the newest sample's time: the right edge of every sparkline
    this.start = 0; // the oldest sample's time held: their left edge (at most 15 minutes back)
    this.supported = true; // false once the server says it has no samples (an older one)
    this.changed = new Set(); // names with new samples since the last takeChanged()
  }

  /** Ask the server for the samples after the newest held; false when it has none to give. */
  async poll(signal) {
    if (!this.supported) return false;
    const path = this.end ? `/api/samples?after=${this.end}` : "/api/samples";
    let answer;
    try {
      answer = await api(path, { redirectOn401: false, signal });
    } catch (err) {
      if (err && err.status === 404) this.supported = false;
      return false;
    }
    this.merge(answer);
    return true;
  }

  /** Take in an answer of /api/samples (its `processes`), dropping what left the window. */
  merge(answer) {
    const processes = (answer && answer.processes) || {};
    let end = this.end;
    for (const [name, cols] of Object.entries(processes)) {
      const times = Array.isArray(cols.t) ? cols.t : [];
      if (!times.length) continue;
      let held = this.byName.get(name);
      if (!held) {
        held = { t: [] };
        for (const c of COLUMNS) held[c] = [];
        this.byName.set(name, held);
      }
      const after = held.t.length ? held.t[held.t.length - 1] : -Infinity;
      for (let i = 0; i < times.length; i += 1) {
        if (!(times[i] > after)) continue; // already held (an answer that overlaps)
        held.t.push(times[i]);
        for (const c of COLUMNS) {
          const v = Array.isArray(cols[c]) ? cols[c][i] : null;
          held[c].push(typeof v === "number" && Number.isFinite(v) ? v : null);
        }
      }
      end = Math.max(end, held.t[held.t.length - 1]);
      this.changed.add(name);
    }
    this.end = end;
    for (const [name, held] of this.byName) {
      let cut = 0;
      while (cut < held.t.length && held.t[cut] < end - WINDOW_S) cut += 1;
      if (cut) {
        held.t.splice(0, cut);
        for (const c of COLUMNS) held[c].splice(0, cut);
        this.changed.add(name);
      }
      if (!held.t.length) this.byName.delete(name);
    }
    let start = end;
    for (const held of this.byName.values()) start = Math.min(start, held.t[0]);
    this.start = start;
  }

  get(name) {
    return this.byName.get(name) || null;
  }

  /** Names whose samples changed since the last call. */
  takeChanged() {
    const out = this.changed;
    this.changed = new Set();
    return out;
  }
}
