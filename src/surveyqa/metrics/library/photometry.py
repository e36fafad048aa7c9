"""Photometric repeatability, LPM-17 PA1, PA2 and PF1, on matched multi-visit catalogs.

Definitions implemented (as faro / analysis_tools compute them; differences stated):

PA1 (per-object rows, ``qaObjectValues``)
    compute: for each object (``obj_id``, per ``band``), the sample standard deviation (ddof=1)
    of its finite PSF magnitudes (flagged sources excluded), in mmag, with ``n_visits``,
    ``mag_mean``, ``obj_snr`` (median S/N) and ``obj_extendedness`` (mean).
    selection ``bright_stars``: unresolved (mean extendedness < 0.5), median S/N >= 50 (faro's
    ``snrMin``), at least 3 measurements (faro's ``count > 2``), not flagged.
    aggregation: median over the selected objects. faro uses ``nanstd`` (ddof=0); we use ddof=1,
    whose median is closer to the true scatter for few visits. The median makes PA1 robust to
    the few objects with a bad measurement that dominate a plain rms on real data.
PA2_<level>_<bands>, PF1_<level>_<bands> (per-source rows)
    compute: each magnitude's deviation from its object's mean, scaled by sqrt(n/(n-1)) so its
    mean square is an unbiased single-visit variance, in mmag; same per-object context.
    PA2: the (100 - PF1 spec)th percentile of |scaled deviation|, the deviation only PF1 % of
    measurements exceed. PF1: percentage of |scaled deviation| above the PA2 spec of the same
    level (validate_drp pairs the two specs this way).
"""

from __future__ import annotations

from collections.abc import Mapping

import astropy.units as u
import numpy as np

from surveyqa.metrics.actions import aggregate as agg
from surveyqa.metrics.actions import select as sel
from surveyqa.metrics.actions.compute import (
    object_codes,
    object_stats,
    per_object_mean,
    per_object_median,
    repeat_deviation,
)
from surveyqa.metrics.actions.select import Selection
from surveyqa.metrics.columns import Frame
from surveyqa.metrics.engine import Metric

__all__ = ["METRICS", "bright_stars", "compute_mag_repeat", "compute_object_rms", "SNR_MIN", "MIN_VISITS"]

#: faro's ``snrMin`` for bright stars.
SNR_MIN = 50.0
#: fewest finite magnitudes an object needs (faro: ``count > 2``).
MIN_VISITS = 3
#: fewest selected rows (objects for PA1, sources for PA2/PF1) for a value.
MIN_ROWS = 10
_MMAG_PER_MAG = u.mag.to(u.mmag)

#: LPM-17 spec pairs (PA2 threshold in mmag, PF1 threshold in %) by level and band set.
PA2_SPEC = {("minimum", "gri"): 15.0, ("design", "gri"): 15.0, ("stretch", "gri"): 10.0,
            ("minimum", "uzy"): 22.5, ("design", "uzy"): 22.5, ("stretch", "uzy"): 15.0}
PF1_SPEC = {("minimum", "gri"): 20.0, ("design", "gri"): 10.0, ("stretch", "gri"): 5.0,
            ("minimum", "uzy"): 20.0, ("design", "uzy"): 10.0, ("stretch", "uzy"): 5.0}


def bright_stars(snr: float = SNR_MIN, min_visits: int = MIN_VISITS) -> Selection:
    """Unresolved, bright (median S/N >= ``snr``), repeatedly measured, unflagged sources."""
    s = (sel.unresolved(column="obj_extendedness") & sel.snr_min(snr, column="obj_snr")
         & sel.min_count(min_visits, column="n_visits") & sel.not_flagged())
    return s.named("bright_stars", f"bright unresolved stars: {s.description}")


def _clean_mag(frame: Frame) -> np.ndarray:
    mag = np.asarray(frame.get("mag"), dtype=float)
    if frame.can_resolve("flag"):
        flag = frame.get("flag").astype(bool)
        if flag.any():  # copy only when something is flagged: the frame caches its columns
            mag = np.where(flag, np.nan, mag)
    return mag


