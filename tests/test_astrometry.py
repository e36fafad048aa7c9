"""AM1 / AD1 / AF1: recover an injected astrometric scatter; real HSC values of order 10 mas."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from surveyqa.metrics.engine import measure
from surveyqa.metrics.library import get_metric
from surveyqa.metrics.measure_cli import read_table
from surveyqa.metrics.synthetic import matched_catalog

HSC_COLUMNS = "mag=base_PsfFlux_mag,obj_id=object,extendedness=base_ClassificationExtendedness_value"
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


def test_am1_pairs_are_in_the_annulus_and_af1_small_for_gaussian(synthetic):
    res = measure(get_metric("AM1"), synthetic)
    pr = res.per_row.to_pandas()
    assert pr.separation.between(4.0, 6.0).all()
    assert (pr.n_common_visits == N_VISITS).all()
    # With sqrt(2) sigma = 14 mas pair scatter, |rms - median| > 20 mas is very rare (< 1 %).
    af1 = measure(get_metric("AF1"), synthetic).values.to_pylist()[0]
    assert af1["unit"] == "%" and 0.0 <= af1["value"] < 1.0
    ad1 = measure(get_metric("AD1"), synthetic).values.to_pylist()[0]
    assert 0 < ad1["value"] < 20.0


def test_am1_bounded_sampling_states_its_use():
    cat = matched_catalog(n_objects=600, n_visits=3, field_deg=0.3, seed=8)
    from surveyqa.metrics.engine import Metric
    from surveyqa.metrics.library.astrometry import pair_rms_compute

    base = get_metric("AM1")
    capped = Metric(**{**base.__dict__, "compute": pair_rms_compute(5.0, max_objects=200, max_pairs=500)})
    pr = measure(capped, cat).per_row.to_pandas()
    assert len(pr) == 500 and (pr.n_objects_used == 200).all() and (pr.n_objects_selected > 200).all()


@pytest.mark.parametrize("band", ["r", "i"])
def test_am1_on_real_hsc_matched_catalog(shared_data, band):
    """HSC single-visit astrometric scatter for 17-21.5 mag stars is ~ 5-10 mas per coordinate
    after the single-visit WCS fit; the distance between two stars 5 arcmin apart varies by
    sqrt(2) x that projected, and with 3 visits the sample std's median is ~0.83 of it, so AM1
    of 5-15 mas is expected (faro reports AM1 ~ 10 mas on ci_hsc). Accept 2-30 mas: 'of order
    10 mas', excluding unit slips (rad vs deg: factor 57; mas vs arcsec: 1000)."""
    table = read_table(shared_data / "hsc_ci_matched" / f"matchedCatalogTract_0_{band}.fits.gz")
    res = measure(get_metric("AM1"), table, columns=HSC_COLUMNS).values.to_pylist()[0]
    assert 2.0 < res["value"] < 30.0
    assert res["n"] > 1000


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
