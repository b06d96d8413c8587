// A live log stream of one process that survives server restarts, network drops and sleeping
// laptops, and never hands its caller the same record twice.

import { api, ApiError, enc } from "./api.js";

export const BACKOFF_MIN_MS = 1000;
export const BACKOFF_MAX_MS = 10000;
// Nothing heard for this long on an open stream: is the server still there? The server
// pings every 15 s; a batched SSE stream's ping is an empty batch, which we see.
export const SILENCE_MS = 40000;
export const ASK_TIMEOUT_MS = 10000;

/**
 * Transport: SSE (`EventSource` on /api/processes/{name}/logs/stream) by default, or the
 * WebSocket `/ws/logs?format=json` (same JSON events) where many streams share one page —
 * browsers allow only six HTTP/1.1 connections per origin, and each EventSource holds one.
 *
 * Reconnection is ours, not the browser's: on any error we close the connection and open a
 * new one after 1 s, 2 s, 4 s … 10 s (reset once a connection brings a message: a server
 * that accepts a WebSocket and closes it at once, 1013 when it has too many streams, is
 * not asked again every second), asking for
 * `after=<last seq we saw>`. That is what Last-Event-ID would do, but it also works when
 * the browser has given up (HTTP errors close an EventSource for good), keeps the delay
 * under our control and reads the same over SSE and WebSocket. Before retrying after a
 * failed open we ask the REST API why: 401 → login page, 404 → unknown process (stop).
 *
 * Over SSE the stream is asked for batched (`batch=1`, unless `batch: false`): each message's
 * data is a JSON array of events, its id the last one's (docs/api.md), so that a flood is a
 * few `JSON.parse` calls rather than one a line. The WebSocket sends one event a frame.
 *
 * A stream that opened and then heard nothing for `SILENCE_MS` (a server stopped or hung, a
 * connection a network dropped without a word) is not left showing "live": where the server
 * sends visible pings (empty batches) it is reconnected at once, else the REST API is asked
 * (within `ASK_TIMEOUT_MS`) whether the server is there, and the stream reconnected if not.
 *
 * Every event's seq is tracked here: anything at or below the last seq is counted as a
 * duplicate and dropped, and a jump forward that no `gap` announced is counted as a hole
 * (the server promises neither happens).
 */
export class LogStream {
  /**
   * @param {string} process
   * @param {{transport?: "sse"|"ws", batch?: boolean, lines?: number, after?: number|null,
   *          onEvent: (ev: object) => void, onState?: (state: string, info: object) => void}} options
   */
  constructor(process, { transport = "sse", batch = true, lines = 1000, after = null, onEvent, onState = () => {} }) {
    this.process = process;
    this.transport = transport;
    this.batch = batch; // SSE: many events a message
    this.lines = lines;
    this.lastSeq = after; // null: nothing seen yet, ask for `lines` of history
    this.onEvent = onEvent;
    this.onState = onState;
    this.state = "idle";
    this.attempt = 0;
    this.conn = null;
    this.timer = 0;
    this.stopped = true;
    this.opened = false;
    this.heard = false; // the open connection brought a message
    this.beats = false; // ...and the server's pings are messages (empty batches)
    this.heardAt = 0;
    this.watch = 0;
    this.asking = false;
    this.closeReason = "";
    this.refusal = null;
    this.stats = { received: 0, duplicates: 0, holes: 0, connects: 0 };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this._connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this._close();
    this._setState("disconnected", { reason: "stopped" });
  }

  url() {
    const params = new URLSearchParams();
    if (this.lastSeq !== null && this.lastSeq !== undefined) params.set("after", String(this.lastSeq));
    else params.set("lines", String(this.lines));
    if (this.transport === "ws") {
      params.set("process", this.process);
      params.set("format", "json");
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      return `${scheme}//${location.host}/ws/logs?${params}`;
    }
    if (this.batch) params.set("batch", "1");
    return `/api/processes/${enc(this.process)}/logs/stream?${params}`;
  }

  _setState(state, info = {}) {
    this.state = state;
    this.onState(state, info);
  }

  _close() {
    clearInterval(this.watch);
    const conn = this.conn;
    this.conn = null;
    if (!conn) return;
    if (this.transport === "ws") {
      conn.onopen = conn.onmessage = conn.onclose = conn.onerror = null;
      try {
        conn.close();
      } catch {
        // already closed
      }
    } else {
      conn.onopen = conn.onmessage = conn.onerror = null;
      conn.close();
    }
  }

