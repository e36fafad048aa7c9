"""Synthetic matched multi-visit catalogs with known injected scatter, for tests and benchmarks.

Each object is a star (or, for a fraction, a galaxy) seen in ``n_visits`` visits; each
measurement gets Gaussian photometric scatter ``sigma_mmag`` and astrometric scatter
``sigma_mas`` per coordinate, and an ellipticity residual ``e_res_offset + N(0, e_res_sigma)``
against a random PSF ellipticity, so a metric's expected value can be derived exactly.
Columns use Rubin's DP1 names and units (fluxes in nJy, coordinates in degrees).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["matched_catalog"]


def matched_catalog(n_objects: int = 2000, n_visits: int = 5, sigma_mmag: float = 10.0, sigma_mas: float = 10.0,
                    field_deg: float = 0.5, ra0: float = 150.0, dec0: float = 2.0, mag_range=(17.0, 21.5),
                    galaxy_fraction: float = 0.0, e_res_offset: tuple[float, float] = (0.0, 0.0),
                    e_res_sigma: float = 0.0, band: str = "r", seed: int = 0) -> pa.Table:
    """A matched catalog: one row per (object, visit), sorted by object.

    Parameters
    ----------
    n_objects, n_visits : int
        Objects, and visits each object is measured in.
    sigma_mmag : float
        Injected per-measurement photometric scatter, mmag.
    sigma_mas : float
        Injected per-measurement astrometric scatter per coordinate, mas.
    field_deg : float
        Side of the square field, degrees.
    mag_range : tuple of float
        True magnitudes are uniform in this range (AB mag).
    galaxy_fraction : float
        Fraction of objects with extendedness 1.
    e_res_offset, e_res_sigma : float
        PSF ellipticity residual: constant offset (e1, e2) plus Gaussian noise per component.
    seed : int
        Random seed.

    Returns
    -------
    pyarrow.Table
        Columns ``obj_index, visit, band, coord_ra, coord_dec [deg], psfFlux, psfFluxErr [nJy],
        extendedness, e1, e2, psf_e1, psf_e2``; units in field metadata.
    """
    rng = np.random.default_rng(seed)
    n = n_objects * n_visits
    obj = np.repeat(np.arange(n_objects, dtype=np.int64), n_visits)
    visit = np.tile(np.arange(1000, 1000 + n_visits, dtype=np.int64), n_objects)
    cosd = np.cos(np.radians(dec0))
    ra_true = ra0 + rng.uniform(-field_deg / 2, field_deg / 2, n_objects) / cosd
    dec_true = dec0 + rng.uniform(-field_deg / 2, field_deg / 2, n_objects)
    mag_true = rng.uniform(*mag_range, n_objects)
    scatter_deg = sigma_mas / 3.6e6
    dec = dec_true[obj] + rng.normal(0.0, scatter_deg, n)
    ra = ra_true[obj] + rng.normal(0.0, scatter_deg, n) / np.cos(np.radians(dec))
    mag = mag_true[obj] + rng.normal(0.0, sigma_mmag / 1000.0, n)
    flux = 10 ** (-0.4 * (mag - 31.4))
    snr = 2000.0 * 10 ** (-0.4 * (mag_true[obj] - 17.0))  # S/N 2000 at 17 mag, ~30 at 21.5 mag
    flux_err = flux / snr
    ext = (rng.random(n_objects) < galaxy_fraction).astype(float)[obj]
    psf_e1, psf_e2 = rng.normal(0, 0.05, n), rng.normal(0, 0.05, n)
    e1 = psf_e1 + e_res_offset[0] + rng.normal(0, e_res_sigma, n) if e_res_sigma else psf_e1 + e_res_offset[0]
    e2 = psf_e2 + e_res_offset[1] + rng.normal(0, e_res_sigma, n) if e_res_sigma else psf_e2 + e_res_offset[1]

    def f(name: str, data: np.ndarray, unit: str | None = None) -> tuple[pa.Field, pa.Array]:
        arr = pa.array(data)
        return pa.field(name, arr.type, metadata={"unit": unit} if unit else None), arr

    cols = [f("obj_index", obj), f("visit", visit), f("band", np.full(n, band)),
            f("coord_ra", ra, "deg"), f("coord_dec", dec, "deg"), f("psfFlux", flux, "nJy"),
            f("psfFluxErr", flux_err, "nJy"), f("extendedness", ext), f("e1", e1), f("e2", e2),
            f("psf_e1", psf_e1), f("psf_e2", psf_e2)]
    return pa.Table.from_arrays([c[1] for c in cols], schema=pa.schema([c[0] for c in cols]))
