"""The dashboard's JSON twins over real HTTP, its notebook run by a real kernel, its CLI, and real HSC data.

The demo repository's truth manifest says which detector, visit and patch were made bad; the
JSON routes (the same code path as the pages) must show them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import nbformat
import pandas as pd
import pytest

from surveyqa.dashboard import api, model
from surveyqa.dashboard.source import CachedSource, TableSource


@pytest.fixture(scope="module")
def server(demo_repo, tmp_path_factory):
    from surveyqa.dashboard import serve

    handle, _ = serve(*demo_repo, notebook_dir=tmp_path_factory.mktemp("notebooks"))
    yield handle
    handle.stop()


def get(server, path: str, status: int = 200) -> dict:
    response = httpx.get(server.url.rstrip("/") + path, timeout=60)
    assert response.status_code == status, response.text
    return response.json() if response.headers["content-type"].startswith("application/json") else response.text


def test_server_listens_on_localhost_only(server):
    assert server.url.startswith("http://127.0.0.1:")


def test_quicklook_json_counts_and_failed_metrics(server, truth):
    page = get(server, "/api/quicklook.json")
    assert page["header"]["tracts"] == len(truth["tracts"])
    per_band = pd.Series([v["band"] for v in truth["visits"]]).value_counts().to_dict()
    assert page["header"]["visits_per_band"] == per_band
    assert page["header"]["sources"] == truth["n_sources"]
    status = {(m["metric"], m["band"]): m["status"] for m in page["metrics"]}
    bad_band = next(v["band"] for v in truth["visits"] if v["visit"] == truth["defects"]["bad_zeropoint_visit"]["visit"])
    assert status[("health.zeroPointOffset", bad_band)] == "fail"
    assert all(status[("health.astromOffset", b)] == "fail" for b in per_band)  # the bad detector is in every band
    assert status[("health.emptyCellFraction", None)] == "fail"
    assert "pass" in status.values()
    assert all(m["unit"] is not None for m in page["metrics"])
    assert page["sky"]["values"] and all(v["polygon"] for v in page["sky"]["values"])


def test_metric_json_drills_tract_then_patch(server, truth):
    top = get(server, "/api/metric/validate_drp.PA1.json?band=r")
    tract = top["children"][0]["tract"]
    assert top["level"] == "dataset" and [c["tract"] for c in top["children"]] == list(truth["tracts"])
    inside = get(server, f"/api/metric/validate_drp.PA1.json?band=r&tract={tract}")
    assert inside["level"] == "tract" and inside["child_key"] == "patch"
    assert len(inside["children"]) == 16 and inside["rows"]["n"] > 0
    patch = get(server, f"/api/metric/validate_drp.PA1.json?band=r&tract={tract}&patch=6")
    assert patch["level"] == "patch" and {r["patch"] for r in patch["rows"]["worst"]} == {6}
    assert patch["breadcrumbs"][-1]["label"] == "patch 6"
    per_patch = {c["patch"]: c["n"] for c in inside["children"]}
    assert patch["rows"]["n_selected"] == per_patch[6] <= patch["rows"]["n"]  # the rows behind the value


def test_empty_patch_is_the_failed_child(server, truth):
    empty = truth["defects"]["empty_region"]
    page = get(server, f"/api/metric/health.emptyCellFraction.json?tract={empty['tract']}")
    failed = [c["patch"] for c in page["children"] if c["status"] == "fail"]
    assert failed == [empty["patch"]]


def test_visit_json_bad_detector_and_bad_visit_are_the_outliers(server, truth):
    bad_detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    for visit in (v["visit"] for v in truth["visits"][-3:]):
        page = get(server, f"/api/visits/health.astromOffset.json?visit={visit}")
        assert [c["detector"] for c in page["children"] if c["outlier"]] == [bad_detector]
    bad_visit = truth["defects"]["bad_zeropoint_visit"]["visit"]
    series = get(server, "/api/visits/health.zeroPointOffset.json")
    worst = max(series["children"], key=lambda c: abs(c["value"]))
    assert worst["visit"] == bad_visit and worst["outlier"] and worst["status"] == "fail"


def test_quicklook_json_names_each_defect_once_by_place(server, truth):
    culprits = {c["place"]: c for c in get(server, "/api/quicklook.json")["culprits"]}
    d = truth["defects"]
    visit = d["bad_zeropoint_visit"]["visit"]
    assert {f["metric"] for f in culprits[f"visit {visit}"]["flags"]} >= {"health.zeroPointOffset",
                                                                           "health.photRefOffset"}
    assert not any(c["data_id"].get("visit") == visit and "detector" in c["data_id"] for c in culprits.values())
    detector = d["bad_astrometry_detector"]["detector"]
    focal = [c for c in culprits.values() if c["kind"] == "focal_detector"]
    assert [c["data_id"] for c in focal] == [{"detector": detector}]
    assert focal[0]["query"]["view"] == "focalplane"
    empty = d["empty_region"]
    assert f"tract {empty['tract']} patch {empty['patch']}" in culprits
    assert f"tract {empty['tract']} column {d['nan_flux_column']['column']}" in culprits
    for visit, det in d["outside_refcat"]["failing"]:
        assert culprits[f"visit {visit} detector {det}"]["flags"][0]["rule"] == "failed"


def test_focal_plane_json_marks_the_detector_bad_in_every_visit(server, truth):
    detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    for band in sorted({v["band"] for v in truth["visits"]}):
        page = get(server, f"/api/focalplane/health.astromOffset.json?band={band}")
        assert [d["detector"] for d in page["detectors"] if d["n_fail"]] == [detector]
        assert all(d["polygon"] for d in page["detectors"]) and page["reference_visit"] is not None
        one = get(server, f"/api/focalplane/health.astromOffset.json?band={band}&detector={detector}")
        in_band = [v["visit"] for v in truth["visits"] if v["band"] == band]
        assert [v["visit"] for v in one["visits"]] == sorted(in_band)
        assert all(v["status"] == "fail" for v in one["visits"])


def test_linked_json_joins_the_stored_values_of_several_metrics_by_data_id(server, truth):
    bad_visit = truth["defects"]["bad_zeropoint_visit"]["visit"]
    band = next(v["band"] for v in truth["visits"] if v["visit"] == bad_visit)
    page = get(server, f"/api/linked.json?metrics=health.zeroPointOffset,health.astromOffset&band={band}")
    assert page["level"] == "detector" and page["keys"] == ["visit", "detector"]
    stored = {(v["visit"], v["detector"]): v["value"] for v in get(
        server, f"/api/visits/health.zeroPointOffset.json?visit={bad_visit}")["children"]}
    rows = {(r["visit"], r["detector"]): r for r in page["rows"]}
    assert {k: rows[k]["health.zeroPointOffset"] for k in stored} == stored
    assert all(rows[k]["health.zeroPointOffset:status"] == "fail" for k in stored)
    detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    assert {k[1] for k, r in rows.items() if r["health.astromOffset:status"] == "fail"} == {detector}


def test_linked_json_names_the_selection_of_its_address(server, truth):
    """``selected=`` (the page's address after a box selection) gives back those data IDs, in the table's order."""
    detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    base = "/api/linked.json?metrics=health.zeroPointOffset,health.astromOffset"
    rows = get(server, base)["rows"]
    picked = [r for r in rows if r["detector"] == detector][:3]
    text = ",".join(f"{r['visit']}.{r['detector']}" for r in reversed(picked))
    page = get(server, f"{base}&selected={text}")
    assert page["selected"] == [{"visit": r["visit"], "detector": r["detector"]} for r in picked]
    assert page["rows"] == rows


def test_failures_json_lists_failed_quanta_with_positions(server, truth):
    failures = get(server, "/api/failures.json")["failures"]
    failing = {tuple(pair) for pair in truth["defects"]["outside_refcat"]["failing"]}
    assert {(f["visit"], f["detector"]) for f in failures} == failing
    assert all(f["ra"] is not None and f["dec"] is not None for f in failures)


@pytest.mark.parametrize("path,status,needle", [
    ("/api/metric/no.such.metric.json", 404, "no metric"),
    ("/api/metric/validate_drp.PA1.json?tract=abc", 400, "not an integer"),
    ("/api/metric/validate_drp.PA1.json?patch=3", 400, "needs its tract"),
    ("/api/visits/health.astromOffset.json?detector=3", 400, "needs its visit"),
    ("/api/notebook.ipynb?metric=nope", 404, "no metric"),
    ("/api/metric/validate_drp.PA1.json?tract=999", 404, "no tract 999"),
    ("/api/visits/health.astromOffset.json?visit=999999", 404, "no visit 999999"),
    ("/api/focalplane/health.astromOffset.json?band=zz", 400, "no per-detector values in band 'zz'"),
    ("/api/focalplane/health.astromOffset.json?detector=99", 404, "no detector 99"),
    ("/api/focalplane/validate_drp.PA1.json", 400, "no per-detector values"),
    ("/api/linked.json", 400, "nothing to link"),
    ("/api/linked.json?metrics=validate_drp.PA1,health.psfFwhm", 400, "share no level"),
    ("/api/linked.json?metrics=health.psfFwhm,no.such", 404, "no metric"),
    ("/api/linked.json?metrics=health.psfFwhm,health.zeroPoint&band=zz", 400, "no values in band 'zz'"),
    ("/api/linked.json?metrics=health.psfFwhm,health.zeroPoint&level=patch", 400, "not every metric"),
    ("/api/linked.json?metrics=health.zeroPointOffset,health.astromOffset&selected=1.x", 400, "is not a detector data ID"),
    ("/api/linked.json?metrics=health.zeroPointOffset,health.astromOffset&selected=1.2", 404, "is not among the"),
    ("/api/metric/validate_drp.PA1.json?band=zz", 400, "validate_drp.PA1 has no values in band 'zz'"),
    ("/api/visits/health.astromOffset.json?band=zz", 400, "has no values in band 'zz'"),
    ("/api/metric/validate_drp.PA1.json?tract=12345678901234567890123", 400, "out of range"),
    ("/api/visits/health.astromOffset.json?visit=-1", 400, "visit -1 is out of range"),
    ("/api/metric/validate_drp.PA1.json?tract=%201", 400, "not an integer"),
    ("/api/metric/validate_drp.PA1.json?tract=100&patch=99", 404, "no patch 99 in tract 100"),
    ("/api/visits/health.astromOffset.json?visit=101001&detector=99", 404, "no detector 99 in visit 101001"),
    ("/api/quicklook.json?sky_band=zz", 400, "has no values in band 'zz'"),
    ("/api/nothing.json", 404, "no route"),
])
def test_bad_queries_answer_4xx_with_a_hint(server, path, status, needle):
    body = get(server, path, status)
    assert needle in body["error"] and body["hint"]


def test_every_route_is_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "dashboard.md").read_text()
    for route in api.ROUTES:
        assert route in doc, f"{route} is not in docs/dashboard.md"


def test_notebook_loads_the_rows_the_page_shows(server, tmp_path):
    from nbclient import NotebookClient

    page = get(server, "/api/metric/validate_drp.PA1.json?band=r&tract=100")
    notebook = nbformat.reads(get(server, "/api/notebook.ipynb?metric=validate_drp.PA1&band=r&tract=100"),
                              as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"tract: {len(page['children'])} children, {page['rows']['n']} rows" in printed


def test_quicklook_of_real_hsc_pdr2_metrics(shared_data):
    """The real HSC PDR2 per-tract metrics (a tidy table, no repository) through the same views."""
    folder = shared_data / "hsc_pdr2_dashboard"
    wide = pd.read_parquet(folder / "PDR2_metrics.parq")
    skymap = pd.read_csv(folder / "deepCoadd_skyMap.csv", index_col=0)
    names = [c for c in wide.columns if not c.endswith("_unit")]
    tidy = wide[names].stack(future_stack=True).rename("value").reset_index()
    tidy.columns = ["band", "tract", "metric", "value"]
    units = wide[[n + "_unit" for n in names]].stack(future_stack=True).to_numpy()
    tidy = tidy.assign(unit=units, level="tract", status="none", n=1)
    used = sorted(tidy["tract"].unique())
    corners = skymap.loc[used]
    tracts = pd.DataFrame({"tract": used, "polygon": [[(r.x0, r.y0), (r.x1, r.y0), (r.x1, r.y1), (r.x0, r.y1)]
                                                      for r in corners.itertuples()]})
    source = CachedSource(TableSource(tidy, tracts=tracts))
    page = model.quicklook(source, "validate_drp.AM1.design", "HSC-I").to_json()
    assert page["header"]["tracts"] == wide.index.get_level_values(1).nunique()
    am1 = wide.loc["HSC-I", "validate_drp.AM1.design"]
    shown = {v["tract"]: v["value"] for v in page["sky"]["values"]}
    finite = am1.dropna()
    assert {t: v for t, v in shown.items() if v is not None} == pytest.approx(
        {int(t): float(v) for t, v in finite.items()})
    assert {t for t, v in shown.items() if v is None} == {int(t) for t in am1[am1.isna()].index}
    assert json.dumps(page)  # NaN-free JSON
    view = model.metric_view(source, "validate_drp.AM1.design", "HSC-I")
    assert len(view.children) == len(am1) and view.children["polygon"].notna().all()


def test_cli_help_has_an_example_and_a_bad_repo_is_one_line():
    help_text = subprocess.run([sys.executable, "-m", "surveyqa.cli", "dashboard", "--help"],
                               capture_output=True, text=True)
    assert help_text.returncode == 0 and "Example" in help_text.stdout and "127.0.0.1" in help_text.stdout
    bad = subprocess.run([sys.executable, "-m", "surveyqa.cli", "dashboard", "no-such-repo", "--collection", "x"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("Error:") and len(bad.stderr.strip().splitlines()) == 1


def test_a_key_the_page_cleared_is_not_an_error_on_reload():
    """Panel's sync of the address writes a cleared data ID as ``tract=null`` (a jump from a tract
    to one of its visits): reloading that address opens the visit, without an error."""
    from surveyqa.dashboard.state import read_query

    values, errors = read_query({"view": [b"visits"], "metric": [b"health.psfFwhm"], "tract": [b"null"],
                                 "visit": [b"109005"]})
    assert errors == [] and values == {"view": "visits", "metric": "health.psfFwhm", "visit": 109005}
    values, errors = read_query({"tract": [b"nul"]})
    assert errors and "tract" in str(errors[0])
