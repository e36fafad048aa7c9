"""The metric view (DMTN-085 Fig. 2): coadd mode tract -> patch -> objects, visit mode visit -> detector.

`DrillPanel` builds its widgets and figures once per browser session; each drill-down step
computes the `model.DrillView` of the new place (once per server: `memo`), prepares what each
figure draws (polygons, points or a datashaded image, histogram), and replaces the figures'
data, titles and visibility. Nothing is rebuilt, so a step sends only the new data.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import panel as pn

from . import model, payload, plots
from .payload import ROW_COLUMNS
from .quicklook_view import format_value
from .source import memo
from .state import DrillState

__all__ = ["DrillPanel", "overlapping_visits", "drill_model", "drill_payload", "children_payload",
           "resend_tables", "set_crumbs_and_band"]

TABLE_COLUMNS = ["value", "unit", "n", "status", "outlier"]
#: Every table of children has a column per key (those not shown hidden): a step then changes rows, not columns.
KEYS = ["tract", "patch", "visit", "detector"]
_EMPTY_ROWS = pd.DataFrame({c: pd.Series(dtype="int64" if c in ("id", "tract", "patch", "visit", "detector")
                                         else (object if c == "band" else float)) for c in ROW_COLUMNS})
#: At most this many crumbs besides the current place (quick look, metric, tract | visit).
MAX_CRUMBS = 3


def drill_model(source, state: DrillState) -> model.DrillView:
    """The `model.DrillView` for the state's place (coadd or visit mode), computed once per server."""
    if state.view == "visits":
        key = ("visit_view", state.metric, state.band, state.visit, state.detector)
        return memo(source, key, lambda: model.visit_view(source, state.metric, state.band, state.visit,
                                                          state.detector))
    key = ("metric_view", state.metric, state.band, state.tract, state.patch)
    return memo(source, key, lambda: model.metric_view(source, state.metric, state.band, state.tract, state.patch))


def _sibling_view(source, state: DrillState) -> model.DrillView | None:
    """At a leaf (a patch, a detector): the parent's view, whose children are the leaf and its siblings."""
    if state.view == "visits" and state.detector is not None:
        return drill_model(source, DrillState(view="visits", metric=state.metric, band=state.band, visit=state.visit))
    if state.view != "visits" and state.patch is not None:
        return drill_model(source, DrillState(view="metric", metric=state.metric, band=state.band, tract=state.tract))
    return None


def children_payload(view: model.DrillView) -> dict | None:
    """The children of one view as the sky plot, series, table and histogram draw them (pure)."""
    key = view.child_key
    out = None
    if key is not None and len(view.children):
        children = view.children
        table = pd.DataFrame({k: children[k].astype(int) if k == key else -1 for k in KEYS}, index=children.index)
        for column in TABLE_COLUMNS:
            table[column] = children[column] if column in children else None
        table = table.sort_values(["outlier", key], ascending=[False, True]).reset_index(drop=True)
        polygons = None
        if children["polygon"].notna().any():
            reference = plots.sky_reference(children["polygon"].dropna())
            polygons = {"reference": reference, "data": plots.polygon_data(children, key, reference),
                        "shown": children.dropna(subset=["polygon"])[key].astype(int).to_numpy()}
        out = {"key": key, "table": table, "polygons": polygons, "frame": children,
               "histogram": payload.histogram_data(children["value"])}
    return out


def resend_tables(tables: list[pn.widgets.Tabulator], every_ms: int = 500, times: int = 3) -> None:
    """Send the tables' rows again, a few times in the next seconds: the first rows of a page built ahead may be lost.

    Panel's table view drops new rows that arrive while the browser still builds the table
    (Panel 1.9: ``setData`` returns at once while initializing), so a click in the second after
    a page was built ahead could leave the previous place's rows on screen. Sent again once the
    table is built, they are shown (the same rows again, if the first were not lost).
    """
    if pn.state.curdoc is None or pn.state.curdoc.session_context is None:
        return

    def resend() -> None:
        for table in tables:
            table.value = table.value.copy()

    pn.state.add_periodic_callback(resend, period=every_ms, count=times)


