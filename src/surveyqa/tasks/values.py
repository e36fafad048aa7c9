"""The metric-value table (docs/data-model.md) and the spec check that fills its status.

Every task turns the engine's tidy results into this one schema, so that readers, dashboard
and tracking see the same columns whatever the level.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveyqa.errors import SurveyQAError
from surveyqa.metrics.specs import OPERATORS

__all__ = ["METRIC_VALUE_SCHEMA", "to_metric_values", "attach_specs", "concat_values", "choose_spec"]

log = logging.getLogger(__name__)

METRIC_VALUE_SCHEMA = pa.schema([
    ("metric", pa.string()), ("value", pa.float64()), ("unit", pa.string()), ("level", pa.string()),
    ("band", pa.string()), ("physical_filter", pa.string()), ("tract", pa.int64()), ("patch", pa.int64()), ("visit", pa.int64()),
    ("detector", pa.int64()), ("column", pa.string()), ("n", pa.int64()), ("selection", pa.string()),
    ("aggregation", pa.string()), ("spec", pa.string()), ("threshold", pa.float64()), ("status", pa.string()),
    ("note", pa.string()),
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
                cache[key] = registry.evaluate(metric, 0.0 * u.Unit(unit or ""), {k: v for k, v in meta.items() if v})
            except SurveyQAError as exc:
                log.debug("no spec for %s: %s", metric, exc)
                cache[key] = []
        chosen = choose_spec(cache[key], band)
        if chosen is None:
            spec.append(None), threshold.append(None), status.append("none")
            continue
        thr = chosen.threshold.to_value(u.Unit(unit or ""))
        spec.append(chosen.spec)
        threshold.append(float(thr))
        if not np.isfinite(value):
            status.append("none")
        else:
            status.append("pass" if bool(OPERATORS[chosen.operator](np.float64(value), thr)) else "fail")
    table = table.set_column(table.schema.get_field_index("spec"), "spec", pa.array(spec, pa.string()))
    table = table.set_column(table.schema.get_field_index("threshold"), "threshold", pa.array(threshold, pa.float64()))
    return table.set_column(table.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
