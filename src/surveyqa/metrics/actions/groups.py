"""Vectorized group-by: integer group codes and per-group statistics without Python loops over rows.

Every aggregation and every per-object compute step reduces to "a value per row, a group code per
row": these helpers compute counts, sums, means, rms and order statistics per group with
`numpy.bincount` and one sort, so a 10^7-row table is aggregated in a few numpy passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["Grouping", "grouping", "factorize_keys", "first_rows", "finite_rows", "is_sorted", "group_count", "group_sum", "group_mean",
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
    codes, uniques, _ = _factorize(keys, n_rows)
    return codes, uniques


def grouping(keys: Mapping[str, np.ndarray] | Sequence[np.ndarray], n_rows: int | None = None
             ) -> tuple["Grouping", list[np.ndarray]]:
    """Like `factorize_keys`, as a `Grouping` that knows when each group's rows are contiguous.

    The common case of a matched catalog (one sorted integer key, e.g. the object id, and keys
    with a single value, e.g. one band) costs two passes over the key and builds no code array.
    """
    arrays = list(keys.values()) if isinstance(keys, Mapping) else list(keys)
    single = [isinstance(a, pd.Categorical) and len(a.categories) == 1 and len(a) > 0
              and int(np.asarray(a.codes).min()) == 0 for a in arrays]
    varying = [np.asarray(a) for a, one in zip(arrays, single) if not one]
    if len(varying) == 1 and varying[0].dtype.kind in "iu" and len(varying[0]) and is_sorted(varying[0]):
        arr = varying[0]
        starts = np.concatenate(([0], np.flatnonzero(arr[1:] != arr[:-1]) + 1)).astype(np.int64)
        uniques = [np.asarray(a.categories, dtype=object)[np.zeros(len(starts), dtype=np.int64)] if one
                   else arr[starts] for a, one in zip(arrays, single)]
        return Grouping(None, len(starts), starts, n_rows=len(arr)), uniques
    codes, uniques, starts = _factorize(keys, n_rows)
    n_groups = len(uniques[0]) if uniques else (1 if len(codes) else 0)
    return Grouping(codes, n_groups, starts), uniques


def _factorize(keys, n_rows):
    arrays = list(keys.values()) if isinstance(keys, Mapping) else list(keys)
    if not arrays:
        return np.zeros(n_rows or 0, dtype=np.int64), [], None
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
    starts = _contiguous_starts(codes, n_groups)
    rep = starts if starts is not None else first_rows(codes, n_groups)
    uniques = [uniq[c[rep]] for c, uniq in per_key]
    return codes, uniques, starts


def is_sorted(arr: np.ndarray) -> bool:
    """True if ``arr`` is non-decreasing (matched catalogs come sorted by object: the fast paths)."""
    return len(arr) < 2 or bool(np.all(arr[1:] >= arr[:-1]))


def _contiguous_starts(codes: np.ndarray, n_groups: int) -> np.ndarray | None:
    """First row of each group if the codes are sorted and no group is empty, else None."""
    if len(codes) and n_groups and is_sorted(codes):
        starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
        if len(starts) == n_groups:
            return starts.astype(np.int64, copy=False)
    return None


def first_rows(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Index of the first row of each group (0 for a group without rows); linear for sorted codes."""
    starts = _contiguous_starts(codes, n_groups)
    if starts is not None:
        return starts
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
    return _sorted_percentile(v, n, q), n


def _sorted_percentile(v: np.ndarray, n: np.ndarray, q: float | Sequence[float]) -> np.ndarray:
    """Percentiles of finite values already grouped: group g is the next n[g] values of v."""
    n_groups = len(n)
    start = np.concatenate(([0], np.cumsum(n)[:-1])).astype(np.int64)
    qs = np.atleast_1d(np.asarray(q, dtype=float))
    out = np.full((len(qs), n_groups), np.nan)
    lo_hi = (int(n.min()), int(n.max())) if n_groups else (0, 0)
    sizes = np.array([lo_hi[0]]) if lo_hi[0] == lo_hi[1] and lo_hi[0] > 0 else np.unique(n[n > 0])
    for k in sizes:  # loop over distinct group sizes
        ranks = []
        for qq in qs:
            pos = (k - 1) * (qq / 100.0)
            lo = int(np.floor(pos))
            ranks.append((lo, min(lo + 1, k - 1), pos - lo))
        kth = sorted({r for lo, hi, _ in ranks for r in (lo, hi)})
        # two neighbouring ranks (a median of an even count): partition at the upper one only;
        # the lower one is the largest value left of it (partitioning at two ranks costs 3-4x one)
        pair = len(kth) == 2 and kth[1] == kth[0] + 1
        part = kth[1:] if pair else kth
        if len(sizes) == 1 and k * n_groups == len(v):  # every group the same size: a reshape
            groups = slice(None)
            block = np.partition(v.reshape(n_groups, k), part, axis=1)
        else:
            groups = np.flatnonzero(n == k)
            block = v[start[groups][:, None] + np.arange(k)] if k > 1 else v[start[groups]][:, None]
            block.partition(part, axis=1)
        stat = {r: block[:, r] for r in part}
        if pair:
            stat[kth[0]] = block[:, :kth[1]].max(axis=1)
        for i, (lo, hi, frac) in enumerate(ranks):  # only the order statistics needed, not a full sort
            out[i, groups] = stat[lo] + (stat[hi] - stat[lo]) * frac
    return out[0] if np.ndim(q) == 0 else out


