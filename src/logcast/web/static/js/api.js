// The pages' one door to the REST API, so that every call treats login and errors alike.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

/** Where we are, as a `next=` value the login page accepts (a same-origin path). */
export function herePath() {
  return location.pathname + location.search + location.hash;
}

export function goToLogin() {
  if (location.pathname === "/login.html") return;
  location.assign(`/login.html?next=${encodeURIComponent(herePath())}`);
}

/** A `next` parameter is followed only when it is a path on this origin. */
export function safeNext(value) {
  if (typeof value !== "string" || !value.startsWith("/")) return "/";
  // As the browser will read it: its URL parser drops tabs and newlines, so that
  // "/\t/evil.example" is "//evil.example", another origin. Only a path of this one is kept.
  let url;
  try {
    url = new URL(value, window.location.origin);
  } catch {
    return "/";
  }
  if (url.origin !== window.location.origin) return "/";
  // "/..//evil.example" resolves to the path "//evil.example": another origin once followed
  const path = `${url.pathname}${url.search}${url.hash}`;
  if (path.startsWith("//") || new URL(path, window.location.origin).origin !== window.location.origin) return "/";
  return path;
}

/**
 * Same-origin cookies, JSON in and out; a 401 sends the browser to the login page (and back
 * here afterwards), and any other failure raises an `ApiError` carrying the server's
 * `detail`, ready for a toast.
 */
export async function api(path, { method = "GET", body, signal, redirectOn401 = true } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "cannot reach the logcast server");
  }
  if (response.status === 401 && redirectOn401) {
    goToLogin();
    throw new ApiError(401, "login required");
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    let detail = data && data.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    else if (detail && typeof detail !== "string") detail = JSON.stringify(detail);
    throw new ApiError(response.status, detail || (data && data.message) || `${response.status} ${response.statusText}`);
  }
  return data;
}

export const enc = encodeURIComponent;

export const listProcesses = (options) => api("/api/processes", options).then((d) => d.processes);
/** `[{host, alive, last_seen, processes}]`: one host on a single machine, one per agent on several. */
export const listHosts = (options) => api("/api/hosts", options).then((d) => d.hosts);
export const getProcess = (name) => api(`/api/processes/${enc(name)}`);
export const control = (name, action) => api(`/api/processes/${enc(name)}/${action}`, { method: "POST" });

/**
 * Why the run a start or restart just made has already failed (a command not found, a crash
 * at once), from the process the server answered with; null while it runs, waits for a
 * dependency or exited 0. The server did what it was asked, so the answer is 200 either way.
 */
export function failedAtOnce(action, p) {
  if ((action !== "start" && action !== "restart") || !p || p.waiting_for) return null;
  const last = p.last_exit;
  if (!last || last.run !== p.run) return null;
  return p.state === "crashed" || p.state === "backoff" ? last.reason || p.last_error || p.state : null;
}
export const getSession = () => api("/api/session", { redirectOn401: false });
