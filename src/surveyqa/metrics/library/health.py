"""Practical health metrics: counts and densities, empty regions, PSF size, zero points,
non-finite values, and offsets against a reference catalog.

These are the checks that catch the failures Rubin met in DP0.2 processing (RTN-041): a patch
with a hole in its coadd, a column NaN for one band, a visit with a bad calibration, a detector
with a bad astrometric solution. Each is a `Metric` of the engine (compute -> select ->
aggregate); the QA tasks prepare the tables they read (see docs/pipeline.md):

=====================  =======================================  ==============================
metric                 table                                    grouped by
=====================  =======================================  ==============================
sourceCount            single-visit sources                     visit[, detector]
sourceDensity          sources + ``detector_area`` (arcmin2)    visit, detector
objectCount            coadd objects                            tract, patch
objectDensity          coadd objects (``x``, ``y`` in pixels)   tract, patch
emptyCellFraction      coadd objects                            tract, patch
psfFwhm                sources (PSF moments, ``pixelScale``)    visit[, detector]
zeroPoint              ccdVisitTable rows                       visit[, detector]
zeroPointOffset        ccdVisitTable rows (all visits)          visit
nanFraction            `column_nan_table` of any table          visit or tract, band, column
astromOffset           reference matches (``dra``, ``ddec``)    visit, detector
photRefOffset          reference matches (``dmag``)             visit, detector
=====================  =======================================  ==============================
"""

from __future__ import annotations

from collections.abc import Mapping

import astropy.units as u
import numpy as np

from surveyqa.metrics.actions import aggregate as agg
from surveyqa.metrics.actions import select as sel
from surveyqa.metrics.actions.aggregate import Aggregation
from surveyqa.metrics.actions.groups import factorize_keys, group_count, group_percentile, group_sum
from surveyqa.metrics.actions.select import Selection
from surveyqa.metrics.columns import Frame
from surveyqa.metrics.engine import Metric

__all__ = ["METRICS", "CELLS_PER_SIDE", "COADD_PIXEL_SCALE", "split_band_column", "cell_counts", "column_nan_table",
           "explaining_flags", "nan_explained", "ROW_FLAGS"]

#: Cells per patch side for the empty-region search (a 4 x 4 grid).
CELLS_PER_SIDE = 4
#: Coadd pixel scale (arcsec / pixel) when a table does not say (Rubin and HSC coadds: 0.2).
COADD_PIXEL_SCALE = 0.2
BANDS = "ugrizy"


def _sum() -> Aggregation:
    return Aggregation("sum", "sum", lambda v, c, g, r: (group_sum(c, v, g), group_count(c, g)))


def _weighted_mean(weight: str) -> Aggregation:
    def fn(v, c, g, rows):
        w = np.asarray(rows[weight], dtype=float)
        n = group_sum(c, w, g)
        with np.errstate(invalid="ignore", divide="ignore"):
            return group_sum(c, v * w, g) / n, n.astype(np.int64)
    return Aggregation(f"mean weighted by {weight}", f"mean weighted by {weight}", fn)


def _abs_median() -> Aggregation:
    def fn(v, c, g, rows):
        m, n = group_percentile(c, v, g, 50.0)
        return np.abs(m), n
    return Aggregation("|median|", "absolute value of the median", fn)


def _vector_median() -> Aggregation:
    def fn(v, c, g, rows):
        mx, n = group_percentile(c, np.asarray(rows["dra"], float), g, 50.0)
        my, _ = group_percentile(c, np.asarray(rows["ddec"], float), g, 50.0)
        return np.hypot(mx, my), n
    return Aggregation("|median vector|", "length of the vector of the medians of the RA and Dec offsets", fn)


# -- compute steps ---------------------------------------------------------------------------

