// /logs.html?process=NAME&level=&q=&re=1&lines=&after= — the log viewer.
//
// History then live over one LogStream; records are queued as they arrive and taken into
// the model once per animation frame, right before the virtual list draws, so a flood of
// lines costs one render per frame. Search runs on the server over the whole history and
// is highlighted in the visible rows; the level filter runs here over what is held.

import { api, ApiError, enc, getProcess, listProcesses } from "./api.js";
import { EntryBuilder, LEVEL_ORDER, gapEntry, noteEntry } from "./entries.js";
import { LogModel } from "./log-model.js";
import { initNav } from "./nav.js";
import { plainText, renderRow } from "./render.js";
import { Search } from "./search.js";
import { LogStream } from "./stream.js";
import { VirtualList } from "./vlist.js";
import { copyText } from "./clipboard.js";
import { debounce } from "./debounce.js";
import { $, el, isInteractive, isTyping } from "./dom.js";
import { confirmDialog, toast } from "./feedback.js";
import { formatCount, fromDateTimeLocal, toDateTimeLocal } from "./format.js";

const params = new URLSearchParams(location.search);
const processName = params.get("process") || "";
const intParam = (name, fallback, lo, hi) => {
  const n = Number.parseInt(params.get(name) ?? "", 10);
  return Number.isFinite(n) ? Math.max(lo, Math.min(hi, n)) : fallback;
};
const HISTORY_LINES = intParam("lines", 100_000, 0, 1_000_000);
const MAX_LINES = intParam("max", 1_000_000, 1000, 5_000_000);
const START_AFTER = params.has("after") ? intParam("after", null, 0, Number.MAX_SAFE_INTEGER) : null;
const DEBUG = params.get("debug") === "1";
const PAGE = 10_000;

const prefs = {
  get(key, fallback) {
    try {
      return localStorage.getItem(`logcast.${key}`) ?? fallback;
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(`logcast.${key}`, value);
    } catch {
      // private mode: preferences just do not persist
    }
  },
};

const ui = {
  log: $("#log"),
  search: $("#search"),
  regex: $("#regex"),
  prev: $("#prev-match"),
  next: $("#next-match"),
  count: $("#match-count"),
  matches: $("#matches"),
  matchList: $("#match-list"),
  level: $("#level"),
  pause: $("#pause"),
  follow: $("#follow"),
  time: $("#time-mode"),
  wrap: $("#wrap"),
  collapse: $("#collapse"),
  top: $("#jump-top"),
  jumpTime: $("#jump-time"),
  jumpGo: $("#jump-go"),
  earlier: $("#load-earlier"),
  earlierMenu: $("#load-earlier-menu"),
  newLines: $("#jump-bottom"),
  conn: $("#conn"),
  connText: $("#conn .conn-text"),
  retry: $("#retry"),
  procSelect: $("#process-select"),
  procState: $("#proc-state"),
  statLines: $("#stat-lines"),
  statDropped: $("#stat-dropped"),
  statSeq: $("#stat-seq"),
  statPending: $("#stat-pending"),
  loading: $("#loading"),
  picker: $("#picker"),
  pickerList: $("#picker-list"),
};

const view = {
  time: prefs.get("time", "local"),
  wrap: prefs.get("wrap", "0") === "1",
  collapse: prefs.get("collapse", "1") === "1",
  highlighter: null,
  selected: null,
  current: null,
};

const model = new LogModel({ max: MAX_LINES, collapse: view.collapse });
const queue = [];
let paused = false;
let pending = [];
let pendingLines = 0;
let unseen = 0; // lines that arrived while the user was scrolled up
let historyDone = false;
let moreOlder = false;
let loadingOlder = null;
const seqLog = DEBUG ? [] : null;


// --- the list ------------------------------------------------------------------------

