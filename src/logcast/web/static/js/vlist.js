// A virtual list, so that millions of log rows cost only a few hundred DOM nodes: just the
// visible rows (and a margin) exist, pooled and refilled as the list scrolls.

const MAX_PX = 8_000_000;
const MARGIN = 15;

function visibleWidth(entry) {
  const text = entry.kind === "line" ? entry.text : entry.kind === "gap" ? "0000000000000000000000000000000000000" : entry.text || "";
  let w = 4; // icons, badges
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x1b) {
      // skip an escape sequence roughly (to its final byte)
      while (i + 1 < text.length && !/[@-~]/.test(text[i + 1]) && i < text.length) i += 1;
      i += 1;
    } else if (c === 9) w += 8 - (w % 8);
    else if (c < 32) continue;
    else if (c >= 0xd800 && c <= 0xdbff) {
      w += 2;
      i += 1;
    } else if ((c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0xa4cf) || (c >= 0xac00 && c <= 0xd7a3)
      || (c >= 0xf900 && c <= 0xfaff) || (c >= 0xfe30 && c <= 0xfe4f) || (c >= 0xff00 && c <= 0xff60)
      || (c >= 0xffe0 && c <= 0xffe6)) w += 2;
    else w += 1;
  }
  return w;
}

/**
 * The scroller holds a sizer as tall as all rows together and, inside it, one absolutely
 * positioned window with a small pool of row elements (what is visible plus MARGIN rows
 * either side). Scrolling only moves the window and refills the pooled rows whose entry
 * changed.
 *
 * Heights: without wrap every row is exactly one line (`--row-h`), so row i starts at
 * i × rowH. With wrap a row's height is estimated from its visible width and the width of
 * the message column (wide CJK characters count twice, tabs eight) and kept in a lazily
 * rebuilt prefix-sum array; an estimate that is off only shifts what is shown a little,
 * and while following the tail the window is anchored to the bottom so the newest line is
 * always fully visible. Browsers cap an element's height (~17 M px in Firefox), so past
 * MAX_PX the sizer is scaled and scroll positions are mapped linearly.
 *
 * Follow: the list sticks to the bottom while `follow` is on. A scroll the user makes
 * (wheel, keys, scrollbar, touch) that leaves the bottom turns it off; scrolling back to
 * the bottom turns it on again. Programmatic scrolls are told apart by remembering the
 * position we set.
 */
export class VirtualList {
  /**
   * @param {HTMLElement} scroller  an element with overflow: auto and a fixed height
   * @param {{renderRow: (row: HTMLElement, entry: object) => void, onFollow?: (on: boolean) => void,
   *          onRender?: () => void}} options
   */
  constructor(scroller, { renderRow, onFollow = () => {}, onRender = () => {} }) {
    this.scroller = scroller;
    this.renderRow = renderRow;
    this.onFollow = onFollow;
    this.onRender = onRender;
    this.items = [];
    this.follow = true;
    this.wrap = false;
    this.generation = 0; // bumped to redraw every visible row (highlight, time format…)
    this.pool = [];
    this.raf = 0;
    this.programmaticTop = null; // the scrollTop we set ourselves, to tell it from the user's
    this.pendingShift = 0;
    this.pendingIndex = null;
    this.rowTops = new Float64Array(1024); // with wrap: prefix sums of row heights
    this.rowTopsValid = 0; // how many of them are up to date
    this.cols = 120;
    this.sizerH = -1;
    this.range = [0, 0];
    this.ratio = 1; // virtual px per scroller px at the last render (1 below MAX_PX)
    this.beforeRender = null;

    this.sizer = document.createElement("div");
    this.sizer.className = "vl-sizer";
    this.rowWindow = document.createElement("div");
    this.rowWindow.className = "vl-window";
    this.sizer.append(this.rowWindow);
    scroller.append(this.sizer);
    this._measure();

    scroller.addEventListener("scroll", () => this._onScroll(), { passive: true });
    scroller.addEventListener("wheel", (e) => {
      // over a list too short to scroll nothing moves: following stays on
      if (e.deltaY < 0 && this.follow && scroller.scrollHeight > scroller.clientHeight) this.setFollow(false);
    }, { passive: true });
    scroller.addEventListener("touchmove", () => {
      if (this.follow) this.setFollow(false);
    }, { passive: true });
    scroller.addEventListener("keydown", (e) => {
      if (["ArrowUp", "PageUp"].includes(e.key) && this.follow) this.setFollow(false);
    });
    new ResizeObserver(() => {
      this._measure();
      this.rowTopsValid = 0;
      this.schedule();
    }).observe(scroller);
  }

