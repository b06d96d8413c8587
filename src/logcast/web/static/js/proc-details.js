// What the dashboard shows of a process beyond its counters: the model server's phase, its
// load bar and tokens/s, what it waits for, its CPU and memory with their sparklines, and
// why its last run died. Every text the server sent goes in as text (textContent), never
// as markup.

import { stripAnsi } from "./ansi.js";
import { el } from "./dom.js";
import { formatBytes, formatCount, formatDuration, formatPercent, formatRate } from "./format.js";
import { Sparkline } from "./sparkline.js";
import { ALIVE } from "./states.js";

const KIND = { llamacpp: "llama.cpp", vllm: "vLLM", sglang: "SGLang" };
/** Where a process no longer runs: its last failed run is worth explaining. */
const ENDED = new Set(["crashed", "exited", "backoff"]);

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setTitle(node, text) {
  if (text) {
    if (node.title !== text) node.title = text;
  } else if (node.hasAttribute("title")) {
    node.removeAttribute("title");
  }
}

const formatTps = (v) => `${formatRate(v)} tok/s`;

/** The sparklines of one process, one per figure sampled. */
export function makeSparks() {
  return {
    lines_per_s: new Sparkline({ label: "lines/s", color: "#38bdf8", format: formatRate, floor: 1 }),
    errors: new Sparkline({ label: "errors", color: "#ef4444", format: formatCount, bars: true, floor: 1, sum: true }),
    cpu_percent: new Sparkline({ label: "CPU", color: "#34d399", format: formatPercent, floor: 5 }),
    rss_bytes: new Sparkline({ label: "memory (RSS)", color: "#a78bfa", format: formatBytes, floor: 1 << 20, tight: true }),
    gen_tokens_per_s: new Sparkline({ label: "generated tokens/s", color: "#fbbf24", format: formatTps, floor: 1, width: 96 }),
  };
}

/** A figure over its sparkline, for a numeric cell. */
export function metric(spark) {
  const value = el("span", { class: "metric-value" });
  const node = el("span", { class: "metric" }, value, spark ? spark.node : null);
  return { node, value };
}

// --- the model column ------------------------------------------------------------------------

export function buildModelCell(name, sparks) {
  const phase = el("span", { class: "phase", hidden: true });
  const fill = el("span", { class: "loadbar-fill" });
  const bar = el("span", {
    class: "loadbar", role: "progressbar", "aria-label": `${name} loading`, "aria-valuemin": "0", "aria-valuemax": "100", hidden: true,
  }, fill);
  const loadText = el("span", { class: "load-text", hidden: true });
  const tps = el("span", { class: "tps", hidden: true });
  const spark = el("span", { class: "model-spark", hidden: true }, sparks.gen_tokens_per_s.node);
  const node = el("span", { class: "model" }, el("span", { class: "model-line" }, phase, loadText, tps), bar, spark);
  return { node, phase, bar, fill, loadText, tps, spark };
}

/** Seconds since the run started: the server's uptime (no clock skew) or from `started_at`. */
function elapsed(p) {
  if (typeof p.uptime === "number") return p.uptime;
  if (typeof p.started_at === "number") return Math.max(0, Date.now() / 1000 - p.started_at);
  return null;
}

export function updateModelCell(parts, p, td) {
  const m = p.model && typeof p.model === "object" ? p.model : null;
  td.classList.toggle("is-empty", !m);
  parts.phase.hidden = !m;
  if (!m) {
    parts.bar.hidden = parts.loadText.hidden = parts.tps.hidden = parts.spark.hidden = true;
    return;
  }
  const phase = String(m.phase || "");
  parts.phase.dataset.phase = phase;
  setText(parts.phase, phase || "?");
  const facts = [KIND[m.kind] || String(m.kind || "model server")];
  if (typeof m.ready_after_s === "number") facts.push(`ready after ${formatDuration(m.ready_after_s)}`);
  facts.push(`${formatCount(m.requests ?? 0)} request${m.requests === 1 ? "" : "s"}`);
  if (typeof m.last_request_at === "number") facts.push(`last at ${new Date(m.last_request_at * 1000).toLocaleTimeString()}`);
  setTitle(parts.phase, facts.join(" · "));

  const loading = phase === "loading" && ALIVE.has(p.state);
  parts.bar.hidden = !loading;
  parts.loadText.hidden = !loading;
  if (loading) {
    const progress = typeof m.load_progress === "number" ? Math.max(0, Math.min(1, m.load_progress)) : null;
    const took = formatDuration(elapsed(p));
    parts.bar.classList.toggle("indeterminate", progress === null);
    if (progress === null) {
      parts.bar.removeAttribute("aria-valuenow");
      parts.fill.style.width = "";
      setText(parts.loadText, took);
      parts.bar.setAttribute("aria-valuetext", `loading for ${took}`);
    } else {
      const pct = Math.floor(progress * 100);
      parts.bar.setAttribute("aria-valuenow", String(pct));
      parts.bar.setAttribute("aria-valuetext", `${pct}% after ${took}`);
      parts.fill.style.width = `${progress * 100}%`;
      setText(parts.loadText, `${pct}% · ${took}`);
    }
    setTitle(parts.loadText, `loading for ${took}`);
  }
  const rate = typeof m.gen_tokens_per_s === "number" ? m.gen_tokens_per_s : null;
  const showRate = !loading && rate !== null && (phase === "serving" || phase === "idle" || phase === "ready");
  parts.tps.hidden = !showRate;
  parts.tps.classList.toggle("stale", phase !== "serving");
  if (showRate) {
    setText(parts.tps, formatTps(rate));
    const prompt = typeof m.prompt_tokens_per_s === "number" ? ` · prompt ${formatTps(m.prompt_tokens_per_s)}` : "";
    setTitle(parts.tps, `generation ${formatTps(rate)}${prompt}${phase === "serving" ? "" : " (last request)"}`);
  }
  parts.spark.hidden = loading;
}

