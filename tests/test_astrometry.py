"""AM1 / AD1 / AF1: recover an injected astrometric scatter (faro's recorded values on real HSC: test_srd_faro.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from surveyqa.metrics.engine import measure
from surveyqa.metrics.library import get_metric
from surveyqa.metrics.measure_cli import read_table
from surveyqa.metrics.synthetic import matched_catalog

HSC_COLUMNS = ("mag=base_PsfFlux_mag,obj_id=object,extendedness=base_ClassificationExtendedness_value,"
               "snr=base_PsfFlux_snr")
SIGMA = 10.0  # mas per coordinate
N_VISITS = 5


@pytest.fixture(scope="module")
def synthetic():
    return matched_catalog(n_objects=1500, n_visits=N_VISITS, sigma_mas=SIGMA, field_deg=0.3, seed=7)


def test_am1_recovers_injected_scatter(synthetic):
    """The distance between two stars in one visit changes by the difference of their position
    errors projected on the separation: Gaussian with variance 2 sigma^2. The pair value is the
    sample std (ddof=1) of n = 5 distances, so its median is sqrt(2) sigma sqrt(median(chi2_4)/4).
    Pairs share stars, so the effective number of independent values is about the number of
    stars, not of pairs: tolerance 4 standard errors of a median of N_stars values."""
    res = measure(get_metric("AM1"), synthetic).values.to_pylist()[0]
    k = N_VISITS - 1
    expected = np.sqrt(2) * SIGMA * np.sqrt(stats.chi2.median(k) / k)
    n_stars = 1500
    stderr = np.sqrt(np.pi / 2) * np.sqrt(2) * SIGMA / np.sqrt(2 * k) / np.sqrt(n_stars)
    assert res["value"] == pytest.approx(expected, abs=4 * stderr)
    assert res["unit"] == "mas" and res["n"] > 1000


def _ad_af_of_gaussian_pairs(sigma_pair: float, n_visits: int, threshold: float) -> tuple[float, float]:
    """AD1 and AF1 of the definition (faro's calcSepOutliers) for pairs whose per-visit distance
    errors are independent N(0, sigma_pair): drawn for 200,000 pairs, a model, not our code."""
    d = np.random.default_rng(1).normal(0.0, sigma_pair, (200_000, n_visits))
    x = np.abs(d - np.median(d, axis=1, keepdims=True)).ravel()
    x = x - np.median(x)
    return float(np.percentile(x, 90)), float(100 * np.mean(np.abs(x) > threshold))


def test_am1_pairs_are_in_the_annulus_and_ad1_af1_follow_the_gaussian_model(synthetic):
    res = measure(get_metric("AM1"), synthetic)
    pr = res.per_row.to_pandas()
    assert pr.separation.between(4.0, 6.0).all()
    assert (pr.n_common_visits == N_VISITS).all()
    # per-visit pair distances scatter by sqrt(2) sigma; AD1 / AF1 of that model, within 10 % / 1 point
    ad1_model, af1_model = _ad_af_of_gaussian_pairs(np.sqrt(2) * SIGMA, N_VISITS, 20.0)
    af1 = measure(get_metric("AF1"), synthetic)
    per_visit = af1.per_row.to_pandas()
    assert len(per_visit) == N_VISITS * len(pr) and per_visit.visit.notna().all()
    value = af1.values.to_pylist()[0]
    assert value["unit"] == "%" and value["value"] == pytest.approx(af1_model, abs=1.0)
    ad1 = measure(get_metric("AD1"), synthetic).values.to_pylist()[0]
    assert ad1["unit"] == "mas" and ad1["value"] == pytest.approx(ad1_model, rel=0.1)


def test_am1_bounded_sampling_states_its_use():
    cat = matched_catalog(n_objects=600, n_visits=3, field_deg=0.3, seed=8)
    from surveyqa.metrics.engine import Metric
    from surveyqa.metrics.library.astrometry import pair_rms_compute

    base = get_metric("AM1")
    capped = Metric(**{**base.__dict__, "compute": pair_rms_compute(5.0, max_objects=200, max_pairs=500)})
    pr = measure(capped, cat).per_row.to_pandas()
    assert len(pr) == 500 and (pr.n_objects_used == 200).all() and (pr.n_objects_selected > 200).all()


def test_am2_on_a_small_field_says_there_are_no_pairs(shared_data):
    table = read_table(shared_data / "hsc_ci_matched" / "matchedCatalogTract_0_r.fits.gz")
    row = measure(get_metric("AM2"), table, columns=HSC_COLUMNS).values.to_pylist()[0]
    assert np.isnan(row["value"]) and "no pairs of selected objects 19-21 arcmin apart" in row["note"]


def _messy_catalog(seed: int = 3):
    """Two bands, missing visits, a few NaN positions, rows shuffled: no fast path applies blindly."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    parts = [matched_catalog(n_objects=300, n_visits=6, field_deg=0.25, band=b, seed=seed + i) for i, b in enumerate("ri")]
    table = pa.concat_tables(parts)
    keep = np.flatnonzero(rng.random(table.num_rows) > 0.25)  # a quarter of the measurements missing
    table = table.take(rng.permutation(keep))
    ra = np.asarray(table["coord_ra"]).copy()
    ra[rng.random(len(ra)) < 0.02] = np.nan
    return table.set_column(table.schema.get_field_index("coord_ra"),
                            table.schema.field("coord_ra"), pa.array(ra))


def _slow_pair_rms(table, obj_1, obj_2, band):
    """The definition, one pair at a time: std (ddof=1, mas) over common visits of their distance."""
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    t = table.to_pandas()
    t = t[(t.band == band) & np.isfinite(t.coord_ra) & np.isfinite(t.coord_dec)]
    pos = {(o, v): (ra, dec) for o, v, ra, dec in zip(t.obj_index, t.visit, t.coord_ra, t.coord_dec)}
    out = []
    for a, b in zip(obj_1, obj_2):
        visits = sorted({v for (o, v) in pos if o == a} & {v for (o, v) in pos if o == b})
        if len(visits) < 2:
            out.append(np.nan)
            continue
        pa_, pb_ = np.array([pos[(a, v)] for v in visits]), np.array([pos[(b, v)] for v in visits])
        d = SkyCoord(pa_[:, 0] * u.deg, pa_[:, 1] * u.deg).separation(SkyCoord(pb_[:, 0] * u.deg, pb_[:, 1] * u.deg))
        out.append(np.std(d.to_value(u.mas), ddof=1))
    return np.array(out)


@pytest.mark.parametrize("join", ["dense", "sorted"])
def test_am1_pair_values_match_a_slow_reference(join, monkeypatch):
    """Both per-visit joins (position cube, sorted merge) give each pair's rms as the one-pair-at-a-time
    definition does, on shuffled rows with missing visits, NaN positions and two bands."""
    from surveyqa.metrics.library import astrometry

    if join == "sorted":
        monkeypatch.setattr(astrometry, "_DENSE_LOOKUP_MAX", 0)
    table = _messy_catalog()
    pr = measure(get_metric("AM1"), table, group_by=("band",)).per_row.to_pandas()
    assert len(pr) > 100 and set(pr.band) == {"r", "i"}
    rng = np.random.default_rng(0)
    for band in ("r", "i"):
        sub = pr[pr.band == band].iloc[rng.choice((pr.band == band).sum(), 40, replace=False)]
        ref = _slow_pair_rms(table, sub.obj_id_1.to_numpy(), sub.obj_id_2.to_numpy(), band)
        np.testing.assert_allclose(sub.value.to_numpy(), ref, rtol=0, atol=1e-6, equal_nan=True)
