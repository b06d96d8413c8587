// / — every process at a glance with its controls, and a merged live view of the processes
// ticked "watch", so that one page shows what runs and what it says.

import { ApiError, control, failedAtOnce, listHosts, listProcesses } from "./api.js";
import { gapEntry, noteEntry } from "./entries.js";
import { MergedModel } from "./merged-model.js";
import { initNav } from "./nav.js";
import { renderRow } from "./render.js";
import { prefs } from "./prefs.js";
import { LogStream } from "./stream.js";
import { stripAnsi } from "./ansi.js";
import { VirtualList } from "./vlist.js";
import { $, el, isTyping } from "./dom.js";
import { toast } from "./feedback.js";
import { formatCount, formatDuration, formatRate } from "./format.js";
import { ALIVE } from "./states.js";
import {
  buildExitRow, buildModelCell, makeSparks, metric, showsExit, updateExitRow, updateModelCell, updateResources,
  updateWaiting,
} from "./proc-details.js";
import { COLUMNS, SampleStore } from "./samples.js";

const POLL_MS = 1500;
const POLL_TIMEOUT_MS = 10000; // a server that does not answer a poll within this is not "live"
// Rows are grouped under a header per host when the processes run on several hosts and
// there are more than this many of them (a short list reads better in one piece).
const GROUP_OVER = 8;
const MERGE_LINES = 200;
// The merged view uses the WebSocket transport (same JSON events as SSE): a browser gives an
// origin only six HTTP/1.1 connections and every EventSource keeps one busy, so four watched
// processes plus a viewer tab would starve the polling. `?merge=sse` switches to EventSource.
const MERGE_TRANSPORT = new URLSearchParams(location.search).get("merge") === "sse" ? "sse" : "ws";
const WATCH_PREF = "watch"; // localStorage "logcast.watch"

const rows = new Map(); // name → {tr, cells, buttons, sparks, …}
const exitRows = new Map(); // name → the "why it died" row under a process's row
const samples = new SampleStore();
const timing = { polls: 0, render: 0, sparks: 0 }; // ms the last poll spent drawing (tests, benchmarks)
const hostHeaders = new Map(); // host → {tr, name, state, count}: the group headers
const slots = new Map(); // name → colour slot
const streams = new Map(); // name → LogStream
let processes = [];
let hosts = new Map(); // host → {host, alive, last_seen, processes} from /api/hosts
let pollTimer = 0;
let lastOk = 0;
let busy = false;

// --- polling ------------------------------------------------------------------------------

/**
 * The table is polled every POLL_MS (skipped while the tab is hidden, and refreshed at once
 * when a watched process reports a status change). Rows are built once per process and then
 * only their cells' text changes, so focus and hover survive the polling.
 */
async function poll() {
  clearTimeout(pollTimer);
  if (document.hidden) {
    pollTimer = setTimeout(poll, POLL_MS);
    return;
  }
  if (busy) return;
  busy = true;
  try {
    // the hosts are an extra: without them (an older server) the processes' host still shows
    // the samples too: one request for every sparkline, only what is new since the last
    const signal = AbortSignal.timeout(POLL_TIMEOUT_MS);
    const [list, hostList, fresh] = await Promise.all([
      listProcesses({ signal }),
      listHosts({ redirectOn401: false, signal }).catch((err) => err),
      samples.poll(signal),
    ]);
    processes = list;
    if (Array.isArray(hostList)) hosts = new Map(hostList.map((h) => [h.host, h]));
    else if (hostList instanceof ApiError && hostList.status === 404) hosts = new Map();
    lastOk = Date.now();
    showProblem(null);
    setPoll("live", "Live");
    const t0 = performance.now();
    render();
    startWatched();
    const t1 = performance.now();
    if (fresh) drawSparks();
    timing.render = t1 - t0;
    timing.sparks = performance.now() - t1;
    timing.polls += 1;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    if (err instanceof ApiError && err.status >= 500) {
      // the server answers but cannot serve (503: its Redis is away): say why, keep polling
      showProblem(err.message);
      setPoll("reconnecting", "Server unavailable — retrying");
    } else {
      showProblem(null);
      setPoll("reconnecting", "Server unreachable — retrying");
    }
  } finally {
    busy = false;
    pollTimer = setTimeout(poll, POLL_MS);
  }
}

const pollSoon = (() => {
  let t = 0;
  return () => {
    clearTimeout(t);
    t = setTimeout(poll, 150);
  };
})();

function setPoll(state, text) {
  const box = $("#poll");
  box.dataset.state = state;
  $(".conn-text", box).textContent = text;
}

