// /logs.html?process=NAME&level=&q=&re=1&lines=&after=&until= — the log viewer's controller.
// Events are queued as they arrive and taken into the model once per animation frame, right
// before the virtual list draws, so that a flood of lines costs one render per frame.

import { api, ApiError, enc, getProcess, listProcesses } from "./api.js";
import { copyText } from "./clipboard.js";
import { debounce } from "./debounce.js";
import { isInteractive, isTyping } from "./dom.js";
import { LEVEL_ORDER, gapEntry, noteEntry } from "./entries.js";
import { confirmDialog, toast } from "./feedback.js";
import { toDateTimeLocal } from "./format.js";
import { ui } from "./logs-elements.js";
import { EarlierLines, jumpToTime } from "./logs-history.js";
import { fillProcessSelect, showPicker } from "./logs-picker.js";
import { display, feed, isLineEvent, model, parsed, settings } from "./logs-state.js";
import { showConnection, showProcessState, showStatus } from "./logs-status.js";
import { initNav } from "./nav.js";
import { prefs } from "./prefs.js";
import { replaceQuery } from "./query.js";
import { plainText, renderRow } from "./render.js";
import { Search } from "./search.js";
import { LogStream } from "./stream.js";
import { VirtualList } from "./vlist.js";

// --- the stream, first ------------------------------------------------------------------------

/** History asked of the stream on opening: some twenty screens, which the server sends as one
 * batched message (history goes 1,024 events a message), so that they show in one frame.
 * What else `lines` asks for comes in pages, newest first, once these show (`EarlierLines.fill`). */
const FIRST_LINES = 1000;

/**
 * The process's stream, opened before the rest of the page is built, so that the server's
 * answer travels while the page lays itself out; its events wait in `feed.queued` until the
 * list draws (no event is handled before this module has run to its end).
 */
function openStream(name) {
  performance.mark("logcast:open");
  feed.stream = new LogStream(name, {
    transport: settings.transport,
    batch: settings.batch,
    // the last lines first, so that they show at once; the rest is filled in before them
    lines: Math.min(settings.historyLines, FIRST_LINES),
    after: settings.startAfter,
    onEvent,
    onState: (state, info) => {
      showConnection(state, info);
      if (info.fatal && info.reason && !info.reason.startsWith("login")) {
        ui.loading.hidden = true;
        model.addEntry(noteEntry(`Cannot stream: ${info.reason}`, Date.now() / 1000, 0, "error"));
        vlist.apply(model.takeChange(), model.view);
      }
    },
  });
  feed.stream.start();
}

if (settings.process) openStream(settings.process);

// --- the list, the search, earlier pages ---------------------------------------------------

const noProcessTag = () => null; // one process: rows carry no process tag
const PARSED_TITLE = "read by the model parser";
const vlist = new VirtualList(ui.log, {
  renderRow: (row, entry) => {
    renderRow(row, entry, {
      time: display.time,
      highlighter: entry.kind === "line" ? display.highlighter : null,
      slotOf: noProcessTag,
      selected: entry === display.selected,
      current: entry === display.current,
    });
    // a line the model server's parser read (its phase, progress, tokens/s came from it)
    if (parsed.has(entry)) {
      row.classList.add("parsed");
      row.title = PARSED_TITLE;
    } else if (row.hasAttribute("title")) {
      row.removeAttribute("title");
    }
  },
  onFollow: (on) => {
    ui.follow.setAttribute("aria-pressed", String(on));
    if (on) feed.unseen = 0;
    updateStatus();
  },
  onRender: () => {
    const [first] = vlist.range;
    ui.earlier.hidden = !(feed.moreOlder && feed.historyDone && first === 0 && model.view.length > 0 && !vlist.follow);
    ui.earlier.hidden ||= vlist.scroller.scrollTop > vlist.rowH;
  },
});
vlist.beforeRender = ingest;

const earlier = new EarlierLines({ vlist, onLoaded: () => updateStatus() });

const search = new Search({
  process: settings.process,
  model,
  vlist,
  display,
  ui,
  level: () => chosenLevel(),
  lastSeq: () => (feed.stream ? feed.stream.lastSeq : 0),
  loadOlderUntil: (reached) => earlier.loadUntil(reached),
  onQuery: () => updateUrl(),
});
const searchSoon = debounce(() => search.run(), 300);
vlist.setWrap(display.wrap);

function updateStatus() {
  showStatus(vlist.follow);
}

// --- events in -------------------------------------------------------------------------------

/** True for an event past the end of the range the address asked for (`until`). */
function pastRange(ev) {
  const until = settings.until;
  if (until === null) return false;
  if (ev.type === "gap") return Number.isInteger(ev.from) && ev.from > until;
  if (ev.type === "historical" || ev.type === "realtime" || ev.type === "status") {
    return Boolean(ev.log) && Number.isInteger(ev.log.seq) && ev.log.seq > until;
  }
  return false;
}

