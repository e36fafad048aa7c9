"""The metric-value table (docs/data-model.md) and the spec check that fills its status.

Every task turns the engine's tidy results into this one schema, so that readers, dashboard
and tracking see the same columns whatever the level.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveyqa.errors import SurveyQAError
from surveyqa.metrics.specs import compare
from surveyqa.metrics.units import parse_unit

__all__ = ["METRIC_VALUE_SCHEMA", "to_metric_values", "attach_specs", "attach_outliers", "load_outlier_rules",
           "concat_values", "choose_spec"]

log = logging.getLogger(__name__)

METRIC_VALUE_SCHEMA = pa.schema([
    ("metric", pa.string()), ("value", pa.float64()), ("unit", pa.string()), ("level", pa.string()),
    ("band", pa.string()), ("physical_filter", pa.string()), ("tract", pa.int64()), ("patch", pa.int64()), ("visit", pa.int64()),
    ("detector", pa.int64()), ("column", pa.string()), ("n", pa.int64()), ("selection", pa.string()),
    ("aggregation", pa.string()), ("spec", pa.string()), ("threshold", pa.float64()), ("status", pa.string()),
    ("note", pa.string()), ("rule", pa.string()),
])



def to_metric_values(values: pa.Table, level: str, fixed: Mapping[str, object] | None = None) -> pa.Table:
    """Conform an engine result (`MetricResult.values`) to `METRIC_VALUE_SCHEMA`.

    Parameters
    ----------
    values : pyarrow.Table
        metric, value, unit, n, selection, aggregation, note and the group keys.
    level : str
        ``detector``, ``visit``, ``patch`` or ``tract``.
    fixed : mapping, optional
        Data ID keys shared by every row (``{"tract": 9813, "band": "r"}``), used where the
        table does not have the column (or has it empty).
    """
    n = values.num_rows
    fixed = dict(fixed or {})
    cols = {}
    for field in METRIC_VALUE_SCHEMA:
        name = field.name
        if name in values.column_names:
            col = values.column(name)
            if name in fixed and pa.types.is_string(col.type):
                arr = np.asarray(col.to_pylist(), dtype=object)
                arr[(arr == "") | (arr == None)] = fixed[name]  # noqa: E711
                col = pa.array(arr.tolist(), field.type)
            cols[name] = col.cast(field.type)
        elif name == "level":
            cols[name] = pa.array([level] * n, pa.string())
        elif name in fixed:
            cols[name] = pa.array([fixed[name]] * n, field.type)
        elif name == "status":
            cols[name] = pa.array(["none"] * n, pa.string())
        else:
            cols[name] = pa.nulls(n, field.type)
    for name in ("band", "physical_filter", "column"):  # '' (none) is stored as null
        col = cols[name]
        cols[name] = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    return pa.table(cols, schema=METRIC_VALUE_SCHEMA)


def concat_values(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate metric-value tables (an empty table with the schema when there are none)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return METRIC_VALUE_SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by([("metric", "ascending")])


def choose_spec(results, band: str | None):
    """The one spec a value is judged by: ``design`` first, the one for the band's group if chromatic.

    Rubin's SRD specs come in families (minimum / design / stretch, gri / uzy); one status per
    value needs one of them. Returns None when no spec applies.
    """
    if not results:
        return None
    group = "uzy" if band in ("u", "z", "y") else "gri"

    def rank(r):
        name = r.spec.rsplit(".", 1)[-1]
        chromatic = name.endswith(("_gri", "_uzy"))
        return (0 if "design" in r.tags or name.startswith("design") else 1,
                0 if not chromatic or name.endswith("_" + group) else 1,
                0 if "release" not in r.tags else 1)

    return sorted(results, key=rank)[0]


def attach_specs(table: pa.Table, instrument: str | None = None, registry=None) -> pa.Table:
    """Fill ``spec``, ``threshold`` (in the value's unit) and ``status`` of a metric-value table.

    Specs come from `surveyqa.metrics.registry.load_default_registry` (Rubin's verify_metrics and
    surveyqa's own); a value that is NaN gets status ``none``.
    """
    if table.num_rows == 0:
        return table
    if registry is None:
        from surveyqa.metrics.registry import load_default_registry

        registry = load_default_registry()
    metrics = table.column("metric").to_pylist()
    values = table.column("value").to_numpy(zero_copy_only=False)
    units = table.column("unit").to_pylist()
    bands = table.column("band").to_pylist()
    spec, threshold, status = [], [], []
    cache: dict = {}
    for metric, value, unit, band in zip(metrics, values, units, bands):
        key = (metric, band)
        if key not in cache:
            try:
                meta = {"instrument": instrument, "filter_name": band} if instrument else {"filter_name": band}
                cache[key] = registry.evaluate(metric, 0.0 * parse_unit(unit), {k: v for k, v in meta.items() if v})
            except SurveyQAError as exc:
                log.debug("no spec for %s: %s", metric, exc)
                cache[key] = []
        chosen = choose_spec(cache[key], band)
        if chosen is None:
            spec.append(None), threshold.append(None), status.append("none")
            continue
        thr = chosen.threshold.to_value(parse_unit(unit))
        spec.append(chosen.spec)
        threshold.append(float(thr))
        if not np.isfinite(value):
            status.append("none")
        else:
            status.append("pass" if compare(value, chosen.operator, thr) else "fail")
    table = table.set_column(table.schema.get_field_index("spec"), "spec", pa.array(spec, pa.string()))
    table = table.set_column(table.schema.get_field_index("threshold"), "threshold", pa.array(threshold, pa.float64()))
    rule = [("spec" if s == "fail" else None) for s in status]
    table = table.set_column(table.schema.get_field_index("rule"), "rule", pa.array(rule, pa.string()))
    table = table.set_column(table.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
    return attach_outliers(table)


@dataclass(frozen=True)
class OutlierRule:
    """A value fails as an outlier among its peers (same metric, level and ``peers`` columns) when its
    robust z-score exceeds ``z_max`` and it lies at least ``min_deviation`` above the peers' median."""

    metric: str
    peers: tuple[str, ...]
    z_max: float
    min_deviation: u.Quantity
    min_peers: int
    center: str = "median"


@lru_cache(maxsize=1)
def load_outlier_rules() -> dict[str, OutlierRule]:
    """The outlier rules of ``surveyqa/metrics/data/surveyqa/outliers.yaml``, by metric."""
    import yaml

    path = Path(__file__).resolve().parent.parent / "metrics" / "data" / "surveyqa" / "outliers.yaml"
    raw = yaml.safe_load(path.read_text()) or {}
    return {name: OutlierRule(name, tuple(r.get("peers", ())), float(r["z_max"]),
                              float(r["min_deviation"]["value"]) * parse_unit(r["min_deviation"]["unit"]),
                              int(r.get("min_peers", 5)), str(r.get("center", "median"))) for name, r in raw.items()}


def attach_outliers(table: pa.Table, rules: Mapping[str, OutlierRule] | None = None) -> pa.Table:
    """Fail the values that stand out among their peers (`OutlierRule`); ``rule`` says which rule fired.

    Only values above their peers' centre are outliers: these metrics are offsets and scatters,
    where higher is worse. The centre is the peers' median, or zero for offsets stored as
    absolute values (``center: zero``), whose sigma is then 1.4826 times their median. ``rule`` becomes ``spec``, ``outlier`` or ``spec+outlier``.
    """
    rules = load_outlier_rules() if rules is None else rules
    if table.num_rows == 0 or not rules:
        return table
    df = table.select(["metric", "level", "value", "unit", *sorted({c for r in rules.values() for c in r.peers})]
                      ).to_pandas()
    status = np.asarray(table.column("status").to_pylist(), dtype=object)
    rule = np.asarray(table.column("rule").to_pylist(), dtype=object)
    for name, r in rules.items():
        mine = df[(df["metric"] == name) & np.isfinite(df["value"])]
        if mine.empty:
            continue
        keys = ["level", *r.peers]
        for _, group in mine.groupby(keys, dropna=False):
            if len(group) < r.min_peers:
                continue
            values = group["value"].to_numpy(float)
            # An offset's expected value is zero: its peers' |values| give the sigma (|x| has median 0.674 sigma).
            median = 0.0 if r.center == "zero" else np.median(values)
            sigma = 1.4826 * np.median(np.abs(values - median))
            floor = r.min_deviation.to_value(parse_unit(group["unit"].iloc[0]))
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (values - median) / sigma
            out = group.index.to_numpy()[(z > r.z_max) & (values - median >= floor)]
            status[out] = "fail"
            rule[out] = ["spec+outlier" if x == "spec" else "outlier" for x in rule[out]]
    table = table.set_column(table.schema.get_field_index("rule"), "rule", pa.array(rule.tolist(), pa.string()))
    return table.set_column(table.schema.get_field_index("status"), "status", pa.array(status.tolist(), pa.string()))
