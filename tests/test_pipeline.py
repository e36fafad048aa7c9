"""The QA pipeline runs with `surveyqa run` and with `pipetask run`, on SQLite and PostgreSQL
registries, writes its values back, and a failed quantum does not stop the others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lsst.daf.butler import Butler

from surveyqa.butler import QARepository
from surveyqa.cli import main
from surveyqa.sim import DefectConfig, SimConfig, make_survey
from metric_rows_check import check_rows_reaggregate
from surveyqa.tasks import PIPELINE_REFCAT as PIPELINE

SMALL = dict(detectors_per_side=2, tract_size=0.8, bands=("g", "r"), density=30000.0)
PIPETASK = Path(sys.executable).parent / "pipetask"
KEYS = ["metric", "level", "band", "tract", "patch", "visit", "detector", "column"]


@pytest.fixture(scope="module")
def defect_repo(tmp_path_factory):
    """A small survey with every defect, QA'd once by `surveyqa run` (collection qa/run1)."""
    repo = tmp_path_factory.mktemp("pipe") / "repo"
    make_survey(str(repo), SimConfig(seed=4, defects=DefectConfig.all_on(), **SMALL))
    assert main(["run", str(repo), "--input", "sim", "--output", "qa/run1", "-q"]) == 0
    return repo


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEYS, kind="stable", ignore_index=True)


def test_clean_survey_passes_every_spec(tmp_path, capsys):
    repo = tmp_path / "clean"
    make_survey(str(repo), SimConfig(seed=2, **SMALL))
    assert main(["run", str(repo), "--input", "sim", "--output", "qa/clean"]) == 0
    assert "0 failed" not in capsys.readouterr().out  # the summary only names the statuses that occurred
    qa = QARepository(repo, "qa/clean")
    values = qa.metric_values()
    assert len(values) > 100
    failing = values[values["status"] == "fail"]
    assert failing.empty, failing[KEYS + ["value", "threshold"]].to_string()
    assert set(values["status"]) == {"pass", "none"}
    assert qa.failures().empty
    levels = set(values["level"])
    assert levels == {"detector", "visit", "patch", "tract"}


def test_surveyqa_run_and_pipetask_write_the_same_values(defect_repo):
    result = subprocess.run([str(PIPETASK), "run", "-b", str(defect_repo), "-i", "sim", "-o", "qa/pipetask",
                             "-p", str(PIPELINE), "--register-dataset-types", "-j", "1"],
                            capture_output=True, text=True, timeout=600)
    # pipetask exits non-zero because the detectors outside the reference catalog fail ...
    assert result.returncode != 0 and "No reference objects supplied" in result.stderr
    ours = QARepository(defect_repo, "qa/run1")
    theirs = QARepository(defect_repo, "qa/pipetask")
    a, b = _sorted(ours.metric_values()), _sorted(theirs.metric_values())
    # ... but every other quantum ran: the same values, to the bit.
    pd.testing.assert_frame_equal(a[KEYS + ["value", "status"]], b[KEYS + ["value", "status"]])
    truth = {tuple(x) for x in ours.truth()["defects"]["outside_refcat"]["failing"]}
    from_status = {(r.visit, r.detector) for r in ours.failures().itertuples()}
    from_logs = {(r.visit, r.detector) for r in theirs.failures().itertuples()}
    assert from_status == from_logs == truth
    assert set(theirs.failures()["exception_type"]) == {"NoReferenceObjectsError"}


def test_run_writes_every_quantum_value_once_more_in_one_table(defect_repo):
    """`qaMetricValues` (what the dashboard reads) holds each quantum's values, none more, none lost."""
    from surveyqa.butler.reader import METRIC_VALUE_DATASETS

    butler = Butler.from_config(str(defect_repo), collections="qa/run1")
    whole = butler.get("qaMetricValues").to_pandas()
    refs = [ref for name in METRIC_VALUE_DATASETS for ref in butler.query_datasets(name, find_first=True)]
    per_quantum = pd.concat([butler.get(ref).to_pandas() for ref in refs], ignore_index=True)
    assert len(refs) > 20 and len(whole) == len(per_quantum)
    columns = KEYS + ["value", "unit", "n", "status", "spec", "threshold"]
    pd.testing.assert_frame_equal(_sorted(whole)[columns], _sorted(per_quantum)[columns], check_dtype=False)
    assert set(whole["level"]) == {"detector", "visit", "patch", "tract"}


