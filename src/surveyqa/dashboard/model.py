"""What each page shows, computed from a `DataSource` with pandas only (no web code).

Every page of the dashboard and its JSON twin are built from the objects returned here, so the
numbers in the browser and in ``/api/...json`` are the same numbers. Values keep their unit
(the ``unit`` column / key, an astropy unit string); coordinates are degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from surveyqa.culprits import Culprit, row_id, find_culprits, flag_text, id_text, worst_value
from surveyqa.errors import SurveyQAError

from .source import DataSource, memo

__all__ = [
    "LEVEL_ORDER", "metric_entries", "metric_entry", "quicklook", "QuickLook", "DrillView",
    "metric_view", "visit_view", "failures_view", "flag_outliers", "unwrap_ra", "row_columns",
    "run_state", "PARTIAL_NOTICE", "culprit_query", "SUMMARY_COLUMNS", "FocalPlane", "focal_plane",
]

#: From the most rolled-up level to the finest.
LEVEL_ORDER = ["dataset", "band", "tract", "patch", "visit", "detector"]
COADD_LEVELS = {"dataset", "band", "tract", "patch"}
VISIT_LEVELS = {"visit", "detector"}
#: Robust z-score (|x - median| / (1.4826 MAD)) above which a value is drawn as an outlier.
OUTLIER_Z = 3.5


def metric_entries(source: DataSource) -> list[dict]:
    """The manifest's metric entries, in manifest order."""
    return list(source.manifest().get("metrics", []))


def metric_entry(source: DataSource, name: str) -> dict:
    """One metric's manifest entry; a `SurveyQAError` naming the known metrics if absent."""
    for entry in metric_entries(source):
        if entry["name"] == name:
            return entry
    known = ", ".join(e["name"] for e in metric_entries(source)[:10])
    raise SurveyQAError(f"no metric {name!r} in this repository", f"known metrics include: {known}")


def _status(statuses: pd.Series) -> str:
    values = set(statuses.dropna())
    if "fail" in values:
        return "fail"
    if "pass" in values:
        return "pass"
    return "none"


def _top_level(levels: pd.Series) -> str:
    present = set(levels.dropna())
    return next(level for level in LEVEL_ORDER if level in present)


@dataclass
class QuickLook:
    """The landing page: header numbers, what is wrong (culprits, worst first), one summary row
    per (metric, band), the sky map."""

    header: dict
    summary: pd.DataFrame
    sky_metric: str | None
    sky_band: str | None
    sky: pd.DataFrame
    bands: list[str] = field(default_factory=list)
    culprits: list[Culprit] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "header": self.header,
            "culprits": [{**c.to_json(), "query": culprit_query(c),
                          "lines": [flag_text(f, c.data_id) for f in c.flags]} for c in self.culprits],
            "metrics": _records(self.summary),
            "sky": {"metric": self.sky_metric, "band": self.sky_band, "bands": self.bands,
                    "values": _records(self.sky)},
        }


def quicklook(source: DataSource, sky_metric: str | None = None, band: str | None = None) -> QuickLook:
    """Summarise a repository: counts, each metric at its most rolled-up level against its spec.

    Parameters
    ----------
    source : DataSource
        The repository.
    sky_metric : str, optional
        Metric drawn on the sky map; the first metric with tract (or visit) values if omitted.
    band : str, optional
        Band of the sky map; the first band with values if omitted.
    """
    entries = metric_entries(source)
    # the same for every sky map a session picks: computed once per server
    summary, found = memo(source, ("quicklook_summary",), lambda: _summary_and_culprits(source, entries))
    sky_candidates = [e["name"] for e in entries if set(e.get("levels", [])) & {"tract", "visit"}]
    if sky_metric is None and sky_candidates:
        sky_metric = sky_candidates[0]
    sky, bands = pd.DataFrame(), []
    if sky_metric is not None:
        sky, bands, band = _sky_values(source, sky_metric, band)
    return QuickLook(_header(source), summary, sky_metric, band, sky, bands, found)


def _summary_and_culprits(source: DataSource, entries: list[dict]) -> tuple[pd.DataFrame, list[Culprit]]:
    """One summary row per (metric, band) and the run's culprits, from every stored value."""
    everything = source.metric_values()
    by_metric = dict(tuple(everything.groupby("metric", sort=False))) if len(everything) else {}
    rows = []
    for entry in entries:
        values = by_metric.get(entry["name"], pd.DataFrame())
        if not len(values):
            rows.append({"metric": entry["name"], "band": None, "value": math.nan, "unit": entry.get("unit", ""),
                         "level": None, "status": "none", "spec": None, "threshold": math.nan, "n": 0,
                         "n_fail": 0, "worst": math.nan, "worst_id": None, "worst_text": None, "noun": None,
                         "note": "no values"})
            continue
        for band_name, group in values.groupby(values["band"].fillna(""), sort=True):
            rows.append(_summary_row(entry, band_name or None, group))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS), find_culprits(everything, source.failures())


