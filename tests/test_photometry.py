"""PA1 / PA2 / PF1: recover an injected scatter (faro's recorded values on real HSC: test_srd_faro.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from surveyqa.metrics.engine import measure
from surveyqa.metrics.library import get_metric
from surveyqa.metrics.synthetic import matched_catalog

SIGMA = 10.0  # mmag injected
N_OBJ, N_VISITS = 3000, 5


@pytest.fixture(scope="module")
def synthetic():
    return matched_catalog(n_objects=N_OBJ, n_visits=N_VISITS, sigma_mmag=SIGMA, field_deg=0.4, seed=42)


def test_pa1_recovers_injected_scatter(synthetic):
    """PA1 = median over stars of the population std (ddof=0, faro's np.nanstd) of n = 5 magnitudes.

    n s0^2 / sigma^2 ~ chi2(n-1), so median(s0) = sigma sqrt(median(chi2_4) / 5) = 0.819 sigma.
    The standard error of a sample median is sqrt(pi/2) sd(s) / sqrt(N), with
    sd(s) ~ sigma / sqrt(2 (n-1)); N = the stars selected: median S/N >= 200, i.e. true
    magnitude <= 19.5 in the S/N model of `matched_catalog` (2000 at 17 mag), 2.5 of the 4.5 mag
    range. Tolerance: 4 standard errors.
    """
    res = measure(get_metric("PA1"), synthetic).values.to_pylist()[0]
    k = N_VISITS - 1
    expected = SIGMA * np.sqrt(stats.chi2.median(k) / N_VISITS)
    n = res["n"]
    assert n == pytest.approx(N_OBJ * 2.5 / 4.5, rel=0.1)
    stderr = np.sqrt(np.pi / 2) * SIGMA / np.sqrt(2 * k) / np.sqrt(n)
    assert res["value"] == pytest.approx(expected, abs=4 * stderr)
    assert res["unit"] == "mmag"


def test_pa2_pf1_recover_gaussian_quantiles(synthetic):
    """Residuals from an object's mean of n = 5 are N(0, sigma sqrt(4/5)): the 90th percentile of
    |x| is 1.645 of that (PA2 design), and P(|x| > 15 mmag) = 2 (1 - Phi(15 / (sigma sqrt(4/5))))
    (PF1 design). Errors: binomial for PF1, sqrt(p (1-p) / N) / density for the quantile; rows
    within an object are correlated (their residuals sum to zero), so the tolerance is 4 of these."""
    pa2 = measure(get_metric("PA2"), synthetic).values.to_pylist()[0]
    pf1 = measure(get_metric("PF1"), synthetic).values.to_pylist()[0]
    n = pa2["n"]
    sigma = SIGMA * np.sqrt((N_VISITS - 1) / N_VISITS)
    q = stats.norm.ppf(0.95)
    err_q = np.sqrt(0.1 * 0.9 / n) / (2 * stats.norm.pdf(q) / sigma)
    assert pa2["value"] == pytest.approx(q * sigma, abs=4 * err_q)
    p = 2 * stats.norm.sf(15.0 / sigma)
    assert pf1["value"] == pytest.approx(100 * p, abs=4 * 100 * np.sqrt(p * (1 - p) / n))
    assert pf1["unit"] == "%"


def test_galaxies_and_faint_objects_are_not_selected():
    cat = matched_catalog(n_objects=500, n_visits=4, galaxy_fraction=0.5, mag_range=(17, 24), seed=5)
    pr = measure(get_metric("PA1"), cat).per_row.to_pandas()
    assert not pr.loc[pr.selected, "obj_extended"].gt(0).any()
    assert pr.loc[pr.selected, "obj_snr"].min() >= 200
    assert pr.selected.sum() < 0.5 * len(pr)


def test_pa1_per_object_rms_matches_a_slow_reference():
    """Shuffled rows, two bands, NaN and negative fluxes: each object's value is np.nanstd (ddof=0,
    faro's) of its magnitudes, computed one object at a time."""
    import pyarrow as pa

    rng = np.random.default_rng(5)
    table = pa.concat_tables([matched_catalog(n_objects=200, n_visits=5, band=b, seed=i) for i, b in enumerate("gr")])
    flux = np.asarray(table["psfFlux"]).copy()
    flux[rng.random(len(flux)) < 0.05] = np.nan
    flux[rng.random(len(flux)) < 0.02] = -1.0
    table = table.set_column(table.schema.get_field_index("psfFlux"), table.schema.field("psfFlux"), pa.array(flux))
    table = table.take(rng.permutation(table.num_rows))
    pr = measure(get_metric("PA1"), table).per_row.to_pandas()
    t = table.to_pandas()
    t["mag"] = -2.5 * np.log10(t.psfFlux) + 31.4
    assert len(pr) == 400
    for row in pr.itertuples():
        m = t.mag[(t.obj_index == row.obj_id) & (t.band == row.band)].to_numpy()
        m = m[np.isfinite(m)]
        assert row.n_visits == len(m)
        expected = np.std(m) * 1000.0 if len(m) else np.nan
        np.testing.assert_allclose(row.value, expected, rtol=1e-9, equal_nan=True)
