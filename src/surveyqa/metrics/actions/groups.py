"""Vectorized group-by: integer group codes and per-group statistics without Python loops over rows.

Every aggregation and every per-object compute step reduces to "a value per row, a group code per
row": these helpers compute counts, sums, means, rms and order statistics per group with
`numpy.bincount` and one sort, so a 10^7-row table is aggregated in a few numpy passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["factorize_keys", "first_rows", "finite_rows", "is_sorted", "group_count", "group_sum", "group_mean",
           "group_percentile", "broadcast"]


def factorize_keys(keys: Mapping[str, np.ndarray] | Sequence[np.ndarray], n_rows: int | None = None
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Map each row's combination of key values to a dense group code 0..G-1 (sorted by key).

    Parameters
    ----------
    keys : mapping or sequence of numpy.ndarray
        One array per key, all of the same length. No keys: every row is group 0.
    n_rows : int, optional
        Number of rows when there are no keys.

    Returns
    -------
    codes : numpy.ndarray of int64
        Group code per row.
    uniques : list of numpy.ndarray
        For each key, its value in each group (length G), in key order.
    """
    arrays = list(keys.values()) if isinstance(keys, Mapping) else list(keys)
    if not arrays:
        return np.zeros(n_rows or 0, dtype=np.int64), []
    codes = np.zeros(len(arrays[0]), dtype=np.int64)
    per_key: list[tuple[np.ndarray, np.ndarray]] = []
    varying = 0
    for arr in arrays:
        c, uniq = _factorize_one(arr)
        per_key.append((c, uniq))
        if len(uniq) > 1:  # a constant key (one band) does not change the grouping
            codes = codes * len(uniq) + c if varying else c
            varying += 1
    if varying > 1:
        codes = _factorize_one(codes)[0]
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    # key values of each group, decoded from the first row of that group
    rep = first_rows(codes, n_groups)
    uniques = [uniq[c[rep]] for c, uniq in per_key]
    return codes, uniques


def is_sorted(arr: np.ndarray) -> bool:
    """True if ``arr`` is non-decreasing (matched catalogs come sorted by object: the fast paths)."""
    return len(arr) < 2 or bool(np.all(arr[1:] >= arr[:-1]))


def first_rows(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Index of the first row of each group (0 for a group without rows); linear for sorted codes."""
    if len(codes) and is_sorted(codes):
        starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
        if len(starts) == n_groups:
            return starts.astype(np.int64, copy=False)
    rep = np.zeros(n_groups, dtype=np.int64)
    rep[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return rep


def finite_rows(codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The codes and values of the rows with a finite value (no copy when all are finite)."""
    ok = np.isfinite(values)
    if ok.all():
        return codes, values
    return codes[ok], values[ok]


def _factorize_one(arr) -> tuple[np.ndarray, np.ndarray]:
    """Sorted dense codes of one key; O(n) for already-sorted numbers and for categoricals."""
    if isinstance(arr, pd.Categorical):  # remap the (few) categories, never touch row strings
        cats = np.asarray(arr.categories, dtype=object)
        if len(cats) == 1 and len(arr) and int(np.asarray(arr.codes).min()) == 0:  # one value (one band)
            return np.zeros(len(arr), dtype=np.int8), cats
        codes = np.asarray(arr.codes, dtype=np.int64)
        cats = np.append(cats, np.nan) if (codes < 0).any() else cats
        codes = np.where(codes < 0, len(cats) - 1, codes) if (codes < 0).any() else codes
        order = np.argsort(cats.astype(str))
        rank = np.empty(len(cats), dtype=np.int64)
        rank[order] = np.arange(len(cats))
        c = rank[codes]
        used = np.bincount(c, minlength=len(cats)) > 0
        dense = np.cumsum(used) - 1
        return dense[c], cats[order][used]
    arr = np.asarray(arr)
    if arr.dtype.kind in "iub" and len(arr) and is_sorted(arr):
        starts = np.flatnonzero(arr[1:] != arr[:-1]) + 1
        starts = np.concatenate(([0], starts))
        sizes = np.diff(np.append(starts, len(arr)))
        return np.repeat(np.arange(len(starts), dtype=np.int64), sizes), arr[starts]
    c, uniq = pd.factorize(arr, sort=True, use_na_sentinel=False)
    return c.astype(np.int64), np.asarray(uniq)


def group_count(codes: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Number of rows per group (or sum of boolean/float weights)."""
    return np.bincount(codes, weights=weights, minlength=n_groups)[:n_groups]


def group_sum(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum of values per group."""
    return np.bincount(codes, weights=values, minlength=n_groups)[:n_groups]


def group_mean(codes: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean per group of the finite values, and their count (mean is NaN where the count is 0)."""
    c, v = finite_rows(codes, values)
    n = group_count(c, n_groups)
    s = group_sum(c, v, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / n, n


def group_percentile(codes: np.ndarray, values: np.ndarray, n_groups: int, q: float | Sequence[float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile(s) per group of the finite values, linear interpolation like `numpy.percentile`.

    Exact and vectorized: a stable argsort by code (skipped when rows are already grouped, as
    matched catalogs sorted by object are), then, for each distinct group size k, the groups of
    that size form a (groups, k) matrix partitioned along its rows at the ranks the percentiles
    need (`numpy.partition`, linear, instead of a sort); the loop is over distinct sizes (a
    handful: the numbers of visits), not over rows or groups.

    Returns
    -------
    result : numpy.ndarray
        Shape (G,) for a scalar q, (len(q), G) otherwise; NaN for empty groups.
    n : numpy.ndarray
        Finite values per group.
    """
    c, v = finite_rows(codes, values)
    if not is_sorted(c):
        order = np.argsort(c, kind="stable")
        c, v = c[order], v[order]
    n = group_count(c, n_groups).astype(np.int64)
    start = np.concatenate(([0], np.cumsum(n)[:-1])).astype(np.int64)
    qs = np.atleast_1d(np.asarray(q, dtype=float))
    out = np.full((len(qs), n_groups), np.nan)
    sizes = np.unique(n[n > 0])
    for k in sizes:  # loop over distinct group sizes
        ranks = []
        for qq in qs:
            pos = (k - 1) * (qq / 100.0)
            lo = int(np.floor(pos))
            ranks.append((lo, min(lo + 1, k - 1), pos - lo))
        kth = sorted({r for lo, hi, _ in ranks for r in (lo, hi)})
        if len(sizes) == 1 and k * n_groups == len(v):  # every group the same size: a reshape
            groups = slice(None)
            block = np.partition(v.reshape(n_groups, k), kth, axis=1)
        else:
            groups = np.flatnonzero(n == k)
            block = v[start[groups][:, None] + np.arange(k)] if k > 1 else v[start[groups]][:, None]
            block.partition(kth, axis=1)
        for i, (lo, hi, frac) in enumerate(ranks):  # only the order statistics needed, not a full sort
            out[i, groups] = block[:, lo] + (block[:, hi] - block[:, lo]) * frac
    return (out[0] if np.ndim(q) == 0 else out), n


def broadcast(per_group: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-group values repeated onto each row of the group."""
    return per_group[codes]
