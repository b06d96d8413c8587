// Added by bench/browser.py to every page through DevTools before any page script (the
// page's CSP does not apply to it); `__WATCH__` is replaced by a JSON string or null. Frame
// times and long tasks leave the page as console messages (about two a second), so the bench
// can read them even while the page's main thread is stuck in a long task. With a `watch`
// prefix it also checks, once per frame, whether a visible row of the logcast viewer starts
// with it and lies inside the scroller, and says when (with the first row and the end of
// history) in a console message; then, once the viewer says the history it asked for is all in
// (`stats().filled`: it shows the last lines first and fills in older pages before them), it
// says so too (`filled`).
(() => {
  const watch = __WATCH__;
  const marks = {};
  let frames = [];
  let lastFlush = 0;
  let done = watch === null;
  const flush = () => {
    if (frames.length) console.debug("__bench frames " + JSON.stringify(frames));
    frames = [];
  };
  let shown = false;
  const check = (now) => {
    const lc = window.__logcast;
    if (shown) {
      if (lc && lc.stats().filled) {
        marks.filled = now;
        done = true;
        console.debug("__bench shown " + JSON.stringify(marks));
      }
      return;
    }
    const msgs = document.querySelectorAll("#log .row:not([hidden]) .msg");
    if (msgs.length && marks.firstRow === undefined) marks.firstRow = now;
    if (lc && marks.historyDone === undefined && lc.stats().historyDone) marks.historyDone = now;
    for (let i = msgs.length - 1; i >= 0; i--) {
      if (!msgs[i].textContent.startsWith(watch)) continue;
      const r = msgs[i].getBoundingClientRect();
      const s = document.getElementById("log").getBoundingClientRect();
      if (r.bottom <= s.bottom + 1 && r.top >= s.top - 1) {
        marks.lastShown = now;
        shown = true;
        if (lc && lc.stats().filled === false) {
          console.debug("__bench shown " + JSON.stringify(marks)); // and again once filled
        } else {
          if (lc && lc.stats().filled) marks.filled = now;
          done = true;
          console.debug("__bench shown " + JSON.stringify(marks));
        }
      }
      return;
    }
  };
  const tick = (t) => {
    frames.push(t);
    if (!done) check(performance.now());
    if (t - lastFlush >= 500) {
      lastFlush = t;
      flush();
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  let observing = false;
  try {
    new PerformanceObserver((list) => {
      const tasks = list.getEntries().map((e) => [e.startTime, e.duration]);
      console.debug("__bench longtasks " + JSON.stringify(tasks));
    }).observe({ type: "longtask", buffered: true });
    observing = true;
  } catch {
    // no Long Tasks API: reported as such
  }
  window.__bench = { observing, flush, marks };
  console.debug("__bench init " + JSON.stringify({ observing, origin: performance.timeOrigin, url: location.href }));
})();
