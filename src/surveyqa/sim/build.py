"""Write a simulated survey into a real Butler repository: dimension records, tables, truth.

`make_survey` is the public entry point; the CLI (`surveyqa sim`) is a thin shell over it.
Visits are made and written one at a time, so memory stays bounded by one visit's sources
plus the isolated-star sources kept for the tract associations.
"""

from __future__ import annotations

import datetime
import logging
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from astropy.table import Table, vstack

from surveyqa.sim.coadd import isolated_stars, object_table, reference_catalog, truth_table
from surveyqa.sim.config import INSTRUMENT, SKYMAP, SimConfig
from surveyqa.sim.geometry import FocalPlane, box_polygon, polygon, tract_boxes
from surveyqa.sim.observe import CCD_UNITS, ccd_visit_rows, observe_visit
from surveyqa.sim.survey import Visit, make_truth, plan_visits

__all__ = ["make_survey", "SimResult"]

log = logging.getLogger(__name__)


@dataclass
class SimResult:
    """What `make_survey` wrote: the collection, sizes, timings (s) and the truth manifest."""

    repo: str
    collection: str
    n_visits: int
    n_sources: int
    n_objects: int
    truth: dict
    timings: dict[str, float] = field(default_factory=dict)


def _timespan(mjd: float, seconds: float):
    from astropy.time import Time
    from lsst.daf.butler import Timespan

    begin = Time(mjd, format="mjd", scale="tai")
    return Timespan(begin, begin + datetime.timedelta(seconds=seconds))


def _insert_dimensions(butler, config: SimConfig, visits: list[Visit]) -> None:
    """Dimension records by hand: instrument, filters, detectors, visits with regions, skymap."""
    fp = FocalPlane.from_config(config)
    reg = butler.registry
    reg.insertDimensionData("instrument", {
        "name": INSTRUMENT, "visit_max": 10**8, "exposure_max": 10**8, "detector_max": 1000,
        "visit_system": 0, "class_name": "surveyqa.sim.SimCam"})
    reg.insertDimensionData("physical_filter", *[
        {"instrument": INSTRUMENT, "name": f"{b}_sim", "band": b} for b in config.bands])
    n = config.detectors_per_side
    reg.insertDimensionData("detector", *[
        {"instrument": INSTRUMENT, "id": d, "full_name": f"R00_S{d // n}{d % n}", "raft": "R00",
         "name_in_raft": f"S{d // n}{d % n}", "purpose": "SCIENCE"} for d in range(config.n_detectors)])
    reg.insertDimensionData("visit_system", {"instrument": INSTRUMENT, "id": 0, "name": "one-to-one"})
    days = sorted({v.day_obs for v in visits})
    reg.insertDimensionData("day_obs", *[{"instrument": INSTRUMENT, "id": d} for d in days])
    reg.insertDimensionData("group", *[{"instrument": INSTRUMENT, "name": str(v.id)} for v in visits])
    exposures, vis, defs, members, vdr = [], [], [], [], []
    for v in visits:
        span = _timespan(v.mjd, v.exposure_time)
        zenith = float(np.degrees(np.arccos(1 / v.airmass)))
        exposures.append({"instrument": INSTRUMENT, "id": v.id, "day_obs": v.day_obs, "group": str(v.id),
                          "physical_filter": v.physical_filter, "obs_id": f"SC_{v.id}", "exposure_time": v.exposure_time,
                          "dark_time": v.exposure_time, "observation_type": "science", "observation_reason": "science",
                          "seq_num": v.seq_num, "seq_start": v.seq_num, "seq_end": v.seq_num,
                          "target_name": f"tract{v.tract}", "science_program": "surveyqa_sim",
                          "tracking_ra": v.ra, "tracking_dec": v.dec, "sky_angle": v.rotation,
                          "zenith_angle": zenith, "has_simulated": True, "can_see_sky": True, "timespan": span})
        ras, decs = fp.corners(v.ra, v.dec, v.rotation)
        vis.append({"instrument": INSTRUMENT, "id": v.id, "day_obs": v.day_obs, "physical_filter": v.physical_filter,
                    "name": f"SC_{v.id}", "seq_num": v.seq_num, "exposure_time": v.exposure_time,
                    "target_name": f"tract{v.tract}", "observation_reason": "science",
                    "science_program": "surveyqa_sim", "zenith_angle": zenith,
                    "region": polygon(ras, decs), "timespan": span})
        defs.append({"instrument": INSTRUMENT, "exposure": v.id, "visit": v.id})
        members.append({"instrument": INSTRUMENT, "visit_system": 0, "visit": v.id})
        for d in range(config.n_detectors):
            dra, ddec = fp.detector_corners(d, v.ra, v.dec, v.rotation)
            vdr.append({"instrument": INSTRUMENT, "visit": v.id, "detector": d, "region": polygon(dra, ddec)})
    reg.insertDimensionData("exposure", *exposures)
    reg.insertDimensionData("visit", *vis)
    reg.insertDimensionData("visit_definition", *defs)
    reg.insertDimensionData("visit_system_membership", *members)
    reg.insertDimensionData("visit_detector_region", *vdr)
    boxes = tract_boxes(config)
    np_ = config.patches_per_side
    reg.insertDimensionData("skymap", {"name": SKYMAP, "hash": f"surveyqa-sim-{config.tract_size}-{np_}".encode(),
                                       "tract_max": 10**5, "patch_nx_max": np_, "patch_ny_max": np_})
    reg.insertDimensionData("tract", *[{"skymap": SKYMAP, "id": b.tract,
                                        "region": box_polygon(b.ra_min, b.ra_max, b.dec_min, b.dec_max)} for b in boxes])
    reg.insertDimensionData("patch", *[
        {"skymap": SKYMAP, "tract": b.tract, "id": p, "cell_x": p % np_, "cell_y": p // np_,
         "region": box_polygon(*b.patch_box(p))} for b in boxes for p in range(np_ * np_)])