  _measure() {
    const probe = document.createElement("div");
    probe.className = "row k-line vl-probe";
    const msg = document.createElement("span");
    msg.className = "msg";
    msg.textContent = "0".repeat(100);
    probe.append(msg);
    this.rowWindow.append(probe);
    this.rowH = Math.max(8, probe.getBoundingClientRect().height || 18);
    const charW = msg.getBoundingClientRect().width / 100 || 8;
    probe.remove();
    const rowWithMsg = this.pool.find((row) => !row.hidden && row.querySelector(".msg"));
    const msgW = rowWithMsg ? rowWithMsg.querySelector(".msg").clientWidth : this.scroller.clientWidth - 14 * charW;
    this.cols = Math.max(10, Math.floor(msgW / charW));
  }

  setItems(items) {
    this.items = items;
    this.rowTopsValid = 0;
    this.schedule();
  }

  /** Apply a model change report ({removedFront, addedFront, addedBack, updated, reset}). */
  apply(change, items = this.items) {
    const before = this.items;
    this.items = items;
    if (change.reset || before !== items) {
      this.rowTopsValid = 0;
    } else {
      let shift = 0;
      if (change.removedFront) {
        shift -= this.wrap && this.rowTopsValid >= change.removedFront ? this.rowTops[change.removedFront] : change.removedFront * this.rowH;
        this.rowTopsValid = 0;
      }
      if (change.addedFront) {
        let h = 0;
        for (let i = 0; i < change.addedFront && i < items.length; i++) h += this._height(items[i]);
        shift += h;
        this.rowTopsValid = 0;
      }
      if (change.updated && this.wrap) this.rowTopsValid = 0;
      if (shift && !this.follow) this.pendingShift += shift;
    }
    if (change.reset || change.removedFront || change.addedFront || change.addedBack || change.updated) this.schedule();
  }

  setWrap(wrap) {
    if (wrap === this.wrap) return;
    const anchor = this.follow ? null : this.range[0];
    this.wrap = wrap;
    this.scroller.classList.toggle("wrap", wrap);
    this._measure();
    this.rowTopsValid = 0;
    this.generation += 1;
    if (anchor !== null) this.pendingIndex = { index: anchor, align: "top" };
    this.schedule();
  }

  /** Measure row height and column width again (fonts, time column or width changed). */
  remeasure() {
    this._measure();
    this.rowTopsValid = 0;
    this.generation += 1;
    this.schedule();
  }

  /** Re-render every visible row (highlight, time format or selection changed). */
  refresh() {
    this.generation += 1;
    this.schedule();
  }

  setFollow(on) {
    if (this.follow === on) return;
    this.follow = on;
    this.onFollow(on);
    if (on) this.schedule();
  }

  toBottom() {
    this.pendingIndex = null;
    this.setFollow(true);
    this.schedule();
  }

  toTop() {
    this.setFollow(false);
    this.scrollToIndex(0, "top");
  }

  scrollToIndex(index, align = "center") {
    this.setFollow(false);
    this.pendingIndex = { index, align };
    this.schedule();
  }

  schedule() {
    if (this.raf) return;
    this.raf = requestAnimationFrame(() => this.render());
  }

  /** Entry shown by a row element (for clicks), or null. */
  entryOf(node) {
    const row = node instanceof Element ? node.closest(".row") : null;
    return row && row._entry ? row._entry : null;
  }

  // --- geometry ------------------------------------------------------------------------

  _height(entry) {
    if (!this.wrap) return this.rowH;
    if (entry._widthVer !== entry.ver || entry._width === undefined) {
      entry._width = visibleWidth(entry);
      entry._widthVer = entry.ver;
    }
    return this.rowH * Math.max(1, Math.ceil(entry._width / this.cols));
  }

  _ensureOffs(n) {
    if (this.rowTops.length < n + 1) {
      const grown = new Float64Array(Math.max(n + 1, this.rowTops.length * 2));
      grown.set(this.rowTops.subarray(0, this.rowTopsValid + 1));
      this.rowTops = grown;
    }
    const rowTops = this.rowTops;
    const items = this.items;
    rowTops[0] = 0;
    for (let i = this.rowTopsValid; i < n; i++) rowTops[i + 1] = rowTops[i] + this._height(items[i]);
    this.rowTopsValid = n;
  }

