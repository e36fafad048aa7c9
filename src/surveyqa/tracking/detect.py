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
from surveyqa.tracking.changepoint import Energy, MeanShift, detect
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
    by_len: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        if len(w) >= 2 * config.min_size:
            by_len.setdefault(len(w), []).append(i)
    stat = MeanShift(min_size=config.min_size)
    for idx in by_len.values():
        scores = stat.scan(np.stack([windows[i] for i in idx]))
        observed = scores[np.arange(len(idx)), np.argmax(scores, axis=1)]
        quiet = (~np.isfinite(observed) & (observed != np.inf)) | (observed < config.screen)
        out[idx] = quiet
    return out


def check_many(
    series: list[tuple[np.ndarray, list[Threshold], bool | None]],
    config: TrackingConfig,
) -> list[list[Finding]]:
    """`check_series` of many series (values, thresholds, higher_is_better), with the same answers.

    Why: a submission touches thousands of series; screening all their change-point windows in
    one array operation leaves the permutation test to the few with a candidate step.
    """
    arrays = [np.asarray(v, dtype=float) for v, _, _ in series]
    windows = [a[np.flatnonzero(np.isfinite(a))[-config.window :]] for a in arrays]
    quiet = _screened_out(windows, config)
    out = []
    for a, (_, thresholds, hib), q in zip(arrays, series, quiet, strict=True):
        if q and not thresholds and _calm(a, config):
            out.append([])  # nothing can fire: skip the per-series checks (the common case)
        else:
            out.append(check_series(a, config, thresholds, hib, changepoint=not q))
    return out


def _calm(values: np.ndarray, config: TrackingConfig) -> bool:
    """The newest two values are finite and within ``relative_change`` of each other.

    Then neither ``missing`` nor ``relative_change`` can fire (and, without thresholds and with
    the change-point screen quiet, nothing else): `check_series` would return no finding.
    """
    if len(values) < 2:
        return False
    before, after = float(values[-2]), float(values[-1])
    if not (np.isfinite(before) and np.isfinite(after)) or before == 0:
        return False
    return abs(after - before) / abs(before) <= config.relative_change