/** The range asked for is all in: stop streaming and say where the view ends. */
function endRange() {
  if (feed.rangeDone) return;
  feed.rangeDone = true;
  feed.stream.stop();
  showConnection("disconnected", { reason: `the view ends at seq ${settings.until}` });
  if (!feed.historyDone) feed.queued.push({ type: "historical_complete" });
  feed.queued.push({ type: "range_end", message: `End of the range asked for (up to seq ${settings.until}): this view does not follow the live lines.` });
  scheduleFlush();
}

function onEvent(ev) {
  if (feed.rangeDone) return;
  if (!feed.queued.length && !model.entries.length) performance.mark("logcast:first-event");
  if (pastRange(ev)) {
    endRange();
    return;
  }
  if (feed.seqLog && ev.log && Number.isInteger(ev.log.seq) && ["historical", "realtime", "status"].includes(ev.type)) {
    feed.seqLog.push(ev.log.seq);
  }
  if (ev.type === "status" && ev.log && ev.log.state) showProcessState(ev.log.state);
  if (feed.paused && isLineEvent(ev)) {
    feed.hold(ev);
    updateStatus();
    return;
  }
  feed.queued.push(ev);
  scheduleFlush();
  if (settings.until !== null && feed.stream && feed.stream.lastSeq !== null && feed.stream.lastSeq >= settings.until) endRange();
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
  if (!feed.queued.length) return;
  const events = feed.queued.splice(0, feed.queued.length);
  let newMatches = 0;
  let added = 0;
  for (const ev of events) {
    switch (ev.type) {
      case "historical":
        if (ev.log) feed.historyRecords += 1;
      // falls through
      case "realtime": {
        if (!ev.log) break;
        const entry = model.addRecord(ev.log, ev.log.stream === "system" ? "status" : "line");
        added += 1;
        if (feed.historyDone && search.observe(entry, ev.log)) newMatches += 1;
        break;
      }
      case "status":
        if (ev.log) {
          model.addRecord(ev.log, "status");
          added += 1;
        }
        break;
      case "gap":
        model.addEntry(gapEntry(ev, settings.process));
        added += 1;
        break;
      case "historical_complete":
        if (!feed.historyDone) {
          feed.historyDone = true;
          performance.mark("logcast:history-done");
          ui.loading.hidden = true;
          const first = model.firstSeq();
          feed.moreOlder = first !== null && first > 1;
          ui.earlierMenu.disabled = !feed.moreOlder;
          if (feed.moreOlder && feed.historyRecords < settings.historyLines && settings.startAfter === null) {
            // the rest of the history, in front of what shows: once this frame has shown the
            // last lines, so that no page's parsing holds them up
            requestAnimationFrame(() => setTimeout(() => earlier.fill(settings.historyLines), 0));
          } else {
            feed.filled = true;
          }
        }
        break;
      case "stream_end":
      case "range_end":
        model.addEntry(noteEntry(ev.message || "stream ended"));
        break;
      case "error":
        model.addEntry(noteEntry(`error: ${ev.message || "unknown"}`, Date.now() / 1000, 0, "error"));
        break;
      default:
        break;
    }
  }
  if (added && !vlist.follow && feed.historyDone) feed.unseen += added;
  vlist.apply(model.takeChange(), model.view);
  if (newMatches) search.label();
  updateStatus();
}

// --- what the user changes -----------------------------------------------------------------

function setPaused(on) {
  if (!feed.setPaused(on)) return;
  if (!on) scheduleFlush();
  updateStatus();
}

function chosenLevel() {
  return ui.level.value || "";
}

function setLevel(value) {
  ui.level.value = value;
  model.setFloor(value ? LEVEL_ORDER[value] || 0 : 0);
  vlist.apply(model.takeChange(), model.view);
  updateUrl();
  updateStatus();
  if (search.query) search.run();
}

/** Keep the address in step with the level and the search, so that it can be shared. */
function updateUrl() {
  replaceQuery({ level: chosenLevel(), q: search.query, re: search.regex ? "1" : "" });
}

async function copySelected(entry = display.selected) {
  if (!entry) {
    toast("Click a line first, then copy it (or press c).", "info");
    return;
  }
  const ok = await copyText(plainText(entry));
  toast(ok ? "Line copied" : "Copy failed — select the text and copy it by hand", ok ? "info" : "error");
}

/** Forget every line held and show `note` alone, following. */
function startOver(note) {
  model.clear();
  feed.moreOlder = false;
  display.selected = null;
  display.current = null;
  search.forget();
  model.addEntry(noteEntry(note));
  vlist.apply(model.takeChange(), model.view);
  vlist.toBottom();
  updateStatus();
}

