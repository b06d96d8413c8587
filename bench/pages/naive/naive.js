// The naive baseline of bench/browser.py: a naive log page (a <pre>, `textContent +=` per
// line, auto-scroll to the bottom), reading logcast's SSE stream; `mode=div` appends one
// <div> per line instead (`--naive div`); `mode=floor` only parses each event and draws
// nothing (the cost of one EventSource message plus JSON.parse per line, a floor for any page
// on this stream). The bench's bookkeeping is a few integer operations per line and a console
// message every 250 ms at most (read by the bench even while the page is busy).
const params = new URLSearchParams(location.search);
const output = document.getElementById("log-output");
const status = document.getElementById("status");
const autoScroll = document.getElementById("autoscroll");
const expectLast = Number.parseInt(params.get("last") || "-1", 10);
const mode = params.get("mode") || "pre";
const state = { open: false, errors: 0, lines: 0, first: -1, last: -1, order: 0, lastAt: null, shownAt: null };
let reported = 0;
const report = () => {
  reported = performance.now();
  console.debug("__naive " + JSON.stringify(state));
};
const url = `/api/processes/${encodeURIComponent(params.get("process"))}/logs/stream?lines=${params.get("lines") || "0"}`;
const source = new EventSource(url);
window.__naive = { state, report, stop: () => source.close() };

source.onopen = () => {
  state.open = true;
  status.textContent = "connected";
  report();
};
source.onerror = () => {
  state.errors += 1;
  status.textContent = "disconnected";
  report();
};
source.onmessage = (event) => {
  const data = JSON.parse(event.data);
  if (data.type !== "historical" && data.type !== "realtime") return;
  const line = data.log.message;
  if (mode === "div") {
    const row = document.createElement("div");
    row.textContent = line;
    output.append(row);
  } else if (mode === "pre") {
    output.textContent += line + "\n";
  }
  if (mode !== "floor" && autoScroll.checked) output.scrollTop = output.scrollHeight;
  // bench bookkeeping
  const n = Number.parseInt(line.slice(0, 9), 10);
  if (state.last >= 0 && n !== state.last + 1) state.order += 1;
  if (state.first < 0) state.first = n;
  state.last = n;
  state.lines += 1;
  if (n === expectLast && state.lastAt === null) {
    state.lastAt = performance.now();
    requestAnimationFrame(() => {
      state.shownAt = performance.now();
      report();
    });
  }
  if (performance.now() - reported >= 250) report();
};
