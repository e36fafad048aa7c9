"""The QA run's manifest: which metrics were computed, at which levels, with which selection and
aggregation, against which specs, and where their values are (DMTN-085 §4.12)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

import pyarrow as pa

from surveyqa.errors import SurveyQAError

__all__ = ["build_manifest", "complete_manifest", "per_row_counts", "QA_DATASET_TYPES", "VALUES_DATASET",
           "TASK_METRICS"]

QA_DATASET_TYPES = ["qaMetricRows_visit", "qaDetectorValues_visit", "qaMetricValues_visit", "qaMetricRows_detector",
                    "qaMetricValues_detector", "qaMetricRows_tract", "qaMetricValues_tract", "qaManifest"]
#: Metrics written by the per-detector reference task (not read back by the manifest task).
DETECTOR_METRICS = {"health.astromOffset": "detector", "health.photRefOffset": "detector"}
#: Metrics a pipeline task measures on its own, lost when it is switched off for want of an input.
TASK_METRICS = {"qaDetectorReference": list(DETECTOR_METRICS)}
VALUES_DATASET = {"visit": "qaMetricValues_visit", "tract": "qaMetricValues_tract",
                  "detector": "qaMetricValues_detector"}


def per_row_counts(tables: Mapping[str, Sequence[pa.Table]]) -> dict[str, dict[str, int]]:
    """``{metric: {dataset_type: rows}}`` of per-row datasets, from ``{dataset_type: tables}``
    (their ``metric`` column is enough)."""
    import pyarrow.compute as pc

    out: dict[str, dict[str, int]] = {}
    for dataset_type, parts in tables.items():
        for table in parts:
            column = table.column("metric")
            column = column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
            for item in pc.value_counts(column).to_pylist():
                per = out.setdefault(item["values"], {})
                per[dataset_type] = per.get(dataset_type, 0) + int(item["counts"])
    return out


def build_manifest(run: str, inputs: Sequence[str], tables: Sequence[pa.Table],
                   detector_metrics: bool = True, rows: Mapping[str, Mapping[str, int]] | None = None) -> dict:
    """The manifest of a run, from the metric-value tables it wrote (metric, level columns).

    Parameters
    ----------
    run : str
        The output RUN collection.
    inputs : sequence of str
        Input collections (runs) the QA read.
    tables : sequence of pyarrow.Table
        ``qaMetricValues_visit`` and ``qaMetricValues_tract`` tables (``metric``, ``level``, ``status``).
    detector_metrics : bool
        Whether the per-detector reference task ran, so that its metrics (``DETECTOR_METRICS``)
        are listed too; False for values ingested from elsewhere.
    rows : mapping, optional
        What the per-row datasets hold (`per_row_counts`): each metric's ``per_row_dataset``
        and ``per_row_rows`` come from it (None for a metric without stored rows). The
        reference task's rows (``qaMetricRows_detector``, one file per detector) are not read:
        they are listed with an unknown count, as its values are.
    """
    import surveyqa
    from surveyqa.metrics.library import get_metric
    from surveyqa.metrics.registry import load_default_registry
    from surveyqa.metrics.units import unit_to_string

    registry = load_default_registry()
    seen: dict[str, dict] = {}
    for table in tables:
        # A value with a tract comes from the tract task (its calibration values are at visit and
        # detector level too); one without, from the visit task.
        tracts = table.column("tract").to_pylist() if "tract" in table.column_names else [None] * table.num_rows
        for metric, level, status, tract in zip(table.column("metric").to_pylist(), table.column("level").to_pylist(),
                                                table.column("status").to_pylist(), tracts):
            entry = seen.setdefault(metric, {"levels": set(), "n_values": 0, "n_fail": 0, "source": set()})
            entry["levels"].add(level)
            entry["n_values"] += 1
            entry["n_fail"] += status == "fail"
            entry["source"].add("qaMetricValues_tract" if level in ("patch", "tract") or tract is not None
                                else "qaMetricValues_visit")
    for name, level in DETECTOR_METRICS.items() if detector_metrics else ():
        seen.setdefault(name, {"levels": {level}, "n_values": None, "n_fail": None,
                               "source": {"qaMetricValues_detector"}})
    metrics = []
    for name in sorted(seen):
        metric = get_metric(name)
        try:
            definition = registry.get(name)
            description = " ".join(definition.description.split())
            reference = definition.reference
        except SurveyQAError:  # a library metric without a YAML definition: say so, keep going
            description, reference = metric.description, None
        specs = [{"name": s.name, "operator": s.operator, "threshold": float(s.threshold.value),
                  "unit": unit_to_string(s.threshold.unit)} for s in registry.specs_for(name, {})] \
            if name in registry else []
        stored = dict((rows or {}).get(name, {}))
        if not stored and name in DETECTOR_METRICS and detector_metrics:
            stored = {"qaMetricRows_detector": None}
        metrics.append({
            "name": name, "unit": unit_to_string(metric.unit), "description": description,
            "reference": reference if isinstance(reference, (dict, str)) or reference is None else str(reference),
            "granularity": metric.granularity, "levels": sorted(seen[name]["levels"]),
            "selection": {"name": metric.selection.name, "description": metric.selection.description},
            "aggregation": metric.aggregation.name,
            "per_row_dataset": sorted(stored)[0] if stored else None,
            "per_row_rows": sum(stored.values()) if stored and None not in stored.values() else None,
            "row_kind": metric.row_kind,
            "values_dataset": sorted(seen[name]["source"])[0], "higher_is_better": metric.higher_is_better,
            "n_values": seen[name]["n_values"], "n_fail": seen[name]["n_fail"], "specs": specs,
        })
    return {
        "surveyqa_version": surveyqa.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run": run, "inputs": list(inputs), "metrics": metrics, "dataset_types": QA_DATASET_TYPES,
        "levels": ["detector", "visit", "patch", "tract"],
    }


def complete_manifest(manifest: dict, statuses: Sequence, switched_off: dict[str, str]) -> dict:
    """The manifest with what did not run: ``failed`` and ``blocked`` quanta and ``switched_off`` tasks.

    Written by ``surveyqa run`` after the quanta (the manifest task, which also runs under
    ``pipetask``, sees only its own inputs; a manifest without these keys does not know).
    The metrics of a switched-off task (`TASK_METRICS`) are dropped from ``metrics``.

    Parameters
    ----------
    manifest : dict
        As `build_manifest` returns it.
    statuses : sequence of `surveyqa.tasks.executor.QuantumStatus`
        Every quantum's outcome (``label``, ``status``, ``data_id``, ``exception_type``, ``message``).
    switched_off : dict
        ``{label: reason}`` of the tasks left out of the pipeline.
    """
    def entry(s) -> dict:
        return {"label": s.label, "data_id": {k: v for k, v in s.data_id.items()},
                "exception_type": s.exception_type, "message": s.message}

    lost = {name for label in switched_off for name in TASK_METRICS.get(label, [])}
    return {**manifest, "metrics": [m for m in manifest["metrics"] if m["name"] not in lost],
            "failed": [entry(s) for s in statuses if s.status == "failed"],
            "blocked": [entry(s) for s in statuses if s.status == "blocked"],
            "switched_off": dict(switched_off)}
