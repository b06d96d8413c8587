// Sparklines: a tiny uPlot chart per figure (no axes, no legend, no cursor), drawn only
// while it is on screen, so that a dashboard of fifty processes redraws a dozen charts on
// a poll rather than two hundred and fifty.

// uPlot is vendored (static/vendor/) and loaded by the page as a classic script before its
// modules: the global `uPlot`. Without it the sparklines keep their titles and draw nothing.
const uPlot = globalThis.uPlot || null;

/** Seconds of history a sparkline spans (the server keeps 15 minutes of samples). */
export const WINDOW_S = 15 * 60;
const WIDTH = 64;
const MIN_SPAN_S = 60; // a page opened on a young server still shows a minute, not a smear
const HEIGHT = 18;

const byNode = new WeakMap(); // host element → Sparkline
const observer = typeof IntersectionObserver === "function"
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const spark = byNode.get(entry.target);
      if (spark) spark.setVisible(entry.isIntersecting);
    }
  }, { rootMargin: "200px 0px" })
  : null;

function peak(values) {
  let max = null;
  for (const v of values) if (v !== null && v !== undefined && (max === null || v > max)) max = v;
  return max;
}

function last(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

export class Sparkline {
  /**
   * @param {{label: string, color: string, format: (v: number) => string, bars?: boolean,
   *          floor?: number, sum?: boolean, tight?: boolean, width?: number}} options
   *   floor: the least top of the y scale (so that noise near zero stays flat); sum: the
   *   title gives the total over the window instead of the peak (errors per interval);
   *   tight: the y scale hugs the values instead of starting at zero (memory, where the
   *   changes matter more than the level)
   */
  constructor({ label, color, format, bars = false, floor = 1, sum = false, tight = false, width = WIDTH }) {
    this.tight = tight;
    this.width = width;
    this.label = label;
    this.color = color;
    this.format = format;
    this.bars = bars;
    this.floor = floor;
    this.sum = sum;
    this.data = null;
    this.start = 0;
    this.end = 0;
    this.plot = null;
    this.dirty = false;
    this.visible = !observer; // without an observer: always drawn
    this.node = document.createElement("span");
    this.node.className = "spark";
    this.node.setAttribute("role", "img");
    this.node.setAttribute("aria-label", `${label}: no samples yet`);
    byNode.set(this.node, this);
    if (observer) observer.observe(this.node);
  }

  /**
   * Show `values` at times `t` (unix s, ascending) from `start` to `end`: the same span for
   * every sparkline on the page (the samples held, at most WINDOW_S), so that they line up.
   */
  set(t, values, start, end) {
    this.data = [t, values];
    this.end = end;
    this.start = Math.min(end - MIN_SPAN_S, Math.max(start, end - WINDOW_S));
    this.dirty = true;
    const now = last(values);
    let summary;
    if (this.sum) {
      const total = values.reduce((a, v) => a + (v || 0), 0);
      summary = `${this.format(total)} in the last ${this.span()}`;
    } else {
      const top = peak(values);
      summary = `now ${now === null ? "–" : this.format(now)} · peak ${top === null ? "–" : this.format(top)} over ${this.span()}`;
    }
    const text = `${this.label}: ${summary}`;
    if (this.node.title !== text) {
      this.node.title = text;
      this.node.setAttribute("aria-label", text);
    }
    if (this.visible) this.draw();
  }

  span() {
    return `${Math.max(1, Math.round((this.end - this.start) / 60))} min`;
  }

  setVisible(on) {
    this.visible = on;
    if (on && this.dirty) this.draw();
  }

  draw() {
    if (!this.data || !uPlot) return;
    this.dirty = false;
    if (this.plot) {
      this.plot.setData(this.data);
      return;
    }
    const floor = this.floor;
    const yRange = this.tight
      ? (_u, lo, hi) => {
        if (lo === null || hi === null) return [0, floor];
        const pad = Math.max((hi - lo) * 0.15, hi * 0.02, floor * 0.5);
        return [Math.max(0, lo - pad), hi + pad];
      }
      : (_u, _lo, hi) => [0, Math.max(floor, (hi || 0) * 1.1)];
    this.plot = new uPlot({
      width: this.width,
      height: HEIGHT,
      padding: [2, 1, 1, 1],
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      scales: {
        x: { time: false, range: () => [this.start, this.end] },
        y: { range: yRange },
      },
      axes: [{ show: false }, { show: false }],
      series: [
        {},
        {
          stroke: this.color,
          width: 1.25,
          fill: this.tight ? undefined : `${this.color}33`,
          points: { show: false },
          spanGaps: false,
          paths: this.bars ? uPlot.paths.bars({ size: [1, 3, 1], align: 1 }) : undefined,
        },
      ],
    }, this.data, this.node);
  }

  destroy() {
    if (observer) observer.unobserve(this.node);
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }

  /** True once uPlot has drawn it (tests). */
  get drawn() {
    return Boolean(this.plot);
  }
}
