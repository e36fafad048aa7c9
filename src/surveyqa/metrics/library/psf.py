"""PSF ellipticity residual correlations, LPM-17 TE1 (1 arcmin) and TE2 (5 arcmin).

Definition implemented (validate_drp ``tex.py`` / faro ``TExTask``, without treecorr):

compute (every source row)
    Ellipticity residuals e_res = (e1 - psf_e1, e2 - psf_e2) in the distortion convention
    (e1 = (ixx - iyy)/(ixx + iyy), e2 = 2 ixy/(ixx + iyy)); per-row ``value`` = |e_res|.
selection ``psf_stars``
    Unresolved (extendedness < 0.5), S/N >= 50 (faro's ``snrMin``), not flagged, finite residuals.
aggregation
    The shear-shear correlation xi+(r) = <e_res,i . e_res,j> (= Re(g_i g_j*), invariant under
    rotation into the pair frame) in 20 logarithmic bins of separation from 0.25 to 20 arcmin
    (validate_drp's binning); TE1 = |mean of xi+ over bins with centre <= 1 arcmin|,
    TE2 = |mean of xi+ over bins with centre >= 5 arcmin|. Pair sums are weighted pair counts
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

#: validate_drp binning: 20 logarithmic bins from 0.25 to 20 arcmin.
BIN_EDGES_ARCMIN = np.geomspace(0.25, 20.0, 21)
MIN_STARS = 50


def psf_stars(snr: float = 50.0) -> Selection:
    """Unresolved, S/N >= ``snr``, unflagged sources with finite ellipticity residuals."""
    s = sel.unresolved() & sel.snr_min(snr) & sel.not_flagged() & sel.finite("value")
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


def _tex_aggregation(radius_arcmin: float, above: bool) -> Aggregation:
    def fn(v, c, g, rows):
        out = np.full(g, np.nan)
        n = group_count(c, g).astype(np.int64)
        for k in np.flatnonzero(n > 1):  # loop over groups (visits, tracts), not rows
            m = c == k
            centres, xip, _ = xi_plus(rows["ra"][m], rows["dec"][m], rows["e1_res"][m], rows["e2_res"][m])
            use = (centres >= radius_arcmin) if above else (centres <= radius_arcmin)
            use &= np.isfinite(xip)
            if use.any():
                out[k] = abs(np.mean(xip[use]))
        return out, n
    op = ">=" if above else "<="
    return Aggregation(f"|mean xi+(r{op}{radius_arcmin:g}arcmin)|",
                       f"|mean of xi+ over separation bins with centre {op} {radius_arcmin:g} arcmin|", fn)


def compute_e_residuals(frame: Frame, keys: Mapping[str, np.ndarray], selection: Selection) -> dict[str, np.ndarray]:
    """Per-source ellipticity residuals against the PSF model, and positions (deg)."""
    e1r = frame.get("e1") - frame.get("psf_e1")
    e2r = frame.get("e2") - frame.get("psf_e2")
    return {"ra": frame.get("ra"), "dec": frame.get("dec"), "e1_res": e1r, "e2_res": e2r,
            "value": np.hypot(e1r, e2r)}


_REQUIRED = ("ra", "dec", "e1", "e2", "psf_e1", "psf_e2", "snr", "extendedness")

TE1 = Metric(
    name="validate_drp.TE1", unit=u.dimensionless_unscaled, granularity="source", required_columns=_REQUIRED,
    compute=compute_e_residuals, selection=psf_stars(), aggregation=_tex_aggregation(1.0, above=False),
    description="|xi+| of PSF ellipticity residuals of bright stars at separations <= 1 arcmin",
    min_n=MIN_STARS,
)
TE2 = Metric(
    name="validate_drp.TE2", unit=u.dimensionless_unscaled, granularity="source", required_columns=_REQUIRED,
    compute=compute_e_residuals, selection=psf_stars(), aggregation=_tex_aggregation(5.0, above=True),
    description="|xi+| of PSF ellipticity residuals of bright stars at separations >= 5 arcmin",
    min_n=MIN_STARS,
)

METRICS = [TE1, TE2]