const slotOf = () => null;
const vlist = new VirtualList(ui.log, {
  renderRow: (row, entry) => renderRow(row, entry, {
    time: view.time,
    highlighter: entry.kind === "line" ? view.highlighter : null,
    slotOf,
    selected: entry === view.selected,
    current: entry === view.current,
  }),
  onFollow: (on) => {
    ui.follow.setAttribute("aria-pressed", String(on));
    if (on) unseen = 0;
    updateStatus();
  },
  onRender: () => {
    const [first] = vlist.range;
    ui.earlier.hidden = !(moreOlder && historyDone && first === 0 && model.view.length > 0 && !vlist.follow);
    ui.earlier.hidden ||= vlist.scroller.scrollTop > vlist.rowH;
  },
});
vlist.beforeRender = ingest;

const search = new Search({
  process: processName,
  model,
  vlist,
  view,
  ui,
  level: () => levelParam(),
  lastSeq: () => (stream ? stream.lastSeq : 0),
  loadOlderUntil: (reached) => loadOlderUntil(reached),
  onQuery: () => updateUrl(),
});
const searchSoon = debounce(() => search.run(), 300);
vlist.setWrap(view.wrap);

// --- events in ----------------------------------------------------------------------

function onEvent(ev) {
  if (seqLog && ev.log && Number.isInteger(ev.log.seq) && ["historical", "realtime", "status"].includes(ev.type)) {
    seqLog.push(ev.log.seq);
  }
  if (ev.type === "status" && ev.log && ev.log.state) setProcState(ev.log.state);
  const isLine = ev.type === "historical" || ev.type === "realtime" || ev.type === "status" || ev.type === "gap";
  if (paused && isLine) {
    pending.push(ev);
    if (ev.type !== "gap") pendingLines += 1;
    if (pendingLines > MAX_LINES) {
      const cut = pending.length - MAX_LINES;
      pending.splice(0, cut);
      pendingLines = pending.filter((e) => e.type !== "gap").length;
    }
    updateStatus();
    return;
  }
  queue.push(ev);
  scheduleFlush();
}

let hiddenTimer = 0;
function scheduleFlush() {
  vlist.schedule();
  if (document.hidden && !hiddenTimer) {
    // no animation frames in a background tab: take lines in twice a second anyway
    hiddenTimer = setTimeout(() => {
      hiddenTimer = 0;
      vlist.render();
    }, 500);
  }
}

/** Called by the list right before it draws: move queued events into the model. */
function ingest() {
  if (!queue.length) return;
  const events = queue.splice(0, queue.length);
  let newMatches = 0;
  let added = 0;
  for (const ev of events) {
    switch (ev.type) {
      case "historical":
      case "realtime": {
        if (!ev.log) break;
        const entry = model.addRecord(ev.log, ev.log.stream === "system" ? "status" : "line");
        added += 1;
        if (historyDone && search.observe(entry, ev.log)) newMatches += 1;
        break;
      }
      case "status":
        if (ev.log) {
          model.addRecord(ev.log, "status");
          added += 1;
        }
        break;
      case "gap":
        model.addEntry(gapEntry(ev, processName));
        added += 1;
        break;
      case "historical_complete":
        if (!historyDone) {
          historyDone = true;
          ui.loading.hidden = true;
          const first = model.firstSeq();
          moreOlder = first !== null && first > 1;
          ui.earlierMenu.disabled = !moreOlder;
        }
        break;
      case "stream_end":
        model.addEntry(noteEntry(ev.message || "stream ended"));
        break;
      case "error":
        model.addEntry(noteEntry(`error: ${ev.message || "unknown"}`, Date.now() / 1000, 0, "error"));
        break;
      default:
        break;
    }
  }
  if (added && !vlist.follow && historyDone) unseen += added;
  vlist.apply(model.takeChange(), model.view);
  if (newMatches) search.label();
  updateStatus();
}

// --- connection -----------------------------------------------------------------------

