"""The compare pages: two QA runs side by side, regressions first, and where on the sky they are.

`CompareQuickLookPanel` lists every metric (and band) of either run with both values, B - A and
what changed, coloured (red regressed, green improved); a click opens `CompareDrillPanel` on that
metric: its tracts (or visits) on the sky coloured by B - A with a diverging palette, B against A
per child with the line of no change, and the children's table, worst change first. Clicking a
tract (patch, visit, detector) goes one level down, as in the single-run metric view; each level
links to the same place in run A's and run B's own drill-down. Like the other pages, both are
built once per session and only their data is replaced at each step.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, HoverTool, HTMLTemplateFormatter, NumberFormatter, Range1d, Slope
from bokeh.palettes import RdBu11
from bokeh.plotting import figure

from . import compare, plots
from .drill_view import resend_tables, set_crumbs_and_band
from .quicklook_view import format_value
from .source import memo
from .state import DrillState

__all__ = ["CompareQuickLookPanel", "CompareDrillPanel", "CHANGE_COLOUR", "compare_kind"]

#: Row colour of each kind of change (the table and the B-against-A plot).
CHANGE_COLOUR = {"regressed": "#ffcdd2", "only in B": "#fff3e0", "only in A": "#fff3e0", "improved": "#c8e6c9",
                 "changed": "#fffde7", "same": "#ffffff"}
#: B - A colours: blue where B is smaller, red where larger (Bokeh's RdBu runs from blue to red).
DELTA_PALETTE = RdBu11
QUICKLOOK_COLUMNS = ["metric", "band", "value_a", "value_b", "delta", "delta_percent", "unit", "status_a",
                     "status_b", "n_fail_a", "n_fail_b", "change"]
CHILD_COLUMNS = ["value_a", "value_b", "delta", "delta_percent", "unit", "status_a", "status_b", "change"]


def compare_kind(entry: dict) -> str:
    """The compare view a metric opens in: coadd (tract/patch values) or visit (visit/detector only)."""
    levels = set(entry.get("levels", []))
    return "compare_metric" if levels & {"tract", "patch", "band"} or not levels & {"visit", "detector"} \
        else "compare_visits"


#: The change cell coloured in the browser (a pandas Styler would restyle every cell on the server at each step).
_CHANGE_TEMPLATE = ("<span class='sq-change-cell' style='display:block;background:<%= "
                    + " : ".join(f"value == '{c}' ? '{colour}'" for c, colour in CHANGE_COLOUR.items())
                    + " : '#ffffff' %>'><%= value %></span>")
#: Four decimals at most for values, one for percentages: what a reader compares by eye.
FORMATTERS = {"value_a": NumberFormatter(format="0.0[000]"), "value_b": NumberFormatter(format="0.0[000]"),
              "delta": NumberFormatter(format="+0.0[000]"), "delta_percent": NumberFormatter(format="+0.0"),
              "change": HTMLTemplateFormatter(template=_CHANGE_TEMPLATE)}


def _table(css: str, height: int) -> pn.widgets.Tabulator:
    table = pn.widgets.Tabulator(pd.DataFrame(), show_index=False, disabled=True, height=height, pagination=None,
                                 layout="fit_data_fill", sizing_mode="stretch_width", css_classes=[css],
                                 formatters=FORMATTERS)
    return table


def _counts_html(changes: pd.Series, what: str) -> str:
    counts = changes.value_counts()
    parts = [f"<b class='sq-change' data-change='{c}' style='background:{CHANGE_COLOUR[c]}'>{int(counts.get(c, 0))} {c}</b>"
             for c in compare.CHANGE_ORDER if counts.get(c, 0)]
    return f"<p class='sq-compare-summary'>{len(changes)} {what}: {', '.join(parts) or 'none'}.</p>"


class CompareQuickLookPanel:
    """Every metric of both runs in one table, worst change first; a click opens its comparison."""

    def __init__(self, a, b, state: DrillState, labels: tuple[str, str]):
        self.a, self.b, self.state = a, b, state
        rows = memo(a, ("compare_quicklook", id(b)), lambda: compare.compare_quicklook(a, b))
        self.rows = rows
        header = memo(a, ("compare_header", id(b)), lambda: compare.compare_header(a, b))
        cells = "".join(
            f"<tr><th>{k}</th><td>{html.escape(str(header['A'].get(k)))}</td>"
            f"<td>{html.escape(str(header['B'].get(k)))}</td></tr>"
            for k in ("tracts", "patches", "visits", "sources"))
        self.table = _table("sq-compare-table", 600)
        self.table.value = rows[[c for c in QUICKLOOK_COLUMNS if c in rows]]
        self.table.on_click(self._open)
        self.panel = pn.Column(
            pn.pane.HTML(f"<h2 class='sq-compare-title'>compare — A: {html.escape(labels[0])} · "
                         f"B: {html.escape(labels[1])}</h2>"
                         f"<table class='sq-compare-header'><tr><th></th><th>A</th><th>B</th></tr>{cells}</table>"),
            pn.pane.HTML(_counts_html(rows["change"], "metric values") +
                         "<p>delta = B - A in A's unit; a row is <i>regressed</i> when B fails a spec A passed or"
                         " has more failing values. Click a row to see where.</p>"),
            self.table, sizing_mode="stretch_width")

    def _open(self, event) -> None:
        self.state.go(**self._place(self.table.value.iloc[event.row]))

    def _place(self, row) -> dict:
        entry = compare._entry(self.a, self.b, row["metric"])
        band = row["band"] if isinstance(row["band"], str) else None
        return {"view": compare_kind(entry), "metric": row["metric"], "band": band}

    def first_clicks(self) -> list[DrillState]:
        """Where a user most likely goes first: the first row, the worst change."""
        return [DrillState(**self._place(self.table.value.iloc[0]))] if len(self.table.value) else []

    def update(self) -> None:
        """Nothing to redraw: the two runs do not change under the server."""


class CompareDrillPanel:
    """One metric of both runs at one level: sky map of B - A, B against A, the children's table."""

    def __init__(self, a, b, state: DrillState, labels: tuple[str, str]):
        self.a, self.b, self.state, self.labels = a, b, state, labels
        self._syncing = False
        self._view: compare.CompareView | None = None
        self._shown: pd.DataFrame = pd.DataFrame()
        self._drawn_ahead = False  # the last update drew a place ahead of the user (`update(state)`)
        self.crumbs = pn.widgets.RadioButtonGroup(options=["compare"], value="compare", button_type="primary",
                                                  css_classes=["sq-crumb"])
        self.crumbs.param.watch(self._go_crumb, "value")
        # always shown (disabled with one band): a change of visibility would lay the page out again
        self.band = pn.widgets.Select(label="band", options=[], width=120, disabled=True)
        self.band.param.watch(lambda e: self._syncing or state.param.update(band=e.new or None), "value")
        self.describe = pn.pane.HTML("", sizing_mode="stretch_width")
        self.links = pn.Row(pn.widgets.Button(label="open in A", css_classes=["sq-open-a"]),
                            pn.widgets.Button(label="open in B", css_classes=["sq-open-b"]))
        self.links[0].on_click(lambda e: self._open_side("a"))
        self.links[1].on_click(lambda e: self._open_side("b"))
        self.sky = plots.PolygonPlot("compare_sky")
        self.sky.mapper.palette = DELTA_PALETTE
        self.sky.fig.title.text = "B - A on the sky: click one to open it"
        self.sky.on_pick(self._pick_polygon)
        self.sky_pane = pn.pane.Bokeh(self.sky.fig, sizing_mode="stretch_width", min_height=420)
        self.ab_source = ColumnDataSource({"a": [], "b": [], "id": [], "change": [], "colour": []})
        # explicit ranges, one for both axes (the line of no change stays the diagonal), set from the data:
        # data ranges would make the first data add the axes and lay the page out again (`plots.steady`)
        self.ab = plots.steady(figure(name="compare_ab", height=380, sizing_mode="stretch_width",
                                      tools="pan,wheel_zoom,reset", x_range=Range1d(0.0, 1.0), y_range=Range1d(0.0, 1.0),
                                      title="B against A, one point per child: off the line is a change"))
        self.ab.scatter("a", "b", source=self.ab_source, size=8, color="colour", line_color="black")
        self.ab.add_layout(Slope(gradient=1, y_intercept=0, line_color="grey", line_dash="dashed"))
        self.ab_hover = HoverTool(tooltips=[("id", "@id"), ("A", "@a"), ("B", "@b"), ("change", "@change")])
        self.ab.add_tools(self.ab_hover)
        self.children_title = pn.pane.HTML("")
        self.children_table = _table("sq-compare-children", 420)
        self.children_table.on_click(self._pick_row)
        self.children = pn.Column(
            self.children_title,
            pn.Row(pn.Column(self.sky_pane, sizing_mode="stretch_width"),
                   pn.Column(pn.pane.Bokeh(self.ab, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            self.children_table, sizing_mode="stretch_width")
        self.panel = pn.Column(self.crumbs, pn.Row(self.band, self.links), self.describe, self.children,
                               sizing_mode="stretch_width")

    # -- clicks ------------------------------------------------------------------------------
    def _go_crumb(self, event) -> None:
        if self._syncing or self._view is None:
            return
        labels = [c["label"] for c in self._view.breadcrumbs]
        if event.new in labels[:-1]:
            self.state.go(**self._view.breadcrumbs[labels.index(event.new)]["query"])

    def _open_side(self, side: str) -> None:
        view = self._view
        mode = "visits" if view.mode == "visit" else "metric"
        place = {k: v for k, v in view.selection.items() if v is not None}
        self.state.go(view=mode, metric=view.metric["name"], band=view.band, side=side, **place)

    def _pick(self, value: int) -> None:
        key = self._view.child_key
        changes = {key: int(value)}
        changes.update({"patch": None} if key == "tract" else {"detector": None} if key == "visit" else {})
        self.state.param.update(**changes)

    def _pick_polygon(self, index: int) -> None:
        self._pick(self._shown.iloc[index][self._view.child_key])

    def _pick_row(self, event) -> None:
        self._pick(self.children_table.value.iloc[event.row][self._view.child_key])

    # -- drawing -----------------------------------------------------------------------------
    def update(self, state: DrillState | None = None) -> None:
        """Show the state's place (``state``: another place, for a page drawn ahead of its first click)."""
        ahead = state is not None and state is not self.state
        state, a, b = state or self.state, self.a, self.b
        if self._drawn_ahead and not ahead:
            resend_tables([self.children_table])
        self._drawn_ahead = ahead
        mode = "visit" if state.view == "compare_visits" else "coadd"
        key = ("compare_view", id(b), mode, state.metric, state.band, state.tract, state.patch, state.visit,
               state.detector)
        view = memo(a, key, lambda: compare.compare_view(
            a, b, state.metric, state.band, mode=mode, tract=state.tract if mode == "coadd" else None,
            patch=state.patch if mode == "coadd" else None, visit=state.visit if mode == "visit" else None,
            detector=state.detector if mode == "visit" else None))
        self._view = view
        unit = view.metric.get("unit", "")
        tags = ["compare", f"level:{view.level}"] + [f"{k}:{v}" for k, v in view.selection.items() if v is not None]
        self._syncing = True
        try:
            set_crumbs_and_band(self.crumbs, self.band, view)
        finally:
            self._syncing = False
        self.describe.object = self._describe(view, unit)
        children = view.children
        self.children.visible = view.child_key is not None and len(children) > 0
        if not self.children.visible:
            return
        key_name = view.child_key
        self.children_title.object = (f"<h3>{key_name}{'es' if key_name.endswith('ch') else 's'} of "
                                      f"{html.escape(view.metric['name'])}</h3>"
                                      + _counts_html(children["change"], f"{key_name} values"))
        self.children_table.value = children[[key_name] + [c for c in CHILD_COLUMNS if c in children]]
        regressed = children.loc[children["change"] == "regressed", key_name].astype(int).tolist()
        tags.append(f"regressed:{','.join(str(v) for v in regressed)}")
        drawn = children.dropna(subset=["polygon"]).reset_index(drop=True) if "polygon" in children else children.iloc[0:0]
        self._shown = drawn
        reference = plots.sky_reference(drawn["polygon"]) if len(drawn) else 180.0
        data = plots.polygon_data(drawn.assign(value=drawn["delta"], status=drawn["change"]), key_name, reference)
        self.sky.update(data, key_name, unit, tags, None)
        spread = np.nanmax(np.abs(data["value"])) if len(data["value"]) and np.isfinite(data["value"]).any() else 0.0
        spread = float(spread) or 1e-9
        self.sky.mapper.update(low=-spread, high=spread)
        self.sky.colorbar.title = f"B - A ({unit})" if unit else "B - A"
        self.ab_source.data = {
            "a": children["value_a"].to_numpy(dtype=float), "b": children["value_b"].to_numpy(dtype=float),
            "id": children[key_name].astype(int).to_numpy(),
            "change": children["change"].to_numpy(dtype=str),
            "colour": np.where(children["change"] == "regressed", "#c62828",
                               np.where(children["change"] == "improved", "#2e7d32", "#1f77b4"))}
        both = np.concatenate([self.ab_source.data["a"], self.ab_source.data["b"]])
        both = both[np.isfinite(both)]
        low, high = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
        pad = 0.05 * (high - low) or max(abs(high), 1.0) * 0.05
        self.ab.x_range.update(start=low - pad, end=high + pad)
        self.ab.y_range.update(start=low - pad, end=high + pad)
        self.ab.xaxis.axis_label = f"A: {self.labels[0]} ({unit})" if unit else f"A: {self.labels[0]}"
        self.ab.yaxis.axis_label = f"B: {self.labels[1]} ({unit})" if unit else f"B: {self.labels[1]}"
        self.ab.tags = tags

    def _describe(self, view: compare.CompareView, unit: str) -> str:
        where = ", ".join(f"{k} {v}" for k, v in view.selection.items() if v is not None) or "all data"
        items = ""
        for row in view.own.itertuples(index=False):
            band = f" {row.band}" if isinstance(row.band, str) and row.band else ""
            items += (f"<li class='sq-own-compare' data-change='{row.change}' "
                      f"style='background:{CHANGE_COLOUR.get(row.change, '#fff')}'>{row.level}{band}: "
                      f"A {format_value(row.value_a, row.unit)} ({row.status_a}) → "
                      f"B {format_value(row.value_b, row.unit)} ({row.status_b}): <b>{row.change}</b></li>")
        return (f"<h2 class='sq-title' data-level='{view.level}'>compare {html.escape(view.metric['name'])} — "
                f"{html.escape(where)}</h2><p>{html.escape(view.metric.get('description', ''))}</p>"
                f"<p>A: {html.escape(self.labels[0])} · B: {html.escape(self.labels[1])} · unit: "
                f"{html.escape(unit or 'dimensionless')}</p><ul>{items}</ul>")