#: Columns of `QuickLook.summary`.
SUMMARY_COLUMNS = ["metric", "band", "value", "unit", "level", "status", "spec", "threshold", "n", "n_fail",
                   "worst", "worst_id", "worst_text", "noun", "note"]


def _summary_row(entry: dict, band: str | None, values: pd.DataFrame) -> dict:
    """One metric and band: the values of the coarsest level that has failures (else the coarsest
    level), how many fail, and the worst with its data ID. ``value`` is a stored value only where
    that level has one (a band's or a single tract's); no aggregate of stored values is made here,
    since none but the metric's own is defined."""
    levels = [lv for lv in LEVEL_ORDER if (values["level"] == lv).any()]
    failing = [lv for lv in levels if (values.loc[values["level"] == lv, "status"] == "fail").any()]
    level = failing[0] if failing else levels[0]
    shown = values[values["level"] == level]
    worst = worst_value(shown, entry.get("higher_is_better"))
    worst_id = row_id(worst) if worst is not None else None
    single = shown.iloc[0] if len(shown) == 1 else None
    spec = shown["spec"].dropna()
    return {"metric": entry["name"], "band": band, "unit": shown["unit"].iloc[0], "level": level,
            "value": float(single["value"]) if single is not None else math.nan,
            "status": _status(values["status"]), "spec": spec.iloc[0] if len(spec) else None,
            "threshold": float(single["threshold"]) if single is not None and pd.notna(single["threshold"])
            else math.nan, "n": int(len(shown)), "n_fail": int((shown["status"] == "fail").sum()),
            "worst": float(worst["value"]) if worst is not None else math.nan, "worst_id": worst_id,
            "worst_text": id_text(worst_id) if worst_id else None,
            "noun": f"{level} column" if "column" in shown and shown["column"].notna().any() else level,
            "note": single["note"] if single is not None and pd.notna(single["note"]) else None}


def culprit_query(culprit: Culprit) -> dict:
    """The page a culprit opens: its place, in the view of the first metric that flags it."""
    flag = culprit.flags[0]
    if flag.get("task"):
        return {"view": "failures"}
    ids = {k: v for k, v in culprit.data_id.items() if k in ("tract", "patch", "visit", "detector")}
    query = {"metric": flag["metric"], "band": flag.get("band")}
    if culprit.kind == "focal_detector":
        return {"view": "focalplane", **query, **ids}
    if "visit" in ids:
        return {"view": "visits", **query, **ids}
    return {"view": "metric", **query, **ids}


def _sky_values(source: DataSource, metric: str, band: str | None) -> tuple[pd.DataFrame, list, str | None]:
    """Per-tract (or, for visit metrics, per-visit) values of one metric and band, with polygons."""
    entry = metric_entry(source, metric)
    values = source.metric_values(metric=metric)
    level = "tract" if (values["level"] == "tract").any() else "visit"
    values = values[values["level"] == level]
    bands = sorted(values["band"].dropna().unique().tolist())
    if bands:
        band = band if band in bands else bands[0]
        values = _band_filter(values, band)
    geometry = source.tracts() if level == "tract" else source.visits()
    values = rollup(values, [level], entry.get("higher_is_better"))
    return _with_polygons(values, geometry, level), bands, band


def run_state(source: DataSource) -> str:
    """``'complete'`` or ``'partial'`` (a run interrupted before it finished); sources that do not
    say are complete."""
    return getattr(source, "state", "complete")


PARTIAL_NOTICE = ("This run is partial: it was interrupted before it finished, so some values are missing "
                  "and quanta that never ran are not listed as failed. "
                  "`surveyqa run REPO -o COLLECTION --resume` completes it.")


def _header(source: DataSource) -> dict:
    tracts = source.tracts()
    visits = source.visits()
    header: dict[str, Any] = {"run_state": run_state(source), "tracts": int(len(tracts))}
    if "n_patches" in tracts:
        header["patches"] = int(tracts["n_patches"].sum())
    else:
        patch_rows = source.metric_values(level="patch")
        header["patches"] = int(len(patch_rows[["tract", "patch"]].drop_duplicates())) if len(patch_rows) else 0
    header["visits"] = int(len(visits))
    header["visits_per_band"] = ({str(k): int(v) for k, v in visits.groupby("band").size().items()}
                                 if len(visits) and "band" in visits else {})
    for column in ("n_sources", "sources"):
        if column in visits:
            header["sources"] = int(visits[column].sum())
            break
    else:
        header["sources"] = source.manifest().get("counts", {}).get("sources")
        if header["sources"] is None:
            detectors = source.detector_values()
            if "sourceCount" in detectors:
                header["sources"] = int(detectors["sourceCount"].sum())
    return header


