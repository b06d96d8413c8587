// Small DOM and formatting helpers shared by every page.
//
// Nothing here ever parses HTML: elements are built with createElement and text
// goes in through textContent, so log text can never become markup (invariant 6).

/** Build an element: el("button", {class: "btn", type: "button", onclick: f}, "Start"). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** "13:04:05.123" in local time or UTC ("…Z"). */
export function formatClock(ts, utc = false) {
  const d = new Date(ts * 1000);
  if (utc) {
    return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}Z`;
  }
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** "2026-11-22 13:04:05.123" (local) or ISO 8601 UTC. */
export function formatDateTime(ts, utc = false) {
  const d = new Date(ts * 1000);
  if (utc) return d.toISOString();
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${formatClock(ts)}`;
}

/** Value for <input type="datetime-local" step="1">. */
export function toDateTimeLocal(ts, utc = false) {
  const d = new Date(ts * 1000);
  if (utc) return d.toISOString().slice(0, 19);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Parse a datetime-local value as local time or UTC → Unix seconds, or NaN. */
export function fromDateTimeLocal(value, utc = false) {
  if (!value) return NaN;
  const ms = utc ? Date.parse(value.length === 16 ? `${value}:00Z` : `${value}Z`) : new Date(value).getTime();
  return ms / 1000;
}

/** "3d 4h", "2h 05m", "4m 09s", "12s". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${pad(m)}m`;
  if (m) return `${m}m ${pad(sec)}s`;
  return `${sec}s`;
}

export function formatCount(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  return Math.round(n).toLocaleString("en-US");
}

export function formatRate(r) {
  if (r === null || r === undefined || !Number.isFinite(r)) return "–";
  if (r === 0) return "0";
  if (r < 10) return r.toFixed(1);
  return formatCount(r);
}

export function debounce(fn, ms) {
  let timer = 0;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** True when a key press belongs to a text field (shortcuts must not fire then). */
export function isTyping(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag === "INPUT") {
    const type = (target.getAttribute("type") || "text").toLowerCase();
    return !["checkbox", "radio", "button", "submit", "reset", "range", "color"].includes(type);
  }
  return false;
}

/** True for elements where Space/Enter already mean something (buttons, links, inputs). */
export function isInteractive(target) {
  if (!(target instanceof Element)) return false;
  return isTyping(target) || Boolean(target.closest("button, a[href], input, select, textarea, summary, [role=button]"));
}

/** Copy text to the clipboard; falls back to a hidden textarea and execCommand on plain HTTP. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the legacy path (permission denied, document not focused…)
    }
  }
  const area = el("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** A transient message in the corner; errors stay until dismissed or 8 s. */
export function toast(message, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = el("div", { id: "toasts", class: "toasts", "aria-live": "polite" });
    document.body.append(box);
  }
  const close = el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
  const item = el("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
    el("span", { class: "toast-text", text: message }), close);
  const remove = () => item.remove();
  close.addEventListener("click", remove);
  box.append(item);
  setTimeout(remove, kind === "error" ? 8000 : 4000);
  while (box.children.length > 5) box.firstElementChild.remove();
  return item;
}

/** Stable colour slot (0–7) for a process name, by its index in the configured list. */
export function colourSlot(index) {
  return ((index % 8) + 8) % 8;
}

/** Ask a yes/no question in a modal <dialog>; resolves true on confirm. */
export function confirmDialog({ title, message, confirm = "OK", danger = false }) {
  return new Promise((resolve) => {
    const ok = el("button", { type: "button", class: danger ? "btn btn-danger" : "btn btn-primary" }, confirm);
    const cancel = el("button", { type: "button", class: "btn" }, "Cancel");
    const dialog = el("dialog", { class: "dialog", "aria-labelledby": "dialog-title" },
      el("h2", { id: "dialog-title", text: title }),
      el("p", { text: message }),
      el("div", { class: "dialog-actions" }, cancel, ok));
    const finish = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    ok.addEventListener("click", () => finish(true));
    cancel.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
