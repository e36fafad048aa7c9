"""The linked-metrics page: several metrics of one level side by side, selections linked.

One Bokeh ``ColumnDataSource`` (one row per data ID, `linked.LinkedView`) feeds every plot, so a
box or lasso selection in any of them selects the same data IDs in all the others, in the
browser, with no round trip; the server only lists what is selected (and can clear it). The
metrics are picked in the sidebar and kept in the URL with the selection
(``metrics=A,B&level=detector&selected=424.39,424.40``), so a selection can be shared and survives a reload.
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
from bokeh.models import (BasicTicker, BasicTickFormatter, BoxSelectTool, ColumnDataSource, HoverTool,
                          LassoSelectTool, LinearColorMapper)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from surveyqa.culprits import id_text

from . import model, plots
from .linked import LEVEL_KEYS, MAX_METRICS, LinkedView, linked_view, selection_indices, selection_text
from .payload import value_range
from .source import memo
from .state import DrillState

__all__ = ["LinkedPanel", "linked_model", "default_metrics"]

_TOOLS = "box_select,lasso_select,tap,pan,wheel_zoom,reset"
#: Data IDs listed by name under the plots when selected (the rest are counted).
LISTED = 30
#: At most this many selected data IDs are kept in the address (a longer one is refused by some servers).
IN_ADDRESS = 500


def linked_model(source, state: DrillState) -> LinkedView:
    """The `LinkedView` of the state's metrics, level and band, once per server."""
    metrics = tuple(m for m in (state.metrics or "").split(",") if m)
    key = ("linked", metrics, state.level, state.band)
    return memo(source, key, lambda: linked_view(source, list(metrics), state.level, state.band))


def default_metrics(source) -> list[str]:
    """The metrics the page opens with: the first failing detector-level metrics, then any."""
    entries = model.metric_entries(source)
    detector = [e["name"] for e in entries if "detector" in e.get("levels", [])]
    failing = [e["name"] for e in entries if e.get("n_fail") and e["name"] in detector]
    return list(dict.fromkeys(failing + detector))[:2]


