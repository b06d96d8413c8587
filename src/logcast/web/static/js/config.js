// /config.html — the effective configuration of every process, read only, with the
// start/stop/restart controls and a link to each process's logs.

import { api, ApiError, control, failedAtOnce, listProcesses } from "./api.js";
import { initNav } from "./nav.js";
import { $, el } from "./dom.js";
import { toast } from "./feedback.js";
import { ALIVE } from "./states.js";

const cards = new Map();

/** argv as a shell would read it back (for copying); shown as separate chips anyway. */
function shellQuote(arg) {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

function value(v) {
  if (v === null || v === undefined || v === "") return el("span", { class: "muted", text: "–" });
  if (typeof v === "boolean") return el("code", { text: v ? "true" : "false" });
  if (typeof v === "object") return el("code", { text: JSON.stringify(v) });
  return el("code", { text: String(v) });
}

function readyText(ready) {
  if (!ready) return null;
  if (ready.log) return `log line matching “${ready.log}”`;
  if (ready.http) return `HTTP ${ready.http}`;
  return JSON.stringify(ready);
}

function card(proc) {
  const name = proc.name;
  const state = el("span", { class: "state", dataset: { state: "unknown" }, text: "…" });
  const buttons = {};
  const actions = el("div", { class: "actions" });
  for (const action of ["start", "stop", "restart"]) {
    const b = el("button", {
      type: "button", class: `btn btn-small${action === "stop" ? " btn-danger" : ""}`, "aria-label": `${action} ${name}`,
    }, action[0].toUpperCase() + action.slice(1));
    b.addEventListener("click", () => act(name, action));
    buttons[action] = b;
    actions.append(b);
  }
  actions.append(el("a", { class: "btn btn-small", href: `/logs.html?process=${encodeURIComponent(name)}` }, "📜 Logs"));

  const argv = Array.isArray(proc.command) ? proc.command : [String(proc.command ?? "")];
  const command = el("div", { class: "argv", title: argv.map(shellQuote).join(" ") }, ...argv.map((a) => el("code", { text: a })));
  const envEntries = Object.entries(proc.env || {});
  const env = envEntries.length
    ? el("table", { class: "env-table" }, el("tbody", {}, ...envEntries.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: String(v) })))))
    : el("span", { class: "muted", text: "–" });
  const rows = [
    ["command", command], ["cwd", value(proc.cwd)], ["env", env], ["autostart", value(proc.autostart)],
    ["restart", value(proc.restart)], ["pty", value(proc.pty)], ["ready", value(readyText(proc.ready))],
    ["stop signal", value(proc.stop_signal)], ["stop timeout", value(proc.stop_timeout !== undefined ? `${proc.stop_timeout} s` : null)],
  ];
  const known = new Set(["name", "command", "cwd", "env", "autostart", "restart", "pty", "ready", "stop_signal", "stop_timeout"]);
  for (const [k, v] of Object.entries(proc)) if (!known.has(k)) rows.push([k.replace(/_/g, " "), value(v)]);
  const dl = el("dl", { class: "kv" }, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  const section = el("section", { class: "panel", id: `proc-${name}`, "aria-labelledby": `title-${name}`, dataset: { process: name } },
    el("div", { class: "panel-head" }, el("h2", { id: `title-${name}`, text: name }), state, actions),
    el("div", { class: "panel-body" }, dl));
  cards.set(name, { section, state, buttons });
  return section;
}

function updateStates(list) {
  for (const p of list) {
    const c = cards.get(p.name);
    if (!c) continue;
    c.state.dataset.state = p.state;
    c.state.textContent = p.state;
    const alive = ALIVE.has(p.state);
    if (!c.busy) {
      c.buttons.start.disabled = alive;
      c.buttons.stop.disabled = !(alive || p.state === "backoff") || p.state === "stopping";
      c.buttons.restart.disabled = p.state === "stopping";
    }
    const side = document.querySelector(`#side-procs [data-process="${CSS.escape(p.name)}"] .state`);
    if (side) {
      side.dataset.state = p.state;
      side.textContent = p.state;
    }
  }
}

async function act(name, action) {
  const c = cards.get(name);
  c.busy = true;
  for (const b of Object.values(c.buttons)) b.disabled = true;
  try {
    const p = await control(name, action);
    if (p && p.state) updateStates([p]);
    const why = failedAtOnce(action, p);
    if (why) toast(`${name}: ${action} failed — ${why}`, "error");
    else toast(`${name}: ${action} done`, "info");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) toast(`${name}: ${action} failed — ${err.message}`, "error");
  } finally {
    c.busy = false;
    refresh();
  }
}

async function refresh() {
  try {
    updateStates(await listProcesses());
  } catch {
    // the next refresh will tell
  }
}

async function start() {
  initNav("config");
  const list = $("#config-list");
  try {
    const config = await api("/api/config");
    $("#config-path").textContent = config.path ? `File: ${config.path}` : "";
    const procs = config.processes || [];
    list.replaceChildren(...procs.map(card));
    if (!procs.length) list.append(el("p", { class: "empty", text: "No processes are configured." }));
    $("#side-procs").replaceChildren(...procs.map((p) => el("a", { class: "proc-link", href: `#proc-${p.name}`, dataset: { process: p.name } },
      el("span", { text: p.name }), el("span", { class: "state", dataset: { state: "unknown" }, text: "…" }))));
    await refresh();
    setInterval(() => {
      if (!document.hidden) refresh();
    }, 2000);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    list.replaceChildren(el("p", { class: "empty", text: `Cannot load the configuration: ${err.message}` }));
  }
}

start();
