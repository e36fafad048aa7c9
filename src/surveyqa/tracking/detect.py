"""Regression checks of one time series at its newest value. Pure: arrays in, findings out.

Four checks, each a `Finding` naming the last good and first bad point:

- ``threshold``: the newest value fails a spec the previous value passed;
- ``relative_change``: the newest value moved by more than a fraction of the previous one;
- ``missing``: the newest value could not be computed (NaN) after a finite one;
- ``changepoint``: the change-point test (`surveyqa.tracking.changepoint`) confirms a step
  among the last ``window`` values, with ``min_size`` points on each side.

Only changes for the worse count when the metric's direction is known (from ``higher_is_better``
or from the operator of its specs); otherwise both directions do. The "no data for a while"
check needs the run calendar and lives with the service (`surveyqa.tracking.service`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from surveyqa.metrics.specs import compare
from surveyqa.tracking.changepoint import FIRST_BLOCK, Energy, MeanShift, detect
from surveyqa.tracking.config import TrackingConfig

__all__ = ["Threshold", "Finding", "check_series", "check_many", "passes", "direction"]


@dataclass(frozen=True)
class Threshold:
    """A spec threshold in the metric's unit: a value passes when ``value OP threshold``."""

    name: str
    operator: str
    value: float


@dataclass(frozen=True)
class Finding:
    """One check that fired; indices are positions in the series (time order)."""

    check: str
    first_bad: int
    last_good: int | None
    before: float | None
    after: float | None
    detail: str


def passes(value: float, t: Threshold) -> bool:
    """``value <operator> threshold`` by the spec engine's operators (`surveyqa.metrics.specs.compare`)."""
    return compare(value, t.operator, t.value)


def direction(higher_is_better: bool | None, thresholds: list[Threshold]) -> int:
    """+1 if higher is better, -1 if lower is better, 0 if unknown."""
    if higher_is_better is not None:
        return 1 if higher_is_better else -1
    ops = {t.operator for t in thresholds}
    if ops and ops <= {"<=", "<"}:
        return -1
    if ops and ops <= {">=", ">"}:
        return 1
    return 0


def _worse(before: float, after: float, sign: int) -> bool:
    return after != before if sign == 0 else (after - before) * sign < 0