/** The banner over the page while the server answers with an error (`detail`), gone with null. */
function showProblem(detail) {
  const banner = $("#api-banner");
  if (detail) setText($("#api-banner-text"), detail);
  banner.hidden = !detail;
  if (detail) $("#processes").dataset.stale = "true";
  else delete $("#processes").dataset.stale;
}

// --- hosts ---------------------------------------------------------------------------------

function hostOf(p) {
  return typeof p.host === "string" ? p.host : "";
}

/** True when /api/hosts says the host's agent went silent. */
function isLost(host) {
  const h = hosts.get(host);
  return Boolean(h && h.alive === false);
}

function lostTitle(host) {
  const h = hosts.get(host);
  const seen = h && typeof h.last_seen === "number" ? `; last heard from ${new Date(h.last_seen * 1000).toLocaleTimeString()}` : "";
  return `host ${host} is lost: its agent has gone silent${seen}`;
}

function columnCount() {
  return $(".proc-table thead tr").children.length;
}

/** The header row of a host's group: its name, alive or lost, and how many of its processes run. */
function hostHeader(host, list) {
  let h = hostHeaders.get(host);
  if (!h) {
    const name = el("span", { class: "host-name" });
    const state = el("span", { class: "host-state" });
    const count = el("span", { class: "host-count muted" });
    const th = el("th", { scope: "rowgroup", colspan: columnCount() }, el("span", { class: "host-head" }, name, state, count));
    h = { tr: el("tr", { class: "host-row", dataset: { host } }, th), name, state, count };
    hostHeaders.set(host, h);
  }
  const lost = isLost(host);
  setText(h.name, host || "(no host)");
  h.tr.dataset.alive = String(!lost);
  h.state.dataset.state = lost ? "lost" : "alive";
  setText(h.state, lost ? "lost" : "alive");
  h.state.title = lost ? lostTitle(host) : "";
  const running = list.filter((p) => ALIVE.has(p.state)).length;
  setText(h.count, `${running} of ${formatCount(list.length)} running`);
  return h.tr;
}

// --- table -----------------------------------------------------------------------------------

function cell(label, cls = "") {
  return el("td", { class: cls, dataset: label ? { label } : undefined });
}

function buildRow(p) {
  const name = p.name;
  const slot = slots.get(name);
  const link = el("a", { class: "proc-name", href: `/logs.html?process=${encodeURIComponent(name)}` },
    el("span", { class: `swatch pc-${slot}`, "aria-hidden": "true" }), el("span", { text: name }));
  const state = el("span", { class: "state" });
  const buttons = {};
  const actions = el("div", { class: "actions" });
  for (const action of ["start", "stop", "restart"]) {
    const b = el("button", {
      type: "button", class: `btn btn-small${action === "stop" ? " btn-danger" : ""}`,
      dataset: { action }, "aria-label": `${action} ${name}`,
    }, action[0].toUpperCase() + action.slice(1));
    b.addEventListener("click", (e) => {
      e.stopPropagation();
      act(name, action, b);
    });
    buttons[action] = b;
    actions.append(b);
  }
  const watch = el("input", { type: "checkbox", "aria-label": `Watch ${name} in the live view` });
  watch.checked = watched().includes(name);
  watch.addEventListener("change", () => setWatched(name, watch.checked));
  watch.addEventListener("click", (e) => e.stopPropagation());
  const cells = {
    name: cell("", "cell-name"), host: cell("Host", "cell-host"), state: cell("State", "cell-state"), model: cell("Model", "cell-model"),
    pid: cell("PID", "num"), uptime: cell("Uptime", "num"),
    run: cell("Run", "num"), cpu: cell("CPU", "num cell-metric"), memory: cell("Memory", "num cell-metric"),
    rate: cell("Lines/s", "num cell-metric"), warnings: cell("Warnings", "num"), errors: cell("Errors", "num cell-metric"),
    error: cell("Last error", "cell-error"), actions: cell("", "cell-actions"), watch: cell("Watch"),
  };
  const sparks = makeSparks();
  const model = buildModelCell(name, sparks);
  const figures = {
    cpu: metric(sparks.cpu_percent), memory: metric(sparks.rss_bytes), rate: metric(sparks.lines_per_s), errors: metric(sparks.errors),
  };
  const gpu = el("span", { class: "gpu-mem", hidden: true });
  figures.memory.value.after(gpu);
  const waiting = el("span", { class: "waiting-for", hidden: true });
  cells.name.append(link);
  cells.host.append(el("span", { class: "host-name" }), el("span", { class: "host-state", dataset: { state: "lost" }, hidden: true }));
  cells.state.append(el("span", { class: "state-stack" }, state, waiting));
  cells.model.append(model.node);
  for (const key of ["cpu", "memory", "rate", "errors"]) cells[key].append(figures[key].node);
  const runs = metric(null);
  runs.restarts = el("span", { class: "restarts", hidden: true });
  runs.node.append(runs.restarts);
  cells.run.append(runs.node);
  cells.error.append(el("span", { class: "last-error" }));
  cells.actions.append(actions);
  cells.watch.append(el("label", { class: "watch" }, watch, el("span", { class: "sr-only", text: "watch" })));
  const tr = el("tr", { dataset: { process: name } }, ...Object.values(cells));
  tr.addEventListener("click", (e) => {
    if (e.target instanceof Element && e.target.closest("a, button, input, label")) return;
    location.assign(link.getAttribute("href"));
  });
  return { tr, cells, state, buttons, watch, sparks, model, figures, gpu, waiting, runs };
}