def set_crumbs_and_band(crumbs: pn.widgets.RadioButtonGroup, band: pn.widgets.Select, view) -> None:
    """Point a drill page's breadcrumbs and band selector (single run or compared) at ``view``'s place.

    The selector stays shown, disabled with one band: a change of visibility lays the page out.
    """
    labels = [c["label"] for c in view.breadcrumbs]
    crumbs.param.update(options=labels, value=labels[-1])
    options = {b: b for b in view.bands}
    if view.mode == "visit":  # visit mode may show every band at once
        options = {"all bands": "", **options}
    band.param.update(options=options, value=view.band or "", disabled=len(view.bands) < 2)


def drill_payload(view: model.DrillView) -> dict:
    """Everything the figures of one view draw (pure: polygons, series, points/images, histogram, tables)."""
    out: dict = {"children": children_payload(view), "rows": None}
    rows, columns = view.rows, view.columns
    if len(rows) and columns.get("value"):
        value = rows[columns["value"]].to_numpy(dtype=float)
        prepared = {"histogram": payload.histogram_data(value), "n": len(rows)}
        if columns.get("mag"):
            prepared["scatter"] = plots.PointsPlot.prepare(rows[columns["mag"]], value, None, density=True)
        if columns.get("ra") and columns.get("dec"):
            ra = rows[columns["ra"]].to_numpy(dtype=float)
            ra = model.unwrap_ra(ra, float(np.nanmedian(ra))) if len(ra) else ra
            prepared["sky_rows"] = plots.PointsPlot.prepare(ra, rows[columns["dec"]], value)
        if view.level in ("tract", "patch", "visit", "detector"):
            prepared["first"] = payload.worst_rows(rows, columns)
        out["rows"] = prepared
    return out


def overlapping_visits(source, tract: int) -> pd.DataFrame:
    """Visits whose outline overlaps the tract's (bounding boxes in RA/Dec, deg, across RA 0)."""
    tracts, visits = source.tracts(), source.visits()
    row = tracts[tracts["tract"] == tract]
    if not len(row) or not len(visits) or "polygon" not in visits:
        return visits.iloc[0:0]
    tract_vertices = np.asarray(row["polygon"].iloc[0], dtype=float)
    reference = float(tract_vertices[0, 0])
    t_ra = model.unwrap_ra(tract_vertices[:, 0], reference)
    keep = []
    for polygon in visits["polygon"]:
        v = np.asarray(polygon, dtype=float) if polygon is not None else np.zeros((0, 2))
        if not len(v):
            keep.append(False)
            continue
        v_ra = model.unwrap_ra(v[:, 0], reference)
        keep.append(bool(v_ra.min() <= t_ra.max() and v_ra.max() >= t_ra.min()
                         and v[:, 1].min() <= tract_vertices[:, 1].max()
                         and v[:, 1].max() >= tract_vertices[:, 1].min()))
    return visits[np.array(keep, dtype=bool)].reset_index(drop=True)


def _visit_metric(source, entry: dict) -> str:
    """The metric to open in visit mode: this one if it has visit values, else the first that does."""
    if set(entry.get("levels", [])) & model.VISIT_LEVELS:
        return entry["name"]
    for other in model.metric_entries(source):
        if set(other.get("levels", [])) & model.VISIT_LEVELS:
            return other["name"]
    return entry["name"]


