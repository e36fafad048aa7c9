"""The QA's per-row datasets (``qaMetricRows_*``): the engine's per-row results, as stored.

A user drills from a metric value into the rows behind it; those rows must be the ones that
made the value, not a second computation of "the same thing". So each QA quantum keeps, for
every metric it measured, the `MetricResult.per_row` table the engine returned (``value`` in
the metric's unit, ``selected``, the group keys and the compute step's other columns), at the
metric's own granularity (a source, a star, a pair of stars, a cell, a detector, a column),
adds the data-ID columns the values carry and a few context columns that place a row (its id,
position, magnitude), and writes them as one tidy table: one row per (metric, per-row row).
`surveyqa.metrics.engine.aggregate_rows` of one metric's rows, grouped by a level's keys,
gives back the stored metric values of that level (``tests/metric_rows_check.py`` checks it
on every stored value of a run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveyqa.metrics.engine import MetricResult
from surveyqa.metrics.units import unit_to_string

__all__ = ["DATA_ID_COLUMNS", "ROWS_DATASET", "MetricRows", "metric_row_table", "level_keys"]

#: Data-ID columns every per-row table has (null where a metric's rows have none).
DATA_ID_COLUMNS = {"tract": pa.int64(), "patch": pa.int64(), "visit": pa.int64(), "detector": pa.int64(),
                   "band": pa.string(), "column": pa.string()}
#: The per-row dataset each QA task writes, by the dimensions of its quanta.
ROWS_DATASET = {"visit": "qaMetricRows_visit", "tract": "qaMetricRows_tract", "detector": "qaMetricRows_detector"}

_DICT = pa.dictionary(pa.int32(), pa.string())


def _dictionary(column) -> pa.ChunkedArray:
    """A string column as dictionary<int32, string>: 10^7 rows of one metric name are 10^7 codes."""
    column = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    return pc.dictionary_encode(column).cast(_DICT)


def _constant(value, n: int) -> pa.ChunkedArray:
    return pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))],
                            type=_DICT)


def metric_row_table(result: MetricResult, fixed: Mapping[str, object] | None = None,
                     context: Mapping[str, object] | None = None) -> pa.Table:
    """One metric's per-row table in the stored form.

    Parameters
    ----------
    result : MetricResult
        What `measure` returned.
    fixed : mapping, optional
        Data-ID values shared by every row (``{"visit": 1228, "band": "r"}``), used where the
        rows have no such column, as `surveyqa.tasks.values.to_metric_values` does for values.
    context : mapping of str -> array, optional
        Columns that place each row (``sourceId``, ``ra``, ``dec``, ``mag``, a star's
        ``patch``), one value per per-row row; a name the per-row table already has is not
        replaced.
    """
    per_row = result.per_row
    n = per_row.num_rows
    fixed = dict(fixed or {})
    context = dict(context or {})
    cols: dict[str, object] = {
        "metric": _constant(result.metric.name, n),
        "value": per_row.column("value"),
        "unit": _constant(unit_to_string(result.metric.unit), n),
        "selected": per_row.column("selected"),
    }
    for name, typ in DATA_ID_COLUMNS.items():
        given = per_row.column(name) if name in per_row.column_names else (
            pa.array(np.asarray(context.pop(name))) if name in context else None)
        if given is not None:
            col = given
            if pa.types.is_string(typ):
                col = col.cast(pa.string())
                if fixed.get(name) is not None:
                    col = pc.fill_null(col, str(fixed[name]))
                    col = pc.if_else(pc.equal(col, ""), pa.scalar(str(fixed[name])), col)
                col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
            else:
                col = col.cast(typ)
        elif name in fixed and fixed[name] is not None:
            col = pa.array([fixed[name]] * n, typ)
        else:
            col = pa.nulls(n, typ)
        cols[name] = _dictionary(col) if pa.types.is_string(typ) else col
    for name in per_row.column_names:
        if name not in cols:
            cols[name] = per_row.column(name)
    for name, values in context.items():
        if name not in cols:
            arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(values))
            if len(arr) != n:
                raise ValueError(f"context column {name!r} has {len(arr)} values for {n} rows of {result.metric.name}")
            cols[name] = arr
    value_field = pa.field("value", pa.float64(), metadata={"unit": unit_to_string(result.metric.unit)})
    table = pa.table(cols)
    return table.set_column(table.schema.get_field_index("value"), value_field, table.column("value"))


class MetricRows:
    """The per-row tables of one quantum's measurements, one per metric.

    A metric measured at several levels (per detector and per visit) has the same rows each
    time, only grouped differently; the rows of the finest grouping are kept (they carry the
    keys of every coarser one).
    """

    def __init__(self) -> None:
        self._tables: dict[str, tuple[int, pa.Table]] = {}

    def add(self, result: MetricResult, group_by: Sequence[str], fixed: Mapping[str, object] | None = None,
            context: Mapping[str, object] | None = None, keep: np.ndarray | None = None) -> None:
        """Keep a result's per-row table (``keep``: a mask of the rows that belong to this quantum)."""
        name = result.metric.name
        if name in self._tables and self._tables[name][0] >= len(group_by):
            return
        table = metric_row_table(result, fixed, context)
        if keep is not None:
            table = table.filter(pa.array(np.asarray(keep, bool)))
        self._tables[name] = (len(group_by), table)

    def restrict(self, name: str, mask_of) -> None:
        """Keep only the rows of a metric for which ``mask_of(table)`` is True (a band-group variant)."""
        if name in self._tables:
            depth, table = self._tables[name]
            self._tables[name] = (depth, table.filter(mask_of(table)))

    def metrics(self) -> list[str]:
        return sorted(self._tables)

    def table(self) -> pa.Table:
        """Every metric's rows in one table, sorted by metric (so that a reader of one metric
        skips the row groups of the others)."""
        tables = [self._tables[name][1] for name in sorted(self._tables)]
        if not tables:
            return empty_rows()
        return pa.concat_tables(tables, promote_options="permissive")


def empty_rows() -> pa.Table:
    """A per-row table without rows (a quantum that measured nothing still writes its dataset)."""
    fields = [pa.field("metric", _DICT), pa.field("value", pa.float64()), pa.field("unit", _DICT),
              pa.field("selected", pa.bool_())]
    fields += [pa.field(n, _DICT if pa.types.is_string(t) else t) for n, t in DATA_ID_COLUMNS.items()]
    return pa.schema(fields).empty_table()


def level_keys(values) -> list[str]:
    """The data-ID columns that identify the metric values of one metric and level (those not
    null in them): the keys to group its stored rows by to get those values again."""
    return [c for c in DATA_ID_COLUMNS if c in values.columns and values[c].notna().any()]
