"""Read Rubin's own QA outputs (lsst/analysis_tools) from a repository, without analysis_tools.

analysis_tools writes, per quantum, a ``<name>_metrics`` dataset (storage class
``MetricMeasurementBundle``, the Butler's ``JsonFormatter``): a JSON object mapping each analysis
tool's name to a list of lsst.verify measurement documents (``metric``, ``identifier``, ``value``,
``unit``, ``blob_refs``; ``value`` null when not finite), plus the bundle's ``__reference_package``,
``__timestamp_version``, ``__dataset_identifier`` and ``__metricNamePrefix`` keys.
``MakeMetricTableTask`` gathers bundles into a ``<name>_metrics_table`` (``<name>_metricsTable`` in
some pipelines): one row per input data ID, its data ID fields as columns, then one column
``<tool>_<measurement>`` per metric with its unit. Thresholds live in analysis_tools'
``metricInformation.yaml``, keyed by that same ``<tool>_<measurement>``: a value is an outlier
below ``lowThreshold`` or above ``highThreshold``.

Both are turned into rows of our metric-value table (`surveyqa.tasks.values.METRIC_VALUE_SCHEMA`),
named ``analysis_tools.<name>.<tool>_<measurement>``, with the Butler data ID, the unit, and the
thresholds as two `surveyqa.metrics.specs.Specification` (``>= low``, ``<= high``) evaluated by the
one spec engine, so that the dashboard and the tracker show them next to our own values.
The JSON is read directly: the storage class's Python type need not be importable.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import pandas as pd
import yaml

from surveyqa.errors import DefinitionError, SurveyQAError
from surveyqa.metrics.specs import Specification, compare
from surveyqa.metrics.units import parse_unit, unit_to_string

__all__ = [
    "BUNDLE_STORAGE_CLASS",
    "TABLE_SUFFIXES",
    "METRIC_INFORMATION_ENV",
    "PACKAGE",
    "AnalysisToolsMetrics",
    "ToolValue",
    "metric_name",
    "bundle_values",
    "table_values",
    "read_metric_information",
    "default_metric_information",
    "threshold_specs",
]

log = logging.getLogger(__name__)

BUNDLE_STORAGE_CLASS = "MetricMeasurementBundle"
BUNDLE_SUFFIX = "_metrics"
TABLE_SUFFIXES = ("_metrics_table", "_metricsTable")
#: Environment variable naming a ``metricInformation.yaml`` (else the installed analysis_tools' own).
METRIC_INFORMATION_ENV = "SURVEYQA_METRIC_INFORMATION"
#: Package of the metric names we give analysis_tools' metrics.
PACKAGE = "analysis_tools"
_BUNDLE_KEYS = ("__reference_package", "__timestamp_version", "__dataset_identifier", "__metricNamePrefix")
_ID_COLUMNS = ("band", "physical_filter", "tract", "patch", "visit", "detector")
_LEVELS = (("detector", "detector"), ("visit", "visit"), ("patch", "patch"), ("tract", "tract"), ("band", "band"))


def metric_name(stem: str, tool: str, measurement: str) -> str:
    """``analysis_tools.<stem>.<tool>_<measurement>``: the ``<tool>_<measurement>`` is the column
    name ``MakeMetricTableTask`` gives the value and the key of ``metricInformation.yaml``."""
    return f"{PACKAGE}.{stem}.{tool}_{measurement}"


def _level(data_id: Mapping[str, Any]) -> str:
    return next((level for key, level in _LEVELS if data_id.get(key) is not None), "dataset")


def _band_of(name: str, bands: set[str]) -> str | None:
    """The band a metric name is about (analysis_tools writes ``{band}_...`` into names), if exactly one."""
    hits = {t for t in name.split("_") if t in bands}
    return hits.pop() if len(hits) == 1 else None


@functools.lru_cache(maxsize=1024)
def _unit(text: str | None) -> str:
    """Our spelling of a unit as analysis_tools wrote it (``pixel`` -> ``pix``); cached: a bundle
    repeats a handful of units thousands of times, and astropy's parsing is what reading costs."""
    return unit_to_string(parse_unit(text))