def _describe(view: model.DrillView) -> str:
    entry = view.metric
    specs = "; ".join(f"{s['name']} {s.get('operator', '')} {s.get('threshold')} {s.get('unit', '')}"
                      for s in entry.get("specs", [])) or "none"
    selection = entry.get("selection") or {}
    selection = selection.get("name", "") if isinstance(selection, dict) else str(selection)
    own = ""
    for row in view.values.itertuples(index=False):
        colour = {"fail": "#c62828", "pass": "#2e7d32"}.get(row.status, "#666")
        own += (f"<li class='sq-own sq-{row.status}' style='color:{colour}'>{row.level}"
                f"{' ' + row.band if isinstance(row.band, str) else ''}: <b>{format_value(row.value, row.unit)}</b>"
                f" ({row.status}{', n=' + str(row.n) if pd.notna(row.n) else ''})</li>")
    where = ", ".join(f"{k} {v}" for k, v in view.selection.items() if v is not None) or "all data"
    return (f"<h2 class='sq-title' data-level='{view.level}'>{html.escape(entry['name'])} — {html.escape(where)}</h2>"
            f"<p>{html.escape(entry.get('description', ''))}</p>"
            f"<p>unit: {html.escape(entry.get('unit', '') or 'dimensionless')} · selection: {html.escape(selection)}"
            f" · aggregation: {html.escape(str(entry.get('aggregation', '')))} · specs: {html.escape(specs)}</p>"
            f"<ul>{own}</ul>")


class _Table(pn.widgets.Tabulator):
    """A Tabulator that keeps its column models when new data has the same columns.

    Panel 1.9 re-sends the whole table configuration on every change of ``value``, which makes
    the browser build the table again; a drill-down step only changes the rows.
    """

    def _update_columns(self, event, model):
        if event.name == "value" and [c.field for c in model.columns] == self._get_fields():
            return
        super()._update_columns(event, model)


def _table(css: str, height: int, empty: pd.DataFrame | None = None) -> pn.widgets.Tabulator:
    return _Table(pd.DataFrame() if empty is None else empty, show_index=False, disabled=True, height=height, pagination=None,
                  layout="fit_columns", sizing_mode="stretch_width", css_classes=[css])


def _set_table(table: pn.widgets.Tabulator, frame: pd.DataFrame) -> None:
    """Give a table new rows, unless it shows these already (same object: a sibling step)."""
    if table.value is not frame:
        table.value = frame


#: Inline styles of a figure shown, and of one kept laid out but out of sight (no data at this place). A change
#: of ``visible`` makes Bokeh lay out the whole document again (1.0-1.5 s of the tract step, measured with the
#: browser's profiler: ``invalidate_layout`` and a style recalculation of every element of every page kept);
#: inline styles only repaint. Out of the flow and transparent, such a figure takes no room and shows nothing
#: (`browser.shown` and `browser.visible_text` count it as hidden, as a user does).
FIGURE_SHOWN = {"position": "relative", "visibility": "visible", "opacity": "1", "pointer-events": "auto"}
FIGURE_AWAY = {"position": "absolute", "top": "0px", "left": "0px", "right": "0px", "visibility": "hidden",
               "opacity": "0", "pointer-events": "none"}


def _set_visible(pane, visible: bool) -> None:
    """Show or put out of sight a Bokeh pane by its inline styles, touching nothing if nothing changes."""
    wanted = FIGURE_SHOWN if visible else FIGURE_AWAY
    if pane.styles != wanted:
        pane.styles = wanted


