"""The compute -> select -> aggregate engine (DMTN-085 §4.11.1).

A `Metric` is configuration over three named steps: a compute step that derives per-row values
for *every* row, a `Selection` that marks which rows count, and an `Aggregation` that reduces the
selected values of each group of data ID keys to one number with a unit. `measure` runs them and
returns both the per-row table (kept at full granularity, with the boolean ``selected`` column)
and a tidy table of values, one row per group. The engine imports no Butler, database or web code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow as pa

from surveyqa.errors import SurveyQAError
from surveyqa.metrics.actions.aggregate import Aggregation
from surveyqa.metrics.actions.groups import factorize_keys
from surveyqa.metrics.actions.select import Selection
from surveyqa.metrics.columns import ColumnMap, Frame, parse_column_map, to_frame
from surveyqa.metrics.units import unit_to_string

__all__ = ["GRANULARITIES", "Metric", "MetricResult", "ComputeFn", "input_columns", "measure", "aggregate_rows"]

log = logging.getLogger(__name__)

#: Maximum storage granularities a definition may declare (DMTN-085 §4.11.1).
GRANULARITIES = ("source", "detector", "visit", "patch", "tract", "dataset")

#: compute(frame, keys, selection) -> per-row columns. ``keys`` are the group_by arrays of the
#: input rows. A compute step that changes the row set (pairs of objects) returns its own key
#: columns and may return a ``selected`` column (then the selection was applied inside it).
ComputeFn = Callable[[Frame, Mapping[str, np.ndarray], Selection], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Metric:
    """A metric: what to compute per row, which rows to use, how to aggregate, in which unit.

    Parameters
    ----------
    name : str
        Fully qualified name, ``package.NAME`` (``validate_drp.PA1``).
    unit : astropy unit
        Unit of the aggregated value (and of the per-row ``value`` column).
    granularity : str
        Maximum storage granularity of its per-row values, one of `GRANULARITIES`.
    required_columns : tuple of str
        Logical columns it reads (see `surveyqa.metrics.columns.LOGICAL_COLUMNS`).
    compute : ComputeFn
        Per-row compute step; must return a ``value`` column in ``unit``.
    selection : Selection
        Named selection of rows.
    aggregation : Aggregation
        Named aggregation.
    description : str
        One line on what it measures and how.
    higher_is_better : bool
        Direction of improvement.
    min_n : int
        Fewest selected rows for a value; fewer gives NaN with a note.
    aliases : tuple of str
        Short names it is also found by (``PA1``).
    row_kind : str
        What one per-row row is: ``source``, ``object``, ``pair`` or ``pair_visit``.
    optional_columns : tuple of str
        Logical columns its compute step reads when the table has them (``band``, ``flag``);
        with ``required_columns`` and the selection's columns they make `input_columns`.
    """

    name: str
    unit: u.UnitBase
    granularity: str
    required_columns: tuple[str, ...]
    compute: ComputeFn = field(repr=False)
    selection: Selection = field(repr=False)
    aggregation: Aggregation = field(repr=False)
    description: str = ""
    higher_is_better: bool = False
    min_n: int = 1
    aliases: tuple[str, ...] = ()
    row_kind: str = "source"
    optional_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise SurveyQAError(f"metric {self.name}: granularity {self.granularity!r} is not one of {GRANULARITIES}")

    @property
    def short_name(self) -> str:
        """The name without its package (``PA1``)."""
        return self.name.split(".", 1)[-1]


@dataclass(frozen=True)
class MetricResult:
    """What `measure` returns.

    Attributes
    ----------
    metric : Metric
        The metric measured.
    per_row : pyarrow.Table
        Per-row values for all rows (``value`` in the metric's unit, ``selected``, group keys...).
    values : pyarrow.Table
        Tidy: metric, value (float64, in unit), unit, n, selection, aggregation, note + group keys.
    """

    metric: Metric
    per_row: pa.Table
    values: pa.Table

    def quantity(self) -> u.Quantity:
        """The value as an astropy Quantity (scalar for one group, array otherwise)."""
        v = self.values.column("value").to_numpy()
        return (v[0] if len(v) == 1 else v) * self.metric.unit


class _RowView:
    """Per-row columns for selections: computed columns first, then the input table's columns."""

    def __init__(self, computed: Mapping[str, np.ndarray], frame: Frame | None, n_rows: int):
        self.computed, self.frame, self.n_rows = computed, frame, n_rows

    def can_resolve(self, name: str) -> bool:
        return name in self.computed or (self.frame is not None and self.frame.can_resolve(name))

    def get(self, name: str) -> np.ndarray:
        if name in self.computed:
            return np.asarray(self.computed[name])
        if self.frame is None:
            raise SurveyQAError(f"selection needs {name!r}, which the per-row values do not have")
        return self.frame.get(name)


def _key_array(frame: Frame, key: str) -> np.ndarray:
    if frame.can_resolve(key):
        value = frame.get(key)
        return value if isinstance(value, pd.Categorical) else np.asarray(value)
    if key in frame.raw:
        return np.asarray(frame.raw[key])
    raise frame.missing(key)


def _arrow_column(arr: np.ndarray, dictionary: bool = False) -> pa.Array:
    """An Arrow column; a categorical (band) as strings, or as a dictionary array with ``dictionary``
    (per-row tables: 10^6 objects of one band are 10^6 one-byte codes, not 10^6 strings)."""
    if isinstance(arr, pd.Categorical):
        codes = np.asarray(arr.codes)
        labels = pa.array(np.asarray(arr.categories).tolist())
        missing = codes < 0
        indices = pa.array(codes, mask=missing) if missing.any() else pa.array(codes)
        column = pa.DictionaryArray.from_arrays(indices, labels)
        return column if dictionary else column.cast(labels.type)
    arr = np.asarray(arr)
    if arr.dtype == object:
        return pa.array(arr.tolist(), from_pandas=True)  # NaN (a null key) as null
    return pa.array(arr)


def input_columns(metric: Metric, names: Sequence[str], group_by: Sequence[str] = (),
                  columns: str | Mapping[str, str] | ColumnMap | None = None) -> list[str]:
    """The columns of a table that `measure` reads, so that a reader can load only those.

    Parameters
    ----------
    metric : Metric
        The metric to measure.
    names : sequence of str
        The table's column names (a Parquet schema's ``names``).
    group_by, columns
        As for `measure`.

    Returns
    -------
    list of str
        Actual column names, in the table's order: what the required and optional logical
        columns, the selection's columns and the group_by keys resolve or derive from. A column
        the table cannot give is left out (`measure` then raises `MissingColumnError`).

    Examples
    --------
    >>> input_columns(get_metric("PA1"), pq.read_schema(path).names)  # doctest: +SKIP
    ['obj_index', 'band', 'psfFlux', 'psfFluxErr', 'extendedness']
    """
    cmap = columns if isinstance(columns, ColumnMap) else parse_column_map(columns)
    frame = Frame(dict.fromkeys(names, np.zeros(0)), {}, cmap, metric.name, n_rows=0)
    wanted = (*metric.required_columns, *metric.optional_columns, *metric.selection.columns, *group_by)
    used = {name for logical in wanted for name in frame.sources(logical)}
    used |= {k for k in group_by if k in frame.raw}
    return [n for n in names if n in used]


def measure(metric: Metric, table: object, group_by: Sequence[str] = (),
            columns: str | Mapping[str, str] | ColumnMap | None = None) -> MetricResult:
    """Compute, select and aggregate one metric on a table.

    Parameters
    ----------
    metric : Metric
        The metric (from `surveyqa.metrics.library.get_metric`).
    table : pyarrow.Table, pandas.DataFrame, astropy.table.Table or dict of arrays
        Input rows (sources of a matched catalog, detectors of a visit summary ...).
    group_by : sequence of str
        Data ID keys to aggregate over (``("tract", "band")``); empty: one value for the table.
    columns : str or mapping, optional
        Logical -> actual column mapping (``"mag=base_PsfFlux_mag,ra=coord_ra"``).

    Returns
    -------
    MetricResult
        ``per_row`` and ``values`` tables. A group whose selection leaves fewer than
        ``metric.min_n`` rows gets value NaN and a ``note`` saying which criterion removed them.

    Raises
    ------
    MissingColumnError
        If the table lacks a column the metric or a group_by key needs.
    """
    group_by = tuple(group_by)
    frame = to_frame(table, columns, context=metric.name)
    frame.require(metric.required_columns)
    keys = {k: _key_array(frame, k) for k in group_by}
    log.info("measuring %s on %d rows grouped by %s", metric.name, frame.n_rows, group_by or "nothing")

    computed = dict(metric.compute(frame, keys, metric.selection))
    if "value" not in computed:
        raise SurveyQAError(f"metric {metric.name}: its compute step returned no 'value' column")
    n_rows = len(computed["value"])
    same_rows = n_rows == frame.n_rows and metric.row_kind == "source"
    for k in group_by:
        if k not in computed:
            if not same_rows:
                raise SurveyQAError(f"metric {metric.name} cannot be grouped by {k!r}")
            computed[k] = keys[k]
    rows = _RowView(computed, frame if same_rows else None, n_rows)
    if "selected" in computed:
        selected = np.asarray(computed.pop("selected"), dtype=bool)
    else:
        selected = metric.selection(rows)
    computed_note = computed.pop("_note", None)

    def explain(in_group: np.ndarray) -> str:
        if computed_note is not None:
            return str(computed_note)
        sub = {k: np.asarray(v)[in_group] for k, v in computed.items() if np.ndim(v) == 1 and len(v) == n_rows}
        return f"selection {metric.selection.name}: " + metric.selection.explain(
            _RowView(sub, _SubFrame(frame, in_group) if same_rows else None, int(in_group.sum())))

    values = _aggregate(metric, computed, selected, group_by, n_rows, explain)
    per_row = {k: _arrow_column(v, dictionary=True) for k, v in computed.items()
               if np.ndim(v) == 1 and len(v) == n_rows}
    per_row["selected"] = pa.array(selected)
    value_field = pa.field("value", pa.float64(), metadata={"unit": unit_to_string(metric.unit)})
    per_row_table = pa.table(per_row)
    idx = per_row_table.schema.get_field_index("value")
    per_row_table = per_row_table.set_column(idx, value_field, per_row_table.column("value").cast(pa.float64()))
    return MetricResult(metric, per_row_table, values)


def _aggregate(metric: Metric, computed: Mapping[str, np.ndarray], selected: np.ndarray, group_by: Sequence[str],
               n_rows: int, explain: Callable[[np.ndarray], str]) -> pa.Table:
    """The aggregate step: the selected, finite per-row values of each group reduced to one value.

    ``explain(rows_of_group)`` says why a group has too few rows. Shared by `measure` and
    `aggregate_rows`, so that a stored per-row table re-aggregates by the very same code.
    """
    value = np.asarray(computed["value"], dtype=float)
    usable = selected & np.isfinite(value)
    codes, uniques = factorize_keys([computed[k] for k in group_by], n_rows)
    n_groups = len(uniques[0]) if uniques else 1
    if not group_by and n_rows == 0:
        codes = np.zeros(0, dtype=np.int64)
    sel_rows = _SelectedRows(computed, usable, n_rows)
    sel_value = value[usable]
    sel_codes = codes[usable] if group_by else np.zeros(len(sel_value), dtype=np.int64)
    agg, n = metric.aggregation(sel_value, sel_codes, n_groups, sel_rows)
    notes: list[str | None] = [None] * n_groups
    for g in np.flatnonzero(n < metric.min_n):  # loop over (few) failing groups, not rows
        why = explain(codes == g)
        notes[g] = f"{int(n[g])} selected rows with a finite value, fewer than the {metric.min_n} needed; {why}"
        agg[g] = np.nan
    unit = unit_to_string(metric.unit)
    values = {
        "metric": pa.array([metric.name] * n_groups, pa.string()),
        "value": pa.array(agg, pa.float64()),
        "unit": pa.array([unit] * n_groups, pa.string()),
        "n": pa.array(n, pa.int64()),
        "selection": pa.array([metric.selection.name] * n_groups, pa.string()),
        "aggregation": pa.array([metric.aggregation.name] * n_groups, pa.string()),
        "note": pa.array(notes, pa.string()),
    }
    for k, uniq in zip(group_by, uniques):
        values[k] = _arrow_column(uniq)
    return pa.table(values)


def aggregate_rows(metric: Metric, per_row: object, group_by: Sequence[str] = ()) -> pa.Table:
    """Aggregate a stored per-row table (`MetricResult.per_row`, or the rows of one metric in a
    QA run's ``qaMetricRows_*`` dataset) again: its ``selected`` rows, by the metric's own
    aggregation, grouped by ``group_by``.

    This is how a user checks that the rows behind a number are the rows that made it: the
    result is `measure`'s ``values`` for the same grouping.

    Parameters
    ----------
    metric : Metric
        The metric the rows belong to.
    per_row : pyarrow.Table or pandas.DataFrame
        ``value``, ``selected``, the group_by keys and whatever else the aggregation reads.
    group_by : sequence of str
        Keys to aggregate over.
    """
    group_by = tuple(group_by)
    frame = to_frame(per_row, context=metric.name)
    columns = {k: frame.raw[k] for k in frame.raw}
    missing = [k for k in ("value", "selected", *group_by) if k not in columns]
    if missing:
        raise SurveyQAError(f"per-row table of {metric.name} has no column {', '.join(missing)}",
                            "pass the table `measure` returned as per_row, or a QA run's qaMetricRows_* rows")
    selected = np.asarray(columns.pop("selected"), dtype=bool)
    n_rows = len(selected)
    return _aggregate(metric, columns, selected, group_by, n_rows, lambda rows: "from stored per-row values")


class _SelectedRows(Mapping):
    """The other per-row columns at the usable rows, for aggregations that read them (positions):
    a column is indexed when an aggregation asks for it, not every column for every metric."""

    def __init__(self, computed: Mapping[str, np.ndarray], usable: np.ndarray, n_rows: int):
        self._names = [k for k, v in computed.items()
                       if np.ndim(v) == 1 and len(v) == n_rows and not isinstance(v, pd.Categorical)]
        self._computed, self._usable, self._cache = computed, usable, {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._cache:
            self._cache[name] = np.asarray(self._computed[name])[self._usable]
        return self._cache[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _SubFrame:
    """A frame restricted to some rows, for explaining why a group selected nothing."""

    def __init__(self, frame: Frame, mask: np.ndarray):
        self.frame, self.mask, self.n_rows = frame, mask, int(mask.sum())

    def can_resolve(self, name: str) -> bool:
        return self.frame.can_resolve(name)

    def get(self, name: str) -> np.ndarray:
        return np.asarray(self.frame.get(name))[self.mask]
