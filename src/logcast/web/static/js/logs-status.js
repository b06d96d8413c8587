// The log page's read-outs (status bar, connection indicator, process state), written from
// the state store whenever it changes, so that no other code formats them.

import { formatCount } from "./format.js";
import { ui } from "./logs-elements.js";
import { feed, model, settings } from "./logs-state.js";

/** The status bar, the pause button and the "new lines" button; `following`: the list's. */
export function showStatus(following) {
  const held = model.lines;
  const { stream } = feed;
  ui.statLines.textContent = `${formatCount(model.view.length === model.entries.length ? held : model.view.length)} ${model.view === model.entries ? "lines" : `of ${formatCount(held)} shown`}`;
  if (model.dropped) {
    ui.statDropped.hidden = false;
    ui.statDropped.textContent = `⚠ ${formatCount(model.dropped)} oldest lines dropped from view (limit ${formatCount(settings.maxLines)}; download has everything)`;
  } else {
    ui.statDropped.hidden = true;
  }
  const first = model.firstSeq();
  ui.statSeq.textContent = stream && stream.lastSeq !== null ? `seq ${first ?? "–"}–${stream.lastSeq}` : "";
  ui.statPending.hidden = !feed.paused;
  ui.statPending.textContent = feed.paused ? `Paused · ${formatCount(feed.heldLines)} waiting` : "";
  ui.pause.textContent = feed.paused ? `▶ Resume (${formatCount(feed.heldLines)})` : "❚❚ Pause";
  ui.pause.setAttribute("aria-pressed", String(feed.paused));
  if (!following && feed.unseen > 0) {
    ui.newLines.hidden = false;
    ui.newLines.textContent = `⤓ ${formatCount(feed.unseen)} new line${feed.unseen === 1 ? "" : "s"}`;
  } else {
    ui.newLines.hidden = following;
    ui.newLines.textContent = "⤓ Back to live";
  }
}

let countdown = 0;

/** The connection indicator: the stream's state, with a countdown while it waits to retry. */
export function showConnection(state, info = {}) {
  clearInterval(countdown);
  const { stream } = feed;
  ui.conn.dataset.state = state;
  ui.retry.hidden = state !== "reconnecting";
  const labels = { connecting: "Connecting…", live: "Live", disconnected: "Disconnected" };
  if (state === "reconnecting" && info.retryAt) {
    const why = info.reason ? ` (${info.reason})` : "";
    const tick = () => {
      const s = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
      ui.connText.textContent = s > 0 ? `Reconnecting in ${s} s${why}` : `Reconnecting…${why}`;
    };
    tick();
    countdown = setInterval(tick, 500);
  } else if (state === "reconnecting") {
    ui.connText.textContent = "Reconnecting…";
  } else {
    ui.connText.textContent = info.reason ? `${labels[state] || state}: ${info.reason}` : labels[state] || state;
  }
  ui.conn.title = `stream: ${state}${stream && stream.lastSeq !== null ? ` · last seq ${stream.lastSeq}` : ""}`;
}

export function showProcessState(state) {
  ui.procState.dataset.state = state || "unknown";
  ui.procState.textContent = state || "unknown";
}
