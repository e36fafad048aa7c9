"""The reader and the dashboard over Dask: on a `LocalCluster`, the same answers as the DuckDB path,
on the Rubin-shaped repository's QA run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from surveyqa.butler import QARepository
from surveyqa.butler.dask_reader import DaskQARepository, open_reader
from surveyqa.errors import SurveyQAError
from surveyqa.metrics.engine import aggregate_rows
from surveyqa.metrics.library import get_metric


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def readers(small_rubin_repo, client):
    repo, _ = small_rubin_repo
    return QARepository(repo, "qa/run"), DaskQARepository(repo, "qa/run", client=client)


def test_metric_values_and_rows_read_on_the_cluster_equal_duckdbs(readers):
    duck, dask = readers
    pd.testing.assert_frame_equal(dask.metric_values(), duck.metric_values())
    pd.testing.assert_frame_equal(dask.metric_values("validate_drp.PA1", where={"band": ["g", "r"]}),
                                  duck.metric_values("validate_drp.PA1", where={"band": ["g", "r"]}))
    visit = int(duck.metric_values("health.psfFwhm", level="visit")["visit"].iloc[0])
    rows = duck.metric_rows("health.psfFwhm", visit=visit)
    assert len(rows) > 100
    pd.testing.assert_frame_equal(dask.metric_rows("health.psfFwhm", visit=visit), rows)


def _duckdb_path(duck: QARepository, metric: str, key: str, group_by: list[str]) -> pd.DataFrame:
    """What the dashboard does for children the run stored no value for: one tract's or visit's rows
    read with DuckDB, aggregated by the metric's rule (dashboard.model._children_from_rows)."""
    parts = []
    for value in sorted(duck.metric_values(metric)[key].dropna().unique()):
        rows = duck.metric_rows(metric, **{key: int(value)})
        rows = rows.dropna(subset=group_by).reset_index(drop=True)
        parts.append(aggregate_rows(get_metric(metric), rows, group_by).to_pandas())
    return pd.concat(parts, ignore_index=True).sort_values(group_by, ignore_index=True)


@pytest.mark.parametrize("metric, key, group_by", [
    ("health.psfFwhm", "visit", ["visit", "detector"]),        # visit rows, per detector
    ("validate_drp.PA1", "tract", ["tract", "band"]),           # matched stars of the tract, per band
    ("health.objectDensity", "tract", ["tract", "patch"]),       # the coadd's cells, per patch
])
def test_whole_collection_aggregation_on_the_cluster_equals_the_duckdb_path(readers, metric, key, group_by):
    duck, dask = readers
    got = dask.aggregate_metric_rows(metric, group_by)
    want = _duckdb_path(duck, metric, key, group_by)
    assert len(got) == len(want) > 0
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)


def test_cluster_aggregation_gives_back_the_stored_values(readers):
    """The stored per-detector PSF FWHM of every visit, from its rows, aggregated on the workers."""
    duck, dask = readers
    stored = duck.metric_values("health.psfFwhm", level="detector").sort_values(["visit", "detector"],
                                                                                 ignore_index=True)
    again = dask.aggregate_metric_rows("health.psfFwhm", ["visit", "detector"])
    assert len(stored) > 0
    merged = stored.merge(again, on=["visit", "detector"], suffixes=("", "_again"), validate="one_to_one")
    assert len(merged) == len(stored)
    np.testing.assert_allclose(merged["value_again"], merged["value"], rtol=1e-12, equal_nan=True)
    assert (merged["n_again"].to_numpy() == merged["n"].to_numpy()).all()


def test_dashboard_drill_views_over_dask_equal_duckdbs(small_rubin_repo, client, monkeypatch):
    from surveyqa.dashboard.model import metric_view, visit_view
    from surveyqa.dashboard.source import open_repository

    repo, _ = small_rubin_repo
    duck = open_repository(repo, "qa/run")
    monkeypatch.setenv("SURVEYQA_DASK_SCHEDULER", client.scheduler.address)
    dask = open_repository(repo, "qa/run")
    assert isinstance(dask, DaskQARepository) and not isinstance(duck, DaskQARepository)
    visit = int(duck.metric_values("health.psfFwhm", level="visit")["visit"].iloc[0])
    for view in (lambda s: metric_view(s, "validate_drp.PA1", tract=9615),
                 lambda s: metric_view(s, "health.objectDensity", tract=9615),
                 lambda s: visit_view(s, "health.psfFwhm", visit=visit)):
        assert json.dumps(view(dask).to_json(), default=str) == json.dumps(view(duck).to_json(), default=str)


def test_grouping_across_files_is_refused_not_approximated(readers):
    _, dask = readers
    with pytest.raises(SurveyQAError, match="its rows are stored per visit: group by visit"):
        dask.aggregate_metric_rows("health.psfFwhm", ["band"])
    with pytest.raises(SurveyQAError, match="no stored per-row values"):
        dask.aggregate_metric_rows("validate_drp.nothing", ["tract"])


def test_open_reader_chooses_by_flag_or_by_size(small_rubin_repo, client, monkeypatch):
    repo, _ = small_rubin_repo
    monkeypatch.delenv("SURVEYQA_DASK_SCHEDULER", raising=False)
    monkeypatch.delenv("SURVEYQA_DASK_ABOVE", raising=False)
    assert type(open_reader(repo, "qa/run", above=10**15, client=client)) is QARepository
    assert type(open_reader(repo, "qa/run")) is QARepository  # a small collection, no flag: DuckDB
    big = open_reader(repo, "qa/run", above=0, client=client)  # every collection is larger than 0 bytes
    assert isinstance(big, DaskQARepository)
    assert len(big.metric_values()) == len(QARepository(repo, "qa/run").metric_values())
    monkeypatch.setenv("SURVEYQA_DASK_ABOVE", "0")
    assert isinstance(open_reader(repo, "qa/run", client=client), DaskQARepository)
    monkeypatch.setenv("SURVEYQA_DASK_ABOVE", "lots")
    with pytest.raises(SurveyQAError, match="not a number of bytes"):
        open_reader(repo, "qa/run")
    with pytest.raises(SurveyQAError, match="cannot reach the Dask scheduler"):
        open_reader(repo, "qa/run", scheduler="tcp://127.0.0.1:9")
