"""Find the dataset that holds a metric value: the first step from a number to what made it.

A value is named by its metric and a ``where`` expression over the columns of the metric-value
table (docs/data-model.md: ``level``, ``band``, ``tract``, ``patch``, ``visit``, ``detector``,
``column``, ...), e.g. ``visit = 1228 AND level = 'visit'``. The run's one-file table of every
value (``qaMetricValues``) narrows the search to the per-quantum datasets that can hold it; those
are read and the value is found in one of them: the dataset a quantum wrote, whose provenance
the Butler recorded. A collection without that table (a ``pipetask run`` of part of the
pipeline, as `surveyqa reproduce` makes) is searched dataset by dataset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

from surveyqa.errors import SurveyQAError

__all__ = ["VALUE_DATASETS", "LocatedValue", "locate_value", "filter_values"]

log = logging.getLogger(__name__)

#: The per-quantum metric-value datasets, and the data-ID keys that tell which can hold a value.
VALUE_DATASETS = {"qaMetricValues_visit": ("visit",), "qaMetricValues_tract": ("tract",),
                  "qaMetricValues_detector": ("visit", "detector")}
_ALL_VALUES = "qaMetricValues"
#: Values shown in an error that lists candidate datasets.
_SHOWN = 6


@dataclass
class LocatedValue:
    """The dataset (``ref``) holding a metric value and its matching rows (`METRIC_VALUE_SCHEMA`)."""

    ref: object
    rows: pa.Table

    def describe(self) -> str:
        """``qaMetricValues_visit instrument=HSC visit=1228``."""
        return f"{self.ref.datasetType.name} {data_id_text(self.ref)}"


def data_id_text(ref) -> str:
    return " ".join(f"{k}={v}" for k, v in data_id_dict(ref).items())


def data_id_dict(ref) -> dict:
    """The required keys of a dataset's data ID, as plain values (JSON-ready)."""
    data_id = ref.dataId
    return {k: data_id[k] for k in data_id.required}


def filter_values(table: pa.Table, metric: str, where: str = "") -> pa.Table:
    """The rows of a metric-value table of ``metric`` that satisfy ``where`` (SQL over its columns).

    Evaluated by DuckDB on the table in memory, with access to files and the network switched
    off: the expression can read nothing else.
    """
    import duckdb

    con = duckdb.connect(config={"enable_external_access": False})
    try:
        con.register("metric_values", table)
        sql = "SELECT * FROM metric_values WHERE metric = $metric"
        if where.strip():
            sql += f" AND ({where})"
        try:
            return con.sql(sql, params={"metric": metric}).to_arrow_table()
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise SurveyQAError(f"cannot apply --where {where!r}: {first}",
                                "use the columns of the metric values: " + ", ".join(table.column_names)
                                + ", e.g. \"visit = 1228 AND level = 'visit'\"") from None
    finally:
        con.close()


def _registered(butler) -> set[str]:
    return {d.name for d in butler.registry.queryDatasetTypes()}


def _refs(butler, name: str, collection: str) -> list:
    return list(butler.query_datasets(name, collections=collection, explain=False, limit=None))


def _candidates(butler, collection: str, metric: str, where: str, registered: set[str]) -> dict[str, list]:
    """Per-quantum datasets that can hold the value: narrowed by the run's whole table where it has one."""
    refs = {name: _refs(butler, name, collection) for name in VALUE_DATASETS if name in registered}
    if _ALL_VALUES not in registered:
        return refs
    whole = butler.find_dataset(_ALL_VALUES, collections=collection)
    if whole is None:
        return refs
    table = butler.get(whole)
    if metric not in set(table.column("metric").to_pylist()):
        names = sorted(set(table.column("metric").to_pylist()))
        raise SurveyQAError(f"no metric {metric!r} in collection {collection!r}",
                            f"its metrics: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}")
    rows = filter_values(table, metric, where)
    if rows.num_rows == 0:
        levels = sorted(set(filter_values(table, metric).column("level").to_pylist()))
        raise SurveyQAError(f"no value of {metric} in {collection!r} matches {where!r}",
                            f"its values are at level {', '.join(levels)}; check the data ID")
    wanted = {name: {tuple(r[k] for k in keys) for r in rows.select(list(keys)).to_pylist()}
              for name, keys in VALUE_DATASETS.items()}
    return {name: [ref for ref in found if tuple(ref.dataId.get(k) for k in VALUE_DATASETS[name]) in wanted[name]]
            for name, found in refs.items()}


def locate_value(butler, collection: str, metric: str, where: str = "") -> LocatedValue:
    """The one per-quantum dataset in ``collection`` holding the values of ``metric`` that match ``where``.

    Several values may match (a visit's value and its detectors'); they must lie in one dataset.

    Raises
    ------
    SurveyQAError
        Unknown collection or metric, a ``where`` that cannot be applied, no value matching, or
        values in several datasets (the message lists them, to narrow ``where``).
    """
    from surveyqa.butler.repo import check_collection

    check_collection(butler, collection)
    registered = _registered(butler)
    candidates = _candidates(butler, collection, metric, where, registered)
    found: list[LocatedValue] = []
    for name in VALUE_DATASETS:
        for ref in candidates.get(name, []):
            if len(found) > _SHOWN:
                break  # enough to say that the value is not one dataset's
            rows = filter_values(butler.get(ref), metric, where)
            if rows.num_rows:
                found.append(LocatedValue(ref, rows))
    if not found:
        if not any(candidates.values()):
            raise SurveyQAError(f"collection {collection!r} holds no QA metric values",
                                "give the output collection of a QA run (surveyqa run ... --output C)")
        raise SurveyQAError(f"no value of {metric} in {collection!r} matches {where!r}",
                            "check the metric name and the data ID")
    if len(found) > 1:
        listed = "; ".join(f.describe() for f in found[:_SHOWN]) + (" ..." if len(found) > _SHOWN else "")
        count = f"more than {_SHOWN}" if len(found) > _SHOWN else str(len(found))
        raise SurveyQAError(f"values of {metric} matching {where!r} lie in {count} datasets: {listed}",
                            "narrow --where to one of them, e.g. add a visit, tract or detector")
    return found[0]
