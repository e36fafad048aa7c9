"""The quick-look page (DMTN-085 Fig. 1): header numbers, one coloured button per metric, sky map."""

from __future__ import annotations

import html
import math

import panel as pn

from . import model, plots
from .state import DrillState

__all__ = ["quicklook_panel", "BUTTON_TYPE", "format_value"]

#: Metric status -> Bokeh button type (green pass, red fail, grey no spec).
BUTTON_TYPE = {"pass": "success", "fail": "danger", "none": "light"}


def format_value(value, unit: str | None) -> str:
    """A value with its unit, three significant digits ('n/a' when it could not be computed)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3g} {unit}".strip() if isinstance(value, float) else f"{value} {unit or ''}".strip()


def _header_html(header: dict) -> str:
    per_band = ", ".join(f"{band}: {n}" for band, n in sorted(header.get("visits_per_band", {}).items()))
    items = [("tracts", header.get("tracts")), ("patches", header.get("patches")),
             ("visits", f"{header.get('visits')} ({per_band})" if per_band else header.get("visits")),
             ("sources", f"{header['sources']:,}" if header.get("sources") is not None else "n/a")]
    cells = "".join(f"<div class='sq-count' data-key='{k}'><b>{html.escape(str(v))}</b><br>{k}</div>"
                    for k, v in items)
    return f"<div class='sq-header' style='display:flex;gap:2em;font-size:1.1em'>{cells}</div>"


def _open_metric(state: DrillState, entries: dict, metric: str, band) -> None:
    levels = set(entries[metric].get("levels", []))
    view = "metric" if levels & model.COADD_LEVELS - {"dataset"} or not levels & model.VISIT_LEVELS else "visits"
    state.go(view=view, metric=metric, band=band)


def quicklook_panel(source, state: DrillState, title: str) -> pn.viewable.Viewable:
    """Build the quick-look page for one session's state."""
    ql = model.quicklook(source, state.sky_metric, state.sky_band)
    entries = {e["name"]: e for e in model.metric_entries(source)}
    buttons = []
    for row in ql.summary.itertuples(index=False):
        band = row.band if isinstance(row.band, str) else None
        label = f"{row.metric}{' ' + band if band else ''}: {format_value(row.value, row.unit)}"
        button = pn.widgets.Button(label=label, button_type=BUTTON_TYPE.get(row.status, "light"),
                                   description=f"status: {row.status}; spec: {row.spec or 'none'}",
                                   css_classes=[f"sq-metric", f"sq-{row.status}"], width=300)
        button.on_click(lambda event, m=row.metric, b=band: _open_metric(state, entries, m, b))
        buttons.append(button)
    failed = int((ql.summary["status"] == "fail").sum())
    summary = pn.pane.HTML(
        f"<p class='sq-summary'>{len(ql.summary)} metric values: "
        f"<b style='color:#c62828'>{failed} fail</b>, "
        f"<b style='color:#2e7d32'>{int((ql.summary['status'] == 'pass').sum())} pass</b>, "
        f"{int((ql.summary['status'] == 'none').sum())} without a spec.</p>")

    sky_names = [e["name"] for e in entries.values() if set(e.get("levels", [])) & {"tract", "visit"}]
    choose_metric = pn.widgets.Select(label="sky map metric", options=sky_names, value=ql.sky_metric, width=300)
    choose_band = pn.widgets.Select(label="band", options=ql.bands, value=ql.sky_band, width=120,
                                    visible=bool(ql.bands))
    choose_metric.param.watch(lambda e: state.param.update(sky_metric=e.new, sky_band=None), "value")
    choose_band.param.watch(lambda e: state.param.update(sky_band=e.new), "value")

    sky_panel = pn.pane.HTML("<p>No metric has tract or visit values to map.</p>")
    if ql.sky_metric is not None:
        key = "tract" if "tract" in ql.sky.columns and ql.sky["tract"].notna().any() else "visit"
        geometry = source.tracts() if key == "tract" else source.visits()
        reference = plots.sky_reference(geometry["polygon"]) if len(geometry) else 180.0
        unit = entries[ql.sky_metric].get("unit", "")
        fig = plots.sky_figure(["level:quicklook", f"metric:{ql.sky_metric}"],
                               title=f"{ql.sky_metric} {ql.sky_band or ''}")
        if key == "tract" and len(geometry):
            plots.add_outlines(fig, geometry, "tract", reference, color="#888888", dashed=False)
        shown = ql.sky.dropna(subset=["polygon"]).reset_index(drop=True)
        data = plots.add_polygons(fig, ql.sky, key, unit, reference)

        def drill(attr, old, new, shown=shown, metric=ql.sky_metric, band=ql.sky_band, key=key):
            if new:
                target = {key: int(shown.iloc[new[0]][key])}
                state.go(view="metric" if key == "tract" else "visits", metric=metric, band=band, **target)

        data.selected.on_change("indices", drill)
        sky_panel = pn.pane.Bokeh(fig, sizing_mode="stretch_width", min_height=420)
    return pn.Column(
        pn.pane.HTML(f"<h2>{html.escape(title)} — quick look</h2>"),
        pn.pane.HTML(_header_html(ql.header), name="header"),
        summary,
        pn.FlexBox(*buttons, sizing_mode="stretch_width"),
        pn.Row(choose_metric, choose_band),
        sky_panel,
        sizing_mode="stretch_width",
    )
