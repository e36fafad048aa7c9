"""A survey shaped like Rubin's DRP output, on the real registry records of a Butler export.

`make_rubin_survey` imports a real export (the HSC RC2 subset: instrument HSC and its detectors,
the real visits and the `visit_detector_region` of each processed (visit, detector), skymap
``hsc_rings_v1``), rebuilds the tract's 81 patches (`RingTract`), and writes what a DRP run
leaves for QA: ``sourceTable_visit`` (sources on the physical CCDs, DP1 columns, units in the
Parquet metadata, sky sources, pixel and measurement flags with the NaN they explain),
``objectTable_tract`` (every patch's detections, overlaps included, ``detect_isPrimary``,
``sky_object`` rows, NaN fluxes flagged in bands with no data), ``visitTable``, ``ccdVisitTable``
and the isolated-star association in lsst.pipe.tasks' layout. No reference catalog: real
repositories rarely have one readable without afw.

The baseline is realistic, so that a clean repository fails nothing: per-visit calibration
scatter (`Baseline.visit_zp`), per-detector scatter, astrometric residuals of a few mas,
saturation, edges, chip gaps, patchy coverage and stars to the faint limit. Defects are placed
at random from the seed and their truth is written to a JSON file outside the repository.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from astropy.table import Table

from surveyqa.errors import SurveyQAError
from surveyqa.sim.ringtract import RingTract

__all__ = ["RubinSimConfig", "RubinDefects", "Baseline", "make_rubin_survey", "LIKE", "RUBIN_DEFECTS"]

log = logging.getLogger(__name__)

_DATA = Path(__file__).resolve().parent / "data"

#: Real registry exports a survey can be shaped like: name -> (export file, skymap, tract).
LIKE = {"hsc-rc2": ("hsc-rc2-subset.yaml", "hsc_rings_v1", 9615)}
RUBIN_DEFECTS = ("zeropoint-visit", "astrometry-detector", "coadd-hole", "nan-column")
AB = 31.4
PIXEL_SCALE = 0.168  # arcsec, HSC
CCD_PIXELS = (2048, 4176)  # HSC CCD, x (short side) and y
#: 5-sigma point-source depth of one HSC wide visit, AB mag, and median seeing (arcsec).
DEPTH = {"g": (26.3, 0.75), "r": (25.9, 0.70), "i": (25.7, 0.62), "z": (25.0, 0.65), "y": (24.2, 0.68)}
ISOLATED_BAND_ORDER = ["i", "z", "r", "g", "y", "u"]  # lsst.pipe.tasks' default band_order


@dataclass
class Baseline:
    """The scatter of a clean, well-processed repository (what must fail nothing).

    visit_zp, detector_zp : mag; astrometry : arcsec per axis, per (visit, detector);
    astrometric floor : arcsec per source.
    """

    visit_zp: float = 0.005
    detector_zp: float = 0.003
    astrometry: float = 0.003
    astrometric_floor: float = 0.005


@dataclass
class RubinDefects:
    """Defects at realistic sizes; each one enabled is placed at random from the seed."""

    zeropoint_visit: bool = False
    astrometry_detector: bool = False
    coadd_hole: bool = False
    nan_column: bool = False
    zeropoint_offset: float = 0.04  # mag
    astrometry_offset: float = 0.040  # arcsec
    hole_diameter: float = 4.0  # arcmin
    nan_fraction: float = 0.02

    @classmethod
    def from_names(cls, names) -> "RubinDefects":
        d = cls()
        for name in names:
            if name == "all":
                return cls(True, True, True, True)
            if name not in RUBIN_DEFECTS:
                raise SurveyQAError(f"unknown defect {name!r} for a Rubin-shaped survey",
                                    f"choose from: all, {', '.join(RUBIN_DEFECTS)}")
            setattr(d, name.replace("-", "_"), True)
        return d


@dataclass
class RubinSimConfig:
    """A Rubin-shaped survey: which export, how dense, which seed and defects."""

    like: str = "hsc-rc2"
    seed: int = 1
    density: float = 100000.0  # true objects per square degree to r = 26.5
    star_fraction: float = 0.15
    defects: RubinDefects = field(default_factory=RubinDefects)
    baseline: Baseline = field(default_factory=Baseline)
    export: str | None = None  # path of the export; default: the one LIKE names (shipped in sim/data)

    def export_path(self) -> Path:
        if self.like not in LIKE:
            raise SurveyQAError(f"unknown repository shape {self.like!r}", f"choose from {', '.join(LIKE)}")
        path = Path(self.export) if self.export else (_DATA / LIKE[self.like][0]).resolve()
        if not path.is_file():
            raise SurveyQAError(f"the registry export {path} does not exist",
                                "pass --export PATH to a Butler YAML export (daf_butler format)")
        return path


# -- registry ----------------------------------------------------------------------------------

def _lonlat(region) -> np.ndarray:
    from lsst.sphgeom import LonLat

    return np.array([[LonLat(v).getLon().asDegrees(), LonLat(v).getLat().asDegrees()] for v in region.getVertices()])


@dataclass
class _Ccd:
    """A processed detector of a visit: its physical CCD on the sky, from its (padded) region."""

    visit: int
    detector: int
    ra: float
    dec: float
    short: np.ndarray  # unit vector (east, north) along the CCD's x axis
    long: np.ndarray  # along its y axis

    @classmethod
    def from_region(cls, visit: int, detector: int, region) -> "_Ccd":
        v = _lonlat(region)
        ra0, dec0 = v[:, 0].mean(), v[:, 1].mean()
        local = np.c_[(v[:, 0] - ra0) * np.cos(np.radians(dec0)), v[:, 1] - dec0]
        e1, e2 = local[1] - local[0], local[2] - local[1]
        if np.hypot(*e1) > np.hypot(*e2):
            e1, e2 = e2, e1
        return cls(visit, detector, ra0, dec0, e1 / np.hypot(*e1), e2 / np.hypot(*e2))

    def locate(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inside, x, y): which positions fall on the physical CCD, and their pixels."""
        dx = (ra - self.ra) * np.cos(np.radians(self.dec)) * 3600.0 / PIXEL_SCALE
        dy = (dec - self.dec) * 3600.0 / PIXEL_SCALE
        x = dx * self.short[0] + dy * self.short[1] + CCD_PIXELS[0] / 2
        y = dx * self.long[0] + dy * self.long[1] + CCD_PIXELS[1] / 2
        inside = (x >= 0) & (x < CCD_PIXELS[0]) & (y >= 0) & (y < CCD_PIXELS[1])
        return inside, x, y

    def corners(self) -> tuple[np.ndarray, np.ndarray]:
        sx, sy = CCD_PIXELS[0] / 2 * PIXEL_SCALE / 3600, CCD_PIXELS[1] / 2 * PIXEL_SCALE / 3600
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        e = np.array([a * sx * self.short + b * sy * self.long for a, b in pts])
        return self.ra + e[:, 0] / np.cos(np.radians(self.dec)), self.dec + e[:, 1]


