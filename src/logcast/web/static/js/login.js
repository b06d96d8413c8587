// /login.html?next=/path — trade the token for an HttpOnly session cookie, then go back.

import { api, ApiError, getSession, safeNext } from "./api.js";
import { $ } from "./dom.js";

const next = safeNext(new URLSearchParams(location.search).get("next") || "/");

async function start() {
  try {
    const session = await getSession();
    if (session && (!session.auth_required || session.authenticated)) {
      location.replace(next);
      return;
    }
  } catch {
    // show the form anyway
  }
  const form = $("#login-form");
  const input = $("#token");
  const error = $("#login-error");
  const submit = $("#login-submit");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const token = input.value.trim();
    if (!token) {
      error.textContent = "Enter the token.";
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await api("/api/login", { method: "POST", body: { token }, redirectOn401: false });
      location.replace(next);
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? "Wrong token." : `Login failed: ${err.message}`;
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
}

start();
