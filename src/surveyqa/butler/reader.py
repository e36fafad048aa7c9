"""Fast reads of QA outputs: `QARepository`.

Dataset URIs are resolved once per dataset type through the registry, then the Parquet files
behind them are read directly with DuckDB (one query over many files), not with one
``butler.get`` per file: reading every metric value of hundreds of tracts is one scan.

Example
-------
>>> qa = QARepository("demo-repo", "qa/demo")              # doctest: +SKIP
>>> qa.metric_values("health.astromOffset", level="detector")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lsst.daf.butler import MissingDatasetTypeError

from surveyqa.butler.repo import check_collection, open_repo
from surveyqa.errors import SurveyQAError

__all__ = ["QARepository", "METRIC_VALUE_DATASETS", "RUN_METRIC_VALUES"]

log = logging.getLogger(__name__)

METRIC_VALUE_DATASETS = ("qaMetricValues_visit", "qaMetricValues_tract", "qaMetricValues_detector")
#: Every metric value of a run in one table, written by ``surveyqa run`` once its quanta are done.
RUN_METRIC_VALUES = "qaMetricValues"
_WHERE_COLUMNS = ("metric", "level", "band", "physical_filter", "tract", "patch", "visit", "detector", "column", "status", "spec")


def _vertices(region) -> tuple[list[float], list[float]]:
    """RA, Dec (degrees) of a sphgeom polygon's vertices."""
    from lsst.sphgeom import LonLat

    ras, decs = [], []
    for v in region.getVertices():
        ll = LonLat(v)
        ras.append(ll.getLon().asDegrees())
        decs.append(ll.getLat().asDegrees())
    return ras, decs


