"""The QA PipelineTasks: per visit, per (visit, detector), per tract, and the run's manifest.

Each task reads its inputs, calls the pure functions of `surveyqa.tasks.compute` and writes tidy
Parquet tables back (docs/data-model.md). They run under ``pipetask run`` with
``surveyqa/tasks/pipelines/qa.yaml`` and under ``surveyqa run``.

Every task has one ``debug`` config field (DMTN-085 QAWG-REC-4) and nothing else configures
it: when on, the task also writes its diagnostics as ``<label>_debug_*`` datasets (tables and
plots, `surveyqa.tasks.debug`); the metric values are the same (docs/provenance.md). Every
table a task writes carries the Butler's provenance of its quantum (`surveyqa.provenance.record`).
"""

from __future__ import annotations

import logging

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.pipe.base.connectionTypes as cT
import pyarrow as pa

from surveyqa.provenance.record import with_provenance
from surveyqa.tasks import compute

__all__ = ["QaVisitTask", "QaDetectorReferenceTask", "QaTractTask", "QaManifestTask"]

log = logging.getLogger(__name__)


def _instrument(butlerQC) -> str | None:
    return butlerQC.quantum.dataId.get("instrument") if butlerQC.quantum.dataId is not None else None


def _debug_field():
    """The one switch of a task's debug mode (DMTN-085 §4.1: binary, no further configuration)."""
    return pexConfig.Field[bool](
        doc="Also write this task's diagnostics, the debug_* outputs (<label>_debug_* datasets: intermediate "
            "tables and plots); nothing else changes (docs/provenance.md).", default=False)


def _drop_debug_outputs(connections, config) -> None:
    """Remove the ``debug_*`` outputs of a task's connections unless its config has ``debug`` on."""
    if config is None or not config.debug:
        for name in [n for n in connections.outputs if n.startswith("debug_")]:
            delattr(connections, name)


def _put(butlerQC, outputs: pipeBase.Struct, outputRefs) -> None:
    """Put a quantum's outputs, each Arrow table with the quantum's provenance in its metadata.

    The Butler records ``LSST.BUTLER.*`` provenance (quantum, inputs read) in the Parquet files
    of Astropy tables only; these are Arrow tables, so the same keys are added here.
    """
    for name, ref in outputRefs:
        value = getattr(outputs, name, None)
        if isinstance(value, pa.Table) and not isinstance(ref, list):
            setattr(outputs, name, with_provenance(value, butlerQC.dataset_provenance, ref))
    butlerQC.put(outputs, outputRefs)


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
    debug_sources = cT.Output(name="qaVisit_debug_sources", storageClass="ArrowTable",
                              dimensions=("instrument", "visit"),
                              doc="Debug: each source (sky sources dropped) with the context the metrics joined to "
                                  "it: detector, position, magnitude, pixel scale, detector area.")
    debug_detectors = cT.Output(name="qaVisit_debug_detectorSummary", storageClass="Plot",
                                dimensions=("instrument", "visit"),
                                doc="Debug: PSF FWHM, source density and zero-point offset against detector.")

    def __init__(self, *, config=None):
        super().__init__(config=config)
        _drop_debug_outputs(self, config)


class QaVisitConfig(pipeBase.PipelineTaskConfig, pipelineConnections=QaVisitConnections):
    debug = _debug_field()