  _connect() {
    if (this.stopped) return;
    this._close();
    this.opened = false;
    this.heard = false;
    this.beats = false;
    this.closeReason = "";
    this.refusal = null;
    this._setState(this.stats.connects === 0 ? "connecting" : "reconnecting", { attempt: this.attempt });
    const url = this.url();
    if (this.transport === "ws") {
      const ws = new WebSocket(url);
      this.conn = ws;
      ws.onopen = () => this._opened();
      ws.onmessage = (m) => this._message(m.data);
      ws.onclose = (ev) => {
        if (ev.reason) this.closeReason = ev.reason; // 1013: too many streams
        this._failed();
      };
    } else {
      const es = new EventSource(url, { withCredentials: true });
      this.conn = es;
      es.onopen = () => this._opened();
      es.onmessage = (m) => this._message(m.data);
      es.onerror = () => this._failed();
    }
  }

  _opened() {
    this.opened = true;
    this.heardAt = Date.now();
    this.stats.connects += 1;
    this._setState("live");
    clearInterval(this.watch);
    this.watch = setInterval(() => this._checkSilence(), SILENCE_MS / 4);
  }

  /** Nothing came for SILENCE_MS: reconnect if the server is not there (see the class). */
  async _checkSilence() {
    const conn = this.conn;
    if (!conn || !this.opened || this.asking || Date.now() - this.heardAt < SILENCE_MS) return;
    if (this.beats) {
      this.closeReason = `no word from the server for ${SILENCE_MS / 1000} s`;
      this._failed();
      return;
    }
    this.asking = true;
    try {
      await api(`/api/processes/${enc(this.process)}`, { signal: AbortSignal.timeout(ASK_TIMEOUT_MS) });
      this.heardAt = Date.now(); // there, and the process is quiet
    } catch (err) {
      if (err instanceof ApiError && err.status > 0) {
        this.heardAt = Date.now(); // it answered, if not with the process: there
      } else if (this.conn === conn) {
        this.closeReason = "the server does not answer";
        this._failed();
      }
    } finally {
      this.asking = false;
    }
  }

  _message(data) {
    this.heardAt = Date.now();
    if (!this.heard) {
      this.heard = true;
      this.attempt = 0; // a connection that brings messages: the backoff starts over
    }
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      return; // not ours (a proxy's banner?): ignore
    }
    if (Array.isArray(parsed)) {
      if (!parsed.length) this.beats = true; // a ping
      for (const ev of parsed) this._event(ev);
    } else {
      this._event(parsed);
    }
  }

  _event(ev) {
    if (!ev || typeof ev !== "object") return;
    const type = ev.type;
    if (type === "historical" || type === "realtime" || type === "status") {
      const seq = ev.log && ev.log.seq;
      if (Number.isInteger(seq)) {
        if (this.lastSeq !== null && seq <= this.lastSeq) {
          this.stats.duplicates += 1;
          return;
        }
        if (this.lastSeq !== null && seq > this.lastSeq + 1) this.stats.holes += 1;
        this.lastSeq = seq;
      }
      this.stats.received += 1;
    } else if (type === "gap") {
      if (Number.isInteger(ev.to) && (this.lastSeq === null || ev.to > this.lastSeq)) this.lastSeq = ev.to;
    } else if (type === "historical_complete") {
      if (Number.isInteger(ev.seq) && ev.seq > 0 && (this.lastSeq === null || ev.seq > this.lastSeq)) {
        this.lastSeq = ev.seq;
      }
    } else if (type === "error") {
      // the WebSocket route refuses bad parameters with an error frame, then closes
      this.refusal = ev.message || "refused";
    }
    this.onEvent(ev);
  }

  async _failed() {
    if (this.stopped || !this.conn) return;
    const wasOpen = this.opened;
    this._close();
    if (this.refusal) {
      this.stopped = true;
      this._setState("disconnected", { reason: this.refusal, fatal: true });
      return;
    }
    if (!wasOpen) {
      // The server refused or is down: find out which before waiting.
      try {
        await api(`/api/processes/${enc(this.process)}`);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          this.stopped = true;
          this._setState("disconnected", { reason: `unknown process “${this.process}”`, fatal: true });
          return;
        }
        if (err instanceof ApiError && err.status === 401) {
          this.stopped = true; // api() is taking us to the login page
          this._setState("disconnected", { reason: "login required", fatal: true });
          return;
        }
      }
      if (this.stopped) return;
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.attempt, 16));
    this.attempt += 1;
    const reason = this.closeReason;
    this._setState("reconnecting", { delay, retryAt: Date.now() + delay, attempt: this.attempt, reason });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._connect(), delay);
  }

  /** Try now instead of waiting for the backoff timer ("Retry now" button). */
  retryNow() {
    if (this.stopped) {
      this.stopped = false;
    }
    clearTimeout(this.timer);
    this._connect();
  }
}
