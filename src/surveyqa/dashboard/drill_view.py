"""The metric view (DMTN-085 Fig. 2): coadd mode tract -> patch -> objects, visit mode visit -> detector.

Both modes draw the same pieces for a `model.DrillView`: breadcrumbs, the selected thing's
values against their spec, the children on the sky (click one to go down), a table of the
children (click a row to go down), and the per-row values as value-vs-magnitude, sky and histogram.
"""

from __future__ import annotations

import html

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn

from . import model, plots
from .quicklook_view import format_value
from .state import DrillState

__all__ = ["drill_panel", "overlapping_visits"]

TABLE_COLUMNS = ["value", "unit", "n", "status", "outlier"]


def _breadcrumbs(view: model.DrillView, state: DrillState) -> pn.Row:
    items = []
    for i, crumb in enumerate(view.breadcrumbs):
        if i == len(view.breadcrumbs) - 1:
            items.append(pn.pane.HTML(f"<b class='sq-crumb-here'>{html.escape(crumb['label'])}</b>"))
            continue
        button = pn.widgets.Button(label=crumb["label"], button_type="primary", button_style="outline",
                                   css_classes=["sq-crumb"])
        query = dict(crumb["query"])
        if not query:
            button.on_click(lambda e: state.go(view="quicklook"))
        else:
            query.setdefault("view", "metric")
            button.on_click(lambda e, q=query: state.go(**q))
        items.append(button)
        items.append(pn.pane.HTML("<span>&rsaquo;</span>"))
    return pn.Row(*items, name="breadcrumbs")


def _describe(view: model.DrillView) -> pn.pane.HTML:
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
    return pn.pane.HTML(
        f"<h2 class='sq-title' data-level='{view.level}'>{html.escape(entry['name'])} — {html.escape(where)}</h2>"
        f"<p>{html.escape(entry.get('description', ''))}</p>"
        f"<p>unit: {html.escape(entry.get('unit', '') or 'dimensionless')} · selection: {html.escape(selection)}"
        f" · aggregation: {html.escape(str(entry.get('aggregation', '')))} · specs: {html.escape(specs)}</p>"
        f"<ul>{own}</ul>", sizing_mode="stretch_width")


def _children_table(view: model.DrillView, on_pick) -> pn.widgets.Tabulator:
    key = view.child_key
    frame = view.children[[key] + [c for c in TABLE_COLUMNS if c in view.children]].copy()
    frame[key] = frame[key].astype(int)
    frame = frame.sort_values(["outlier", key], ascending=[False, True]).reset_index(drop=True)
    table = pn.widgets.Tabulator(frame, show_index=False, disabled=True, height=300, pagination=None,
                                 sizing_mode="stretch_width", css_classes=["sq-children", f"sq-table-{key}"])
    table.on_click(lambda event: on_pick(int(frame.iloc[event.row][key])))
    return table


def _row_plots(view: model.DrillView, tags: list[str]) -> list:
    rows, columns = view.rows, view.columns
    unit = view.metric.get("unit", "")
    if not len(rows) or not columns.get("value"):
        return []
    items = []
    if columns.get("mag"):
        items.append(pn.pane.HoloViews(plots.value_vs_mag(rows, columns, unit, tags), sizing_mode="stretch_width"))
    if columns.get("ra") and columns.get("dec"):
        items.append(pn.pane.HoloViews(plots.sky_rows(rows, columns, unit, tags), sizing_mode="stretch_width"))
    items.append(pn.pane.HoloViews(plots.histogram(rows[columns["value"]], unit, tags),
                                   sizing_mode="stretch_width"))
    return items


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


def _visit_overlay(source, view: model.DrillView, state: DrillState, reference: float, fig) -> pn.Column:
    """Outlines of the visits overlapping the selected tract, and a table to jump into visit mode."""
    visits = overlapping_visits(source, view.selection["tract"])
    plots.add_outlines(fig, visits, "visit", reference)
    fig.tags = list(fig.tags) + [f"visits:{len(visits)}"]
    frame = visits[[c for c in ("visit", "band") if c in visits]].copy()
    table = pn.widgets.Tabulator(frame, show_index=False, disabled=True, height=200, pagination=None,
                                 css_classes=["sq-overlapping-visits"])
    visit_metric = _visit_metric(source, view.metric)
    table.on_click(lambda e: state.go(view="visits", metric=visit_metric, visit=int(frame.iloc[e.row]["visit"]),
                                      band=frame.iloc[e.row].get("band")))
    note = pn.pane.HTML(f"<p>{len(visits)} visits overlap tract {view.selection['tract']}; click one to open it"
                        f" in visit mode ({html.escape(visit_metric)}).</p>")
    return pn.Column(note, table, sizing_mode="stretch_width")


