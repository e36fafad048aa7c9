"""Sky geometry of the simulation: a flat-square skymap on the equator and a square focal plane.

Tracts are 1 deg boxes side by side along the equator (no overlaps, unlike Rubin's ring skymap),
patches a regular grid inside them. The focal plane is a square grid of square detectors, mapped
onto the sky with a gnomonic projection about the visit centre and a rotation. All angles are in
degrees unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

from surveyqa.sim.config import SimConfig

__all__ = ["TractBox", "tract_boxes", "polygon", "to_tangent", "from_tangent", "FocalPlane"]


@dataclass(frozen=True)
class TractBox:
    """One tract: an RA/Dec box with a grid of patches (degrees)."""

    tract: int
    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float
    patches_per_side: int

    @property
    def patch_size(self) -> float:
        return (self.dec_max - self.dec_min) / self.patches_per_side

    @property
    def center(self) -> tuple[float, float]:
        return 0.5 * (self.ra_min + self.ra_max), 0.5 * (self.dec_min + self.dec_max)

    def patch_of(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Patch id (``y * n + x``) of each position; -1 outside the tract."""
        n = self.patches_per_side
        px = np.floor((np.asarray(ra) - self.ra_min) / self.patch_size).astype(np.int64)
        py = np.floor((np.asarray(dec) - self.dec_min) / self.patch_size).astype(np.int64)
        inside = (px >= 0) & (px < n) & (py >= 0) & (py < n)
        return np.where(inside, py * n + px, -1)

    def patch_box(self, patch: int) -> tuple[float, float, float, float]:
        """(ra_min, ra_max, dec_min, dec_max) of a patch."""
        n, s = self.patches_per_side, self.patch_size
        px, py = patch % n, patch // n
        return (self.ra_min + px * s, self.ra_min + (px + 1) * s,
                self.dec_min + py * s, self.dec_min + (py + 1) * s)


def tract_boxes(config: SimConfig) -> list[TractBox]:
    """The tracts of a simulated survey."""
    s = config.tract_size
    return [
        TractBox(config.first_tract + k, config.ra0 + k * s, config.ra0 + (k + 1) * s, -s / 2, s / 2,
                 config.patches_per_side)
        for k in range(config.tracts)
    ]


def polygon(ra: list[float] | np.ndarray, dec: list[float] | np.ndarray) -> ConvexPolygon:
    """A spherical convex polygon through RA/Dec vertices (degrees)."""
    return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(float(a), float(d))) for a, d in zip(ra, dec)])


def box_polygon(ra_min: float, ra_max: float, dec_min: float, dec_max: float) -> ConvexPolygon:
    return polygon([ra_min, ra_max, ra_max, ra_min], [dec_min, dec_min, dec_max, dec_max])


def to_tangent(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection about (ra0, dec0): standard coordinates (xi, eta) in degrees."""
    ra, dec = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(ra - a0)
    xi = np.cos(dec) * np.sin(ra - a0) / cosc
    eta = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def from_tangent(xi, eta, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse gnomonic projection: (xi, eta) in degrees back to (ra, dec) in degrees."""
    xi, eta = np.radians(xi), np.radians(eta)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    rho = np.hypot(xi, eta)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, eta * np.sin(c) * np.cos(d0) / rho, 0.0))
    ra = a0 + np.arctan2(xi * np.sin(c), rho * np.cos(d0) * np.cos(c) - eta * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)


@dataclass(frozen=True)
class FocalPlane:
    """A square grid of square detectors; detector ``d`` sits at column ``d % n``, row ``d // n``."""

    n: int
    detector_size: float  # degrees
    pixels: int
    pixel_scale: float  # arcsec / pixel

    @classmethod
    def from_config(cls, config: SimConfig) -> "FocalPlane":
        return cls(config.detectors_per_side, config.detector_size, config.detector_pixels, config.pixel_scale)

    @property
    def half_width(self) -> float:
        return 0.5 * self.n * self.detector_size

    def _rotate(self, u, v, angle: float):
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        return c * u - s * v, s * u + c * v

    def locate(self, ra, dec, ra0: float, dec0: float, rotation: float):
        """Detector id and pixel (x, y) of sky positions for a pointing; detector -1 off the focal plane."""
        xi, eta = to_tangent(ra, dec, ra0, dec0)
        u, v = self._rotate(xi, eta, -rotation)
        fu = (u + self.half_width) / self.detector_size
        fv = (v + self.half_width) / self.detector_size
        iu, iv = np.floor(fu).astype(np.int64), np.floor(fv).astype(np.int64)
        on = (iu >= 0) & (iu < self.n) & (iv >= 0) & (iv < self.n)
        detector = np.where(on, iv * self.n + iu, -1)
        x = (fu - iu) * self.pixels
        y = (fv - iv) * self.pixels
        # Focal-plane radius in units of the half width (for the PSF ellipticity field).
        r = np.hypot(u, v) / self.half_width
        return detector, x, y, u / self.half_width, v / self.half_width, r

    def detector_corners(self, detector: int, ra0: float, dec0: float, rotation: float):
        """RA/Dec (degrees) of a detector's corners, counter-clockwise from lower left."""
        iu, iv = detector % self.n, detector // self.n
        u0 = -self.half_width + iu * self.detector_size
        v0 = -self.half_width + iv * self.detector_size
        u = np.array([u0, u0 + self.detector_size, u0 + self.detector_size, u0])
        v = np.array([v0, v0, v0 + self.detector_size, v0 + self.detector_size])
        xi, eta = self._rotate(u, v, rotation)
        return from_tangent(xi, eta, ra0, dec0)

    def corners(self, ra0: float, dec0: float, rotation: float):
        """RA/Dec (degrees) of the focal plane's corners."""
        h = self.half_width
        u, v = np.array([-h, h, h, -h]), np.array([-h, -h, h, h])
        xi, eta = self._rotate(u, v, rotation)
        return from_tangent(xi, eta, ra0, dec0)
