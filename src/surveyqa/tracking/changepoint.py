"""Change-point detection: does a series hold a real step, or only noise? Pure numpy, no I/O.

Method: binary segmentation (as in E-divisive, used by Otava/Hunter) where each candidate split
is scored by a two-sample statistic passed in as a strategy, and the best split's significance
is judged by a seeded permutation test of the *maximum* statistic over all splits. The
permutation test is what keeps false alarms at ``alpha``: the maximum of ~n correlated t values
is not t-distributed, so a plain t-test p-value (or a fixed z-score cut) on the best split
fires far too often on pure noise.

Statistics (strategies): `MeanShift` (pooled two-sample t statistic: a shift of the mean) and
`Energy` (E-divisive's energy distance: any change of distribution). Both compute every split
at once from cumulative sums; `scan_reference` is the slow, obvious version the tests compare to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "ChangePoint",
    "SplitStatistic",
    "MeanShift",
    "Energy",
    "best_split",
    "detect",
    "scan_reference",
    "mean_shift_pair",
    "energy_pair",
    "FIRST_BLOCK",
]

#: Permutations drawn before `best_split` first looks whether it may stop early.
FIRST_BLOCK = 100


@dataclass(frozen=True)
class ChangePoint:
    """A step: ``index`` is the first point of the new level (same unit as the data for means)."""

    index: int
    statistic: float
    pvalue: float
    mean_before: float
    mean_after: float


class SplitStatistic(Protocol):
    """Scores every split of each row: ``scan(x)`` with ``x`` of shape (rows, n) returns
    (rows, n - 2 * min_size + 1): the score of putting the split before index
    ``min_size + j``. Larger means a clearer change.

    A row's scores must not depend on the rows scanned with it, to the last bit: the checks
    score a series' permutations together with other series' (`detect.check_many`) and must
    decide as its own test would. So sums are running sums (``np.cumsum``, always added in
    order) and never ``np.sum``, whose order of addition for a single row differs from the one
    it uses over a block of rows.
    """

    min_size: int

    def scan(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class MeanShift:
    """Pooled two-sample t statistic, |mean after - mean before| / (s * sqrt(1/k + 1/(n-k)))."""

    min_size: int = 3

    def scan(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        n = x.shape[1]
        x = x - np.cumsum(x, axis=1)[:, -1:] / n  # centring keeps the sums of squares accurate
        k = np.arange(self.min_size, n - self.min_size + 1)
        c1 = np.cumsum(x, axis=1)
        c2 = np.cumsum(x * x, axis=1)
        s1, s2 = c1[:, k - 1], c2[:, k - 1]
        t1, t2 = c1[:, -1:], c2[:, -1:]  # totals as running sums: see `SplitStatistic`
        m1 = s1 / k
        m2 = (t1 - s1) / (n - k)
        ssw = (s2 - k * m1**2) + (t2 - s2 - (n - k) * m2**2)
        ssw = np.maximum(ssw, 0.0)
        var = ssw / (n - 2)
        diff = np.abs(m2 - m1)
        scale = np.sqrt(1.0 / k + 1.0 / (n - k))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = diff / (np.sqrt(var) * scale)
        tiny = 1e-12 * (np.abs(x).max(axis=1, keepdims=True) + 1e-300)
        t = np.where(var > tiny**2, t, np.where(diff > tiny, np.inf, 0.0))
        return t


@dataclass(frozen=True)
class Energy:
    """E-divisive's energy statistic (Matteson & James 2014, exponent 1) for each split."""

    min_size: int = 3

    def scan(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        n = x.shape[1]
        d = np.abs(x[:, :, None] - x[:, None, :])  # (rows, n, n)
        upper = np.triu(d, 1)
        col = np.cumsum(upper, axis=1)[:, -1, :]  # col[j] = sum_{i<j} d_ij (running sums: see `SplitStatistic`)
        row = np.cumsum(upper, axis=2)[:, :, -1]  # row[i] = sum_{j>i} d_ij
        total = np.cumsum(row, axis=1)[:, -1:]
        k = np.arange(self.min_size, n - self.min_size + 1)
        within_a = np.cumsum(col, axis=1)[:, k - 1]  # pairs inside x[:k]
        within_b = np.cumsum(row[:, ::-1], axis=1)[:, ::-1][:, k]  # pairs inside x[k:]
        cross = total - within_a - within_b
        na, nb = k, n - k
        e = 2.0 * cross / (na * nb) - within_a / (na * (na - 1) / 2) - within_b / (nb * (nb - 1) / 2)
        return e * na * nb / n


def mean_shift_pair(a: np.ndarray, b: np.ndarray) -> float:
    """The pooled t statistic of two samples, written out plainly (for `scan_reference`)."""
    n = len(a) + len(b)
    ssw = ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()
    s = np.sqrt(ssw / (n - 2))
    diff = abs(b.mean() - a.mean())
    if s == 0:
        return float("inf") if diff > 0 else 0.0
    return float(diff / (s * np.sqrt(1 / len(a) + 1 / len(b))))


def energy_pair(a: np.ndarray, b: np.ndarray) -> float:
    """The energy statistic of two samples from its definition, with explicit loops."""
    cross = sum(abs(x - y) for x in a for y in b) / (len(a) * len(b))
    wa = sum(abs(a[i] - a[j]) for i in range(len(a)) for j in range(i + 1, len(a))) / (len(a) * (len(a) - 1) / 2)
    wb = sum(abs(b[i] - b[j]) for i in range(len(b)) for j in range(i + 1, len(b))) / (len(b) * (len(b) - 1) / 2)
    return float((2 * cross - wa - wb) * len(a) * len(b) / (len(a) + len(b)))


def scan_reference(x: np.ndarray, pair: Callable[[np.ndarray, np.ndarray], float], min_size: int) -> np.ndarray:
    """Slow reference: the statistic of every split, one split at a time."""
    x = np.asarray(x, dtype=float)
    return np.array([pair(x[:k], x[k:]) for k in range(min_size, len(x) - min_size + 1)])


def best_split(
    x: np.ndarray,
    statistic: SplitStatistic,
    permutations: int = 999,
    rng: np.random.Generator | None = None,
    screen: float | None = None,
    stop_above: float | None = None,
) -> ChangePoint | None:
    """The most likely single step in ``x`` and its permutation p-value; None if ``x`` is too short.

    The p-value is ``(1 + #{permutations whose best score >= observed}) / (1 + permutations)``.
    With ``screen``, a best score below it is not tested (p-value reported as 1): a cheap way to
    skip the permutations for the quiet series that are the vast majority. With ``stop_above``
    (the significance level), permutations run in blocks and stop as soon as the p-value is sure
    to exceed it; the p-value then reported is the lower bound reached, still above
    ``stop_above``. The permutations drawn are the same either way (one per row, in order), so
    a significant split gets exactly the p-value of the full test.
    """
    x = np.asarray(x, dtype=float)
    n, m = len(x), statistic.min_size
    if n < 2 * m:
        return None
    rng = rng if rng is not None else np.random.default_rng(0)
    scores = statistic.scan(x[None, :])[0]
    j = int(np.argmax(scores))
    observed = scores[j]
    if not np.isfinite(observed) and observed != np.inf:
        return None
    k = m + j
    if screen is not None and observed < screen:
        return ChangePoint(k, float(observed), 1.0, float(x[:k].mean()), float(x[k:].mean()))
    block = permutations if stop_above is None else FIRST_BLOCK
    exceed, done = 0, 0
    while done < permutations:
        size = min(block, permutations - done)
        perm = rng.permuted(np.broadcast_to(x, (size, n)), axis=1)
        exceed += int(np.count_nonzero(statistic.scan(perm).max(axis=1) >= observed))
        done += size
        if stop_above is not None and (1.0 + exceed) / (1.0 + permutations) > stop_above:
            break
    pvalue = (1.0 + exceed) / (1.0 + permutations)
    return ChangePoint(k, float(observed), float(pvalue), float(x[:k].mean()), float(x[k:].mean()))


def detect(
    x: np.ndarray,
    statistic: SplitStatistic | None = None,
    alpha: float = 0.001,
    permutations: int = 999,
    seed: int = 0,
    screen: float | None = None,
) -> list[ChangePoint]:
    """All significant steps in ``x`` by binary segmentation, sorted by index.

    Parameters
    ----------
    x : array of float
        The series in time order, finite values only (drop missing values first).
    statistic : SplitStatistic
        How a split is scored; default `MeanShift` (min_size 3).
    alpha : float
        Significance level of each split's permutation test.
    permutations : int
        Number of permutations per test (the smallest possible p-value is 1 / (permutations + 1)).
    seed : int
        Seed of the permutations: the same series always gives the same answer.
    screen : float, optional
        Skip the permutation test of splits scoring below this (see `best_split`).
    """
    statistic = statistic or MeanShift()
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(seed)
    found: list[ChangePoint] = []
    segments = [(0, len(x))]
    while segments:
        lo, hi = segments.pop()
        cp = best_split(x[lo:hi], statistic, permutations, rng, screen, stop_above=alpha)
        if cp is None or cp.pvalue > alpha:
            continue
        found.append(ChangePoint(lo + cp.index, cp.statistic, cp.pvalue, cp.mean_before, cp.mean_after))
        segments.extend([(lo, lo + cp.index), (lo + cp.index, hi)])
    return sorted(found, key=lambda c: c.index)
