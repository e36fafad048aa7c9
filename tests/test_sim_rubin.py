"""The QA on a Rubin-shaped repository (the real HSC RC2 registry export, DP1 tables, Rubin's
conventions): it runs unchanged under `surveyqa run` and `pipetask run`, single out each injected
defect at its own data ID, and fails nothing on the clean twin of the same seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from lsst.daf.butler import Butler

from metric_rows_check import check_rows_reaggregate
from surveyqa.butler import QARepository
from surveyqa.cli import main
from surveyqa.sim.rubin import RubinDefects, RubinSimConfig, make_rubin_survey
from surveyqa.sim.ringtract import RingTract
from surveyqa.tasks import PIPELINE

PIPETASK = Path(sys.executable).parent / "pipetask"
KEYS = ["metric", "level", "band", "tract", "patch", "visit", "detector", "column"]
SEED = 5
DENSITY = 60000.0  # objects per square degree: enough for the hole search's cells


def _make(tmp_path_factory, name: str, defects: RubinDefects) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp(name)
    repo = base / "repo"
    truth = make_rubin_survey(str(repo), RubinSimConfig(seed=SEED, density=DENSITY, defects=defects),
                              truth_path=base / "truth.json")
    assert main(["run", str(repo), "--input", "drp", "--output", "qa/run1", "-q"]) == 0
    return repo, truth


@pytest.fixture(scope="module")
def defect_repo(tmp_path_factory):
    return _make(tmp_path_factory, "rubin-defects", RubinDefects(True, True, True, True))


@pytest.fixture(scope="module")
def clean_repo(tmp_path_factory):
    return _make(tmp_path_factory, "rubin-clean", RubinDefects())


def _fails(repo) -> pd.DataFrame:
    v = QARepository(repo, "qa/run1").metric_values(where={"status": "fail"})
    return v[v["level"].isin(["visit", "detector", "patch"])]


def test_rebuilt_patches_match_the_real_patch_record(shared_data, tmp_path):
    Butler.makeRepo(str(tmp_path / "r"))
    butler = Butler.from_config(str(tmp_path / "r"), writeable=True)
    butler.import_(filename=str(shared_data / "butler_exports" / "hsc-rc2-subset.yaml"), format="yaml")
    tract = next(r for r in butler.registry.queryDimensionRecords("tract", skymap="hsc_rings_v1") if r.id == 9615)
    real = next(r for r in butler.registry.queryDimensionRecords("patch", skymap="hsc_rings_v1") if r.tract == 9615)
    mine = RingTract.from_record(tract).patch_polygon(real.id)
    for a in mine.getVertices():
        closest = min(np.degrees(np.arccos(min(1.0, a.dot(b)))) * 3600 for b in real.region.getVertices())
        assert closest < 0.01  # arcsec


def test_repository_is_shaped_like_rubins(defect_repo):
    repo, truth = defect_repo
    assert not str(Path(repo).parent / "truth.json").startswith(str(repo) + "/")  # the truth is outside
    butler = Butler.from_config(str(repo))
    kinds = {t.name for t in butler.registry.queryDatasetTypes()}
    assert {"sourceTable_visit", "objectTable_tract", "visitTable", "ccdVisitTable", "isolated_star_presources",
            "isolated_star_presource_associations"} <= kinds and "surveyqa_refcat" not in kinds
    # Only processed (visit, detector) pairs have regions: far fewer than visits x 111 detectors.
    assert truth["n_ccds"] < len(truth["visits"]) * 111 / 2
    iso_id = {"instrument": "HSC", "skymap": "hsc_rings_v1", "tract": 9615}
    sources = butler.get("isolated_star_presources", iso_id, collections="drp")
    stars = butler.get("isolated_star_presource_associations", iso_id, collections="drp")
    assert {"obj_index", "source_row", "sourceId", "visit", "detector", "band"} <= set(sources.colnames)
    assert {"isolated_star_id", "source_cat_index", "nsource", "nsource_i", "source_cat_index_g"} <= set(stars.colnames)
    first = stars[1]
    assert set(sources["obj_index"][first["source_cat_index"]:first["source_cat_index"] + first["nsource"]]) == {1}
    ref = butler.find_dataset("objectTable_tract", {"skymap": "hsc_rings_v1", "tract": 9615}, collections="drp")
    path = butler.getURI(ref).ospath
    objects = pq.read_table(path, columns=["objectId", "detect_isPrimary", "sky_object", "coord_ra"])
    assert 0 < np.sum(~objects.column("detect_isPrimary").to_numpy()) and objects.column("sky_object").to_numpy().any()
    visit = next(v for v in truth["visits"] if v != truth["defects"]["nan_column"]["visit"])
    src = butler.get("sourceTable_visit", {"instrument": "HSC", "visit": visit}, collections="drp")
    assert str(src["psfFlux"].unit) == "nJy" and src["sky_source"].any()
    nan = np.isnan(np.asarray(src["psfFlux"]))
    assert nan.any() and not (nan & ~np.asarray(src["psfFlux_flag"])).any()  # every NaN is flagged


def test_each_defect_fails_at_its_own_data_id_and_nothing_else(defect_repo):
    repo, truth = defect_repo
    d = truth["defects"]
    fails = _fails(repo)
    visits = set(fails.loc[fails["level"] == "visit", "visit"])
    assert visits == {d["zeropoint_visit"]["visit"], d["nan_column"]["visit"]}
    zp = fails[fails["metric"] == "health.visitPhotOffset"]
    assert list(zp["visit"]) == [d["zeropoint_visit"]["visit"]]
    nan = fails[fails["metric"] == "health.nanFraction"]
    assert list(zip(nan["visit"], nan["band"], nan["column"])) == [
        (d["nan_column"]["visit"], d["nan_column"]["band"], "psfFlux")]
    detectors = set(zip(fails.loc[fails["level"] == "detector", "visit"], fails.loc[fails["level"] == "detector",
                                                                                     "detector"]))
    assert detectors == {(d["astrometry_detector"]["visit"], d["astrometry_detector"]["detector"])}
    patches = set(fails.loc[fails["level"] == "patch", "patch"])
    assert patches == {d["coadd_hole"]["patch"]}
    # Which rule fired is stored with the value.
    assert set(fails["rule"]) <= {"spec", "outlier", "spec+outlier"}


def test_stored_rows_reaggregate_to_every_stored_value(defect_repo):
    """On Rubin's data products too, every stored value is its metric's aggregation of its stored rows."""
    checked = check_rows_reaggregate(defect_repo[0], "qa/run1")
    values = QARepository(defect_repo[0], "qa/run1").metric_values()
    assert checked == set(zip(values["metric"], values["level"]))
    assert {"validate_drp.PA1", "validate_drp.AM1", "health.visitPhotOffset"} <= {m for m, _ in checked}


def test_the_clean_twin_fails_no_visit_detector_or_patch(clean_repo):
    repo, truth = clean_repo
    assert truth["defects"] == {}
    fails = _fails(repo)
    assert fails.empty, fails[KEYS + ["value", "threshold", "rule"]].to_string()


def test_quanta_exist_only_where_data_exist(clean_repo):
    repo, truth = clean_repo
    status = QARepository(repo, "qa/run1").butler.get("qaQuantumStatus", {}, collections="qa/run1").to_pandas()
    per_label = status.groupby("label").size().to_dict()
    assert per_label.get("qaVisit") == len(truth["visits"])
    assert per_label.get("qaTract") == 1
    assert "qaDetectorReference" not in per_label  # no reference catalog: switched off, not 111 x visits quanta
    assert (status["status"] == "success").all()


def test_pipetask_runs_the_pipeline_unchanged_with_the_same_values(defect_repo):
    repo, _ = defect_repo
    result = subprocess.run([str(PIPETASK), "run", "-b", str(repo), "-i", "drp", "-o", "qa/pipetask", "-p",
                             str(PIPELINE), "--register-dataset-types", "-j", "1"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]

    def tidy(collection):
        v = QARepository(repo, collection).metric_values()
        return v.sort_values(KEYS, ignore_index=True)[KEYS + ["value", "status"]]

    pd.testing.assert_frame_equal(tidy("qa/run1"), tidy("qa/pipetask"))


def test_sim_cli_writes_the_truth_outside_the_repository(tmp_path, capsys):
    assert main(["sim", str(tmp_path / "rc2"), "--like", "hsc-rc2", "--density", "3000", "--defect",
                 "zeropoint-visit"]) == 0
    truth = json.loads((tmp_path / "rc2.truth.json").read_text())
    assert set(truth["defects"]) == {"zeropoint_visit"} and not list((tmp_path / "rc2").glob("*truth*"))
    assert main(["sim", str(tmp_path / "x"), "--defect", "coadd-hole"]) != 0
    assert "need --like" in capsys.readouterr().err