def _choose_defects(config: SimConfig, visits: list[Visit], rng) -> dict:
    """Pick where each enabled defect goes (deterministic for a seed)."""
    d = config.defects
    fp = FocalPlane.from_config(config)
    boxes = tract_boxes(config)
    truth: dict = {}
    hole_visit = visits[0]  # the first visit: lower-left quadrant of the first tract, at its edge
    hole_detectors = [0, 1] if config.n_detectors > 2 else [0]
    if d.outside_refcat:
        truth["outside_refcat"] = {"visit": hole_visit.id, "detectors": hole_detectors,
                                   "description": "reference catalog has no objects under these detectors"}
    if d.bad_astrometry_detector:
        choices = [k for k in range(config.n_detectors) if k not in hole_detectors] or [0]
        truth["bad_astrometry_detector"] = {"detector": int(rng.choice(choices)), "offset": d.astrometry_offset,
                                            "unit": "arcsec", "axis": "ra"}
    if d.bad_zeropoint_visit:
        choices = [v.id for v in visits if v.id != hole_visit.id]
        truth["bad_zeropoint_visit"] = {"visit": int(rng.choice(choices)), "offset": d.zeropoint_offset, "unit": "mag"}
    if d.empty_region:
        box = boxes[0]
        n = box.patches_per_side
        interior = [p for p in range(n * n) if 0 < p % n < n - 1 and 0 < p // n < n - 1] or list(range(n * n))
        patch = int(rng.choice(interior))
        r0, r1, d0, d1 = box.patch_box(patch)
        half = d.empty_region_size / 2
        # Well inside the patch: a hole is seen where populated cells enclose it within the patch.
        margin = max(0.0, min(0.35 * (r1 - r0) - half, 0.05))
        cra = rng.uniform(r0 + half + margin, r1 - half - margin)
        cdec = rng.uniform(d0 + half + margin, d1 - half - margin)
        truth["empty_region"] = {"tract": box.tract, "patch": patch, "ra_min": cra - half, "ra_max": cra + half,
                                 "dec_min": cdec - half, "dec_max": cdec + half, "unit": "deg"}
    if d.nan_flux_column:
        band = config.bands[-1]
        truth["nan_flux_column"] = {"dataset": "objectTable_tract", "column": f"{band}_psfFlux", "band": band,
                                    "base_column": "psfFlux"}
    del fp
    return truth


def make_survey(repo: str, config: SimConfig | None = None, collection: str = "sim",
                registry_db: str | None = None, progress: Callable[[str], None] | None = None) -> SimResult:
    """Make a simulated survey in a new Butler repository.

    Parameters
    ----------
    repo : str
        Folder of the new repository.
    config : SimConfig, optional
        Sizes, seed and defects (defaults: one tract, 4 visits per band in g, r, i, no defects).
    collection : str
        RUN collection that receives every dataset.
    registry_db : str, optional
        PostgreSQL URL for the registry; SQLite by default.
    progress : callable, optional
        Called with one line per step (the CLI echoes them).

    Returns
    -------
    SimResult
    """
    from surveyqa.butler.repo import create_repo, register_dataset_types

    config = config or SimConfig()
    config.validate()
    say = progress or (lambda line: log.info(line))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    butler = create_repo(repo, registry_db)
    butler.registry.registerRun(collection)
    register_dataset_types(butler, ["sourceTable_visit", "objectTable_tract", "visitTable", "ccdVisitTable",
                                    "isolated_star_presources", "isolated_star_presource_associations",
                                    "surveyqa_refcat", "simTruth", "simTruthObject_tract", "simTruthSource_visit"])
    visits = plan_visits(config)
    rng = np.random.default_rng([config.seed, 7])
    defects = _choose_defects(config, visits, rng)
    _insert_dimensions(butler, config, visits)
    timings["repository"] = time.perf_counter() - t0
    say(f"repository {repo}: {len(visits)} visits, {config.n_detectors} detectors, {config.tracts} tract(s)")

    t = time.perf_counter()
    truth = make_truth(config)
    fp = FocalPlane.from_config(config)
    holes = []
    if "outside_refcat" in defects:
        hv = next(v for v in visits if v.id == defects["outside_refcat"]["visit"])
        holes = [polygon(*fp.detector_corners(k, hv.ra, hv.dec, hv.rotation)) for k in defects["outside_refcat"]["detectors"]]
    refcat = reference_catalog(truth, config, holes)
    butler.put(refcat, "surveyqa_refcat", {}, run=collection)
    timings["truth_and_refcat"] = time.perf_counter() - t

    bad_det = defects.get("bad_astrometry_detector", {}).get("detector")
    bad_zp = defects.get("bad_zeropoint_visit", {})
    # Sorted by RA so that each visit tests only the reference stars within its reach: testing the
    # whole catalogue per detector is quadratic in the tracts (16 million stars x 10,800 detectors
    # at 100 tracts).
    ref_order = np.argsort(np.asarray(refcat["coord_ra"]))
    ref_ra_deg = np.asarray(refcat["coord_ra"])[ref_order]
    ref_ra, ref_dec = np.radians(ref_ra_deg), np.radians(np.asarray(refcat["coord_dec"])[ref_order])
    reach = fp.half_width * 1.5
    failing = []
    ccd: dict[str, list] = {}
    star_sources = _StarSources(Path(repo))
    try:
        boxes = tract_boxes(config)
        n_sources = 0
        t_gen = t_put = 0.0
        for i, v in enumerate(visits):
            t = time.perf_counter()
            zp_error = bad_zp.get("offset", 0.0) if bad_zp.get("visit") == v.id else 0.0
            sources, match = observe_visit(v, truth, config, bad_det, zp_error)
            for key, values in ccd_visit_rows(v, config, zp_error).items():
                ccd.setdefault(key, []).extend(values)
            lo, hi = np.searchsorted(ref_ra_deg, [v.ra - reach, v.ra + reach])
            for k in range(config.n_detectors):
                region = polygon(*fp.detector_corners(k, v.ra, v.dec, v.rotation))
                if not np.any(region.contains(ref_ra[lo:hi], ref_dec[lo:hi])):
                    failing.append([v.id, k])
            _keep_star_sources(sources, match, truth, boxes, star_sources)
            t_gen += time.perf_counter() - t
            t = time.perf_counter()
            data_id = {"instrument": INSTRUMENT, "visit": v.id}
            butler.put(sources, "sourceTable_visit", data_id, run=collection)
            butler.put(match, "simTruthSource_visit", data_id, run=collection)
            t_put += time.perf_counter() - t
            n_sources += len(sources)
            if (i + 1) % max(1, len(visits) // 10) == 0 or i + 1 == len(visits):
                say(f"visit {i + 1}/{len(visits)}: {n_sources} sources so far")
        timings["sources_generate"] = t_gen
        timings["sources_write"] = t_put

        t = time.perf_counter()
        ccd_table = Table(ccd)
        for name, unit in CCD_UNITS.items():
            ccd_table[name].unit = unit
        butler.put(ccd_table, "ccdVisitTable", {"instrument": INSTRUMENT}, run=collection)
        butler.put(_visit_table(visits), "visitTable", {"instrument": INSTRUMENT}, run=collection)
        n_objects = 0
        for box in boxes:
            tract_visits = [v for v in visits if v.tract == box.tract]
            empty = defects.get("empty_region")
            empty_box = (empty["ra_min"], empty["ra_max"], empty["dec_min"], empty["dec_max"]) \
                if empty and empty["tract"] == box.tract else None
            nan_band = defects.get("nan_flux_column", {}).get("band")
            objects, index = object_table(box, truth, tract_visits, config, empty_box, nan_band)
            butler.put(objects, "objectTable_tract", {"skymap": SKYMAP, "tract": box.tract}, run=collection)
            butler.put(truth_table(box, truth, config, index, np.asarray(objects["objectId"])), "simTruthObject_tract",
                       {"skymap": SKYMAP, "tract": box.tract}, run=collection)
            parts = star_sources.pop(box.tract)
            if parts:
                cat, assoc = isolated_stars(box, vstack(parts, metadata_conflicts="silent"))
                iso_id = {"instrument": INSTRUMENT, "skymap": SKYMAP, "tract": box.tract}
                butler.put(cat, "isolated_star_presources", iso_id, run=collection)
                butler.put(assoc, "isolated_star_presource_associations", iso_id, run=collection)
            n_objects += len(objects)
            say(f"tract {box.tract}: {len(objects)} objects")
        timings["tracts"] = time.perf_counter() - t
    finally:
        star_sources.close()

    if "outside_refcat" in defects:
        defects["outside_refcat"]["failing"] = failing
    manifest = {
        "surveyqa_sim": 1, "config": config.to_dict(), "collection": collection,
        "instrument": INSTRUMENT, "skymap": SKYMAP,
        "visits": [{"visit": v.id, "band": v.band, "tract": v.tract, "seeing": v.seeing, "airmass": v.airmass,
                    "zero_point": v.zero_point, "m5": v.m5} for v in visits],
        "tracts": [b.tract for b in boxes],
        "detectors": list(range(config.n_detectors)),
        "defects": defects,
        "n_sources": n_sources, "n_objects": n_objects,
    }
    butler.put(manifest, "simTruth", {}, run=collection)
    timings["total"] = time.perf_counter() - t0
    say(f"wrote {n_sources} sources, {n_objects} objects into collection {collection!r} "
        f"in {timings['total']:.1f} s; defects: {', '.join(defects) or 'none'}")
    return SimResult(str(repo), collection, len(visits), n_sources, n_objects, manifest, timings)


class _StarSources:
    """The star sources kept per tract until the tract's association, spilled to disk.

    About 9 MB per visit at 500,000 objects per square degree: 11 GB for the 1,200 visits of
    100 tracts, more than the truth catalogue itself, so each part goes to a pickle file per
    tract (in a temporary folder beside the repository) and is read back once, when its tract
    is made.
    """

    def __init__(self, beside: Path):
        beside.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=".surveyqa-stars-", dir=beside.parent))
        self._files: dict[int, Path] = {}

    def append(self, tract: int, part: Table) -> None:
        path = self._files.setdefault(tract, self._dir / f"{tract}.pickle")
        with open(path, "ab") as f:
            pickle.dump(part, f, protocol=pickle.HIGHEST_PROTOCOL)

    def pop(self, tract: int) -> list[Table]:
        path = self._files.pop(tract, None)
        parts: list[Table] = []
        if path is None:
            return parts
        with open(path, "rb") as f:
            while True:
                try:
                    parts.append(pickle.load(f))
                except EOFError:
                    break
        path.unlink()
        return parts

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def _keep_star_sources(sources: Table, match: Table, truth, boxes, store: _StarSources) -> None:
    """Keep the bright, unflagged sources of true stars for the tract's isolated-star association."""
    tid = np.asarray(match["truthId"]) - 1  # truthId is index + 1
    snr = np.asarray(sources["psfFlux"]) / np.asarray(sources["psfFluxErr"])
    ok = truth["isStar"][tid] & (snr > 10) & ~np.asarray(sources["pixelFlags_saturatedCenter"])
    ok &= np.isfinite(snr)
    cols = ["sourceId", "visit", "detector", "band", "physical_filter", "ra", "dec", "x", "y",
            "psfFlux", "psfFluxErr", "psfFlux_flag", "calibFlux", "calibFluxErr", "ixx", "iyy", "ixy",
            "ixxPSF", "iyyPSF", "ixyPSF", "extendedness"]
    ra, dec = truth["ra"][tid], truth["dec"][tid]
    if ra.size == 0:
        return
    ra_lo, ra_hi = ra.min(), ra.max()
    for box in boxes:
        if box.ra_max <= ra_lo or box.ra_min > ra_hi:
            continue  # a visit touches one or two of the tracts
        inside = ok & (ra >= box.ra_min) & (ra < box.ra_max) & (dec >= box.dec_min) & (dec < box.dec_max)
        if inside.any():
            part = sources[cols][inside]
            part["truthId"] = match["truthId"][inside]
            store.append(box.tract, part)


