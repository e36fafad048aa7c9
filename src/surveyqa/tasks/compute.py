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
from surveyqa.metrics.columns import to_frame
from surveyqa.metrics.engine import measure
from surveyqa.metrics.library import available_metrics, get_metric
from surveyqa.metrics.library.calibration import star_residuals
from surveyqa.metrics.library.health import column_nan_table, nan_explained
from surveyqa.tasks.rows import MetricRows
from surveyqa.tasks.values import attach_specs, concat_values, to_metric_values

__all__ = ["visit_qa", "tract_qa", "calibration_qa", "matched_sources", "isolated_star_tables",
           "primary_objects", "MATCH_COLUMNS", "sample_stars", "detector_reference_qa", "NoReferenceObjectsError",
           "library_metrics", "DEBUG_UNITS"]

log = logging.getLogger(__name__)


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


def _measure(name: str, table, group_by, level: str, fixed=None, rows: MetricRows | None = None,
             context=None, keep=None) -> pa.Table:
    """Measure one metric: its values in the metric-value schema; its per-row result kept in ``rows``.

    ``context``: columns that place each per-row row (`surveyqa.tasks.rows.metric_row_table`),
    or a function of the per-row table that returns them; ``keep``: the per-row rows that
    belong to this quantum.
    """
    result = measure(get_metric(name), table, group_by=group_by)
    if rows is not None:
        rows.add(result, group_by, fixed, context(result.per_row) if callable(context) else context, keep)
    return to_metric_values(result.values, level, fixed)


