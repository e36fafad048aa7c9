"""The quick-look page (DMTN-085 Fig. 1): header numbers, one coloured button per metric, sky map.

`QuickLookPanel` is built once per browser session; choosing another sky-map metric or band
only replaces the data of its sky figure. The summary itself (one value per metric and band) is
computed once per server (`memo`), since the repository does not change under it.
"""

from __future__ import annotations

import html
import math

import panel as pn

from . import model, plots
from surveyqa.culprits import flag_text

from .source import memo
from .state import DrillState

__all__ = ["QuickLookPanel", "BUTTON_TYPE", "format_value", "open_metric", "summary_label"]

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


#: Culprits listed with a button each; the others are named in one line.
MAX_CULPRITS = 15


def summary_label(row) -> str:
    """A metric button: the stored value where there is one (a band's, a single tract's), else how
    many of its values fail and the worst one with its data ID."""
    band = f" {row.band}" if isinstance(row.band, str) else ""
    level = row.noun or "value"
    where = f" at {row.worst_text}" if isinstance(row.worst_text, str) else ""
    if row.n == 1:
        return f"{row.metric}{band}: {format_value(row.value, row.unit)}{where}"
    if not row.n:
        return f"{row.metric}{band}: no values"
    counted = (f"{row.n_fail}/{row.n} {level}s fail" if row.n_fail else
               f"{row.n} {level}s pass" if row.status == "pass" else f"{row.n} {level}s")
    worst = f", worst {format_value(row.worst, row.unit)}{where}" if where else ""
    return f"{row.metric}{band}: {counted}{worst}"


def metric_view_of(entry: dict) -> str:
    """The view a metric opens in: coadd mode if it has tract/patch/dataset values, visit mode if only visit ones."""
    levels = set(entry.get("levels", []))
    return "metric" if levels & model.COADD_LEVELS - {"dataset"} or not levels & model.VISIT_LEVELS else "visits"


def open_metric(state: DrillState, entry: dict, band) -> None:
    """Open a metric in the view `metric_view_of` says."""
    state.go(view=metric_view_of(entry), metric=entry["name"], band=band)


