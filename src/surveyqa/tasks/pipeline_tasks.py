"""The QA PipelineTasks: per visit, per (visit, detector), per tract, and the run's manifest.

Each task reads its inputs, calls the pure functions of `surveyqa.tasks.compute` and writes tidy
Parquet tables back (docs/data-model.md). They run under ``pipetask run`` with
``surveyqa/tasks/pipelines/qa.yaml`` and under ``surveyqa run``.
"""

from __future__ import annotations

import logging

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.pipe.base.connectionTypes as cT

from surveyqa.tasks import compute

__all__ = ["QaVisitTask", "QaDetectorReferenceTask", "QaTractTask", "QaManifestTask"]

log = logging.getLogger(__name__)


def _instrument(butlerQC) -> str | None:
    return butlerQC.quantum.dataId.get("instrument") if butlerQC.quantum.dataId is not None else None


# -- per visit -------------------------------------------------------------------------------

class QaVisitConnections(pipeBase.PipelineTaskConnections, dimensions=("instrument", "visit")):
    sources = cT.Input(name="sourceTable_visit", storageClass="ArrowTable", dimensions=("instrument", "visit"),
                       doc="Single-visit sources (DP1 Source columns).")
    ccd = cT.Input(name="ccdVisitTable", storageClass="ArrowTable", dimensions=("instrument",),
                   doc="Per-detector visit summary (all visits: zero points are compared to their band's median).")
    metric_rows = cT.Output(name="qaMetricRows_visit", storageClass="ArrowTable", dimensions=("instrument", "visit"),
                            doc="Every metric's per-row values as the engine computed them (surveyqa.tasks.rows).")
    detector_values = cT.Output(name="qaDetectorValues_visit", storageClass="ArrowTable",
                                dimensions=("instrument", "visit"), doc="Per-detector QA values.")
    metric_values = cT.Output(name="qaMetricValues_visit", storageClass="ArrowTable",
                              dimensions=("instrument", "visit"), doc="Metric values at detector and visit level.")


class QaVisitConfig(pipeBase.PipelineTaskConfig, pipelineConnections=QaVisitConnections):
    pass


class QaVisitTask(pipeBase.PipelineTask):
    """Counts, densities, PSF size, zero points and column health of one visit, per detector and visit."""

    ConfigClass = QaVisitConfig
    _DefaultName = "qaVisit"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        visit = butlerQC.quantum.dataId["visit"]
        metric_rows, detector_values, metric_values = compute.visit_qa(
            inputs["sources"], inputs["ccd"], visit, _instrument(butlerQC))
        self.log.info("visit %s: %d sources, %d metric values, %d failing", visit, inputs["sources"].num_rows,
                      metric_values.num_rows, metric_values.column("status").to_pylist().count("fail"))
        butlerQC.put(pipeBase.Struct(metric_rows=metric_rows, detector_values=detector_values,
                                     metric_values=metric_values), outputRefs)


# -- per (visit, detector): the reference-catalog check --------------------------------------

class QaDetectorReferenceConnections(pipeBase.PipelineTaskConnections,
                                     dimensions=("instrument", "visit", "detector")):
    sources = cT.Input(name="sourceTable_visit", storageClass="ArrowTable", dimensions=("instrument", "visit"),
                       deferLoad=True, doc="Single-visit sources; only this detector's rows are used.")
    refcat = cT.Input(name="surveyqa_refcat", storageClass="ArrowTable", dimensions=(), deferLoad=True,
                      doc="Reference catalog (coord_ra, coord_dec in deg, {band}_flux in nJy).")
    metric_rows = cT.Output(name="qaMetricRows_detector", storageClass="ArrowTable",
                            dimensions=("instrument", "visit", "detector"),
                            doc="Per matched source: the offsets from the reference catalog (surveyqa.tasks.rows).")
    metric_values = cT.Output(name="qaMetricValues_detector", storageClass="ArrowTable",
                              dimensions=("instrument", "visit", "detector"),
                              doc="Astrometric and photometric offsets against the reference catalog.")


    def adjustQuantum(self, inputs, outputs, label, data_id):
        """Only (visit, detector) pairs with a ``visit_detector_region`` get a quantum.

        In a DRP repository only the processed pairs have regions (and data): the instrument's
        other detectors would be thousands of empty quanta.
        """
        if data_id.hasRecords() and data_id.records.get("visit_detector_region") is None:
            raise pipeBase.NoWorkFound(f"visit {data_id['visit']} detector {data_id['detector']} was not processed")
        return super().adjustQuantum(inputs, outputs, label, data_id)