def check_series(
    values: np.ndarray,
    config: TrackingConfig,
    thresholds: list[Threshold] = (),
    higher_is_better: bool | None = None,
    changepoint: bool = True,
) -> list[Finding]:
    """Check the newest value of a series (``values`` in time order, NaN = not computed).

    ``changepoint=False`` skips the change-point test (`check_many` passes it for series whose
    screen already shows no candidate step).

    Returns
    -------
    list of Finding
        The checks that fired for the newest point (empty when all is well).
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return []
    sign = direction(higher_is_better, list(thresholds))
    last = len(values) - 1
    finite = np.flatnonzero(np.isfinite(values))
    out: list[Finding] = []
    if not np.isfinite(values[last]):
        if len(finite):
            p = int(finite[-1])
            out.append(Finding("missing", last, p, float(values[p]), None, "the newest value could not be computed"))
        return out
    prev_idx = finite[finite < last]
    if len(prev_idx):
        p = int(prev_idx[-1])
        before, after = float(values[p]), float(values[last])
        failed = [t.name for t in thresholds if passes(before, t) and not passes(after, t)]
        if failed:
            out.append(Finding("threshold", last, p, before, after, f"now fails {', '.join(failed)}"))
        if before != 0 and abs(after - before) / abs(before) > config.relative_change and _worse(before, after, sign):
            out.append(
                Finding("relative_change", last, p, before, after, f"changed by {100 * (after - before) / abs(before):+.1f}% from the previous value")
            )
    window = finite[-config.window :]
    if changepoint and len(window) >= 2 * config.min_size:
        stat = (Energy if config.statistic == "energy" else MeanShift)(min_size=config.min_size)
        screen = config.screen if config.statistic == "meanshift" else None
        steps = detect(values[window], stat, alpha=config.alpha, permutations=config.permutations, seed=len(finite), screen=screen)
        for cp in steps:
            base = abs(cp.mean_before) if cp.mean_before != 0 else 1.0
            if abs(cp.mean_after - cp.mean_before) / base < config.min_step or not _worse(cp.mean_before, cp.mean_after, sign):
                continue
            first_bad = int(window[cp.index])
            out.append(
                Finding(
                    "changepoint",
                    first_bad,
                    int(window[cp.index - 1]),
                    cp.mean_before,
                    cp.mean_after,
                    f"step from {cp.mean_before:.6g} to {cp.mean_after:.6g} (p = {cp.pvalue:.3g})",
                )
            )
    return out


def _screened_out(windows: list[np.ndarray], config: TrackingConfig) -> np.ndarray:
    """True where the best mean-shift split of a window scores below ``config.screen``.

    The same test `changepoint.best_split` makes first, for many windows of one length at once:
    such a window cannot hold a confirmed step, so its permutation test is skipped.
    """
    out = np.zeros(len(windows), dtype=bool)
    if config.statistic != "meanshift" or config.screen is None:
        return out
    stat = MeanShift(min_size=config.min_size)
    for idx in _by_length(windows, 2 * config.min_size).values():
        scores = stat.scan(np.stack([windows[i] for i in idx]))
        observed = scores[np.arange(len(idx)), np.argmax(scores, axis=1)]
        quiet = (~np.isfinite(observed) & (observed != np.inf)) | (observed < config.screen)
        out[idx] = quiet
    return out


def _by_length(windows: list[np.ndarray], shortest: int, among: list[int] | None = None) -> dict[int, list[int]]:
    """Positions of the windows (of ``among``, default all) by length, leaving out those shorter than ``shortest``."""
    by_len: dict[int, list[int]] = {}
    for i in range(len(windows)) if among is None else among:
        if len(windows[i]) >= shortest:
            by_len.setdefault(len(windows[i]), []).append(i)
    return by_len


def _no_step(windows: list[np.ndarray], seeds: list[int], among: list[int], config: TrackingConfig) -> np.ndarray:
    """True where the first block of the change-point test already puts the p-value above ``alpha``.

    `changepoint.detect` tests the whole window first and stops there when that split is not
    significant; `changepoint.best_split` draws its permutations in blocks (the first of 100)
    and gives up after a block whose exceedances make a p-value below ``alpha`` impossible.
    Those first blocks are drawn here from each window's own seeded generator, exactly as the
    test would draw them, and scored for all windows of one length in one array operation: noisy
    windows that passed the screen (most of those tested) are settled without their own test.
    """
    out = np.zeros(len(windows), dtype=bool)
    stat = (Energy if config.statistic == "energy" else MeanShift)(min_size=config.min_size)
    size = min(FIRST_BLOCK, config.permutations)
    for n, idx in _by_length(windows, 2 * stat.min_size, among).items():
        rows = np.stack([windows[i] for i in idx])
        scores = stat.scan(rows)
        observed = scores[np.arange(len(idx)), np.argmax(scores, axis=1)]
        perms = np.concatenate(
            [np.random.default_rng(seeds[i]).permuted(np.broadcast_to(windows[i], (size, n)), axis=1) for i in idx]
        )
        best = stat.scan(perms).max(axis=1).reshape(len(idx), size)
        exceed = np.count_nonzero(best >= observed[:, None], axis=1)
        undefined = ~np.isfinite(observed) & (observed != np.inf)  # best_split returns no split at all
        out[idx] = undefined | ((1.0 + exceed) / (1.0 + config.permutations) > config.alpha)
    return out


def check_many(
    series: list[tuple[np.ndarray, list[Threshold], bool | None]],
    config: TrackingConfig,
) -> list[list[Finding]]:
    """`check_series` of many series (values, thresholds, higher_is_better), with the same answers.

    Why: a submission touches thousands of series. Screening all their change-point windows in
    one array operation, then scoring the first permutation block of those that pass, also in
    one, leaves the per-series checks to the few series that may have a finding.
    """
    arrays, windows, seeds, calm = _prepare(series, config)
    quiet = _screened_out(windows, config)
    tested = [i for i in range(len(arrays)) if not quiet[i] and len(arrays[i]) >= 2]
    settled = quiet | _no_step(windows, seeds, tested, config)
    out = []
    for a, (_, thresholds, hib), s, c in zip(arrays, series, settled, calm, strict=True):
        if s and c and not thresholds:
            out.append([])  # nothing can fire: skip the per-series checks (the common case)
        else:
            out.append(check_series(a, config, thresholds, hib, changepoint=not s))
    return out


def _prepare(series: list, config: TrackingConfig) -> tuple[list[np.ndarray], list[np.ndarray], list[int], np.ndarray]:
    """Each series as an array, its change-point window (its latest ``window`` finite values), the
    seed of its change-point test (its number of finite values) and whether it is calm: its newest
    two values finite and within ``relative_change`` of each other, so that neither ``missing``
    nor ``relative_change`` can fire (and, without thresholds and with no possible step, nothing).

    Series of one length are handled as one array: when all their values are finite (the
    common case) the window is a column slice and calmness one vectorised comparison.
    """
    arrays = [np.asarray(v, dtype=float) for v, _, _ in series]
    windows: list[np.ndarray] = [None] * len(arrays)  # type: ignore[list-item]
    seeds = [0] * len(arrays)
    calm = np.zeros(len(arrays), dtype=bool)
    by_len: dict[int, list[int]] = {}
    for i, a in enumerate(arrays):
        by_len.setdefault(len(a), []).append(i)
    for n, idx in by_len.items():
        block = np.stack([arrays[i] for i in idx]) if n else np.zeros((len(idx), 0))
        finite = np.isfinite(block)
        full = finite.all(axis=1)
        tail = block[:, -config.window :]
        if n >= 2:
            before, after = block[:, -2], block[:, -1]
            with np.errstate(divide="ignore", invalid="ignore"):
                change = np.abs(after - before) / np.abs(before)
            calm[idx] = finite[:, -2] & finite[:, -1] & (before != 0) & (change <= config.relative_change)
        for row, i in enumerate(idx):
            if full[row]:
                windows[i], seeds[i] = tail[row], n
            else:
                f = np.flatnonzero(finite[row])
                windows[i], seeds[i] = arrays[i][f[-config.window :]], len(f)
    return arrays, windows, seeds, calm