def _visit_table(visits: list[Visit]) -> Table:
    """The `visitTable` (DP1 `Visit` columns)."""
    t = Table()
    t["visit"] = np.array([v.id for v in visits], dtype=np.int64)
    t["physical_filter"] = [v.physical_filter for v in visits]
    t["band"] = [v.band for v in visits]
    t["ra"] = [v.ra for v in visits]
    t["dec"] = [v.dec for v in visits]
    t["skyRotation"] = [v.rotation for v in visits]
    zenith = np.degrees(np.arccos(1 / np.array([v.airmass for v in visits])))
    t["zenithDistance"] = zenith
    t["altitude"] = 90 - zenith
    t["azimuth"] = np.zeros(len(visits))
    t["airmass"] = [v.airmass for v in visits]
    t["expTime"] = [v.exposure_time for v in visits]
    t["expMidptMJD"] = [v.mjd for v in visits]
    t["obsStartMJD"] = [v.mjd - v.exposure_time / 2 / 86400 for v in visits]
    for name, unit in {"ra": "deg", "dec": "deg", "skyRotation": "deg", "zenithDistance": "deg", "altitude": "deg",
                       "azimuth": "deg", "expTime": "s", "expMidptMJD": "d", "obsStartMJD": "d"}.items():
        t[name].unit = unit
    return t
