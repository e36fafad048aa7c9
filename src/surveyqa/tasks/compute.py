"""What each QA quantum computes, as pure functions of Arrow tables (no Butler here).

The PipelineTasks (`surveyqa.tasks.pipeline_tasks`) only read inputs, call these and write the
results, so the same code runs under `pipetask`, `surveyqa run` and in a notebook.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveyqa.errors import InsufficientDataError, MissingColumnError, SurveyQAError
from surveyqa.metrics.engine import measure
from surveyqa.metrics.library import available_metrics, get_metric
from surveyqa.metrics.library.calibration import star_residuals
from surveyqa.metrics.library.health import column_nan_table, nan_explained
from surveyqa.tasks.values import attach_specs, concat_values, to_metric_values

__all__ = ["visit_qa", "tract_qa", "calibration_qa", "matched_sources", "isolated_star_tables",
           "primary_objects", "MATCH_COLUMNS", "sample_stars", "detector_reference_qa", "NoReferenceObjectsError", "library_metrics",
           "SOURCE_VALUE_COLUMNS"]

log = logging.getLogger(__name__)

AB_NJY = 31.4


class NoReferenceObjectsError(RuntimeError):
    """A detector has no reference-catalog object: its calibration cannot be checked (as in DP0.2)."""


def library_metrics() -> list[str]:
    """The SRD metrics of the library the tract task runs: PA1, the design variants of PA2, PF1,
    AD and AF (minimum and stretch variants are the same measurement against other thresholds),
    AM1-3 and TE1-2."""
    return [m for m in available_metrics() if not m.startswith("health.")
            and "_minimum" not in m and "_stretch" not in m]


def _np(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _measure(name: str, table, group_by, level: str, fixed=None) -> pa.Table:
    result = measure(get_metric(name), table, group_by=group_by)
    return to_metric_values(result.values, level, fixed)


def _try_library(table, group_by, level, fixed) -> list[pa.Table]:
    """Run every SRD metric of the library that the table has the columns for."""
    out = []
    for name in library_metrics():
        try:
            values = _measure(name, table, group_by, level, fixed)
            if name.endswith(("_gri", "_uzy")):  # a band-group variant applies to its own bands only
                group = name[-3:]
                keep = [b is not None and b in group for b in values.column("band").to_pylist()]
                values = values.filter(pa.array(keep))
            out.append(values)
        except (MissingColumnError, InsufficientDataError) as exc:
            log.debug("%s not measured: %s", name, exc)
        except SurveyQAError as exc:
            log.info("%s not measured: %s", name, exc)
    return out


SOURCE_VALUE_COLUMNS = ("sourceId", "visit", "detector", "band", "ra", "dec", "psfMag", "snr", "psfFwhm",
                        "extendedness", "psfFlux_flag")


def visit_qa(sources: pa.Table, ccd: pa.Table, visit: int, instrument: str | None = None
             ) -> tuple[pa.Table, pa.Table, pa.Table]:
    """QA of one visit: per-source values, per-detector values and metric values.

    Parameters
    ----------
    sources : pyarrow.Table
        The visit's ``sourceTable_visit``.
    ccd : pyarrow.Table
        ``ccdVisitTable`` (all visits: zero-point offsets are relative to the band's median).
    visit : int
        The visit id.

    Returns
    -------
    source_values, detector_values, metric_values : pyarrow.Table
    """
    ccd = ccd.rename_columns(["visit" if c == "visitId" else c for c in ccd.column_names])
    if "sky_source" in sources.column_names:  # empty-sky measurements are not sources (Rubin's convention)
        sources = sources.filter(pc.invert(pc.fill_null(sources.column("sky_source"), False)))
    ccd_visit = ccd.filter(pc.equal(ccd.column("visit"), visit))
    band = sources.column("band")[0].as_py() if sources.num_rows else (
        ccd_visit.column("band")[0].as_py() if ccd_visit.num_rows else None)
    fixed = {"visit": visit, "band": band}
    det = _np(sources, "detector").astype(np.int64)
    order_ccd = np.argsort(_np(ccd_visit, "detector"), kind="stable")
    ccd_visit = ccd_visit.take(pa.array(order_ccd))
    ccd_det = _np(ccd_visit, "detector").astype(np.int64)
    # Per-source context joined from the detector summary: pixel scale and detector area.
    scale = _np(ccd_visit, "pixelScale").astype(float)
    area = (_np(ccd_visit, "xSize") * _np(ccd_visit, "ySize")).astype(float) * (scale / 60.0) ** 2
    row_ccd = np.searchsorted(ccd_det, det) if ccd_det.size else np.zeros(det.size, int)
    row_ccd = np.clip(row_ccd, 0, max(ccd_det.size - 1, 0))
    known = ccd_det.size > 0 and np.all(ccd_det[row_ccd] == det)
    src = sources.append_column("pixelScale", pa.array(scale[row_ccd] if known else np.full(det.size, np.nan)))
    src = src.append_column("detector_area", pa.array(area[row_ccd] if known else np.full(det.size, np.nan)))

    values = []
    for name in ("health.sourceCount", "health.sourceDensity", "health.psfFwhm"):
        values.append(_measure(name, src, ("visit", "detector"), "detector", fixed))
        if name != "health.sourceDensity":
            values.append(_measure(name, src, ("visit",), "visit", fixed))
    values.append(_measure("health.zeroPoint", ccd_visit, ("visit", "detector"), "detector", fixed))
    values.append(_measure("health.zeroPoint", ccd_visit, ("visit",), "visit", fixed))
    offsets = measure(get_metric("health.zeroPointOffset"), ccd, group_by=("visit", "detector"))
    mine = offsets.values.filter(pc.equal(offsets.values.column("visit"), visit))
    values.append(to_metric_values(mine, "detector", fixed))
    offsets_v = measure(get_metric("health.zeroPointOffset"), ccd, group_by=("visit",))
    values.append(to_metric_values(offsets_v.values.filter(pc.equal(offsets_v.values.column("visit"), visit)),
                                   "visit", fixed))
    melted = _nan_table(sources, {"visit": np.full(sources.num_rows, visit)})
    melted.pop("band")
    values.append(_measure("health.nanFraction", melted, ("visit", "column"), "visit", fixed))
    metric_values = attach_specs(concat_values(values), instrument)

    # Per-source values, full granularity, sorted by detector.
    flux, err = _np(sources, "psfFlux").astype(float), _np(sources, "psfFluxErr").astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = -2.5 * np.log10(flux) + AB_NJY
        snr = flux / err
        fwhm = 2.3548 * np.sqrt(0.5 * (_np(sources, "ixxPSF") + _np(sources, "iyyPSF"))) * np.asarray(src.column("pixelScale"))
    order = np.argsort(det, kind="stable")
    source_values = pa.table({
        "sourceId": sources.column("sourceId"), "visit": pa.array(np.full(det.size, visit, np.int64)),
        "detector": pa.array(det), "band": pa.array([band] * det.size, pa.string()),
        "ra": sources.column("ra"), "dec": sources.column("dec"),
        "psfMag": pa.array(mag), "snr": pa.array(snr), "psfFwhm": pa.array(fwhm),
        "extendedness": sources.column("extendedness"), "psfFlux_flag": sources.column("psfFlux_flag"),
    }).take(pa.array(order))
    source_values = _with_units(source_values, {"ra": "deg", "dec": "deg", "psfMag": "mag", "psfFwhm": "arcsec"})
    detector_values = _pivot_detectors(metric_values, ccd_visit, visit, band)
    return source_values, detector_values, metric_values


def _nan_table(table: pa.Table, keys: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`column_nan_table` of a catalog, counting only the NaN that no flag of the row explains."""
    cols = {c: _np(table, c) for c in table.column_names
            if pa.types.is_floating(table.schema.field(c).type) or pa.types.is_boolean(table.schema.field(c).type)}
    floats = {c: v for c, v in cols.items() if v.dtype.kind == "f"}
    return column_nan_table(floats, keys, nan_explained(cols))


def primary_objects(objects: pa.Table) -> pa.Table:
    """The unique, real objects of an ``objectTable_tract``: ``detect_isPrimary`` rows that are not
    ``sky_object`` (every patch's detections are kept, overlaps included, plus empty-sky rows)."""
    mask = None
    if "detect_isPrimary" in objects.column_names:
        mask = pc.fill_null(objects.column("detect_isPrimary"), False)
    if "sky_object" in objects.column_names:
        real = pc.invert(pc.fill_null(objects.column("sky_object"), False))
        mask = real if mask is None else pc.and_(mask, real)
    return objects if mask is None else objects.filter(mask)


def _with_units(table: pa.Table, units: dict[str, str]) -> pa.Table:
    fields = [f.with_metadata({"unit": units[f.name]}) if f.name in units else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _pivot_detectors(metric_values: pa.Table, ccd_visit: pa.Table, visit: int, band: str | None) -> pa.Table:
    """One row per detector: the detector-level metric values side by side, plus the summary columns."""
    det_rows = metric_values.filter(pc.equal(metric_values.column("level"), "detector"))
    detectors = np.unique(np.concatenate([_np(ccd_visit, "detector").astype(np.int64),
                                          _np(det_rows, "detector").astype(np.int64)]))
    cols: dict[str, object] = {"visit": np.full(detectors.size, visit, np.int64), "detector": detectors,
                               "band": [band] * detectors.size}
    units = {}
    for name in sorted(set(det_rows.column("metric").to_pylist())):
        sub = det_rows.filter(pc.equal(det_rows.column("metric"), name))
        col = np.full(detectors.size, np.nan)
        col[np.searchsorted(detectors, _np(sub, "detector").astype(np.int64))] = _np(sub, "value")
        short = name.split(".", 1)[1]
        cols[short] = col
        units[short] = sub.column("unit")[0].as_py()
    ccd_det = _np(ccd_visit, "detector").astype(np.int64)
    for name, unit in (("seeing", "arcsec"), ("skyBg", "adu"), ("magLim", "mag"), ("ra", "deg"), ("dec", "deg")):
        if name in ccd_visit.column_names:
            col = np.full(detectors.size, np.nan)
            col[np.searchsorted(detectors, ccd_det)] = _np(ccd_visit, name).astype(float)
            cols[name] = col
            units[name] = unit
    return _with_units(pa.table(cols), units)


def sample_stars(associations: pa.Table, max_stars: int | None, seed: int) -> tuple[pa.Table, str | None]:
    """At most ``max_stars`` isolated stars (all their sources), chosen with a seeded generator.

    The SRD pair metrics (AM, AD, AF, TE) cost grows with the square of the stars per area; a
    bounded, reproducible sample keeps a tract's quantum to about a minute. Returns the table
    and a note for the values (None when nothing was dropped).
    """
    obj = _np(associations, "obj_index")
    stars = np.unique(obj)
    if max_stars is None or stars.size <= max_stars:
        return associations, None
    keep = np.random.default_rng(seed).choice(stars, size=max_stars, replace=False)
    mask = np.isin(obj, keep)
    return associations.filter(pa.array(mask)), (f"computed on a seeded sample of {max_stars} of {stars.size} "
                                                   "isolated stars")


#: Source columns the tract task reads from ``sourceTable_visit`` for its isolated stars (calibrated values).
MATCH_COLUMNS = ["sourceId", "detector", "band", "ra", "dec", "psfFlux", "psfFluxErr", "psfFlux_flag", "extendedness",
                 "pixelFlags_saturatedCenter", "pixelFlags_edge", "pixelFlags_interpolatedCenter", "pixelFlags_bad",
                 "pixelFlags_cr", "centroid_flag"]
#: Flags that keep a source out of the calibration checks (measurements the pipeline marks as bad).
CALIBRATION_BAD_FLAGS = ("psfFlux_flag", "pixelFlags_saturatedCenter", "pixelFlags_edge",
                         "pixelFlags_interpolatedCenter", "pixelFlags_bad", "pixelFlags_cr", "centroid_flag")
#: The calibration checks use the isolated stars whose median S/N over their sources (per band) is at least
#: this: a cut on each source's own S/N would keep only the sources scattered bright near the cut, and
#: bias the shallow visits bright (Eddington bias).
CALIBRATION_MIN_SNR = 30.0


def isolated_star_tables(a: pa.Table | None, b: pa.Table | None) -> tuple[pa.Table | None, pa.Table | None]:
    """(sources, stars) of the isolated-star association, whichever dataset holds which.

    lsst.pipe.tasks' IsolatedStarAssociationTask writes the per-source table (``obj_index``,
    ``source_row``, ...) as ``isolated_star_presources`` and the per-star table
    (``isolated_star_id``, ``source_cat_index``, ``nsource_{band}``) as
    ``isolated_star_presource_associations``; older pipelines and other tools swap or rename them,
    so the tables are told apart by their columns.
    """
    tables = [t for t in (a, b) if t is not None]
    sources = next((t for t in tables if "obj_index" in t.column_names), None)
    stars = next((t for t in tables if t is not sources and "isolated_star_id" in t.column_names), None)
    return sources, stars


def matched_sources(sources: pa.Table, visit_sources: dict[int, pa.Table] | None) -> pa.Table:
    """The isolated stars' sources with their calibrated measurements from ``sourceTable_visit``.

    The association is made on the pre-calibration sources; a final calibration's error (a zero
    point, a detector's WCS) is in ``sourceTable_visit``, so each source's values are taken from
    there by ``sourceId``. Without visit tables (or for sources they lack) the association's own
    columns are used where it has them.
    """
    if not visit_sources:
        return sources
    parts = []
    for visit, table in visit_sources.items():
        cols = {c: table.column(c) for c in table.column_names}
        cols["visit"] = pa.array(np.full(table.num_rows, visit, np.int64))
        parts.append(pa.table(cols))
    calibrated = pa.concat_tables(parts, promote_options="default")
    sid = _np(calibrated, "sourceId").astype(np.int64)
    order = np.argsort(sid, kind="stable")
    want = _np(sources, "sourceId").astype(np.int64)
    pos = np.clip(np.searchsorted(sid[order], want), 0, max(sid.size - 1, 0))
    found = (sid.size > 0) & (sid[order][pos] == want) if sid.size else np.zeros(want.size, bool)
    rows = order[pos][found]
    out = {"obj_index": pa.array(_np(sources, "obj_index")[found].astype(np.int64))}
    for name in calibrated.column_names:
        out[name] = calibrated.column(name).take(pa.array(rows))
    missing = int(want.size - found.sum())
    if missing:
        log.info("%d isolated-star sources have no row in sourceTable_visit (not used)", missing)
    return pa.table(out)


def calibration_qa(matched: pa.Table, tract: int) -> list[pa.Table]:
    """Photometric and astrometric offsets (and scatter) of every visit and (visit, detector) in a
    tract, from its isolated stars (`surveyqa.metrics.library.calibration`)."""
    n = matched.num_rows
    needed = ("obj_index", "visit", "detector", "band", "ra", "dec", "psfFlux", "psfFluxErr")
    if n == 0 or any(c not in matched.column_names for c in needed):
        return []
    flux, err = _np(matched, "psfFlux").astype(float), _np(matched, "psfFluxErr").astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = -2.5 * np.log10(flux) + AB_NJY
        snr = flux / err
    good = np.isfinite(snr)
    for flag in CALIBRATION_BAD_FLAGS:
        if flag in matched.column_names:
            good &= ~_np(matched, flag).astype(bool)
    if "extendedness" in matched.column_names:
        with np.errstate(invalid="ignore"):
            good &= ~(_np(matched, "extendedness").astype(float) >= 0.5)
    from surveyqa.metrics.actions.groups import factorize_keys, group_percentile

    all_band = _np(matched, "band").astype(str)
    codes, _ = factorize_keys([_np(matched, "obj_index")[good], all_band[good]], int(good.sum()))
    star_snr, _ = group_percentile(codes, snr[good], int(codes.max()) + 1 if codes.size else 0, 50.0)
    bright = np.zeros(n, bool)
    bright[np.flatnonzero(good)] = star_snr[codes] >= CALIBRATION_MIN_SNR
    idx = np.flatnonzero(bright)
    band = all_band[idx]
    visit = _np(matched, "visit").astype(np.int64)[idx]
    detector = _np(matched, "detector").astype(np.int64)[idx]
    res = star_residuals(_np(matched, "obj_index")[idx], visit, detector, band, mag[idx],
                         _np(matched, "ra").astype(float)[idx], _np(matched, "dec").astype(float)[idx])
    rows = {"visit": visit, "detector": detector, "band": band, "tract": np.full(idx.size, tract, np.int64), **res}
    fixed = {"tract": tract}
    values = []
    for name in ("health.visitPhotOffset", "health.visitAstromOffset", "health.photScatter", "health.astromScatter"):
        values.append(_measure(name, rows, ("visit", "band"), "visit", fixed))
    for name in ("health.detectorPhotOffset", "health.detectorAstromOffset", "health.photScatter",
                 "health.astromScatter"):
        values.append(_measure(name, rows, ("visit", "detector", "band"), "detector", fixed))
    return values


def tract_qa(objects: pa.Table, associations: pa.Table | None, presources: pa.Table | None, tract: int,
             instrument: str | None = None, max_stars: int | None = 10000,
             visit_sources: dict[int, pa.Table] | None = None) -> tuple[pa.Table, pa.Table]:
    """QA of one tract: per-(isolated star, band) values and metric values (object counts, density
    and empty cells per patch, NaN fraction per column and band, SRD metrics per band, and the
    calibration offsets of each visit and detector from the isolated stars).

    Parameters
    ----------
    objects : pyarrow.Table
        ``objectTable_tract`` (needs ``x``, ``y``, ``patch`` and band-prefixed flux columns); only
        its primary, real rows are counted (`primary_objects`).
    associations, presources : pyarrow.Table or None
        The two tables of the tract's isolated-star association, in either order
        (`isolated_star_tables`).
    max_stars : int or None
        The SRD metrics use at most this many isolated stars (a seeded sample, see `sample_stars`).
    visit_sources : dict of visit -> pyarrow.Table, optional
        ``sourceTable_visit`` columns (`MATCH_COLUMNS`) of the visits overlapping the tract: the
        calibrated values of the isolated stars' sources.

    Returns
    -------
    object_values, metric_values : pyarrow.Table
    """
    fixed = {"tract": tract}
    objects = primary_objects(objects)
    obj = objects if "tract" in objects.column_names else objects.append_column(
        "tract", pa.array(np.full(objects.num_rows, tract, np.int64)))
    values = [
        _measure("health.objectCount", obj, ("tract", "patch"), "patch", fixed),
        _measure("health.objectCount", obj, ("tract",), "tract", fixed),
        _measure("health.objectDensity", obj, ("tract", "patch"), "patch", fixed),
        _measure("health.emptyCellFraction", obj, ("tract", "patch"), "patch", fixed),
    ]
    melted = _nan_table(objects, {"tract": np.full(objects.num_rows, tract, np.int64)})
    values.append(_measure("health.nanFraction", melted, ("tract", "band", "column"), "tract", fixed))
    object_values = _empty_object_values()
    sources, stars = isolated_star_tables(associations, presources)
    if sources is not None and sources.num_rows:
        matched = matched_sources(sources, visit_sources)
        values.extend(calibration_qa(matched, tract))
        assoc = matched.append_column("tract", pa.array(np.full(matched.num_rows, tract, np.int64)))
        if "psfFlux" in assoc.column_names:
            sample, note = sample_stars(assoc, max_stars, seed=tract)
            srd = _try_library(sample, ("tract", "band"), "tract", fixed)
            if note:
                srd = [t.set_column(t.schema.get_field_index("note"), "note",
                                    pc.coalesce(t.column("note"), pa.scalar(note))) for t in srd]
            values.extend(srd)
            object_values = _object_values(assoc, stars, objects, tract)
    return object_values, attach_specs(concat_values(values), instrument)


def _empty_object_values() -> pa.Table:
    return pa.table({"isolated_star_id": pa.array([], pa.int64()), "tract": pa.array([], pa.int64()),
                     "patch": pa.array([], pa.int64()), "band": pa.array([], pa.string())})


def _object_values(assoc: pa.Table, presources: pa.Table | None, objects: pa.Table, tract: int) -> pa.Table:
    """Per (isolated star, band): visits, mean magnitude, magnitude and position scatter; sorted by patch."""
    import pandas as pd
    from scipy.spatial import cKDTree

    from surveyqa.metrics.library.astrometry import unit_vectors

    flux = _np(assoc, "psfFlux").astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = -2.5 * np.log10(flux) + AB_NJY
    df = pd.DataFrame({"obj_index": _np(assoc, "obj_index"), "band": _np(assoc, "band").astype(str), "mag": mag,
                       "ra": _np(assoc, "ra").astype(float), "dec": _np(assoc, "dec").astype(float)})
    df = df[np.isfinite(df["mag"])]
    g = df.groupby(["obj_index", "band"], sort=True)
    stats = g.agg(nsource=("mag", "size"), meanMag=("mag", "mean"), magRms=("mag", "std"),
                  ra=("ra", "mean"), dec=("dec", "mean"), raStd=("ra", "std"), decStd=("dec", "std")).reset_index()
    stats["magRms"] *= 1000.0
    stats["posRms"] = np.hypot(stats["raStd"] * np.cos(np.radians(stats["dec"])), stats["decStd"]) * 3.6e6
    ids = _np(presources, "isolated_star_id") if presources is not None else np.arange(stats["obj_index"].max() + 1)
    stats["isolated_star_id"] = np.asarray(ids)[stats["obj_index"].to_numpy()]
    # Patch of each star: that of the nearest coadd object.
    patch = np.full(len(stats), -1, np.int64)
    if objects.num_rows and len(stats):
        tree = cKDTree(unit_vectors(_np(objects, "coord_ra"), _np(objects, "coord_dec")))
        _, nearest = tree.query(unit_vectors(stats["ra"].to_numpy(), stats["dec"].to_numpy()))
        patch = _np(objects, "patch").astype(np.int64)[nearest]
    stats["patch"] = patch
    stats["tract"] = tract
    stats = stats.sort_values(["patch", "isolated_star_id", "band"], kind="stable")
    table = pa.Table.from_pandas(stats[["isolated_star_id", "tract", "patch", "band", "ra", "dec", "nsource",
                                        "meanMag", "magRms", "posRms"]], preserve_index=False)
    return _with_units(table, {"ra": "deg", "dec": "deg", "meanMag": "mag", "magRms": "mmag", "posRms": "mas"})


def detector_reference_qa(sources: pa.Table, refcat: pa.Table, region, visit: int, detector: int,
                          instrument: str | None = None, radius_arcsec: float = 1.0) -> pa.Table:
    """Match one detector's sources to the reference catalog: astrometric and photometric offsets.

    Parameters
    ----------
    sources : pyarrow.Table
        The visit's sources (other detectors are ignored).
    refcat : pyarrow.Table
        Reference catalog: ``coord_ra``, ``coord_dec`` (deg), ``{band}_flux`` (nJy).
    region : lsst.sphgeom.Region or None
        The detector's sky region; reference objects outside it are not used.

    Raises
    ------
    NoReferenceObjectsError
        If no reference object lies in the region (the DP0.2 failure mode).
    """
    from scipy.spatial import cKDTree

    from surveyqa.metrics.library.astrometry import unit_vectors

    src = sources.filter(pc.equal(sources.column("detector"), detector))
    ref_ra, ref_dec = _np(refcat, "coord_ra").astype(float), _np(refcat, "coord_dec").astype(float)
    if region is not None:
        inside = region.contains(np.radians(ref_ra), np.radians(ref_dec))
    else:
        ra, dec = _np(src, "ra"), _np(src, "dec")
        inside = ((ref_ra >= ra.min()) & (ref_ra <= ra.max()) & (ref_dec >= dec.min()) & (ref_dec <= dec.max())
                  if src.num_rows else np.zeros(ref_ra.size, bool))
    ref = refcat.filter(pa.array(inside))
    if ref.num_rows == 0:
        raise NoReferenceObjectsError(f"No reference objects supplied for visit {visit} detector {detector}: "
                                      "the reference catalog does not cover its region")
    band = src.column("band")[0].as_py() if src.num_rows else None
    ra, dec = _np(src, "ra").astype(float), _np(src, "dec").astype(float)
    tree = cKDTree(unit_vectors(_np(ref, "coord_ra"), _np(ref, "coord_dec")))
    dist, j = tree.query(unit_vectors(ra, dec), distance_upper_bound=np.radians(radius_arcsec / 3600.0))
    ok = np.isfinite(dist)
    j = j[ok]
    rra, rdec = _np(ref, "coord_ra")[j], _np(ref, "coord_dec")[j]
    dra = (ra[ok] - rra) * np.cos(np.radians(rdec)) * 3.6e6
    ddec = (dec[ok] - rdec) * 3.6e6
    flux = _np(src, "psfFlux").astype(float)[ok]
    ref_flux = _np(ref, f"{band}_flux")[j] if band and f"{band}_flux" in ref.column_names else np.full(j.size, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        dmag = -2.5 * np.log10(flux / ref_flux) * 1000.0
    matches = {"visit": np.full(j.size, visit, np.int64), "detector": np.full(j.size, detector, np.int64),
               "dra": dra, "ddec": ddec, "dmag": dmag,
               "psfFlux": flux, "psfFluxErr": _np(src, "psfFluxErr").astype(float)[ok],
               "extendedness": _np(src, "extendedness").astype(float)[ok],
               "psfFlux_flag": _np(src, "psfFlux_flag").astype(bool)[ok]}
    fixed = {"visit": visit, "detector": detector, "band": band}
    values = [_measure(name, matches, ("visit", "detector"), "detector", fixed)
              for name in ("health.astromOffset", "health.photRefOffset")]
    return attach_specs(concat_values(values), instrument)