let countdown = 0;
function showConn(state, info = {}) {
  clearInterval(countdown);
  ui.conn.dataset.state = state;
  ui.retry.hidden = state !== "reconnecting";
  const labels = { connecting: "Connecting…", live: "Live", disconnected: "Disconnected" };
  if (state === "reconnecting" && info.retryAt) {
    const tick = () => {
      const s = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
      ui.connText.textContent = s > 0 ? `Reconnecting in ${s} s` : "Reconnecting…";
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

let stream = null;

function setProcState(state) {
  ui.procState.dataset.state = state || "unknown";
  ui.procState.textContent = state || "unknown";
}

// --- status bar -----------------------------------------------------------------------

function updateStatus() {
  const held = model.lines;
  ui.statLines.textContent = `${formatCount(model.view.length === model.entries.length ? held : model.view.length)} ${model.view === model.entries ? "lines" : `of ${formatCount(held)} shown`}`;
  if (model.dropped) {
    ui.statDropped.hidden = false;
    ui.statDropped.textContent = `⚠ ${formatCount(model.dropped)} oldest lines dropped from view (limit ${formatCount(MAX_LINES)}; download has everything)`;
  } else {
    ui.statDropped.hidden = true;
  }
  const first = model.firstSeq();
  ui.statSeq.textContent = stream && stream.lastSeq !== null ? `seq ${first ?? "–"}–${stream.lastSeq}` : "";
  ui.statPending.hidden = !paused;
  ui.statPending.textContent = paused ? `Paused · ${formatCount(pendingLines)} waiting` : "";
  ui.pause.textContent = paused ? `▶ Resume (${formatCount(pendingLines)})` : "❚❚ Pause";
  ui.pause.setAttribute("aria-pressed", String(paused));
  if (!vlist.follow && unseen > 0) {
    ui.newLines.hidden = false;
    ui.newLines.textContent = `⤓ ${formatCount(unseen)} new line${unseen === 1 ? "" : "s"}`;
  } else {
    ui.newLines.hidden = vlist.follow;
    ui.newLines.textContent = "⤓ Back to live";
  }
}

// --- pause / follow ---------------------------------------------------------------------

function setPaused(on) {
  if (on === paused) return;
  paused = on;
  if (!paused) {
    queue.push(...pending);
    pending = [];
    pendingLines = 0;
    scheduleFlush();
  }
  updateStatus();
}

// --- search -----------------------------------------------------------------------------

function levelParam() {
  return ui.level.value || "";
}

function updateUrl() {
  const next = new URLSearchParams(location.search);
  const set = (key, value) => (value ? next.set(key, value) : next.delete(key));
  set("level", levelParam());
  set("q", search.query);
  set("re", search.regex ? "1" : "");
  const url = `${location.pathname}?${next}`;
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

// --- older history -----------------------------------------------------------------------

async function loadOlder(count = PAGE) {
  if (loadingOlder) return loadingOlder;
  const before = model.firstSeq();
  if (before === null || !moreOlder) return false;
  if (model.lines + count > MAX_LINES) {
    toast(`The view holds ${formatCount(MAX_LINES)} lines at most; download the log for everything.`, "info");
    return false;
  }
  ui.earlier.disabled = true;
  ui.earlier.textContent = "Loading…";
  loadingOlder = (async () => {
    try {
      const q = new URLSearchParams({ tail: String(count), before: String(before) });
      const data = await api(`/api/processes/${enc(processName)}/logs?${q}`);
      const logs = (data.logs || []).filter((log) => log.seq < before);
      const older = [];
      const builder = new EntryBuilder(older, { collapse: view.collapse });
      for (const log of logs) builder.add(log, log.stream === "system" ? "status" : "line");
      model.prepend(older);
      if (logs.length < count) moreOlder = false;
      vlist.apply(model.takeChange(), model.view);
      updateStatus();
      return logs.length > 0;
    } catch (err) {
      toast(`Could not load earlier lines: ${err.message}`, "error");
      return false;
    } finally {
      loadingOlder = null;
      ui.earlier.disabled = false;
      ui.earlier.textContent = "⇡ Load earlier lines";
      ui.earlierMenu.disabled = !moreOlder;
    }
  })();
  return loadingOlder;
}

/** Load pages until `reached(firstSeq)` or up to 20 pages; true when reached. */
async function loadOlderUntil(reached) {
  for (let page = 0; page < 20; page++) {
    const first = model.firstSeq();
    if (first === null || reached(first)) return true;
    if (!moreOlder) return false;
    const got = await loadOlder(PAGE);
    if (!got) return reached(model.firstSeq() ?? Infinity);
  }
  return reached(model.firstSeq() ?? Infinity);
}

// --- jump to time ---------------------------------------------------------------------------

async function jumpToTime() {
  const ts = fromDateTimeLocal(ui.jumpTime.value, view.time === "utc");
  if (!Number.isFinite(ts)) {
    toast("Pick a date and time first.", "info");
    return;
  }
  const firstEntry = model.entries.find((e) => e.ts !== null && e.ts !== undefined);
  if (firstEntry && ts < firstEntry.ts && moreOlder) {
    await loadOlderUntil(() => {
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
  view.selected = model.view[idx];
  vlist.scrollToIndex(idx, "top");
  vlist.refresh();
}

// --- copy / clear -----------------------------------------------------------------------------

async function copySelected(entry = view.selected) {
  if (!entry) {
    toast("Click a line first, then copy it (or press c).", "info");
    return;
  }
  const ok = await copyText(plainText(entry));
  toast(ok ? "Line copied" : "Copy failed — select the text and copy it by hand", ok ? "info" : "error");
}

function clearView() {
  model.clear();
  moreOlder = false;
  view.selected = null;
  view.current = null;
  search.forget();
  model.addEntry(noteEntry("View cleared — new lines appear below. The history on the server is untouched."));
  vlist.apply(model.takeChange(), model.view);
  vlist.toBottom();
  updateStatus();
}

async function clearHistory() {
  const ok = await confirmDialog({
    title: `Clear the history of ${processName}?`,
    message: "Every stored line of this process is deleted on the server, for every viewer. Sequence numbers keep counting. This cannot be undone.",
    confirm: "Clear history",
    danger: true,
  });
  if (!ok) return;
  for (const b of document.querySelectorAll("[data-act=clear-history]")) b.disabled = true;
  try {
    const result = await api(`/api/logs/${enc(processName)}/clear`, { method: "POST" });
    model.clear();
    moreOlder = false;
    view.selected = null;
    view.current = null;
    search.forget();
    const upto = result && Number.isInteger(result.upto) ? ` (up to seq ${result.upto})` : "";
    model.addEntry(noteEntry(`History cleared${upto}.`));
    vlist.apply(model.takeChange(), model.view);
    vlist.toBottom();
    updateStatus();
    toast("History cleared", "info");
  } catch (err) {
    toast(`Clear failed: ${err.message}`, "error");
  } finally {
    for (const b of document.querySelectorAll("[data-act=clear-history]")) b.disabled = false;
  }
}

// --- controls ---------------------------------------------------------------------------------

function setLevel(value) {
  ui.level.value = value;
  model.setFloor(value ? LEVEL_ORDER[value] || 0 : 0);
  vlist.apply(model.takeChange(), model.view);
  updateUrl();
  updateStatus();
  if (search.query) search.run();
}

function wire() {
  ui.search.addEventListener("input", searchSoon);
  ui.regex.addEventListener("change", () => search.run());
  ui.search.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      const go = () => search.step(e.shiftKey ? -1 : 1);
      if (search.stale()) {
        searchSoon.cancel();
        search.run().then(go);
      } else {
        go();
      }
    } else if (e.key === "Escape") {
      if (ui.search.value) {
        ui.search.value = "";
        search.run();
      } else {
        ui.search.blur();
        ui.log.focus();
      }
    }
  });
  ui.next.addEventListener("click", () => search.step(1));
  ui.prev.addEventListener("click", () => search.step(-1));
  ui.count.addEventListener("click", () => {
    ui.matches.hidden = !ui.matches.hidden;
    ui.count.setAttribute("aria-expanded", String(!ui.matches.hidden));
    search.renderList();
  });
  $("#close-matches").addEventListener("click", () => {
    ui.matches.hidden = true;
    ui.count.setAttribute("aria-expanded", "false");
    ui.count.focus();
  });
  ui.matchList.addEventListener("click", (e) => {
    const button = e.target instanceof Element ? e.target.closest("button.match") : null;
    if (button) search.goTo(Number(button.dataset.index));
  });
  ui.level.addEventListener("change", () => setLevel(ui.level.value));
  ui.pause.addEventListener("click", () => setPaused(!paused));
  ui.follow.addEventListener("click", () => vlist.toBottom());
  ui.newLines.addEventListener("click", () => vlist.toBottom());
  ui.top.addEventListener("click", () => vlist.toTop());
  ui.time.value = view.time;
  ui.time.addEventListener("change", () => {
    view.time = ui.time.value;
    prefs.set("time", view.time);
    ui.log.classList.toggle("no-time", view.time === "off");
    vlist.remeasure(); // the message column's width changed
    search.renderList();
  });
  ui.log.classList.toggle("no-time", view.time === "off");
  ui.wrap.checked = view.wrap;
  ui.wrap.addEventListener("change", () => {
    view.wrap = ui.wrap.checked;
    prefs.set("wrap", view.wrap ? "1" : "0");
    vlist.setWrap(view.wrap);
  });
  ui.collapse.checked = view.collapse;
  ui.collapse.addEventListener("change", () => {
    view.collapse = ui.collapse.checked;
    prefs.set("collapse", view.collapse ? "1" : "0");
    model.setCollapse(view.collapse);
  });
  $("#view-menu").addEventListener("toggle", () => {
    // offer the time of the first visible line as a starting point
    const entry = model.view[vlist.range[0]];
    if ($("#view-menu").open && !ui.jumpTime.value && entry && entry.ts) {
      ui.jumpTime.value = toDateTimeLocal(entry.ts, view.time === "utc");
    }
  });
  ui.jumpGo.addEventListener("click", () => jumpToTime());
  ui.jumpTime.addEventListener("keydown", (e) => {
    if (e.key === "Enter") jumpToTime();
  });
  ui.earlier.addEventListener("click", () => loadOlder());
  ui.earlierMenu.addEventListener("click", () => loadOlder());
  const actions = { copy: () => copySelected(), "clear-view": () => clearView(), "clear-history": () => clearHistory() };
  for (const button of document.querySelectorAll("[data-act]")) {
    button.addEventListener("click", () => {
      $("#view-menu").open = false;
      actions[button.dataset.act]();
    });
  }
  ui.retry.addEventListener("click", () => stream && stream.retryNow());
  ui.procSelect.addEventListener("change", () => {
    const next = new URLSearchParams({ process: ui.procSelect.value });
    if (levelParam()) next.set("level", levelParam());
    location.assign(`/logs.html?${next}`);
  });

  ui.log.addEventListener("click", (e) => {
    const entry = vlist.entryOf(e.target);
    if (!entry) return;
    if (e.target instanceof Element && e.target.closest(".row-copy")) {
      copySelected(entry);
      return;
    }
    if (window.getSelection && String(window.getSelection()).length) return; // selecting text
    view.selected = view.selected === entry ? null : entry;
    vlist.refresh();
  });

  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    if (isTyping(e.target)) return;
    const key = e.key;
    if (key === "/") {
      e.preventDefault();
      ui.search.focus();
      ui.search.select();
    } else if (key === "End") {
      e.preventDefault();
      vlist.toBottom();
    } else if (key === "Home") {
      e.preventDefault();
      vlist.toTop();
    } else if (key === " " && !isInteractive(e.target)) {
      e.preventDefault();
      setPaused(!paused);
    } else if (key === "n" || key === "N") {
      search.step(key === "n" ? 1 : -1);
    } else if (key === "c" && !String(window.getSelection ? window.getSelection() : "")) {
      copySelected();
    } else if (key === "w") {
      ui.wrap.checked = !ui.wrap.checked;
      ui.wrap.dispatchEvent(new Event("change"));
    } else if (key === "Escape") {
      view.selected = null;
      vlist.refresh();
      $("#view-menu").open = false;
    }
  });
}

// --- start -----------------------------------------------------------------------------------

async function showPicker() {
  ui.picker.hidden = false;
  ui.loading.hidden = true;
  showConn("disconnected", { reason: "no process chosen" });
  try {
    const processes = await listProcesses();
    ui.pickerList.replaceChildren(...processes.map((p) => el("li", {},
      el("a", { class: "picker-item", href: `/logs.html?process=${enc(p.name)}` },
        el("span", { class: "name", text: p.name }),
        el("span", { class: "state", dataset: { state: p.state }, text: p.state })))));
    if (!processes.length) ui.pickerList.append(el("li", { class: "muted", text: "No processes are configured." }));
    fillProcessSelect(processes, "");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) toast(`Cannot list processes: ${err.message}`, "error");
  }
}

function fillProcessSelect(processes, current) {
  const options = processes.map((p) => el("option", { value: p.name, text: p.name }));
  if (!current) options.unshift(el("option", { value: "", text: "Choose a process…" }));
  ui.procSelect.replaceChildren(...options);
  ui.procSelect.value = current;
}

function start() {
  initNav("logs");
  wire();
  const level = params.get("level") || "";
  if (level && !LEVEL_ORDER[level]) toast(`Unknown level “${level}” ignored`, "info");
  ui.level.value = LEVEL_ORDER[level] ? level : "";
  model.setFloor(LEVEL_ORDER[level] || 0);
  model.takeChange();
  ui.search.value = params.get("q") || "";
  ui.regex.checked = params.get("re") === "1";
  updateStatus();

  window.__logcast = {
    process: processName,
    stats: () => ({
      ...(stream ? stream.stats : {}),
      lastSeq: stream ? stream.lastSeq : null,
      state: stream ? stream.state : "idle",
      lines: model.lines,
      entries: model.entries.length,
      view: model.view.length,
      dropped: model.dropped,
      pending: pendingLines,
      paused,
      follow: vlist.follow,
      historyDone,
      matches: search.matches.length,
      rows: ui.log.querySelectorAll(".row").length,
    }),
    seqs: () => (seqLog ? seqLog.slice() : null),
    entries: () => model.entries.map((e) => ({ kind: e.kind, seq: e.seq, first: e.first, level: e.level, text: e.text, updates: e.updates, from: e.from, to: e.to })),
  };

  if (!processName) {
    showPicker();
    return;
  }
  document.title = `${processName} · logs · logcast`;
  $("#page-process").textContent = processName;
  for (const link of document.querySelectorAll(".download-link")) {
    link.href = `/api/processes/${enc(processName)}/logs/download`;
    link.setAttribute("download", ""); // the server names the file (process and time)
  }

  stream = new LogStream(processName, {
    transport: params.get("transport") === "ws" ? "ws" : "sse",
    lines: HISTORY_LINES,
    after: START_AFTER,
    onEvent,
    onState: (state, info) => {
      showConn(state, info);
      if (info.fatal && info.reason && !info.reason.startsWith("login")) {
        ui.loading.hidden = true;
        model.addEntry(noteEntry(`Cannot stream: ${info.reason}`, Date.now() / 1000, 0, "error"));
        vlist.apply(model.takeChange(), model.view);
      }
    },
  });
  stream.start();

  getProcess(processName).then((p) => setProcState(p.state)).catch((err) => {
    if (err instanceof ApiError && err.status === 404) setProcState("unknown");
  });
  listProcesses().then((list) => fillProcessSelect(list, processName)).catch(() => {
    fillProcessSelect([{ name: processName }], processName);
  });
  if (ui.search.value) search.run();
}

start();
