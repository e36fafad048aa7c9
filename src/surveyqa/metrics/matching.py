"""Positional matching of single-visit sources into objects, when no association table exists.

Rubin's DRP associates isolated stars per tract (``isolated_star_presource_associations``); a
repository or catalog without it needs object ids for repeatability metrics. Sources closer than
a matching radius are linked (a KD-tree on unit vectors finds the pairs) and each connected
group of links is one object (friends-of-friends), per band.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from surveyqa.metrics.actions.groups import factorize_keys

__all__ = ["match_sources"]


def match_sources(ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float = 0.5,
                  band: np.ndarray | None = None) -> np.ndarray:
    """Object id (0..N_obj-1) for each source: friends-of-friends within ``radius_arcsec``.

    Parameters
    ----------
    ra_deg, dec_deg : numpy.ndarray
        Source positions, degrees.
    radius_arcsec : float
        Linking length, arcsec (a few times the astrometric scatter, well below the typical
        separation of neighbours).
    band : numpy.ndarray, optional
        Sources of different bands are never linked.

    Returns
    -------
    numpy.ndarray of int64
        Object id per source; sources with non-finite positions get -1.
    """
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    good = np.isfinite(ra) & np.isfinite(dec)
    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    chord = 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)
    codes = factorize_keys([band], len(ra))[0] if band is not None else np.zeros(len(ra), np.int64)
    out = np.full(len(ra), -1, dtype=np.int64)
    next_id = 0
    for g in np.unique(codes[good]):  # loop over bands, not rows
        idx = np.flatnonzero(good & (codes == g))
        pairs = cKDTree(xyz[idx]).query_pairs(chord, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(idx), len(idx)))
        n, labels = connected_components(graph, directed=False)
        out[idx] = labels + next_id
        next_id += n
    return out