def _mag_column(frame: Frame) -> str | np.ndarray:
    """``"mag"`` (the per-object kernel derives it from the flux per object), or the magnitudes
    with flagged sources set to NaN when something is flagged."""
    if frame.can_resolve("flag") and frame.get("flag").astype(bool).any():
        return _clean_mag(frame)
    return "mag"


def compute_object_rms(frame: Frame, keys: Mapping[str, np.ndarray], selection: Selection) -> dict[str, np.ndarray]:
    """One row per object: sample std of its magnitudes (mmag) and the context the selection reads."""
    rows, _ = object_stats(frame, keys, moments=_mag_column(frame),
                           stats={"obj_snr": ("snr", "median"), "obj_extendedness": ("extendedness", "mean")})
    rows["mag_mean"] = rows.pop("mean")
    value = rows.pop("std")
    value *= _MMAG_PER_MAG  # in place: a Quantity would copy 10^6 values twice
    rows["value"] = value
    return rows


def compute_mag_repeat(frame: Frame, keys: Mapping[str, np.ndarray], selection: Selection) -> dict[str, np.ndarray]:
    """Per-source scaled magnitude deviation from the object mean (mmag) and per-object context."""
    codes, n_obj = object_codes(frame)
    mag = _clean_mag(frame)
    scaled, n = repeat_deviation(codes, n_obj, mag)
    out = {
        "obj_id": frame.get("obj_id"),
        "mag": mag,
        "mag_mean": per_object_mean(codes, n_obj, mag),
        "n_visits": n,
        "obj_snr": per_object_median(codes, n_obj, frame.get("snr")),
        "obj_extendedness": per_object_mean(codes, n_obj, np.asarray(frame.get("extendedness"), dtype=float)),
        "value": (scaled * u.mag).to_value(u.mmag),
    }
    if frame.can_resolve("visit"):
        out["visit"] = frame.get("visit")
    return out


_REQUIRED = ("obj_id", "mag", "snr", "extendedness")


def _pa2(level: str, bands: str) -> Metric:
    pf1 = PF1_SPEC[(level, bands)]
    p = 100.0 - pf1
    return Metric(
        name=f"validate_drp.PA2_{level}_{bands}", unit=u.mmag, granularity="source",
        required_columns=_REQUIRED, compute=compute_mag_repeat, selection=bright_stars(),
        aggregation=agg.percentile(p, absolute=True),
        description=f"magnitude deviation from the mean exceeded by {pf1:g}% of bright-star measurements "
                    f"({p:g}th percentile of |scaled deviation|)",
        min_n=MIN_ROWS, aliases=("PA2",) if (level, bands) == ("design", "gri") else (),
        optional_columns=("band", "flag", "visit"),
    )


def _pf1(level: str, bands: str) -> Metric:
    pa2 = PA2_SPEC[(level, bands)]
    return Metric(
        name=f"validate_drp.PF1_{level}_{bands}", unit=u.percent, granularity="source",
        required_columns=_REQUIRED, compute=compute_mag_repeat, selection=bright_stars(),
        aggregation=agg.fraction(threshold=pa2, absolute=True, percent=True),
        description=f"percentage of bright-star magnitudes deviating from their mean by more than {pa2:g} mmag",
        min_n=MIN_ROWS, aliases=("PF1",) if (level, bands) == ("design", "gri") else (),
        optional_columns=("band", "flag", "visit"),
    )


PA1 = Metric(
    name="validate_drp.PA1", unit=u.mmag, granularity="source", required_columns=_REQUIRED,
    compute=compute_object_rms, selection=bright_stars(), aggregation=agg.median(),
    description="median over bright stars of the rms (ddof=1) of each star's PSF magnitudes across visits",
    min_n=MIN_ROWS, row_kind="object", optional_columns=("band", "flag"),
)

METRICS = [PA1] + [_pa2(lv, b) for lv, b in PA2_SPEC] + [_pf1(lv, b) for lv, b in PF1_SPEC]