class DrillPanel:
    """The metric view of one session: widgets and figures built once, their data replaced per step.

    A step changes as little of the page's layout as it can (every change of size or visibility
    makes the browser lay out the whole page again): the breadcrumbs are one widget, the figures
    keep their titles, and a leaf (a patch, a detector) shows its siblings with itself selected
    instead of hiding the sky plot and the table.

    Parameters
    ----------
    source : DataSource
        The repository (a `CachedSource`: views are computed once per server).
    state : DrillState
        This session's place; clicks change it, and the page calls `update` when it changes.
    extras : list, optional
        Widgets shown beside the band selector (the "open in Jupyter" button).
    """

    def __init__(self, source, state: DrillState, extras: list | None = None):
        self.source, self.state = source, state
        self._syncing = False  # True while widgets are set from the state (their watchers then keep still)
        self._crumbs: list[dict] = []
        self.crumbs = pn.widgets.RadioButtonGroup(options=["quick look"], value="quick look", button_type="primary",
                                                  css_classes=["sq-crumb"])
        self.crumbs.param.watch(self._go_crumb, "value")
        # always shown (disabled with one band): a change of visibility would lay the page out again
        self.band = pn.widgets.Select(label="band", options=[], width=120, disabled=True)
        self.band.param.watch(lambda e: self._syncing or state.param.update(band=e.new or None), "value")
        self.describe = pn.pane.HTML("", sizing_mode="stretch_width", min_height=150)

        self.sky = plots.PolygonPlot("sky")
        self.sky.fig.title.text = "on the sky: click one to open it"
        self.sky.on_pick(self._pick_polygon)
        self.sky_pane = pn.pane.Bokeh(self.sky.fig, sizing_mode="stretch_width", min_height=420)
        # made on the first visit-mode view (`_series`): a coadd session never shows it
        self.series: plots.SeriesPlot | None = None
        self.series_pane: pn.pane.Bokeh | None = None
        self.toggle = pn.widgets.Checkbox(label="show visits overlapping this tract", disabled=True)
        self.toggle.param.watch(lambda e: self._syncing or state.param.update(show_visits=e.new), "value")
        self.overlay_note = pn.pane.HTML("")
        self.overlay_table: pn.widgets.Tabulator | None = None  # made when first shown: one table less per page
        self.overlay = pn.Column(self.overlay_note, sizing_mode="stretch_width", visible=False)
        self.children_title = pn.pane.HTML("")
        self.children_table = _table("sq-children", 300, pd.DataFrame(
            {**{k: pd.Series(dtype="int64") for k in KEYS}, "value": pd.Series(dtype=float),
             "unit": pd.Series(dtype=object), "n": pd.Series(dtype=float), "status": pd.Series(dtype=object),
             "outlier": pd.Series(dtype=bool)}))
        self.children_table.on_click(self._pick_row)
        self.plots_column = pn.Column(self.sky_pane, self.toggle, self.overlay, sizing_mode="stretch_width")
        self.children_row = pn.Row(
            self.plots_column, pn.Column(self.children_title, self.children_table, width=420), sizing_mode="stretch_width")

        self.rows_title = pn.pane.HTML("")
        self.scatter = plots.PointsPlot("scatter", "magnitude (AB mag)", "value", density=True)
        self.scatter.fig.title.text = "value against magnitude"
        self.sky_rows = plots.PointsPlot("sky_rows", "RA (deg)", "Dec (deg)", flipped=True)
        self.sky_rows.fig.title.text = "values on the sky"
        self.histogram = plots.HistogramPlot("histogram")
        self.histogram.fig.title.text = "distribution"
        self.rows_table = _table("sq-rows", 300, _EMPTY_ROWS)
        self.rows_note = pn.pane.HTML("", css_classes=["sq-why"], sizing_mode="stretch_width")
        self.scatter_pane = pn.pane.Bokeh(self.scatter.fig, sizing_mode="stretch_width")
        self.sky_rows_pane = pn.pane.Bokeh(self.sky_rows.fig, sizing_mode="stretch_width")
        self.panel = pn.Column(
            self.crumbs, pn.Row(self.band, *(extras or [])), self.describe, self.children_row, self.rows_title,
            self.rows_note, pn.Row(self.scatter_pane, self.sky_rows_pane, sizing_mode="stretch_width"),
            pn.pane.Bokeh(self.histogram.fig, sizing_mode="stretch_width"), self.rows_table,
            sizing_mode="stretch_width")
        self._view: model.DrillView | None = None
        self._children: dict | None = None
        self._drawn_ahead = False  # the last update drew a place ahead of the user (`update(state)`)
        self._visits: pd.DataFrame | None = None

    def _series(self) -> tuple[pn.pane.Bokeh, plots.SeriesPlot]:
        """The metric-against-number figure, made (above the sky plot) the first time visit mode needs it."""
        if self.series is None:
            self.series = plots.SeriesPlot("series")
            self.series.fig.title.text = "against its number: outliers as red crosses"
            self.series_pane = pn.pane.Bokeh(self.series.fig, sizing_mode="stretch_width")
            self.plots_column.insert(0, self.series_pane)
        return self.series_pane, self.series

    # -- clicks ------------------------------------------------------------------------------
    def _go_crumb(self, event) -> None:
        if self._syncing:
            return
        labels = [c["label"] for c in self._crumbs]
        if event.new not in labels[:-1]:
            return
        query = dict(self._crumbs[labels.index(event.new)]["query"])
        if not query:
            self.state.go(view="quicklook", metric=None, band=None)  # the address then says quick look
            return
        query.setdefault("view", "metric")
        self.state.go(**query)

    def _pick(self, value: int) -> None:
        key = self._children["key"]
        changes = {key: int(value)}
        if key == "tract":
            changes["patch"] = None
        elif key == "visit":
            changes["detector"] = None
        self.state.param.update(**changes)

    def _pick_polygon(self, index: int) -> None:
        self._pick(self._children["polygons"]["shown"][index])

    def _pick_row(self, event) -> None:
        self._pick(self._children["table"].iloc[event.row][self._children["key"]])

    def _pick_visit(self, event) -> None:
        row = self._visits.iloc[event.row]
        self.state.go(view="visits", metric=_visit_metric(self.source, self._view.metric), visit=int(row["visit"]),
                      band=row.get("band"))

    # -- drawing -----------------------------------------------------------------------------
    def update(self, state: DrillState | None = None) -> None:
        """Show the state's place: compute (or fetch) its model and replace every figure's data.

        ``state``: another place than the session's, for a page drawn ahead of its first click
        (the widgets a place shows, and their sizes, are then there already: the click only
        changes data).
        """
        ahead = state is not None and state is not self.state
        state, source = state or self.state, self.source
        view = drill_model(source, state)
        drawn = memo(source, ("drill_payload", state.view, view.metric["name"], view.band,
                                *view.selection.values()), lambda: drill_payload(view))
        children, selected = drawn["children"], None
        if children is None:  # a leaf: show its siblings, itself selected
            parent = _sibling_view(source, state)
            if parent is not None:
                children = memo(source, ("drill_payload", state.view, view.metric["name"], view.band,
                                         *parent.selection.values()), lambda: drill_payload(parent))["children"]
                selected = state.patch if state.view != "visits" else state.detector
        self._view, self._children = view, children
        tags = [f"level:{view.level}"] + [f"{k}:{v}" for k, v in view.selection.items() if v is not None]
        unit = view.metric.get("unit", "")
        self._crumbs = view.breadcrumbs
        self._syncing = True
        try:
            set_crumbs_and_band(self.crumbs, self.band, view)
            self.toggle.param.update(value=state.show_visits, disabled=view.level != "tract",
                                     visible=view.mode == "coadd")
        finally:
            self._syncing = False
        # Layout first, data after: a change of visibility makes the browser lay out and paint at once, and a
        # figure painted between a new data column and its index update fails ("Out of bounds").
        show_visits = view.level == "tract" and state.show_visits
        polygons = children["polygons"] if children is not None else None
        self.children_row.visible = children is not None
        _set_visible(self.sky_pane, polygons is not None)
        self.overlay.visible = show_visits and polygons is not None
        show_series = view.mode == "visit" and children is not None
        if show_series or self.series is not None:
            pane, series = self._series()
            _set_visible(pane, show_series)
        rows = drawn["rows"]
        _set_visible(self.scatter_pane, rows is not None and "scatter" in rows)
        _set_visible(self.sky_rows_pane, rows is not None and "sky_rows" in rows)
        self.describe.object = _describe(view)
        self._draw_children(view, children, selected, unit, tags, show_visits)
        self._draw_rows(view, drawn["rows"], children, unit, tags)
        if self._drawn_ahead and not ahead:
            resend_tables([self.children_table, self.rows_table])
        self._drawn_ahead = ahead

    def _draw_children(self, view: model.DrillView, children: dict | None, selected, unit: str,
                       tags: list[str], show_visits: bool) -> None:
        if children is None:
            return
        key = children["key"]
        hidden = [k for k in KEYS if k != key]
        if self.children_table.hidden_columns != hidden:
            self.children_table.hidden_columns = hidden
        _set_table(self.children_table, children["table"])
        self.children_title.object = f"<h3>{key}{'es' if key.endswith('ch') else 's'}</h3>"
        polygons = children["polygons"]
        if polygons is not None:
            outlines = None
            if show_visits:
                self._visits = overlapping_visits(self.source, view.selection["tract"])
                outlines = plots.outline_data(self._visits, "visit", polygons["reference"])
                if self.overlay_table is None:
                    self.overlay_table = _table("sq-overlapping-visits", 200)
                    self.overlay_table.on_click(self._pick_visit)
                    self.overlay.append(self.overlay_table)
                self.overlay_table.value = self._visits[[c for c in ("visit", "band") if c in self._visits]]
                self.overlay_note.object = (
                    f"<p>{len(self._visits)} visits overlap tract {view.selection['tract']}; click one to open it in "
                    f"visit mode ({html.escape(_visit_metric(self.source, view.metric))}).</p>")
            sky_tags = tags + ([f"visits:{len(self._visits)}"] if show_visits else [])
            index = [int(i) for i in np.flatnonzero(polygons["shown"] == selected)] if selected is not None else []
            self.sky.update(polygons["data"], key, unit, sky_tags, None, outlines=outlines, selected=index)
        if view.mode == "visit":
            self._series()[1].update(children["frame"], key, unit, tags)

    def _draw_rows(self, view: model.DrillView, rows: dict | None, children: dict | None, unit: str,
                   tags: list[str]) -> None:
        empty = {"n": 0, "points": {"x": [], "y": [], "c": []}, "range": (0.0, 1.0)}
        self.scatter.fig.yaxis.axis_label = f"value ({unit})" if unit else "value"
        note = view.rows_note()
        self.rows_note.object = f"<p class='sq-why-text'><i>{html.escape(note)}</i></p>" if note else ""
        if rows is None:
            self.rows_title.object = f"<h3>{view.metric['name']} per {children['key']}</h3>" if children else ""
            self.scatter.show(empty, "", tags, None)
            self.sky_rows.show(empty, unit, tags, None)
            _set_table(self.rows_table, _EMPTY_ROWS)
            if children is not None:
                self.histogram.show(children["histogram"], unit, tags)
            return
        kind = "objects" if view.mode == "coadd" else "rows"
        raster = any("image" in rows.get(k, {}) for k in ("scatter", "sky_rows"))
        names = ", ".join(f"{k} = {html.escape(str(v))}" for k, v in view.columns.items() if v and v != k)
        self.rows_title.object = (f"<h3>{rows['n']:,} {kind}{' (datashaded)' if raster else ''}"
                                  f"{'; the worst 200 below' if 'first' in rows else ''}</h3>"
                                  f"<p>{names}</p>")
        self.scatter.show(rows.get("scatter", empty), "", tags, None)
        self.sky_rows.show(rows.get("sky_rows", empty), unit, tags, None)
        first = rows.get("first", _EMPTY_ROWS)
        if self.rows_table.hidden_columns != first.attrs.get("absent", []):
            self.rows_table.hidden_columns = list(first.attrs.get("absent", []))
        _set_table(self.rows_table, first)
        self.histogram.show(rows["histogram"], unit, tags)
