"""Photometric repeatability, LPM-17 PA1, PA2 and PF1, on matched multi-visit catalogs.

As lsst/faro computes them (``PA1Task``, ``PF1Task`` and ``photRepeat`` / ``calcPhotRepeat`` of
faro's ``utils/phot_repeat.py``; faro's tests reproduce: `tests/test_srd_faro.py`):

Objects (``bright_stars``, faro's ``filterMatches`` as ``photRepeat`` calls it)
    per object (``obj_id``, per ``band``): every PSF magnitude finite (faro's ``nMatchFilter``),
    median of the finite S/N >= 200 (``brightSnrMin``), point-like in every visit (max
    extendedness < 0.9: ``ptsrcFilter``), more than 2 measurements (``count > 2``). Flags and
    ``detect_isPrimary`` are not used (faro passes ``doFlags=False, isPrimary=False``).
PA1 (per-object rows)
    each object's population standard deviation (``np.nanstd``, ddof=0) of its magnitudes, mmag;
    the median over the selected objects.
PF1_<level>_<bands> (per-source rows)
    each magnitude's residual from its object's plain mean, mmag; the percentage of the selected
    objects' residuals with |residual| > the PA2 spec of the same level (15 mmag for design gri,
    faro's ``threshPA2``).
PA2_<level>_<bands> (per-source rows)
    faro no longer has a PA2 task (its spec is the threshold PF1 uses); ours is PF1's dual on the
    same residuals: the (100 - PF1 spec)th percentile of |residual|, the residual exceeded by only
    PF1 % of measurements. (faro's removed PA2Task used random visit pairs, 50 seeded shuffles.)
Gate: a value needs more than 10 selected objects (faro's tests run with ``nMinPhotRepeat=10``;
its production default of 50 leaves the ci_hsc catalogs without a value).
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
    per_object_count,
    per_object_mean,
    per_object_median,
)
from surveyqa.metrics.actions.select import Selection
from surveyqa.metrics.columns import Frame
from surveyqa.metrics.engine import Metric

__all__ = ["METRICS", "bright_stars", "compute_mag_repeat", "compute_object_rms", "SNR_MIN", "MIN_VISITS",
           "MAX_EXTENDEDNESS", "object_context"]

#: faro's ``brightSnrMin`` (PA1Task, PF1Task): median S/N of a bright star.
SNR_MIN = 200.0
#: faro's ``ptsrcFilter``: a point source has extendedness below this in every visit.
MAX_EXTENDEDNESS = 0.9
#: fewest measurements an object needs (faro: ``count > 2``).
MIN_VISITS = 3
#: fewest selected objects for a value (faro: more than ``nMinPhotRepeat`` = 10 in its tests).
MIN_OBJECTS = 11
_MMAG_PER_MAG = u.mag.to(u.mmag)

#: LPM-17 spec pairs (PA2 threshold in mmag, PF1 threshold in %) by level and band set.
PA2_SPEC = {("minimum", "gri"): 15.0, ("design", "gri"): 15.0, ("stretch", "gri"): 10.0,
            ("minimum", "uzy"): 22.5, ("design", "uzy"): 22.5, ("stretch", "uzy"): 15.0}
PF1_SPEC = {("minimum", "gri"): 20.0, ("design", "gri"): 10.0, ("stretch", "gri"): 5.0,
            ("minimum", "uzy"): 20.0, ("design", "uzy"): 10.0, ("stretch", "uzy"): 5.0}


def bright_stars(snr: float = SNR_MIN, min_visits: int = MIN_VISITS) -> Selection:
    """faro's bright-star objects: all magnitudes finite, median S/N >= ``snr``, point-like in every
    visit, at least ``min_visits`` measurements."""
    s = (sel.equal(0.0, column="obj_nonfinite_mag", what="every magnitude finite")
         & sel.snr_min(snr, column="obj_snr")
         & sel.equal(0.0, column="obj_extended", what=f"extendedness < {MAX_EXTENDEDNESS:g} in every visit")
         & sel.min_count(min_visits, column="n_visits"))
    return s.named("bright_stars", f"bright stars (faro's filterMatches for PA1/PF1): {s.description}")


def object_context(frame: Frame, flags: bool = False) -> dict[str, tuple[object, str]]:
    """The per-object statistics faro's ``filterMatches`` reads, as `object_stats` ``stats``:
    ``obj_snr`` (median S/N), ``obj_extended`` (fraction of sources not point-like),
    ``obj_nonfinite_mag`` (fraction of non-finite magnitudes); with ``flags``, also
    ``obj_flagged`` and ``obj_not_primary`` where the table has those columns (AMx, not PA1)."""
    mag = np.asarray(frame.get("mag"), dtype=float)
    with np.errstate(invalid="ignore"):
        extended = ~(np.asarray(frame.get("extendedness"), dtype=float) < MAX_EXTENDEDNESS)  # NaN: not a point
    stats = {"obj_snr": ("snr", "median"), "obj_extended": (extended.astype(float), "mean"),
             "obj_nonfinite_mag": ((~np.isfinite(mag)).astype(float), "mean")}
    if flags and frame.can_resolve("flag"):
        stats["obj_flagged"] = (frame.get("flag").astype(float), "mean")
    if flags and frame.can_resolve("primary"):
        stats["obj_not_primary"] = ((~frame.get("primary").astype(bool)).astype(float), "mean")
    return stats


def compute_object_rms(frame: Frame, keys: Mapping[str, np.ndarray], selection: Selection) -> dict[str, np.ndarray]:
    """One row per object: population std (ddof=0) of its magnitudes (mmag) and the context the
    selection reads (``n_visits`` counts the finite magnitudes)."""
    rows, _ = object_stats(frame, keys, moments="mag", stats=object_context(frame))
    rows["mag_mean"] = rows.pop("mean")
    n = rows["n_visits"].astype(float)
    value = rows.pop("std")
    with np.errstate(invalid="ignore", divide="ignore"):
        value *= np.sqrt((n - 1.0) / n)  # ddof=1 -> ddof=0, faro's np.nanstd
    value[n == 1] = 0.0  # np.nanstd of one value
    value *= _MMAG_PER_MAG  # in place: a Quantity would copy 10^6 values twice
    rows["value"] = value
    return rows


def compute_mag_repeat(frame: Frame, keys: Mapping[str, np.ndarray], selection: Selection) -> dict[str, np.ndarray]:
    """Per source: its magnitude's residual from its object's mean (mmag) and the object's context."""
    codes, n_obj = object_codes(frame)
    mag = np.asarray(frame.get("mag"), dtype=float)
    mean = per_object_mean(codes, n_obj, mag)
    out = {"obj_id": frame.get("obj_id"), "mag": mag, "mag_mean": mean,
           "n_visits": per_object_count(codes, n_obj, mag),
           "value": (mag - mean) * _MMAG_PER_MAG}
    for name, (column, stat) in object_context(frame).items():
        values = np.asarray(frame.get(column) if isinstance(column, str) else column, dtype=float)
        out[name] = (per_object_median if stat == "median" else per_object_mean)(codes, n_obj, values)
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
        description=f"magnitude residual from the object's mean exceeded by {pf1:g}% of bright-star measurements "
                    f"({p:g}th percentile of |residual|)",
        min_n=MIN_OBJECTS, aliases=("PA2",) if (level, bands) == ("design", "gri") else (),
        optional_columns=("band", "visit"),
    )


def _pf1(level: str, bands: str) -> Metric:
    pa2 = PA2_SPEC[(level, bands)]
    return Metric(
        name=f"validate_drp.PF1_{level}_{bands}", unit=u.percent, granularity="source",
        required_columns=_REQUIRED, compute=compute_mag_repeat, selection=bright_stars(),
        aggregation=agg.fraction(threshold=pa2, absolute=True, percent=True),
        description=f"percentage of bright-star magnitudes whose residual from their object's mean exceeds {pa2:g} mmag",
        min_n=MIN_OBJECTS, aliases=("PF1",) if (level, bands) == ("design", "gri") else (),
        optional_columns=("band", "visit"),
    )


PA1 = Metric(
    name="validate_drp.PA1", unit=u.mmag, granularity="source", required_columns=_REQUIRED,
    compute=compute_object_rms, selection=bright_stars(), aggregation=agg.median(),
    description="median over bright stars of the standard deviation (ddof=0) of each star's PSF magnitudes",
    min_n=MIN_OBJECTS, row_kind="object", optional_columns=("band",),
)

METRICS = [PA1] + [_pa2(lv, b) for lv, b in PA2_SPEC] + [_pf1(lv, b) for lv, b in PF1_SPEC]