class LinkedPanel:
    """One session's linked page: the sidebar, one plot per metric and a sky plot, one source."""

    def __init__(self, source, state: DrillState):
        self.source, self.state = source, state
        names = [e["name"] for e in model.metric_entries(source)]
        self.choose = pn.widgets.MultiSelect(name="metrics (pick several)", options=names, size=18, width=300,
                                             css_classes=["sq-linked-metrics"])
        self.choose.param.watch(lambda e: self._syncing or self.state.param.update(
            metrics=",".join(e.new[:MAX_METRICS]) or None, level=None, selected=None), "value")
        self.level = pn.widgets.Select(name="level", options=list(LEVEL_KEYS), width=140)
        self.level.param.watch(lambda e: self._syncing or self.state.param.update(level=e.new, selected=None), "value")
        self.band = pn.widgets.Select(name="band", options=[], width=140)
        self.band.param.watch(lambda e: self._syncing or self.state.param.update(band=e.new or None, selected=None),
                               "value")
        self.clear = pn.widgets.Button(name="clear selection", width=140, css_classes=["sq-linked-clear"])
        self.clear.on_click(lambda e: setattr(self.data.selected, "indices", []))
        self.title = pn.pane.HTML("")
        self.selected = pn.pane.HTML("<p class='sq-linked-selected'>Nothing selected: drag a box (or a lasso, "
                                     "from the toolbar) in any plot.</p>", sizing_mode="stretch_width")
        self.data = ColumnDataSource({})
        self.data.selected.on_change("indices", self._selected)
        self.mapper = LinearColorMapper(palette=Viridis256, low=0.0, high=1.0, nan_color="lightgrey")
        self.figures = [self._metric_figure(i) for i in range(MAX_METRICS)]
        self.sky = self._sky_figure()
        self.panes = [pn.pane.Bokeh(f, sizing_mode="stretch_width", visible=False) for f in self.figures]
        self._view: LinkedView | None = None
        self._syncing = False
        self.panel = pn.Row(
            pn.Column(self.choose, self.level, self.band, self.clear, width=320),
            pn.Column(self.title, self.selected, pn.GridBox(*self.panes, ncols=2, sizing_mode="stretch_width"),
                      pn.pane.Bokeh(self.sky, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    def _metric_figure(self, i: int):
        fig = figure(name=f"linked_{i}", height=300, sizing_mode="stretch_width", tools=_TOOLS,
                     output_backend="webgl")
        fig.scatter("x", f"m{i}", source=self.data, size=7, color="#1f77b4", selection_color="red",
                    nonselection_alpha=0.25)
        fig.xaxis.formatter = BasicTickFormatter(use_scientific=False)
        fig.xaxis.ticker = BasicTicker(min_interval=1, desired_num_ticks=8)
        fig.toolbar.active_drag = fig.select_one(BoxSelectTool)
        fig.add_tools(HoverTool(tooltips=[("data ID", "@label"), ("value", f"@m{i}")]))
        return plots.steady(fig)

    def _sky_figure(self):
        fig = plots.sky_figure([], name="linked_sky", title="on the sky (coloured by the first metric)")
        box = BoxSelectTool()
        fig.add_tools(box, LassoSelectTool(), HoverTool(tooltips=[("data ID", "@label"), ("value", "@m0")]))
        fig.scatter("ra", "dec", source=self.data, size=8, color={"field": "m0", "transform": self.mapper},
                    selection_line_color="red", selection_line_width=2, nonselection_alpha=0.25)
        fig.toolbar.active_drag = box
        plots.colour_bar(fig, self.mapper, "value")
        return fig

    def update(self, state: DrillState | None = None) -> None:
        state = state or self.state
        if not state.metrics:
            state.param.update(metrics=",".join(default_metrics(self.source)) or None)
            return
        view = linked_model(self.source, state)
        wanted = selection_indices(view, state.selected)
        if view is self._view:  # only the selection changed (here or in the address): the plots keep their data
            if sorted(self.data.selected.indices) != wanted:
                self._set_indices(wanted)
            return
        self._view = view
        self._syncing = True
        try:
            self.choose.value = [m["name"] for m in view.metrics]
            self.level.value = view.level
            self.band.param.update(options=view.bands, value=view.band, disabled=len(view.bands) < 2)
        finally:
            self._syncing = False
        table, x_key = view.table, view.keys[-1]
        columns = {"x": table[x_key].to_numpy(), "ra": model.unwrap_ra(table["ra"].to_numpy(float),
                   float(np.nanmedian(table["ra"])) if table["ra"].notna().any() else 180.0),
                   "dec": table["dec"].to_numpy(float), "label": [id_text(dict(zip(view.keys, map(int, ids))))
                                                                   for ids in table[view.keys].itertuples(index=False)]}
        for i in range(MAX_METRICS):
            name = view.metrics[i]["name"] if i < len(view.metrics) else None
            columns[f"m{i}"] = table[name].to_numpy(float) if name else np.full(len(table), np.nan)
        self._set_indices([])
        self.data.data = columns
        self._set_indices(wanted)
        low, high = value_range(columns["m0"])
        self.mapper.update(low=low, high=high)
        for i, (pane, fig) in enumerate(zip(self.panes, self.figures)):
            shown = i < len(view.metrics)
            pane.visible = fig.visible = shown
            if shown:
                entry = view.metrics[i]
                unit = entry.get("unit", "")
                fig.title.text = f"{entry['name']} per {view.level}"
                fig.xaxis.axis_label = x_key
                fig.yaxis.axis_label = f"value ({unit})" if unit else "value"
                fig.tags = ["level:linked", f"metric:{entry['name']}", f"n:{len(table)}"]
        self.sky.tags = ["level:linked", f"n:{len(table)}"]
        self.title.object = (f"<h2 class='sq-title' data-level='linked'>{len(view.metrics)} metrics per "
                             f"{view.level}{' · band ' + html.escape(view.band) if view.band else ''}: "
                             f"{len(table)} data IDs</h2>")

    def _set_indices(self, indices: list[int]) -> None:
        """Select rows from the server (the address, a new view) without writing them back to the address."""
        self._syncing = True
        try:
            self.data.selected.indices = indices
        finally:
            self._syncing = False
        self._selected("indices", None, indices)

    def _selected(self, attr, old, new) -> None:
        view = self._view
        if view is not None and not self._syncing:
            text = selection_text(view, new) if len(new) <= IN_ADDRESS else None
            if text != self.state.selected:
                self.state.selected = text
        if view is None or not new:
            self.selected.object = "<p class='sq-linked-selected'>Nothing selected.</p>"
            return
        rows = view.table.iloc[sorted(new)]
        names = [id_text(dict(zip(view.keys, map(int, ids)))) for ids in rows[view.keys].itertuples(index=False)]
        more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
        self.selected.object = (f"<p class='sq-linked-selected' data-n='{len(names)}'><b>{len(names)} selected</b>: "
                                f"{html.escape(', '.join(names[:LISTED]))}{more}</p>")