/** The server cleared the history up to seq `upto`: what is held up to it goes, the lines
 * that came after it (while the request was on its way) stay. */
function clearedUpTo(upto) {
  model.clearUpTo(upto);
  feed.dropHeldUpTo(upto);
  feed.moreOlder = false;
  if (display.selected && display.selected.gone) display.selected = null;
  if (display.current && display.current.gone) display.current = null;
  search.forget();
  model.insertEntry(noteEntry(`History cleared (up to seq ${upto}).`, Date.now() / 1000, upto));
  vlist.apply(model.takeChange(), model.view);
  updateStatus();
}

function clearView() {
  startOver("View cleared — new lines appear below. The history on the server is untouched.");
}

async function clearHistory() {
  const ok = await confirmDialog({
    title: `Clear the history of ${settings.process}?`,
    message: "Every stored line of this process is deleted on the server, for every viewer. Sequence numbers keep counting. This cannot be undone.",
    confirm: "Clear history",
    danger: true,
  });
  if (!ok) return;
  for (const b of document.querySelectorAll("[data-act=clear-history]")) b.disabled = true;
  try {
    const result = await api(`/api/logs/${enc(settings.process)}/clear`, { method: "POST" });
    if (result && Number.isInteger(result.upto)) {
      clearedUpTo(result.upto);
    } else {
      startOver("History cleared.");
    }
    toast("History cleared", "info");
  } catch (err) {
    toast(`Clear failed: ${err.message}`, "error");
  } finally {
    for (const b of document.querySelectorAll("[data-act=clear-history]")) b.disabled = false;
  }
}

// --- wiring, one concern each ----------------------------------------------------------------

function wireSearch() {
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
}

function wireMatchList() {
  ui.count.addEventListener("click", () => {
    ui.matches.hidden = !ui.matches.hidden;
    ui.count.setAttribute("aria-expanded", String(!ui.matches.hidden));
    search.renderList();
  });
  ui.closeMatches.addEventListener("click", () => {
    ui.matches.hidden = true;
    ui.count.setAttribute("aria-expanded", "false");
    ui.count.focus();
  });
  ui.matchList.addEventListener("click", (e) => {
    const button = e.target instanceof Element ? e.target.closest("button.match") : null;
    if (button) search.goTo(Number(button.dataset.index));
  });
}

/** The level filter, pause, and the [data-act] buttons (copy, clear view, clear history). */
function wireToolbar() {
  ui.level.addEventListener("change", () => setLevel(ui.level.value));
  ui.pause.addEventListener("click", () => setPaused(!feed.paused));
  const actions = { copy: () => copySelected(), "clear-view": () => clearView(), "clear-history": () => clearHistory() };
  for (const button of document.querySelectorAll("[data-act]")) {
    button.addEventListener("click", () => {
      ui.viewMenu.open = false;
      actions[button.dataset.act]();
    });
  }
}

/** Follow, back to live, top, and loading earlier lines. */
function wireScroll() {
  ui.follow.addEventListener("click", () => vlist.toBottom());
  ui.newLines.addEventListener("click", () => vlist.toBottom());
  ui.top.addEventListener("click", () => vlist.toTop());
  ui.earlier.addEventListener("click", () => earlier.load());
  ui.earlierMenu.addEventListener("click", () => earlier.load());
}

/** The View menu: time column, wrap, progress collapsing (remembered), jump to a time. */
function wireViewMenu() {
  ui.time.value = display.time;
  ui.time.addEventListener("change", () => {
    display.time = ui.time.value;
    prefs.set("time", display.time);
    ui.log.classList.toggle("no-time", display.time === "off");
    vlist.remeasure(); // the message column's width changed
    search.renderList();
  });
  ui.log.classList.toggle("no-time", display.time === "off");
  ui.wrap.checked = display.wrap;
  ui.wrap.addEventListener("change", () => {
    display.wrap = ui.wrap.checked;
    prefs.set("wrap", display.wrap ? "1" : "0");
    vlist.setWrap(display.wrap);
  });
  ui.collapse.checked = display.collapse;
  ui.collapse.addEventListener("change", () => {
    display.collapse = ui.collapse.checked;
    prefs.set("collapse", display.collapse ? "1" : "0");
    model.setCollapse(display.collapse);
  });
  ui.viewMenu.addEventListener("toggle", () => {
    // offer the time of the first visible line as a starting point
    const entry = model.view[vlist.range[0]];
    if (ui.viewMenu.open && !ui.jumpTime.value && entry && entry.ts) {
      ui.jumpTime.value = toDateTimeLocal(entry.ts, display.time === "utc");
    }
  });
  ui.jumpGo.addEventListener("click", () => jumpToTime(earlier, vlist));
  ui.jumpTime.addEventListener("keydown", (e) => {
    if (e.key === "Enter") jumpToTime(earlier, vlist);
  });
}