# -- thresholds -------------------------------------------------------------------------------

def default_metric_information() -> Path | None:
    """``$SURVEYQA_METRIC_INFORMATION``, else the ``metricInformation.yaml`` of an installed
    analysis_tools, else None."""
    if os.environ.get(METRIC_INFORMATION_ENV):
        return Path(os.environ[METRIC_INFORMATION_ENV])
    try:
        path = importlib.resources.files("lsst.analysis.tools") / "metricInformation.yaml"
    except ModuleNotFoundError:
        return None
    return Path(str(path)) if path.is_file() else None


def read_metric_information(path: Path | str | None) -> dict[str, dict[str, Any]]:
    """analysis_tools' ``metricInformation.yaml``: ``<tool>_<measurement>`` -> ``lowThreshold``,
    ``highThreshold``, ``divergent``, ``description``...; empty when ``path`` is None.

    Raises
    ------
    DefinitionError
        If the file cannot be read or is not a mapping of mappings.
    """
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise DefinitionError(f"cannot read metric information {path}: {exc.strerror}",
                              f"set {METRIC_INFORMATION_ENV} to analysis_tools' metricInformation.yaml") from exc
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path} is not YAML: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DefinitionError(f"{path}: expected a mapping of metric name -> lowThreshold, highThreshold, ...")
    return data


