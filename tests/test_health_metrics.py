"""Health metrics: each singles out exactly the defect injected into the demo survey, and each
works on small hand-made tables against an obvious reference computation."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from surveyqa.butler import QARepository
from surveyqa.metrics.engine import measure
from surveyqa.metrics.library import get_metric
from surveyqa.metrics.library.health import cell_counts, column_nan_table, split_band_column
from surveyqa.metrics.registry import load_default_registry


@pytest.fixture(scope="module")
def qa(demo_repo):
    return QARepository(*demo_repo)


@pytest.fixture(scope="module")
def truth(qa):
    return qa.truth()["defects"]


def _failing(qa, metric, **where):
    return qa.metric_values(metric, where={"status": "fail", **where})


def test_bad_detector_is_the_only_one_with_an_astrometric_offset(qa, truth):
    fails = _failing(qa, "health.astromOffset")
    assert set(fails["detector"]) == {truth["bad_astrometry_detector"]["detector"]}
    # every visit that processed that detector flags it, at about the injected 0.2 arcsec
    assert np.allclose(fails["value"], truth["bad_astrometry_detector"]["offset"] * 1000, rtol=0.1)


def test_bad_visit_is_the_only_one_with_a_zero_point_offset(qa, truth):
    bad = truth["bad_zeropoint_visit"]["visit"]
    assert set(_failing(qa, "health.zeroPointOffset", level="visit")["visit"]) == {bad}
    assert set(_failing(qa, "health.photRefOffset")["visit"]) == {bad}


def test_empty_region_is_the_only_patch_with_empty_cells(qa, truth):
    fails = _failing(qa, "health.emptyCellFraction")
    assert list(zip(fails["tract"], fails["patch"])) == [(truth["empty_region"]["tract"],
                                                          truth["empty_region"]["patch"])]


def test_object_counts_per_patch_add_up_to_the_tract(qa):
    counts = qa.metric_values("health.objectCount")
    patches = counts[counts["level"] == "patch"]
    tract = counts[counts["level"] == "tract"]
    assert len(patches) == 16 and patches["value"].sum() == tract["value"].iloc[0] == len(qa.butler.get(
        "objectTable_tract", skymap="surveyqa_sim", tract=100, collections="sim"))


def test_nan_column_is_the_only_column_flagged(qa, truth):
    fails = _failing(qa, "health.nanFraction")
    assert [f"{b}_{c}" for b, c in zip(fails["band"], fails["column"])] == [truth["nan_flux_column"]["column"]]
    assert fails["value"].iloc[0] == 100.0


def test_detectors_outside_the_refcat_are_the_failed_quanta(qa, truth):
    failures = qa.failures()
    assert {(r.visit, r.detector) for r in failures.itertuples()} == \
        {tuple(x) for x in truth["outside_refcat"]["failing"]}
    assert all(m.startswith("No reference objects supplied") for m in failures["message"])


def test_health_metrics_have_definitions_and_specs():
    registry = load_default_registry()
    for name in ("sourceCount", "objectCount", "sourceDensity", "objectDensity", "emptyCellFraction", "psfFwhm", "zeroPoint",
                 "zeroPointOffset", "nanFraction", "astromOffset", "photRefOffset"):
        definition = registry.get(f"health.{name}")
        assert definition.unit.is_equivalent(get_metric(f"health.{name}").unit)
        assert definition.granularity == get_metric(f"health.{name}").granularity
    assert registry.evaluate("health.astromOffset", 60 * u.mas)[0].passed is False
    assert registry.evaluate("health.astromOffset", 0.04 * u.arcsec)[0].passed is True


def test_empty_cells_against_a_loop():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1000, 4000), rng.uniform(0, 1000, 4000)
    hole = (x > 240) & (x < 760) & (y > 240) & (y < 760)  # covers the 4 central cells of a 4x4 grid
    x, y = x[~hole], y[~hole]
    tract, patch = np.full(x.size, 1), np.full(x.size, 7)
    cells = cell_counts(x, y, tract, patch)
    # slow reference: count per cell with explicit loops over the grid
    xmin, xmax, ymin, ymax = x.min(), x.max(), y.min(), y.max()
    ref = np.zeros(16, int)
    for i in range(4):
        for j in range(4):
            in_x = (x >= xmin + j * (xmax - xmin) / 4) & ((x < xmin + (j + 1) * (xmax - xmin) / 4) | (j == 3))
            in_y = (y >= ymin + i * (ymax - ymin) / 4) & ((y < ymin + (i + 1) * (ymax - ymin) / 4) | (i == 3))
            ref[i * 4 + j] = np.count_nonzero(in_x & in_y)
    assert np.array_equal(cells["count"], ref)


def test_empty_cells_find_an_enclosed_hole_and_not_a_coverage_edge():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1000, 20000), rng.uniform(0, 1000, 20000)
    hole = np.hypot(x - 500, y - 500) < 150
    edge = x > 700  # the patch's right part is outside the survey
    metric = get_metric("health.emptyCellFraction")
    keys = ("tract", "patch")
    with_hole = measure(metric, {"x": x[~hole], "y": y[~hole], "tract": np.full((~hole).sum(), 1),
                                 "patch": np.full((~hole).sum(), 7)}, group_by=keys).quantity()
    assert 0 * u.percent < with_hole < np.pi * 0.15**2 * 100 * u.percent  # the cells inside the disc
    with_edge = measure(metric, {"x": x[~edge], "y": y[~edge], "tract": np.full((~edge).sum(), 1),
                                 "patch": np.full((~edge).sum(), 7)}, group_by=keys).quantity()
    assert with_edge == 0 * u.percent


def test_nan_fraction_splits_band_columns():
    table = {"g_psfFlux": np.array([1.0, np.nan, 3.0, np.inf]), "r_psfFlux": np.ones(4), "x": np.arange(4.0),
             "objectId": np.arange(4)}
    melted = column_nan_table(table, {"tract": np.full(4, 9)})
    result = measure(get_metric("health.nanFraction"), melted, group_by=("tract", "band", "column"))
    values = {(b, c): v for b, c, v in zip(result.values.column("band").to_pylist(),
                                           result.values.column("column").to_pylist(),
                                           result.values.column("value").to_pylist())}
    assert values == {("g", "psfFlux"): 50.0, ("r", "psfFlux"): 0.0, ("", "x"): 0.0}
    assert split_band_column("i_cModelFlux") == ("i", "cModelFlux") and split_band_column("psfFlux") == (None, "psfFlux")


def test_zero_point_offset_is_relative_to_the_band_median():
    table = {"zeroPoint": np.array([31.0, 31.02, 30.98, 31.5, 32.0, 32.01]), "band": np.array(list("gggGrr")),
             "visit": np.array([1, 2, 3, 4, 5, 6])}
    table["band"][3] = "g"
    result = measure(get_metric("health.zeroPointOffset"), table, group_by=("visit",))
    got = dict(zip(result.values.column("visit").to_pylist(), result.values.column("value").to_pylist()))
    med_g = np.median([31.0, 31.02, 30.98, 31.5])
    assert got[4] == pytest.approx(31.5 - med_g) and got[5] == pytest.approx(0.005)


def test_astrometric_offset_is_the_length_of_the_median_vector():
    rng = np.random.default_rng(2)
    n = 200
    table = {"dra": 30 + rng.normal(0, 5, n), "ddec": -40 + rng.normal(0, 5, n), "extendedness": np.zeros(n),
             "psfFlux": np.full(n, 1e5), "psfFluxErr": np.full(n, 100.0), "psfFlux_flag": np.zeros(n, bool),
             "visit": np.ones(n, int), "detector": np.ones(n, int)}
    value = measure(get_metric("health.astromOffset"), table, group_by=("visit", "detector")).quantity()
    assert value.to_value(u.mas) == pytest.approx(np.hypot(np.median(table["dra"]), np.median(table["ddec"])))