/** Stable colour slot (0–7) for a process name, by its index in the configured list. */
function colourSlot(index) {
  return ((index % 8) + 8) % 8;
}

function render() {
  const body = $("#proc-rows");
  const names = processes.map((p) => p.name);
  processes.forEach((p, i) => {
    if (!slots.has(p.name)) slots.set(p.name, colourSlot(i));
  });
  for (const [name, row] of rows) {
    if (!names.includes(name)) {
      row.tr.remove();
      for (const spark of Object.values(row.sparks)) spark.destroy();
      rows.delete(name);
    }
  }
  for (const name of exitRows.keys()) if (!names.includes(name)) exitRows.delete(name);
  const rowOf = (p) => {
    let row = rows.get(p.name);
    if (!row) {
      row = buildRow(p);
      rows.set(p.name, row);
    }
    updateRow(row, p);
    return showsExit(p) ? [row.tr, exitRowOf(p)] : [row.tr];
  };
  // the rows in the order shown: in configuration order, or grouped by host (hosts in the
  // order their first process comes) under a header each
  const byHost = new Map();
  for (const p of processes) {
    const host = hostOf(p);
    if (!byHost.has(host)) byHost.set(host, []);
    byHost.get(host).push(p);
  }
  const grouped = byHost.size > 1 && processes.length > GROUP_OVER;
  const order = [];
  if (grouped) {
    for (const [host, list] of byHost) order.push(hostHeader(host, list), ...list.flatMap(rowOf));
  } else {
    order.push(...processes.flatMap(rowOf));
  }
  for (const [host, h] of hostHeaders) {
    if (!grouped || !byHost.has(host)) {
      h.tr.remove();
      hostHeaders.delete(host);
    }
  }
  order.forEach((tr, i) => {
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
  });
  // what is left past them is no longer shown (a "why it died" row of a process that runs again)
  while (body.children.length > order.length) body.lastElementChild.remove();
  $("#proc-rows").dataset.grouped = String(grouped);
  $("#no-processes").hidden = processes.length > 0;
  const running = processes.filter((p) => ALIVE.has(p.state)).length;
  $("#sum-processes").textContent = formatCount(processes.length);
  $("#sum-running").textContent = formatCount(running);
  $("#sum-rate").textContent = formatRate(processes.reduce((a, p) => a + (p.lines_per_s || 0), 0));
  $("#sum-lines").textContent = formatCount(processes.reduce((a, p) => a + (p.lines || 0), 0));
  $("#sum-errors").textContent = formatCount(processes.reduce((a, p) => a + (p.errors || 0), 0));
  $("#updated-at").textContent = `updated ${new Date(lastOk).toLocaleTimeString()}`;
  renderChips();
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function updateRow(row, p) {
  const { cells, state, buttons } = row;
  const host = hostOf(p);
  const lost = isLost(host);
  // unknown: the host that runs it is lost, so nobody can say whether it runs, nor act on it
  const unknown = p.state === "unknown";
  row.tr.dataset.state = p.state;
  row.tr.dataset.host = host;
  state.dataset.state = p.state;
  setText(state, p.state);
  if (unknown) state.title = host ? `host ${host} is lost: its agent has gone silent` : "its host is lost";
  else state.title = p.exit_code !== null && p.exit_code !== undefined ? `exit code ${p.exit_code}` : "";
  setText($(".host-name", cells.host), host || "–");
  const badge = $(".host-state", cells.host);
  setText(badge, lost ? "lost" : ""); // no hidden text: the cell reads (and copies) as the host's name
  badge.hidden = !lost;
  cells.host.title = lost ? lostTitle(host) : "";
  setText(cells.pid, p.pid && !unknown ? String(p.pid) : "–");
  setText(cells.uptime, ALIVE.has(p.state) ? formatDuration(p.uptime) : "–");
  setText(row.runs.value, formatCount(p.run ?? 0));
  row.runs.restarts.hidden = !p.restarts;
  setText(row.runs.restarts, p.restarts ? `↻${formatCount(p.restarts)}` : "");
  cells.run.title = `run ${formatCount(p.run ?? 0)} · ${formatCount(p.restarts ?? 0)} automatic restart${p.restarts === 1 ? "" : "s"}`;
  setText(row.figures.rate.value, formatRate(p.lines_per_s ?? 0));
  setText(cells.warnings, formatCount(p.warnings ?? 0));
  cells.warnings.className = `num warnings-count${p.warnings ? " has" : ""}`;
  setText(row.figures.errors.value, formatCount(p.errors ?? 0));
  cells.errors.className = `num cell-metric errors-count${p.errors ? " has" : ""}`;
  updateWaiting(row.waiting, p);
  updateModelCell(row.model, p, cells.model);
  updateResources(row.figures.cpu, row.figures.memory, row.gpu, p);
  const last = $(".last-error", cells.error);
  const text = p.last_error ? stripAnsi(String(p.last_error)) : "";
  setText(last, text);
  last.title = text;
  const alive = ALIVE.has(p.state);
  if (!buttons.start.dataset.busy) buttons.start.disabled = alive || unknown;
  // a process in backoff waits to be restarted: Stop cancels that
  if (!buttons.stop.dataset.busy) buttons.stop.disabled = !(alive || p.state === "backoff") || p.state === "stopping";
  if (!buttons.restart.dataset.busy) buttons.restart.disabled = p.state === "stopping" || unknown;
  for (const b of Object.values(buttons)) b.title = unknown ? "its host is lost: no agent would act on it" : "";
}

/** The "why it died" row under a process that does not run and whose last run failed. */
function exitRowOf(p) {
  let row = exitRows.get(p.name);
  if (!row) {
    row = buildExitRow(p.name, columnCount());
    exitRows.set(p.name, row);
  }
  updateExitRow(row, p, columnCount());
  return row.tr;
}

// --- sparklines ------------------------------------------------------------------------------

/** Hand each process's new samples to its sparklines (drawn only while on screen). */
function drawSparks() {
  for (const name of samples.takeChanged()) {
    const row = rows.get(name);
    const held = samples.get(name);
    if (!row || !held) continue;
    for (const column of COLUMNS) row.sparks[column].set(held.t, held[column], samples.start, samples.end);
  }
}

async function act(name, action, button) {
  const row = rows.get(name);
  const all = row ? Object.values(row.buttons) : [button];
  for (const b of all) {
    b.disabled = true;
    b.dataset.busy = "1";
  }
  button.setAttribute("aria-busy", "true");
  const label = button.textContent;
  button.textContent = `${label}…`;
  try {
    const p = await control(name, action);
    if (p && p.name) {
      const i = processes.findIndex((x) => x.name === p.name);
      if (i >= 0) processes[i] = { ...processes[i], ...p };
      if (row) updateRow(row, processes[i] || p);
    }
    const why = failedAtOnce(action, p);
    if (why) toast(`${name}: ${action} failed — ${why}`, "error");
    else toast(`${name}: ${action} done`, "info");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) toast(`${name}: ${action} failed — ${err.message}`, "error");
  } finally {
    button.textContent = label;
    button.removeAttribute("aria-busy");
    for (const b of all) delete b.dataset.busy;
    const p = processes.find((x) => x.name === name);
    if (row && p) updateRow(row, p);
    else for (const b of all) b.disabled = false;
    pollSoon();
  }
}

