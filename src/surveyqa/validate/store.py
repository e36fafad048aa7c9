"""Validation verdicts as QA metric values, stored through the Butler beside the data they judge.

Every (dataset, data ID, column) gets one ``validate.goodRowFraction`` value: the percentage of
rows that pass every check of the column (0 when its type or unit is wrong), with status
``fail`` when an error-level check of it failed. The values are in the QA's own tidy format
(`surveyqa.tasks.values.METRIC_VALUE_SCHEMA`: ``selection`` holds the dataset type, ``column``
the schema table and column, ``Source.psfFlux``, with an object table's band prefix moved to
``band``: ``Visit.band`` and ``CcdVisit.band`` are two series, and a data ID, which has no
dataset type, tells them apart only so), in the dataset types the QA
writes (``qaMetricValues_visit`` per visit, ``qaMetricValues_tract`` per tract,
``qaMetricValues`` for the run, and a ``qaManifest``), so `QARepository`, the dashboard and
``surveyqa track submit`` read them as any QA run's. Each validation is a new RUN
``<collection>/validate/<UTC time>`` and the CHAINED collection ``<collection>/validate`` puts the
newest first, as ``pipetask run --output`` does.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pyarrow as pa
import yaml

from surveyqa.errors import SurveyQAError

__all__ = ["METRIC", "metric_values", "store_report", "output_collection", "manifest"]

log = logging.getLogger(__name__)

METRIC = "validate.goodRowFraction"
_DEFINITIONS = Path(__file__).resolve().parent / "data" / "metrics.yaml"


def output_collection(collection: str) -> str:
    """The CHAINED collection the verdicts of ``collection`` are found in."""
    return f"{collection.rstrip('/')}/validate"


def _level(data_id: dict) -> str:
    for key in ("detector", "visit", "patch", "tract"):
        if key in data_id:
            return key
    return "dataset"


def metric_values(report, bands: dict[int, str] | None = None) -> pa.Table:
    """The report as a `METRIC_VALUE_SCHEMA` table, one row per (dataset type, data ID, column)."""
    from surveyqa.metrics.library.health import split_band_column
    from surveyqa.tasks.values import METRIC_VALUE_SCHEMA

    bands = bands or {}
    failed: dict[tuple, list[str]] = {}
    for r in report.failures:
        failed.setdefault((r.dataset_type, tuple(sorted(r.data_id.items())), r.column), []).append(
            f"{r.check}: {r.n_bad} of {r.n_rows} rows")
    tables = {d["dataset_type"]: d["table"] for d in report.datasets}
    rows = []
    for (dataset_type, data_id_items, column), (n_bad, n_rows) in sorted(report.bad_rows.items(), key=str):
        data_id = dict(data_id_items)
        band, base = split_band_column(column) if dataset_type.startswith("object") else (None, column)
        fails = failed.get((dataset_type, data_id_items, column), [])
        rows.append({
            "metric": METRIC, "value": 100.0 * (n_rows - n_bad) / n_rows if n_rows else float("nan"),
            "unit": "%", "level": _level(data_id), "band": band or bands.get(data_id.get("visit")),
            "physical_filter": None, "tract": data_id.get("tract"), "patch": data_id.get("patch"),
            "visit": data_id.get("visit"), "detector": data_id.get("detector"), "column": f"{tables[dataset_type]}.{base}", "n": n_rows,
            "selection": dataset_type, "aggregation": "percentage of rows passing every check of the column",
            "spec": None, "threshold": None, "status": "fail" if fails else "pass",
            "note": "; ".join(fails) or None, "rule": "validate" if fails else None,
        })
    if not rows:
        return METRIC_VALUE_SCHEMA.empty_table()
    return pa.Table.from_pylist(rows, schema=METRIC_VALUE_SCHEMA)


def manifest(run: str, inputs: list[str], values: pa.Table, report) -> dict:
    """A ``qaManifest`` in `surveyqa.tasks.manifest.build_manifest`'s layout, for the validation's metric."""
    import surveyqa

    definition = (yaml.safe_load(_DEFINITIONS.read_text()) or {})[METRIC.split(".", 1)[1]]
    status = values.column("status").to_pylist() if values.num_rows else []
    levels = sorted(set(values.column("level").to_pylist())) if values.num_rows else []
    return {
        "surveyqa_version": surveyqa.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run": run, "inputs": inputs, "dataset_types": ["qaMetricValues_visit", "qaMetricValues_tract",
                                                         "qaMetricValues", "qaManifest"],
        "levels": ["dataset", "detector", "visit", "patch", "tract"],
        "metrics": [{
            "name": METRIC, "unit": definition["unit"], "description": " ".join(definition["description"].split()),
            "reference": definition.get("reference"), "granularity": definition.get("granularity"),
            "levels": levels, "selection": {"name": "dataset type", "description": "the rows of the dataset type"},
            "aggregation": "percentage of rows passing every check of the column", "per_row_dataset": None,
            "per_row_rows": None, "row_kind": None, "values_dataset": "qaMetricValues",
            "higher_is_better": bool(definition.get("higher_is_better", True)), "n_values": values.num_rows,
            "n_fail": status.count("fail"), "specs": [],
        }],
        "validation": {"schema": report.schema, "failures": len(report.failures),
                       "columns_checked": report.columns_checked, "checks_run": len(report.results)},
        "failed": [], "blocked": [], "switched_off": {},
    }


def _visit_bands(butler) -> dict[int, str]:
    filters = {r.name: r.band for r in butler.query_dimension_records("physical_filter", explain=False)}
    return {r.id: filters.get(r.physical_filter) for r in butler.query_dimension_records("visit", explain=False)}


def store_report(qa, report) -> dict:
    """Put the report's metric values into a new RUN chained as ``<collection>/validate``.

    ``qa`` is the `QARepository` the files came from. Nothing is written unless everything can be:
    the puts happen in one Butler transaction.
    """
    from lsst.daf.butler import CollectionType

    from surveyqa.butler.repo import open_repo, register_dataset_types

    butler = open_repo(qa.repo, writeable=True)
    chain = output_collection(qa.collection)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    run = f"{chain}/{stamp}"
    existing = set(butler.collections.query(chain + "*"))
    if chain in existing and butler.collections.get_info(chain).type != CollectionType.CHAINED:
        raise SurveyQAError(f"{chain} exists and is not a CHAINED collection", "remove it or validate another collection")
    values = metric_values(report, _visit_bands(butler))
    register_dataset_types(butler, ["qaMetricValues_visit", "qaMetricValues_tract", "qaMetricValues", "qaManifest"])
    instrument = next((s.get("instrument") for s in _data_ids(report) if "instrument" in s), None)
    skymap = next((s.get("skymap") for s in _data_ids(report) if "skymap" in s), None)
    with butler.transaction():
        butler.registry.registerRun(run)
        _put_split(butler, values, run, "visit", "qaMetricValues_visit", {"instrument": instrument})
        _put_split(butler, values, run, "tract", "qaMetricValues_tract", {"skymap": skymap})
        butler.put(values, "qaMetricValues", {}, run=run)
        butler.put(manifest(run, [qa.collection], values, report), "qaManifest", {}, run=run)
        if chain not in existing:
            butler.registry.registerCollection(chain, CollectionType.CHAINED)
        butler.collections.prepend_chain(chain, run)
    return {"run": run, "collection": chain, "metric": METRIC, "n_values": values.num_rows,
            "n_fail": values.column("status").to_pylist().count("fail") if values.num_rows else 0}


def _data_ids(report):
    return [r.data_id for r in report.results]


def _put_split(butler, values: pa.Table, run: str, key: str, dataset_type: str, fixed: dict) -> None:
    """One table per value of ``key`` (visit, tract), with the data ID the QA's own tables have."""
    import pyarrow.compute as pc

    if not values.num_rows or None in fixed.values():
        return
    column = values.column(key)
    for value in sorted(v for v in set(column.to_pylist()) if v is not None):
        part = values.filter(pc.equal(column, value))
        butler.put(part, dataset_type, {**fixed, key: value}, run=run)
