"""The change-point core against its slow reference, and on seeded noise and steps."""

from __future__ import annotations

import numpy as np
import pytest

from surveyqa.tracking.changepoint import Energy, MeanShift, best_split, detect, energy_pair, mean_shift_pair, scan_reference
from surveyqa.tracking.config import TrackingConfig
from surveyqa.tracking.detect import Threshold, check_series


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("statistic,pair", [(MeanShift(3), mean_shift_pair), (Energy(3), energy_pair), (MeanShift(2), mean_shift_pair)])
def test_fast_scan_equals_reference(seed, statistic, pair):
    rng = np.random.default_rng(seed)
    x = rng.normal(100.0, 2.0, 25)
    x[15:] += rng.uniform(-5, 5)
    assert np.allclose(statistic.scan(x[None, :])[0], scan_reference(x, pair, statistic.min_size), rtol=1e-9)


def test_scan_rows_are_independent():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(4, 20))
    both = MeanShift().scan(rows)
    assert np.allclose(both[2], MeanShift().scan(rows[2])[0])


def test_constant_series_has_no_step_and_a_perfect_step_is_found():
    assert detect(np.full(20, 5.0)) == []
    cps = detect(np.r_[np.full(10, 5.0), np.full(10, 6.0)], alpha=0.01)
    assert [c.index for c in cps] == [10]


@pytest.mark.parametrize("statistic", [MeanShift(), Energy()])
def test_step_found_at_its_place(statistic):
    rng = np.random.default_rng(7)
    x = rng.normal(10.0, 0.2, 40)
    x[28:] += 0.5
    cps = detect(x, statistic)
    assert len(cps) == 1 and abs(cps[0].index - 28) <= 1
    assert cps[0].mean_after - cps[0].mean_before == pytest.approx(0.5, abs=0.15)


def test_two_steps():
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 1.0, 60)
    x[20:] += 5
    x[40:] -= 8
    assert [c.index for c in detect(x)] == [20, 40]


def test_same_seed_same_answer_and_pvalue_bounds():
    x = np.random.default_rng(5).normal(size=30)
    a = best_split(x, MeanShift(), 199, np.random.default_rng(1))
    b = best_split(x, MeanShift(), 199, np.random.default_rng(1))
    assert a == b and 1 / 200 <= a.pvalue <= 1


def test_false_alarm_rate_on_noise_is_near_alpha():
    """Pure noise: the permutation test of the best split fires about alpha of the time."""
    rng = np.random.default_rng(2026)
    trials, alpha = 400, 0.05
    fired = sum(best_split(rng.normal(size=30), MeanShift(), 199, rng).pvalue <= alpha for _ in range(trials))
    assert fired / trials < 2 * alpha
    # a naive per-split t threshold at the same level would fire on most series: the max of many t values
    naive = sum(MeanShift().scan(rng.normal(size=30)[None])[0].max() > 2.0 for _ in range(200))
    assert naive / 200 > 0.3


def _stream_findings(x, cfg, **kw):
    found = set()
    for n in range(2, len(x) + 1):
        found |= {(f.check, f.first_bad) for f in check_series(x[:n], cfg, **kw)}
    return found


def test_streamed_noise_raises_nothing_and_a_step_is_confirmed_once():
    cfg = TrackingConfig()
    rng = np.random.default_rng(12)
    quiet = [bool(_stream_findings(rng.normal(10, 0.2, 40), cfg)) for _ in range(40)]
    assert sum(quiet) <= 1  # measured: 0.7% of 40-run noise streams (docs/tracking.md)
    x = rng.normal(10, 0.2, 40)
    x[25:] += 1.0
    steps = {fb for check, fb in _stream_findings(x, cfg) if check == "changepoint"}
    assert steps and max(steps) - min(steps) <= cfg.min_size and abs(min(steps) - 25) <= 1


def test_direction_from_specs_ignores_improvements():
    cfg = TrackingConfig()
    x = np.r_[np.full(12, 10.0), np.full(10, 8.0)] + np.random.default_rng(1).normal(0, 0.05, 22)
    lower_is_better = [Threshold("m.design", "<=", 12.0)]
    assert not check_series(x, cfg, lower_is_better)
    assert any(f.check == "changepoint" for f in check_series(-x, cfg, [Threshold("m.design", ">=", -20.0)])) is False
    assert any(f.check == "changepoint" for f in check_series(x, cfg, higher_is_better=True))


def test_threshold_relative_and_missing_checks():
    cfg = TrackingConfig()
    spec = [Threshold("m.design", "<=", 10.0)]
    [f] = check_series(np.array([9.0, 9.2, 10.5]), cfg, spec)
    assert (f.check, f.first_bad, f.last_good, f.before, f.after) == ("threshold", 2, 1, 9.2, 10.5)
    [f] = check_series(np.array([1.0, 1.1, 2.0]), cfg)
    assert f.check == "relative_change" and "+81.8%" in f.detail
    [f] = check_series(np.array([1.0, 1.1, np.nan]), cfg)
    assert f.check == "missing" and f.last_good == 1
