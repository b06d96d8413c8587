// The shared top bar: marks the current page and offers "Log out" when a token is in use.

import { api, getSession } from "./api.js";
import { $, $$, el } from "./dom.js";

export function initNav(section) {
  for (const link of $$(".nav-item")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
  }
  const slot = $("#session-slot");
  if (!slot) return;
  getSession().then((session) => {
    if (!session || !session.auth_required || !session.authenticated) return;
    const button = el("button", { type: "button", class: "btn btn-ghost btn-small" }, "Log out");
    button.addEventListener("click", async () => {
      try {
        await api("/api/logout", { method: "POST", redirectOn401: false });
      } finally {
        location.assign("/login.html");
      }
    });
    slot.replaceChildren(button);
  }).catch(() => {});
}
