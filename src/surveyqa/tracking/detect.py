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

#: Permutations after which `_no_step` first looks whether a window is settled.
_EARLY = 10

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


def _best_scores(windows: list[np.ndarray], stat, among: list[int]) -> np.ndarray:
    """The best split score of each window of ``among`` (NaN elsewhere and for windows too short),
    as `changepoint.best_split` finds it: windows of one length are scanned as one array."""
    out = np.full(len(windows), np.nan)
    for idx in _by_length(windows, 2 * stat.min_size, among).values():
        scores = stat.scan(np.stack([windows[i] for i in idx]))
        out[idx] = scores[np.arange(len(idx)), np.argmax(scores, axis=1)]
    return out


def _by_length(windows: list[np.ndarray], shortest: int, among: list[int]) -> dict[int, list[int]]:
    """Positions of the windows of ``among`` by length, leaving out those shorter than ``shortest``."""
    by_len: dict[int, list[int]] = {}
    for i in among:
        if len(windows[i]) >= shortest:
            by_len.setdefault(len(windows[i]), []).append(i)
    return by_len


def _no_step(windows: list[np.ndarray], seeds: list[int], among: list[int], config: TrackingConfig) -> np.ndarray:
    """True where the change-point test of a window (of ``among``) cannot confirm a step.

    `changepoint.detect` tests the whole window first and stops there when that split is not
    significant (or not tested: no finite score, or one below the mean-shift ``screen``);
    `changepoint.best_split` draws its permutations in blocks and gives up as soon as the
    exceedances so far make a p-value at most ``alpha`` impossible. The same permutations are
    drawn here, from each window's own seeded generator in the same order, for all windows of one
    length together and with an early look after the first ``_EARLY``: most windows that pass
    the screen are noise, settled by a few permutations scored in one array operation. The
    exceedance count only grows, so settling sooner than the test gives the test's answer; a
    row's scores do not depend on the rows scanned with it (`changepoint.SplitStatistic`).
    """
    out = np.zeros(len(windows), dtype=bool)
    stat = (Energy if config.statistic == "energy" else MeanShift)(min_size=config.min_size)
    observed = _best_scores(windows, stat, among)
    untested = ~np.isfinite(observed) & (observed != np.inf)
    if config.statistic == "meanshift" and config.screen is not None:
        untested |= observed < config.screen
    total = config.permutations
    for n, idx in _by_length(windows, 2 * stat.min_size, among).items():
        out[idx] = untested[idx]
        live = [(i, np.random.default_rng(seeds[i])) for i in idx if not untested[i]]
        exceed = np.zeros(len(live), dtype=np.int64)
        done = 0
        while live and done < total:
            block_end = min(done - done % FIRST_BLOCK + FIRST_BLOCK, total)  # the end of best_split's block
            size = (min(_EARLY, block_end) if done < _EARLY else block_end) - done
            perms = np.concatenate([rng.permuted(np.broadcast_to(windows[i], (size, n)), axis=1) for i, rng in live])
            best = stat.scan(perms).max(axis=1).reshape(len(live), size)
            exceed += np.count_nonzero(best >= observed[[i for i, _ in live]][:, None], axis=1)
            done += size
            settled = (1.0 + exceed) / (1.0 + total) > config.alpha
            out[[i for (i, _), s in zip(live, settled, strict=True) if s]] = True
            live = [x for x, s in zip(live, settled, strict=True) if not s]
            exceed = exceed[~settled]
    return out


def check_many(
    series: list[tuple[np.ndarray, list[Threshold], bool | None]],
    config: TrackingConfig,
) -> list[list[Finding]]:
    """`check_series` of many series (values, thresholds, higher_is_better), with the same answers.

    Why: a submission touches thousands of series. Scoring all their change-point windows in one
    array operation, then the first permutations of those that pass the screen, also in one,
    leaves the per-series checks to the few series that may have a finding.
    """
    arrays, windows, seeds, calm = _prepare(series, config)
    settled = _no_step(windows, seeds, [i for i in range(len(arrays)) if len(arrays[i]) >= 2], config)
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