class QuickLookPanel:
    """The quick look of one session: built once, its sky map updated when its metric or band changes."""

    def __init__(self, source, state: DrillState, title: str):
        self.source, self.state = source, state
        ql = memo(source, ("quicklook", None, None), lambda: model.quicklook(source))
        self.entries = {e["name"]: e for e in model.metric_entries(source)}
        self.summary = ql.summary
        buttons = []
        for row in ql.summary.itertuples(index=False):
            band = row.band if isinstance(row.band, str) else None
            # no ``description``: a tooltip is a Bokeh model per button (115 on the demo), and the colour and
            # label already say the status; the spec is on the metric's page
            button = pn.widgets.Button(label=summary_label(row), button_type=BUTTON_TYPE.get(row.status, "light"),
                                       css_classes=["sq-metric", f"sq-{row.status}"], width=420)
            button.on_click(lambda event, m=row.metric, b=band: open_metric(state, self.entries[m], b))
            buttons.append(button)
        counts = ql.summary["status"].value_counts()
        summary = pn.pane.HTML(
            f"<p class='sq-summary'>{len(ql.summary)} metric values: "
            f"<b style='color:#c62828'>{int(counts.get('fail', 0))} fail</b>, "
            f"<b style='color:#2e7d32'>{int(counts.get('pass', 0))} pass</b>, "
            f"{int(counts.get('none', 0))} without a spec.</p>")
        sky_names = [e["name"] for e in self.entries.values() if set(e.get("levels", [])) & {"tract", "visit"}]
        self.choose_metric = pn.widgets.Select(label="sky map metric", options=sky_names, value=ql.sky_metric,
                                               width=300)
        self.choose_band = pn.widgets.Select(label="band", options=ql.bands, value=ql.sky_band, width=120,
                                             visible=bool(ql.bands))
        self._syncing = False  # True while the widgets are set from the state (their watchers then keep still)
        self.choose_metric.param.watch(
            lambda e: self._syncing or state.param.update(sky_metric=e.new, sky_band=None), "value")
        self.choose_band.param.watch(lambda e: self._syncing or state.param.update(sky_band=e.new), "value")
        self.sky = plots.PolygonPlot("sky", outline_color="#888888", dashed=False)
        self.sky.on_pick(self._drill)
        self._shown, self._key, self._target, self._drawn = None, "tract", (None, None), False
        self.no_sky = pn.pane.HTML("<p>No metric has tract or visit values to map.</p>", visible=not sky_names)
        self.panel = pn.Column(
            pn.pane.HTML(f"<h2>{html.escape(title)} — quick look</h2>"),
            pn.pane.Alert(model.PARTIAL_NOTICE, alert_type="warning", css_classes=["sq-partial"],
                          visible=ql.header.get("run_state") == "partial"),
            pn.pane.HTML(_header_html(ql.header), name="header"),
            self._culprit_list(ql),
            summary,
            pn.FlexBox(*buttons, sizing_mode="stretch_width"),
            pn.Row(self.choose_metric, self.choose_band),
            self.no_sky,
            pn.pane.Bokeh(self.sky.fig, sizing_mode="stretch_width", min_height=420, visible=bool(sky_names)),
            sizing_mode="stretch_width",
        )

    def _culprit_list(self, ql) -> pn.Column:
        """"What is wrong": one row per culprit place, a button to it and what flags it."""
        if not ql.culprits:
            return pn.Column(pn.pane.HTML("<h3>What is wrong</h3><p class='sq-no-culprits'>Nothing: no value fails "
                                          "its specification or stands out, and no quantum failed.</p>"),
                             css_classes=["sq-culprits"])
        rows = [pn.pane.HTML(f"<h3>What is wrong: {len(ql.culprits)} place{'s' if len(ql.culprits) > 1 else ''}"
                             "</h3>")]
        for culprit in ql.culprits[:MAX_CULPRITS]:
            button = pn.widgets.Button(label=culprit.place, button_type="danger", width=230,
                                       css_classes=["sq-culprit-place"])
            button.on_click(lambda event, q=model.culprit_query(culprit): self.state.go(**q))
            lines = "".join(f"<li>{html.escape(flag_text(f, culprit.data_id))}</li>" for f in culprit.flags)
            flags = (f"<div class='sq-culprit-flags' data-place='{html.escape(culprit.place, quote=True)}'>"
                     f"<ul style='margin:0'>{lines}</ul></div>")
            rows.append(pn.Row(button, pn.pane.HTML(flags, sizing_mode="stretch_width"),
                               css_classes=["sq-culprit"], sizing_mode="stretch_width"))
        if len(ql.culprits) > MAX_CULPRITS:
            more = ", ".join(c.place for c in ql.culprits[MAX_CULPRITS:])
            rows.append(pn.pane.HTML(f"<p>and {len(ql.culprits) - MAX_CULPRITS} more: {html.escape(more)}</p>"))
        return pn.Column(*rows, css_classes=["sq-culprits"], sizing_mode="stretch_width")

    def first_clicks(self) -> list[DrillState]:
        """Where a user most likely goes first, one place per mode (coadd, visits), likeliest first.

        In each mode, the first failing metric of the list (else its first metric).
        """
        places: dict[str, DrillState] = {}
        for fails in (True, False):
            for row in self.summary.itertuples(index=False):
                entry = self.entries[row.metric]
                view = metric_view_of(entry)
                if (row.status == "fail") == fails and view not in places:
                    places[view] = DrillState(view=view, metric=row.metric,
                                              band=row.band if isinstance(row.band, str) else None)
        return list(places.values())

    def _drill(self, index: int) -> None:
        metric, band = self._target
        target = {self._key: int(self._shown.iloc[index][self._key])}
        self.state.go(view="metric" if self._key == "tract" else "visits", metric=metric, band=band, **target)

    def update(self) -> None:
        """Draw the sky map of the state's sky metric and band (nothing to do if it is shown already)."""
        state, source = self.state, self.source
        wanted = (state.sky_metric, state.sky_band)
        if wanted == self._drawn or not self.choose_metric.options:
            return
        self._drawn = wanted
        ql = memo(source, ("quicklook",) + wanted, lambda: model.quicklook(source, *wanted))
        self._target = (ql.sky_metric, ql.sky_band)
        self._syncing = True
        try:
            self.choose_metric.value = ql.sky_metric
            self.choose_band.param.update(options=ql.bands, value=ql.sky_band, visible=bool(ql.bands))
        finally:
            self._syncing = False
        if ql.sky_metric is None or not len(ql.sky):
            return
        key = "tract" if "tract" in ql.sky.columns and ql.sky["tract"].notna().any() else "visit"
        geometry = source.tracts() if key == "tract" else source.visits()
        reference = plots.sky_reference(geometry["polygon"]) if len(geometry) else 180.0
        self._key = key
        self._shown = ql.sky.dropna(subset=["polygon"]).reset_index(drop=True)
        base = plots.outline_data(source.tracts(), "tract", reference) if key == "tract" else None
        self.sky.update(plots.polygon_data(ql.sky, key, reference), key, self.entries[ql.sky_metric].get("unit", ""),
                        ["level:quicklook", f"metric:{ql.sky_metric}"], f"{ql.sky_metric} {ql.sky_band or ''}",
                        base=base)
