"""The tables of a Rubin-shaped survey (`surveyqa.sim.rubin`), in DP1 columns with units.

Each function makes one data product from the truth and the observing conditions; the noise
model follows `surveyqa.sim.observe` (sky-limited errors from the visit's 5-sigma depth, a
calibration floor, centroid errors from the seeing and S/N with an astrometric floor).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

__all__ = ["observe_ccd", "ccd_visit_table", "visit_table", "object_table", "isolated_stars"]

AB = 31.4
PIXEL_SCALE = 0.168
CCD_PIXELS = (2048, 4176)
SKY_SOURCES_PER_CCD = 40
SKY_OBJECTS_PER_PATCH = 100
_FLAGS = ("pixelFlags_edge", "pixelFlags_saturatedCenter", "pixelFlags_interpolatedCenter", "pixelFlags_bad",
          "pixelFlags_cr", "pixelFlags_nodata", "centroid_flag", "psfFlux_flag", "shape_flag", "extendedness_flag",
          "sky_source")
SOURCE_UNITS = {"ra": "deg", "dec": "deg", "coord_ra": "deg", "coord_dec": "deg", "raErr": "deg", "decErr": "deg",
                "x": "pix", "y": "pix", "xErr": "pix", "yErr": "pix", "psfFlux": "nJy", "psfFluxErr": "nJy",
                "calibFlux": "nJy", "calibFluxErr": "nJy", "ixx": "pix2", "iyy": "pix2", "ixy": "pix2",
                "ixxPSF": "pix2", "iyyPSF": "pix2", "ixyPSF": "pix2"}


def _njy(mag):
    return 10 ** (-0.4 * (np.asarray(mag) - AB))


def observe_ccd(ccd, visit, band: str, cond: dict, truth: dict, zp_error: float, astro: np.ndarray,
                floor: float, rng) -> tuple[Table, np.ndarray, Table]:
    """Sources of one (visit, detector): detected truth objects on the physical CCD, sky sources.

    Returns the sources (DP1 Source columns), the truth indices the CCD covers (for the coadd's
    input counts) and the star sources the isolated-star association would keep.
    """
    reach = 0.25
    lo, hi = np.searchsorted(truth["ra"], [ccd.ra - reach / np.cos(np.radians(ccd.dec)),
                                           ccd.ra + reach / np.cos(np.radians(ccd.dec))])
    near = lo + np.flatnonzero(np.abs(truth["dec"][lo:hi] - ccd.dec) < reach)
    inside, x, y = ccd.locate(truth["ra"][near], truth["dec"][near])
    covered = near[inside]
    x, y = x[inside], y[inside]
    mag = truth[f"{band}_mag"][covered]
    star = truth["isStar"][covered]
    size = truth["size"][covered]
    seeing = cond["seeing"]
    sigma_sky = _njy(cond["m5"]) / 5.0
    flux = _njy(mag) / (1.0 + (size / seeing) ** 2 * (~star))
    err = np.sqrt(sigma_sky**2 + flux * sigma_sky / 50.0 + (0.002 * flux) ** 2)
    meas = flux + rng.normal(0, 1, flux.size) * err
    keep = meas / err >= 5.0
    idx = np.flatnonzero(keep)
    covered_det, x, y, flux, err, meas, star, size = (covered[idx], x[idx], y[idx], flux[idx], err[idx], meas[idx],
                                                      star[idx], size[idx])
    m = idx.size
    snr = meas / err
    sig = np.hypot(seeing / (2.35 * np.maximum(snr, 1)), floor)  # arcsec
    dec_t, ra_t = truth["dec"][covered_det], truth["ra"][covered_det]
    cosd = np.cos(np.radians(dec_t))
    dra = rng.normal(0, 1, m) * sig + astro[0]
    ddec = rng.normal(0, 1, m) * sig + astro[1]
    ra = ra_t + dra / 3600.0 / cosd
    dec = dec_t + ddec / 3600.0
    scale = 10 ** (-0.4 * zp_error)
    psf_flux, psf_err = meas * scale, err * scale
    sigma_pix = seeing / 2.355 / PIXEL_SCALE
    ixx_psf = np.full(m, sigma_pix**2)
    ixx = ixx_psf + (size / PIXEL_SCALE) ** 2 * (~star)
    ext = np.where(star, 0.0, 1.0)
    ext = np.where((snr < 10) & (rng.random(m) < 0.1), 1.0 - ext, ext)  # faint misclassifications
    saturated = mag[idx] < 17.0 + 2.5 * np.log10(seeing / 0.7)
    edge = (x < 10) | (y < 10) | (x > CCD_PIXELS[0] - 10) | (y > CCD_PIXELS[1] - 10)
    psf_fail = (rng.random(m) < 0.002) | (saturated & (rng.random(m) < 0.3)) | (edge & (rng.random(m) < 0.5))
    shape_fail = rng.random(m) < 0.005
    centroid_fail = rng.random(m) < 0.0005

    # Sky sources: empty-sky apertures, flux about zero.
    k = SKY_SOURCES_PER_CCD
    sx, sy = rng.uniform(0, CCD_PIXELS[0], k), rng.uniform(0, CCD_PIXELS[1], k)
    ex = (sx - CCD_PIXELS[0] / 2) * PIXEL_SCALE / 3600
    ey = (sy - CCD_PIXELS[1] / 2) * PIXEL_SCALE / 3600
    east, north = ex * ccd.short[0] + ey * ccd.long[0], ex * ccd.short[1] + ey * ccd.long[1]
    s_ra, s_dec = ccd.ra + east / np.cos(np.radians(ccd.dec)), ccd.dec + north

    n = m + k
    t = Table()
    base = np.int64(visit.id) * 200 * 2**20 + np.int64(ccd.detector) * 2**20
    t["sourceId"] = base + np.arange(n, dtype=np.int64)
    t["ccdVisitId"] = np.full(n, np.int64(visit.id) * 200 + ccd.detector)
    t["visit"] = np.full(n, visit.id, np.int64)
    t["detector"] = np.full(n, ccd.detector, np.int16)
    t["band"] = np.full(n, band)
    t["physical_filter"] = np.full(n, visit.physical_filter)
    t["parentSourceId"] = np.zeros(n, np.int64)
    t["deblend_nChild"] = np.zeros(n, np.int32)
    t["ra"] = np.r_[np.where(centroid_fail, np.nan, ra), s_ra]
    t["dec"] = np.r_[np.where(centroid_fail, np.nan, dec), s_dec]
    t["coord_ra"], t["coord_dec"] = t["ra"], t["dec"]
    t["raErr"] = np.r_[sig / 3600 / cosd, np.full(k, np.nan)].astype(np.float32)
    t["decErr"] = np.r_[sig / 3600, np.full(k, np.nan)].astype(np.float32)
    t["x"], t["y"] = np.r_[x, sx], np.r_[y, sy]
    t["xErr"] = np.r_[sig / PIXEL_SCALE, np.full(k, np.nan)].astype(np.float32)
    t["yErr"] = t["xErr"]
    t["psfFlux"] = np.r_[np.where(psf_fail, np.nan, psf_flux), rng.normal(0, sigma_sky, k) * scale]
    t["psfFluxErr"] = np.r_[np.where(psf_fail, np.nan, psf_err), np.full(k, sigma_sky * scale)]
    t["calibFlux"] = np.r_[psf_flux * 1.02 + rng.normal(0, 1, m) * psf_err, rng.normal(0, sigma_sky, k) * scale]
    t["calibFluxErr"] = np.r_[psf_err * 1.3, np.full(k, sigma_sky * scale * 1.3)]
    t["ixx"] = np.r_[np.where(shape_fail, np.nan, ixx), np.full(k, np.nan)]
    t["iyy"] = t["ixx"]
    t["ixy"] = np.r_[np.where(shape_fail, np.nan, 0.0), np.full(k, np.nan)]
    t["ixxPSF"] = np.r_[ixx_psf, np.full(k, sigma_pix**2)]
    t["iyyPSF"] = t["ixxPSF"]
    t["ixyPSF"] = np.zeros(n)
    t["extendedness"] = np.r_[ext, np.full(k, np.nan)]
    t["sizeExtendedness"] = t["extendedness"]
    flags = {"pixelFlags_edge": np.r_[edge, np.zeros(k, bool)],
             "pixelFlags_saturatedCenter": np.r_[saturated, np.zeros(k, bool)],
             "pixelFlags_interpolatedCenter": np.r_[rng.random(m) < 0.003, np.zeros(k, bool)],
             "pixelFlags_bad": np.r_[rng.random(m) < 0.002, np.zeros(k, bool)],
             "pixelFlags_cr": np.r_[rng.random(m) < 0.004, np.zeros(k, bool)],
             "pixelFlags_nodata": np.zeros(n, bool),
             "centroid_flag": np.r_[centroid_fail, np.zeros(k, bool)],
             "psfFlux_flag": np.r_[psf_fail | saturated, np.zeros(k, bool)],
             "shape_flag": np.r_[shape_fail, np.ones(k, bool)],
             "extendedness_flag": np.r_[np.zeros(m, bool), np.ones(k, bool)],
             "sky_source": np.r_[np.zeros(m, bool), np.ones(k, bool)]}
    for name in _FLAGS:
        t[name] = flags[name]
    t["detect_isPrimary"] = ~flags["sky_source"]
    for name, unit in SOURCE_UNITS.items():
        t[name].unit = unit
    # What the isolated-star association keeps: unresolved, S/N > 8, unflagged.
    good = star & (snr > 8) & ~saturated & ~edge & ~psf_fail & ~centroid_fail
    keep_rows = np.flatnonzero(good)
    gain = 10 ** (0.4 * (27.0 - AB))  # counts per nJy of a nominal zero point
    stars = Table()
    stars["sourceId"] = t["sourceId"][keep_rows]
    stars["visit"] = t["visit"][keep_rows]
    stars["detector"] = t["detector"][keep_rows].astype(np.int32)
    stars["ra"], stars["dec"] = ra_t[keep_rows] + (dra[keep_rows] - astro[0]) / 3600 / cosd[keep_rows], \
        dec_t[keep_rows] + (ddec[keep_rows] - astro[1]) / 3600
    stars["physical_filter"] = t["physical_filter"][keep_rows]
    stars["band"] = t["band"][keep_rows]
    stars["normCompTophatFlux_instFlux"] = meas[keep_rows] * gain
    stars["normCompTophatFlux_instFluxErr"] = err[keep_rows] * gain
    for c in ("x", "y", "xErr", "yErr", "ixx", "iyy", "ixy"):
        stars[c] = np.asarray(t[c])[keep_rows]
    stars["source_row"] = keep_rows.astype(np.int32)
    stars["truthId"] = truth["truthId"][covered_det[keep_rows]]
    return t, covered, stars


def ccd_visit_table(rows) -> Table:
    """``ccdVisitTable`` (DP1 CcdVisit columns): one row per processed (visit, detector)."""
    out: dict[str, list] = {}
    for ccd, visit, band, cond, zp_error in rows:
        ras, decs = ccd.corners()
        row = {"ccdVisitId": np.int64(visit.id) * 200 + ccd.detector, "visitId": visit.id, "detector": ccd.detector,
               "band": band, "physical_filter": visit.physical_filter, "ra": ccd.ra, "dec": ccd.dec,
               "zeroPoint": 27.0 + 1.25 * np.log10(visit.exposure_time) + zp_error,
               "psfSigma": cond["seeing"] / 2.355 / PIXEL_SCALE, "seeing": cond["seeing"],
               "skyBg": 1200.0, "skyNoise": 35.0, "pixelScale": PIXEL_SCALE, "xSize": CCD_PIXELS[0],
               "ySize": CCD_PIXELS[1], "expTime": visit.exposure_time, "magLim": cond["m5"],
               "llcra": ras[0], "llcdec": decs[0], "lrcra": ras[1], "lrcdec": decs[1],
               "urcra": ras[2], "urcdec": decs[2], "ulcra": ras[3], "ulcdec": decs[3]}
        for k, v in row.items():
            out.setdefault(k, []).append(v)
    t = Table(out)
    for name, unit in {"ra": "deg", "dec": "deg", "zeroPoint": "mag", "psfSigma": "pix", "seeing": "arcsec",
                       "skyBg": "adu", "skyNoise": "adu", "pixelScale": "arcsec / pix", "xSize": "pix", "ySize": "pix",
                       "expTime": "s", "magLim": "mag"}.items():
        t[name].unit = unit
    return t


def visit_table(visits, conditions: dict) -> Table:
    """``visitTable`` (DP1 Visit columns)."""
    t = Table()
    t["visitId"] = np.array([v.id for v in visits], np.int64)
    t["visit"] = t["visitId"]
    t["physical_filter"] = [v.physical_filter for v in visits]
    t["band"] = [conditions[v.id]["band"] for v in visits]
    t["expTime"] = [v.exposure_time for v in visits]
    t["seeing"] = [conditions[v.id]["seeing"] for v in visits]
    t["expTime"].unit, t["seeing"].unit = "s", "arcsec"
    return t


def object_table(ring, truth: dict, cover: dict[str, np.ndarray], conditions: dict, hole: dict | None, rng) -> Table:
    """``objectTable_tract``: every patch's detections (overlaps included) plus sky objects.

    Each object's coadd depth follows from the visits covering it per band; a band with no visit
    there gives a NaN flux with its flag set (Rubin's convention). A hole removes the objects
    inside a disc.
    """
    x, y = ring.pixels(truth["ra"], truth["dec"])
    in_tract = (x > -ring.border) & (y > -ring.border) & (x < ring.size + ring.border) & (y < ring.size + ring.border)
    sel = np.flatnonzero(in_tract)
    if hole:
        gone = np.hypot(x[sel] - hole["x"], y[sel] - hole["y"]) < hole["radius_pixels"]
        sel = sel[~gone]
    cols: dict[str, np.ndarray] = {}
    detected = np.zeros(sel.size, bool)
    for band in sorted(cover):
        m5 = [c["m5"] for c in conditions.values() if c["band"] == band]
        count = cover[band][sel]
        sigma = _njy(np.median(m5) if m5 else 25.0) / 5.0 / np.sqrt(np.maximum(count, 1))
        flux = _njy(truth[f"{band}_mag"][sel])
        err = np.sqrt(sigma**2 + (0.003 * flux) ** 2)
        meas = flux + rng.normal(0, 1, sel.size) * err
        none = count == 0
        detected |= ~none & (meas / err >= 5)
        cols[f"{band}_psfFlux"] = np.where(none, np.nan, meas)
        cols[f"{band}_psfFluxErr"] = np.where(none, np.nan, err)
        cols[f"{band}_psfFlux_flag"] = none
        cols[f"{band}_cModelFlux"] = np.where(none, np.nan, meas * 1.05)
        cols[f"{band}_cModelFluxErr"] = np.where(none, np.nan, err * 1.2)
        cols[f"{band}_cModel_flag"] = none
        cols[f"{band}_inputCount"] = count.astype(np.int32)
        cols[f"{band}_extendedness"] = np.where(none, np.nan, (~truth["isStar"][sel]).astype(float))
        cols[f"{band}_extendedness_flag"] = none
    keep = np.flatnonzero(detected)
    sel = sel[keep]
    cols = {k: v[keep] for k, v in cols.items()}
    ox, oy = x[sel], y[sel]
    rows, patches, primary = [], [], []
    for p in range(ring.n_patches ** 2):
        x0, x1, y0, y1 = ring.patch_box(p)
        inside = np.flatnonzero((ox >= x0) & (ox < x1) & (oy >= y0) & (oy < y1))
        rows.append(inside)
        patches.append(np.full(inside.size, p))
        primary.append(ring.patch_index(ox[inside], oy[inside]) == p)
    rows, patches, primary = np.concatenate(rows), np.concatenate(patches), np.concatenate(primary)
    t = Table()
    t["objectId"] = np.int64(ring.tract) * 2**32 + np.arange(rows.size + SKY_OBJECTS_PER_PATCH * ring.n_patches**2)
    # Sky objects: empty-sky apertures per patch.
    k = SKY_OBJECTS_PER_PATCH
    sky_patch = np.repeat(np.arange(ring.n_patches ** 2), k)
    sx = (sky_patch % ring.n_patches + rng.random(sky_patch.size)) * ring.patch_pixels
    sy = (sky_patch // ring.n_patches + rng.random(sky_patch.size)) * ring.patch_pixels
    s_ra, s_dec = ring.sky(sx, sy)
    n_sky = sky_patch.size
    t["tract"] = np.full(len(t), ring.tract, np.int64)
    t["patch"] = np.r_[patches, sky_patch].astype(np.int64)
    t["coord_ra"] = np.r_[truth["ra"][sel][rows] + rng.normal(0, 0.01 / 3600, rows.size), s_ra]
    t["coord_dec"] = np.r_[truth["dec"][sel][rows] + rng.normal(0, 0.01 / 3600, rows.size), s_dec]
    t["x"], t["y"] = np.r_[ox[rows], sx], np.r_[oy[rows], sy]
    t["detect_isPrimary"] = np.r_[primary, np.zeros(n_sky, bool)]
    t["detect_isPatchInner"] = np.r_[primary, np.ones(n_sky, bool)]
    t["detect_isTractInner"] = np.ones(len(t), bool)
    t["sky_object"] = np.r_[np.zeros(rows.size, bool), np.ones(n_sky, bool)]
    # The reference band of each object: the first of Rubin's priority list with data there.
    ref = np.full(sel.size, "", dtype="<U1")
    ref_ext = np.full(sel.size, np.nan)
    for band in "irzyg":
        if f"{band}_extendedness" in cols:
            take = (ref == "") & ~cols[f"{band}_psfFlux_flag"]
            ref[take] = band
            ref_ext[take] = cols[f"{band}_extendedness"][take]
    t["refBand"] = np.r_[ref[rows], np.full(n_sky, "i")]
    t["refExtendedness"] = np.r_[ref_ext[rows], np.full(n_sky, np.nan)]
    for name, values in cols.items():
        if values.dtype.kind == "f":
            sky = rng.normal(0, 1, n_sky) * np.nanmedian(cols[name.replace("Err", "") + "Err"]) \
                if name.endswith("Flux") else np.full(n_sky, np.nan if "extendedness" in name else 1.0)
            t[name] = np.r_[values[rows], sky]
        elif values.dtype.kind == "b":
            t[name] = np.r_[values[rows], np.zeros(n_sky, bool) if "Flux" in name or "cModel" in name
                            else np.ones(n_sky, bool)]
        else:
            t[name] = np.r_[values[rows], np.zeros(n_sky, values.dtype)]
    order = np.argsort(np.asarray(t["patch"]), kind="stable")
    t = t[order]
    for name in t.colnames:
        if name in ("coord_ra", "coord_dec"):
            t[name].unit = "deg"
        elif name in ("x", "y"):
            t[name].unit = "pix"
        elif name.endswith(("Flux", "FluxErr")):
            t[name].unit = "nJy"
    return t


def isolated_stars(parts: list[Table], ring, band_order: list[str]) -> tuple[Table, Table]:
    """The tract's isolated-star association in lsst.pipe.tasks' layout.

    Returns ``isolated_star_presources`` (one row per source: the source columns, ``source_row``,
    ``obj_index``; sorted by star, then band in ``band_order``) and
    ``isolated_star_presource_associations`` (one row per star: ``isolated_star_id``, ``ra``,
    ``dec``, ``primary_band``, ``source_cat_index``, ``nsource`` and per band
    ``source_cat_index_{band}``, ``nsource_{band}``).
    """
    from astropy.table import vstack

    src = vstack([p for p in parts if len(p)], metadata_conflicts="silent")
    truth_id = np.asarray(src["truthId"])
    x, y = ring.pixels(np.asarray(src["ra"]), np.asarray(src["dec"]))
    ids, counts = np.unique(truth_id, return_counts=True)
    multi = ids[counts >= 2]
    keep = np.isin(truth_id, multi)
    src = src[keep]
    truth_id = truth_id[keep]
    star_index = np.searchsorted(multi, truth_id)
    rank = {b: i for i, b in enumerate(band_order)}
    band_rank = np.array([rank.get(b, len(band_order)) for b in np.asarray(src["band"])])
    order = np.lexsort((np.asarray(src["visit"]), band_rank, star_index))
    src = src[order]
    star_index, band_rank = star_index[order], band_rank[order]
    # Stars whose mean position is outside the tract's inner region belong to another tract.
    n = multi.size
    nsrc = np.bincount(star_index, minlength=n)
    ra = np.bincount(star_index, weights=np.asarray(src["ra"]), minlength=n) / nsrc
    dec = np.bincount(star_index, weights=np.asarray(src["dec"]), minlength=n) / nsrc
    sx, sy = ring.pixels(ra, dec)
    inner = ring.patch_index(sx, sy) >= 0
    new_index = np.cumsum(inner) - 1
    rows = inner[star_index]
    src = src[rows]
    obj = new_index[star_index[rows]]
    band_rank = band_rank[rows]
    src.remove_column("truthId")
    src["obj_index"] = obj.astype(np.int32)
    m = int(inner.sum())
    cat = Table()
    mult = 10 ** (int(np.log10(18938)) + 1)
    cat["isolated_star_id"] = (np.arange(m, dtype=np.int64) + 1) * mult + ring.tract
    cat["ra"], cat["dec"] = ra[inner], dec[inner]
    cat["ra"].unit = cat["dec"].unit = "deg"
    per_band = np.zeros((len(band_order), m), np.int32)
    np.add.at(per_band, (np.minimum(band_rank, len(band_order) - 1), obj), 1)
    cat["primary_band"] = [band_order[int(np.argmax(per_band[:, i] > 0))] for i in range(m)]
    cat["nsource"] = per_band.sum(axis=0).astype(np.int32)
    cat["source_cat_index"] = np.r_[0, np.cumsum(cat["nsource"])[:-1]].astype(np.int32)
    offset = np.asarray(cat["source_cat_index"]).copy()
    for b, band in enumerate(band_order):
        cat[f"source_cat_index_{band}"] = offset.astype(np.int32)
        cat[f"nsource_{band}"] = per_band[b]
        offset = offset + per_band[b]
    return src, cat
