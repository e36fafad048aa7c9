"""Single-visit measurements: what the processing would have put in `sourceTable_visit`.

One visit at a time (vectorized numpy), so that a survey of 10^8 sources is made in chunks and
never held in memory at once. Noise model: sky-limited point-source noise from the visit's
5-sigma depth plus Poisson and a 0.15 % calibration floor; astrometric noise FWHM / (2.35 S/N)
plus a 3 mas floor; PSF second moments from the seeing with a smooth ellipticity field across
the focal plane.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from surveyqa.sim.config import SimConfig
from surveyqa.sim.geometry import FocalPlane
from surveyqa.sim.survey import AB_NJY, Visit, flux_njy

__all__ = ["observe_visit", "ccd_visit_rows", "SOURCE_UNITS"]

#: Units of the source table columns (DP1 schema).
SOURCE_UNITS = {
    "coord_ra": "deg", "coord_dec": "deg", "ra": "deg", "dec": "deg", "raErr": "deg", "decErr": "deg",
    "x": "pix", "y": "pix", "xErr": "pix", "yErr": "pix",
    "psfFlux": "nJy", "psfFluxErr": "nJy", "calibFlux": "nJy", "calibFluxErr": "nJy",
    "ap09Flux": "nJy", "ap09FluxErr": "nJy", "gaussianFlux": "nJy", "gaussianFluxErr": "nJy", "sky": "nJy",
    "ixx": "pix2", "iyy": "pix2", "ixy": "pix2", "ixxPSF": "pix2", "iyyPSF": "pix2", "ixyPSF": "pix2",
    "psfFlux_area": "pix", "footprintArea_value": "pix",
}


def _psf_field(u, v, visit: Visit, rng_visit_e: tuple[float, float]):
    """PSF ellipticity (e1, e2) across the focal plane: a quadratic field plus a per-visit offset."""
    e1 = 0.03 * (u**2 - v**2) + rng_visit_e[0]
    e2 = 0.03 * 2 * u * v + rng_visit_e[1]
    return e1, e2


def observe_visit(visit: Visit, truth: dict[str, np.ndarray], config: SimConfig, bad_detector: int | None,
                  zp_error: float) -> tuple[Table, Table]:
    """Detected sources of one visit.

    Parameters
    ----------
    visit : Visit
        The pointing and its conditions.
    truth : dict of numpy arrays
        True objects (`make_truth`).
    config : SimConfig
        Focal plane and sizes.
    bad_detector : int or None
        Detector whose positions are offset by ``config.defects.astrometry_offset`` arcsec in RA.
    zp_error : float
        Error of this visit's calibration zero point, mag (calibrated fluxes are off by it).

    Returns
    -------
    sources : astropy.table.Table
        DP1 `Source` columns, sorted by detector.
    truth_match : astropy.table.Table
        ``sourceId`` -> ``truthId``.
    """
    rng = np.random.default_rng([config.seed, 2, visit.index])
    fp = FocalPlane.from_config(config)
    # Cheap preselection by box, then exact placement on the focal plane.
    reach = fp.half_width * 1.5
    lo, hi = np.searchsorted(truth["ra"], [visit.ra - reach, visit.ra + reach])  # truth is sorted by RA
    sel = lo + np.flatnonzero(np.abs(truth["dec"][lo:hi] - visit.dec) < reach)
    det, x, y, u, v, _ = fp.locate(truth["ra"][sel], truth["dec"][sel], visit.ra, visit.dec, visit.rotation)
    on = det >= 0
    sel, det, x, y, u, v = sel[on], det[on], x[on], y[on], u[on], v[on]
    n = sel.size
    is_star = truth["isStar"][sel]
    mag = truth[f"{visit.band}_mag"][sel]
    flux = flux_njy(mag)

    # PSF and object shapes (pixels).
    sigma_psf = visit.seeing / 2.355 / config.pixel_scale
    e_off = tuple(np.random.default_rng([config.seed, 3, visit.index]).normal(0, 0.01, 2))
    pe1, pe2 = _psf_field(u, v, visit, e_off)
    ixx_psf, iyy_psf, ixy_psf = sigma_psf**2 * (1 + pe1), sigma_psf**2 * (1 - pe1), sigma_psf**2 * pe2
    sg = truth["size"][sel] / config.pixel_scale
    ge1, ge2 = truth["e1"][sel], truth["e2"][sel]
    ixx_t, iyy_t, ixy_t = ixx_psf + sg**2 * (1 + ge1), iyy_psf + sg**2 * (1 - ge1), ixy_psf + sg**2 * ge2

    # Photometry: the PSF flux of an extended object is diluted by its size.
    dilution = 1.0 / (1.0 + (sg / sigma_psf) ** 2)
    sig_sky = visit.sigma_sky
    psf_true = flux * dilution
    gain = 10 ** (0.4 * (visit.zero_point - AB_NJY))  # counts per nJy
    psf_err = np.sqrt(sig_sky**2 + psf_true / gain + (0.0015 * psf_true) ** 2)
    psf_flux = psf_true + rng.normal(0, 1, n) * psf_err
    snr = psf_flux / psf_err
    detected = snr >= 5.0
    keep = np.flatnonzero(detected)
    order = keep[np.argsort(det[keep], kind="stable")]
    sel, det, x, y = sel[order], det[order], x[order], y[order]
    is_star, flux, psf_flux, psf_err, snr = is_star[order], flux[order], psf_flux[order], psf_err[order], snr[order]
    ixx_psf, iyy_psf, ixy_psf = ixx_psf[order], iyy_psf[order], ixy_psf[order]
    ixx_t, iyy_t, ixy_t = ixx_t[order], iyy_t[order], ixy_t[order]
    mag = mag[order]
    m = sel.size

    # Aperture and Gaussian fluxes: most of the total flux, noisier.
    ap_err = psf_err * 1.6
    calib = flux * 0.97 + rng.normal(0, 1, m) * ap_err
    ap09 = flux * 0.92 + rng.normal(0, 1, m) * ap_err * 0.8
    gauss_err = psf_err * 1.2
    gauss = flux * 0.95 + rng.normal(0, 1, m) * gauss_err

    # Moments with measurement noise.
    ixx = ixx_t * (1 + rng.normal(0, 0.05, m) / np.sqrt(np.maximum(snr, 1) / 5))
    iyy = iyy_t * (1 + rng.normal(0, 0.05, m) / np.sqrt(np.maximum(snr, 1) / 5))
    ixy = ixy_t + rng.normal(0, 0.05, m) * np.sqrt(ixx_t * iyy_t) / np.sqrt(np.maximum(snr, 1) / 5)
    size_ratio = (ixx + iyy) / (ixx_psf + iyy_psf) - 1.0
    extendedness = (size_ratio > 0.12).astype(np.float64)

    # Astrometry: centroid noise plus a floor; the defect offsets one detector in RA.
    sigma_pos = np.hypot(visit.seeing / (2.35 * np.maximum(snr, 1.0)), 0.003)  # arcsec
    cosd = np.cos(np.radians(truth["dec"][sel]))
    dra = rng.normal(0, 1, m) * sigma_pos
    ddec = rng.normal(0, 1, m) * sigma_pos
    if bad_detector is not None:
        dra = dra + np.where(det == bad_detector, config.defects.astrometry_offset, 0.0)
    ra = truth["ra"][sel] + dra / 3600.0 / cosd
    dec = truth["dec"][sel] + ddec / 3600.0

    # A wrong zero point scales every calibrated flux of the visit.
    scale = 10 ** (-0.4 * zp_error)
    psf_flux, psf_err, calib, ap09, gauss = (a * scale for a in (psf_flux, psf_err, calib, ap09, gauss))

    # Flags.
    saturated = mag < 16.0 + 2.5 * np.log10(visit.seeing / 0.7)
    edge = (x < 8) | (y < 8) | (x > config.detector_pixels - 8) | (y > config.detector_pixels - 8)
    psf_failed = rng.random(m) < 0.001
    psf_flux = np.where(psf_failed, np.nan, psf_flux)
    psf_cand = is_star & (snr > 50) & ~saturated
    sky_pix = float(flux_njy(visit.sky)) * config.pixel_scale**2

    source_id = (np.int64(visit.id) * 1_000_000_000 + det.astype(np.int64) * 1_000_000
                 + _rank_within(det).astype(np.int64))
    t = Table()
    t["sourceId"] = source_id
    t["visit"] = np.full(m, visit.id, dtype=np.int64)
    t["detector"] = det.astype(np.int32)
    t["band"] = np.full(m, visit.band)
    t["physical_filter"] = np.full(m, visit.physical_filter)
    t["parentSourceId"] = np.zeros(m, dtype=np.int64)
    t["coord_ra"] = ra
    t["coord_dec"] = dec
    t["ra"] = ra
    t["dec"] = dec
    t["raErr"] = (sigma_pos / 3600.0 / cosd).astype(np.float32)
    t["decErr"] = (sigma_pos / 3600.0).astype(np.float32)
    t["x"] = x
    t["y"] = y
    t["xErr"] = (sigma_pos / config.pixel_scale).astype(np.float32)
    t["yErr"] = (sigma_pos / config.pixel_scale).astype(np.float32)
    t["psfFlux"] = psf_flux
    t["psfFluxErr"] = psf_err
    t["psfFlux_flag"] = psf_failed
    t["psfFlux_area"] = np.full(m, 4 * np.pi * sigma_psf**2, dtype=np.float32)
    t["calibFlux"] = calib
    t["calibFluxErr"] = ap_err * scale
    t["ap09Flux"] = ap09
    t["ap09FluxErr"] = ap_err * 0.8 * scale
    t["ap09Flux_flag"] = edge
    t["gaussianFlux"] = gauss
    t["gaussianFluxErr"] = gauss_err * scale
    t["gaussianFlux_flag"] = np.zeros(m, dtype=bool)
    t["sky"] = np.full(m, sky_pix)
    t["ixx"], t["iyy"], t["ixy"] = ixx, iyy, ixy
    t["ixxPSF"], t["iyyPSF"], t["ixyPSF"] = ixx_psf, iyy_psf, ixy_psf
    t["extendedness"] = extendedness
    t["sizeExtendedness"] = np.clip(size_ratio, 0, 1)
    t["blendedness_abs"] = np.clip(rng.exponential(0.01, m), 0, 1)
    t["footprintArea_value"] = np.ceil(np.pi * (3 * np.sqrt(0.5 * (ixx_t + iyy_t))) ** 2).astype(np.int32)
    t["centroid_flag"] = psf_failed
    t["pixelFlags_edge"] = edge
    t["pixelFlags_saturatedCenter"] = saturated
    t["pixelFlags_bad"] = rng.random(m) < 0.002
    t["pixelFlags_cr"] = rng.random(m) < 0.005
    t["pixelFlags_interpolatedCenter"] = rng.random(m) < 0.003
    t["calib_psf_candidate"] = psf_cand
    t["calib_psf_used"] = psf_cand & (rng.random(m) < 0.8)
    t["calib_astrometry_used"] = is_star & (snr > 20) & ~saturated
    t["calib_photometry_used"] = is_star & (snr > 20) & ~saturated
    t["deblend_nChild"] = np.zeros(m, dtype=np.int32)
    t["sky_source"] = np.zeros(m, dtype=bool)
    for name, unit in SOURCE_UNITS.items():
        if name in t.colnames:
            t[name].unit = unit
    truth_match = Table({"sourceId": source_id, "truthId": truth["truthId"][sel]})
    return t, truth_match


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted array."""
    n = groups.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    counts = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, counts)


