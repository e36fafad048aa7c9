"""Calibration checks that need no reference catalog: each visit and detector against the others.

Real repositories rarely hold a reference catalog readable without afw, but every DRP tract has
its isolated stars measured in many visits. A visit whose zero point is wrong makes all its
stars fainter (or brighter) than their other measurements; a detector with a bad astrometric
solution moves all its stars the same way. `star_residuals` solves, robustly, for each star's
mean magnitude and position and each (visit, detector)'s offset from them (alternating medians,
so one bad visit or detector does not pull the stars' means), and returns per-source residuals.
The metrics below aggregate those residuals:

==========================  ==========  ====================================================
metric                      level       per-source value aggregated (|median|)
==========================  ==========  ====================================================
health.visitPhotOffset      visit       magnitude - star's mean magnitude, mmag
health.detectorPhotOffset   detector    the same, minus its visit's median: the detector's own
health.visitAstromOffset    visit       position - star's mean position (vector), mas
health.detectorAstromOffset detector    the same, minus its visit's median vector
health.photScatter          both        robust sigma (1.4826 MAD) of the magnitude residuals
health.astromScatter        both        robust sigma of the position residuals (per axis)
==========================  ==========  ====================================================

Each defect is so singled out at its own data ID: a wrong visit zero point at the visit, not at
its detectors; a bad detector at the detector, not at its visit.
"""

from __future__ import annotations

from collections.abc import Mapping

import astropy.units as u
import numpy as np

from surveyqa.metrics.actions import select as sel
from surveyqa.metrics.actions.aggregate import Aggregation
from surveyqa.metrics.actions.groups import factorize_keys, group_percentile
from surveyqa.metrics.columns import Frame
from surveyqa.metrics.engine import Metric
from surveyqa.metrics.library.health import _abs_median  # one |median| aggregation for every offset

__all__ = ["METRICS", "star_residuals", "MIN_SOURCES_PER_STAR"]

#: A star enters the solution with at least this many sources (visits) in a band.
MIN_SOURCES_PER_STAR = 3
_ITERATIONS = 4
_MAS_PER_DEG = 3.6e6