// --- merged live view ----------------------------------------------------------------------

/** The processes ticked "watch", remembered across visits. */
function watched() {
  try {
    const list = JSON.parse(prefs.get(WATCH_PREF, "[]") || "[]");
    return Array.isArray(list) ? list.filter((x) => typeof x === "string") : [];
  } catch {
    return [];
  }
}

function saveWatched(list) {
  prefs.set(WATCH_PREF, JSON.stringify(list));
}

const merged = new MergedModel({ max: 5000 });
const queue = [];
const mergedList = new VirtualList($("#merged-log"), {
  renderRow: (row, entry) => renderRow(row, entry, {
    time: "local",
    highlighter: null,
    slotOf: (name) => (slots.has(name) ? slots.get(name) : null),
  }),
  onFollow: (on) => $("#merged-follow").setAttribute("aria-pressed", String(on)),
});
mergedList.beforeRender = () => {
  if (!queue.length) return;
  for (const [name, ev] of queue.splice(0, queue.length)) {
    if (!streams.has(name)) continue; // unwatched meanwhile
    if (ev.type === "historical" || ev.type === "realtime") {
      if (ev.log) merged.add(ev.log, ev.log.stream === "system" ? "status" : "line");
    } else if (ev.type === "status") {
      if (ev.log) merged.add(ev.log, "status");
    } else if (ev.type === "gap") {
      const g = gapEntry(ev, name);
      g.ts = Date.now() / 1000;
      merged.insert(g);
    } else if (ev.type === "error" || ev.type === "stream_end") {
      merged.insert({ ...noteEntry(`${name}: ${ev.message || ev.type}`), process: name });
    }
  }
  mergedList.apply(merged.takeChange(), merged.entries);
  if (merged.entries.length) $("#merged-empty").hidden = true;
};

