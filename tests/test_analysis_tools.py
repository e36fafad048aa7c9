"""Rubin's own QA outputs (lsst/analysis_tools) in a repository show up in the dashboard and the tracker.

The bundles are written the way analysis_tools writes them: each measurement document is made by
Rubin's real ``lsst.verify.Measurement`` (../shared/clients/lsst-verify), gathered per tool as
``MetricMeasurementBundle.json()`` does, and ingested with the storage class and formatter the
Butler's own configuration gives ``MetricMeasurementBundle``; the metric table is an astropy Table
with ``MakeMetricTableTask``'s columns; metricInformation.yaml entries are copied from analysis_tools'.
analysis_tools itself is not installed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
RUN = "u/rubin/analysis_tools/w_2026_48"
CHAIN = "u/rubin/qa"

#: tool -> [(measurement name, value, unit)], as analysis_tools' atools name them (``{band}_...``).
TRACT_TOOLS = {
    "e1Diff": [("g_highSNStars_median", 0.05, "pixel"), ("g_highSNStars_sigmaMad", 0.004, "pixel"), ("g_highSNStars_count", 812, "count")],
    "skyFluxStatisticMetric": [("r_medianSky", 1.5, "nJy"), ("r_meanSky", float("nan"), "nJy")],
}
VISIT_TOOLS = {"skyFluxStatisticMetric": [("{band}_medianSky", None, "nJy")]}
#: analysis_tools' metricInformation.yaml entries for two of them (values as in its file).
METRIC_INFORMATION = """\
e1Diff_g_highSNStars_median:
    lowThreshold: -0.01
    highThreshold: 0.03
    divergent: true
    plot: objectTableCore_g_e1Diff_ScatterPlotWithTwoHists
    debugGroup: PSF
    atoolFile: shapes.py
    description: |
        The median of the high SN stars for the difference between the e1 calculated from the moments and the psf moments
e1Diff_g_highSNStars_sigmaMad:
    lowThreshold: 0.0
    highThreshold: 0.02
    divergent: false
    description: |
        The sigma mad of the high SN stars
"""

_MAKE_BUNDLES = r"""
import json, numbers, sys
import astropy.units as u
from lsst.verify import Measurement

class JSONFloatSafeEncoder(json.JSONEncoder):  # as analysis_tools' MetricMeasurementBundle.json() encodes
    def default(self, o):
        return float(o) if isinstance(o, numbers.Real) else super().default(o)

out = []
for spec in json.load(sys.stdin):
    result = {tool: [Measurement(name, value * u.Unit(unit)).json for name, value, unit in ms] for tool, ms in spec["tools"].items()}
    result["__dataset_identifier"] = "HSC/RC2"
    result["__metricNamePrefix"] = ""
    out.append(JSONFloatSafeEncoder().encode(result))