def _import_registry(butler, export: Path, skymap: str, tract_id: int, say) -> tuple[RingTract, list, list[_Ccd]]:
    """Import the export's dimension records; add the tract's missing patches; the visits and
    processed CCDs overlapping the tract."""
    butler.import_(filename=str(export), format="yaml")
    reg = butler.registry
    tracts = [r for r in reg.queryDimensionRecords("tract", skymap=skymap) if r.id == tract_id]
    if not tracts:
        raise SurveyQAError(f"the export {export.name} has no tract {tract_id} of skymap {skymap}")
    ring = RingTract.from_record(tracts[0])
    have = {r.id for r in reg.queryDimensionRecords("patch", skymap=skymap) if r.tract == tract_id}
    missing = [p for p in ring.patch_records(skymap) if p["id"] not in have]
    reg.insertDimensionData("patch", *missing)
    visits = sorted((v for v in reg.queryDimensionRecords("visit") if v.region is not None
                     and v.region.overlaps(tracts[0].region)), key=lambda v: v.id)
    ids = {v.id for v in visits}
    ccds = [_Ccd.from_region(r.visit, r.detector, r.region) for r in reg.queryDimensionRecords("visit_detector_region")
            if r.visit in ids and r.region.overlaps(tracts[0].region)]
    ccds.sort(key=lambda c: (c.visit, c.detector))
    say(f"registry from {export.name}: {len(visits)} visits and {len(ccds)} processed (visit, detector) regions "
        f"overlapping tract {tract_id}; {len(missing)} of {ring.n_patches ** 2} patches rebuilt")
    return ring, visits, ccds


