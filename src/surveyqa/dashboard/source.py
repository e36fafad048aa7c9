"""Where the dashboard's numbers come from: a small data-source interface and two sources.

The dashboard reads through `DataSource`, the subset of `surveyqa.butler.QARepository` it
needs, so a Butler repository is one source among others (an in-memory `TableSource` over
tidy tables is the other: tests and exploring a metric table before it is ingested).
`CachedSource` memoises the reads, per server: browser sessions and the JSON routes' threads
share the read-only data, never their drill-down state. It is thread-safe: a key is computed
once while others wait for it, and the wrapped source is called by one thread at a time.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from surveyqa.errors import SurveyQAError

__all__ = ["DataSource", "TableSource", "CachedSource", "open_repository", "with_polygon", "memo", "size_of",
           "METRIC_COLUMNS"]

log = logging.getLogger(__name__)

#: Columns of a tidy metric-value table (docs/data-model.md).
METRIC_COLUMNS = [
    "metric", "value", "unit", "level", "band", "tract", "patch", "visit", "detector",
    "n", "selection", "aggregation", "spec", "threshold", "status", "note",
]


@runtime_checkable
class DataSource(Protocol):
    """What the dashboard reads; `surveyqa.butler.QARepository` satisfies it.

    Polygons are lists of (RA, Dec) vertices in degrees; values are in the unit of their row.
    ``state`` is ``'complete'``, or ``'partial'`` for a run interrupted before it finished.
    """

    state: str

    def manifest(self) -> dict: ...

    def metric_values(self, metric: str | None = None, level: str | None = None,
                      where: Any = None) -> pd.DataFrame: ...

    def metric_rows(self, metric: str, tract: int | None = None, patch: int | None = None,
                    visit: int | None = None, detector: int | None = None) -> pd.DataFrame: ...

    def detector_values(self, visit: int | None = None) -> pd.DataFrame: ...

    def tracts(self) -> pd.DataFrame: ...

    def patches(self, tract: int) -> pd.DataFrame: ...

    def visits(self) -> pd.DataFrame: ...

    def detectors(self, visit: int | None = None) -> pd.DataFrame: ...

    def failures(self) -> pd.DataFrame: ...


class TableSource:
    """A `DataSource` over tidy in-memory tables (no repository).

    Parameters
    ----------
    metric_values : pandas.DataFrame
        Tidy metric values with the columns of `METRIC_COLUMNS` (missing ones are filled with nulls).
    manifest : dict, optional
        The QA manifest; built from the table (one entry per metric, unit from its rows) if omitted.
    tracts, patches, visits, detectors, failures : pandas.DataFrame, optional
        Sky geometry (a ``polygon`` column of (RA, Dec) vertex lists, degrees) and failed quanta.
    rows : pandas.DataFrame, optional
        Per-row values as the QA stores them (`surveyqa.tasks.rows`: ``metric``, ``value``,
        ``selected`` and the data-ID columns).
    """

    def __init__(self, metric_values: pd.DataFrame, manifest: dict | None = None, *,
                 tracts: pd.DataFrame | None = None, patches: pd.DataFrame | None = None,
                 visits: pd.DataFrame | None = None, detectors: pd.DataFrame | None = None,
                 failures: pd.DataFrame | None = None, rows: pd.DataFrame | None = None,
                 state: str = "complete"):
        self.state = state
        values = metric_values.copy()
        for column in METRIC_COLUMNS:
            if column not in values:
                values[column] = None
        self._values = values
        self._manifest = manifest or _manifest_from_values(values)
        self._tracts = tracts if tracts is not None else pd.DataFrame(columns=["tract", "polygon"])
        self._patches = patches if patches is not None else pd.DataFrame(columns=["tract", "patch", "polygon"])
        self._visits = visits if visits is not None else pd.DataFrame(columns=["visit", "band", "polygon"])
        self._detectors = (detectors if detectors is not None
                           else pd.DataFrame(columns=["visit", "detector", "polygon"]))
        self._failures = failures if failures is not None else pd.DataFrame(columns=["label", "ra", "dec"])
        self._rows = rows if rows is not None else pd.DataFrame(columns=["metric", "value", "selected"])

    def manifest(self) -> dict:
        return self._manifest

    def metric_values(self, metric=None, level=None, where=None) -> pd.DataFrame:
        frame = self._values
        if metric is not None:
            frame = frame[frame["metric"] == metric]
        if level is not None:
            frame = frame[frame["level"] == level]
        return frame.reset_index(drop=True)

    def metric_rows(self, metric, tract=None, patch=None, visit=None, detector=None) -> pd.DataFrame:
        frame = self._rows[self._rows["metric"] == metric]
        for key, value in (("tract", tract), ("patch", patch), ("visit", visit), ("detector", detector)):
            if value is not None and key in frame:
                frame = frame[frame[key] == value]
        return frame.dropna(axis="columns", how="all").reset_index(drop=True)

    def detector_values(self, visit=None) -> pd.DataFrame:
        return pd.DataFrame(columns=["visit", "detector"])

    def tracts(self) -> pd.DataFrame:
        return self._tracts

    def patches(self, tract) -> pd.DataFrame:
        return self._patches[self._patches["tract"] == tract]

    def visits(self) -> pd.DataFrame:
        return self._visits

    def detectors(self, visit=None) -> pd.DataFrame:
        if visit is None or not len(self._detectors):
            return self._detectors
        return self._detectors[self._detectors["visit"] == visit]

    def failures(self) -> pd.DataFrame:
        return self._failures


def _manifest_from_values(values: pd.DataFrame) -> dict:
    """A minimal manifest for a table that came without one: one entry per metric."""
    metrics = []
    for name, rows in values.groupby("metric", sort=True):
        unit = rows["unit"].dropna()
        metrics.append({
            "name": name,
            "unit": str(unit.iloc[0]) if len(unit) else "",
            "description": "",
            "granularity": rows["level"].iloc[0],
            "levels": sorted(rows["level"].dropna().unique().tolist()),
            "specs": [],
        })
    return {"metrics": metrics}


class CachedSource:
    """Memoise a source's reads, shared by all sessions of a server, within a memory budget.

    Entries are weighed in bytes (`size_of`: a DataFrame's ``memory_usage(deep=True)``, numpy
    arrays, and the frames and arrays inside a derived value such as a page's model) and the
    least recently used go first once their sum passes ``max_bytes``: at 100 tracts a tract's
    per-object table alone is ~100 MB, so a count of entries says nothing about memory. A result
    larger than the whole budget is returned but not kept.

    Thread-safe: the pages (Tornado's IO loop), the JSON routes (a thread pool) and the warm-up
    read through it at once. Each key has its own lock while it is computed, so a second
    thread asking for the same key waits for the first's result instead of computing it again,
    and threads computing different keys run together. The wrapped source is called by one
    thread at a time (`_call`) unless it says it is ``thread_safe``: a Butler instance must not be
    used by two threads at once (daf_butler's own documentation); `QARepository` gives each thread
    its own, so different reads of it run at once.

    Parameters
    ----------
    source : DataSource
        The source to read through.
    max_bytes : int
        Memory budget of the kept results, bytes (default 2 GiB).
    """

    def __init__(self, source: DataSource, max_bytes: int = 2 * 1024**3):
        if max_bytes < 0:
            raise SurveyQAError(f"cache size {max_bytes} bytes is negative", "give a size of 0 bytes or more")
        self.source = source
        self.max_bytes = int(max_bytes)
        self._cache: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # guards the entries, their bytes and `_reading`
        self._reading: dict[tuple, threading.Lock] = {}  # one lock per key being read (see `_get`)
        self._source_lock = threading.RLock()  # one call into the wrapped source at a time (`_call`)

    @property
    def nbytes(self) -> int:
        """Bytes held now (the sum of the kept entries' `size_of`)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, key: tuple) -> bool:
        return key in self._cache

    def _hit(self, key: tuple) -> tuple[bool, Any]:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True, self._cache[key][0]
            return False, None

    def _get(self, key: tuple, read: Callable[[], Any]) -> Any:
        """The cached value of ``key``, or ``read()`` once: a second caller waits for the first's result.

        Without that, a session opened while the server's warm-up (or another session) reads
        the 12,100 metric-value files of a 100-tract repository would read them all again.
        """
        found, value = self._hit(key)
        if found:
            return value
        with self._lock:
            reading = self._reading.setdefault(key, threading.Lock())
        with reading:
            found, value = self._hit(key)
            if found:
                return value
            try:
                return self._read(key, read)
            finally:
                with self._lock:
                    self._reading.pop(key, None)

    def _read(self, key: tuple, read: Callable[[], Any]) -> Any:
        value = read()
        size = size_of(value)  # outside the lock: deep sizes of large frames take a while
        with self._lock:
            if key in self._cache:  # another session read it meanwhile
                self._bytes -= self._cache.pop(key)[1]
            if size > self.max_bytes:
                log.info("not caching %s: %.1f MB is over the cache's %.1f MB", key[:3], size / 2**20,
                         self.max_bytes / 2**20)
                return value
            self._cache[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._cache.popitem(last=False)
                self._bytes -= dropped
        return value

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)`` of the wrapped source, one thread at a time.

        Only the reads are serialised: a view derived from them (`memo`) is computed outside
        this lock, so threads computing different views run in parallel.
        """
        if getattr(self.source, "thread_safe", False):  # e.g. QARepository: a Butler per thread
            return method(*args, **kwargs)
        with self._source_lock:
            return method(*args, **kwargs)

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """A value derived from the reads (a page's model), computed once per server for ``key``.

        Thread-safe: a thread asking for a ``key`` another is computing waits for its result.
        ``compute`` runs without any lock held but that key's, and may itself read or `memo`
        other keys (a view reads tables, a comparison memoises both runs' views): the keys form
        a hierarchy, never a cycle, so no two threads wait for each other.
        """
        return self._get(("derived",) + tuple(key), compute)

    @property
    def state(self) -> str:
        return self._get(("state",), lambda: self._call(getattr, self.source, "state", "complete"))

    def manifest(self) -> dict:
        return self._get(("manifest",), lambda: self._call(self.source.manifest))

    def metric_values(self, metric=None, level=None, where=None) -> pd.DataFrame:
        if where is not None:
            return self._call(self.source.metric_values, metric=metric, level=level, where=where)
        if metric is None and level is None:
            return self._get(("metric_values", None, None), lambda: self._call(self.source.metric_values))

        def select() -> pd.DataFrame:  # one scan of every value, then pandas filters per page
            frame = self.metric_values()
            if metric is not None:
                frame = frame[frame["metric"] == metric]
            if level is not None:
                frame = frame[frame["level"] == level]
            return frame.reset_index(drop=True)

        return self._get(("metric_values", metric, level), select)

    def metric_rows(self, metric, tract=None, patch=None, visit=None, detector=None) -> pd.DataFrame:
        """One metric's rows of a tract or visit, read once; a patch's or detector's are a slice of them."""
        tract, patch, visit, detector = (None if v is None else int(v) for v in (tract, patch, visit, detector))
        whole = self._get(("metric_rows", metric, tract, visit),
                          lambda: self._call(self.source.metric_rows, metric, tract=tract, visit=visit))
        if (patch is None and detector is None) or not len(whole):
            return whole

        def part() -> pd.DataFrame:
            frame = whole
            for key, value in (("patch", patch), ("detector", detector)):
                if value is not None:
                    frame = frame[frame[key] == value] if key in frame else frame.iloc[:0]
            return frame.reset_index(drop=True)
        return self._get(("metric_rows", metric, tract, visit, patch, detector), part)

    def detector_values(self, visit=None) -> pd.DataFrame:
        return self._get(("detector_values", visit), lambda: self._call(self.source.detector_values, visit))

    def tracts(self) -> pd.DataFrame:
        return self._get(("tracts",), lambda: with_polygon(self._call(self.source.tracts)))

    def patches(self, tract) -> pd.DataFrame:
        return self._get(("patches", int(tract)), lambda: with_polygon(self._call(self.source.patches, int(tract))))

    def visits(self) -> pd.DataFrame:
        return self._get(("visits",), lambda: with_polygon(self._call(self.source.visits)))

    def detectors(self, visit=None) -> pd.DataFrame:
        if visit is None:
            return self._get(("detectors",), lambda: with_polygon(self._call(self.source.detectors)))
        return self._get(("detectors", int(visit)),
                         lambda: with_polygon(self._call(self.source.detectors, int(visit))))

    def failures(self) -> pd.DataFrame:
        return self._get(("failures",), lambda: self._call(self.source.failures))


#: A list longer than this is weighed from its first items (a list of a million floats would take a second).
_SAMPLE = 1000


def size_of(value: Any, _seen: set | None = None) -> int:
    """Approximate bytes held by a cached value: frames, arrays, and containers or dataclasses of them.

    A DataFrame counts its columns and index as ``memory_usage(deep=True)`` does (the objects of an
    object column weighed from a sample of its rows; a list in a cell by its shell only: polygons
    of a few vertices are a small part); an object met twice inside one value counts once; a long list is weighed from its first
    `_SAMPLE` items. Other objects count their shallow size.
    """
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return int(np.sum(value.memory_usage(deep=False, index=True))) + _objects_size(value)
    if isinstance(value, pd.Index):
        return int(value.memory_usage(deep=True))
    if isinstance(value, np.ndarray):
        return int(value.nbytes) + (_items_size(value.ravel().tolist(), seen) if value.dtype == object else 0)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(size_of(k, seen) + size_of(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sys.getsizeof(value) + _items_size(value if isinstance(value, (list, tuple)) else list(value), seen)
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return sys.getsizeof(value) + size_of(vars(value), seen)
    return sys.getsizeof(value)


def _objects_size(frame: pd.DataFrame | pd.Series) -> int:
    """Bytes of the Python objects (strings, lists) of a frame's object columns beyond their pointers.

    Weighed from `_SAMPLE` evenly spaced rows: a deep count of every string of the 130,000 metric
    values of 100 tracts took 0.9 s, more than computing the quick look itself.
    """
    objects = frame.select_dtypes(include=object) if isinstance(frame, pd.DataFrame) else (
        frame if frame.dtype == object else None)
    if objects is None or not objects.size:
        return 0
    n = len(objects)
    sample = objects.iloc[:: n // _SAMPLE] if n > 2 * _SAMPLE else objects
    deep = np.sum(sample.memory_usage(deep=True, index=False)) - np.sum(sample.memory_usage(deep=False, index=False))
    return int(deep) * n // max(1, len(sample))


def _items_size(items: list | tuple, seen: set) -> int:
    head = sum(size_of(v, seen) for v in items[:_SAMPLE])
    return head * len(items) // _SAMPLE if len(items) > _SAMPLE else head


def memo(source: DataSource, key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per server when ``source`` is a `CachedSource`, every time otherwise.

    Thread-safe for a `CachedSource` (`CachedSource.memo`: concurrent callers of one key share
    one computation); other sources hold no state here to share.
    """
    method = getattr(source, "memo", None)
    return method(key, compute) if method is not None else compute()


def with_polygon(frame: pd.DataFrame) -> pd.DataFrame:
    """Add a ``polygon`` column of (RA, Dec) vertex lists (deg) from ``ra``/``dec`` vertex-list columns."""
    if "polygon" in frame or not {"ra", "dec"} <= set(frame.columns):
        return frame
    frame = frame.copy()
    frame["polygon"] = [list(zip(ra, dec)) if ra is not None and len(ra) else None
                        for ra, dec in zip(frame["ra"], frame["dec"])]
    return frame


def open_repository(repo: str, collection: str) -> DataSource:
    """Open a QA repository written by the QA pipeline, with a clear error if it is not one.

    Parameters
    ----------
    repo : str
        Path or URI of the Butler repository.
    collection : str
        The collection holding the QA outputs (with their ``qaManifest``).
    """
    try:
        from surveyqa.butler.dask_reader import open_reader
    except ImportError as exc:  # the reader ships with surveyqa; a broken install is the user's to fix
        raise SurveyQAError(f"cannot import the repository reader: {exc}",
                            "reinstall surveyqa (pip install -e .)") from exc
    return open_reader(repo, collection)  # DuckDB, or Dask when $SURVEYQA_DASK_SCHEDULER is set or it is large
