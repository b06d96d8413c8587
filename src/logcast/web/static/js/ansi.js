// ANSI escape codes → styled text segments, so that a log line keeps its colours but can
// neither run script nor repaint the screen.

// Any control character but tab, and the bidirectional embeddings, overrides and
// isolates, which would show the line's characters in another order than they were
// written ("Trojan Source").
const CONTROLS = "[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069]";

// One token: CSI (7-bit or C1), OSC, DCS/SOS/PM/APC strings, other ESC sequences, bare controls.
const TOKEN = new RegExp(
  [
    "\\x1b\\[([0-?]*)[ -/]*([@-~])", // CSI … final; group 1 params, group 2 final byte
    "\\x9b([0-?]*)[ -/]*([@-~])", // C1 CSI; groups 3, 4
    "(?:\\x1b\\]|\\x9d)[^\\x07\\x1b\\x9c]*(?:\\x07|\\x1b\\\\|\\x9c)?", // OSC … BEL/ST
    "(?:\\x1b[PX^_]|[\\x90\\x98\\x9e\\x9f])[^\\x1b\\x9c]*(?:\\x1b\\\\|\\x9c)?", // DCS/SOS/PM/APC … ST
    "\\x1b[ -/]*[0-~]?", // other escapes (and a lone ESC)
    // any other control character (tab is kept), the bidirectional controls
    CONTROLS,
  ].join("|"),
  "g",
);
const HAS_CONTROL = new RegExp(CONTROLS);

function fresh() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, strike: false, inverse: false };
}

// 256-colour palette entries 16–255 as CSS colours; 0–15 use the theme's classes.
function xterm256(n) {
  if (n < 16) return { idx: n };
  if (n < 232) {
    const v = n - 16;
    const steps = [0, 95, 135, 175, 215, 255];
    return { rgb: `rgb(${steps[Math.floor(v / 36)]},${steps[Math.floor(v / 6) % 6]},${steps[v % 6]})` };
  }
  const g = 8 + (n - 232) * 10;
  return { rgb: `rgb(${g},${g},${g})` };
}

const clampByte = (s) => Math.max(0, Math.min(255, Number.parseInt(s, 10) || 0));

// Extended colour after 38/48: returns [colour|null, how many params were consumed].
function extended(params, i) {
  const mode = Number(params[i + 1]);
  if (mode === 5 && i + 2 < params.length) {
    const n = Number(params[i + 2]);
    return [Number.isInteger(n) && n >= 0 && n <= 255 ? xterm256(n) : null, 3];
  }
  if (mode === 2 && i + 4 < params.length) {
    const [r, g, b] = params.slice(i + 2, i + 5).map(clampByte);
    return [{ rgb: `rgb(${r},${g},${b})` }, 5];
  }
  return [null, params.length - i]; // malformed: ignore the rest
}

// Colon form ("38:2::255:0:0", "38:5:208", "4:3"): one parameter with sub-parameters.
function colon(state, group) {
  const parts = group.split(":");
  const head = Number(parts[0]);
  if (head === 38 || head === 48) {
    let colour = null;
    if (parts[1] === "5") {
      const n = Number(parts[2]);
      if (Number.isInteger(n) && n >= 0 && n <= 255) colour = xterm256(n);
    } else if (parts[1] === "2") {
      const rgb = parts.slice(-3).map(clampByte);
      colour = { rgb: `rgb(${rgb[0]},${rgb[1]},${rgb[2]})` };
    }
    if (colour) state[head === 38 ? "fg" : "bg"] = colour;
  } else if (head === 4) {
    state.underline = parts[1] !== "0";
  }
}