class QaDetectorReferenceConfig(pipeBase.PipelineTaskConfig, pipelineConnections=QaDetectorReferenceConnections):
    match_radius = pexConfig.Field[float](doc="Match radius, arcsec.", default=1.0)


#: The reference catalog read by this process, sorted by RA: {dataset ID: (table, sorted coord_ra)}.
_REFCATS: dict = {}


def _refcat_near(handle, region):
    """The reference stars within the RA range of a detector's region (all of them without a region).

    The catalog is one dataset for the whole survey; reading it whole for each of the 10,800
    detectors of 100 tracts (16 million stars) cost 2-4 s a quantum. It is read once per
    process, sorted by RA, and each detector takes the slice its region's bounding box spans;
    the rows inside the region are then the same as in the whole catalog.
    """
    import numpy as np

    key = handle.ref.id
    if key not in _REFCATS:
        _REFCATS.clear()  # one catalog per run
        table = handle.get()
        ra = table.column("coord_ra").to_numpy()
        order = np.argsort(ra, kind="stable")
        _REFCATS[key] = (table.take(order), ra[order])
    table, ra = _REFCATS[key]
    if region is None:
        return table
    box = region.getBoundingBox()
    lon = box.getLon()
    if lon.isFull() or lon.wraps():  # across RA 0: the whole catalog (rare; still correct)
        return table
    margin = 1e-6  # degrees: rounding of the box's bounds
    lo, hi = np.searchsorted(ra, [lon.getA().asDegrees() - margin, lon.getB().asDegrees() + margin])
    return table.slice(lo, hi - lo)


class QaDetectorReferenceTask(pipeBase.PipelineTask):
    """Match a detector's sources to the reference catalog; fails when the catalog does not cover it."""

    ConfigClass = QaDetectorReferenceConfig
    _DefaultName = "qaDetectorReference"

    COLUMNS = ["sourceId", "detector", "band", "ra", "dec", "psfFlux", "psfFluxErr", "psfFlux_flag", "extendedness"]

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        handles = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        sources = handles["sources"].get(parameters={"columns": self.COLUMNS})
        region = getattr(data_id, "region", None)
        refcat = _refcat_near(handles["refcat"], region)
        rows, values = compute.detector_reference_qa(sources, refcat, region, data_id["visit"], data_id["detector"],
                                                     _instrument(butlerQC), self.config.match_radius)
        butlerQC.put(pipeBase.Struct(metric_rows=rows, metric_values=values), outputRefs)


def _present_columns(handle, wanted: list[str]) -> list[str]:
    """The columns of ``wanted`` that a Parquet dataset has (Rubin's tables differ across releases)."""
    names = set(handle.get(component="columns"))
    return [c for c in wanted if c in names]


# -- per tract -------------------------------------------------------------------------------

class QaTractConnections(pipeBase.PipelineTaskConnections, dimensions=("skymap", "tract")):
    objects = cT.Input(name="objectTable_tract", storageClass="ArrowTable", dimensions=("skymap", "tract"),
                       doc="Coadd objects (DP1 Object columns).")
    presources = cT.Input(name="isolated_star_presources", storageClass="ArrowTable", multiple=True, minimum=0,
                          dimensions=("instrument", "skymap", "tract"), doc="Isolated-star catalog.")
    associations = cT.Input(name="isolated_star_presource_associations", storageClass="ArrowTable", multiple=True,
                            minimum=0, dimensions=("instrument", "skymap", "tract"),
                            doc="Sources associated with the isolated stars.")
    visit_sources = cT.Input(name="sourceTable_visit", storageClass="ArrowTable", multiple=True, minimum=0,
                             dimensions=("instrument", "visit"), deferLoad=True,
                             doc="Single-visit sources of the visits overlapping the tract: the calibrated values "
                                 "of the isolated stars' sources (only their columns are read).")
    metric_rows = cT.Output(name="qaMetricRows_tract", storageClass="ArrowTable", dimensions=("skymap", "tract"),
                            doc="Every metric's per-row values as the engine computed them (surveyqa.tasks.rows).")
    metric_values = cT.Output(name="qaMetricValues_tract", storageClass="ArrowTable", dimensions=("skymap", "tract"),
                              doc="Metric values at patch and tract level.")