# -- truth -------------------------------------------------------------------------------------

def _truth(config: RubinSimConfig, ccds: list[_Ccd], rng) -> dict[str, np.ndarray]:
    """True stars and galaxies over the area the CCDs cover, sorted by RA."""
    ras = np.concatenate([c.corners()[0] for c in ccds])
    decs = np.concatenate([c.corners()[1] for c in ccds])
    ra0, ra1, dec0, dec1 = ras.min(), ras.max(), decs.min(), decs.max()
    area = (ra1 - ra0) * np.cos(np.radians(0.5 * (dec0 + dec1))) * (dec1 - dec0)
    n = rng.poisson(config.density * area)
    ra = rng.uniform(ra0, ra1, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(dec0)), np.sin(np.radians(dec1)), n)))
    star = rng.random(n) < config.star_fraction
    # Number counts: log10 N grows by 0.25 (stars) / 0.35 (galaxies) per magnitude.
    u = rng.random(n)
    slope = np.where(star, 0.25, 0.35)
    lo, hi = np.where(star, 16.0, 19.0), 26.5
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    r = np.log10(a + u * (b - a)) / slope
    colour = {"g": (0.6, 0.3), "r": (0.0, 0.0), "i": (-0.25, 0.15), "z": (-0.4, 0.2), "y": (-0.5, 0.25)}
    out = {"ra": ra, "dec": dec, "isStar": star, "size": np.where(star, 0.0, rng.uniform(0.3, 1.2, n))}
    for band, (mu, sd) in colour.items():
        out[f"{band}_mag"] = r + mu + rng.normal(0, sd, n) * (sd > 0)
    order = np.argsort(ra, kind="stable")
    out = {k: v[order] for k, v in out.items()}
    out["truthId"] = np.arange(1, n + 1, dtype=np.int64)
    return out


# -- defects -----------------------------------------------------------------------------------

def _place_defects(config: RubinSimConfig, visits, ccds: list[_Ccd], ring: RingTract, band_of, rng,
                   stars_truth: dict) -> dict:
    d = config.defects
    truth: dict = {}
    visit_ids = [v.id for v in visits if any(c.visit == v.id for c in ccds)]
    if d.zeropoint_visit:
        v = int(rng.choice(visit_ids))
        truth["zeropoint_visit"] = {"visit": v, "band": band_of[v], "offset": d.zeropoint_offset, "unit": "mag",
                                    "metric": "health.visitPhotOffset", "level": "visit"}
    if d.astrometry_detector:
        # A detector with enough bright stars to measure it by (a detector holding three stars can be
        # judged by no method): the busier half of the processed detectors.
        bright = stars_truth["isStar"] & (stars_truth["r_mag"] < 22.5)
        counts = np.array([c.locate(stars_truth["ra"][bright], stars_truth["dec"][bright])[0].sum() for c in ccds])
        inner = [c for c, k in zip(ccds, counts) if k >= np.median(counts) and
                 truth.get("zeropoint_visit", {}).get("visit") != c.visit]
        c = inner[int(rng.integers(len(inner)))]
        truth["astrometry_detector"] = {"visit": c.visit, "detector": c.detector, "band": band_of[c.visit],
                                        "offset": d.astrometry_offset, "unit": "arcsec", "axis": "ra",
                                        "metric": "health.detectorAstromOffset", "level": "detector"}
    if d.nan_column:
        taken = {t.get("visit") for t in truth.values()}
        v = int(rng.choice([x for x in visit_ids if x not in taken]))
        truth["nan_column"] = {"visit": v, "band": band_of[v], "column": "psfFlux", "fraction": d.nan_fraction,
                               "dataset": "sourceTable_visit", "metric": "health.nanFraction", "level": "visit"}
    return truth


