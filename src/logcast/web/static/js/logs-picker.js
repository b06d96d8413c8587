// Choosing a process: the list shown when the URL names none, and the top bar's switcher.

import { ApiError, enc, listProcesses } from "./api.js";
import { el } from "./dom.js";
import { toast } from "./feedback.js";
import { ui } from "./logs-elements.js";
import { showConnection } from "./logs-status.js";

export async function showPicker() {
  ui.picker.hidden = false;
  ui.loading.hidden = true;
  showConnection("disconnected", { reason: "no process chosen" });
  try {
    const processes = await listProcesses();
    ui.pickerList.replaceChildren(...processes.map((p) => el("li", {},
      el("a", { class: "picker-item", href: `/logs.html?process=${enc(p.name)}` },
        el("span", { class: "name", text: p.name }),
        el("span", { class: "host", text: typeof p.host === "string" ? p.host : "" }),
        el("span", { class: "state", dataset: { state: p.state }, text: p.state })))));
    if (!processes.length) ui.pickerList.append(el("li", { class: "muted", text: "No processes are configured." }));
    fillProcessSelect(processes, "");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) toast(`Cannot list processes: ${err.message}`, "error");
  }
}

/**
 * The top bar's process switcher; with no `current`, a "Choose a process…" placeholder first.
 * When the processes run on several hosts, each option names its host too.
 */
export function fillProcessSelect(processes, current) {
  const several = new Set(processes.map((p) => p.host)).size > 1;
  const options = processes.map((p) => el("option", {
    value: p.name, text: several && typeof p.host === "string" ? `${p.name} · ${p.host}` : p.name,
  }));
  if (!current) options.unshift(el("option", { value: "", text: "Choose a process…" }));
  ui.procSelect.replaceChildren(...options);
  ui.procSelect.value = current;
}
