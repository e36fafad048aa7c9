"""The simulated sky and observing plan: true objects, visits and their conditions.

Everything is drawn from generators seeded by `SimConfig.seed`, so one configuration always gives
the same survey; per-visit draws use their own generator, so visits can be made one at a time.
Magnitudes are AB; fluxes in nJy (AB mag = -2.5 log10(flux / nJy) + 31.4).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

from surveyqa.sim.config import BANDS, INSTRUMENT, SimConfig
from surveyqa.sim.geometry import tract_boxes

__all__ = ["Visit", "make_truth", "plan_visits", "flux_njy", "AB_NJY"]

AB_NJY = 31.4
#: Colour coefficients: m_band = m_r + coef * (g - r).
_COLOUR = {"u": 2.2, "g": 1.0, "r": 0.0, "i": -0.45, "z": -0.7, "y": -0.85}
MARGIN = 0.2  # degrees of sky simulated around the tracts


def flux_njy(mag):
    """AB magnitude -> flux in nJy."""
    return 10.0 ** (-0.4 * (np.asarray(mag) - AB_NJY))


def _power_law_mags(rng, n, alpha, m_min, m_max):
    lo, hi = 10 ** (alpha * m_min), 10 ** (alpha * m_max)
    return np.log10(lo + rng.random(n) * (hi - lo)) / alpha


def make_truth(config: SimConfig) -> dict[str, np.ndarray]:
    """True objects over the tracts plus a margin: positions, type, magnitudes, shapes.

    Returns
    -------
    truth : dict of numpy arrays, sorted by ``ra``
        ``truthId`` (row + 1), ``ra``, ``dec`` (deg), ``isStar``, ``{band}_mag`` (AB mag),
        ``size`` (Gaussian sigma of the galaxy light, arcsec; 0 for stars), ``e1``, ``e2``.
    """
    rng = np.random.default_rng([config.seed, 0])
    boxes = tract_boxes(config)
    ra_min, ra_max = boxes[0].ra_min - MARGIN, boxes[-1].ra_max + MARGIN
    dec_min, dec_max = boxes[0].dec_min - MARGIN, boxes[0].dec_max + MARGIN
    area = (ra_max - ra_min) * (dec_max - dec_min)
    n = int(rng.poisson(config.density * area))
    is_star = rng.random(n) < config.star_fraction
    mag_r = np.where(is_star, _power_law_mags(rng, n, -0.1, 16.5, 26.5), _power_law_mags(rng, n, 0.35, 17.0, 26.5))
    g_r = np.where(is_star, rng.uniform(0.2, 1.4, n), rng.normal(0.7, 0.25, n))
    truth = {
        "truthId": np.arange(1, n + 1, dtype=np.int64),
        "ra": rng.uniform(ra_min, ra_max, n),
        "dec": np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(dec_min)), np.sin(np.radians(dec_max)), n))),
        "isStar": is_star,
        # Galaxy size shrinks with magnitude: ~1 arcsec at 20, ~0.3 at 26.
        "size": np.where(is_star, 0.0, np.clip(rng.lognormal(np.log(0.35 * 10 ** (-0.08 * (mag_r - 22))), 0.4), 0.05, 3.0)),
        "e1": np.where(is_star, 0.0, rng.normal(0, 0.25, n)),
        "e2": np.where(is_star, 0.0, rng.normal(0, 0.25, n)),
    }
    for band in BANDS:
        truth[f"{band}_mag"] = (mag_r + _COLOUR[band] * g_r + rng.normal(0, 0.03, n)).astype(np.float64)
    # Sorted by RA, so that a visit finds its objects by binary search (truthId = row + 1).
    # One column at a time, so that the peak memory is the catalogue plus one column (7 GB for the
    # 73 million objects of 100 tracts), not twice the catalogue.
    order = np.argsort(truth["ra"], kind="stable")
    for key in truth:
        if key != "truthId":
            truth[key] = truth[key][order]
    return truth


@dataclass
class Visit:
    """One visit and its observing conditions.

    Attributes are in degrees (positions, rotation), arcsec (seeing), mag (sky in mag/arcsec^2,
    zero point for one count in the exposure, 5-sigma depth) and days (MJD).
    """

    id: int
    index: int
    tract: int
    band: str
    day_obs: int
    seq_num: int
    ra: float
    dec: float
    rotation: float
    seeing: float
    airmass: float
    sky: float
    cloud: float
    zero_point: float
    m5: float
    mjd: float
    exposure_time: float

    @property
    def physical_filter(self) -> str:
        return f"{self.band}_sim"

    @property
    def instrument(self) -> str:
        return INSTRUMENT

    @property
    def sigma_sky(self) -> float:
        """1-sigma point-source flux noise from the sky, nJy."""
        return float(flux_njy(self.m5) / 5.0)


def plan_visits(config: SimConfig) -> list[Visit]:
    """The observing plan: ``visits`` per band per tract, one quadrant of the tract each, in turn.

    Each band is observed on its own nights; conditions (seeing, airmass, sky, clouds) are drawn
    per visit. Four visits in a band cover a tract completely.
    """
    rng = np.random.default_rng([config.seed, 1])
    quadrants = [(-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25)]
    start = datetime.date(2026, 1, 1)
    visits = []
    index = 0
    for b, band in enumerate(config.bands):
        zp0, k, sky0, m50, seeing0 = BANDS[band]
        for box in tract_boxes(config):
            for j in range(config.visits):
                night = b * 8 + j // 4
                date = start + datetime.timedelta(days=night)
                day_obs = int(date.strftime("%Y%m%d"))
                seq = 1 + index
                visit_id = (day_obs - 20260000) * 1000 + seq
                dx, dy = quadrants[j % 4]
                ra_c, dec_c = box.center
                seeing = float(np.clip(seeing0 * rng.lognormal(0, 0.15), 0.55, 1.35))
                airmass = float(np.clip(1.0 + abs(rng.normal(0, 0.1)), 1.0, 1.4))
                sky = float(sky0 + rng.normal(0, 0.15))
                cloud = float(abs(rng.normal(0, 0.02)))
                zp = zp0 + 2.5 * np.log10(config.exposure_time) - k * (airmass - 1) - cloud
                m5 = (m50 + 1.25 * np.log10(config.exposure_time / 30.0) - 2.5 * np.log10(seeing / 0.7)
                      + 0.5 * (sky - sky0) - k * (airmass - 1) - cloud)
                visits.append(Visit(
                    id=visit_id, index=index, tract=box.tract, band=band, day_obs=day_obs, seq_num=seq,
                    ra=ra_c + dx * config.tract_size + rng.normal(0, 0.015),
                    dec=dec_c + dy * config.tract_size + rng.normal(0, 0.015),
                    rotation=float(rng.normal(0, 1.0)), seeing=seeing, airmass=airmass, sky=sky, cloud=cloud,
                    zero_point=float(zp), m5=float(m5),
                    mjd=float(61041.0 + night + 0.1 + 0.001 * index), exposure_time=config.exposure_time,
                ))
                index += 1
    return visits