def _with_polygons(values: pd.DataFrame, geometry: pd.DataFrame, key: str | list[str]) -> pd.DataFrame:
    keys = [key] if isinstance(key, str) else key
    values = values.copy()
    if not len(geometry) or "polygon" not in geometry:
        values["polygon"] = None
        return values
    geometry = geometry[keys + ["polygon"]].drop_duplicates(subset=keys)
    for k in keys:
        values[k] = values[k].astype("int64")
        geometry = geometry.assign(**{k: geometry[k].astype("int64")})
    return values.merge(geometry, on=keys, how="left")


def flag_outliers(values: pd.Series, floor: float = 0.0) -> pd.Series:
    """True where a value is far from the others: robust z-score above `OUTLIER_Z`.

    The scale is 1.4826 times the median absolute deviation, so one bad detector among a hundred
    stands out however large it is, but never less than ``floor`` (same unit as the values): with
    a spec, deviations under 5% of its threshold are noise, not outliers. NaN is never an outlier.
    """
    x = values.astype(float)
    if not x.notna().any():
        return pd.Series(False, index=values.index)
    median = np.nanmedian(x)
    scale = max(1.4826 * np.nanmedian(np.abs(x - median)), floor)
    if not np.isfinite(scale) or scale == 0:
        return (x != median) & x.notna()
    return (np.abs(x - median) / scale > OUTLIER_Z).fillna(False)


def unwrap_ra(ra: np.ndarray, reference: float) -> np.ndarray:
    """RA (deg) shifted into [reference - 180, reference + 180) so that a field across RA 0 stays whole."""
    return (np.asarray(ra, dtype=float) - reference + 180.0) % 360.0 - 180.0 + reference


def row_columns(rows: pd.DataFrame, entry: dict) -> dict[str, str | None]:
    """Which columns of a per-row table hold the value, the magnitude and the position."""
    def first(*names: str) -> str | None:
        return next((n for n in names if n in rows.columns), None)

    value = first("value", entry["name"].split(".")[-1])
    mag = first("mag", "psfMag", "mag_mean", "obj_mag", "magnitude", "psf_mag")
    if mag is None:  # a magnitude, not a count or flag of magnitudes (obj_nonfinite_mag) nor an error
        mag = next((c for c in rows.columns if "mag" in c.lower() and c != value
                    and not any(w in c.lower() for w in ("nonfinite", "err", "flag", "n_"))
                    and pd.api.types.is_float_dtype(rows[c])), None)
    return {"value": value, "mag": mag, "ra": first("ra", "coord_ra"), "dec": first("dec", "coord_dec")}