class QaTractConfig(pipeBase.PipelineTaskConfig, pipelineConnections=QaTractConnections):
    max_srd_stars = pexConfig.Field[int](
        doc="The SRD metrics (PA1, AM1, TE1, ...) use at most this many isolated stars per tract, a seeded "
            "sample (their pair computations grow with the square of the stars per area); 0: all.",
        default=10000)


class QaTractTask(pipeBase.PipelineTask):
    """Coadd health per patch and the SRD metrics (PA1, AM1, TE1, ...) per tract and band."""

    ConfigClass = QaTractConfig
    _DefaultName = "qaTract"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        tract = butlerQC.quantum.dataId["tract"]
        assoc = inputs["associations"][0] if inputs["associations"] else None
        cat = inputs["presources"][0] if inputs["presources"] else None
        instrument = inputRefs.associations[0].dataId["instrument"] if inputRefs.associations else None
        visit_sources = {}
        if assoc is not None or cat is not None:
            for handle in inputs["visit_sources"]:
                present = _present_columns(handle, compute.MATCH_COLUMNS)
                visit_sources[handle.dataId["visit"]] = handle.get(parameters={"columns": present})
        metric_rows, metric_values = compute.tract_qa(inputs["objects"], assoc, cat, tract, instrument,
                                                        self.config.max_srd_stars or None, visit_sources)
        self.log.info("tract %s: %d metric values, %d failing", tract, metric_values.num_rows,
                      metric_values.column("status").to_pylist().count("fail"))
        butlerQC.put(pipeBase.Struct(metric_rows=metric_rows, metric_values=metric_values), outputRefs)


# -- the manifest ----------------------------------------------------------------------------

class QaManifestConnections(pipeBase.PipelineTaskConnections, dimensions=()):
    visit_values = cT.Input(name="qaMetricValues_visit", storageClass="ArrowTable", multiple=True, minimum=0,
                            dimensions=("instrument", "visit"), deferLoad=True, doc="Visit metric values.")
    tract_values = cT.Input(name="qaMetricValues_tract", storageClass="ArrowTable", multiple=True, minimum=0,
                            dimensions=("skymap", "tract"), deferLoad=True, doc="Tract metric values.")
    visit_rows = cT.Input(name="qaMetricRows_visit", storageClass="ArrowTable", multiple=True, minimum=0,
                          dimensions=("instrument", "visit"), deferLoad=True,
                          doc="Visit per-row values (their metric column: which metrics have rows).")
    tract_rows = cT.Input(name="qaMetricRows_tract", storageClass="ArrowTable", multiple=True, minimum=0,
                          dimensions=("skymap", "tract"), deferLoad=True,
                          doc="Tract per-row values (their metric column: which metrics have rows).")
    inputs_seen = cT.Input(name="visitTable", storageClass="ArrowTable", multiple=True, minimum=0,
                           dimensions=("instrument",), deferLoad=True, doc="Read for the input run's name only.")
    manifest = cT.Output(name="qaManifest", storageClass="StructuredDataDict", dimensions=(),
                         doc="Which metrics were computed, with which selection, against which specs.")


class QaManifestConfig(pipeBase.PipelineTaskConfig, pipelineConnections=QaManifestConnections):
    pass


class QaManifestTask(pipeBase.PipelineTask):
    """Write the run's manifest (DMTN-085 §4.12): metrics, levels, selections, specs, dataset types."""

    ConfigClass = QaManifestConfig
    _DefaultName = "qaWriteManifest"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        from surveyqa.tasks.manifest import build_manifest, per_row_counts

        handles = butlerQC.get(inputRefs)
        tables = [h.get(parameters={"columns": ["metric", "level", "status", "tract"]})
                  for h in handles["visit_values"] + handles["tract_values"]]
        rows = per_row_counts({name: [h.get(parameters={"columns": ["metric"]}) for h in handles[key]]
                               for name, key in (("qaMetricRows_visit", "visit_rows"), ("qaMetricRows_tract", "tract_rows"))})
        run = outputRefs.manifest.run
        inputs = sorted({ref.run for ref in inputRefs.inputs_seen})
        butlerQC.put(pipeBase.Struct(manifest=build_manifest(run, inputs, tables, rows=rows)), outputRefs)
