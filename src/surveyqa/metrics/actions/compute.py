"""Compute actions: per-row values derived from a table, vectorized over all rows.

Repeatability metrics need per-object context on each source row (how many visits the object
has, its mean magnitude, its median S/N); these helpers compute per-object statistics with one
group-by and broadcast them back to the rows, so per-row values are kept for every source.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from surveyqa.metrics.actions.groups import (  # noqa: F401
    Grouping,
    broadcast,
    factorize_keys,
    finite_rows,
    first_rows,
    group_count,
    group_mean,
    group_percentile,
    group_sum,
    grouping,
)
from surveyqa.metrics.columns import Frame

__all__ = ["take", "object_codes", "object_grouping", "object_rows", "object_stats", "per_object_mean",
           "per_object_median", "per_object_count"]


def take(arr, index: np.ndarray) -> np.ndarray:
    """``arr[index]``: a numpy array, or a categorical (band) kept categorical (no string per row)."""
    if isinstance(arr, pd.Categorical):
        return arr[index]
    return np.asarray(arr)[index]


def object_codes(frame: Frame) -> tuple[np.ndarray, int]:
    """Dense code per row for its object: ``obj_id`` (and ``band`` when the table has one).

    Objects are per band: the same star seen in r and i is two repeatability objects.
    """
    g = object_grouping(frame)
    return g.codes, g.n_groups


def object_grouping(frame: Frame) -> Grouping:
    """The rows grouped by object (``obj_id`` and ``band``), see `object_codes`."""
    keys = [frame.get("obj_id")]
    if frame.can_resolve("band"):
        keys.append(frame.get("band"))
    g, _ = grouping(keys)
    return g


def per_object_count(codes: np.ndarray, n_obj: int, values: np.ndarray) -> np.ndarray:
    """Finite values per object, broadcast to rows."""
    return broadcast(group_count(codes, n_obj, weights=np.isfinite(values).astype(float)), codes).astype(np.int64)


def per_object_mean(codes: np.ndarray, n_obj: int, values: np.ndarray) -> np.ndarray:
    """Mean of the finite values of each object, broadcast to rows."""
    return broadcast(group_mean(codes, values, n_obj)[0], codes)


def per_object_median(codes: np.ndarray, n_obj: int, values: np.ndarray) -> np.ndarray:
    """Median of the finite values of each object, broadcast to rows."""
    return broadcast(group_percentile(codes, values, n_obj, 50.0)[0], codes)


def object_rows(frame: Frame, keys: Mapping[str, np.ndarray], values: np.ndarray, moments: bool = True
                ) -> tuple[dict[str, np.ndarray], Grouping]:
    """One row per object: id, band, finite count, mean and sample std (ddof=1) of ``values``.

    The group_by keys of each object are those of its first source (objects are matched within
    a tract and a band, so tract and band are constant over an object).

    Parameters
    ----------
    frame : Frame
        The source rows.
    keys : mapping of str -> numpy.ndarray
        The group_by keys of the source rows.
    values : numpy.ndarray
        Per-source values (non-finite ones are not counted), or a boolean mask of the sources
        to count.
    moments : bool
        Also compute ``mean`` and ``std`` of the values (not for a mask).

    Returns
    -------
    rows : dict of str -> numpy.ndarray
        ``obj_id``, ``band`` (if any), ``n_visits``, ``mean`` and ``std`` (with ``moments``) and
        the group_by keys.
    groups : Grouping
        The source rows grouped by object (``groups.codes``: object of each row).
    """
    g = object_grouping(frame)
    if values.dtype == bool:
        n = g.sizes() if values.all() else group_count(g.codes[values], g.n_groups)
        rows = {"n_visits": n.astype(np.int64)}
    elif moments:
        n, mean, std = g.moments(values)
        rows = {"n_visits": n, "mean": mean, "std": std}
    else:
        rows = {"n_visits": g.mean(values)[1].astype(np.int64)}
    first = g.first_rows()
    rows = {"obj_id": take(frame.get("obj_id"), first), **rows}
    if frame.can_resolve("band"):
        rows["band"] = take(frame.get("band"), first)
    for k, arr in keys.items():
        rows.setdefault(k, take(arr, first))
    return rows, g


#: what `object_stats` computes of a per-source column: ``(column, statistic)`` with statistic
#: ``"mean"`` or ``"median"``; the column a logical name or a per-source array.
Stat = tuple["str | np.ndarray", str]


def object_stats(frame: Frame, keys: Mapping[str, np.ndarray], moments: str | np.ndarray | None = None,
                 stats: Mapping[str, Stat] | None = None, count: np.ndarray | None = None
                 ) -> tuple[dict[str, np.ndarray], Grouping]:
    """One row per object: id, band, group_by keys, count and the per-object statistics asked for.

    The per-object compute step of the repeatability metrics: `object_rows` and `Grouping`'s
    numpy reductions (segment reductions when the rows come sorted by object, as matched
    catalogs do). There is a row for every object, selected or not.

    Parameters
    ----------
    frame : Frame
        The source rows.
    keys : mapping of str -> numpy.ndarray
        The group_by keys of the source rows.
    moments : str or numpy.ndarray, optional
        Column (logical name or per-source values) whose finite count (``n_visits``), ``mean``
        and sample std (``std``, ddof=1) to compute.
    stats : mapping of str -> (column, "mean" | "median"), optional
        Output name -> the mean or median of the finite values of a column.
    count : numpy.ndarray of bool, optional
        Without ``moments``: ``n_visits`` counts these sources (default: all sources).

    Returns
    -------
    rows : dict of str -> numpy.ndarray
        ``obj_id``, ``band`` (if any), the group_by keys, ``n_visits``, ``mean`` and ``std``
        (with ``moments``) and the ``stats`` names.
    groups : Grouping
        The source rows grouped by object.
    """
    stats = dict(stats or {})
    if moments is not None:
        values = frame.get(moments) if isinstance(moments, str) else moments
        rows, g = object_rows(frame, keys, np.asarray(values, dtype=float))
    else:
        rows, g = object_rows(frame, keys, np.ones(frame.n_rows, dtype=bool) if count is None else count)
    for name, (column, stat) in stats.items():
        values = np.asarray(frame.get(column) if isinstance(column, str) else column, dtype=float)
        rows[name] = g.mean(values)[0] if stat == "mean" else g.percentile(values, 50.0)[0]
    return rows, g
