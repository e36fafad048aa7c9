"""The geometry of one tract of a ring skymap (``hsc_rings_v1``), rebuilt from its tract record.

A real registry export holds the tract's region but few of its patch records (the HSC RC2 export:
one of 81). lsst.skymap's ring tracts are TAN projections about the tract centre, x growing
towards decreasing RA, cut into ``n x n`` patches of ``patch_pixels`` with a ``border`` of
overlap on each side; the tract region is the inner box. `RingTract` rebuilds every patch from
that, without lsst.skymap; `tests/test_sim_rubin.py` checks it against the export's own patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

__all__ = ["RingTract"]


def _lonlat(region) -> np.ndarray:
    return np.array([[LonLat(v).getLon().asDegrees(), LonLat(v).getLat().asDegrees()] for v in region.getVertices()])


@dataclass
class RingTract:
    """A ring-skymap tract: its TAN pixel frame, patches and their (inner and outer) regions.

    Attributes
    ----------
    tract : int
    wcs : astropy.wcs.WCS
        Tract pixel frame; pixel (0, 0) is the corner of the tract's inner box.
    n_patches : int
        Patches per side (9 for hsc_rings_v1).
    patch_pixels, border : int
        Inner patch size and the overlap added on each side, pixels.
    pixel_scale : float
        arcsec per pixel.
    """

    tract: int
    wcs: WCS
    n_patches: int = 9
    patch_pixels: int = 4000
    border: int = 100
    pixel_scale: float = 0.168

    @classmethod
    def from_record(cls, record, n_patches: int = 9, patch_pixels: int = 4000, border: int = 100,
                    pixel_scale: float = 0.168) -> "RingTract":
        """Rebuild a tract from its dimension record (``region`` = the inner box)."""
        vecs = [UnitVector3d(v) for v in record.region.getVertices()]
        centre = LonLat(UnitVector3d(sum(v.x() for v in vecs), sum(v.y() for v in vecs), sum(v.z() for v in vecs)))
        size = n_patches * patch_pixels
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [centre.getLon().asDegrees(), centre.getLat().asDegrees()]
        wcs.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]  # FITS pixels are 1-based
        wcs.wcs.cd = [[-pixel_scale / 3600.0, 0.0], [0.0, pixel_scale / 3600.0]]
        return cls(record.id, wcs, n_patches, patch_pixels, border, pixel_scale)

    @property
    def size(self) -> int:
        return self.n_patches * self.patch_pixels

    def pixels(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tract pixel coordinates (x, y) of positions in degrees."""
        x, y = self.wcs.all_world2pix(np.asarray(ra, float), np.asarray(dec, float), 0)
        return x + 0.5, y + 0.5  # pixel 0 covers [0, 1)

    def sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Degrees (ra, dec) of tract pixel coordinates."""
        ra, dec = self.wcs.all_pix2world(np.asarray(x, float) - 0.5, np.asarray(y, float) - 0.5, 0)
        return ra % 360.0, dec

    def patch_index(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Patch id (``cell_y * n + cell_x``) of the inner patch holding each pixel; -1 outside the tract."""
        ix, iy = np.floor(np.asarray(x) / self.patch_pixels), np.floor(np.asarray(y) / self.patch_pixels)
        inside = (ix >= 0) & (iy >= 0) & (ix < self.n_patches) & (iy < self.n_patches)
        return np.where(inside, iy * self.n_patches + ix, -1).astype(np.int64)

    def patch_box(self, patch: int, outer: bool = True) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) of a patch in tract pixels, with its border when ``outer``."""
        cx, cy = patch % self.n_patches, patch // self.n_patches
        pad = self.border if outer else 0
        return (cx * self.patch_pixels - pad, (cx + 1) * self.patch_pixels + pad,
                cy * self.patch_pixels - pad, (cy + 1) * self.patch_pixels + pad)

    def patch_polygon(self, patch: int) -> ConvexPolygon:
        """The patch's outer region, as the Butler stores it."""
        x0, x1, y0, y1 = self.patch_box(patch)
        ra, dec = self.sky(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]))
        return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(float(a), float(d))) for a, d in zip(ra, dec)])

    def patch_records(self, skymap: str) -> list[dict]:
        """Dimension records of every patch."""
        n = self.n_patches
        return [{"skymap": skymap, "tract": self.tract, "id": p, "cell_x": p % n, "cell_y": p // n,
                 "region": self.patch_polygon(p)} for p in range(n * n)]
