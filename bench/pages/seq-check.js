// Evaluated by bench/browser.py in the logcast viewer after the live phase (debug=1): are
// the seqs it holds contiguous, and did it draw any gap row?
(() => {
  const s = window.__logcast.seqs();
  let bad = 0;
  for (let i = 1; i < s.length; i++) if (s[i] !== s[i - 1] + 1) bad += 1;
  const gaps = window.__logcast.entries().filter((e) => e.kind === "gap").length;
  return { seqs: s.length, bad, gaps };
})()