def _median_by(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    med, count = group_percentile(codes, values, n, 50.0)
    return np.where(count > 0, med, 0.0)


def star_residuals(star: np.ndarray, visit: np.ndarray, detector: np.ndarray, band: np.ndarray,
                   mag: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> dict[str, np.ndarray]:
    """Per-source residuals from each star's robust mean, with (visit, detector) offsets solved.

    Parameters
    ----------
    star, visit, detector : numpy.ndarray
        Star identifier (e.g. ``obj_index``), visit and detector of each source.
    band : numpy.ndarray
        Band of each source; magnitudes are compared within a band.
    mag : numpy.ndarray
        Calibrated PSF magnitude, mag.
    ra, dec : numpy.ndarray
        Calibrated position, degrees.

    Returns
    -------
    dict of arrays, one per source: ``used`` (in the solution: finite, star with at least
    `MIN_SOURCES_PER_STAR` sources in the band), ``dmag`` (mmag), ``dra``, ``ddec`` (mas,
    RA times cos Dec), and the same relative to the source's visit: ``dmag_rel``, ``dra_rel``,
    ``ddec_rel``. Offsets are fixed up to one constant per band (photometry) or overall
    (astrometry): the median over (visit, detector) offsets is zero.
    """
    n = len(star)
    ok = np.isfinite(mag) & np.isfinite(ra) & np.isfinite(dec)
    sb, (_, _) = factorize_keys([star, band], n)
    counts = np.bincount(sb[ok], minlength=sb.max() + 1 if n else 0)
    ok &= counts[sb] >= MIN_SOURCES_PER_STAR if n else ok
    out = {k: np.full(n, np.nan) for k in ("dmag", "dra", "ddec", "dmag_rel", "dra_rel", "ddec_rel")}
    out["used"] = ok
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    s_codes, _ = factorize_keys([sb[idx]], idx.size)
    vd_codes, (_, _) = factorize_keys([visit[idx], detector[idx]], idx.size)
    v_codes, _ = factorize_keys([visit[idx]], idx.size)
    b_codes, _ = factorize_keys([band[idx]], idx.size)
    ns, nvd, nv = s_codes.max() + 1, vd_codes.max() + 1, v_codes.max() + 1
    m = mag[idx] * 1000.0  # mmag
    # Positions in a local tangent frame per star (mas), anchored at the star's first source.
    first = np.full(ns, -1)
    first[s_codes[::-1]] = np.arange(idx.size - 1, -1, -1)
    ra0, dec0 = ra[idx][first][s_codes], dec[idx][first][s_codes]
    dra_raw = ((ra[idx] - ra0 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec0)) * _MAS_PER_DEG
    ddec_raw = (dec[idx] - dec0) * _MAS_PER_DEG
    off = {"m": np.zeros(nvd), "x": np.zeros(nvd), "y": np.zeros(nvd)}
    raw = {"m": m, "x": dra_raw, "y": ddec_raw}
    for _ in range(_ITERATIONS):
        for key in off:
            star_mean = _median_by(s_codes, raw[key] - off[key][vd_codes], ns)
            off[key] = _median_by(vd_codes, raw[key] - star_mean[s_codes], nvd)
    res = {}
    for key in off:
        star_mean = _median_by(s_codes, raw[key] - off[key][vd_codes], ns)
        res[key] = raw[key] - star_mean[s_codes]
    # Gauge: the median (visit, detector) offset is zero, per band for magnitudes.
    vd_first = np.full(nvd, -1)
    vd_first[vd_codes[::-1]] = np.arange(idx.size - 1, -1, -1)
    vd_band = b_codes[vd_first]
    zero = _median_by(vd_band, off["m"], b_codes.max() + 1)
    res["m"] = res["m"] - zero[b_codes]
    for key in ("x", "y"):
        res[key] = res[key] - np.median(off[key])
    for key, name in (("m", "dmag"), ("x", "dra"), ("y", "ddec")):
        out[name][idx] = res[key]
        out[name + "_rel"][idx] = res[key] - _median_by(v_codes, res[key], nv)[v_codes]
    return out


def _column(name: str):
    def compute(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
        return {"value": frame.get(name)}
    return compute


def _vector(prefix: str):
    def compute(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
        dx, dy = frame.get(f"dra{prefix}"), frame.get(f"ddec{prefix}")
        return {"dx": dx, "dy": dy, "value": np.hypot(dx, dy)}
    return compute


def _vector_median() -> Aggregation:
    def fn(v, c, g, rows):
        mx, n = group_percentile(c, np.asarray(rows["dx"], float), g, 50.0)
        my, _ = group_percentile(c, np.asarray(rows["dy"], float), g, 50.0)
        return np.hypot(mx, my), n
    return Aggregation("|median vector|", "length of the vector of the medians of the RA and Dec offsets", fn)


def _robust_sigma() -> Aggregation:
    def fn(v, c, g, rows):
        q, n = group_percentile(c, v, g, [25.0, 50.0, 75.0])
        return (q[2] - q[0]) / 1.349, n
    return Aggregation("robust sigma", "interquartile range / 1.349 (sigma of a Gaussian)", fn)


def _astrom_scatter(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    return {"value": frame.get("dra")}


def calibration_stars() -> sel.Selection:
    """The sources in the solution: isolated stars measured in enough visits, finite values."""
    used = sel.Selection("in_solution", "in the offset solution", ("used",),
                         lambda rows: rows.get("used").astype(bool))
    s = used & sel.finite("value")
    return s.named("calibration_stars", "isolated stars in the offset solution (at least "
                   f"{MIN_SOURCES_PER_STAR} sources per band), finite values")


#: Fewest stars for a value: the median of fewer stars scatters by more than a defect worth finding
#: (measured on the Rubin-shaped survey: 5-11 stars gave 15-38 mmag on clean detectors).
_MIN_N = 20

METRICS = [
    Metric("health.visitPhotOffset", u.mmag, "source", ("dmag", "used"), _column("dmag"), calibration_stars(),
           _abs_median(), "|median (magnitude - the star's mean magnitude)| over a visit's isolated stars: "
           "the visit's zero-point error", min_n=_MIN_N),
    Metric("health.detectorPhotOffset", u.mmag, "source", ("dmag_rel", "used"), _column("dmag_rel"),
           calibration_stars(), _abs_median(), "|median magnitude offset of a detector's isolated stars "
           "relative to its visit's|: the detector's own calibration error", min_n=_MIN_N),
    Metric("health.visitAstromOffset", u.mas, "source", ("dra", "ddec", "used"), _vector(""), calibration_stars(),
           _vector_median(), "Length of the median offset (dRA cos Dec, dDec) of a visit's isolated stars from "
           "their mean positions", min_n=_MIN_N),
    Metric("health.detectorAstromOffset", u.mas, "source", ("dra_rel", "ddec_rel", "used"), _vector("_rel"),
           calibration_stars(), _vector_median(), "Length of the median position offset of a detector's "
           "isolated stars relative to its visit's: the detector's own astrometric error", min_n=_MIN_N),
    Metric("health.photScatter", u.mmag, "source", ("dmag", "used"), _column("dmag"), calibration_stars(),
           _robust_sigma(), "Robust scatter of the isolated stars' magnitudes about their means", min_n=_MIN_N),
    Metric("health.astromScatter", u.mas, "source", ("dra", "used"), _astrom_scatter, calibration_stars(),
           _robust_sigma(), "Robust scatter of the isolated stars' RA (times cos Dec) about their means",
           min_n=_MIN_N),
]


def residual_columns(table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`star_residuals` of a matched table with ``star``, ``visit``, ``detector``, ``band``, ``mag``,
    ``ra``, ``dec`` columns."""
    return star_residuals(*(np.asarray(table[k]) for k in ("star", "visit", "detector", "band", "mag", "ra", "dec")))
