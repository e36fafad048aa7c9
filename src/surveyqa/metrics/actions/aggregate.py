"""Named aggregations: reduce the selected per-row values of each group to one number.

Each aggregation is vectorized over all groups at once (see `surveyqa.metrics.actions.groups`):
it receives the values, their group codes and the number of groups, and returns one value and
one count per group. Non-finite values are ignored and not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from surveyqa.metrics.actions.groups import broadcast, group_count, group_mean, group_percentile

__all__ = [
    "Aggregation", "AggregateFn", "mean", "median", "rms", "robust_sigma", "percentile", "count",
    "fraction", "ROBUST_SIGMA_PER_MAD",
]

#: sigma of a Gaussian per median absolute deviation, 1 / Phi^-1(3/4).
ROBUST_SIGMA_PER_MAD = 1.4826

#: fn(values, codes, n_groups, rows) -> (value per group, count per group). ``rows`` holds the
#: other selected per-row columns (same order as values), for aggregations that need positions.
AggregateFn = Callable[[np.ndarray, np.ndarray, int, Mapping[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Aggregation:
    """A named reduction of per-row values to one value per group.

    Parameters
    ----------
    name : str
        Identifier stored with every value (``median``, ``rms``, ``p90``...).
    description : str
        What it computes, in words.
    fn : callable
        See `AggregateFn`.
    """

    name: str
    description: str
    fn: AggregateFn = field(repr=False)

    def __call__(self, values: np.ndarray, codes: np.ndarray, n_groups: int,
                 rows: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(values, dtype=float)
        value, n = self.fn(values, np.asarray(codes, dtype=np.int64), n_groups, rows or {})
        return np.asarray(value, dtype=float), np.asarray(n, dtype=np.int64)


def _finite(values: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(values)
    return values[ok], codes[ok]


def mean() -> Aggregation:
    """Arithmetic mean."""
    return Aggregation("mean", "mean", lambda v, c, g, r: group_mean(c, v, g))


def median() -> Aggregation:
    """Median."""
    return Aggregation("median", "median", lambda v, c, g, r: group_percentile(c, v, g, 50.0))


def _rms(v: np.ndarray, c: np.ndarray, g: int, r: object) -> tuple[np.ndarray, np.ndarray]:
    v, c = _finite(v, c)
    n = group_count(c, g)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(group_count(c, g, weights=v * v) / n), n


def rms() -> Aggregation:
    """Root mean square, sqrt(mean(x^2)) (values are deviations already: no mean is subtracted)."""
    return Aggregation("rms", "root mean square sqrt(mean(x^2))", _rms)


def _robust_sigma(v: np.ndarray, c: np.ndarray, g: int, r: object) -> tuple[np.ndarray, np.ndarray]:
    v, c = _finite(v, c)
    med, n = group_percentile(c, v, g, 50.0)
    mad, _ = group_percentile(c, np.abs(v - broadcast(med, c)), g, 50.0)
    return ROBUST_SIGMA_PER_MAD * mad, n


def robust_sigma() -> Aggregation:
    """1.4826 x median absolute deviation from the median: a Gaussian sigma robust to outliers."""
    return Aggregation("robust_sigma", "1.4826 * median(|x - median(x)|)", _robust_sigma)


def percentile(p: float, absolute: bool = False) -> Aggregation:
    """The p-th percentile (linear interpolation), of |x| if ``absolute``."""
    name = f"p{p:g}" + ("_abs" if absolute else "")
    desc = f"{p:g}th percentile of {'|x|' if absolute else 'x'}"
    return Aggregation(name, desc, lambda v, c, g, r: group_percentile(c, np.abs(v) if absolute else v, g, p))


def count() -> Aggregation:
    """Number of selected rows with a finite value."""
    def fn(v, c, g, r):
        n = group_count(c[np.isfinite(v)], g)
        return n.astype(float), n
    return Aggregation("count", "number of selected rows", fn)


def fraction(threshold: float | None = None, absolute: bool = False, percent: bool = False) -> Aggregation:
    """Fraction of rows where the value is true (non-zero), or where (|x| if absolute) > threshold.

    ``percent`` scales to percent (0-100) for metrics whose unit is ``%``.
    """
    scale = 100.0 if percent else 1.0

    def fn(v, c, g, r):
        v, c = _finite(v, c)
        x = np.abs(v) if absolute else v
        hit = (x > threshold) if threshold is not None else (x != 0)
        n = group_count(c, g)
        with np.errstate(invalid="ignore", divide="ignore"):
            return scale * group_count(c, g, weights=hit.astype(float)) / n, n

    what = ("|x|" if absolute else "x") + (f" > {threshold:g}" if threshold is not None else " true")
    return Aggregation(f"fraction({what})" if not percent else f"percent({what})",
                       f"{'percentage' if percent else 'fraction'} of rows with {what}", fn)
