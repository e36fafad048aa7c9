"""`surveyqa sim`: a real Butler repository shaped like Rubin's DRP outputs, with its truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from lsst.daf.butler import Butler

from surveyqa.cli import main
from surveyqa.errors import SurveyQAError
from surveyqa.sim import DefectConfig, SimConfig, make_survey

SMALL = dict(detectors_per_side=2, tract_size=0.8, bands=("g", "r"), density=30000.0)


def _dp1_columns(table: str) -> set[str]:
    import lsst.sdm.schemas

    path = Path(lsst.sdm.schemas.__file__).parent / "dp1.yaml"
    schema = yaml.safe_load(path.read_text())
    return {c["name"] for t in schema["tables"] if t["name"] == table for c in t["columns"]}


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory):
    repo = tmp_path_factory.mktemp("sim") / "repo"
    result = make_survey(str(repo), SimConfig(seed=3, defects=DefectConfig.all_on(), **SMALL))
    return repo, result


def test_dataset_types_dimensions_and_dp1_columns(small_sim):
    repo, result = small_sim
    butler = Butler.from_config(str(repo), collections="sim")
    visits = butler.query_dimension_records("visit", explain=False)
    assert len(visits) == result.n_visits == 8
    assert all(v.region is not None for v in visits)
    assert len(butler.query_dimension_records("visit_detector_region", explain=False)) == 8 * 4
    assert len(butler.query_dimension_records("patch", explain=False)) == 16
    sources = butler.get("sourceTable_visit", instrument="SimCam", visit=visits[0].id)
    extra = set(sources.colnames) - _dp1_columns("Source")
    assert not extra, f"columns not in the DP1 Source schema: {extra}"
    assert str(sources["psfFlux"].unit) == "nJy" and str(sources["ra"].unit) == "deg"
    assert np.all(np.diff(np.asarray(sources["detector"])) >= 0), "sources sorted by detector"
    objects = butler.get("objectTable_tract", skymap="surveyqa_sim", tract=100)
    assert not set(objects.colnames) - _dp1_columns("Object")
    assert np.all(np.diff(np.asarray(objects["patch"])) >= 0), "objects sorted by patch"
    ccd = butler.get("ccdVisitTable", instrument="SimCam")
    assert not set(ccd.colnames) - _dp1_columns("CcdVisit")
    assert len(ccd) == 8 * 4
    assert not set(butler.get("visitTable", instrument="SimCam").colnames) - _dp1_columns("Visit")
    assoc = butler.get("isolated_star_presource_associations", instrument="SimCam", skymap="surveyqa_sim", tract=100)
    stars = butler.get("isolated_star_presources", instrument="SimCam", skymap="surveyqa_sim", tract=100)
    assert len(assoc) == int(np.sum(stars["nsource"])) and assoc["obj_index"].max() == len(stars) - 1


def test_every_source_lies_on_its_detector_region(small_sim):
    """The registry's regions and the tables agree: a source is inside its (visit, detector) polygon."""
    repo, _ = small_sim
    butler = Butler.from_config(str(repo), collections="sim")
    region = {(r.visit, r.detector): r.region for r in butler.query_dimension_records("visit_detector_region",
                                                                                       explain=False)}
    visit = butler.query_dimension_records("visit", explain=False)[2].id
    src = butler.get("sourceTable_visit", instrument="SimCam", visit=visit, storageClass="ArrowTable")
    for det in set(src.column("detector").to_pylist()):
        rows = src.filter(src.column("detector").to_numpy() == det)
        inside = region[(visit, det)].contains(np.radians(rows.column("ra").to_numpy()),
                                               np.radians(rows.column("dec").to_numpy()))
        # 3-sigma astrometric noise may carry a source a few mas over an edge: allow a handful.
        assert inside.mean() > 0.99


def test_truth_manifest_records_every_defect(small_sim):
    repo, result = small_sim
    truth = Butler.from_config(str(repo), collections="sim").get("simTruth")
    assert set(truth["defects"]) == {"bad_astrometry_detector", "bad_zeropoint_visit", "empty_region",
                                     "nan_flux_column", "outside_refcat"}
    assert truth["defects"]["nan_flux_column"]["column"] == "r_psfFlux"
    objects = Butler.from_config(str(repo), collections="sim").get("objectTable_tract", skymap="surveyqa_sim",
                                                                   tract=100)
    assert np.all(np.isnan(objects["r_psfFlux"])) and np.all(np.isfinite(objects["g_psfFlux"]))
    hole = truth["defects"]["empty_region"]
    ra, dec = np.asarray(objects["coord_ra"]), np.asarray(objects["coord_dec"])
    inside = (ra > hole["ra_min"]) & (ra < hole["ra_max"]) & (dec > hole["dec_min"]) & (dec < hole["dec_max"])
    assert inside.sum() == 0
    assert [101001, 0] in truth["defects"]["outside_refcat"]["failing"]


def test_same_seed_same_survey_other_seed_other(tmp_path):
    config = dict(visits=1, bands=("r",), **{k: v for k, v in SMALL.items() if k != "bands"})
    a = make_survey(str(tmp_path / "a"), SimConfig(seed=5, **config))
    b = make_survey(str(tmp_path / "b"), SimConfig(seed=5, **config))
    c = make_survey(str(tmp_path / "c"), SimConfig(seed=6, **config))
    assert a.n_sources == b.n_sources != c.n_sources
    get = lambda r: Butler.from_config(r, collections="sim").get(  # noqa: E731
        "sourceTable_visit", instrument="SimCam", visit=a.truth["visits"][0]["visit"])
    assert np.array_equal(get(str(tmp_path / "a"))["psfFlux"], get(str(tmp_path / "b"))["psfFlux"], equal_nan=True)


def test_cli_refuses_existing_repository_and_bad_band(tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["sim", str(repo), "--visits", "1", "--bands", "g", "--detectors", "2", "--tract-size", "0.8"]) == 0
    before = sorted(p.name for p in repo.rglob("*"))
    assert main(["sim", str(repo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a Butler repository" in err[0]
    assert sorted(p.name for p in repo.rglob("*")) == before
    assert main(["sim", str(tmp_path / "other"), "--bands", "gq"]) == 2
    assert "unknown band" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_tract_bigger_than_four_visits_cover_is_refused(tmp_path):
    with pytest.raises(SurveyQAError, match="not covered"):
        make_survey(str(tmp_path / "r"), SimConfig(detectors_per_side=1, tract_size=1.0))
    assert not (tmp_path / "r").exists()


@pytest.mark.postgres
def test_sim_with_postgresql_registry(tmp_path, pg_url):
    repo = tmp_path / "pgrepo"
    assert main(["sim", str(repo), "--visits", "1", "--bands", "g", "--detectors", "2", "--tract-size", "0.8",
                 "--registry-db", pg_url]) == 0
    butler = Butler.from_config(str(repo), collections="sim")
    assert len(butler.query_datasets("sourceTable_visit", explain=False)) == 1
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_url)  # the registry rows are in PostgreSQL, not in a SQLite file
    with engine.connect() as conn:
        n = conn.execute(sqlalchemy.text("SELECT count(*) FROM visit")).scalar()
    engine.dispose()
    assert n == 1
    assert not (repo / "gen3.sqlite3").exists()