  _top(i) {
    return this.wrap ? this.rowTops[i] : i * this.rowH;
  }

  _indexAt(v) {
    const n = this.items.length;
    if (n === 0) return 0;
    if (!this.wrap) return Math.max(0, Math.min(n - 1, Math.floor(v / this.rowH)));
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.rowTops[mid] <= v) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  _setTop(top) {
    this.scroller.scrollTop = top;
    this.programmaticTop = this.scroller.scrollTop;
  }

  _onScroll() {
    const scrollTop = this.scroller.scrollTop;
    if (this.programmaticTop !== null && Math.abs(scrollTop - this.programmaticTop) < 2) {
      this.programmaticTop = null;
    } else {
      this.programmaticTop = null;
      const atBottom = scrollTop + this.scroller.clientHeight >= this.scroller.scrollHeight - Math.max(4, this.rowH / 2);
      if (atBottom !== this.follow) this.setFollow(atBottom);
    }
    this.schedule();
  }

  // --- drawing -------------------------------------------------------------------------

  render() {
    this.raf = -1; // a schedule() from beforeRender must not queue another frame
    if (this.beforeRender) this.beforeRender();
    this.raf = 0;
    const items = this.items;
    const n = items.length;
    if (this.wrap) this._ensureOffs(n);
    const viewportH = this.scroller.clientHeight;
    const total = this.wrap ? this.rowTops[n] : n * this.rowH;
    const sizerH = Math.min(total, MAX_PX);
    if (sizerH !== this.sizerH) {
      this.sizer.style.height = `${sizerH}px`;
      this.sizerH = sizerH;
    }
    const ratio = sizerH > viewportH && total > viewportH ? (total - viewportH) / (sizerH - viewportH) : 1;

    if (this.follow) {
      this.pendingIndex = null;
      this.pendingShift = 0;
      if (Math.abs(this.scroller.scrollTop - Math.max(0, sizerH - viewportH)) >= 1) this._setTop(Math.max(0, sizerH - viewportH));
    } else if (this.pendingIndex) {
      const { index, align } = this.pendingIndex;
      this.pendingIndex = null;
      this.pendingShift = 0;
      const i = Math.max(0, Math.min(n - 1, index));
      const rowTop = n ? this._top(i) : 0;
      const target = align === "top" ? rowTop : rowTop - viewportH / 2 + this.rowH / 2;
      this._setTop(Math.max(0, target) / ratio);
    } else if (this.pendingShift) {
      // the rows the user sees were at scrollTop × the last ratio: keep them there (past
      // MAX_PX the ratio changes with every row added)
      this._setTop((this.scroller.scrollTop * this.ratio + this.pendingShift) / ratio);
      this.pendingShift = 0;
    }
    this.ratio = ratio;

    const scrollTop = this.scroller.scrollTop;
    const vTop = scrollTop * ratio;
    const first = this._indexAt(vTop);
    const last = this._indexAt(vTop + viewportH);
    const start = Math.max(0, first - MARGIN);
    const end = n === 0 ? 0 : Math.min(n, last + 1 + MARGIN);
    this.range = [first, Math.min(n - 1, last)];

    const count = end - start;
    while (this.pool.length < count) {
      const row = document.createElement("div");
      row.className = "row";
      row.hidden = true;
      this.rowWindow.append(row);
      this.pool.push(row);
    }
    for (let k = 0; k < count; k++) {
      const row = this.pool[k];
      const entry = items[start + k];
      if (row._entry !== entry || row._ver !== entry.ver || row._generation !== this.generation) {
        this.renderRow(row, entry);
        row._entry = entry;
        row._ver = entry.ver;
        row._generation = this.generation;
      }
      if (row.hidden) row.hidden = false;
    }
    for (let k = count; k < this.pool.length; k++) {
      const row = this.pool[k];
      if (!row.hidden) {
        row.hidden = true;
        row._entry = null;
      }
    }

    let winTop = n ? scrollTop + (this._top(start) - vTop) : 0;
    if (this.wrap && this.follow && end === n && n) {
      const wh = this.rowWindow.offsetHeight;
      winTop = Math.max(0, sizerH - wh);
      if (wh > sizerH) this.sizer.style.height = `${wh}px`;
    }
    this.rowWindow.style.transform = `translateY(${Math.round(winTop)}px)`;
    this.onRender();
  }
}