def test_values_read_back_through_the_butler_and_the_reader(defect_repo):
    butler = Butler.from_config(str(defect_repo), collections="qa/run1")
    qa = QARepository(defect_repo, "qa/run1")
    visit = int(qa.visits()["visit"].iloc[3])
    via_butler = butler.get("qaMetricValues_visit", instrument="SimCam", visit=visit).to_pandas()
    via_reader = qa.metric_values(where={"visit": visit}, level=["visit", "detector"])
    via_reader = via_reader[via_reader["metric"].isin(set(via_butler["metric"]))]
    pd.testing.assert_frame_equal(_sorted(via_butler)[KEYS + ["value"]].astype({"tract": "Int64", "patch": "Int64",
                                                                                 "visit": "Int64",
                                                                                 "detector": "Int64"}),
                                  _sorted(via_reader)[KEYS + ["value"]])
    manifest = butler.get("qaManifest")
    assert manifest["inputs"] == ["sim"] and manifest["run"].startswith("qa/run1/")
    names = {m["name"] for m in manifest["metrics"]}
    assert {"health.emptyCellFraction", "health.astromOffset", "validate_drp.PA1"} <= names
    status = butler.get("qaQuantumStatus").to_pandas()
    assert set(status["status"]) == {"success", "failed"}


def test_errors_are_one_line_and_write_nothing(defect_repo, tmp_path, capsys):
    butler = Butler.from_config(str(defect_repo))
    before = sorted(butler.collections.query("*"))
    assert main(["run", str(tmp_path), "--input", "sim", "--output", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a Butler repository" in err[0]
    assert main(["run", str(defect_repo), "--input", "nope", "--output", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nope' does not exist" in err[0] and "sim" in err[0]
    assert main(["run", str(defect_repo), "--input", "sim", "--output", "qa/run1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(Butler.from_config(str(defect_repo)).collections.query("*")) == before


def test_parallel_run_matches_serial(tmp_path):
    repo = tmp_path / "par"
    make_survey(str(repo), SimConfig(seed=8, visits=1, defects=DefectConfig(outside_refcat=True), **SMALL))
    assert main(["run", str(repo), "-i", "sim", "-o", "qa/j1", "-q"]) == 0
    assert main(["run", str(repo), "-i", "sim", "-o", "qa/j2", "-j", "2", "-q"]) == 0
    a = _sorted(QARepository(repo, "qa/j1").metric_values())
    b = _sorted(QARepository(repo, "qa/j2").metric_values())
    pd.testing.assert_frame_equal(a[KEYS + ["value"]], b[KEYS + ["value"]])
    assert len(QARepository(repo, "qa/j2").failures()) == len(QARepository(repo, "qa/j1").failures()) > 0


@pytest.mark.postgres
def test_pipeline_on_a_postgresql_registry(tmp_path, pg_url):
    repo = tmp_path / "pg"
    config = SimConfig(seed=4, visits=4, defects=DefectConfig(bad_astrometry_detector=True, outside_refcat=True),
                       **{**SMALL, "bands": ("i",)})
    make_survey(str(repo), config, registry_db=pg_url)
    assert main(["run", str(repo), "-i", "sim", "-o", "qa/pg", "-q"]) == 0
    qa = QARepository(repo, "qa/pg")
    truth = qa.truth()["defects"]
    astro = qa.metric_values("health.astromOffset", where={"status": "fail"})
    assert set(astro["detector"]) == {truth["bad_astrometry_detector"]["detector"]}
    assert {(r.visit, r.detector) for r in qa.failures().itertuples()} == \
        {tuple(x) for x in truth["outside_refcat"]["failing"]}
    butler = Butler.from_config(str(repo), collections="qa/pg")
    tract = butler.get("qaMetricValues_tract", skymap="surveyqa_sim", tract=100).to_pandas()
    assert np.isfinite(tract["value"]).any()


def test_stored_rows_reaggregate_to_every_stored_value(defect_repo):
    """The per-row datasets are the engine's: each metric's stored rows, selected and aggregated by
    its own rule, give every value it stored, at every level (reference-catalog task included)."""
    checked = check_rows_reaggregate(defect_repo, "qa/run1")
    values = QARepository(defect_repo, "qa/run1").metric_values()
    assert checked == set(zip(values["metric"], values["level"]))
    assert ("health.astromOffset", "detector") in checked and ("validate_drp.PA1", "tract") in checked
    manifest = {m["name"]: m for m in QARepository(defect_repo, "qa/run1").manifest()["metrics"]}
    assert manifest["validate_drp.AM1"]["per_row_dataset"] == "qaMetricRows_tract"
    assert manifest["validate_drp.AM1"]["row_kind"] == "pair" and manifest["validate_drp.AM1"]["per_row_rows"] > 0