def _choose_hole(config: RubinSimConfig, ring: RingTract, cover: dict[str, np.ndarray], truth_xy, rng) -> dict | None:
    """A patch covered by at least 3 visits in every band at its centre region, and a hole in it."""
    x, y, patch = truth_xy
    radius = config.defects.hole_diameter / 2 * 60 / ring.pixel_scale  # pixels
    margin = radius + 0.15 * ring.patch_pixels
    candidates = []
    for p in range(ring.n_patches ** 2):
        x0, x1, y0, y1 = ring.patch_box(p, outer=False)
        core = (patch == p) & (x > x0 + margin) & (x < x1 - margin) & (y > y0 + margin) & (y < y1 - margin)
        if core.sum() and all(np.percentile(c[core], 2) >= 3 for c in cover.values()):
            candidates.append(p)
    if not candidates:
        log.warning("no patch is covered by 3 visits in every band: no coadd hole injected")
        return None
    p = int(rng.choice(candidates))
    x0, x1, y0, y1 = ring.patch_box(p, outer=False)
    cx, cy = rng.uniform(x0 + margin, x1 - margin), rng.uniform(y0 + margin, y1 - margin)
    ra, dec = ring.sky(np.array([cx]), np.array([cy]))
    return {"tract": ring.tract, "patch": p, "ra": float(ra[0]), "dec": float(dec[0]),
            "diameter": config.defects.hole_diameter, "unit": "arcmin", "x": float(cx), "y": float(cy),
            "radius_pixels": float(radius), "metric": "health.emptyCellFraction", "level": "patch"}


# -- the survey --------------------------------------------------------------------------------

