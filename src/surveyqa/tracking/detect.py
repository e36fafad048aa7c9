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

__all__ = ["Threshold", "Finding", "check_series", "passes", "direction"]


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
) -> list[Finding]:
    """Check the newest value of a series (``values`` in time order, NaN = not computed).

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
    if len(window) >= 2 * config.min_size:
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
