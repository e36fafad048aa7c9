"""The dashboard's shared cache keeps within its byte budget, least recently used out first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from surveyqa.dashboard.source import CachedSource, TableSource, size_of
from surveyqa.errors import SurveyQAError


def _objects(tract: int, rows: int) -> pd.DataFrame:
    """A tract's stored per-row values of one metric (ids, patch, band strings, values)."""
    rng = np.random.default_rng(tract)
    return pd.DataFrame({
        "metric": "m", "selected": np.ones(rows, bool),
        "objectId": np.arange(rows, dtype=np.int64) + tract * 10**8,
        "tract": np.full(rows, tract, dtype=np.int64),
        "patch": rng.integers(0, 81, rows),
        "band": rng.choice(["g", "r", "i"], rows),
        "value": rng.normal(size=rows),
        "mag": rng.uniform(17, 24, rows),
    })


@pytest.fixture
def tables() -> dict[int, pd.DataFrame]:
    return {tract: _objects(tract, 50_000) for tract in (1, 2, 3, 4)}


def _source(tables) -> TableSource:
    values = pd.DataFrame({"metric": ["m"], "value": [1.0], "level": ["tract"], "tract": [1]})
    return TableSource(values, rows=pd.concat(tables.values(), ignore_index=True))


def test_size_is_the_frames_deep_memory(tables):
    frame = tables[1]
    exact = frame.memory_usage(deep=True).sum()
    assert abs(size_of(frame) - exact) <= 0.02 * exact  # strings weighed from a sample of rows
    # strings are counted: the band column weighs far more than its 8-byte pointers
    assert size_of(frame) > frame.memory_usage(deep=False).sum() + 40 * len(frame)
    # a value holding the same frame twice counts it once
    assert size_of({"a": frame, "b": [frame]}) < 1.01 * size_of(frame)


def test_cache_keeps_within_its_byte_budget(tables):
    one = size_of(tables[1])
    cache = CachedSource(_source(tables), max_bytes=int(2.5 * one))
    for tract in (1, 2, 3, 4, 1, 3):
        frame = cache.metric_rows("m", tract=tract)
        assert frame.equals(tables[tract])
        assert cache.nbytes <= cache.max_bytes
        held = sum(size_of(v) for v, _ in cache._cache.values())
        assert cache.nbytes == held
    assert len(cache) == 2  # two tract tables fit in 2.5 tables' bytes


def test_least_recently_used_goes_first(tables):
    one = size_of(tables[1])
    cache = CachedSource(_source(tables), max_bytes=int(2.5 * one))
    first = cache.metric_rows("m", tract=1)
    cache.metric_rows("m", tract=2)
    assert cache.metric_rows("m", tract=1) is first  # a hit, and tract 1 is now the most recently used
    cache.metric_rows("m", tract=3)  # evicts tract 2, the least recently used
    assert ("metric_rows", "m", 1, None) in cache and ("metric_rows", "m", 3, None) in cache
    assert ("metric_rows", "m", 2, None) not in cache
    assert cache.metric_rows("m", tract=1) is first


def test_a_result_larger_than_the_budget_is_returned_not_kept(tables):
    cache = CachedSource(_source(tables), max_bytes=size_of(tables[1]) // 2)
    frame = cache.metric_rows("m", tract=1)
    assert frame.equals(tables[1])
    assert len(cache) == 0 and cache.nbytes == 0
    # small results still are kept
    assert cache.memo(("small",), lambda: 42) == 42
    assert ("derived", "small") in cache


def test_derived_values_count_their_frames(tables):
    one = size_of(tables[1])
    cache = CachedSource(_source(tables), max_bytes=int(1.5 * one))
    cache.metric_rows("m", tract=1)
    # a derived value holding a frame as large as a tract pushes the tract table out
    view = cache.memo(("view", 2), lambda: {"rows": _objects(2, 50_000), "n": 50_000})
    assert view["n"] == 50_000
    assert ("metric_rows", "m", 1, None) not in cache
    assert cache.nbytes <= cache.max_bytes


def test_negative_budget_is_a_clear_error(tables):
    with pytest.raises(SurveyQAError, match="negative"):
        CachedSource(_source(tables), max_bytes=-1)


def test_sessions_asking_at_once_read_a_table_once():
    """A page opened while the server's warm-up reads the quick look waits for that read, not a second one."""
    import threading
    import time

    reads = []

    class Slow(TableSource):
        def metric_values(self, metric=None, level=None, where=None):
            reads.append(threading.get_ident())
            time.sleep(0.3)  # a read of thousands of files
            return super().metric_values(metric, level, where)

    cached = CachedSource(Slow(pd.DataFrame({"metric": ["m"] * 3, "value": [1.0, 2.0, 3.0], "level": "tract"})))
    results = [None] * 4

    def ask(i):
        results[i] = cached.metric_values()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reads) == 1, f"{len(reads)} reads of the same table"
    assert all(r is results[0] for r in results) and list(results[0]["value"]) == [1.0, 2.0, 3.0]
