"""The focal-plane page: a detector-level metric over every visit of a band, per detector.

A detector bad in every visit is one outlier among the detectors of each visit, and invisible
in any visit-level value; drawn per detector over all visits (as analysis_tools' focal-plane
plots are), it stands out. Tapping a detector lists its per-visit values; a visit there opens
that (visit, detector) in the visit view. Built once per session, then only its data changes.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import panel as pn

from . import model, plots
from .quicklook_view import format_value
from .source import memo
from .state import DrillState

__all__ = ["FocalPlanePanel", "focal_model"]

VISIT_COLUMNS = ["visit", "detector", "value", "unit", "status", "rule", "outlier"]


def focal_model(source, state: DrillState) -> model.FocalPlane:
    """The `model.FocalPlane` of the state's metric, band and detector, once per server."""
    key = ("focal_plane", state.metric, state.band, state.detector)
    return memo(source, key, lambda: model.focal_plane(source, state.metric, state.band, state.detector))


class FocalPlanePanel:
    """One session's focal-plane page."""

    def __init__(self, source, state: DrillState, extras: list | None = None):
        self.source, self.state = source, state
        self.title = pn.pane.HTML("", css_classes=["sq-title"])
        self.band = pn.widgets.Select(name="band", options=[], width=120)
        self.band.param.watch(lambda e: self._syncing or self.state.param.update(band=e.new, detector=None), "value")
        self.plot = plots.PolygonPlot("focalplane", plane=True, height=520)
        self.plot.on_pick(self._pick)
        self.summary = pn.pane.HTML("", css_classes=["sq-focal-summary"], sizing_mode="stretch_width")
        self.visits = pn.widgets.Tabulator(pd.DataFrame(columns=VISIT_COLUMNS), show_index=False, disabled=True,
                                           height=260, sizing_mode="stretch_width", css_classes=["sq-focal-visits"])
        self.visits.on_click(self._open_visit)
        self.visits_title = pn.pane.HTML("<p>Tap a detector to list its values in every visit.</p>")
        self._shown = pd.DataFrame()
        self._syncing = False
        self.panel = pn.Column(self.title, pn.Row(self.band, *(extras or [])), self.summary, pn.pane.Bokeh(self.plot.fig,
                               sizing_mode="stretch_width", min_height=520), self.visits_title, self.visits,
                               sizing_mode="stretch_width")

    def update(self, state: DrillState | None = None) -> None:
        state = state or self.state
        view = focal_model(self.source, state)
        unit = view.metric.get("unit", "")
        self._syncing = True
        try:
            self.band.param.update(options=view.bands, value=view.band, disabled=len(view.bands) < 2)
        finally:
            self._syncing = False
        detectors = view.detectors
        n_visits = int(detectors["n"].max()) if len(detectors) else 0
        self.title.object = (f"<h2 class='sq-title' data-level='focalplane'>{html.escape(view.metric['name'])} "
                             f"{html.escape(view.band or '')}: focal plane, median over {n_visits} visits</h2>")
        bad = detectors[detectors["n_fail"] > 0].sort_values(["n_fail", "detector"], ascending=[False, True])
        if len(bad):
            items = ", ".join(f"detector {int(r.detector)} ({int(r.n_fail)} of {int(r.n)} visits, median "
                              f"{format_value(float(r.value), unit)})" for r in bad.head(10).itertuples())
            text = f"<p class='sq-focal-failing'>Failing: {html.escape(items)}</p>"
        else:
            text = "<p class='sq-focal-failing'>No detector fails in any visit.</p>"
        if view.reference_visit is None:
            text += "<p>No detector outlines in the registry: the plot is empty, the table below lists the values.</p>"
        self.summary.object = text
        self._shown = detectors.dropna(subset=["polygon"]).reset_index(drop=True)
        data = plots.polygon_data(detectors, "detector", 0.0)
        outlines = plots.outline_data(detectors[detectors["n_fail"] > 0], "detector", 0.0)
        selected = [int(i) for i in np.flatnonzero(self._shown["detector"].to_numpy() == view.detector)] \
            if view.detector is not None and len(self._shown) else []
        tags = ["level:focalplane", f"metric:{view.metric['name']}", f"band:{view.band}",
                "failing:" + ",".join(str(int(d)) for d in bad["detector"])]
        self.plot.update(data, "detector", unit, tags, f"reference layout: visit {view.reference_visit}",
                         outlines=outlines, selected=selected)
        if view.detector is None:
            self.visits_title.object = "<p>Tap a detector to list its values in every visit.</p>"
            self.visits.value = pd.DataFrame(columns=VISIT_COLUMNS)
        else:
            self.visits_title.object = (f"<h3 class='sq-focal-detector'>detector {view.detector}: "
                                        f"{len(view.visits)} visits (click one to open it)</h3>")
            self.visits.value = view.visits[[c for c in VISIT_COLUMNS if c in view.visits]]

    def _pick(self, index: int) -> None:
        if index < len(self._shown):
            self.state.param.update(detector=int(self._shown.iloc[index]["detector"]))

    def _open_visit(self, event) -> None:
        rows = self.visits.value
        if event.row is not None and event.row < len(rows):
            row = rows.iloc[event.row]
            self.state.go(view="visits", metric=self.state.metric, band=self.state.band,
                          visit=int(row["visit"]), detector=int(row["detector"]))
