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
from surveyqa.metrics.columns import _AB_MAG_OF_1_NJY, Frame, _ArrowColumns, _ParquetColumns

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


def _stream(frame: Frame, source, column: str | np.ndarray, rows: slice | None = None, **want) -> segments.Stream:
    """The kernel stream of a column: read from ``source``'s Arrow chunks (the frame's table, or
    one row group of a Parquet file) where the frame can say how, else its materialized values
    (the rows ``rows`` of them for a row group)."""
    formula = frame.row_formula(column) if isinstance(column, str) else None
    if formula is None:
        values = np.asarray(frame.get(column) if isinstance(column, str) else column, dtype=np.float64)
        return segments.Stream(segments.IDENT, [values if rows is None else values[rows]], **want)
    kind, names = formula
    chunks = [source.float_chunks(n) for n in names]
    if kind == "mag":
        return segments.Stream(segments.LOGMAG, chunks[0], scale=-2.5, offset=_AB_MAG_OF_1_NJY, **want)
    if kind == "ratio":
        return segments.Stream(segments.RATIO, chunks[0], chunks[1], **want)
    return segments.Stream(segments.IDENT, chunks[0], **want)


def _wants(moments, stats) -> list[tuple[object, dict]]:
    out = []
    if moments is not None:
        out.append((moments, {"count": True, "mean": True, "std": True}))
    for column, stat in stats.values():
        out.append((column, {"mean": True} if stat == "mean" else {"percentile": 50.0}))
    return out


def _single_band(frame: Frame) -> tuple[bool, list | None]:
    """(kernel applies, band labels): False when the table holds several bands."""
    if not frame.can_resolve("band"):
        return True, None
    band = frame.get("band")
    if not (isinstance(band, pd.Categorical) and len(band.categories) == 1
            and int(np.asarray(band.codes).min()) == 0):
        return False, None  # several bands: objects are (id, band) pairs, the code path groups them
    return True, list(band.categories)


def _fused_object_stats(frame, keys, moments, stats, count):
    """`object_stats` by the compiled kernel, or None where it does not apply."""
    if not segments.available() or frame.n_rows == 0 or (count is not None and moments is None
                                                         and not count.all()):
        return None
    wants = _wants(moments, stats)
    found = None
    if isinstance(frame.raw, _ParquetColumns) and frame.raw.row_groups() > 1:
        found = _streamed_stats(frame, wants)
    if found is None:
        ok, labels = _single_band(frame)
        key_chunks = frame.key_chunks("obj_id") if ok else None
        if key_chunks is None:
            return None
        bounds = segments.segment_starts(key_chunks, frame.n_rows)
        if bounds is None:  # not sorted by object
            return None
        starts, obj_id = bounds
        streams = [_stream(frame, frame.raw, column, **want) for column, want in wants]
        out = segments.segment_stats(starts, frame.n_rows, streams)
    else:
        starts, obj_id, out, labels = found
    n_obj = len(starts)
    g = Grouping(None, n_obj, starts, n_rows=frame.n_rows)
    rows: dict[str, np.ndarray] = {"obj_id": obj_id}
    if labels is not None:
        rows["band"] = pd.Categorical.from_codes(np.zeros(n_obj, dtype=np.int8), categories=labels)
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


def _batch_label(column) -> object:
    """The one band of a row group's band column, or None when it holds several (or nulls)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        return None
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()
        dictionary = column.chunk(0).dictionary if column.num_chunks else pa.array([], pa.string())
        if len(dictionary) == 1:
            return dictionary[0].as_py()
        column = column.cast(dictionary.type)
    lo_hi = pc.min_max(column).as_py()
    return lo_hi["min"] if lo_hi["min"] == lo_hi["max"] else None


def _streamed_stats(frame: Frame, wants):
    """The kernel over a Parquet file row group by row group (the next one read meanwhile).

    The rows of the last object of a row group wait for the next row group (an object may span
    two); memory is that of one row group, reused, instead of whole columns. None where the
    kernel does not apply (several bands, unsorted ids): the caller then reads whole columns.
    """
    import pyarrow as pa

    key = frame._arrow_column("obj_id")
    if key is None:
        return None
    band = None
    if frame.can_resolve("band"):
        band = frame._arrow_column("band")
        if band is None:
            return None
    formulas = [frame.row_formula(c) if isinstance(c, str) else None for c, _ in wants]
    names = list(dict.fromkeys([key] + ([band] if band else []) + [n for f in formulas if f for n in f[1]]))
    n_rows, n_groups = frame.n_rows, frame.raw.row_groups()
    # capacity for every row: only the pages written (one per object) are ever touched
    starts_all = np.empty(n_rows, dtype=np.int64)
    keys_all = np.empty(n_rows, dtype=np.int64)
    outs_all = [{k: np.empty(n_rows, dtype=np.int64 if k == "count" else np.float64)
                 for k in (["count", "mean", "std"] if "std" in want else ["mean"] if "mean" in want
                           else ["percentile"])} for _, want in wants]
    n_obj, row0, carry, prev, label = 0, 0, None, None, None
    scratch = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))  # reused from row group to row group
    for i, batch in enumerate(frame.raw.batches(names)):
        last = i == n_groups - 1
        if carry is not None:
            batch = pa.concat_tables([carry, batch])
        if band:
            this = _batch_label(batch.column(band))
            if this is None or (label is not None and this != label):
                return None
            label = this
        cols = _ArrowColumns(batch)
        key_chunks = cols.int_chunks(key)
        if len(scratch[0]) < batch.num_rows:
            scratch = (np.empty(2 * batch.num_rows, dtype=np.int64), np.empty(2 * batch.num_rows, dtype=np.int64))
        bounds = (segments.segment_starts(key_chunks, batch.num_rows, buffers=scratch)
                  if key_chunks is not None else None)
        if bounds is None:
            return None
        starts, ids = bounds
        if prev is not None and len(ids) and ids[0] <= prev:  # ids must keep increasing across row groups
            return None
        done = len(starts) if last else len(starts) - 1  # the last object may go on in the next row group
        if done == 0:
            carry = batch
            continue
        end = int(starts[done]) if done < len(starts) else batch.num_rows
        streams = [_stream(frame, cols, column, rows=slice(row0, row0 + end), **want) for column, want in wants]
        segments.segment_stats(starts[:done], end, streams,
                               out=[{k: v[n_obj:n_obj + done] for k, v in o.items()} for o in outs_all])
        starts_all[n_obj:n_obj + done] = starts[:done] + row0
        keys_all[n_obj:n_obj + done] = ids[:done]
        prev = int(ids[done - 1])
        n_obj += done
        row0 += end
        carry = None if last else batch.slice(end)
    if row0 != n_rows:
        return None
    outs = [{k: v[:n_obj] for k, v in o.items()} for o in outs_all]
    return starts_all[:n_obj], keys_all[:n_obj], outs, ([label] if band else None)
