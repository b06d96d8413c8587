// What a page tells or asks the user outside its own layout: a toast in the corner and a
// yes/no confirmation in a modal dialog, both built from nodes (text never parsed as HTML).

import { el } from "./dom.js";

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
