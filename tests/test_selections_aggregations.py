"""Aggregations and selections checked against slow, obvious per-group Python references (seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from surveyqa.metrics.actions import aggregate as agg
from surveyqa.metrics.actions import select as sel
from surveyqa.metrics.actions.groups import factorize_keys


def _data(seed: int, n: int = 3000, groups: int = 17):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, groups, n)
    values = rng.standard_t(3, n) * 5 + codes  # heavy tails, group-dependent location
    values[rng.random(n) < 0.05] = np.nan
    values[rng.random(n) < 0.01] = np.inf
    return codes, values, groups


def _reference(codes, values, groups, fn):
    out = []
    for g in range(groups):  # the slow obvious way: one Python call per group
        v = values[(codes == g) & np.isfinite(values)]
        out.append(fn(v) if len(v) else np.nan)
    return np.array(out)


REFERENCES = {
    "mean": (agg.mean(), np.mean),
    "median": (agg.median(), np.median),
    "rms": (agg.rms(), lambda v: np.sqrt(np.mean(v**2))),
    "robust_sigma": (agg.robust_sigma(), lambda v: 1.4826 * np.median(np.abs(v - np.median(v)))),
    "p90": (agg.percentile(90), lambda v: np.percentile(v, 90)),
    "p10_abs": (agg.percentile(10, absolute=True), lambda v: np.percentile(np.abs(v), 10)),
    "count": (agg.count(), len),
    "fraction>2": (agg.fraction(threshold=2.0), lambda v: np.mean(v > 2.0)),
    "percent|x|>3": (agg.fraction(threshold=3.0, absolute=True, percent=True), lambda v: 100 * np.mean(np.abs(v) > 3)),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aggregation_matches_slow_reference(name, seed):
    codes, values, groups = _data(seed)
    aggregation, ref_fn = REFERENCES[name]
    value, n = aggregation(values, codes, groups)
    np.testing.assert_allclose(value, _reference(codes, values, groups, ref_fn), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(n, _reference(codes, values, groups, len).astype(int))


def test_empty_group_gives_nan_and_zero_count():
    value, n = agg.median()(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 2]), 3)
    assert value[0] == 1.5 and np.isnan(value[1]) and value[2] == 3.0
    assert list(n) == [2, 0, 1]


def test_factorize_multiple_keys_sorted_and_decoded():
    band = np.array(["r", "g", "r", "g", "i"], dtype=object)
    tract = np.array([2, 2, 1, 2, 1])
    codes, (ut, ub) = factorize_keys([tract, band])
    pairs = list(zip(ut.tolist(), ub.tolist()))
    assert pairs == sorted(set(zip(tract.tolist(), band.tolist())))
    for i in range(5):
        assert pairs[codes[i]] == (tract[i], band[i])


class _Rows:
    def __init__(self, **cols):
        self.cols = {k: np.asarray(v) for k, v in cols.items()}
        self.n_rows = len(next(iter(self.cols.values())))

    def can_resolve(self, name):
        return name in self.cols

    def get(self, name):
        return self.cols[name]


def test_combined_selection_and_explain():
    rows = _Rows(extendedness=[0.0, 1.0, 0.0, np.nan], snr=[100, 100, 10, 100], mag=[18, 18, 18, 18])
    s = sel.unresolved() & sel.snr_min(50) & sel.mag_range(17, 21.5)
    assert s(rows).tolist() == [True, False, False, False]  # NaN extendedness is not unresolved
    text = s.explain(rows)
    assert "extendedness < 0.5 (unresolved): 2 of 4" in text and "snr >= 50: 3 of 4" in text


def test_not_flagged_is_skipped_and_said_so_without_flag_column():
    rows = _Rows(snr=[100, 10])
    s = sel.snr_min(50) & sel.not_flagged()
    assert s(rows).tolist() == [True, False]
    assert "not flag: not applied" in s.explain(rows)
    flagged = _Rows(snr=[100, 100], flag=[False, True])
    assert s(flagged).tolist() == [True, False]


@pytest.mark.parametrize("equal_sizes", [True, False])
@pytest.mark.parametrize("with_nan", [False, True])
def test_grouping_segment_path_matches_slow_reference(equal_sizes, with_nan):
    """Rows sorted by a (sparse) integer id, as matched catalogs are: the segment reductions give the
    per-group count, mean, std, median and quartiles of the obvious per-group loop; the codes built
    lazily from the segments, rows_of and codes_at agree with them."""
    import pandas as pd

    from surveyqa.metrics.actions.groups import grouping

    rng = np.random.default_rng(11)
    sizes = np.full(50, 6) if equal_sizes else rng.integers(1, 9, 50)
    ids = np.repeat(np.sort(rng.choice(10_000, 50, replace=False)), sizes)
    values = rng.normal(size=len(ids)) * 3 + ids % 7
    if with_nan:
        values[rng.random(len(values)) < 0.1] = np.nan
    band = pd.Categorical(["r"] * len(ids))
    g, (uid, uband) = grouping([ids, band])
    assert g.starts is not None and g.n_groups == 50 and list(uband) == ["r"] * 50
    codes = np.searchsorted(uid, ids)
    np.testing.assert_array_equal(g.codes, codes)
    n, mean, std = g.moments(values)
    med = g.percentile(values, 50.0)[0]
    q = g.percentile(values, [25.0, 75.0])[0]
    ext = g.mean(values)[0]
    for k in range(50):
        v = values[codes == k]
        v = v[np.isfinite(v)]
        assert n[k] == len(v)
        np.testing.assert_allclose([mean[k], ext[k], med[k], *q[:, k]],
                                   [np.mean(v), np.mean(v), np.median(v), *np.percentile(v, [25, 75])]
                                   if len(v) else [np.nan] * 5, rtol=1e-12)
        np.testing.assert_allclose(std[k], np.std(v, ddof=1) if len(v) > 1 else np.nan, rtol=1e-10)
    g, _ = grouping([ids, band])  # a fresh one, without its code array
    some = np.array([3, 17, 40])
    rows = g.rows_of(some)
    np.testing.assert_array_equal(rows, np.flatnonzero(np.isin(codes, some)))
    np.testing.assert_array_equal(g.codes_at(rows), codes[rows])