@dataclass
class DrillView:
    """One level of the drill-down: the selected thing's values, its children, its rows."""

    mode: str                      # "coadd" or "visit"
    metric: dict                   # manifest entry
    level: str                     # dataset, tract, patch | visits, visit, detector
    band: str | None
    bands: list[str]
    selection: dict                # tract, patch, visit, detector (None when not selected)
    breadcrumbs: list[dict]        # [{"label": ..., "query": {...}}]
    values: pd.DataFrame           # metric values of the selected thing
    children: pd.DataFrame         # values one level down, with polygon and outlier columns
    child_key: str | None
    rows: pd.DataFrame             # per-row values (sources / objects / detectors)
    columns: dict                  # value / mag / ra / dec column names in rows

    def rows_note(self) -> str | None:
        """Why this view draws no per-row plots (or which of them), said on the page and in JSON;
        None when it draws them all."""
        entry, columns = self.metric, self.columns
        if len(self.rows) and columns.get("value"):
            missing = [what for what, names in (("magnitude", ("mag",)), ("position", ("ra", "dec")))
                       if not all(columns.get(n) for n in names)]
            if missing:
                drawn = ["value-against-magnitude" if m == "magnitude" else "sky" for m in missing]
                return (f"Its stored rows ({entry.get('row_kind') or 'rows'}) have no {' or '.join(missing)}: "
                        f"{'the ' + ' and the '.join(drawn)} plot{'s are' if len(drawn) > 1 else ' is'} not drawn.")
            return None
        if not entry.get("per_row_dataset"):
            return (f"{entry['name']} stores no per-row values, only its values per "
                    f"{', '.join(entry.get('levels', [])) or 'data ID'}: they are drawn above.")
        if self.level in ("dataset", "visits"):
            one = "tract" if self.mode == "coadd" else "visit"
            return (f"Per-row values ({entry.get('row_kind') or 'rows'}) are drawn one {one} at a time: "
                    f"pick a {one} on the sky or in the table.")
        where = ", ".join(f"{k} {v}" for k, v in self.selection.items() if v is not None)
        return f"No stored rows of {entry['name']} at {where or 'this place'}."

    def to_json(self) -> dict:
        """The view as the page draws it: the same histogram (`payload.histogram_data`) and the
        same worst rows (`payload.worst_rows`) as its figures and table."""
        from .payload import worst_rows

        rows = self.rows
        value_col = self.columns.get("value")
        stats: dict[str, Any] = {"n": int(len(rows))}
        if "selected" in rows:  # the rows that made the value; the others failed its selection
            stats["n_selected"] = int(rows["selected"].fillna(False).astype(bool).sum())
        first: list[dict] = []
        if value_col and len(rows):
            finite = rows[value_col].astype(float)
            finite = finite[np.isfinite(finite)]
            if len(finite):
                stats["median"] = float(np.median(finite))
            stats["histogram"] = _histogram_json(rows[value_col])
            if self.level in ("tract", "patch", "visit", "detector"):
                listed = worst_rows(rows, self.columns)
                first = _records(listed.drop(columns=listed.attrs.get("absent", [])))
        return {
            "mode": self.mode, "metric": self.metric["name"], "unit": self.metric.get("unit", ""),
            "level": self.level, "band": self.band, "bands": self.bands, "selection": self.selection,
            "breadcrumbs": self.breadcrumbs, "values": _records(self.values),
            "child_key": self.child_key, "children": _records(self.children),
            "children_histogram": _histogram_json(self.children["value"]) if len(self.children) else None,
            "rows": {**stats, "columns": self.columns, "worst": first, "note": self.rows_note()},
        }


def _histogram_json(values) -> dict:
    """`payload.histogram_data` as JSON: counts, the bin edges, the value if all are equal."""
    from .payload import histogram_data

    histogram = histogram_data(values)
    return {"counts": np.asarray(histogram["top"]).tolist(),
            "edges": np.append(histogram["left"], histogram["right"][-1:]).tolist(), "constant": histogram["constant"]}


def _band_filter(frame: pd.DataFrame, band: str | None) -> pd.DataFrame:
    """Rows of one band, and the band-independent rows (null band)."""
    if band is None or "band" not in frame or not frame["band"].notna().any():
        return frame
    return frame[(frame["band"] == band) | frame["band"].isna()]


def rollup(rows: pd.DataFrame, keys: list[str], higher_is_better: bool | None) -> pd.DataFrame:
    """One row per ``keys``: the worst value among several (e.g. one per column or band) stands for them.

    A failing row is worse than a passing one; between equals the larger value is worse unless
    ``higher_is_better``. ``n_values`` counts the rows that were rolled up.
    """
    if not len(rows):
        return rows.assign(n_values=pd.Series(dtype="int64"))
    ranked = rows.assign(_fail=(rows["status"] == "fail").astype(int),
                         _v=rows["value"].astype(float) * (-1.0 if higher_is_better else 1.0))
    ranked = ranked.sort_values(["_fail", "_v"], ascending=False, na_position="last", kind="stable")
    counts = ranked.groupby(keys, dropna=False).size().rename("n_values")
    worst = ranked.drop_duplicates(subset=keys, keep="first").drop(columns=["_fail", "_v"])
    return worst.merge(counts.reset_index(), on=keys, how="left")


def _aggregate_up(rows: pd.DataFrame, keys: list[str], level: str) -> pd.DataFrame:
    """Median of finer-level values per ``keys`` (status fail if any row fails): a level the run did not store."""
    if not len(rows):
        return rows
    grouped = rows.groupby(keys, dropna=False)
    out = grouped.agg(value=("value", "median"), n=("value", "size"), unit=("unit", "first"),
                      band=("band", "first")).reset_index()
    out["status"] = grouped["status"].agg(lambda s: _status(s)).to_numpy()
    out["level"] = level
    out["note"] = f"median of {rows['level'].iloc[0]} values"
    return out


