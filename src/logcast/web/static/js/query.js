// The page's query string read as settings and kept in step with what the user chooses, so
// that a copied address opens the same view.

/** An integer parameter clamped to [lo, hi]; `fallback` when absent or not a number. */
export function intParam(params, name, fallback, lo, hi) {
  const n = Number.parseInt(params.get(name) ?? "", 10);
  return Number.isFinite(n) ? Math.max(lo, Math.min(hi, n)) : fallback;
}

/** Set each parameter (removed when empty) in the address, without a new history entry. */
export function replaceQuery(values) {
  const next = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(values)) {
    if (value) next.set(key, value);
    else next.delete(key);
  }
  const url = `${location.pathname}?${next}`;
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}
