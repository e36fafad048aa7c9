"""The reader over a Dask cluster, for collections larger than one machine's memory: `DaskQARepository`.

`QARepository` reads a collection's Parquet files with DuckDB in the calling process: every metric
value of a run, or one tract's rows, fits there. Re-aggregating a metric's stored per-row values
over a whole data release (10^10 sources over 10^4 tracts) does not. `DaskQARepository` gives
the same answers with the work on a ``dask.distributed`` cluster: each task reads its files where
it runs (with the very DuckDB query `QARepository` uses) and aggregates them there, so only the
per-group results travel back. A stored per-row file holds one tract's or one visit's rows, so an
aggregation over groups that lie within one file (a tract's patches, a visit's detectors, per band)
is exact per file; a coarser one is refused rather than approximated.

`open_reader` chooses: a scheduler address (``scheduler=`` or ``$SURVEYQA_DASK_SCHEDULER``;
``local`` starts a `LocalCluster`), or the collection's per-row files passing a size
(``$SURVEYQA_DASK_ABOVE``, bytes; default half this machine's memory), selects Dask; otherwise DuckDB.
The workers must see the repository's files at the same paths (a shared file system).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import pandas as pd

from surveyqa.butler.reader import QARepository
from surveyqa.errors import SurveyQAError

__all__ = ["DaskQARepository", "open_reader", "aggregate_file", "rows_bytes", "SCHEDULER_ENV", "ABOVE_ENV"]

log = logging.getLogger(__name__)

#: A Dask scheduler address (``tcp://host:8786``), or ``local`` for a `LocalCluster` of this machine.
SCHEDULER_ENV = "SURVEYQA_DASK_SCHEDULER"
#: Per-row bytes of a collection above which `open_reader` reads it over Dask.
ABOVE_ENV = "SURVEYQA_DASK_ABOVE"
#: The per-row datasets, by the data-ID key each file is one of.
_ROWS_BY_KEY = {"tract": "qaMetricRows_tract", "visit": "qaMetricRows_visit", "detector": "qaMetricRows_detector"}
#: Files read by one task: 12,100 one-quantum files in 190 tasks, not 12,100.
_FILES_PER_TASK = 64


def aggregate_file(path: str, metric_name: str, group_by: Sequence[str]) -> pd.DataFrame:
    """One stored per-row file's rows of a metric, aggregated by the metric's own rule per ``group_by``
    group (`surveyqa.metrics.engine.aggregate_rows`): what a Dask task does with its file."""
    from surveyqa.metrics.engine import aggregate_rows
    from surveyqa.metrics.library import get_metric

    rows = QARepository._read_files([path], {"metric": metric_name}, (), union_by_name=False)
    if not len(rows):
        return pd.DataFrame()
    rows = rows.dropna(subset=list(group_by)).reset_index(drop=True)
    return aggregate_rows(get_metric(metric_name), rows, list(group_by)).to_pandas()


def _read_chunk(files: list[str], where: Mapping[str, object] | None, union_by_name: bool) -> pd.DataFrame:
    return QARepository._read_files(files, where, (), union_by_name)


class DaskQARepository(QARepository):
    """`QARepository` whose reads and per-row aggregations run on a ``dask.distributed`` cluster.

    Parameters
    ----------
    repo, collection, state
        As for `QARepository`.
    client : distributed.Client, optional
        The cluster's client; else one is made for ``scheduler``.
    scheduler : str, optional
        Scheduler address, or ``local`` for a `LocalCluster` (closed with `close`).
    """

    def __init__(self, repo, collection: str, *, client=None, scheduler: str | None = None,
                 state: str | None = None):
        super().__init__(repo, collection, state=state)
        self._own = None
        if client is None:
            from distributed import Client, LocalCluster

            if not scheduler:
                raise SurveyQAError("no Dask cluster given", f"pass client= or scheduler= (or set ${SCHEDULER_ENV})")
            if scheduler == "local":
                self._own = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=":0")
                client = Client(self._own)
            else:
                try:
                    client = Client(scheduler, timeout="5s")
                except OSError as exc:
                    raise SurveyQAError(f"cannot reach the Dask scheduler at {scheduler}: {exc}",
                                        f"start one (`dask scheduler`) or unset ${SCHEDULER_ENV}") from exc
        self.client = client

    def __repr__(self) -> str:
        return f"DaskQARepository({self.repo!r}, {self.collection!r}, {self.client.scheduler.address!r})"

    def close(self) -> None:
        """Close the client and the `LocalCluster` this reader started (not a cluster it was given)."""
        if self._own is not None:
            self.client.close()
            self._own.close()
            self._own = None

    def _read_files(self, files: list[str], where: Mapping[str, object] | None, order: Sequence[str],
                    union_by_name: bool) -> pd.DataFrame:
        """`QARepository`'s DuckDB read of each chunk of files, run on the workers; ordered here."""
        chunks = [files[i:i + _FILES_PER_TASK] for i in range(0, len(files), _FILES_PER_TASK)]
        futures = self.client.map(_read_chunk, chunks, where=dict(where or {}), union_by_name=union_by_name,
                                  pure=False)
        parts = [p for p in self.client.gather(futures) if len(p)]
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, ignore_index=True)
        return frame.sort_values(list(order), kind="stable", ignore_index=True) if order else frame

    def aggregate_metric_rows(self, metric: str, group_by: Sequence[str]) -> pd.DataFrame:
        """A metric's stored per-row values over the whole collection, aggregated by the metric's own
        rule per ``group_by`` group (e.g. ``["tract", "patch"]``), file by file on the workers.

        Raises
        ------
        SurveyQAError
            The metric has no stored rows, or ``group_by`` lacks the key its files are split by
            (a group spread over files would need every row in one place).
        """
        dataset = self._rows_dataset(metric)
        if dataset is None:
            raise SurveyQAError(f"metric {metric} has no stored per-row values in {self.collection}",
                                "see the run's manifest for the metrics with per_row_dataset")
        key = next(k for k, name in _ROWS_BY_KEY.items() if name == dataset)
        if key not in group_by:
            raise SurveyQAError(f"cannot aggregate {metric}'s rows by {list(group_by)} over Dask",
                                f"its rows are stored per {key}: group by {key} too, e.g. [{key!r}, ...]")
        files = [path for _, path in self.datasets(dataset)]
        futures = self.client.map(aggregate_file, files, metric_name=metric, group_by=list(group_by), pure=False)
        parts = [p for p in self.client.gather(futures) if len(p)]
        if not parts:
            return pd.DataFrame()
        return pd.concat(parts, ignore_index=True).sort_values(list(group_by), ignore_index=True)


