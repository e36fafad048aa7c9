"""Drive the dashboard in headless Chromium: used by the browser tests and the benchmark.

Waiting follows DESIGN.md: a plot is ready when the Bokeh model with its name (and the tags of
the level asked for) exists, its view has finished rendering, and its data source is filled.
Only what a user sees counts: a page the dashboard keeps in the document but hides (a page
built ahead of its first click, or one left for another) has the same plots and tables; such a
page has the class ``sq-page`` and ``opacity: 0`` (`SHOWN_PAGE`, `shown`), and so has a figure kept out of
sight inside a page (`drill_view.FIGURE_AWAY`).
Chromium is the system one (``/usr/bin/chromium`` unless ``SURVEYQA_CHROMIUM`` says otherwise);
nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["CHROMIUM_ARGS", "SHOWN_PAGE", "chromium_path", "launch", "wait_for_plot", "click_polygon", "drag_box", "selected_indices", "wait_idle",
           "shown", "plot_tags", "visible_text"]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: The page shown (the dashboard keeps other pages in the document, transparent: `app._AWAY`).
SHOWN_PAGE = ".sq-page[style*='opacity: 1']"

#: Whether an element is displayed and not inside a page kept hidden (climbing out of shadow roots).
_SHOWN = """const shown = (view) => {
  if (!view || !view.el.isConnected || view.el.getClientRects().length === 0) return false;
  for (let n = view.el; n; n = n.parentNode || n.host) {
    if (n.nodeType === 11) n = n.host;
    if (n.style && n.style.opacity === '0') return false;  // a page or a figure kept out of sight
  }
  return true;
};"""

_PLOT_READY = """([name, tags]) => {
  if (!window.Bokeh || !Bokeh.documents.length) return false;
  """ + _SHOWN + """
  for (const doc of Bokeh.documents) {
    for (const model of doc._all_models.values()) {
      if (model.name !== name) continue;
      const have = model.tags || [];
      if (!tags.every(t => have.includes(t))) continue;
      const view = Bokeh.index.find_one(model);
      if (!shown(view) || !view.has_finished()) continue;
      const renderers = model.renderers || [];
      const filled = renderers.some(r => r.data_source && Object.values(r.data_source.data)
                                       .some(column => column && column.length > 0));
      if (filled) return true;
    }
  }
  return false;
}"""

_TAGS = """(name) => {
  """ + _SHOWN + """
  const out = [];
  for (const doc of (window.Bokeh ? Bokeh.documents : []))
    for (const model of doc._all_models.values())
      if (model.name === name && shown(Bokeh.index.find_one(model))) out.push(model.tags || []);
  return out;
}"""


_POLYGON_CENTRE = """([name, key, value]) => {
  """ + _SHOWN + """
  for (const doc of Bokeh.documents) {
    for (const model of doc._all_models.values()) {
      if (model.name !== name) continue;
      const view = Bokeh.index.find_one(model);
      if (!shown(view)) continue;
      for (const r of model.renderers) {
        const data = r.data_source && r.data_source.data;
        if (!data || !data[key] || !data.xs) continue;
        const i = Array.from(data[key]).indexOf(value);
        if (i < 0) continue;
        const xs = Array.from(data.xs[i]), ys = Array.from(data.ys[i]);
        const x = xs.reduce((a, b) => a + b) / xs.length, y = ys.reduce((a, b) => a + b) / ys.length;
        const canvas = (view.canvas_view || view.canvas).el.getBoundingClientRect();
        return [canvas.left + view.frame.x_scale.compute(x), canvas.top + view.frame.y_scale.compute(y)];
      }
    }
  }
  return null;
}"""


def chromium_path() -> str:
    """The Chromium executable (Debian's by default)."""
    return os.environ.get("SURVEYQA_CHROMIUM", "/usr/bin/chromium")


@contextlib.contextmanager
def launch(width: int = 1400, height: int = 1000) -> Iterator:
    """A Playwright page in headless Chromium, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def wait_for_plot(page, name: str, tags: list[str] = (), timeout: float = 90_000) -> None:
    """Wait until the plot ``name`` carrying all ``tags`` has rendered with data.

    The default wait is long: on 2 cores busy with other work (load 8) the first click of a
    session, queued behind the pages built ahead, was seen to take over 30 s (0.45 s when quiet).
    """
    page.wait_for_function(_PLOT_READY, arg=[name, list(tags)], timeout=timeout, polling=50)


def click_polygon(page, name: str, key: str, value: int) -> None:
    """Click, with the mouse, the middle of the polygon whose ``key`` is ``value`` in plot ``name``."""
    point = page.evaluate(_POLYGON_CENTRE, [name, key, value])
    if point is None:
        raise LookupError(f"no polygon with {key}={value} in plot {name!r}")
    page.mouse.click(point[0], point[1])


def shown(page, selector: str, **kwargs):
    """A Playwright locator of ``selector`` inside the page the dashboard shows (not in one it keeps hidden)."""
    return page.locator(f"{SHOWN_PAGE} {selector}", **kwargs)


def plot_tags(page, name: str) -> list[list[str]]:
    """The tags of every plot called ``name`` now shown in the page."""
    return page.evaluate(_TAGS, name)


def wait_idle(page, timeout: float = 30_000) -> None:
    """Wait until Bokeh's documents exist and no plot is still rendering."""
    page.wait_for_function("""() => window.Bokeh && Bokeh.documents.length > 0 &&
        [...Bokeh.documents[0]._all_models.values()].every(m => {
            const v = Bokeh.index.find_one(m); return !v || !v.has_finished || v.has_finished(); })""",
                           timeout=timeout, polling=50)


def visible_text(page) -> str:
    """The text a user sees: shadow roots included (Panel renders into them), hidden elements left out."""
    return page.evaluate("""() => {
        const parts = [];
        const walk = (node) => {
            if (node.nodeType === 1 && (getComputedStyle(node).display === 'none'
                || node.style.opacity === '0')) return;
            if (node.shadowRoot) walk(node.shadowRoot);
            for (const child of node.childNodes) {
                if (child.nodeType !== 3) { walk(child); continue; }
                const owner = child.parentElement || child.parentNode.host;
                if (owner && getComputedStyle(owner).visibility === 'visible') parts.push(child.textContent);
            }
        };
        walk(document.body);
        return parts.join(' ');
    }""")


_DATA_TO_PIXEL = """([name, points]) => {
  """ + _SHOWN + """
  for (const doc of Bokeh.documents) {
    for (const model of doc._all_models.values()) {
      if (model.name !== name) continue;
      const view = Bokeh.index.find_one(model);
      if (!shown(view)) continue;
      const canvas = (view.canvas_view || view.canvas).el.getBoundingClientRect();
      const box = view.frame.bbox, inside = (v, a, b) => Math.min(Math.max(v, a + 1), b - 1);
      return points.map(([x, y]) => [canvas.left + inside(view.frame.x_scale.compute(x), box.left, box.right),
                                     canvas.top + inside(view.frame.y_scale.compute(y), box.top, box.bottom)]);
    }
  }
  return null;
}"""

_SELECTED = """(name) => {
  """ + _SHOWN + """
  for (const doc of Bokeh.documents)
    for (const model of doc._all_models.values()) {
      if (model.name !== name || !shown(Bokeh.index.find_one(model))) continue;
      for (const r of model.renderers)
        if (r.data_source && r.data_source.selected) return Array.from(r.data_source.selected.indices).sort((a, b) => a - b);
    }
  return null;
}"""


def drag_box(page, name: str, corner: tuple[float, float], opposite: tuple[float, float]) -> None:
    """Drag the mouse (the plot's active drag tool: a box selection) from one corner to the other,
    given in data coordinates of plot ``name`` (kept inside its frame: beyond it, the drag
    would start on another element)."""
    points = page.evaluate(_DATA_TO_PIXEL, [name, [list(corner), list(opposite)]])
    if points is None:
        raise LookupError(f"no plot {name!r} shown")
    (x0, y0), (x1, y1) = points
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()


def selected_indices(page, name: str) -> list[int] | None:
    """The selected rows of the data drawn by plot ``name`` (None if no such plot is shown)."""
    return page.evaluate(_SELECTED, name)