def broadcast(per_group: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-group values repeated onto each row of the group."""
    return per_group[codes]


class Grouping:
    """Rows in groups: a code per row and, when each group's rows are contiguous, where each starts.

    Matched catalogs come sorted by object. Then, and when every value is finite, the per-group
    statistics are segment reductions (`numpy.add.reduceat`, `numpy.repeat`, a reshape for
    equal group sizes) that never need the code array (it is built only when asked for);
    otherwise they fall back to the code-based functions of this module. Results agree to
    rounding (the order of additions differs).

    Parameters
    ----------
    codes : numpy.ndarray of int64 or None
        Group code per row, 0..n_groups-1; None to derive it from ``starts`` when needed.
    n_groups : int
        Number of groups.
    starts : numpy.ndarray or None
        First row of each group when the codes are sorted and no group is empty.
    n_rows : int, optional
        Number of rows (required when ``codes`` is None).
    """

    def __init__(self, codes: np.ndarray | None, n_groups: int, starts: np.ndarray | None = None,
                 n_rows: int | None = None):
        if codes is None and (starts is None or n_rows is None):
            raise ValueError("a Grouping without codes needs starts and n_rows")
        self._codes = codes
        self.n_groups = n_groups
        self.starts = starts
        self.n_rows = len(codes) if codes is not None else int(n_rows)

    @property
    def codes(self) -> np.ndarray:
        """Group code per row (built from ``starts`` on first use when not given)."""
        if self._codes is None:
            self._codes = np.repeat(np.arange(self.n_groups, dtype=np.int64), self.sizes())
        return self._codes

    def codes_at(self, rows: np.ndarray) -> np.ndarray:
        """Group codes of some rows (a binary search in ``starts`` when there is no code array)."""
        if self._codes is not None or self.starts is None:
            return self.codes[rows]
        return np.searchsorted(self.starts, rows, side="right") - 1

    def rows_of(self, groups: np.ndarray) -> np.ndarray:
        """Row indices of some groups (sorted group indices give sorted rows)."""
        if self.starts is None:
            member = np.zeros(self.n_groups, dtype=bool)
            member[groups] = True
            return np.flatnonzero(member[self.codes])
        sizes = self.sizes()[groups]
        offset = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return np.repeat(self.starts[groups], sizes) + offset

    def _segments(self, values: np.ndarray) -> bool:
        return self.starts is not None and len(values) == self.n_rows and bool(np.isfinite(values).all())

    def sizes(self) -> np.ndarray:
        """Rows per group."""
        if self.starts is not None:
            return np.diff(np.append(self.starts, self.n_rows))
        return group_count(self.codes, self.n_groups)

    def first_rows(self) -> np.ndarray:
        """Index of the first row of each group."""
        return self.starts if self.starts is not None else first_rows(self.codes, self.n_groups)

    def moments(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Finite count, mean and sample std (ddof=1; NaN below 2 values) per group."""
        if self._segments(values):
            n = self.sizes()
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.add.reduceat(values, self.starts) / n
                dev = np.repeat(mean, n)
                np.subtract(values, dev, out=dev)
                np.multiply(dev, dev, out=dev)
                std = np.sqrt(np.add.reduceat(dev, self.starts) / (n - 1))
        else:
            c, v = finite_rows(self.codes, values)  # no copy when every value is finite
            n = group_count(c, self.n_groups)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = group_sum(c, v, self.n_groups) / n
                dev = v - mean[c]
                std = np.sqrt(group_count(c, self.n_groups, weights=dev * dev) / (n - 1))
        std[n < 2] = np.nan
        return n.astype(np.int64), mean, std

    def mean(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean of the finite values per group, and their count."""
        if self._segments(values):
            n = self.sizes()
            return np.add.reduceat(values, self.starts) / n, n
        return group_mean(self.codes, values, self.n_groups)

    def percentile(self, values: np.ndarray, q: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Percentile(s) of the finite values per group, as `group_percentile`."""
        if self._segments(values):
            n = self.sizes()
            return _sorted_percentile(values, n, q), n
        return group_percentile(self.codes, values, self.n_groups, q)

