"""The plots of the QA tasks' debug mode (``config.debug``; docs/provenance.md).

Each function draws one diagnostic from a debug table or an output of its task, on a
`matplotlib.figure.Figure` made without pyplot (no global state, no display: quanta run in
worker processes), stored by the Butler as a ``Plot`` dataset (PNG). They only read their
inputs: debug mode adds outputs and changes nothing else.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["detector_summary_plot", "residuals_vs_mag_plot", "offset_field_plot"]


def _figure(width: float = 8.0, height: float = 4.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _unit(table: pa.Table, name: str) -> str:
    meta = table.schema.field(name).metadata or {}
    return meta.get(b"unit", b"").decode()


def detector_summary_plot(detector_values: pa.Table, visit: int):
    """Per detector of one visit: PSF FWHM, source density and zero-point offset (the ``qaVisit`` values)."""
    fig = _figure(8.0, 6.5)
    names = [n for n in ("psfFwhm", "sourceDensity", "zeroPointOffset") if n in detector_values.column_names]
    axes = fig.subplots(max(len(names), 1), 1, sharex=True, squeeze=False)[:, 0]
    det = _col(detector_values, "detector")
    for ax, name in zip(axes, names):
        ax.plot(det, _col(detector_values, name), "o", ms=3)
        ax.set_ylabel(f"{name} [{_unit(detector_values, name)}]")
    axes[-1].set_xlabel("detector")
    axes[0].set_title(f"visit {visit}: per-detector values")
    return fig


def residuals_vs_mag_plot(star_residuals: pa.Table, tract: int):
    """Per isolated-star source of a tract: photometric and astrometric residuals against magnitude, per band."""
    fig = _figure(8.0, 6.5)
    ax_m, ax_a = fig.subplots(2, 1, sharex=True)
    used = _col(star_residuals, "used").astype(bool)
    band = _col(star_residuals, "band").astype(str)
    mag = _col(star_residuals, "mag")
    dmag = _col(star_residuals, "dmag")
    dpos = np.hypot(_col(star_residuals, "dra"), _col(star_residuals, "ddec"))
    for b in sorted(set(band[used])):
        mine = used & (band == b)
        ax_m.plot(mag[mine], dmag[mine], ".", ms=1.5, alpha=0.5, label=b)
        ax_a.plot(mag[mine], dpos[mine], ".", ms=1.5, alpha=0.5, label=b)
    ax_m.axhline(0.0, color="k", lw=0.5)
    ax_m.set_ylabel("mag - star mean [mmag]")
    ax_a.set_ylabel("|position - star mean| [mas]")
    ax_a.set_xlabel("PSF magnitude [mag]")
    ax_m.set_title(f"tract {tract}: isolated-star residuals ({int(used.sum())} sources)")
    if used.any():
        ax_m.legend(markerscale=6, fontsize="small")
    return fig


def offset_field_plot(matches: pa.Table, visit: int, detector: int):
    """One detector's astrometric offsets from the reference catalog, as arrows on the sky."""
    fig = _figure(6.5, 6.5)
    ax = fig.subplots()
    ra, dec = _col(matches, "ra"), _col(matches, "dec")
    dra, ddec = _col(matches, "dra"), _col(matches, "ddec")
    if ra.size:
        q = ax.quiver(ra, dec, dra, ddec, angles="uv", pivot="tail", width=0.003)
        scale = float(np.nanmedian(np.hypot(dra, ddec))) if np.isfinite(dra).any() else 1.0
        ax.quiverkey(q, 0.95, 0.03, scale or 1.0, f"{scale:.0f} mas (median)", labelpos="W", coordinates="axes")
    ax.invert_xaxis()  # RA grows to the east, on the left of a sky plot
    ax.set_xlabel("RA [deg]")
    ax.set_ylabel("Dec [deg]")
    ax.set_title(f"visit {visit} detector {detector}: offsets from the reference catalog ({ra.size} matches)",
                 fontsize="medium")
    return fig