class QaVisitTask(pipeBase.PipelineTask):
    """Counts, densities, PSF size, zero points and column health of one visit, per detector and visit."""

    ConfigClass = QaVisitConfig
    _DefaultName = "qaVisit"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        visit = butlerQC.quantum.dataId["visit"]
        debug = {} if self.config.debug else None
        metric_rows, detector_values, metric_values = compute.visit_qa(
            inputs["sources"], inputs["ccd"], visit, _instrument(butlerQC), debug=debug)
        self.log.info("visit %s: %d sources, %d metric values, %d failing", visit, inputs["sources"].num_rows,
                      metric_values.num_rows, metric_values.column("status").to_pylist().count("fail"))
        outputs = pipeBase.Struct(metric_rows=metric_rows, detector_values=detector_values,
                                  metric_values=metric_values)
        if self.config.debug:
            from surveyqa.tasks.debug import detector_summary_plot

            outputs.debug_sources = debug["sources"]
            outputs.debug_detectors = detector_summary_plot(detector_values, visit)
        _put(butlerQC, outputs, outputRefs)


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
    debug_matches = cT.Output(name="qaDetectorReference_debug_matches", storageClass="ArrowTable",
                              dimensions=("instrument", "visit", "detector"),
                              doc="Debug: each source matched to the reference catalog, with its offsets.")
    debug_offsets = cT.Output(name="qaDetectorReference_debug_offsetField", storageClass="Plot",
                              dimensions=("instrument", "visit", "detector"),
                              doc="Debug: the astrometric offset field of the detector (arrows on the sky).")

    def __init__(self, *, config=None):
        super().__init__(config=config)
        _drop_debug_outputs(self, config)

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
    debug = _debug_field()


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
        debug = {} if self.config.debug else None
        rows, values = compute.detector_reference_qa(sources, refcat, region, data_id["visit"], data_id["detector"],
                                                     _instrument(butlerQC), self.config.match_radius, debug=debug)
        outputs = pipeBase.Struct(metric_rows=rows, metric_values=values)
        if self.config.debug:
            from surveyqa.tasks.debug import offset_field_plot

            outputs.debug_matches = debug["matches"]
            outputs.debug_offsets = offset_field_plot(debug["matches"], data_id["visit"], data_id["detector"])
        _put(butlerQC, outputs, outputRefs)


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
    debug_residuals = cT.Output(name="qaTract_debug_starResiduals", storageClass="ArrowTable",
                                dimensions=("skymap", "tract"),
                                doc="Debug: per isolated-star source of the calibration checks, its residuals from "
                                    "its star's mean (mmag, mas), magnitude, S/N, visit and detector.")
    debug_residuals_plot = cT.Output(name="qaTract_debug_residualsVsMag", storageClass="Plot",
                                     dimensions=("skymap", "tract"),
                                     doc="Debug: photometric and astrometric residuals against magnitude, per band.")

    def __init__(self, *, config=None):
        super().__init__(config=config)
        _drop_debug_outputs(self, config)


class QaTractConfig(pipeBase.PipelineTaskConfig, pipelineConnections=QaTractConnections):
    max_srd_stars = pexConfig.Field[int](
        doc="The SRD metrics (PA1, AM1, TE1, ...) use at most this many isolated stars per tract, a seeded "
            "sample (their pair computations grow with the square of the stars per area); 0: all.",
        default=10000)
    debug = _debug_field()


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
        debug = {} if self.config.debug else None
        metric_rows, metric_values = compute.tract_qa(inputs["objects"], assoc, cat, tract, instrument,
                                                        self.config.max_srd_stars or None, visit_sources, debug=debug)
        self.log.info("tract %s: %d metric values, %d failing", tract, metric_values.num_rows,
                      metric_values.column("status").to_pylist().count("fail"))
        outputs = pipeBase.Struct(metric_rows=metric_rows, metric_values=metric_values)
        if self.config.debug:
            from surveyqa.tasks.debug import residuals_vs_mag_plot

            residuals = debug.get("star_residuals")
            if residuals is None:  # no isolated stars: an empty table says so, rather than a missing dataset
                residuals = pa.table({"visit": pa.array([], pa.int64()), "detector": pa.array([], pa.int64()),
                                      "band": pa.array([], pa.string()), "used": pa.array([], pa.bool_()),
                                      "mag": pa.array([], pa.float64()), "dmag": pa.array([], pa.float64()),
                                      "dra": pa.array([], pa.float64()), "ddec": pa.array([], pa.float64())})
            outputs.debug_residuals = residuals
            outputs.debug_residuals_plot = residuals_vs_mag_plot(residuals, tract)
        _put(butlerQC, outputs, outputRefs)


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
    debug = _debug_field()  # the manifest has no diagnostics of its own: debug adds no output here


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
