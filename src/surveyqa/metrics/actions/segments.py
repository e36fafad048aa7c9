"""Per-object statistics of rows sorted by object: the compiled kernel, on all cores.

A matched catalog comes sorted by object, so each object is a segment of consecutive rows and
every per-object statistic is a reduction over its segment. `segment_starts` finds the segments
from the object id's Arrow chunks and `segment_stats` computes the count, mean, sample std and a
percentile of each segment's finite values of a few per-row *streams* (a column, the magnitude
of a flux column, the ratio of two columns) in one pass over the rows where they lie, without
making columns contiguous or materializing the derived per-row columns. The objects are split
into one contiguous block per core; the kernel releases the GIL, so the blocks run in parallel
threads. Without the compiled module (`available` is False) callers use the numpy code of
`surveyqa.metrics.actions.groups`, which gives the same values (to rounding: the order of the
additions differs).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

try:
    from surveyqa.metrics.actions import _segments
except ImportError:  # not built (no compiler at install): the numpy code is used
    _segments = None

__all__ = ["Stream", "available", "n_threads", "segment_starts", "segment_stats"]

#: per-row formulas of a stream (see `Stream`).
IDENT, LOGMAG, RATIO = 0, 1, 2

#: fewest rows worth a thread of their own (below, starting threads costs more than it saves).
MIN_ROWS_PER_THREAD = 100_000

_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0  # the process the pool's threads belong to (a forked child makes its own)


def available() -> bool:
    """True when the compiled kernel is importable."""
    return _segments is not None and os.environ.get("SURVEYQA_NO_KERNEL", "") in ("", "0")


def n_threads() -> int:
    """Threads to use: ``SURVEYQA_THREADS`` if set, else the cores this process may run on."""
    env = os.environ.get("SURVEYQA_THREADS", "").strip()
    if env.isdigit():
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _run(fn, jobs: list[tuple]) -> list:
    """fn(*job) for each job; in a thread pool when there are several (the kernel releases the GIL)."""
    global _POOL, _POOL_PID
    if len(jobs) == 1:
        return [fn(*jobs[0])]
    if _POOL is None or _POOL._max_workers < len(jobs) or _POOL_PID != os.getpid():
        _POOL = ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="surveyqa-segments")
        _POOL_PID = os.getpid()
    return list(_POOL.map(lambda job: fn(*job), jobs))


def segment_starts(key_chunks: list[np.ndarray], n_rows: int, threads: int | None = None,
                   buffers: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """First row and key of each run of equal keys of an int64 column given as chunks.

    One pass over the keys: each thread scans a block of rows and writes the runs that start in
    it at the block's own offset of buffers as long as the column (memory that is not written is
    never touched), then the blocks are moved together. Returns None when the keys are not
    sorted (then a run is not an object: use the code path). ``buffers``: two int64 arrays of at
    least ``n_rows`` to use instead of new ones (the results are views of them).
    """
    threads = min(threads or n_threads(), max(1, n_rows // MIN_ROWS_PER_THREAD))
    cuts = [n_rows * t // threads for t in range(threads + 1)]
    ranges = list(zip(cuts[:-1], cuts[1:]))
    rows, keys = buffers if buffers is not None else (np.empty(n_rows, dtype=np.int64), np.empty(n_rows, dtype=np.int64))
    counts = _run(_segments.key_changes, [(key_chunks, r0, r1, rows[r0:r1], keys[r0:r1]) for r0, r1 in ranges])
    if any(c < 0 for c in counts):
        return None
    n = 0
    for (r0, _), c in zip(ranges, counts):  # a run that goes on into the next block is counted where it starts
        if r0 != n:
            rows[n:n + c] = rows[r0:r0 + c]
            keys[n:n + c] = keys[r0:r0 + c]
        n += c
    return rows[:n], keys[:n]


@dataclass
class Stream:
    """A per-row value and the per-object statistics wanted of it.

    Parameters
    ----------
    op : int
        `IDENT` (column ``a``), `LOGMAG` (``scale * log10(a) + offset``: a magnitude from a flux)
        or `RATIO` (``a / b``: a S/N).
    a, b : list of numpy.ndarray
        float64 chunks of the input columns (``b`` for `RATIO` only).
    scale, offset : float
        Of `LOGMAG`.
    count, mean, std : bool
        Want the number of finite values, their mean, their sample std (ddof=1, NaN below 2).
    percentile : float or None
        Want this percentile of the finite values (linear interpolation, as `numpy.percentile`).
    """

    op: int
    a: list[np.ndarray]
    b: list[np.ndarray] | None = None
    scale: float = 1.0
    offset: float = 0.0
    count: bool = False
    mean: bool = False
    std: bool = False
    percentile: float | None = None


def segment_stats(starts: np.ndarray, n_rows: int, streams: list[Stream], threads: int | None = None,
                  out: list[dict[str, np.ndarray]] | None = None) -> list[dict[str, np.ndarray]]:
    """Per-segment statistics of each stream: a dict with the asked ``count``, ``mean``, ``std``,
    ``percentile`` arrays (one value per segment; NaN, or count 0, where no value is finite).
    ``out``: such dicts of contiguous arrays of one value per segment to fill instead of new ones."""
    n_groups = len(starts)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    outs, specs = [], []
    for i, s in enumerate(streams):
        given = out[i] if out is not None else {}
        res = {}
        if s.count:
            res["count"] = given["count"] if "count" in given else np.empty(n_groups, dtype=np.int64)
        for name, want in (("mean", s.mean), ("std", s.std), ("percentile", s.percentile is not None)):
            if want:
                res[name] = given[name] if name in given else np.empty(n_groups, dtype=np.float64)
        for name, arr in res.items():
            if len(arr) != n_groups or not arr.flags.c_contiguous:
                raise ValueError(f"output {name!r} must be a contiguous array of {n_groups} values")
        outs.append(res)
        specs.append((s.op, s.a, s.b, float(s.scale), float(s.offset),
                      float(s.percentile) if s.percentile is not None else 50.0,
                      res.get("count"), res.get("mean"), res.get("std"), res.get("percentile")))
    if n_groups == 0:
        return outs
    threads = min(threads or n_threads(), max(1, n_rows // MIN_ROWS_PER_THREAD))
    # one contiguous block of objects per thread, of about the same number of rows
    cuts = np.searchsorted(starts, [n_rows * t // threads for t in range(threads + 1)])
    cuts[-1] = n_groups
    jobs = [(starts, n_rows, specs, int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]
    _run(_segments.segment_stats, jobs)
    return outs
