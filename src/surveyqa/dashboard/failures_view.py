"""The failures page: quanta that failed, listed and drawn on the sky over the tract outlines."""

from __future__ import annotations

import html

import panel as pn
from bokeh.models import ColumnDataSource, HoverTool

from . import logs_view, model, plots

__all__ = ["failures_panel"]


def failures_panel(source, repo: str | None = None) -> pn.viewable.Viewable:
    """List every failed quantum (task, data ID, exception), mark those with a position on the sky, and,
    given the repository, draw their regions coloured by failure class (`logs_view`)."""
    failures = model.failures_view(source)
    items = [pn.pane.HTML(f"<h2 class='sq-title' data-level='failures'>{len(failures)} failed quanta</h2>")]
    partial = model.run_state(source) == "partial"
    if partial:
        items.append(pn.pane.Alert(model.PARTIAL_NOTICE, alert_type="warning", css_classes=["sq-partial"]))
    if not len(failures):
        if not partial:
            items.append(pn.pane.HTML("<p>Every quantum of this run succeeded.</p>"))
        return pn.Column(*items, sizing_mode="stretch_width")
    tracts = source.tracts()
    if {"ra", "dec"} <= set(failures.columns):
        reference = plots.sky_reference(tracts["polygon"]) if len(tracts) else 180.0
        fig = plots.sky_figure(["level:failures"], name="failures_sky", title="failed quanta")
        outlines = fig.multi_line("xs", "ys", source=ColumnDataSource(plots.outline_data(tracts, "tract", reference)),
                                  line_color="#888888", line_width=1.5)
        data = plots.failure_data(failures, reference)
        crosses = fig.scatter("ra", "dec", source=ColumnDataSource(data), marker="x", size=16, line_width=3,
                              color="red")
        fig.add_tools(HoverTool(renderers=[crosses], tooltips=[(c, f"@{c}") for c in data if c not in ("ra", "dec")]),
                      HoverTool(renderers=[outlines], tooltips=[("tract", "@id")]))
        fig.tags = ["level:failures", f"n:{len(data['ra'])}"]
        classes = logs_view.add_class_regions(fig, repo, failures, reference, partial)
        fig.renderers = [r for r in fig.renderers if r is not crosses] + [crosses]  # the crosses over the regions
        items.append(pn.pane.Bokeh(fig, sizing_mode="stretch_width"))
        items.append(logs_view.classes_table(classes))
    shown = failures.drop(columns=[c for c in failures.columns if c == "polygon"])
    items.append(pn.widgets.Tabulator(shown, show_index=False, disabled=True, height=400,
                                      sizing_mode="stretch_width", css_classes=["sq-failures"]))
    items.append(pn.pane.HTML("<p>" + html.escape("Columns: " + ", ".join(map(str, shown.columns))) + "</p>"))
    return pn.Column(*items, sizing_mode="stretch_width")