def threshold_specs(name: str, info: Mapping[str, Any] | None, unit: u.UnitBase) -> list[Specification]:
    """The two bounds of one metricInformation entry as specs in the metric's unit (``>= low``, ``<= high``)."""
    out = []
    for key, op, suffix in (("lowThreshold", ">=", "low"), ("highThreshold", "<=", "high")):
        value = (info or {}).get(key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out.append(Specification(f"{name}.metricInformation_{suffix}", name, op, value * unit, tags=("metricInformation",)))
    return out


# -- rows --------------------------------------------------------------------------------------

@dataclass
class ToolValue:
    """One analysis_tools value: our metric name, value (NaN: not computed), unit, Butler data ID,
    the dataset it was read from (``source``: dataset type and data ID) and the tool that made it."""

    metric: str
    value: float
    unit: str
    data_id: dict[str, Any]
    source: str
    tool: str | None = None

    @property
    def dataset_type(self) -> str:
        return self.source.split(" ", 1)[0]


def bundle_values(bundle: Mapping[str, Any], stem: str, data_id: Mapping[str, Any], source: str) -> list[ToolValue]:
    """Rows of one parsed ``MetricMeasurementBundle`` JSON document (tool -> measurements).

    Raises
    ------
    SurveyQAError
        If the document is not of that shape.
    """
    if not isinstance(bundle, Mapping):
        raise SurveyQAError(f"{source}: not a MetricMeasurementBundle (a JSON object of tool -> measurements)")
    rows = []
    for tool, measurements in bundle.items():
        if tool in _BUNDLE_KEYS:
            continue
        if not isinstance(measurements, list):
            raise SurveyQAError(f"{source}: tool {tool!r} holds {type(measurements).__name__}, not a list of measurements")
        for m in measurements:
            if not isinstance(m, Mapping) or "metric" not in m:
                raise SurveyQAError(f"{source}: tool {tool!r}: a measurement without 'metric'", "expected lsst.verify measurement JSON")
            value = m.get("value")
            rows.append(ToolValue(metric_name(stem, tool, str(m["metric"])), math.nan if value is None else float(value),
                             _unit(m.get("unit")), dict(data_id), source, tool))
    return rows


def table_values(table: Any, stem: str, data_id: Mapping[str, Any], source: str) -> list[ToolValue]:
    """Rows of one ``MakeMetricTableTask`` table (astropy Table): one per (row, metric column)."""
    id_cols = [c for c in table.colnames if c in _ID_COLUMNS or c in ("instrument", "skymap")]
    rows = []
    for name in table.colnames:
        col = table[name]
        if name in id_cols or name == "corners" or col.dtype.kind not in "fiu" or len(col.shape) > 1:
            continue
        unit = _unit(col.unit.to_string()) if col.unit is not None else ""
        for i in range(len(table)):
            row_id = {**data_id, **{c: _scalar(table[c][i]) for c in id_cols}}
            rows.append(ToolValue(f"{PACKAGE}.{stem}.{name}", float(col[i]), unit, row_id, source))
    return rows


def _scalar(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


# -- a repository ------------------------------------------------------------------------------

@dataclass
class AnalysisToolsMetrics:
    """The analysis_tools metrics of one collection: values (our table's columns) and manifest entries.

    Parameters
    ----------
    butler : lsst.daf.butler.Butler
    collection : str
    metric_information : path, optional
        analysis_tools' ``metricInformation.yaml``; `default_metric_information` if omitted.
    """

    butler: Any
    collection: str
    metric_information: Path | str | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def dataset_types(self) -> tuple[list[str], list[str]]:
        """Names of the bundle and metric-table dataset types registered in the repository."""
        bundles = sorted(dt.name for dt in self.butler.registry.queryDatasetTypes("*" + BUNDLE_SUFFIX)
                         if dt.storageClass_name == BUNDLE_STORAGE_CLASS)
        tables = sorted({dt.name for s in TABLE_SUFFIXES for dt in self.butler.registry.queryDatasetTypes("*" + s)})
        return bundles, tables

    def _refs(self, dataset_type: str) -> list:
        return list(self.butler.query_datasets(dataset_type, collections=self.collection, find_first=True, explain=False))

    @staticmethod
    def _data_id(ref) -> dict[str, Any]:
        d = ref.dataId
        return dict(d.mapping) if d.hasFull() else dict(d.required)

    def _bands(self) -> set[str]:
        return {r.name for r in self.butler.query_dimension_records("band", explain=False)} or set("ugrizy")

    def _rows(self) -> list[ToolValue]:
        if "rows" in self._cache:
            return self._cache["rows"]
        bundles, tables = self.dataset_types()
        rows: list[ToolValue] = []
        for name in bundles:
            stem = name[: -len(BUNDLE_SUFFIX)]
            refs = self._refs(name)
            uris = self.butler.get_many_uris(refs) if refs else {}
            for ref in refs:
                uri = uris[ref].primaryURI
                try:
                    doc = json.loads(uri.read())
                except ValueError as exc:
                    raise SurveyQAError(f"{name} {ref.dataId}: not JSON ({exc})", "is it a MetricMeasurementBundle?") from exc
                rows.extend(bundle_values(doc, stem, self._data_id(ref), f"{name} {ref.dataId}"))
        seen = {(r.metric, *(r.data_id.get(k) for k in _ID_COLUMNS)) for r in rows}
        for name in tables:
            stem = next(name[: -len(s)] for s in TABLE_SUFFIXES if name.endswith(s))
            for ref in self._refs(name):
                table = self.butler.get(ref, storageClass="ArrowAstropy")
                for r in table_values(table, stem, self._data_id(ref), f"{name} {ref.dataId}"):
                    if (r.metric, *(r.data_id.get(k) for k in _ID_COLUMNS)) not in seen:  # a bundle gave it already
                        rows.append(r)
        log.info("analysis_tools: %d values from %d bundle and %d table dataset types in %s",
                 len(rows), len(bundles), len(tables), self.collection)
        self._cache["rows"] = rows
        return rows

    def _information(self) -> dict[str, dict[str, Any]]:
        if "info" not in self._cache:
            path = self.metric_information if self.metric_information is not None else default_metric_information()
            self._cache["info"] = read_metric_information(path)
        return self._cache["info"]

    def specs(self) -> dict[str, list[Specification]]:
        """Metric name -> its metricInformation thresholds as specs (in the metric's unit)."""
        if "specs" not in self._cache:
            info, out = self._information(), {}
            for r in self._rows():
                if r.metric not in out:
                    key = r.metric.split(".", 2)[2]  # <tool>_<measurement>
                    out[r.metric] = threshold_specs(r.metric, info.get(key), parse_unit(r.unit))
            self._cache["specs"] = out
        return self._cache["specs"]

    def metric_values(self) -> pd.DataFrame:
        """Every value as a row of our metric-value table (`METRIC_VALUE_SCHEMA` columns), checked
        against its thresholds by the spec engine (``status`` pass / fail / none)."""
        if "values" not in self._cache:
            self._cache["values"] = self._metric_values()
        return self._cache["values"].copy()

    def _metric_values(self) -> pd.DataFrame:
        from surveyqa.tasks.values import METRIC_VALUE_SCHEMA

        specs, bands, records = self.specs(), self._bands(), []
        # each metric's bounds in its unit once (the spec engine's conversion), then its operators per value
        bounds = {name: [(s.name, s.operator, s.threshold_in(s.threshold.unit)) for s in ss] for name, ss in specs.items()}
        for r in self._rows():
            band = r.data_id.get("band") or _band_of(r.metric.split(".", 2)[2], bands)
            spec, threshold, status = None, math.nan, "none"
            if bounds[r.metric] and math.isfinite(r.value):
                failed = [b for b in bounds[r.metric] if not compare(r.value, b[1], b[2])]
                spec, _, threshold = failed[0] if failed else bounds[r.metric][-1]
                status = "fail" if failed else "pass"
            records.append({
                "metric": r.metric, "value": r.value, "unit": r.unit, "level": _level({**r.data_id, "band": band}),
                "band": band, "physical_filter": r.data_id.get("physical_filter"),
                **{k: r.data_id.get(k) for k in ("tract", "patch", "visit", "detector")},
                "aggregation": r.tool, "spec": spec, "threshold": threshold, "status": status,
                "note": f"analysis_tools {r.dataset_type}" + ("" if math.isfinite(r.value) else ": not computed (null)"),
                "rule": "spec" if status == "fail" else None,
            })
        df = pd.DataFrame(records, columns=METRIC_VALUE_SCHEMA.names)
        for key in ("tract", "patch", "visit", "detector", "n"):
            df[key] = df[key].astype("Int64")
        return df

    def manifest_entries(self) -> list[dict[str, Any]]:
        """One manifest entry per metric (as ``qaManifest`` lists ours): name, unit, levels, specs."""
        if "entries" not in self._cache:
            self._cache["entries"] = self._manifest_entries()
        return [dict(e) for e in self._cache["entries"]]

    def _manifest_entries(self) -> list[dict[str, Any]]:
        info, specs = self._information(), self.specs()
        entries: dict[str, dict[str, Any]] = {}
        values = self.metric_values()
        dataset_types = {r.metric: r.dataset_type for r in self._rows()}
        for name, group in values.groupby("metric", sort=True):
            levels = [lv for lv in ("dataset", "band", "tract", "patch", "visit", "detector") if (group["level"] == lv).any()]
            key = name.split(".", 2)[2]
            entries[name] = {
                "name": name,
                "unit": str(group["unit"].iloc[0]),
                "description": str((info.get(key) or {}).get("description") or f"analysis_tools metric {key}").strip(),
                "granularity": levels[-1],
                "levels": levels,
                "specs": [s.to_dict() for s in specs.get(name, [])],
                "source": "analysis_tools",
                "dataset_type": dataset_types.get(name),
                "higher_is_better": None,
            }
        return list(entries.values())