def rows_bytes(qa: QARepository) -> int:
    """Bytes on disk of a collection's stored per-row files (what a whole-collection aggregation reads)."""
    return sum(os.path.getsize(path) for name in _ROWS_BY_KEY.values() for _, path in qa.datasets(name))


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def open_reader(repo, collection: str, *, scheduler: str | None = None, above: int | None = None,
                client=None) -> QARepository:
    """The reader for a collection: `DaskQARepository` when a scheduler is given (argument or
    ``$SURVEYQA_DASK_SCHEDULER``) or the per-row files pass ``above`` bytes (or ``$SURVEYQA_DASK_ABOVE``;
    default half this machine's memory), else `QARepository` (DuckDB). Over Dask it uses ``client``
    if given, else the scheduler, else a new `LocalCluster`."""
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
    qa = QARepository(repo, collection)
    if scheduler is None:
        raw = above if above is not None else os.environ.get(ABOVE_ENV)
        try:
            limit = int(raw) if raw not in (None, "") else _memory_bytes() // 2
        except ValueError as exc:
            raise SurveyQAError(f"${ABOVE_ENV} is {raw!r}, not a number of bytes") from exc
        try:
            size = rows_bytes(qa)
        except SurveyQAError as exc:  # not a local datastore: the DuckDB reader says so when it reads
            log.debug("no size for %s: %s", collection, exc)
            return qa
        if size <= limit:
            return qa
        log.info("%s: %.1f GB of per-row files, over %.1f GB: reading over a local Dask cluster", collection,
                 size / 1e9, limit / 1e9)
        scheduler = "local"
    reader = DaskQARepository(repo, collection, client=client, scheduler=scheduler)
    reader._paths = qa._paths  # the datasets already resolved
    return reader
