// Times, durations and counts as the pages show them, and the value of a datetime-local
// input both ways, so every page writes a time or a number the same way.

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

/** "812 B", "4.0 KiB", "1.2 GiB", "512 MiB" (binary units, as `free -h` and nvidia-smi count). */
export function formatBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n) || n < 0) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  return `${value < 100 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** "0.4%", "12%", "250%" (of one core: a busy tree goes past 100). */
export function formatPercent(p) {
  if (p === null || p === undefined || !Number.isFinite(p)) return "–";
  return `${p < 10 && p !== 0 ? p.toFixed(1) : Math.round(p)}%`;
}