def _children(values: pd.DataFrame, level: str, geometry: pd.DataFrame, keys: list[str],
              entry: dict, finer: str | None = None) -> pd.DataFrame:
    """Values one level down, one row per child, with polygons and an outlier flag."""
    rows = values[values["level"] == level]
    if not len(rows) and finer is not None:
        rows = _aggregate_up(values[values["level"] == finer], keys, level)
    rows = rollup(rows, keys, entry.get("higher_is_better"))
    children = _with_polygons(rows, geometry, keys)
    thresholds = children["threshold"].dropna().abs() if "threshold" in children else pd.Series(dtype=float)
    floor = 0.05 * float(thresholds.median()) if len(thresholds) else 0.0
    children["outlier"] = flag_outliers(children["value"], floor) if len(children) else pd.Series(dtype=bool)
    return children.reset_index(drop=True)


def _children_from_rows(rows: pd.DataFrame, columns: dict, level: str, geometry: pd.DataFrame,
                        keys: list[str], entry: dict) -> pd.DataFrame:
    """Children the run stored no value for (a tract metric's patches, a visit metric's
    detectors): the metric's own selection and aggregation of their stored rows
    (`surveyqa.metrics.engine.aggregate_rows`); no spec applies to them."""
    from surveyqa.metrics.engine import aggregate_rows
    from surveyqa.metrics.library import get_metric

    group = [k for k in keys if k in rows]
    if level not in rows or not {"value", "selected"} <= set(rows.columns):
        return pd.DataFrame()
    try:
        metric = get_metric(entry["name"])
        frame = rows[rows[level].notna()]
        values = aggregate_rows(metric, frame.reset_index(drop=True), group).to_pandas()
    except SurveyQAError:  # a metric of another package (ingested): its aggregation is not known here
        return pd.DataFrame()
    values = values.assign(status="none", level=level, band=None,
                           note=f"not stored: {metric.aggregation.name} of this {level}'s stored rows")
    return _children(values, level, geometry, keys, entry)


#: The largest data ID (tract, patch, visit, detector): Butler dimension keys are 64-bit integers.
MAX_DATA_ID = 2**63 - 1


class NotFoundError(SurveyQAError):
    """A metric or data ID the run does not have: the JSON routes answer 404 (400 for malformed input)."""


def data_id(key: str, value: object) -> int | None:
    """``value`` as the ``key`` (tract, patch, visit, detector) of a data ID; None if not given.

    URLs give strings and the page's state or a Python caller ints: both are read here, so that
    the page and its JSON twin refuse the same input, with a `SurveyQAError` saying what was
    wrong. Only ASCII digits make an integer (``int()`` would also take `` 1``, ``1_0`` or
    Arabic-Indic digits, which no link of the dashboard holds), and a value outside
    0 ... `MAX_DATA_ID` is refused before pandas compares it with an int64 column.
    """
    if value is None or (isinstance(value, str) and not value):
        return None
    number: int | None = None
    if isinstance(value, str):
        number = int(value) if value.isascii() and value.removeprefix("-").isdigit() else None
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        number = int(value)
    if number is None:
        raise SurveyQAError(f"{key}={str(value)[:40]!r} is not an integer", f"give {key} as a number, e.g. {key}=0")
    if not 0 <= number <= MAX_DATA_ID:
        raise SurveyQAError(f"{key} {number} is out of range", f"a {key} is an integer from 0 to {MAX_DATA_ID}")
    return number


def _require_band(metric: str, band: str | None, bands: list[str], also: str | None = None) -> None:
    """A `SurveyQAError` naming ``metric``'s bands if ``band`` (asked for) is none of them nor ``also``.

    Showing another band instead would put numbers the user did not ask for under the band
    they asked for. ``also``: a band that is right whatever the metric's (a visit's own band).
    """
    if band is None or band in bands or band == also:
        return
    hint = f"bands of {metric}: {', '.join(bands)}" if bands else f"{metric} has no bands: leave band out"
    raise SurveyQAError(f"{metric} has no values in band {band!r}", hint)


def require_sky_band(source: DataSource, view: QuickLook, band: str | None) -> None:
    """A `SurveyQAError` if the quick look's sky map was asked for a band its metric does not have.

    The sky map shows its metric's first band when asked for none (and the page's band
    selector offers only the metric's bands); a band asked for in the query that the metric
    does not have must not be answered with another band's map. (A band the metric has only
    below the tract and visit levels maps nothing: that is the metric, not the query.)
    """
    if view.sky_metric is None or band is None or band in view.bands:
        return
    values = source.metric_values(metric=view.sky_metric)
    _require_band(view.sky_metric, band, sorted(values["band"].dropna().unique().tolist()))


