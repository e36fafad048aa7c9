"""Two QA runs side by side: what changed between repository A (the reference) and B.

DMTN-085 asks for the dashboard "on any repository, or two compared": a developer reruns the
pipeline with a new version (or on new data) and wants to see at once which metrics got worse,
and where. This module computes the comparison from two `DataSource`s with pandas only (no web
code): the quick-look rows of both, matched on (metric, band), and, for one metric, the children
of a drill-down level (tracts, patches, visits, detectors) of both, matched on their data ID.

A row's ``change`` says what happened to it, worst first in `CHANGE_ORDER`:

``regressed``
    B fails where A did not, or B has more failing values than A.
``improved``
    The reverse.
``only in A`` / ``only in B``
    The metric (or data ID) has a value in one run only.
``changed``
    Same spec status, different value (beyond a relative 1e-9).
``same``
    Same status and value.

``delta`` is B - A in A's unit (B's value converted with astropy when the runs store different
units); ``delta_percent`` is relative to ``|A|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import astropy.units as u
import numpy as np
import pandas as pd

from surveyqa.errors import SurveyQAError

from . import model
from .source import DataSource, memo

__all__ = ["CHANGE_ORDER", "CompareView", "compare_quicklook", "compare_view", "change_of", "compare_header"]

#: Worst first: a table sorted by this order shows regressions on top.
CHANGE_ORDER = ["regressed", "only in B", "only in A", "improved", "changed", "same"]
#: Relative difference under which two values are the same number.
SAME_RTOL = 1e-9


def change_of(status_a, status_b, fail_a: float, fail_b: float, value_a: float, value_b: float,
              in_a: bool = True, in_b: bool = True) -> str:
    """What happened to one value between run A and run B (see the module docstring)."""
    if not in_b:
        return "only in A"
    if not in_a:
        return "only in B"
    fail_a, fail_b = (0.0 if f is None or (isinstance(f, float) and math.isnan(f)) else float(f)
                      for f in (fail_a, fail_b))
    if (status_b == "fail" and status_a != "fail") or fail_b > fail_a:
        return "regressed"
    if (status_a == "fail" and status_b != "fail") or fail_a > fail_b:
        return "improved"
    a, b = float(value_a), float(value_b)
    if math.isnan(a) and math.isnan(b):
        return "same"
    if math.isnan(a) != math.isnan(b) or abs(b - a) > SAME_RTOL * max(abs(a), abs(b), 1e-300):
        return "changed"
    return "same"


def _in_unit(values: pd.Series, units: pd.Series, target: pd.Series) -> np.ndarray:
    """``values`` (each in its row's unit) converted into the ``target`` row's unit (astropy)."""
    out = values.astype(float).to_numpy().copy()
    for i, (have, want) in enumerate(zip(units, target)):
        if not isinstance(have, str) or not isinstance(want, str) or have == want or not math.isfinite(out[i]):
            continue
        try:
            out[i] = (out[i] * u.Unit(have)).to_value(u.Unit(want))
        except (ValueError, u.UnitConversionError) as exc:
            raise SurveyQAError(f"run B stores a value in {have!r} where run A uses {want!r}: {exc}",
                                "compare runs of the same metric definitions") from exc
    return out


def _merge(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], fail_column: str | None) -> pd.DataFrame:
    """Rows of A and B matched on ``keys`` (outer), with delta, delta_percent and change."""
    columns = ["value", "unit", "status"] + ([fail_column] if fail_column else [])
    left = a[keys + [c for c in columns if c in a]].assign(_in_a=True)
    right = b[keys + [c for c in columns if c in b]].assign(_in_b=True)
    merged = left.merge(right, on=keys, how="outer", suffixes=("_a", "_b"))
    merged["_in_a"] = merged["_in_a"].astype("boolean").fillna(False).astype(bool)
    merged["_in_b"] = merged["_in_b"].astype("boolean").fillna(False).astype(bool)
    merged["unit"] = merged["unit_a"].where(merged["unit_a"].notna(), merged["unit_b"])
    merged["value_a"] = merged["value_a"].astype(float)
    merged["value_b"] = _in_unit(merged["value_b"], merged["unit_b"], merged["unit"]) if len(merged) else []
    merged["delta"] = merged["value_b"] - merged["value_a"]
    with np.errstate(divide="ignore", invalid="ignore"):
        merged["delta_percent"] = 100.0 * merged["delta"] / merged["value_a"].abs()
    fa = merged[f"{fail_column}_a"] if fail_column else pd.Series(0.0, index=merged.index)
    fb = merged[f"{fail_column}_b"] if fail_column else pd.Series(0.0, index=merged.index)
    merged["change"] = [change_of(sa, sb, xa, xb, va, vb, ia, ib) for sa, sb, xa, xb, va, vb, ia, ib in zip(
        merged["status_a"], merged["status_b"], fa, fb, merged["value_a"], merged["value_b"],
        merged["_in_a"], merged["_in_b"])]
    order = {c: i for i, c in enumerate(CHANGE_ORDER)}
    merged["_order"] = merged["change"].map(order)
    merged["_size"] = -merged["delta_percent"].abs().fillna(0.0)
    merged = merged.sort_values(["_order", "_size"] + keys, kind="stable")
    return merged.drop(columns=["_order", "_size", "_in_a", "_in_b", "unit_a", "unit_b"]).reset_index(drop=True)


def compare_header(a: DataSource, b: DataSource) -> dict:
    """The quick-look counts (tracts, patches, visits, sources) of both runs: ``{"A": ..., "B": ...}``."""
    return {name: memo(s, ("quicklook", None, None), lambda s=s: model.quicklook(s)).header
            for name, s in (("A", a), ("B", b))}


def compare_quicklook(a: DataSource, b: DataSource) -> pd.DataFrame:
    """Every metric (and band) of either run: both values, the difference and what changed, worst first.

    Each run is summarised as its own quick look does (the stored value where one stands for the
    band, else its worst stored value, with the number of failing values), so a metric whose
    failing detectors went from 0 to 3 is a regression.
    """
    ql_a, ql_b = (memo(s, ("quicklook", None, None), lambda s=s: model.quicklook(s)).summary for s in (a, b))
    # copies (the summaries are shared), compared on the value the quick look shows
    ql_a, ql_b = (q.assign(band=q["band"].fillna(""), value=q["value"].where(q["value"].notna(), q["worst"]))
                  for q in (ql_a, ql_b))
    merged = _merge(ql_a, ql_b, ["metric", "band"], "n_fail")
    merged["band"] = merged["band"].replace("", None)
    for side, summary in (("a", ql_a), ("b", ql_b)):
        n = summary.set_index(["metric", "band"])["n"]
        merged[f"n_{side}"] = [n.get((m, bd or ""), np.nan) for m, bd in zip(merged["metric"], merged["band"])]
    return merged


@dataclass
class CompareView:
    """One drill-down level of one metric in both runs: the level's own values and its children's."""

    mode: str                 # "coadd" or "visit"
    metric: dict              # manifest entry (from A, else B)
    level: str
    band: str | None
    bands: list[str]
    selection: dict
    breadcrumbs: list[dict]
    own: pd.DataFrame         # the selected thing's values: one row per (level, band), both runs
    children: pd.DataFrame    # one row per child data ID, both runs, with polygon
    child_key: str | None

    def to_json(self) -> dict:
        children = self.children.drop(columns=["polygon"], errors="ignore")
        return {"mode": self.mode, "metric": self.metric["name"], "unit": self.metric.get("unit", ""),
                "level": self.level, "band": self.band, "bands": self.bands, "selection": self.selection,
                "breadcrumbs": self.breadcrumbs, "child_key": self.child_key,
                "values": model._records(self.own), "children": model._records(children),
                "counts": {c: int((self.children["change"] == c).sum()) for c in CHANGE_ORDER}
                if len(self.children) else {}}


def _entry(a: DataSource, b: DataSource, metric: str) -> dict:
    try:
        return model.metric_entry(a, metric)
    except SurveyQAError:
        try:
            return model.metric_entry(b, metric)
        except SurveyQAError:
            known = ", ".join(e["name"] for e in model.metric_entries(a)[:10])
            raise SurveyQAError(f"no metric {metric!r} in either repository",
                                f"known metrics include: {known}") from None


def _side_view(source: DataSource, mode: str, metric: str, band, first, second) -> model.DrillView | None:
    """One run's drill view, or None when that run has no such metric."""
    try:
        model.metric_entry(source, metric)
    except SurveyQAError:
        return None
    if mode == "visit":
        key = ("visit_view", metric, band, first, second)
        return memo(source, key, lambda: model.visit_view(source, metric, band, first, second))
    key = ("metric_view", metric, band, first, second)
    return memo(source, key, lambda: model.metric_view(source, metric, band, first, second))


def compare_view(a: DataSource, b: DataSource, metric: str, band: str | None = None, *, mode: str = "coadd",
                 tract: int | None = None, patch: int | None = None, visit: int | None = None,
                 detector: int | None = None) -> CompareView:
    """One metric in both runs at one drill-down level: coadd (tract -> patch) or visit (visit -> detector).

    The children (tracts of the dataset, patches of a tract, visits, detectors of a visit) of A
    and B are matched on their data ID; their polygons come from A (from B for a child only B has).
    """
    if mode not in ("coadd", "visit"):
        raise SurveyQAError(f"unknown comparison mode {mode!r}", "use mode coadd or visit")
    entry = _entry(a, b, metric)
    first, second = (visit, detector) if mode == "visit" else (tract, patch)
    views = [_side_view(s, mode, metric, band, first, second) for s in (a, b)]
    present = [v for v in views if v is not None]
    bands = sorted(set().union(*(v.bands for v in present)))
    band = band if band in bands else (present[0].band if present else None)
    if band != (present[0].band if present else None) or any(v.band != band for v in present):
        views = [_side_view(s, mode, metric, band, first, second) for s in (a, b)]
        present = [v for v in views if v is not None]
    shape = present[0]
    empty = pd.DataFrame(columns=["level", "band", "value", "unit", "status"])
    own_a, own_b = (v.values.assign(band=v.values["band"].fillna("")) if v is not None and len(v.values) else empty
                    for v in views)  # copies: the views are shared by every session
    own = _merge(own_a, own_b, ["level", "band"], None) if len(own_a) or len(own_b) else pd.DataFrame()
    key = shape.child_key
    children = pd.DataFrame()
    if key is not None:
        kids = [v.children.assign(**{key: v.children[key].astype("int64")})
                if v is not None and len(v.children) else pd.DataFrame(columns=[key, "value", "unit", "status"])
                for v in views]  # copies: the views are shared by every session
        if len(kids[0]) or len(kids[1]):
            children = _merge(kids[0], kids[1], [key], None)
            polygons = pd.concat([k[[key, "polygon"]] for k in kids if "polygon" in k and len(k)])
            polygons = polygons.dropna(subset=["polygon"]).drop_duplicates(subset=[key])
            children = children.merge(polygons, on=key, how="left") if len(polygons) else children.assign(polygon=None)
            children["outlier"] = model.flag_outliers(children["delta"])
    crumbs = [{"label": "compare", "query": {"view": "compare"}}]
    view_name = "compare_visits" if mode == "visit" else "compare_metric"
    crumbs.append({"label": metric, "query": {"view": view_name, "metric": metric, "band": band}})
    names = ("visit", "detector") if mode == "visit" else ("tract", "patch")
    if first is not None:
        crumbs.append({"label": f"{names[0]} {first}",
                       "query": {"view": view_name, "metric": metric, "band": band, names[0]: first}})
    if second is not None:
        crumbs.append({"label": f"{names[1]} {second}", "query": {
            "view": view_name, "metric": metric, "band": band, names[0]: first, names[1]: second}})
    return CompareView(mode, entry, shape.level, band, bands, dict(shape.selection), crumbs, own, children, key)