def ccd_visit_rows(visit: Visit, config: SimConfig, zp_error: float) -> dict[str, list]:
    """Rows of `ccdVisitTable` for every detector of a visit (DP1 `CcdVisit` columns)."""
    fp = FocalPlane.from_config(config)
    rng = np.random.default_rng([config.seed, 4, visit.index])
    rows: dict[str, list] = {}
    sigma_pix = visit.seeing / 2.355 / config.pixel_scale
    for d in range(config.n_detectors):
        ras, decs = fp.detector_corners(d, visit.ra, visit.dec, visit.rotation)
        zp = visit.zero_point + rng.normal(0, 0.002) + zp_error
        row = {
            "ccdVisitId": visit.id * 1000 + d, "visitId": visit.id, "detector": d,
            "physical_filter": visit.physical_filter, "band": visit.band,
            "ra": float(np.mean(ras)), "dec": float(np.mean(decs)),
            "pixelScale": config.pixel_scale, "zenithDistance": float(np.degrees(np.arccos(1 / visit.airmass))),
            "expTime": visit.exposure_time, "darkTime": visit.exposure_time, "zeroPoint": zp,
            "psfSigma": sigma_pix * (1 + rng.normal(0, 0.01)), "seeing": visit.seeing * (1 + rng.normal(0, 0.01)),
            "skyBg": float(flux_njy(visit.sky) * config.pixel_scale**2 * 10 ** (0.4 * (zp - AB_NJY))),
            "skyNoise": float(np.sqrt(flux_njy(visit.sky) * config.pixel_scale**2 * 10 ** (0.4 * (zp - AB_NJY)))),
            "astromOffsetMean": abs(rng.normal(0.012, 0.002)), "astromOffsetStd": abs(rng.normal(0.008, 0.001)),
            "nPsfStar": int(rng.integers(40, 120)),
            "psfStarDeltaE1Median": rng.normal(0, 0.001), "psfStarDeltaE2Median": rng.normal(0, 0.001),
            "psfStarDeltaSizeMedian": rng.normal(0, 0.005), "skyRotation": visit.rotation,
            "expMidptMJD": visit.mjd, "obsStartMJD": visit.mjd - visit.exposure_time / 2 / 86400,
            "xSize": config.detector_pixels, "ySize": config.detector_pixels,
            "llcra": ras[0], "llcdec": decs[0], "lrcra": ras[1], "lrcdec": decs[1],
            "urcra": ras[2], "urcdec": decs[2], "ulcra": ras[3], "ulcdec": decs[3],
            "magLim": visit.m5 - zp_error,
        }
        for key, value in row.items():
            rows.setdefault(key, []).append(value)
    return rows


CCD_UNITS = {
    "ra": "deg", "dec": "deg", "pixelScale": "arcsec / pix", "zenithDistance": "deg", "expTime": "s",
    "darkTime": "s", "zeroPoint": "mag", "psfSigma": "pix", "seeing": "arcsec", "skyBg": "adu", "skyNoise": "adu",
    "astromOffsetMean": "arcsec", "astromOffsetStd": "arcsec", "psfStarDeltaSizeMedian": "pix",
    "skyRotation": "deg", "expMidptMJD": "d", "obsStartMJD": "d", "xSize": "pix", "ySize": "pix",
    "llcra": "deg", "llcdec": "deg", "lrcra": "deg", "lrcdec": "deg", "urcra": "deg", "urcdec": "deg",
    "ulcra": "deg", "ulcdec": "deg", "magLim": "mag",
}