def _rows_of(values: pd.DataFrame, key: str, value: int) -> pd.DataFrame:
    """The rows of ``values`` whose ``key`` is ``value`` (none where the column is null or absent)."""
    if key not in values:
        return values.iloc[:0]
    return values[(values[key] == value).fillna(False).astype(bool)]


def _require_known(key: str, value: int, geometry: pd.DataFrame, values: pd.DataFrame,
                   within: str | None = None) -> None:
    """A `NotFoundError` naming the known ones if no ``key`` ``value`` has geometry or values
    (``within``: the tract of a patch, the visit of a detector): an empty page would say nothing
    of the typo."""
    known = set()
    for frame in (geometry, values):
        if key in frame:
            known |= {int(v) for v in frame[key].dropna().unique()}
    if value not in known:
        shown = ", ".join(map(str, sorted(known)[:20])) + (" ..." if len(known) > 20 else "")
        plural = key + ("es" if key.endswith("ch") else "s")
        raise NotFoundError(f"no {key} {value} in {within or 'this repository'}",
                            f"known {plural}{f' of {within}' if within else ''}: {shown or 'none'}")


def metric_view(source: DataSource, metric: str, band: str | None = None, tract: int | None = None,
                patch: int | None = None) -> DrillView:
    """The coadd drill-down: all tracts, then one tract's patches and objects, then one patch's objects."""
    entry = metric_entry(source, metric)
    tract, patch = data_id("tract", tract), data_id("patch", patch)
    if patch is not None and tract is None:
        raise SurveyQAError("a patch needs its tract", "add tract=<id> to the query")
    values = source.metric_values(metric=metric)
    bands = sorted(values["band"].dropna().unique().tolist())
    _require_band(metric, band, bands)
    if tract is not None:
        _require_known("tract", tract, source.tracts(), values)
        if patch is not None:
            _require_known("patch", patch, source.patches(tract), _rows_of(values, "tract", tract), f"tract {tract}")
    band = band if band in bands else (bands[0] if bands else None)
    values = _band_filter(values, band)
    crumbs = [{"label": "quick look", "query": {}},
              {"label": metric, "query": {"metric": metric, "band": band}}]
    rows, columns = pd.DataFrame(), {}
    if tract is None:
        level, child_key = "dataset", "tract"
        own = values[values["level"].isin(["dataset", "band"])]
        children = _children(values, "tract", source.tracts(), ["tract"], entry, finer="patch")
    else:
        tract = int(tract)
        crumbs.append({"label": f"tract {tract}", "query": {"metric": metric, "band": band, "tract": tract}})
        in_tract = values[values["tract"] == tract]
        if patch is None:
            level, child_key = "tract", "patch"
            own = in_tract[in_tract["level"] == "tract"]
            children = _children(in_tract, "patch", source.patches(tract), ["tract", "patch"], entry)
        else:
            patch = int(patch)
            crumbs.append({"label": f"patch {patch}",
                           "query": {"metric": metric, "band": band, "tract": tract, "patch": patch}})
            level, child_key = "patch", None
            own = in_tract[(in_tract["level"] == "patch") & (in_tract["patch"] == patch)]
            children = pd.DataFrame()
        if entry.get("per_row_dataset"):
            rows = _band_filter(source.metric_rows(metric, tract=tract, patch=patch), band)
            columns = row_columns(rows, entry)
            if child_key == "patch" and not len(children) and len(rows):
                children = _children_from_rows(rows, columns, "patch", source.patches(tract), ["tract", "patch"],
                                               entry)
    return DrillView("coadd", entry, level, band, bands, {"tract": tract, "patch": patch},
                     crumbs, own.reset_index(drop=True), children, child_key, rows.reset_index(drop=True),
                     columns)