function startStream(name) {
  if (streams.has(name)) return;
  const s = new LogStream(name, {
    transport: MERGE_TRANSPORT,
    lines: MERGE_LINES,
    onEvent: (ev) => {
      queue.push([name, ev]);
      if (ev.type === "status") pollSoon();
      mergedList.schedule();
    },
    onState: () => renderChips(),
  });
  streams.set(name, s);
  s.start();
}

/** Stream the watched processes the server lists: after every poll that succeeded, so that
 * a first poll that failed (a server restarting, a replica without its Redis) is made up for. */
function startWatched() {
  const names = new Set(processes.map((p) => p.name));
  let started = false;
  for (const name of watched()) {
    if (names.has(name) && !streams.has(name)) {
      startStream(name);
      started = true;
    }
  }
  if (started) renderChips();
}

function stopStream(name) {
  const s = streams.get(name);
  if (!s) return;
  streams.delete(name);
  s.stop();
  merged.removeProcess(name);
  mergedList.apply(merged.takeChange(), merged.entries);
}

function setWatched(name, on) {
  const list = watched().filter((x) => x !== name);
  if (on) list.push(name);
  saveWatched(list);
  if (on) startStream(name);
  else stopStream(name);
  renderChips();
}

function renderChips() {
  const chips = $("#merged-chips");
  const names = [...streams.keys()];
  chips.replaceChildren(...names.map((name) => {
    const s = streams.get(name);
    return el("span", { class: "merged-chip", title: `stream ${s.state}` },
      el("span", { class: `swatch pc-${slots.get(name) ?? 0}`, "aria-hidden": "true" }),
      el("span", { text: name }),
      el("span", { class: "conn", dataset: { state: s.state } }, el("span", { class: "dot", "aria-hidden": "true" }),
        el("span", { class: "sr-only", text: s.state })));
  }));
  const empty = $("#merged-empty");
  if (!names.length) {
    empty.hidden = false;
    empty.textContent = "Tick “watch” on processes to merge their live lines here.";
  } else {
    empty.hidden = merged.entries.length > 0;
    empty.textContent = "Waiting for lines…";
  }
}

// --- start --------------------------------------------------------------------------------

function start() {
  initNav("dashboard");
  $("#merged-follow").addEventListener("click", () => mergedList.toBottom());
  $("#merged-clear").addEventListener("click", () => {
    merged.clear();
    mergedList.apply(merged.takeChange(), merged.entries);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });
  document.addEventListener("keydown", (e) => {
    if (isTyping(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "End" && document.activeElement === $("#merged-log")) mergedList.toBottom();
  });
  renderChips();
  poll();
  window.__logcast = {
    processes: () => processes,
    samples: () => Object.fromEntries([...samples.byName].map(([n, s]) => [n, s.t.length])),
    sparks: () => Object.fromEntries([...rows].map(([n, r]) => [n, Object.fromEntries(Object.entries(r.sparks).map(([k, s]) => [k, s.drawn]))])),
    timing: () => ({ ...timing }),
    hosts: () => [...hosts.values()],
    merged: () => merged.entries.map((e) => ({ kind: e.kind, process: e.process, seq: e.seq, ts: e.ts, text: e.text })),
    streams: () => Object.fromEntries([...streams].map(([n, s]) => [n, { state: s.state, lastSeq: s.lastSeq, ...s.stats }])),
  };
}

start();
