"""Tract-level products: coadd objects, isolated-star associations and the reference catalog.

The coadd is not simulated pixel by pixel: each true object's coadd flux noise follows from the
number of visits covering it and the median depth of those visits, which is what a QA metric
on the object table sees.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from surveyqa.sim.config import SimConfig
from surveyqa.sim.geometry import FocalPlane, TractBox
from surveyqa.sim.survey import AB_NJY, Visit, flux_njy

__all__ = ["object_table", "isolated_stars", "reference_catalog", "truth_table"]

COADD_PIXEL = 0.2  # arcsec


def _mag(flux):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -2.5 * np.log10(flux) + AB_NJY


def tract_rows(box: TractBox, truth: dict[str, np.ndarray]) -> np.ndarray:
    """Indices (ascending) of the true objects inside a tract.

    Truth is sorted by RA, so the RA range is a slice: with 100 tracts, a full scan of the truth
    per tract would make the tract step quadratic in the number of tracts.
    """
    lo, hi = np.searchsorted(truth["ra"], [box.ra_min, box.ra_max])
    dec = truth["dec"][lo:hi]
    return lo + np.flatnonzero((dec >= box.dec_min) & (dec < box.dec_max))


def object_table(box: TractBox, truth: dict[str, np.ndarray], visits: list[Visit], config: SimConfig,
                 empty_box: tuple[float, float, float, float] | None, nan_band: str | None) -> tuple[Table, np.ndarray]:
    """The `objectTable_tract` of one tract, sorted by patch.

    Parameters
    ----------
    empty_box : (ra_min, ra_max, dec_min, dec_max) or None
        Region (deg) where the coadd failed: no objects there.
    nan_band : str or None
        Band whose ``psfFlux`` column is all NaN.

    Returns
    -------
    table, truth_index : astropy Table and the index into ``truth`` of each row.
    """
    rng = np.random.default_rng([config.seed, 5, box.tract])
    fp = FocalPlane.from_config(config)
    inside = tract_rows(box, truth)
    ra, dec = truth["ra"][inside], truth["dec"][inside]
    n = inside.size
    columns: dict[str, np.ndarray] = {}
    snr_max = np.zeros(n)
    any_input = np.zeros(n, dtype=bool)
    for band in config.bands:
        band_visits = [v for v in visits if v.band == band]
        count = np.zeros(n, dtype=np.int32)
        for v in band_visits:
            det = fp.locate(ra, dec, v.ra, v.dec, v.rotation)[0]
            count += det >= 0
        seeing = float(np.median([v.seeing for v in band_visits])) if band_visits else 0.8
        sigma_sky = float(np.median([v.sigma_sky for v in band_visits])) if band_visits else np.inf
        sigma_psf = seeing / 2.355 / COADD_PIXEL
        sg = truth["size"][inside] / COADD_PIXEL
        flux = flux_njy(truth[f"{band}_mag"][inside])
        psf_true = flux / (1 + (sg / sigma_psf) ** 2)
        gain = float(np.median([10 ** (0.4 * (v.zero_point - AB_NJY)) for v in band_visits])) if band_visits else 1.0
        err = np.sqrt(sigma_sky**2 + psf_true / gain) / np.sqrt(np.maximum(count, 1))
        psf = psf_true + rng.normal(0, 1, n) * err
        cm_err = err * 1.3
        cmodel = flux + rng.normal(0, 1, n) * cm_err
        snr_max = np.maximum(snr_max, np.where(count > 0, psf / err, 0))
        any_input |= count > 0
        e1 = 0.01 * rng.normal(0, 1, n)
        ixx_psf, iyy_psf = sigma_psf**2 * (1 + e1), sigma_psf**2 * (1 - e1)
        columns[f"{band}_psfFlux"] = psf if band != nan_band else np.full(n, np.nan)
        columns[f"{band}_psfFluxErr"] = err
        columns[f"{band}_psfMag"] = _mag(psf).astype(np.float32)
        columns[f"{band}_psfMagErr"] = (1.0857 * err / np.abs(psf)).astype(np.float32)
        columns[f"{band}_cModelFlux"] = cmodel
        columns[f"{band}_cModelFluxErr"] = cm_err
        columns[f"{band}_cModelMag"] = _mag(cmodel).astype(np.float32)
        columns[f"{band}_extendedness"] = (sg / sigma_psf > 0.3 + rng.normal(0, 0.1, n)).astype(np.float32)
        columns[f"{band}_psfFlux_flag"] = count == 0
        columns[f"{band}_ixx"] = (ixx_psf + sg**2 * (1 + truth["e1"][inside])).astype(np.float32)
        columns[f"{band}_iyy"] = (iyy_psf + sg**2 * (1 - truth["e1"][inside])).astype(np.float32)
        columns[f"{band}_ixy"] = (sg**2 * truth["e2"][inside]).astype(np.float32)
        columns[f"{band}_ixxPSF"] = ixx_psf.astype(np.float32)
        columns[f"{band}_iyyPSF"] = iyy_psf.astype(np.float32)
        columns[f"{band}_ixyPSF"] = np.zeros(n, dtype=np.float32)
        columns[f"{band}_inputCount"] = count
        columns[f"{band}_pixelFlags_saturatedCenter"] = truth[f"{band}_mag"][inside] < 16.5
    keep = (snr_max >= 5.0) & any_input
    if empty_box is not None:
        keep &= ~((ra >= empty_box[0]) & (ra < empty_box[1]) & (dec >= empty_box[2]) & (dec < empty_box[3]))
    patch = box.patch_of(ra, dec)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(patch[idx], kind="stable")]
    ref_band = "i" if "i" in config.bands else config.bands[-1]
    t = Table()
    t["objectId"] = np.int64(box.tract) * 10_000_000_000 + patch[idx] * 10_000_000 + np.arange(idx.size)
    t["tract"] = np.full(idx.size, box.tract, dtype=np.int64)
    t["patch"] = patch[idx]
    pos_err = 0.02 / 3600.0
    t["coord_ra"] = ra[idx] + rng.normal(0, pos_err, idx.size)
    t["coord_dec"] = dec[idx] + rng.normal(0, pos_err, idx.size)
    t["coord_raErr"] = np.full(idx.size, pos_err, dtype=np.float32)
    t["coord_decErr"] = np.full(idx.size, pos_err, dtype=np.float32)
    t["refBand"] = np.full(idx.size, ref_band)
    t["refExtendedness"] = columns[f"{ref_band}_extendedness"][idx]
    t["x"] = (ra[idx] - box.ra_min) * 3600 / COADD_PIXEL
    t["y"] = (dec[idx] - box.dec_min) * 3600 / COADD_PIXEL
    t["detect_isIsolated"] = np.ones(idx.size, dtype=bool)
    t["deblend_nChild"] = np.zeros(idx.size, dtype=np.int32)
    for name, values in columns.items():
        t[name] = values[idx]
    for name in t.colnames:
        if name in ("coord_ra", "coord_dec", "coord_raErr", "coord_decErr"):
            t[name].unit = "deg"
        elif name in ("x", "y"):
            t[name].unit = "pix"
        elif name.endswith(("Flux", "FluxErr")):
            t[name].unit = "nJy"
        elif name.endswith(("Mag", "MagErr")):
            t[name].unit = "mag"
        elif name.endswith(("_ixx", "_iyy", "_ixy", "PSF")):
            t[name].unit = "pix2"
    return t, inside[idx]


def isolated_stars(box: TractBox, sources: Table) -> tuple[Table, Table]:
    """Isolated-star catalog and its associated sources for one tract.

    Parameters
    ----------
    sources : astropy Table
        Single-visit sources of true stars in the tract, with a ``truthId`` column.

    Returns
    -------
    presources : Table
        One row per isolated star (``isolated_star_id``, ``ra``, ``dec``, ``source_cat_index``,
        ``nsource``, ``nsource_{band}``).
    associations : Table
        One row per associated source, sorted by ``obj_index`` (the star's row in ``presources``).
    """
    truth_id = np.asarray(sources["truthId"])
    order = np.argsort(truth_id, kind="stable")
    ids, start, counts = np.unique(truth_id[order], return_index=True, return_counts=True)
    multi = counts >= 2
    star_rows = np.flatnonzero(multi)
    obj_index = np.repeat(np.arange(star_rows.size), counts[multi])
    take = np.concatenate([order[start[i]:start[i] + counts[i]] for i in star_rows]) if star_rows.size else np.zeros(0, int)
    assoc = sources[take]
    assoc.remove_column("truthId")
    assoc["obj_index"] = obj_index
    cat = Table()
    cat["isolated_star_id"] = np.int64(box.tract) * 10_000_000 + np.arange(star_rows.size)
    ra = np.asarray(assoc["ra"], dtype=float)
    dec = np.asarray(assoc["dec"], dtype=float)
    n = counts[multi]
    offsets = np.r_[0, np.cumsum(n)[:-1]] if n.size else np.zeros(0, int)
    cat["ra"] = np.add.reduceat(ra, offsets) / n if n.size else np.zeros(0)
    cat["dec"] = np.add.reduceat(dec, offsets) / n if n.size else np.zeros(0)
    cat["ra"].unit = cat["dec"].unit = "deg"
    cat["source_cat_index"] = offsets.astype(np.int64)
    cat["nsource"] = n.astype(np.int32)
    bands = np.asarray(assoc["band"])
    for band in sorted(set(bands.tolist())):
        cat[f"nsource_{band}"] = np.bincount(obj_index, weights=bands == band, minlength=star_rows.size).astype(np.int32)
    return cat, assoc


def reference_catalog(truth: dict[str, np.ndarray], config: SimConfig, holes: list) -> Table:
    """A Gaia-like reference catalog: true stars brighter than ``config.refcat_limit`` in r.

    Parameters
    ----------
    holes : list of lsst.sphgeom.ConvexPolygon
        Regions the catalog does not cover (the outside-the-refcat-footprint defect).
    """
    rng = np.random.default_rng([config.seed, 6])
    sel = truth["isStar"] & (truth["r_mag"] < config.refcat_limit)
    for hole in holes:
        sel &= ~hole.contains(np.radians(truth["ra"]), np.radians(truth["dec"]))
    idx = np.flatnonzero(sel)
    t = Table()
    t["id"] = truth["truthId"][idx]
    t["coord_ra"] = truth["ra"][idx] + rng.normal(0, 0.001 / 3600, idx.size)
    t["coord_dec"] = truth["dec"][idx] + rng.normal(0, 0.001 / 3600, idx.size)
    t["coord_ra"].unit = t["coord_dec"].unit = "deg"
    for band in config.bands:
        flux = flux_njy(truth[f"{band}_mag"][idx])
        t[f"{band}_flux"] = flux
        t[f"{band}_fluxErr"] = flux * 0.002
        t[f"{band}_flux"].unit = t[f"{band}_fluxErr"].unit = "nJy"
    return t


def truth_table(box: TractBox, truth: dict[str, np.ndarray], config: SimConfig, object_index: np.ndarray,
                object_ids: np.ndarray) -> Table:
    """True objects inside a tract, with the ``objectId`` they were detected as (-1 if not)."""
    inside = tract_rows(box, truth)
    t = Table()
    for key in ("truthId", "ra", "dec", "isStar", "size", "e1", "e2"):
        t[key] = truth[key][inside]
    for band in config.bands:
        t[f"{band}_mag"] = truth[f"{band}_mag"][inside]
        t[f"{band}_mag"].unit = "mag"
    t["ra"].unit = t["dec"].unit = "deg"
    t["size"].unit = "arcsec"
    # object_index is a subset of inside (both index truth); look up within the tract only.
    object_id = np.full(inside.size, -1, dtype=np.int64)
    object_id[np.searchsorted(inside, object_index)] = object_ids
    t["objectId"] = object_id
    t["patch"] = box.patch_of(t["ra"], t["dec"])
    return t