def visit_view(source: DataSource, metric: str, band: str | None = None, visit: int | None = None,
               detector: int | None = None) -> DrillView:
    """The visit drill-down: the metric against visit number, then one visit's detectors, then one detector."""
    entry = metric_entry(source, metric)
    visit, detector = data_id("visit", visit), data_id("detector", detector)
    if detector is not None and visit is None:
        raise SurveyQAError("a detector needs its visit", "add visit=<id> to the query")
    values = source.metric_values(metric=metric)
    bands = sorted(values["band"].dropna().unique().tolist())
    if visit is None:
        _require_band(metric, band, bands)
    else:  # a visit has one band: show it whatever (known) band the page came from
        visits = source.visits()
        _require_known("visit", visit, visits, values)
        if detector is not None:
            _require_known("detector", detector, source.detectors(visit), _rows_of(values, "visit", visit),
                           f"visit {visit}")
        own = _rows_of(visits, "visit", visit)["band"].dropna() if "band" in visits else []
        _require_band(metric, band, bands, also=own.iloc[0] if len(own) else None)
        band = own.iloc[0] if len(own) else band
    band = band if band in bands else None
    values = _band_filter(values, band)
    crumbs = [{"label": "quick look", "query": {}},
              {"label": f"{metric} by visit", "query": {"view": "visits", "metric": metric, "band": band}}]
    rows, columns = pd.DataFrame(), {}
    if visit is None:
        level, child_key = "visits", "visit"
        own = values[values["level"].isin(["dataset", "band"])]
        children = _children(values, "visit", source.visits(), ["visit"], entry, finer="detector")
        children = children.sort_values("visit").reset_index(drop=True)
    else:
        visit = int(visit)
        crumbs.append({"label": f"visit {visit}",
                       "query": {"view": "visits", "metric": metric, "band": band, "visit": visit}})
        in_visit = values[values["visit"] == visit]
        detectors = source.detectors(visit)
        if detector is None:
            level, child_key = "visit", "detector"
            own = in_visit[in_visit["level"] == "visit"]
            children = _children(in_visit, "detector", detectors, ["detector"], entry)
        else:
            detector = int(detector)
            crumbs.append({"label": f"detector {detector}", "query": {
                "view": "visits", "metric": metric, "band": band, "visit": visit, "detector": detector}})
            level, child_key = "detector", None
            own = in_visit[(in_visit["level"] == "detector") & (in_visit["detector"] == detector)]
            children = pd.DataFrame()
        if entry.get("per_row_dataset"):
            rows = source.metric_rows(metric, visit=visit, detector=detector)
        if len(rows):
            columns = row_columns(rows, entry)
            if child_key == "detector" and not len(children):
                children = _children_from_rows(rows, columns, "detector", detectors, ["detector"], entry)
    return DrillView("visit", entry, level, band, bands, {"visit": visit, "detector": detector},
                     crumbs, own.reset_index(drop=True), children, child_key, rows.reset_index(drop=True),
                     columns)


def failures_view(source: DataSource) -> pd.DataFrame:
    """Failed quanta, one row each (task label, data ID, exception), placed on the sky.

    ``ra``/``dec`` (deg) is the centre of the quantum's detector, visit or tract outline, the
    finest one its data ID names; NaN when it names none.
    """
    failures = source.failures().reset_index(drop=True)
    if not len(failures) or {"ra", "dec"} <= set(failures.columns):
        return failures
    centres = []
    for _, row in failures.iterrows():
        centres.append(_centre_of(source, row))
    failures["ra"] = [c[0] for c in centres]
    failures["dec"] = [c[1] for c in centres]
    return failures