function applySgr(state, paramText) {
  if (paramText === "") {
    Object.assign(state, fresh());
    return;
  }
  if (!/^[0-9;:]*$/.test(paramText)) return; // private (`?`, `<`…) modes: not colours
  const params = paramText.split(";");
  for (let i = 0; i < params.length; i++) {
    const group = params[i];
    if (group.includes(":")) {
      colon(state, group);
      continue;
    }
    const code = group === "" ? 0 : Number(group);
    if (code === 0) Object.assign(state, fresh());
    else if (code === 1) state.bold = true;
    else if (code === 2) state.dim = true;
    else if (code === 3) state.italic = true;
    else if (code === 4) state.underline = true;
    else if (code === 7) state.inverse = true;
    else if (code === 9) state.strike = true;
    else if (code === 21 || code === 22) { state.bold = false; state.dim = false; }
    else if (code === 23) state.italic = false;
    else if (code === 24) state.underline = false;
    else if (code === 27) state.inverse = false;
    else if (code === 29) state.strike = false;
    else if (code >= 30 && code <= 37) state.fg = { idx: code - 30 };
    else if (code === 39) state.fg = null;
    else if (code >= 40 && code <= 47) state.bg = { idx: code - 40 };
    else if (code === 49) state.bg = null;
    else if (code >= 90 && code <= 97) state.fg = { idx: code - 90 + 8 };
    else if (code >= 100 && code <= 107) state.bg = { idx: code - 100 + 8 };
    else if (code === 38 || code === 48) {
      const [colour, used] = extended(params, i);
      if (colour) state[code === 38 ? "fg" : "bg"] = colour;
      i += used - 1;
    }
    // anything else (blink, fonts, overline…) is ignored
  }
}

function styleOf(state) {
  let fg = state.fg;
  let bg = state.bg;
  const classes = [];
  if (state.inverse) {
    [fg, bg] = [bg, fg];
    if (!fg) classes.push("inv-fg"); // text takes the default background colour
    if (!bg) classes.push("inv-bg"); // background takes the default text colour
  }
  let fgCss = null;
  let bgCss = null;
  if (fg) {
    if (fg.idx !== undefined) classes.push(`fg-${fg.idx}`);
    else fgCss = fg.rgb;
  }
  if (bg) {
    if (bg.idx !== undefined) classes.push(`bg-${bg.idx}`);
    else bgCss = bg.rgb;
  }
  if (state.bold) classes.push("b");
  if (state.dim) classes.push("dim");
  if (state.italic) classes.push("i");
  if (state.underline) classes.push("u");
  if (state.strike) classes.push("s");
  return { cls: classes.join(" "), fg: fgCss, bg: bgCss };
}

/**
 * Split a raw log line into styled text segments `[{text, cls, fg, bg}]`: SGR sequences
 * (`ESC[…m`) become CSS classes (`fg-1`, `b`, `u`…) or, for 256-colour and true-colour codes,
 * a colour string the renderer applies through the CSSOM (`el.style.color`, allowed by the
 * CSP). Every other escape (cursor moves, screen clears, OSC titles and hyperlinks, DCS/APC
 * strings), every other control character except tab, and the bidirectional controls are
 * dropped. The result is only ever put into the page as text nodes.
 */
export function parseAnsi(text) {
  if (!HAS_CONTROL.test(text)) return [{ text, cls: "", fg: null, bg: null }];
  const out = [];
  const state = fresh();
  let style = styleOf(state);
  let last = 0;
  const push = (piece) => {
    if (!piece) return;
    const prev = out[out.length - 1];
    if (prev && prev.cls === style.cls && prev.fg === style.fg && prev.bg === style.bg) prev.text += piece;
    else out.push({ text: piece, ...style });
  };
  TOKEN.lastIndex = 0;
  for (let m = TOKEN.exec(text); m !== null; m = TOKEN.exec(text)) {
    push(text.slice(last, m.index));
    last = TOKEN.lastIndex;
    const params = m[1] !== undefined ? m[1] : m[3];
    const final = m[2] !== undefined ? m[2] : m[4];
    if (final === "m") {
      applySgr(state, params);
      style = styleOf(state);
    }
  }
  push(text.slice(last));
  return out;
}

/** The visible text of a line: escapes and controls removed. */
export function stripAnsi(text) {
  if (!HAS_CONTROL.test(text)) return text;
  TOKEN.lastIndex = 0;
  return text.replace(TOKEN, "");
}