def _ones(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    return {"value": np.ones(frame.n_rows)}


def _inverse_area(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    return {"value": 1.0 / frame.get("detector_area")}


def _psf_fwhm(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    """FWHM (arcsec) of a Gaussian with the PSF model's second moments at each source."""
    sigma2 = 0.5 * (frame.get("ixx_psf") + frame.get("iyy_psf"))
    scale = frame.get("pixelScale") if frame.can_resolve("pixelScale") else np.full(frame.n_rows, COADD_PIXEL_SCALE)
    with np.errstate(invalid="ignore"):
        return {"value": 2.3548 * np.sqrt(sigma2) * scale}


def _zero_point(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    return {"value": frame.get("zeroPoint")}


def _zero_point_offset(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    """|zero point - median of its band over every visit in the table| (mag)."""
    zp = frame.get("zeroPoint")
    band = np.asarray(frame.get("band")).astype(str)
    codes, (uniq,) = factorize_keys([band], frame.n_rows)
    med, _ = group_percentile(codes, zp, len(uniq), 50.0)
    return {"value": np.abs(zp - med[codes])}


def split_band_column(name: str) -> tuple[str | None, str]:
    """``'i_psfFlux'`` -> ``('i', 'psfFlux')``; a name without a band prefix -> ``(None, name)``."""
    if len(name) > 2 and name[1] == "_" and name[0] in BANDS:
        return name[0], name[2:]
    return None, name


#: Columns whose NaN is explained by the pipeline's centroid or shape flag (DP1 Source / Object names).
_CENTROID = {"x", "y", "xErr", "yErr", "ra", "dec", "raErr", "decErr", "coord_ra", "coord_dec",
             "coord_raErr", "coord_decErr", "centroid_x", "centroid_y"}
_SHAPE = {"ixx", "iyy", "ixy", "ixxPSF", "iyyPSF", "ixyPSF", "ixxDebiasedPSF", "iyyDebiasedPSF", "ixyDebiasedPSF"}
#: Row flags that explain a NaN in any column of the row (no data under the source).
ROW_FLAGS = ("pixelFlags_nodata", "pixelFlags_nodataCenter")


def explaining_flags(name: str) -> list[str]:
    """The flag columns whose True value explains a NaN in column ``name`` (Rubin's naming).

    ``psfFlux`` and ``psfFluxErr`` -> ``psfFlux_flag``; ``i_cModelFlux`` -> ``i_cModelFlux_flag``,
    ``i_cModel_flag``; ``x``, ``ra`` -> ``centroid_flag``; ``ixx`` -> ``shape_flag``; an object
    table's band prefix is kept. Magnitudes are explained through their fluxes (`nan_explained`).
    """
    band, base = split_band_column(name)
    prefix = f"{band}_" if band else ""
    stem = base[:-3] if base.endswith("Err") else base
    out = [f"{stem}_flag"]
    for suffix in ("_instFlux", "Flux"):
        if stem.endswith(suffix):
            out.append(f"{stem[: -len(suffix)]}_flag")
    if stem in _CENTROID:
        out.append("centroid_flag")
    if stem in _SHAPE:
        out += ["shape_flag", "i_flag", "iPSF_flag"]
    out += list(ROW_FLAGS)
    return list(dict.fromkeys(prefix + f if not f.startswith(("pixelFlags", "centroid")) or not prefix else f
                              for f in out)) + ([f"{prefix}{f}" for f in ROW_FLAGS] if prefix else [])


def nan_explained(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """For each floating-point column, the rows where a NaN is the pipeline's own (its flag is set).

    A magnitude (``*Mag``, ``*MagErr``) is explained where its flux is non-positive (no magnitude
    exists) or the flux's NaN is explained. Columns with no flag and no explanation get no entry.
    """
    flags = {k: np.asarray(v).astype(bool) for k, v in columns.items() if np.asarray(v).dtype.kind == "b"}
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        if np.asarray(values).dtype.kind != "f":
            continue
        mask = None
        for flag in explaining_flags(name):
            if flag in flags:
                mask = flags[flag] if mask is None else mask | flags[flag]
        if mask is not None:
            out[name] = mask
    for name in list(columns):
        band, base = split_band_column(name)
        stem = base[:-3] if base.endswith("Err") else base
        if not stem.endswith("Mag"):
            continue
        flux = (f"{band}_" if band else "") + stem[:-3] + "Flux"
        if flux in columns:
            with np.errstate(invalid="ignore"):
                no_mag = ~(np.asarray(columns[flux], float) > 0)
            mask = no_mag & (out[flux] | np.isfinite(columns[flux]) if flux in out else np.isfinite(columns[flux]))
            out[name] = mask | out.get(name, False)
    return out


def column_nan_table(columns: Mapping[str, np.ndarray], keys: Mapping[str, np.ndarray],
                     explained: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Melt a table into one row per (group, column): the percentage of non-finite values.

    Parameters
    ----------
    columns : mapping of name -> array
        The table's columns; only floating-point ones are checked.
    keys : mapping of name -> array
        Group keys per row (``visit``, or ``tract``).
    explained : mapping of name -> bool array, optional
        Rows where a column's NaN is explained by its flag (`nan_explained`): those are not counted.
        The pipeline flagging a measurement it could not make is not a defect; a NaN no flag
        explains is.

    Returns
    -------
    dict of arrays: the keys, ``column`` (without band prefix), ``band`` (from the prefix of an
    object-table column such as ``i_psfFlux``; '' otherwise), ``nan_percent`` and ``n_rows``.
    """
    explained = explained or {}
    n_rows_total = len(next(iter(columns.values()))) if columns else 0
    codes, uniques = factorize_keys(list(keys.values()), n_rows_total)
    n_groups = len(uniques[0]) if uniques else 1
    if not keys:
        codes = np.zeros(n_rows_total, dtype=np.int64)
    n_rows = group_count(codes, n_groups).astype(float)
    out: dict[str, list] = {k: [] for k in keys}
    out.update(column=[], band=[], nan_percent=[], n_rows=[])
    for name, values in columns.items():
        values = np.asarray(values)
        if values.dtype.kind != "f" or name in keys:
            continue
        bad = ~np.isfinite(values)
        if name in explained:
            bad &= ~np.asarray(explained[name], bool)
        bad = group_count(codes, n_groups, weights=bad)
        band, base = split_band_column(name)
        for k, uniq in zip(keys, uniques):
            out[k].extend(uniq)
        out["column"].extend([base] * n_groups)
        out["band"].extend([band or ""] * n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["nan_percent"].extend(100.0 * bad / n_rows)
        out["n_rows"].extend(n_rows)
    return {k: np.asarray(v) for k, v in out.items()}


def _nan_fraction(frame: Frame, keys: Mapping[str, np.ndarray], selection) -> dict[str, np.ndarray]:
    """Per-row value of a melted table (`column_nan_table`): the percentage of non-finite values."""
    return {"value": frame.get("nan_percent"), "n_rows": frame.get("n_rows")}


def cell_counts(x: np.ndarray, y: np.ndarray, tract: np.ndarray, patch: np.ndarray,
                cells: int = CELLS_PER_SIDE) -> dict[str, np.ndarray]:
    """Objects per cell of a ``cells x cells`` grid spanning each patch's extent in pixels.

    A patch's extent is that of its objects (a processed patch is filled edge to edge), so the
    grid needs no skymap; a cell with no object inside it is a hole in the coadd.

    Returns
    -------
    dict of arrays, one row per (tract, patch, cell): ``tract``, ``patch``, ``cell``, ``count``,
    ``area_pix`` (cell area, pixel^2).
    """
    codes, (ut, up) = factorize_keys([tract, patch], x.size)
    g = len(ut)
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    bounds = np.searchsorted(sc, np.arange(g + 1))
    xmin = np.minimum.reduceat(x[order], bounds[:-1]) if g else np.zeros(0)
    xmax = np.maximum.reduceat(x[order], bounds[:-1]) if g else np.zeros(0)
    ymin = np.minimum.reduceat(y[order], bounds[:-1]) if g else np.zeros(0)
    ymax = np.maximum.reduceat(y[order], bounds[:-1]) if g else np.zeros(0)
    wx = np.maximum(xmax - xmin, 1e-9) / cells
    wy = np.maximum(ymax - ymin, 1e-9) / cells
    cx = np.clip(((x - xmin[codes]) / wx[codes]).astype(np.int64), 0, cells - 1)
    cy = np.clip(((y - ymin[codes]) / wy[codes]).astype(np.int64), 0, cells - 1)
    cell_code = codes * cells * cells + cy * cells + cx
    count = np.bincount(cell_code, minlength=g * cells * cells)
    return {
        "tract": np.repeat(ut, cells * cells), "patch": np.repeat(up, cells * cells),
        "cell": np.tile(np.arange(cells * cells), g), "count": count.astype(np.int64),
        "area_pix": np.repeat(wx * wy, cells * cells),
    }


def _cells(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    c = cell_counts(frame.get("x"), frame.get("y"), np.asarray(frame.get("tract")), np.asarray(frame.get("patch")))
    scale = COADD_PIXEL_SCALE
    c["density"] = c["count"] / (c["area_pix"] * (scale / 60.0) ** 2)
    return c


#: The empty-region search aims at this many objects per cell (so that an empty cell is no chance).
OBJECTS_PER_CELL = 20
#: An empty cell is a hole when a ring of populated cells, at most this many cells out, encloses it.
MAX_RING = 6


def enclosed_empty(counts: np.ndarray, max_ring: int = MAX_RING, min_mean: float = OBJECTS_PER_CELL / 2) -> np.ndarray:
    """Cells of a (side x side) grid of counts that are empty and enclosed by populated cells.

    A hole in a coadd is an empty area with objects all around it; the empty cells at a coverage
    edge (a patch half outside the survey, a chip gap of too few visits) have no such ring, and a
    ring reaching past the patch is not known to be populated (letting it count gave false holes
    at the coverage edges of the Rubin-shaped survey). A ring must hold on average at least
    ``min_mean`` objects per cell, so that the emptiness inside it is no statistical chance.
    """
    side = counts.shape[0]
    out = np.zeros(counts.shape, dtype=bool)
    for i, j in zip(*np.nonzero(counts == 0)):
        for k in range(1, max_ring + 1):
            if i - k < 0 or j - k < 0 or i + k >= side or j + k >= side:
                break
            block = counts[i - k:i + k + 1, j - k:j + k + 1]
            ring = np.concatenate([block[0], block[-1], block[1:-1, 0], block[1:-1, -1]])
            if np.all(ring > 0):
                out[i, j] = ring.mean() >= min_mean
                break
    return out


def _empty_cells(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    """Per cell: 100 where it is an enclosed hole (`enclosed_empty`), else 0; the grid of each
    patch has about `OBJECTS_PER_CELL` objects per cell (at least 4 x 4 cells)."""
    x, y = np.asarray(frame.get("x"), float), np.asarray(frame.get("y"), float)
    tract, patch = np.asarray(frame.get("tract")), np.asarray(frame.get("patch"))
    codes, (ut, up) = factorize_keys([tract, patch], x.size)
    parts: dict[str, list] = {"tract": [], "patch": [], "cell": [], "count": [], "value": []}
    for g in range(len(ut)):
        rows = codes == g
        side = int(np.clip(np.sqrt(rows.sum() / OBJECTS_PER_CELL), CELLS_PER_SIDE, 64))
        c = cell_counts(x[rows], y[rows], tract[rows], patch[rows], cells=side)
        hole = enclosed_empty(c["count"].reshape(side, side)).ravel()
        parts["tract"].append(c["tract"]), parts["patch"].append(c["patch"]), parts["cell"].append(c["cell"])
        parts["count"].append(c["count"]), parts["value"].append(100.0 * hole)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def _object_density(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    c = _cells(frame, keys, selection)
    c["value"] = c["density"]
    return c


def _astrom_offset(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    dra, ddec = frame.get("dra"), frame.get("ddec")
    return {"dra": dra, "ddec": ddec, "value": np.hypot(dra, ddec)}


def _phot_offset(frame: Frame, keys, selection) -> dict[str, np.ndarray]:
    return {"value": frame.get("dmag")}


# -- selections ------------------------------------------------------------------------------

def reference_stars() -> Selection:
    """Matched, unresolved, S/N >= 20, unflagged sources (what a calibration would use)."""
    s = sel.unresolved() & sel.snr_min(20.0) & sel.not_flagged() & sel.finite("value")
    return s.named("reference_stars", f"matched reference stars: {s.description}")


ALL = sel.everything()
CT = u.ct
PER_ARCMIN2 = u.arcmin**-2

METRICS = [
    Metric("health.sourceCount", CT, "source", (), _ones, ALL, agg.count(),
           "Number of single-visit sources", higher_is_better=True, min_n=0),
    Metric("health.objectCount", CT, "patch", (), _ones, ALL, agg.count(),
           "Number of coadd objects", higher_is_better=True, min_n=0),
    Metric("health.sourceDensity", PER_ARCMIN2, "source", ("detector_area",), _inverse_area, ALL, _sum(),
           "Single-visit sources per square arcminute of detector", higher_is_better=True, min_n=0),
    Metric("health.objectDensity", PER_ARCMIN2, "patch", ("x", "y", "tract", "patch"), _object_density, ALL,
           agg.mean(), "Coadd objects per square arcminute (mean over the cells of a patch)",
           higher_is_better=True, row_kind="cell"),
    Metric("health.emptyCellFraction", u.percent, "patch", ("x", "y", "tract", "patch"), _empty_cells, ALL,
           agg.mean(), "Percentage of the cells of a patch that are empty and enclosed by populated cells "
           "(a hole in the coadd, not a coverage edge)", row_kind="cell"),
    Metric("health.psfFwhm", u.arcsec, "source", ("ixx_psf", "iyy_psf"), _psf_fwhm, sel.finite("value"),
           agg.median(), "Median FWHM of the PSF model at the sources (from its second moments)"),
    Metric("health.zeroPoint", u.mag, "detector", ("zeroPoint",), _zero_point, sel.finite("value"), agg.median(),
           "Photometric zero point of the detector (median over detectors for a visit)", higher_is_better=True),
    Metric("health.zeroPointOffset", u.mag, "detector", ("zeroPoint", "band"), _zero_point_offset,
           sel.finite("value"), agg.median(),
           "|zero point - median zero point of its band over all visits| (a wrong calibration)"),
    Metric("health.nanFraction", u.percent, "source", ("nan_percent", "n_rows"), _nan_fraction, ALL,
           _weighted_mean("n_rows"), "Percentage of NaN or infinite values in a floating-point column that no flag "
           "explains (on a table melted by column_nan_table)"),
    Metric("health.astromOffset", u.mas, "source", ("dra", "ddec", "extendedness", "snr"), _astrom_offset,
           reference_stars(), _vector_median(),
           "Offset of source positions from the reference catalog: length of the median (dRA cos Dec, dDec)",
           min_n=5),
    Metric("health.photRefOffset", u.mmag, "source", ("dmag", "extendedness", "snr"), _phot_offset,
           reference_stars(), _abs_median(), "|median of (PSF magnitude - reference magnitude)| of bright stars",
           min_n=5),
]