def _centre_of(source: DataSource, row: pd.Series) -> tuple[float, float]:
    def known(key):
        return key in row and pd.notna(row[key])

    polygon = None
    if known("visit") and known("detector"):
        found = source.detectors(int(row["visit"]))
        found = found[found["detector"] == int(row["detector"])] if len(found) else found
        polygon = found["polygon"].iloc[0] if len(found) else None
    elif known("visit"):
        found = source.visits()
        found = found[found["visit"] == int(row["visit"])] if len(found) else found
        polygon = found["polygon"].iloc[0] if len(found) else None
    elif known("tract"):
        found = source.tracts()
        found = found[found["tract"] == int(row["tract"])] if len(found) else found
        polygon = found["polygon"].iloc[0] if len(found) else None
    if polygon is None or not len(polygon):
        return math.nan, math.nan
    vertices = np.asarray(polygon, dtype=float)
    ra = unwrap_ra(vertices[:, 0], float(vertices[0, 0]))
    return float(ra.mean() % 360.0), float(vertices[:, 1].mean())


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready records: NaN -> None, numpy scalars -> Python, polygons -> lists."""
    if frame is None or not len(frame):
        return []
    out = []
    for record in frame.to_dict(orient="records"):
        clean = {}
        for key, value in record.items():
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, (list, tuple)):
                value = [list(v) if isinstance(v, (tuple, np.ndarray)) else v for v in value]
            elif isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            elif value is pd.NA or value is pd.NaT:
                value = None
            clean[str(key)] = value
        out.append(clean)
    return out


@dataclass
class FocalPlane:
    """A detector-level metric over all visits of a band, per detector, on the focal-plane layout.

    ``detectors``: one row per detector with ``value`` (the median of its stored per-visit
    values, said so on the page), ``n`` (visits), ``n_fail`` (visits failing), ``status`` and
    ``polygon`` (the detector's outline in the reference visit, projected on the plane tangent
    at that visit's centre: degrees, x towards increasing RA). ``visits``: the stored values of
    the selected detector, one per visit.
    """

    metric: dict
    band: str | None
    bands: list[str]
    detector: int | None
    reference_visit: int | None
    detectors: pd.DataFrame
    visits: pd.DataFrame

    def to_json(self) -> dict:
        return {"metric": self.metric["name"], "unit": self.metric.get("unit", ""), "band": self.band,
                "bands": self.bands, "detector": self.detector, "reference_visit": self.reference_visit,
                "detectors": _records(self.detectors), "visits": _records(self.visits)}


def focal_plane(source: DataSource, metric: str, band: str | None = None,
                detector: int | None = None) -> FocalPlane:
    """Per detector, one metric over every visit of a band (analysis_tools' focal-plane plot):
    a detector bad in every visit stands out, which no single visit shows."""
    entry = metric_entry(source, metric)
    detector = data_id("detector", detector)
    values = source.metric_values(metric=metric)
    values = values[(values["level"] == "detector") & values["detector"].notna()] if len(values) else values
    if not len(values):
        raise SurveyQAError(f"{metric} has no per-detector values", "the focal plane shows metrics stored per "
                            "detector; open this metric's visit or coadd view instead")
    bands = sorted(values["band"].dropna().unique().tolist())
    if band is not None and bands and band not in bands:
        raise SurveyQAError(f"{metric} has no per-detector values in band {band!r}", f"bands: {', '.join(bands)}")
    band = band if band in bands else (bands[0] if bands else None)
    values = values[values["band"] == band] if band is not None else values
    values = values.assign(detector=values["detector"].astype("int64"), visit=values["visit"].astype("int64"))
    if detector is not None and detector not in set(values["detector"]):
        known = ", ".join(map(str, sorted(set(values["detector"]))[:30]))
        raise NotFoundError(f"no detector {detector} in {metric} {band or ''}".strip(), f"known detectors: {known}")
    grouped = values.groupby("detector")
    per = pd.DataFrame({
        "value": grouped["value"].median(), "n": grouped["visit"].nunique(),
        "n_fail": grouped["status"].agg(lambda s: int((s == "fail").sum())),
    }).reset_index()
    per["status"] = np.where(per["n_fail"] > 0, "fail", grouped["status"].agg(_status).to_numpy())
    per["band"] = band
    per["unit"] = entry.get("unit", "")
    reference_visit, layout = _focal_layout(source, values)
    per = per.merge(layout, on="detector", how="left") if len(layout) else per.assign(polygon=None)
    visits = pd.DataFrame()
    if detector is not None:
        keep = [c for c in ("visit", "detector", "band", "value", "unit", "status", "spec", "threshold", "rule", "note")
                if c in values]
        visits = values.loc[values["detector"] == int(detector), keep].sort_values("visit").reset_index(drop=True)
        visits["outlier"] = flag_outliers(visits["value"]) if len(visits) else pd.Series(dtype=bool)
    return FocalPlane(entry, band, bands, None if detector is None else int(detector), reference_visit,
                      per.reset_index(drop=True), visits)


def _focal_layout(source: DataSource, values: pd.DataFrame) -> tuple[int | None, pd.DataFrame]:
    """Each detector's outline in the visit with the most detectors, on its tangent plane (deg)."""
    counts = values.groupby("visit")["detector"].nunique().sort_values(ascending=False, kind="stable")
    for visit in counts.index[:3]:
        regions = source.detectors(int(visit))
        if not len(regions) or "polygon" not in regions:
            continue
        centre = np.concatenate([np.asarray(p, float) for p in regions["polygon"] if p is not None and len(p)])
        ra0 = float(np.degrees(np.arctan2(np.sin(np.radians(centre[:, 0])).mean(),
                                          np.cos(np.radians(centre[:, 0])).mean())))
        dec0 = float(centre[:, 1].mean())
        polygons = [None if p is None or not len(p) else _tangent(np.asarray(p, float), ra0, dec0).tolist()
                    for p in regions["polygon"]]
        return int(visit), pd.DataFrame({"detector": regions["detector"].astype("int64"), "polygon": polygons})
    return None, pd.DataFrame(columns=["detector", "polygon"])


def _tangent(vertices: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Gnomonic projection of (RA, Dec) vertices (deg) about (ra0, dec0): (x, y) in degrees."""
    ra, dec = np.radians(vertices[:, 0]), np.radians(vertices[:, 1])
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cos_c = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(ra - a0)
    x = np.cos(dec) * np.sin(ra - a0) / cos_c
    y = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cos_c
    return np.degrees(np.column_stack([x, y]))