def _visit_metric(source, entry: dict) -> str:
    """The metric to open in visit mode: this one if it has visit values, else the first that does."""
    if set(entry.get("levels", [])) & model.VISIT_LEVELS:
        return entry["name"]
    for other in model.metric_entries(source):
        if set(other.get("levels", [])) & model.VISIT_LEVELS:
            return other["name"]
    return entry["name"]


def drill_panel(source, state: DrillState, extras: list | None = None) -> pn.viewable.Viewable:
    """Build the metric view for one session's state (coadd or visit mode from ``state.view``)."""
    if state.view == "visits":
        view = model.visit_view(source, state.metric, state.band, state.visit, state.detector)
    else:
        view = model.metric_view(source, state.metric, state.band, state.tract, state.patch)
    tags = [f"level:{view.level}"] + [f"{k}:{v}" for k, v in view.selection.items() if v is not None]
    unit = view.metric.get("unit", "")
    band = pn.widgets.Select(label="band", options=view.bands, value=view.band, width=120,
                             visible=len(view.bands) > 1)
    band.param.watch(lambda e: state.param.update(band=e.new), "value")
    top = [_breadcrumbs(view, state), pn.Row(band, *(extras or [])), _describe(view)]

    body = []
    key = view.child_key
    if key is not None and len(view.children):
        def pick(value, key=key):
            state.param.update(**{key: value})

        has_polygons = view.children["polygon"].notna().any()
        sky_items = []
        if has_polygons:
            reference = plots.sky_reference(view.children["polygon"].dropna())
            fig = plots.sky_figure(tags, title=f"{view.metric['name']} per {key}")
            data = plots.add_polygons(fig, view.children, key, unit, reference)
            shown = view.children.dropna(subset=["polygon"]).reset_index(drop=True)
            data.selected.on_change("indices", lambda attr, old, new: new and pick(int(shown.iloc[new[0]][key])))
            side = []
            if view.level == "tract":
                toggle = pn.widgets.Checkbox(label="show visits overlapping this tract", value=state.show_visits)
                toggle.param.watch(lambda e: state.param.update(show_visits=e.new), "value")
                side.append(toggle)
                if state.show_visits:
                    side.append(_visit_overlay(source, view, state, reference, fig))
            sky_items.append(pn.pane.Bokeh(fig, sizing_mode="stretch_width", min_height=420))
            sky_items.extend(side)
        if view.mode == "visit":
            sky_items.insert(0, pn.pane.HoloViews(plots.series(view.children, key, unit, tags),
                                                  sizing_mode="stretch_width"))
        body.append(pn.Row(pn.Column(*sky_items, sizing_mode="stretch_width"),
                           pn.Column(pn.pane.HTML(f"<h3>{key}{'es' if key.endswith('ch') else 's'}</h3>"), _children_table(view, pick),
                                     width=420), sizing_mode="stretch_width"))
        if not len(view.rows):
            body.append(pn.pane.HoloViews(plots.histogram(view.children["value"], unit, tags),
                                          sizing_mode="stretch_width"))
    row_items = _row_plots(view, tags)
    if row_items:
        body.append(pn.pane.HTML(f"<h3>{len(view.rows):,} {'objects' if view.mode == 'coadd' else 'rows'}"
                                 f"{' (datashaded)' if len(view.rows) > plots.RASTER_ABOVE else ''}</h3>"))
        body.append(pn.GridBox(*row_items, ncols=2, sizing_mode="stretch_width"))
    if view.level in ("patch", "detector") and len(view.rows):
        first = view.rows.sort_values(view.columns["value"], ascending=False).head(200)
        body.append(pn.widgets.Tabulator(first, show_index=False, disabled=True, height=300,
                                         sizing_mode="stretch_width", css_classes=["sq-rows"]))
    return pn.Column(*top, *body, sizing_mode="stretch_width")