class QARepository:
    """Read the QA outputs of one collection of a Butler repository as pandas DataFrames.

    Parameters
    ----------
    repo : path-like
        Butler repository root.
    collection : str
        Collection holding the QA run (the ``--output`` of ``surveyqa run`` or ``pipetask run -o``).
    state : str, optional
        The run's `state` where the caller knows it better than the registry: ``surveyqa run``,
        reading its own run before marking it complete. Read from the registry if omitted.

    Raises
    ------
    SurveyQAError
        One line saying what exists, if ``repo`` is not a repository or ``collection`` does not exist.
    """

    #: Safe to call from several threads at once (the dashboard's JSON routes do): each thread has its own Butler.
    thread_safe = True

    def __init__(self, repo: str | os.PathLike, collection: str, *, state: str | None = None):
        if state is not None:
            self._state = state
        self.repo = str(repo)
        self.collection = collection
        self._butler = open_repo(repo)
        self._thread = threading.get_ident()
        self._local = threading.local()
        check_collection(self._butler, collection)
        self._paths: dict[str, list[tuple[dict, str]]] = {}

    @property
    def butler(self):
        """This thread's Butler: the one opened here in the thread that made the reader, a clone in any other.

        A Butler must not be used by two threads at once (daf_butler's documentation); `Butler.clone`
        gives another connected to the same repository, cheaply. Everything else the reader keeps
        (resolved paths, the run state) is filled idempotently, so threads reading at once may at
        worst resolve a dataset type twice.
        """
        if threading.get_ident() == self._thread:
            return self._butler
        butler = getattr(self._local, "butler", None)
        if butler is None:
            butler = self._local.butler = self._butler.clone()
        return butler

    def __repr__(self) -> str:
        return f"QARepository({self.repo!r}, {self.collection!r})"

    @property
    def state(self) -> str:
        """``'complete'``, or ``'partial'`` for a run interrupted before it finished (its values are
        readable but some are missing: ``surveyqa run ... --resume`` completes it)."""
        if not hasattr(self, "_state"):
            from surveyqa.tasks.runstate import run_state

            try:
                self._state = run_state(self.butler, self.collection)
            except SurveyQAError as exc:  # not a QA run at all (e.g. an input collection)
                log.debug("no run state for %s: %s", self.collection, exc)
                self._state = "complete"
        return self._state

    # -- dataset resolution ------------------------------------------------------------------
    def datasets(self, dataset_type: str) -> list[tuple[dict, str]]:
        """(data ID, local file path) of every dataset of a type in the collection (cached)."""
        if dataset_type not in self._paths:
            try:
                refs = self.butler.query_datasets(dataset_type, collections=self.collection, find_first=True,
                                                  explain=False)
            except MissingDatasetTypeError as exc:  # unregistered dataset type: there is simply nothing to read
                log.debug("no %s: %s", dataset_type, exc)
                refs = []
            uris = self.butler.get_many_uris(refs) if refs else {}
            out = []
            for ref in refs:
                primary = uris[ref].primaryURI
                if primary is None or not primary.isLocal:
                    raise SurveyQAError(f"{dataset_type} {ref.dataId} is not a local file ({primary})",
                                        "QARepository reads repositories with a local datastore")
                out.append(({k: ref.dataId[k] for k in ref.dataId.required.keys()}, primary.ospath))
            self._paths[dataset_type] = out
        return self._paths[dataset_type]

    def _read(self, dataset_type: str, where: Mapping[str, object] | None = None,
              keep: callable = None, order: Sequence[str] = (), uniform: bool = False) -> pd.DataFrame:
        """Rows of every file of a dataset type, filtered and ordered by DuckDB.

        ``uniform``: the files share one schema (metric values), so DuckDB need not read every
        file's schema first (`union_by_name`): 2.3 s instead of 3.3 s for the 10,800 per-detector
        files of 100 tracts. Should a file lack a column after all, the read is done again
        with the union of the schemas.
        """
        import duckdb

        files = [p for data_id, p in self.datasets(dataset_type) if keep is None or keep(data_id)]
        if not files:
            return pd.DataFrame()
        if uniform:
            try:
                return self._read_files(files, where, order, union_by_name=False)
            except duckdb.Error as exc:  # not one schema after all
                log.debug("%s: files differ in schema (%s); reading their union", dataset_type, exc)
        return self._read_files(files, where, order, union_by_name=True)

    @staticmethod
    def _read_files(files: list[str], where: Mapping[str, object] | None, order: Sequence[str],
                    union_by_name: bool) -> pd.DataFrame:
        import duckdb

        sql = f"SELECT * FROM read_parquet($files, union_by_name = {'true' if union_by_name else 'false'})"
        params: dict[str, object] = {"files": files}
        clauses = []
        for i, (key, value) in enumerate((where or {}).items()):
            if value is None:
                continue
            values = list(value) if isinstance(value, (list, tuple, set, np.ndarray)) else [value]
            clauses.append(f'"{key}" IN (SELECT unnest($v{i}))')
            params[f"v{i}"] = [v.item() if hasattr(v, "item") else v for v in values]
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        if order:
            sql += " ORDER BY " + ", ".join(f'"{c}"' for c in order)
        con = duckdb.connect()
        try:
            return con.execute(sql, params).df()
        finally:
            con.close()

    # -- QA outputs --------------------------------------------------------------------------
    def manifest(self) -> dict:
        """The run's manifest (`qaManifest`): metrics, levels, selections, specs, dataset types."""
        refs = self.butler.query_datasets("qaManifest", collections=self.collection, find_first=True, explain=False) \
            if "qaManifest" in self._registered() else []
        if refs:
            return self._with_analysis_tools(self.butler.get(refs[0]))
        if self._analysis_tools_only():  # Rubin's own QA outputs, no surveyqa run
            return {"collection": self.collection, "metrics": self.analysis_tools.manifest_entries(),
                    "source": "analysis_tools"}
        if self.state == "partial":  # killed before its manifest task: list what it did write
            return self._with_analysis_tools(self._partial_manifest())
        raise SurveyQAError(f"collection {self.collection!r} has no qaManifest",
                            "is it the output collection of a QA run (surveyqa run ... --output)?")

    @property
    def analysis_tools(self):
        """Rubin's own QA outputs in the collection (`surveyqa.butler.analysis_tools`): their metrics
        join ours in `manifest` and `metric_values`, so the dashboard and the tracker show both."""
        if "_analysis_tools" not in self.__dict__:
            from surveyqa.butler.analysis_tools import AnalysisToolsMetrics

            self._analysis_tools = AnalysisToolsMetrics(self.butler, self.collection)
        return self._analysis_tools

    def _analysis_tools_only(self) -> bool:
        """No surveyqa metric values in the collection, but analysis_tools ones."""
        ours = any(self.datasets(dt) for dt in (RUN_METRIC_VALUES, *METRIC_VALUE_DATASETS))
        return not ours and bool(self.analysis_tools.manifest_entries())

    def _with_analysis_tools(self, manifest: dict) -> dict:
        extra = self.analysis_tools.manifest_entries()
        return {**manifest, "metrics": list(manifest.get("metrics", [])) + extra} if extra else manifest

    def _analysis_tools_values(self, filters: Mapping[str, object]) -> pd.DataFrame:
        df = self.analysis_tools.metric_values()
        for key, value in filters.items():
            if value is not None and len(df):
                values = list(value) if isinstance(value, (list, tuple, set, np.ndarray)) else [value]
                df = df[df[key].isin(values)]
        return df

    def _partial_manifest(self) -> dict:
        """The manifest `build_manifest` makes of the metric values a partial run wrote, marked
        ``partial``: the dashboard and the tracker can then show what there is, saying it is not all."""
        import pyarrow.parquet as pq

        from surveyqa.tasks.manifest import build_manifest, per_row_counts

        if "_manifest" not in self.__dict__:
            paths = [path for dt in METRIC_VALUE_DATASETS for _, path in self.datasets(dt)]
            tables = [pq.read_table(p, columns=[c for c in ("metric", "level", "status", "tract")
                                                if c in pq.read_schema(p).names]) for p in paths]
            rows = per_row_counts({name: [pq.read_table(p, columns=["metric"]) for _, p in self.datasets(name)]
                                   for name in ("qaMetricRows_visit", "qaMetricRows_tract")})
            self._manifest = {**build_manifest(self.collection, [], tables, detector_metrics=False, rows=rows),
                              "partial": True}
        return self._manifest

    def _registered(self) -> set[str]:
        return {dt.name for dt in self.butler.registry.queryDatasetTypes("qa*")}

    def metric_values(self, metric: str | Sequence[str] | None = None, level: str | Sequence[str] | None = None,
                      where: Mapping[str, object] | None = None) -> pd.DataFrame:
        """Metric values (docs/data-model.md columns), one row per metric and data ID.

        Parameters
        ----------
        metric : str or list of str, optional
            Full metric name(s), e.g. ``"validate_drp.PA1"``.
        level : str or list of str, optional
            ``detector``, ``visit``, ``patch`` or ``tract``.
        where : mapping, optional
            Column -> value (or list of values) filters on the data ID columns
            (``{"tract": 100, "band": ["g", "r"], "status": "fail"}``).
        """
        filters = {"metric": metric, "level": level, **dict(where or {})}
        unknown = sorted(set(filters) - set(_WHERE_COLUMNS))
        if unknown:
            raise SurveyQAError(f"cannot filter metric values on {unknown}", f"use {', '.join(_WHERE_COLUMNS)}")
        # One file when the run wrote its table; otherwise (``pipetask run``, an ingest) every quantum's:
        # at 100 tracts those are 12,100 files, 3-5 s to find and read.
        datasets = (RUN_METRIC_VALUES,) if self.datasets(RUN_METRIC_VALUES) else METRIC_VALUE_DATASETS
        parts = [self._read(dt, filters, uniform=True) for dt in datasets]
        parts.append(self._analysis_tools_values(filters))
        parts = [p for p in parts if len(p)]
        if not parts:
            from surveyqa.tasks.values import METRIC_VALUE_SCHEMA

            return METRIC_VALUE_SCHEMA.empty_table().to_pandas()
        df = pd.concat(parts, ignore_index=True)
        if self.state == "partial" and not self._analysis_tools_only():
            log.warning("collection %s is a partial QA run (interrupted): some metric values are missing; "
                        "`surveyqa run %s --output ... --resume` completes it", self.collection, self.repo)
        for key in ("tract", "patch", "visit", "detector", "n"):
            df[key] = df[key].astype("Int64")
        return df.sort_values(["metric", "level", "tract", "patch", "visit", "detector"], kind="stable",
                              ignore_index=True)

    def metric_rows(self, metric: str, tract: int | None = None, patch: int | Sequence[int] | None = None,
                    visit: int | None = None, detector: int | Sequence[int] | None = None) -> pd.DataFrame:
        """The stored per-row values of one metric (``qaMetricRows_*``, `surveyqa.tasks.rows`),
        optionally of one tract, patch(es), visit or detector(s).

        These are the rows the engine computed the metric from, with ``value``, ``selected``
        and the data-ID columns: `surveyqa.metrics.engine.aggregate_rows` of them gives the
        metric values back. Columns no row of this metric has are dropped.
        """
        dataset = self._rows_dataset(metric)
        if dataset is None:
            return pd.DataFrame()
        where = {"metric": metric, "patch": patch, "detector": detector, "tract": tract, "visit": visit}

        def keep(data_id) -> bool:  # files that can hold the rows asked for
            return all(data_id.get(k) == v for k, v in (("tract", tract), ("visit", visit))
                       if v is not None and k in data_id)
        rows = self._read(dataset, where, keep=keep)
        if not len(rows):
            return rows
        return rows.dropna(axis="columns", how="all").reset_index(drop=True)

    def _rows_dataset(self, metric: str) -> str | None:
        try:
            entry = next((m for m in self.manifest()["metrics"] if m["name"] == metric), None)
        except SurveyQAError:
            entry = None
        return entry.get("per_row_dataset") if entry else None

    def detector_values(self, visit: int | Sequence[int] | None = None) -> pd.DataFrame:
        """Per-detector values (`qaDetectorValues_visit`) of one, some or all visits."""
        visits = None if visit is None else set(np.atleast_1d(visit).tolist())
        return self._read("qaDetectorValues_visit", keep=None if visits is None else lambda d: d["visit"] in visits,
                          order=("visit", "detector"))

    def failures(self) -> pd.DataFrame:
        """Quanta that did not succeed: label, data ID, status, exception type and message.

        Read from ``qaQuantumStatus`` (written by ``surveyqa run``); for a run made by
        ``pipetask run``, from the ``<label>_log`` datasets of quanta without ``<label>_metadata``.
        """
        status = self._read("qaQuantumStatus")
        if len(status):
            return status[status["status"] != "success"].reset_index(drop=True)
        return self._failures_from_logs()

    def _failures_from_logs(self) -> pd.DataFrame:
        rows = []
        names = {dt.name for dt in self.butler.registry.queryDatasetTypes("*_log")}
        for log_type in sorted(names):
            label = log_type[: -len("_log")]
            logs = self.butler.query_datasets(log_type, collections=self.collection, find_first=True, explain=False)
            done = set()
            try:
                meta = self.butler.query_datasets(f"{label}_metadata", collections=self.collection, find_first=True,
                                                  explain=False)
                done = {m.dataId for m in meta}
            except Exception:  # no metadata dataset type: nothing succeeded
                pass
            for ref in logs:
                if ref.dataId in done:
                    continue
                records = self.butler.get(ref)
                errors = [r for r in records if r.levelname in ("ERROR", "CRITICAL")]
                message = errors[-1].message if errors else ""
                exc_type = message.split("Exception ", 1)[1].split(":", 1)[0] if "Exception " in message else None
                exc_msg = message.split(": ", 1)[1] if exc_type and ": " in message else message
                data_id = {k: ref.dataId[k] for k in ref.dataId.required.keys()}
                rows.append({"label": label, "status": "failed", **data_id, "exception_type": exc_type,
                             "message": exc_msg,
                             "data_id": ", ".join(f"{k}={v}" for k, v in data_id.items())})
        return pd.DataFrame(rows)

    # -- geometry ----------------------------------------------------------------------------
    def tracts(self) -> pd.DataFrame:
        """Tracts with QA outputs: skymap, tract, RA/Dec vertices (deg) and the bands measured."""
        tracts = {d["tract"]: d["skymap"] for d, _ in self.datasets("qaMetricValues_tract")}
        bands = self._bands_by("tract")
        rows = []
        for rec in self.butler.query_dimension_records("tract", explain=False):
            if rec.id in tracts and rec.skymap == tracts[rec.id]:
                ra, dec = _vertices(rec.region)
                rows.append({"skymap": rec.skymap, "tract": rec.id, "ra": ra, "dec": dec,
                             "bands": bands.get(rec.id, [])})
        return pd.DataFrame(rows, columns=["skymap", "tract", "ra", "dec", "bands"])

    def patches(self, tract: int) -> pd.DataFrame:
        """Patches of a tract: patch, RA/Dec vertices (deg)."""
        rows = []
        skymaps = {d["skymap"] for d, _ in self.datasets("qaMetricValues_tract") if d["tract"] == tract}
        skymaps = skymaps or {r.name for r in self.butler.query_dimension_records("skymap", explain=False)}
        records = [rec for skymap in sorted(skymaps) for rec in self.butler.query_dimension_records(
            "patch", where="skymap = sm AND tract = t", bind={"sm": skymap, "t": int(tract)}, explain=False)]
        for rec in records:
            ra, dec = _vertices(rec.region)
            rows.append({"skymap": rec.skymap, "tract": rec.tract, "patch": rec.id, "ra": ra, "dec": dec})
        return pd.DataFrame(rows, columns=["skymap", "tract", "patch", "ra", "dec"]).sort_values("patch",
                                                                                               ignore_index=True)

    def visits(self) -> pd.DataFrame:
        """Visits with QA outputs: visit, band, physical_filter, day_obs, RA/Dec vertices (deg)."""
        with_qa = {d["visit"] for d, _ in self.datasets("qaMetricValues_visit")}
        rows = []
        for rec in self.butler.query_dimension_records("visit", explain=False):
            if rec.id in with_qa:
                ra, dec = _vertices(rec.region)
                rows.append({"instrument": rec.instrument, "visit": rec.id, "band": rec.physical_filter.split("_")[0]
                             if rec.physical_filter else None, "physical_filter": rec.physical_filter,
                             "day_obs": rec.day_obs, "ra": ra, "dec": dec})
        df = pd.DataFrame(rows, columns=["instrument", "visit", "band", "physical_filter", "day_obs", "ra", "dec"])
        if len(df):
            bands = {r.name: r.band for r in self.butler.query_dimension_records("physical_filter", explain=False)}
            df["band"] = df["physical_filter"].map(bands)
        return df.sort_values("visit", ignore_index=True)

    def detectors(self, visit: int | None = None) -> pd.DataFrame:
        """(visit, detector) sky polygons: RA/Dec vertices (deg) from ``visit_detector_region``."""
        with_qa = {d["visit"] for d, _ in self.datasets("qaMetricValues_visit")}
        where = f"visit = {int(visit)}" if visit is not None else ""
        rows = []
        instruments = sorted({r.name for r in self.butler.query_dimension_records("instrument", explain=False)})
        records = [rec for inst in instruments for rec in self.butler.query_dimension_records(
            "visit_detector_region", where=("instrument = inst" + (" AND " + where if where else "")),
            bind={"inst": inst}, explain=False)]
        for rec in records:
            if rec.visit in with_qa:
                ra, dec = _vertices(rec.region)
                rows.append({"instrument": rec.instrument, "visit": rec.visit, "detector": rec.detector,
                             "ra": ra, "dec": dec})
        return pd.DataFrame(rows, columns=["instrument", "visit", "detector", "ra", "dec"]).sort_values(
            ["visit", "detector"], ignore_index=True)

    def _bands_by(self, key: str) -> dict:
        df = self._read("qaMetricValues_tract")
        if not len(df):
            return {}
        df = df[df["band"].notna()]
        return {k: sorted(set(g["band"])) for k, g in df.groupby(key)}

    def truth(self) -> dict | None:
        """The simulation's truth manifest (`simTruth`) when the inputs are a `surveyqa sim` survey."""
        try:
            refs = self.butler.query_datasets("simTruth", collections=self.collection, find_first=True, explain=False)
        except Exception:  # not a simulated survey
            return None
        return self.butler.get(refs[0]) if refs else None