def make_rubin_survey(repo: str, config: RubinSimConfig | None = None, collection: str = "drp",
                      registry_db: str | None = None, truth_path: str | Path | None = None,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Write a Rubin-shaped DRP output into a new Butler repository; return the truth.

    Parameters
    ----------
    repo : str
        Folder of the new repository.
    config : RubinSimConfig, optional
    collection : str
        RUN collection receiving the datasets.
    registry_db : str, optional
        PostgreSQL URL for the registry (SQLite by default).
    truth_path : path-like, optional
        Where the truth JSON goes (default: ``<repo>.truth.json`` beside the repository, never in it).

    Returns
    -------
    dict
        The truth: configuration, defects with their data IDs, sizes.
    """
    from surveyqa.butler.repo import create_repo, register_dataset_types
    from surveyqa.sim.rubin_tables import ccd_visit_table, isolated_stars, object_table, observe_ccd, visit_table

    config = config or RubinSimConfig()
    say = progress or log.info
    t0 = time.perf_counter()
    export = config.export_path()
    _, skymap, tract_id = LIKE[config.like]
    truth_path = Path(truth_path) if truth_path else Path(str(Path(repo).resolve()) + ".truth.json")
    butler = create_repo(repo, registry_db)
    butler.registry.registerRun(collection)
    register_dataset_types(butler, ["sourceTable_visit", "objectTable_tract", "visitTable", "ccdVisitTable",
                                    "isolated_star_presources", "isolated_star_presource_associations"])
    ring, visits, ccds = _import_registry(butler, export, skymap, tract_id, say)
    band_of = {}
    filters = {r.name: r.band for r in butler.registry.queryDimensionRecords("physical_filter")}
    for v in visits:
        band_of[v.id] = filters[v.physical_filter]
    rng = np.random.default_rng([config.seed, 11])
    truth = _truth(config, ccds, np.random.default_rng([config.seed, 12]))
    defects = _place_defects(config, visits, ccds, ring, band_of, rng, truth)
    n = truth["ra"].size
    cover = {b: np.zeros(n, np.int32) for b in DEPTH}
    base = config.baseline
    conditions = {}
    say(f"truth: {n} objects ({int(truth['isStar'].sum())} stars) over the CCDs' area")

    by_visit: dict[int, list[_Ccd]] = {}
    for c in ccds:
        by_visit.setdefault(c.visit, []).append(c)
    star_parts, ccd_rows, n_sources = [], [], 0
    for i, v in enumerate(visits):
        if v.id not in by_visit:
            continue
        band = band_of[v.id]
        vr = np.random.default_rng([config.seed, 13, v.id])
        depth, seeing0 = DEPTH[band]
        seeing = float(seeing0 * np.exp(vr.normal(0, 0.12)))
        zp_error = vr.normal(0, base.visit_zp)
        if defects.get("zeropoint_visit", {}).get("visit") == v.id:
            zp_error += defects["zeropoint_visit"]["offset"]
        conditions[v.id] = {"band": band, "seeing": seeing, "zp_error": zp_error,
                            "m5": depth + 1.25 * np.log10(v.exposure_time / 240.0) - 2.5 * np.log10(seeing / 0.7)}
        parts = []
        for c in by_visit[v.id]:
            astro = vr.normal(0, base.astrometry, 2)
            bad = defects.get("astrometry_detector", {})
            if bad.get("visit") == v.id and bad.get("detector") == c.detector:
                astro = astro + np.array([bad["offset"], 0.0])
            det_zp = vr.normal(0, base.detector_zp)
            src, covered, star_src = observe_ccd(c, v, band, conditions[v.id], truth, zp_error + det_zp, astro,
                                                 base.astrometric_floor, vr)
            cover[band][covered] += 1
            parts.append(src)
            star_parts.append(star_src)
            ccd_rows.append((c, v, band, conditions[v.id], zp_error + det_zp))
        from astropy.table import vstack

        sources = vstack(parts, metadata_conflicts="silent")
        offset = 0
        for part, star_src in zip(parts, star_parts[-len(parts):]):
            star_src["source_row"] += offset  # the row in the visit's table, as the association records it
            offset += len(part)
        nan = defects.get("nan_column", {})
        if nan.get("visit") == v.id:
            real = np.flatnonzero(~np.asarray(sources["sky_source"]) & np.isfinite(np.asarray(sources["psfFlux"])))
            hit = vr.choice(real, size=int(round(nan["fraction"] * len(sources))), replace=False)
            sources["psfFlux"][hit] = np.nan  # no flag says so: a defect
            nan["n_rows"] = int(hit.size)
        butler.put(sources, "sourceTable_visit", {"instrument": "HSC", "visit": v.id}, run=collection)
        n_sources += len(sources)
        if (i + 1) % 10 == 0 or i + 1 == len(visits):
            say(f"visit {i + 1}/{len(visits)}: {n_sources} sources so far")

    butler.put(ccd_visit_table(ccd_rows), "ccdVisitTable", {"instrument": "HSC"}, run=collection)
    butler.put(visit_table([v for v in visits if v.id in conditions], conditions), "visitTable",
               {"instrument": "HSC"}, run=collection)
    x, y = ring.pixels(truth["ra"], truth["dec"])
    hole = _choose_hole(config, ring, cover, (x, y, ring.patch_index(x, y)), rng) if config.defects.coadd_hole else None
    if hole:
        defects["coadd_hole"] = hole
    objects = object_table(ring, truth, cover, conditions, hole, np.random.default_rng([config.seed, 14]))
    butler.put(objects, "objectTable_tract", {"skymap": skymap, "tract": ring.tract}, run=collection)
    sources_cat, stars_cat = isolated_stars(star_parts, ring, ISOLATED_BAND_ORDER)
    iso_id = {"instrument": "HSC", "skymap": skymap, "tract": ring.tract}
    butler.put(sources_cat, "isolated_star_presources", iso_id, run=collection)
    butler.put(stars_cat, "isolated_star_presource_associations", iso_id, run=collection)
    say(f"tract {ring.tract}: {len(objects)} object rows, {len(stars_cat)} isolated stars")

    result = {"surveyqa_sim": 1, "like": config.like, "export": export.name, "repo": str(Path(repo).resolve()),
              "collection": collection, "instrument": "HSC", "skymap": skymap, "tract": ring.tract,
              "config": {k: v for k, v in asdict(config).items() if k != "export"},
              "visits": sorted(conditions), "n_ccds": len(ccd_rows), "n_sources": n_sources,
              "n_objects": len(objects), "defects": defects,
              "seconds": round(time.perf_counter() - t0, 1)}
    truth_path.write_text(json.dumps(result, indent=1, default=float))
    say(f"wrote {n_sources} sources into collection {collection!r} in {result['seconds']} s; "
        f"defects: {', '.join(defects) or 'none'}; truth in {truth_path}")
    return result
