// The helpers that used to live here, re-exported for code that loads this path
// (tests/e2e/test_dashboard_units.py); pages import dom, format, clipboard, feedback directly.

export { $, $$, el, isInteractive, isTyping } from "./dom.js";
export { debounce } from "./debounce.js";
export { copyText } from "./clipboard.js";
export { confirmDialog, toast } from "./feedback.js";
export {
  formatClock, formatCount, formatDateTime, formatDuration, formatRate, fromDateTimeLocal, toDateTimeLocal,
} from "./format.js";
