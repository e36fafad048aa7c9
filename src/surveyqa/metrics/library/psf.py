"""PSF ellipticity residual correlations, LPM-17 TE1 (1 arcmin) and TE2 (5 arcmin).

As lsst/faro computes them (``TExTask`` and ``utils/tex.py``, ``rhoStat = 1``), without treecorr:

compute (every source row)
    Ellipticity residuals e_res = (e1 - psf_e1, e2 - psf_e2) in the distortion convention
    (e1 = (ixx - iyy)/(ixx + iyy), e2 = 2 ixy/(ixx + iyy)); per-row ``value`` = |e_res|.
selection ``psf_stars``
    faro's: extendedness < 0.5, S/N > 50 (strict), finite residuals; where the table has them, no
    flagged source and every source deblended (``detect_isDeblendedSource``, the ``deblended``
    column).
aggregation
    The shear-shear correlation xi+(r) = <e_res,i . e_res,j> (= Re(g_i g_j*), invariant under
    rotation into the pair frame) in 10 logarithmic bins of separation, 0.25-1 arcmin for TE1 and
    5-20 arcmin for TE2 (faro's ``minSep`` / ``maxSep``, treecorr's ``nbins = 10``); TEx = the
    mean over the bins of |xi+| (bins without pairs left out). Pair sums are weighted pair counts
    of a KD-tree on unit vectors (`scipy.spatial.cKDTree.count_neighbors` with weights), so no
    pair list is built: the cost is that of a dual-tree pair count, not N².
"""

from __future__ import annotations

from collections.abc import Mapping

import astropy.units as u
import numpy as np
from scipy.spatial import cKDTree

from surveyqa.metrics.actions import select as sel
from surveyqa.metrics.actions.aggregate import Aggregation
from surveyqa.metrics.actions.groups import group_count
from surveyqa.metrics.actions.select import Selection
from surveyqa.metrics.columns import Frame
from surveyqa.metrics.engine import Metric
from surveyqa.metrics.library.astrometry import unit_vectors

__all__ = ["METRICS", "psf_stars", "xi_plus", "BIN_EDGES_ARCMIN"]

#: faro's separation ranges (arcmin) of TE1 and TE2, each in 10 logarithmic bins.
TE1_RANGE, TE2_RANGE, N_BINS = (0.25, 1.0), (5.0, 20.0), 10
BIN_EDGES_ARCMIN = np.geomspace(*TE1_RANGE, N_BINS + 1)
#: faro: fewer than 50 selected sources give no value.
MIN_STARS = 50


def psf_stars(snr: float = 50.0) -> Selection:
    """faro's TEx sources: unresolved, S/N > ``snr``, unflagged, deblended, finite residuals."""
    snr_above = Selection(f"snr>{snr:g}", f"snr > {snr:g}", ("snr",), lambda rows: rows.get("snr") > snr)
    deblended = Selection("deblended", "deblended", ("deblended",), lambda rows: rows.get("deblended").astype(bool),
                          optional=True)
    s = sel.unresolved() & snr_above & sel.not_flagged() & deblended & sel.finite("value")
    return s.named("psf_stars", f"PSF stars: {s.description}")


def xi_plus(ra_deg: np.ndarray, dec_deg: np.ndarray, g1: np.ndarray, g2: np.ndarray,
            edges_arcmin: np.ndarray = BIN_EDGES_ARCMIN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xi+ of a spin-2 field in separation bins, with weighted KD-tree pair counts.

    Returns
    -------
    centres : numpy.ndarray
        Geometric bin centres, arcmin.
    xip : numpy.ndarray
        sum(g1_i g1_j + g2_i g2_j) / n_pairs per bin (NaN where a bin has no pair).
    npairs : numpy.ndarray
        Pairs per bin (each unordered pair counted once).
    """
    xyz = unit_vectors(ra_deg, dec_deg)
    tree = cKDTree(xyz)
    chords = 2.0 * np.sin(np.radians(np.asarray(edges_arcmin) / 60.0) / 2.0)
    npair = tree.count_neighbors(tree, chords, cumulative=False).astype(float)
    s1 = tree.count_neighbors(tree, chords, weights=(g1, g1), cumulative=False)
    s2 = tree.count_neighbors(tree, chords, weights=(g2, g2), cumulative=False)
    # entry 0 counts d <= first edge (self pairs included): drop it; ordered pairs -> halve counts
    npair, s = npair[1:], (s1 + s2)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        xip = np.where(npair > 0, s / npair, np.nan)
    centres = np.sqrt(edges_arcmin[1:] * edges_arcmin[:-1])
    return centres, xip, npair / 2.0


def _tex_aggregation(sep_range: tuple[float, float]) -> Aggregation:
    edges = np.geomspace(*sep_range, N_BINS + 1)

    def fn(v, c, g, rows):
        out = np.full(g, np.nan)
        n = group_count(c, g).astype(np.int64)
        for k in np.flatnonzero(n > 1):  # loop over groups (visits, tracts), not rows
            m = c == k
            _, xip, _ = xi_plus(rows["ra"][m], rows["dec"][m], rows["e1_res"][m], rows["e2_res"][m], edges)
            if np.isfinite(xip).any():
                out[k] = np.nanmean(np.abs(xip))
        return out, n
    lo, hi = sep_range
    return Aggregation(f"mean|xi+({lo:g}-{hi:g}arcmin)|",
                       f"mean over {N_BINS} log bins from {lo:g} to {hi:g} arcmin of |xi+|", fn)


def compute_e_residuals(frame: Frame, keys: Mapping[str, np.ndarray], selection: Selection) -> dict[str, np.ndarray]:
    """Per-source ellipticity residuals against the PSF model, and positions (deg)."""
    e1r = frame.get("e1") - frame.get("psf_e1")
    e2r = frame.get("e2") - frame.get("psf_e2")
    return {"ra": frame.get("ra"), "dec": frame.get("dec"), "e1_res": e1r, "e2_res": e2r,
            "value": np.hypot(e1r, e2r)}


_REQUIRED = ("ra", "dec", "e1", "e2", "psf_e1", "psf_e2", "snr", "extendedness")

TE1 = Metric(
    name="validate_drp.TE1", unit=u.dimensionless_unscaled, granularity="source", required_columns=_REQUIRED,
    compute=compute_e_residuals, selection=psf_stars(), aggregation=_tex_aggregation(TE1_RANGE),
    description="mean |xi+| of PSF ellipticity residuals of bright stars, 0.25-1 arcmin apart",
    min_n=MIN_STARS,
)
TE2 = Metric(
    name="validate_drp.TE2", unit=u.dimensionless_unscaled, granularity="source", required_columns=_REQUIRED,
    compute=compute_e_residuals, selection=psf_stars(), aggregation=_tex_aggregation(TE2_RANGE),
    description="mean |xi+| of PSF ellipticity residuals of bright stars, 5-20 arcmin apart",
    min_n=MIN_STARS,
)

METRICS = [TE1, TE2]
