"""What is wrong, and where: a run's failing values and failed quanta grouped by place.

A person opening a QA run wants the bad visit, detector, patch or column named, not a list of
red metrics to click through (DMTN-085 §4.12). One defect usually fails several metrics (a wrong
zero point fails the visit's zero-point offset, its detectors' offsets against the reference
catalog and the visit's photometric offset) and at several levels; the culprit is the place,
shown once, with every metric that flags it and the rule that fired (``spec``, ``outlier``).

Places, and how finer failures fold into coarser ones:

* a value stored per visit names the visit; per patch, the patch; per tract, the tract; a
  per-column value (``health.nanFraction``) names the column at its place;
* a detector's failing value folds into its visit when that visit fails at visit level, or when
  at least half of the visit's detectors fail the same metric (the visit is bad, not each
  detector); what is left folds into the detector alone when the same detector fails the same
  metric in two or more visits (a detector bad in every visit: its focal-plane place);
  otherwise it names (visit, detector);
* a failed quantum is placed by its data ID the same way (a failed detector quantum is a
  detector-level failure of its task).

Pure pandas over the tidy metric-value table (`surveyqa.tasks.values.METRIC_VALUE_SCHEMA`) and
the failures table (`surveyqa.butler.QARepository.failures`): the demo's printed quick look and
the dashboard's both call `find_culprits`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Culprit", "find_culprits", "flag_text", "id_text", "row_id", "worst_value"]

_KEYS = ("tract", "patch", "visit", "detector")


@dataclass
class Culprit:
    """One bad place and everything that flags it.

    ``kind`` is ``visit``, ``detector`` (one detector in one visit), ``focal_detector`` (a
    detector over the visits), ``patch``, ``tract``, ``column`` or ``dataset``; ``data_id``
    holds the keys that identify the place (for a column: its place's keys and ``column``).
    ``flags`` has one entry per (metric or failed task, band): its failing values' count,
    the worst of them with its own data ID, the threshold and the rule.
    """

    kind: str
    place: str
    data_id: dict
    flags: list[dict] = field(default_factory=list)

    def severity(self) -> tuple:
        """Sort key: more metrics first, then the larger excess over a threshold."""
        return (-len({f["metric"] for f in self.flags}), -max((f["excess"] for f in self.flags), default=0.0))

    def to_json(self) -> dict:
        return {"kind": self.kind, "place": self.place, "data_id": self.data_id,
                "flags": [{k: _plain(v) for k, v in f.items()} for f in self.flags]}


def id_text(data_id: dict) -> str:
    """``visit 109005 detector 7``: a data ID as a person reads it (keys in Butler order; the
    tract a visit's values carry as context is left out: a visit names its place)."""
    keys = [k for k in _KEYS if data_id.get(k) is not None and not (k == "tract" and data_id.get("visit") is not None)]
    parts = [f"{k} {_int_text(data_id[k])}" for k in keys]
    if data_id.get("column") is not None:
        parts.append(f"column {data_id['column']}")
    return " ".join(parts) or "all data"


def flag_text(flag: dict, place: dict | None = None) -> str:
    """One flag as a line: ``health.zeroPointOffset r: 0.377 mag (spec 0.15 mag) at detector 6
    [spec, 9 values]``; the worst value's data ID without the keys of ``place``, the culprit's."""
    band = f" {flag['band']}" if flag.get("band") else ""
    if flag.get("task"):
        return f"{flag['task']} failed{band}: {flag.get('exception') or ''} {flag.get('message') or ''}".strip()
    value = _number(flag["value"], flag.get("unit"))
    threshold = flag.get("threshold")
    against = f" (spec {_number(threshold, flag.get('unit'))})" if threshold is not None and math.isfinite(
        threshold) else ""
    count = f", {flag['n_fail']} values" if flag.get("n_fail", 1) > 1 else ""
    place = place or {}
    finer = {k: v for k, v in (flag.get("worst_id") or {}).items() if k not in place and k != "column"}
    if "visit" in place:
        finer.pop("tract", None)
    where = f" at {id_text(finer)}" if finer else ""
    return f"{flag['metric']}{band}: {value}{against}{where} [{flag.get('rule') or 'spec'}{count}]"


def worst_value(values: pd.DataFrame, higher_is_better: bool | None = None) -> pd.Series | None:
    """The worst of one metric's values: the failing one furthest past its threshold (failures by
    spec before outlier-only ones); without failures the lowest (``higher_is_better``) or the
    highest value; None if neither applies."""
    finite = values[np.isfinite(values["value"].astype(float))]
    if not len(finite):
        return None
    failing = finite[finite["status"] == "fail"]
    if len(failing):
        excess = _excess(failing)
        by_spec = failing["rule"].fillna("spec").str.contains("spec") if "rule" in failing else True
        order = pd.DataFrame({"spec": by_spec, "excess": excess}).sort_values(["spec", "excess"], ascending=False)
        return failing.loc[order.index[0]]
    if higher_is_better is None:
        return None
    return finite.loc[finite["value"].idxmin() if higher_is_better else finite["value"].idxmax()]


def find_culprits(values: pd.DataFrame, failures: pd.DataFrame | None = None) -> list[Culprit]:
    """The run's culprits, worst first.

    Parameters
    ----------
    values : pandas.DataFrame
        Metric values (every metric, every level), with ``status`` and ``rule``.
    failures : pandas.DataFrame, optional
        Failed quanta (``label``, data-ID columns, ``exception_type``, ``message``, ``status``).
    """
    failing = values[values["status"] == "fail"].copy() if len(values) else values.copy()
    for key in _KEYS:
        if key not in failing:
            failing[key] = pd.NA
    for key in ("band", "column", "rule"):
        if key not in failing:
            failing[key] = None
    places: dict[tuple, Culprit] = {}

    def add(kind: str, data_id: dict, rows: pd.DataFrame, place: str | None = None) -> None:
        key = (kind,) + tuple(sorted((k, v) for k, v in data_id.items()))
        culprit = places.setdefault(key, Culprit(kind, place or id_text(data_id), data_id))
        for (metric, band), group in rows.groupby(["metric", rows["band"].fillna("")], sort=True):
            culprit.flags.append(_flag(metric, band or None, group))

    columns = failing[failing["column"].notna()]
    for _, group in columns.groupby(["level", "column", "band"], dropna=False, sort=True):
        for data_id, rows in _by_place(group):
            add("column", {**data_id, "column": row_id(rows.iloc[0])["column"]}, rows)
    rest = _concat([failing[failing["column"].isna()], _failure_rows(failures)])
    for level in ("dataset", "band", "tract", "patch", "visit"):
        for data_id, rows in _by_place(rest[rest["level"] == level]):
            add(level if level != "band" else "dataset", data_id, rows)
    bad_visits = {int(v) for v in rest.loc[rest["level"] == "visit", "visit"].dropna()}
    detector_rows = rest[rest["level"] == "detector"]
    if len(detector_rows):
        _place_detectors(detector_rows, values, bad_visits, add)
    return sorted(places.values(), key=Culprit.severity)


def _place_detectors(rows: pd.DataFrame, values: pd.DataFrame, bad_visits: set[int], add) -> None:
    """Fold detector-level failures into their detector (bad in most of its visits), their
    visit, or keep (visit, detector)."""
    rows = rows.assign(visit=rows["visit"].astype("Int64"), detector=rows["detector"].astype("Int64"))
    visits_of = _visits_per_detector(values)
    left = []
    for (metric, detector), group in rows.groupby(["metric", "detector"], sort=True):
        known = visits_of.get((metric, int(detector)), group["visit"].nunique())
        if group["visit"].nunique() >= 2 and 2 * group["visit"].nunique() >= known:
            add("focal_detector", {"detector": int(detector)}, group,
                f"detector {int(detector)} ({group['visit'].nunique()} of {known} visits)")
        else:
            left.append(group)
    if not left:
        return
    detectors_of = _detectors_per_visit(values)
    for (metric, visit), group in _concat(left).groupby(["metric", "visit"], sort=True):
        known = detectors_of.get((metric, int(visit))) or detectors_of.get(("", int(visit)), len(group))
        if int(visit) in bad_visits or (len(group) >= 2 and 2 * group["detector"].nunique() >= known):
            add("visit", {"visit": int(visit)}, group)
        else:
            for detector, one in group.groupby("detector"):
                add("detector", {"visit": int(visit), "detector": int(detector)}, one)


def _visits_per_detector(values: pd.DataFrame) -> dict[tuple[str, int], int]:
    """How many visits have a value, per (metric, detector): the denominator of "most visits"."""
    det = _detector_values(values)
    if not len(det):
        return {}
    counts = det.groupby(["metric", det["detector"].astype("int64")])["visit"].nunique()
    return {(m, int(d)): int(n) for (m, d), n in counts.items()}


def _detectors_per_visit(values: pd.DataFrame) -> dict[tuple[str, int], int]:
    """How many detectors have a value, per (metric, visit), and per visit over all metrics
    (metric ``""``: the denominator for failed quanta): that of "half the visit"."""
    det = _detector_values(values)
    if not len(det):
        return {}
    counts = det.groupby(["metric", det["visit"].astype("int64")])["detector"].nunique()
    out = {(m, int(v)): int(n) for (m, v), n in counts.items()}
    for visit, n in det.groupby(det["visit"].astype("int64"))["detector"].nunique().items():
        out[("", int(visit))] = int(n)
    return out


def _detector_values(values: pd.DataFrame) -> pd.DataFrame:
    if not len(values) or "detector" not in values or "visit" not in values:
        return pd.DataFrame(columns=["metric", "visit", "detector"])
    return values[(values["level"] == "detector") & values["visit"].notna() & values["detector"].notna()]


def _failure_rows(failures: pd.DataFrame | None) -> pd.DataFrame:
    """Failed quanta as flag rows at the level their data ID names (the task label, with
    " failed", as the 'metric'); blocked quanta are consequences, not culprits."""
    if failures is None or not len(failures):
        return pd.DataFrame()
    failed = failures
    if "status" in failed:
        failed = failed[failed["status"].fillna("failed") == "failed"]
    ids = {k: (failed[k] if k in failed else pd.Series(pd.NA, index=failed.index)) for k in _KEYS}
    level = np.select([ids["visit"].notna() & ids["detector"].notna(), ids["visit"].notna(),
                       ids["tract"].notna() & ids["patch"].notna(), ids["tract"].notna()],
                      ["detector", "visit", "patch", "tract"], "dataset")
    return pd.DataFrame({
        "metric": failed["label"].astype(str) + " failed", "task": failed["label"].astype(str), "level": level,
        **ids, "band": failed["band"] if "band" in failed else None, "column": None, "value": math.nan,
        "status": "fail", "rule": "failed", "exception": failed.get("exception_type"),
        "message": failed.get("message"), "unit": "", "threshold": math.nan,
    })


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of several tables; the data-ID keys (all null in some) are cast after, so pandas'
    dtype inference over all-null columns does not matter here."""
    frames = [f for f in frames if len(f)] or frames[:1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return pd.concat(frames, ignore_index=True)


def _by_place(rows: pd.DataFrame):
    """``(data_id, rows)`` per place of one level's rows (the keys that level has)."""
    if not len(rows):
        return
    level = rows["level"].iloc[0]
    keys = {"dataset": [], "band": [], "tract": ["tract"], "patch": ["tract", "patch"], "visit": ["visit"],
            "detector": ["visit", "detector"]}[level]
    if not keys:
        yield {}, rows
        return
    for ids, group in rows.groupby(keys, sort=True):
        ids = ids if isinstance(ids, tuple) else (ids,)
        yield {k: int(v) for k, v in zip(keys, ids)}, group


def _flag(metric: str, band: str | None, rows: pd.DataFrame) -> dict:
    if "task" in rows and rows["task"].notna().any():
        first = rows.iloc[0]
        return {"metric": metric, "band": band, "task": first["task"], "exception": _plain(first.get("exception")),
                "message": _plain(first.get("message")), "n_fail": int(len(rows)), "rule": "failed",
                "value": None, "unit": "", "threshold": None, "excess": math.inf,
                "worst_id": row_id(first), "levels": ["detector"]}
    worst = worst_value(rows)
    if worst is None:
        worst = rows.iloc[0]
    rules = sorted({r for r in rows["rule"].dropna()}) or ["spec"]
    return {"metric": metric, "band": band, "n_fail": int(len(rows)), "rule": "+".join(_merge_rules(rules)),
            "value": _plain(worst["value"]), "unit": worst.get("unit") or "",
            "threshold": _plain(worst.get("threshold")), "excess": float(_excess(worst.to_frame().T).iloc[0]),
            "worst_id": row_id(worst), "levels": sorted(set(rows["level"]))}


def _merge_rules(rules: list[str]) -> list[str]:
    names = {part for rule in rules for part in rule.split("+")}
    return [r for r in ("spec", "outlier") if r in names] + sorted(names - {"spec", "outlier"})


def _excess(rows: pd.DataFrame) -> pd.Series:
    """How far past its threshold each value is, in units of the threshold (0 without one)."""
    value = pd.to_numeric(rows["value"], errors="coerce").astype(float)
    threshold = pd.to_numeric(rows["threshold"], errors="coerce").astype(float) if "threshold" in rows else value * np.nan
    scale = threshold.abs().where(threshold.abs() > 0, 1.0)
    return ((value - threshold).abs() / scale).fillna(0.0)


def row_id(row: pd.Series) -> dict:
    """The data ID of one value (or failed quantum): its non-null keys, and its column."""
    out = {}
    for key in _KEYS:
        value = row.get(key)
        if value is not None and not pd.isna(value):
            out[key] = int(value)
    column = row.get("column")
    if column is not None and not pd.isna(column):
        band = row.get("band")
        if row.get("level") in ("tract", "patch") and isinstance(band, str) and band:
            column = f"{band}_{column}"  # object tables prefix their per-band columns
        out["column"] = column
    return out


def _int_text(value) -> str:
    return str(int(value)) if isinstance(value, (int, np.integer)) or float(value).is_integer() else str(value)


def _number(value, unit: str | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3g} {unit or ''}".strip()


def _plain(value):
    """JSON-ready: numpy scalars to Python, NaN / NA to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value