/** Retry now, and switching to another process's log. */
function wireStream() {
  ui.retry.addEventListener("click", () => feed.stream && feed.stream.retryNow());
  ui.procSelect.addEventListener("change", () => {
    const next = new URLSearchParams({ process: ui.procSelect.value });
    if (chosenLevel()) next.set("level", chosenLevel());
    location.assign(`/logs.html?${next}`);
  });
}

/** A click selects a row (again: unselects it); its copy button copies it. */
function wireRows() {
  ui.log.addEventListener("click", (e) => {
    const entry = vlist.entryOf(e.target);
    if (!entry) return;
    if (e.target instanceof Element && e.target.closest(".row-copy")) {
      copySelected(entry);
      return;
    }
    if (window.getSelection && String(window.getSelection()).length) return; // selecting text
    display.selected = display.selected === entry ? null : entry;
    vlist.refresh();
  });
}

/** The page's shortcuts (listed in the View menu); never while typing in a field. */
function wireKeyboard() {
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
      setPaused(!feed.paused);
    } else if (key === "n" || key === "N") {
      search.step(key === "n" ? 1 : -1);
    } else if (key === "c" && !String(window.getSelection ? window.getSelection() : "")) {
      copySelected();
    } else if (key === "w") {
      ui.wrap.checked = !ui.wrap.checked;
      ui.wrap.dispatchEvent(new Event("change"));
    } else if (key === "Escape") {
      display.selected = null;
      vlist.refresh();
      ui.viewMenu.open = false;
    }
  });
}

// --- start -------------------------------------------------------------------------------------

/** The level filter and the search box as the URL set them. */
function applyUrlChoices() {
  const level = settings.level;
  if (level && !LEVEL_ORDER[level]) toast(`Unknown level “${level}” ignored`, "info");
  ui.level.value = LEVEL_ORDER[level] ? level : "";
  model.setFloor(LEVEL_ORDER[level] || 0);
  model.takeChange();
  ui.search.value = settings.query;
  ui.regex.checked = settings.regex;
}

/** `window.__logcast`: what tests and benchmarks read from the page. */
function exposeTestHooks() {
  window.__logcast = {
    process: settings.process,
    stats: () => ({
      ...(feed.stream ? feed.stream.stats : {}),
      lastSeq: feed.stream ? feed.stream.lastSeq : null,
      state: feed.stream ? feed.stream.state : "idle",
      lines: model.lines,
      entries: model.entries.length,
      view: model.view.length,
      dropped: model.dropped,
      pending: feed.heldLines,
      paused: feed.paused,
      follow: vlist.follow,
      historyDone: feed.historyDone,
      filled: feed.filled,
      historyRecords: feed.historyRecords,
      rangeDone: Boolean(feed.rangeDone),
      parsed: parsed.seqs.size,
      matches: search.matches.length,
      rows: ui.log.querySelectorAll(".row").length,
    }),
    seqs: () => (feed.seqLog ? feed.seqLog.slice() : null),
    entries: () => model.entries.map((e) => ({ kind: e.kind, seq: e.seq, first: e.first, level: e.level, text: e.text, updates: e.updates, from: e.from, to: e.to })),
  };
}

/** Show the process named in the URL (its stream is already open): title, download links, state. */
function openProcess(name) {
  document.title = `${name} · logs · logcast`;
  ui.pageProcess.textContent = name;
  for (const link of document.querySelectorAll(".download-link")) {
    link.href = `/api/processes/${enc(name)}/logs/download`;
    link.setAttribute("download", ""); // the server names the file (process and time)
  }

  describe(name);
  listProcesses().then((list) => fillProcessSelect(list, name)).catch(() => {
    fillProcessSelect([{ name }], name);
  });
  if (ui.search.value) search.run();
}

const DESCRIBE_MS = 3000;
let describeTimer = 0;

/**
 * The process's description, now and every DESCRIBE_MS while the tab is visible: its state
 * (status events keep it current too) and, for a model server, the seqs of the lines its
 * parser read, which the rows mark.
 */
async function describe(name) {
  clearTimeout(describeTimer);
  if (!document.hidden) {
    try {
      const p = await getProcess(name);
      showProcessState(p.state);
      if (p.model && parsed.add(p.model.marked)) vlist.refresh();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        showProcessState("unknown");
        return;
      }
    }
  }
  describeTimer = setTimeout(() => describe(name), DESCRIBE_MS);
}

function start() {
  initNav("logs");
  wireSearch();
  wireMatchList();
  wireToolbar();
  wireScroll();
  wireViewMenu();
  wireStream();
  wireRows();
  wireKeyboard();
  applyUrlChoices();
  updateStatus();
  exposeTestHooks();
  if (settings.process) openProcess(settings.process);
  else showPicker();
}

start();