print(json.dumps(out))
"""


def make_bundles(specs: list[dict]) -> list[str]:
    """Bundle JSON texts made with Rubin's lsst.verify (run as its README says)."""
    env = {**os.environ, "PYTHONPATH": str(SHARED / "clients" / "lsst-verify" / "python")}
    out = subprocess.run([sys.executable, "-c", _MAKE_BUNDLES], input=json.dumps(specs), env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def atools_repo(rubin_demo_repo, tmp_path_factory):
    """A copy of the Rubin-shaped demo repository with analysis_tools outputs in a RUN, chained
    before our QA run: ``(repo, chain, visits)``."""
    from astropy.table import Table
    from lsst.daf.butler import Butler, CollectionType, DatasetRef, DatasetType, FileDataset

    src, qa = rubin_demo_repo
    repo = tmp_path_factory.mktemp("atools") / "repo"
    shutil.copytree(src, repo)
    butler = Butler(str(repo), writeable=True)
    butler.collections.register(RUN)
    visits = sorted(butler.query_dimension_records("visit", explain=False), key=lambda r: r.id)[:2]
    u = butler.dimensions
    tract_type = DatasetType("objectTableCore_metrics", ["skymap", "tract"], "MetricMeasurementBundle", universe=u)
    visit_type = DatasetType("sourceTableCore_metrics", ["visit", "band"], "MetricMeasurementBundle", universe=u)
    table_type = DatasetType("objectTableCore_metricsTable", ["skymap"], "ArrowAstropy", universe=u)
    depth_type = DatasetType("coadd_depth_summary_metrics_table", ["skymap"], "ArrowAstropy", universe=u)
    for dt in (tract_type, visit_type, table_type, depth_type):
        butler.registry.registerDatasetType(dt)
    bands = {v.id: v.physical_filter for v in visits}
    band_of = {r.name: r.band for r in butler.query_dimension_records("physical_filter", explain=False)}
    visit_specs = [{"tools": {t: [(n.format(band=band_of[bands[v.id]]), 40.0 + i, unit) for n, _, unit in ms] for t, ms in VISIT_TOOLS.items()}}
                   for i, v in enumerate(visits)]
    texts = make_bundles([{"tools": TRACT_TOOLS}, *visit_specs])
    folder = tmp_path_factory.mktemp("bundles")
    datasets = []
    for i, (text, dt, data_id) in enumerate(zip(
        texts, [tract_type] + [visit_type] * len(visits),
        [{"skymap": "hsc_rings_v1", "tract": 9615}] + [{"instrument": v.instrument, "visit": v.id, "band": band_of[v.physical_filter]} for v in visits],
    )):
        path = folder / f"bundle{i}.json"
        path.write_text(text)
        coord = butler.registry.expandDataId(data_id)
        datasets.append(FileDataset(path=str(path), refs=[DatasetRef(dt, coord, run=RUN)], formatter="lsst.daf.butler.formatters.json.JsonFormatter"))
    butler.ingest(*datasets, transfer="copy")
    # MakeMetricTableTask's table of the tract bundles: data ID fields, corners, then <tool>_<measurement> columns
    columns = {"tract": [9615], "corners": [[(216.0, -0.9), (217.1, -0.9), (217.1, 0.2), (216.0, 0.2)]]}
    units = {}
    for tool, ms in TRACT_TOOLS.items():
        for name, value, unit in ms:
            columns[f"{tool}_{name}"] = [value]
            if unit not in ("", "count"):
                units[f"{tool}_{name}"] = unit
    butler.put(Table(columns, units=units), table_type, skymap="hsc_rings_v1", run=RUN)
    butler.put(Table({"tract": [9615, 9813], "coaddDepthSummary_g_depth_median": [26.1, 25.8]},
                     units={"coaddDepthSummary_g_depth_median": "mag"}), depth_type, skymap="hsc_rings_v1", run=RUN)
    butler.collections.register(CHAIN, CollectionType.CHAINED)
    butler.collections.redefine_chain(CHAIN, [RUN, qa])
    info = tmp_path_factory.mktemp("info") / "metricInformation.yaml"
    info.write_text(METRIC_INFORMATION)
    return str(repo), CHAIN, visits, info


@pytest.fixture
def with_information(atools_repo, monkeypatch):
    from surveyqa.butler.analysis_tools import METRIC_INFORMATION_ENV

    monkeypatch.setenv(METRIC_INFORMATION_ENV, str(atools_repo[3]))
    return atools_repo


def test_bundles_are_lsst_verify_measurements_the_rubin_client_reads_back(atools_repo) -> None:
    """The fixture's bundles are in analysis_tools' format: Rubin's Measurement.deserialize (what
    MetricMeasurementBundle.parse_obj calls) reads every measurement of the stored file back."""
    from lsst.daf.butler import Butler

    butler = Butler(atools_repo[0])
    ref = butler.query_datasets("objectTableCore_metrics", collections=atools_repo[1], explain=False)[0]
    stored = json.loads(butler.getURI(ref).read())
    assert set(stored) == {"e1Diff", "skyFluxStatisticMetric", "__dataset_identifier", "__metricNamePrefix"}
    check = ("import json, sys\nfrom lsst.verify import Measurement\nd = json.load(sys.stdin)\n"
             "print(json.dumps({t: [str(Measurement.deserialize(**m).quantity) for m in v] for t, v in d.items() if not t.startswith('__')}))")
    env = {**os.environ, "PYTHONPATH": str(SHARED / "clients" / "lsst-verify" / "python")}
    out = json.loads(subprocess.run([sys.executable, "-c", check], input=json.dumps(stored), env=env, capture_output=True, text=True,
                                    check=True).stdout)
    assert out["e1Diff"][0] == "0.05 pix" and out["skyFluxStatisticMetric"][1] == "nan nJy"


def test_metric_values_carry_data_ids_units_and_thresholds(with_information) -> None:
    from surveyqa.butler import QARepository

    repo, chain, visits, _ = with_information
    qa = QARepository(repo, chain)
    values = qa.metric_values()
    ours = values[~values["metric"].str.startswith("analysis_tools.")]
    assert len(ours) > 100  # our own values are still there, next to Rubin's
    at = values[values["metric"].str.startswith("analysis_tools.")].set_index("metric", drop=False)

    median = at.loc["analysis_tools.objectTableCore.e1Diff_g_highSNStars_median"]
    assert (median["tract"], median["level"], median["band"], median["unit"]) == (9615, "tract", "g", "pix")
    assert median["value"] == pytest.approx(0.05)
    assert median["status"] == "fail" and median["threshold"] == pytest.approx(0.03)  # above highThreshold
    assert median["spec"].endswith("metricInformation_high")
    sigma = at.loc["analysis_tools.objectTableCore.e1Diff_g_highSNStars_sigmaMad"]
    assert sigma["status"] == "pass"
    count = at.loc["analysis_tools.objectTableCore.e1Diff_g_highSNStars_count"]
    assert count["status"] == "none" and count["unit"] == "ct"  # no thresholds for it
    mean_sky = at.loc["analysis_tools.objectTableCore.skyFluxStatisticMetric_r_meanSky"]
    assert math.isnan(mean_sky["value"]) and "not computed" in mean_sky["note"] and mean_sky["band"] == "r"

    per_visit = values[values["metric"] == "analysis_tools.sourceTableCore.skyFluxStatisticMetric_{}_medianSky".format(
        values.loc[values["visit"] == visits[0].id, "band"].dropna().iloc[0])]
    assert visits[0].id in set(per_visit["visit"]) and set(per_visit["level"]) == {"visit"}

    # the table repeats the tract bundle (one value, not two) and adds what only it holds
    assert (values["metric"] == "analysis_tools.objectTableCore.e1Diff_g_highSNStars_median").sum() == 1
    depth = values[values["metric"] == "analysis_tools.coadd_depth_summary.coaddDepthSummary_g_depth_median"]
    assert sorted(depth["tract"]) == [9615, 9813] and set(depth["unit"]) == {"mag"} and set(depth["band"]) == {"g"}

    failing = qa.metric_values(where={"status": "fail"})
    assert "analysis_tools.objectTableCore.e1Diff_g_highSNStars_median" in set(failing["metric"])
    entry = next(m for m in qa.manifest()["metrics"] if m["name"] == "analysis_tools.objectTableCore.e1Diff_g_highSNStars_median")
    assert entry["description"].startswith("The median of the high SN stars")
    assert {s["operator"] for s in entry["specs"]} == {">=", "<="}


def test_the_quick_look_shows_them(with_information) -> None:
    from surveyqa.butler import QARepository
    from surveyqa.dashboard import model

    repo, chain, _, _ = with_information
    summary = model.quicklook(QARepository(repo, chain)).summary.set_index("metric")
    row = summary.loc["analysis_tools.objectTableCore.e1Diff_g_highSNStars_median"]
    assert row["status"] == "fail" and row["value"] == pytest.approx(0.05) and row["level"] == "tract"
    assert "health.sourceDensity" in summary.index  # next to our own


def test_track_submit_sends_them_with_their_thresholds(atools_repo, tmp_path, capsys) -> None:
    from surveyqa.cli import main
    from surveyqa.tracking.config import TrackingConfig
    from surveyqa.tracking.service import TrackingService

    repo, chain, _, info = atools_repo
    db = f"sqlite:///{tmp_path / 'track.db'}"
    assert main(["track", "submit", repo, "--collection", chain, "--db", db, "--dataset", "rc2", "--metric-information", str(info)]) == 0
    assert "stored run 1" in capsys.readouterr().out
    service = TrackingService.open(TrackingConfig(db=db))
    from surveyqa.tracking.views import metric_view

    view = metric_view(service, "analysis_tools.objectTableCore.e1Diff_g_highSNStars_median")
    assert view is not None and view["metric"]["unit"] == "pix"
    [series] = view["series"]
    assert series["data_id"]["tract"] == 9615 and series["points"][0]["value"] == pytest.approx(0.05)
    assert {(t["operator"], t["value"]) for t in view["thresholds"]} == {(">=", -0.01), ("<=", 0.03)}
    assert metric_view(service, "health.sourceDensity")["series"]  # ours went with them
    service.engine.dispose()


def test_a_collection_of_analysis_tools_outputs_alone_is_read_too(with_information) -> None:
    from surveyqa.butler import QARepository
    from surveyqa.dashboard import model

    repo, _, _, _ = with_information
    qa = QARepository(repo, RUN)  # Rubin's outputs only: no qaManifest, no surveyqa values
    assert qa.manifest()["source"] == "analysis_tools"
    assert set(qa.metric_values()["metric"].str.split(".").str[0]) == {"analysis_tools"}
    summary = model.quicklook(qa).summary
    assert (summary["status"] == "fail").sum() == 1 and len(summary) > 5


def test_a_bundle_not_in_the_format_is_refused_naming_the_dataset() -> None:
    from surveyqa.butler.analysis_tools import bundle_values
    from surveyqa.errors import SurveyQAError

    with pytest.raises(SurveyQAError, match="objectTableCore_metrics .*tool 'e1Diff' holds dict"):
        bundle_values({"e1Diff": {"metric": "x"}}, "objectTableCore", {}, "objectTableCore_metrics {tract: 1}")
    with pytest.raises(SurveyQAError, match="a measurement without 'metric'"):
        bundle_values({"e1Diff": [{"value": 1.0}]}, "objectTableCore", {}, "objectTableCore_metrics {tract: 1}")
