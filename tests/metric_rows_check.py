"""The check a user makes of a QA run's per-row datasets: each metric's stored rows, selected and
aggregated by the metric's own rule, give back every stored value of that metric, at every level.

Used by the pipeline tests on surveyqa's own survey (with the reference-catalog task) and on the
Rubin-shaped repository.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lsst.daf.butler import Butler

from surveyqa.metrics.engine import aggregate_rows
from surveyqa.metrics.library import get_metric
from surveyqa.tasks.rows import level_keys

#: (per-row dataset, metric-value dataset) of each QA task.
PAIRS = [("qaMetricRows_visit", "qaMetricValues_visit"), ("qaMetricRows_tract", "qaMetricValues_tract"),
         ("qaMetricRows_detector", "qaMetricValues_detector")]


def _key(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each row's data ID as text (nulls as 'None', integers without a decimal point)."""
    def text(v) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return "None"
        return str(int(v)) if isinstance(v, (int, np.integer, float, np.floating)) else str(v)
    return frame[keys].astype(object).apply(lambda r: "|".join(text(v) for v in r), axis=1)


def check_rows_reaggregate(repo, collection: str) -> set[tuple[str, str]]:
    """Assert that every stored metric value is the aggregation of its stored rows; returns the
    (metric, level) pairs checked."""
    butler = Butler.from_config(str(repo), collections=collection)
    registered = {d.name for d in butler.registry.queryDatasetTypes("qa*")}
    checked: set[tuple[str, str]] = set()
    for rows_type, values_type in PAIRS:
        if rows_type not in registered:
            continue
        for ref in butler.query_datasets(rows_type, collections=collection, explain=False):
            rows = butler.get(ref).to_pandas()
            values = butler.get(values_type, dataId=ref.dataId, collections=collection).to_pandas()
            for (metric, level), stored in values.groupby(["metric", "level"]):
                mine = rows[rows["metric"] == metric].reset_index(drop=True)
                assert len(mine), f"{ref.dataId}: {metric} has values but no stored rows"
                keys = level_keys(stored)
                again = aggregate_rows(get_metric(metric), mine, keys).to_pandas()
                want = stored.assign(_key=_key(stored, keys)).set_index("_key")
                got = again.assign(_key=_key(again, keys)).set_index("_key").reindex(want.index)
                where = f"{metric} at {level} level in {ref.dataId}"
                np.testing.assert_allclose(got["value"].to_numpy(float), want["value"].to_numpy(float),
                                           rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=where)
                assert (got["n"].to_numpy() == want["n"].to_numpy()).all(), where
                checked.add((metric, level))
    return checked
