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
from surveyqa.metrics.actions import segments
from surveyqa.metrics.columns import _AB_MAG_OF_1_NJY, Frame

__all__ = ["take", "object_codes", "object_grouping", "object_rows", "object_stats", "per_object_mean",
           "per_object_median", "per_object_count", "repeat_deviation"]


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


def repeat_deviation(codes: np.ndarray, n_obj: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deviation of each measurement from its object's mean, scaled to an unbiased per-row sigma.

    For an object with n finite measurements, sum((x - mean)^2) has expectation (n - 1) sigma^2;
    multiplying each deviation by sqrt(n / (n - 1)) makes the mean of the squared scaled deviations
    an unbiased estimate of sigma^2, so the rms over any set of rows (a visit, a detector, a tract)
    estimates the single-measurement scatter sigma. Objects with one measurement give NaN.

    Returns
    -------
    scaled : numpy.ndarray
        Scaled deviation per row (same unit as values).
    n : numpy.ndarray
        Finite measurements of the row's object.
    """
    n = per_object_count(codes, n_obj, values)
    mean = per_object_mean(codes, n_obj, values)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(n > 1, np.sqrt(n / np.maximum(n - 1, 1)), np.nan)
    return (values - mean) * scale, n


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

    The per-object compute step of the repeatability metrics. When the rows come sorted by
    object from an Arrow table (a matched catalog) the compiled kernel computes every statistic
    in one multi-threaded pass over the Arrow chunks (`surveyqa.metrics.actions.segments`),
    deriving magnitudes and S/N from fluxes per object instead of as 10^7-row columns;
    otherwise `object_rows` and `Grouping`'s numpy reductions do, with the same values (to
    rounding). Either way there is a row for every object, selected or not.

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
    fused = _fused_object_stats(frame, keys, moments, stats, count)
    if fused is not None:
        return fused
    if moments is not None:
        values = frame.get(moments) if isinstance(moments, str) else moments
        rows, g = object_rows(frame, keys, np.asarray(values, dtype=float))
    else:
        rows, g = object_rows(frame, keys, np.ones(frame.n_rows, dtype=bool) if count is None else count)
    for name, (column, stat) in stats.items():
        values = np.asarray(frame.get(column) if isinstance(column, str) else column, dtype=float)
        rows[name] = g.mean(values)[0] if stat == "mean" else g.percentile(values, 50.0)[0]
    return rows, g


def _stream(frame: Frame, column: str | np.ndarray, **want) -> segments.Stream:
    formula = frame.row_formula(column) if isinstance(column, str) else None
    if formula is None:
        values = frame.get(column) if isinstance(column, str) else column
        return segments.Stream(segments.IDENT, [np.asarray(values, dtype=np.float64)], **want)
    kind, chunks = formula
    if kind == "mag":
        return segments.Stream(segments.LOGMAG, chunks[0], scale=-2.5, offset=_AB_MAG_OF_1_NJY, **want)
    if kind == "ratio":
        return segments.Stream(segments.RATIO, chunks[0], chunks[1], **want)
    return segments.Stream(segments.IDENT, chunks[0], **want)


def _fused_object_stats(frame, keys, moments, stats, count):
    """`object_stats` by the compiled kernel, or None where it does not apply."""
    if not segments.available() or frame.n_rows == 0 or (count is not None and moments is None
                                                         and not count.all()):
        return None
    band = None
    if frame.can_resolve("band"):
        band = frame.get("band")
        if not (isinstance(band, pd.Categorical) and len(band.categories) == 1
                and int(np.asarray(band.codes).min()) == 0):
            return None  # several bands: objects are (id, band) pairs, the code path groups them
    key_chunks = frame.key_chunks("obj_id")
    if key_chunks is None:
        return None
    found = segments.segment_starts(key_chunks, frame.n_rows)
    if found is None:  # not sorted by object
        return None
    starts, obj_id = found
    n_obj = len(starts)
    streams = []
    if moments is not None:
        streams.append(_stream(frame, moments, count=True, mean=True, std=True))
    for column, stat in stats.values():
        if stat == "mean":
            streams.append(_stream(frame, column, mean=True))
        else:
            streams.append(_stream(frame, column, percentile=50.0))
    out = segments.segment_stats(starts, frame.n_rows, streams)
    g = Grouping(None, n_obj, starts, n_rows=frame.n_rows)
    rows: dict[str, np.ndarray] = {"obj_id": obj_id}
    if band is not None:
        rows["band"] = pd.Categorical.from_codes(np.zeros(n_obj, dtype=np.int8), categories=band.categories)
    if moments is not None:
        first = out.pop(0)
        rows.update(n_visits=first["count"], mean=first["mean"], std=first["std"])
    else:
        rows["n_visits"] = g.sizes().astype(np.int64)
    for k, arr in keys.items():
        rows.setdefault(k, take(arr, starts))
    for name, res, (column, stat) in zip(stats, out, stats.values()):
        rows[name] = res["mean"] if stat == "mean" else res["percentile"]
    return rows, g