def _places(table, n_rows: int, ids: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Context columns of per-row rows that are the table's rows: ids, ``ra``, ``dec`` (deg) and
    ``mag`` as the engine reads them (`surveyqa.metrics.columns`: units, fluxes in nJy)."""
    frame = to_frame(table)
    out = {name: np.asarray(frame.raw[name]) for name in ids if name in frame.raw}
    for logical in ("ra", "dec", "mag"):
        if frame.can_resolve(logical):
            out[logical] = np.asarray(frame.get(logical), dtype=float)
    return {k: v for k, v in out.items() if len(v) == n_rows}


def _try_library(table, group_by, level, fixed, rows: MetricRows | None = None, context=None) -> list[pa.Table]:
    """Run every SRD metric of the library that the table has the columns for."""
    out = []
    for name in library_metrics():
        try:
            values = _measure(name, table, group_by, level, fixed, rows, context)
            if name.endswith(("_gri", "_uzy")):  # a band-group variant applies to its own bands only
                group = name[-3:]
                keep = [b is not None and b in group for b in values.column("band").to_pylist()]
                values = values.filter(pa.array(keep))
                if rows is not None:
                    rows.restrict(name, lambda t, g=group: pa.array(
                        [b is not None and b in g for b in t.column("band").to_pylist()]))
            out.append(values)
        except (MissingColumnError, InsufficientDataError) as exc:
            log.debug("%s not measured: %s", name, exc)
        except SurveyQAError as exc:
            log.info("%s not measured: %s", name, exc)
    return out


def visit_qa(sources: pa.Table, ccd: pa.Table, visit: int, instrument: str | None = None,
             debug: dict | None = None) -> tuple[pa.Table, pa.Table, pa.Table]:
    """QA of one visit: the metrics' per-row values, per-detector values and metric values.

    Parameters
    ----------
    sources : pyarrow.Table
        The visit's ``sourceTable_visit``.
    ccd : pyarrow.Table
        ``ccdVisitTable`` (all visits: zero-point offsets are relative to the band's median).
    visit : int
        The visit id.
    debug : dict, optional
        If given, receives the intermediate tables a developer would look at (``sources``: each
        source with the context the metrics joined to it); the values returned are the same.

    Returns
    -------
    metric_rows, detector_values, metric_values : pyarrow.Table
        ``metric_rows``: every metric's per-row result (`surveyqa.tasks.rows`), per source for
        the source metrics, per detector for the zero points, per column for the NaN check.
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

    rows = MetricRows()
    values = []
    places = _places(src, src.num_rows, ids=("sourceId",))
    if debug is not None:
        debug["sources"] = _debug_table({"detector": det, **places, "pixelScale": _np(src, "pixelScale"),
                                         "detector_area": _np(src, "detector_area")})
    for name in ("health.sourceCount", "health.sourceDensity", "health.psfFwhm"):
        values.append(_measure(name, src, ("visit", "detector"), "detector", fixed, rows, places))
        if name != "health.sourceDensity":
            values.append(_measure(name, src, ("visit",), "visit", fixed, rows, places))
    ccd_places = _places(ccd_visit, ccd_visit.num_rows)
    ccd_places.pop("mag", None)
    values.append(_measure("health.zeroPoint", ccd_visit, ("visit", "detector"), "detector", fixed, rows, ccd_places))
    values.append(_measure("health.zeroPoint", ccd_visit, ("visit",), "visit", fixed, rows, ccd_places))
    # The offsets are relative to the band's median over every visit: measured on all of ccd,
    # this visit's values and per-row rows kept.
    mine_rows = np.asarray(_np(ccd, "visit")) == visit
    all_places = _places(ccd, ccd.num_rows)
    all_places.pop("mag", None)
    for group_by, level in ((("visit", "detector"), "detector"), (("visit",), "visit")):
        offsets = _measure("health.zeroPointOffset", ccd, group_by, level, fixed, rows, all_places, keep=mine_rows)
        values.append(offsets.filter(pc.equal(offsets.column("visit"), visit)))
    melted = _nan_table(sources, {"visit": np.full(sources.num_rows, visit)})
    melted.pop("band")
    values.append(_measure("health.nanFraction", melted, ("visit", "column"), "visit", fixed, rows))
    metric_values = attach_specs(concat_values(values), instrument)
    detector_values = _pivot_detectors(metric_values, ccd_visit, visit, band)
    return rows.table(), detector_values, metric_values


def _debug_table(columns: dict) -> pa.Table:
    """A debug output from intermediate columns, with the units of `DEBUG_UNITS` in its schema.

    The arrays are only read: the tables the metrics measure are the same with or without it.
    """
    table = pa.table({name: pa.array(np.asarray(col)) for name, col in columns.items()})
    return _with_units(table, {k: v for k, v in DEBUG_UNITS.items() if k in table.column_names})


#: Units of the columns of the debug tables (`visit_qa`, `calibration_qa`, `detector_reference_qa`).
DEBUG_UNITS = {"ra": "deg", "dec": "deg", "mag": "mag", "pixelScale": "arcsec / pix", "detector_area": "arcmin2",
               "dmag": "mmag", "dmag_rel": "mmag", "dra": "mas", "ddec": "mas", "dra_rel": "mas", "ddec_rel": "mas",
               "psfFlux": "nJy", "psfFluxErr": "nJy"}


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


def calibration_qa(matched: pa.Table, tract: int, rows: MetricRows | None = None,
                   debug: dict | None = None) -> list[pa.Table]:
    """Photometric and astrometric offsets (and scatter) of every visit and (visit, detector) in a
    tract, from its isolated stars (`surveyqa.metrics.library.calibration`); their per-source
    residuals kept in ``rows``, and, with ``debug``, as ``star_residuals`` (with each source's
    magnitude and S/N)."""
    n = matched.num_rows
    needed = ("obj_index", "visit", "detector", "band", "ra", "dec", "psfFlux", "psfFluxErr")
    if n == 0 or any(c not in matched.column_names for c in needed):
        return []
    frame = to_frame(matched)  # magnitudes, S/N and positions as the engine reads them
    with np.errstate(invalid="ignore", divide="ignore"):
        mag, snr = np.asarray(frame.get("mag"), float), np.asarray(frame.get("snr"), float)
    ra, dec = np.asarray(frame.get("ra"), float), np.asarray(frame.get("dec"), float)
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
    obj = _np(matched, "obj_index")[idx]
    res = star_residuals(obj, visit, detector, band, mag[idx], ra[idx], dec[idx])
    table = {"visit": visit, "detector": detector, "band": band, "tract": np.full(idx.size, tract, np.int64), **res}
    places = {"obj_index": obj, "ra": ra[idx], "dec": dec[idx], "mag": mag[idx]}
    if "sourceId" in matched.column_names:
        places["sourceId"] = _np(matched, "sourceId")[idx]
    if debug is not None:
        debug["star_residuals"] = _debug_table({**table, **places, "snr": snr[idx]})
    fixed = {"tract": tract}
    values = []
    for name in ("health.visitPhotOffset", "health.visitAstromOffset", "health.photScatter", "health.astromScatter"):
        values.append(_measure(name, table, ("visit", "band"), "visit", fixed, rows, places))
    for name in ("health.detectorPhotOffset", "health.detectorAstromOffset", "health.photScatter",
                 "health.astromScatter"):
        values.append(_measure(name, table, ("visit", "detector", "band"), "detector", fixed, rows, places))
    return values


def tract_qa(objects: pa.Table, associations: pa.Table | None, presources: pa.Table | None, tract: int,
             instrument: str | None = None, max_stars: int | None = 10000,
             visit_sources: dict[int, pa.Table] | None = None, debug: dict | None = None
             ) -> tuple[pa.Table, pa.Table]:
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
    debug : dict, optional
        If given, receives the intermediate tables (`calibration_qa`'s ``star_residuals``); the
        values returned are the same.

    Returns
    -------
    metric_rows, metric_values : pyarrow.Table
        ``metric_rows``: every metric's per-row result (`surveyqa.tasks.rows`): per coadd object,
        per cell of a patch, per column, per isolated-star source, per star, per pair of stars.
    """
    fixed = {"tract": tract}
    rows = MetricRows()
    objects = primary_objects(objects)
    obj = objects if "tract" in objects.column_names else objects.append_column(
        "tract", pa.array(np.full(objects.num_rows, tract, np.int64)))
    places = _places(obj, obj.num_rows, ids=("objectId",))
    values = [
        _measure("health.objectCount", obj, ("tract", "patch"), "patch", fixed, rows, places),
        _measure("health.objectCount", obj, ("tract",), "tract", fixed, rows, places),
        _measure("health.objectDensity", obj, ("tract", "patch"), "patch", fixed, rows),
        _measure("health.emptyCellFraction", obj, ("tract", "patch"), "patch", fixed, rows),
    ]
    melted = _nan_table(objects, {"tract": np.full(objects.num_rows, tract, np.int64)})
    values.append(_measure("health.nanFraction", melted, ("tract", "band", "column"), "tract", fixed, rows))
    sources, stars = isolated_star_tables(associations, presources)
    if sources is not None and sources.num_rows:
        matched = matched_sources(sources, visit_sources)
        values.extend(calibration_qa(matched, tract, rows, debug))
        assoc = matched.append_column("tract", pa.array(np.full(matched.num_rows, tract, np.int64)))
        if "psfFlux" in assoc.column_names:
            sample, note = sample_stars(assoc, max_stars, seed=tract)
            srd = _try_library(sample, ("tract", "band"), "tract", fixed, rows, _star_context(stars, objects))
            if note:
                srd = [t.set_column(t.schema.get_field_index("note"), "note",
                                    pc.coalesce(t.column("note"), pa.scalar(note))) for t in srd]
            values.extend(srd)
    return rows.table(), attach_specs(concat_values(values), instrument)


def _star_context(stars: pa.Table | None, objects: pa.Table):
    """The context of the SRD metrics' per-row rows (a star, a star's source, a pair of stars):
    the star's ``isolated_star_id``, position and patch (that of the nearest coadd object); a
    pair is placed at its first star. Stars are the rows of the per-star table (``obj_index``)."""
    if stars is None or not {"isolated_star_id", "ra", "dec"} <= set(stars.column_names):
        return None
    from scipy.spatial import cKDTree

    from surveyqa.metrics.library.astrometry import unit_vectors

    ids = _np(stars, "isolated_star_id")
    frame = to_frame(stars.select(["ra", "dec"]))
    ra, dec = np.asarray(frame.get("ra"), float), np.asarray(frame.get("dec"), float)
    patch = np.full(ids.size, -1, np.int64)
    if objects.num_rows and ids.size:
        obj = to_frame(objects.select(["coord_ra", "coord_dec"]))
        tree = cKDTree(unit_vectors(np.asarray(obj.get("ra"), float), np.asarray(obj.get("dec"), float)))
        _, nearest = tree.query(unit_vectors(ra, dec))
        patch = _np(objects, "patch").astype(np.int64)[nearest]

    def context(per_row: pa.Table) -> dict[str, np.ndarray] | None:
        key = next((k for k in ("obj_id", "obj_id_1") if k in per_row.column_names), None)
        if key is None:
            return None
        star = per_row.column(key).to_numpy(zero_copy_only=False).astype(np.int64)
        if star.size and (star.min() < 0 or star.max() >= ids.size):
            return None  # not row numbers of the per-star table (another association): no context
        return {"isolated_star_id": ids[star], "ra": ra[star], "dec": dec[star], "patch": patch[star]}

    return context


def detector_reference_qa(sources: pa.Table, refcat: pa.Table, region, visit: int, detector: int,
                          instrument: str | None = None, radius_arcsec: float = 1.0,
                          debug: dict | None = None) -> tuple[pa.Table, pa.Table]:
    """Match one detector's sources to the reference catalog: astrometric and photometric offsets
    (per-row values, one per matched source, and metric values).

    Parameters
    ----------
    sources : pyarrow.Table
        The visit's sources (other detectors are ignored).
    refcat : pyarrow.Table
        Reference catalog: ``coord_ra``, ``coord_dec`` (deg), ``{band}_flux`` (nJy).
    region : lsst.sphgeom.Region or None
        The detector's sky region; reference objects outside it are not used.
    debug : dict, optional
        If given, receives ``matches``: each matched source with its offsets (mas, mmag) and place.

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
    rows = MetricRows()
    places = {"ra": ra[ok], "dec": dec[ok], "mag": np.asarray(to_frame(matches).get("mag"), float)}
    if "sourceId" in src.column_names:
        places["sourceId"] = _np(src, "sourceId")[ok]
    if debug is not None:
        debug["matches"] = _debug_table({**matches, **places})
    values = [_measure(name, matches, ("visit", "detector"), "detector", fixed, rows, places)
              for name in ("health.astromOffset", "health.photRefOffset")]
    return rows.table(), attach_specs(concat_values(values), instrument)
