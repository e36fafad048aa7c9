"""`QARepository`: metric values and per-row tables read straight from the Parquet files, sky
polygons, failures, and one-line errors for a wrong path or collection."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.daf.butler import Butler

from surveyqa.butler import QARepository
from surveyqa.errors import SurveyQAError


@pytest.fixture(scope="module")
def qa(demo_repo):
    return QARepository(*demo_repo)


def test_metric_values_filters(qa):
    everything = qa.metric_values()
    assert {"metric", "value", "unit", "level", "band", "tract", "patch", "visit", "detector", "column", "n",
            "selection", "aggregation", "spec", "threshold", "status", "note"} <= set(everything.columns)
    psf = qa.metric_values("health.psfFwhm", level="detector")
    assert set(psf["metric"]) == {"health.psfFwhm"} and set(psf["level"]) == {"detector"}
    assert len(psf) == len(qa.visits()) * len(qa.detectors(int(qa.visits()["visit"][0])))
    r_band = qa.metric_values(where={"band": ["r"], "level": "tract"})
    assert len(r_band) and set(r_band["band"]) == {"r"}
    assert len(qa.metric_values(where={"status": "fail"})) == int((everything["status"] == "fail").sum())
    with pytest.raises(SurveyQAError, match="cannot filter"):
        qa.metric_values(where={"value": 3})


def test_reader_matches_butler_get_for_every_dataset(qa, demo_repo):
    butler = Butler.from_config(demo_repo[0], collections=demo_repo[1])
    visit = int(qa.visits()["visit"][5])
    stored = butler.get("qaMetricRows_visit", instrument="SimCam", visit=visit).to_pandas()
    sources = stored[stored["metric"] == "health.psfFwhm"]
    mine = qa.metric_rows("health.psfFwhm", visit=visit)
    assert len(mine) == len(sources) and set(mine["sourceId"]) == set(sources["sourceId"])
    assert len(qa.metric_rows("health.psfFwhm", visit=visit, detector=[2, 3])) == \
        int(sources["detector"].isin([2, 3]).sum())
    stored = butler.get("qaMetricRows_tract", skymap="surveyqa_sim", tract=100).to_pandas()
    stars = stored[stored["metric"] == "validate_drp.PA1"]
    assert len(qa.metric_rows("validate_drp.PA1", tract=100)) == len(stars)
    assert len(qa.metric_rows("validate_drp.PA1", tract=100, patch=5)) == int((stars["patch"] == 5).sum()) > 0
    detectors = qa.detector_values(visit)
    assert list(detectors["detector"]) == sorted(butler.get("qaDetectorValues_visit", instrument="SimCam",
                                                            visit=visit).to_pandas()["detector"])
    assert len(qa.detector_values()) == len(qa.visits()) * 9


def test_sky_polygons(qa):
    tracts = qa.tracts()
    assert list(tracts["tract"]) == [100] and tracts["bands"][0] == ["g", "i", "r"]
    assert min(tracts["dec"][0]) == pytest.approx(-0.5) and max(tracts["ra"][0]) == pytest.approx(61.0)
    patches = qa.patches(100)
    assert list(patches["patch"]) == list(range(16)) and all(len(r) == 4 for r in patches["ra"])
    visits = qa.visits()
    assert len(visits) == 12 and set(visits["band"]) == {"g", "r", "i"}
    one = qa.detectors(int(visits["visit"][0]))
    assert len(one) == 9 and all(len(r) == 4 for r in one["dec"])


def test_failures_and_manifest(qa):
    failures = qa.failures()
    assert set(failures["label"]) == {"qaDetectorReference"} and set(failures["status"]) == {"failed"}
    manifest = qa.manifest()
    entry = next(m for m in manifest["metrics"] if m["name"] == "health.emptyCellFraction")
    assert entry["levels"] == ["patch"] and entry["specs"][0]["threshold"] == 0.0
    assert entry["selection"]["name"] == "all" and entry["values_dataset"] == "qaMetricValues_tract"


def test_not_a_repository_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "somefile.txt").write_text("x")
    with pytest.raises(SurveyQAError) as err:
        QARepository(tmp_path, "qa/demo")
    assert "not a Butler repository" in str(err.value) and "somefile.txt" in str(err.value)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somefile.txt"]


def test_unknown_collection_lists_what_exists(demo_repo):
    with pytest.raises(SurveyQAError) as err:
        QARepository(demo_repo[0], "qa/nope")
    message = str(err.value)
    assert "'qa/nope' does not exist" in message and "qa/demo" in message and "sim" in message
    assert "\n" not in message


def test_ingest_real_hsc_pdr2_metrics(shared_data, tmp_path, capsys):
    """The HSC PDR2 per-tract values (a 40-row slice) ingested, then read like a QA run."""
    import pandas as pd

    from surveyqa.cli import main

    source = shared_data / "hsc_pdr2_dashboard" / "PDR2_metrics.parq"
    table = pd.read_parquet(source).iloc[:40]
    path = tmp_path / "slice.parq"
    table.to_parquet(path)
    repo = tmp_path / "hsc"
    assert main(["ingest", str(repo), str(path), "-c", "hsc/pdr2",
                 "--skymap-csv", str(shared_data / "hsc_pdr2_dashboard" / "deepCoadd_skyMap.csv")]) == 0
    qa = QARepository(repo, "hsc/pdr2")
    values = qa.metric_values("validate_drp.PA1")
    assert len(values) == 40  # one PA1 per (tract, filter): the _gri/_uzy columns go to their own bands
    first = table.iloc[0]
    row = values[(values["tract"] == table.index[0][1]) & (values["band"] == "y")]
    assert row["value"].iloc[0] == pytest.approx(first["validate_drp.PA1.design_uzy"])
    assert row["spec"].iloc[0] == "validate_drp.PA1.design_uzy" and row["status"].iloc[0] == "fail"
    assert set(qa.tracts()["tract"]) == {t for _, t in table.index}
    # a missing file: one line, nothing written
    assert main(["ingest", str(tmp_path / "new"), str(tmp_path / "missing.parq"), "-c", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "new").exists()