// --- state, CPU and memory -------------------------------------------------------------------

export function updateWaiting(node, p) {
  const waiting = typeof p.waiting_for === "string" && p.waiting_for ? p.waiting_for : "";
  node.hidden = !waiting;
  setText(node, waiting ? `waiting for ${waiting}` : "");
}

export function updateResources(cpu, mem, gpu, p) {
  const r = p.resources && typeof p.resources === "object" ? p.resources : null;
  setText(cpu.value, r ? formatPercent(r.cpu_percent) : "–");
  setTitle(cpu.node, r ? `${formatPercent(r.cpu_percent)} of one core, summed over its process tree · ${formatDuration(r.cpu_seconds_total)} of CPU this run` : "");
  setText(mem.value, r ? formatBytes(r.rss_bytes) : "–");
  const gpus = r && r.gpu_memory_bytes && typeof r.gpu_memory_bytes === "object" ? Object.entries(r.gpu_memory_bytes) : [];
  const gpuTotal = gpus.reduce((a, [, v]) => a + (Number(v) || 0), 0);
  gpu.hidden = !gpus.length;
  setText(gpu, gpus.length ? `GPU ${formatBytes(gpuTotal)}` : "");
  setTitle(gpu, gpus.map(([i, v]) => `GPU ${i}: ${formatBytes(Number(v))}`).join(" · "));
  setTitle(mem.node, r ? `resident memory ${formatBytes(r.rss_bytes)} · ${formatCount(r.threads)} threads · ${formatCount(r.open_fds)} open files` : "");
}

// --- why it died -------------------------------------------------------------------------------

/** The viewer's address for the records of one run: from its first seq to its last. */
export function runHistoryUrl(name, exit) {
  const params = new URLSearchParams({ process: name });
  if (Number.isInteger(exit.first_seq)) params.set("after", String(Math.max(0, exit.first_seq - 1)));
  if (Number.isInteger(exit.last_seq)) params.set("until", String(exit.last_seq));
  return `/logs.html?${params}`;
}

export function buildExitRow(name, colspan) {
  const reason = el("span", { class: "exit-reason" });
  const when = el("span", { class: "exit-when muted" });
  const link = el("a", { class: "exit-link" });
  const errors = el("ol", { class: "exit-errors" });
  const panel = el("div", { class: "exit-panel", role: "group", "aria-label": `Why ${name} died` },
    el("div", { class: "exit-head" }, el("b", { class: "exit-title", text: "Why it died:" }), reason, when, link), errors);
  const td = el("td", { colspan });
  td.append(panel);
  const tr = el("tr", { class: "exit-row", dataset: { exitFor: name } }, td);
  return { tr, td, reason, when, link, errors, key: "" };
}

/** True when the process's last failed run should be explained (it does not run now). */
export function showsExit(p) {
  return Boolean(p.last_exit && typeof p.last_exit === "object" && ENDED.has(p.state));
}

export function updateExitRow(row, p, colspan) {
  const exit = p.last_exit;
  if (String(row.td.colSpan) !== String(colspan)) row.td.colSpan = colspan;
  const key = JSON.stringify(exit);
  if (key === row.key) return;
  row.key = key;
  const code = exit.signal ? exit.signal : exit.exit_code === null || exit.exit_code === undefined ? "" : `exit code ${exit.exit_code}`;
  setText(row.reason, String(exit.reason || code || "it failed"));
  const at = typeof exit.at === "number" ? ` · ended ${new Date(exit.at * 1000).toLocaleTimeString()}` : "";
  setText(row.when, `run ${exit.run ?? "?"}${at}`);
  row.link.href = runHistoryUrl(p.name, exit);
  const range = Number.isInteger(exit.first_seq) && Number.isInteger(exit.last_seq) ? ` (seq ${exit.first_seq}–${exit.last_seq})` : "";
  setText(row.link, `History of run ${exit.run ?? ""}${range} →`);
  const lines = Array.isArray(exit.last_errors) ? exit.last_errors : [];
  row.errors.hidden = !lines.length;
  row.errors.replaceChildren(...lines.map((text) => el("li", { text: stripAnsi(String(text)) })));
}
