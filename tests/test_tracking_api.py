"""The tracking API over real HTTP (uvicorn on a free port), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest
import sqlalchemy as sa
from tracking_fixtures import VERIFY_JOB, db_url, job_with, make_server  # noqa: F401

from surveyqa.tracking.db import run_t, value_t
from surveyqa.tracking.ingest import submission_from_table


def _counts(server) -> tuple[int, int]:
    with server.service.engine.connect() as c:
        return (
            c.execute(sa.select(sa.func.count()).select_from(run_t)).scalar(),
            c.execute(sa.select(sa.func.count()).select_from(value_t)).scalar(),
        )


def test_verify_job_round_trip(make_server):
    server = make_server()
    original = json.loads(VERIFY_JOB.read_text())
    with server.client(server.token()) as http:
        r = http.post("/api/jobs", content=VERIFY_JOB.read_bytes(), headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        assert r.json()["values"] == 30
        job = http.get(f"/api/runs/{run_id}/job").json()
        run = http.get(f"/api/runs/{run_id}").json()
    assert len(job["measurements"]) == 30
    assert len(job["metrics"]) == 62 and len(job["specs"]) == 628 and len(job["blobs"]) == 33
    assert len(job["meta"]["packages"]) == 124 and len(run["packages"]) == 124
    sent = {m["metric"]: m for m in original["measurements"]}
    for m in job["measurements"]:
        want = sent[m["metric"]]
        assert m["identifier"] == want["identifier"] and m["blob_refs"] == want["blob_refs"]
        if math.isnan(want["value"]):
            assert m["value"] is None
        else:
            assert m["value"] == pytest.approx(want["value"], rel=1e-12)
    assert {s["name"] for s in job["specs"]} == {s["name"] for s in original["specs"]}
    spec = next(s for s in job["specs"] if s["name"] == "validate_drp.PA1.cfht_design_r")
    want_spec = next(s for s in original["specs"] if s["name"] == "validate_drp.PA1.cfht_design_r")
    assert spec["threshold"] == want_spec["threshold"] and spec["metadata_query"] == want_spec["metadata_query"]
    sha = original["meta"]["packages"]["afw"]["git_sha"]
    assert job["meta"]["packages"]["afw"]["git_sha"] == sha
    assert job["meta"]["env"]["ci_url"] == original["meta"]["env"]["ci_url"]
    blob = next(b for b in job["blobs"] if b["identifier"] == original["blobs"][0]["identifier"])
    assert blob["data"]["D"] == original["blobs"][0]["data"]["D"]
    assert run["dataset"] == "validation_data_cfht" and run["time"].startswith("2018-07-30T18:25:52")


def test_resubmission_changes_nothing(make_server):
    server = make_server()
    with server.client(server.token()) as http:
        first = http.post("/api/jobs", content=VERIFY_JOB.read_bytes(), headers={"Content-Type": "application/json"})
        before = _counts(server)
        again = http.post("/api/jobs", content=VERIFY_JOB.read_bytes(), headers={"Content-Type": "application/json"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["created"] is False and again.json()["run_id"] == first.json()["run_id"]
    assert _counts(server) == before == (1, 30)


def test_time_series_by_data_id_with_links(make_server):
    server = make_server(dashboard_url="http://dash.example:5006")
    with server.client(server.token()) as http:
        for i, (band, date) in enumerate([("r", "2026-01-01T00:00:00Z"), ("r", "2026-01-02T00:00:00Z"), ("i", "2026-01-02T00:00:00Z")]):
            job = job_with({"surveyqa.testMetric": 10.0 + i}, date, filter_name=band, repo="/repo/main", collection=f"u/qa/run{i}")
            assert http.post("/api/jobs", json=job).status_code == 201
        series = http.get("/api/metrics/surveyqa.testMetric/series", params={"filter_name": "r"}).json()
        twin = http.get("/metrics/surveyqa.testMetric.json", params={"filter_name": "r"}).json()
        page = http.get("/metrics/surveyqa.testMetric", params={"filter_name": "r"})
        everything = http.get("/api/metrics/surveyqa.testMetric/series").json()
    assert [s["data_id"] for s in series["series"]] == [{"filter_name": "r", "instrument": "HSC"}]
    points = series["series"][0]["points"]
    assert [p["value"] for p in points] == [10.0, 11.0]
    assert points[1]["link"] == "http://dash.example:5006/?repo=%2Frepo%2Fmain&collection=u%2Fqa%2Frun1&metric=surveyqa.testMetric"
    assert twin == series
    assert len(everything["series"]) == 2
    assert page.status_code == 200 and "<svg" in page.text and points[1]["link"].replace("&", "&amp;") in page.text


def test_thresholds_drawn_for_verify_metric(make_server):
    server = make_server()
    with server.client(server.token()) as http:
        http.post("/api/jobs", content=VERIFY_JOB.read_bytes(), headers={"Content-Type": "application/json"})
        view = http.get("/metrics/validate_drp.PA1.json").json()
        page = http.get("/metrics/validate_drp.PA1").text
    names = {t["name"] for t in view["thresholds"]}
    # the job's meta (CFHT, r, no visits list) satisfies only the specs without a metadata query
    assert "validate_drp.PA1.design_gri" in names and "validate_drp.PA1.cfht_design_r" not in names
    assert page.count('class="threshold"') == len(names)
    assert view["series"][0]["points"][0]["value"] == pytest.approx(16.72336186802337)


def test_run_view_shows_code_changes(make_server):
    server = make_server()
    with server.client(server.token()) as http:
        a = http.post("/api/jobs", json=job_with({"surveyqa.m": 1.0}, "2026-01-01T00:00:00Z", {"pipe_tasks": ("1.0", "a" * 40), "afw": ("2.0", "c" * 40)})).json()
        b = http.post("/api/jobs", json=job_with({"surveyqa.m": 1.1}, "2026-01-02T00:00:00Z", {"pipe_tasks": ("1.1", "b" * 40), "afw": ("2.0", "c" * 40)})).json()
        run = http.get(f"/runs/{b['run_id']}.json").json()
        page = http.get(f"/runs/{b['run_id']}").text
    assert run["previous_run"] == a["run_id"]
    assert run["code_changes"] == [
        {"package": "pipe_tasks", "change": "changed", "old_version": "1.0", "new_version": "1.1", "old_sha": "a" * 40, "new_sha": "b" * 40, "git_url": None}
    ]
    assert "pipe_tasks" in page and "bbbbbbbbbb" in page and "afw" not in page.split("Code changes")[1].split("Values")[0]


def test_own_format_from_metric_value_table(make_server):
    server = make_server()
    table = pa.table(
        {
            "metric": ["validate_drp.PA1", "validate_drp.PA1", "surveyqa.sourceDensity"],
            "value": [5.2, float("nan"), 1200.0],
            "unit": ["mmag", "mmag", "1 / deg2"],
            "level": ["band", "band", "patch"],
            "band": ["r", "i", "r"],
            "tract": [9813, 9813, 9813],
            "patch": [None, None, 41],
            "n": [350, 0, 1200],
            "note": [None, "too few stars", None],
        }
    )
    sub = submission_from_table(
        table,
        {"dataset": "sim", "repo": "/repo/main", "collection": "u/qa/run1"},
        metrics=[{"name": "validate_drp.PA1", "unit": "mmag"}, {"name": "surveyqa.sourceDensity", "unit": "1 / deg2", "higher_is_better": True}],
    )
    with server.client(server.token()) as http:
        r = http.post("/api/submissions", content=sub.model_dump_json(), headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
        run = http.get(f"/api/runs/{r.json()['run_id']}").json()
        patch = http.get("/api/metrics/surveyqa.sourceDensity/series", params={"tract": 9813, "patch": 41}).json()
    got = {(v["metric"], v["data_id"].get("band")): v for v in run["values"]}
    assert got[("validate_drp.PA1", "r")]["value"] == 5.2 and got[("validate_drp.PA1", "r")]["data_id"] == {"band": "r", "tract": 9813}
    assert got[("validate_drp.PA1", "i")]["value"] is None and got[("validate_drp.PA1", "i")]["note"] == "too few stars"
    assert patch["series"][0]["data_id"] == {"band": "r", "patch": 41, "tract": 9813}
    assert patch["series"][0]["points"][0]["value"] == 1200.0 and patch["metric"]["higher_is_better"] is True


def test_values_converted_to_metric_unit(make_server):
    server = make_server()
    with server.client(server.token()) as http:
        http.post("/api/jobs", json=job_with({"surveyqa.m": 10.0}, "2026-01-01T00:00:00Z"))
        job = job_with({"surveyqa.m": 0.012}, "2026-01-02T00:00:00Z")
        job["measurements"][0]["unit"] = "mag"
        assert http.post("/api/jobs", json=job).status_code == 201
        points = http.get("/api/metrics/surveyqa.m/series").json()["series"][0]["points"]
    assert [p["value"] for p in points] == pytest.approx([10.0, 12.0])


BAD = {
    "malformed JSON": (b'{"measurements": [', "JSON"),
    "unknown unit": (None, "unknown unit"),
    "NaN value": (None, "NaN"),
    "unknown metric": (None, "unknown metric"),
    "unconvertible unit": (None, "cannot be converted"),
}


def _bad_body(case: str) -> tuple[str, bytes]:
    if case == "malformed JSON":
        return "/api/jobs", b'{"measurements": ['
    if case == "unknown unit":
        job = job_with({"surveyqa.m": 1.0}, "2026-01-01T00:00:00Z")
        job["measurements"][0]["unit"] = "furlongs_per_fortnight"
        job["metrics"][0]["unit"] = "furlongs_per_fortnight"
        return "/api/jobs", json.dumps(job).encode()
    if case == "NaN value":
        body = {"run": {"dataset": "sim"}, "metrics": [{"name": "surveyqa.m", "unit": "mmag"}],
                "values": [{"metric": "surveyqa.m", "value": float("nan"), "unit": "mmag", "data_id": {"band": "r"}}]}
        return "/api/submissions", json.dumps(body).encode()
    if case == "unknown metric":
        body = {"run": {"dataset": "sim"}, "values": [{"metric": "surveyqa.noSuchMetric", "value": 1.0, "unit": "mmag"}]}
        return "/api/submissions", json.dumps(body).encode()
    job = job_with({"surveyqa.m": 1.0}, "2026-01-01T00:00:00Z")
    job["measurements"][0]["unit"] = "arcsec"
    return "/api/jobs", json.dumps(job).encode()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_4xx_and_stores_nothing(make_server, case):
    server = make_server()
    path, body = _bad_body(case)
    with server.client(server.token()) as http:
        r = http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert BAD[case][1].lower() in r.text.lower()
    assert _counts(server) == (0, 0)
    with server.service.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM metric")).scalar() == 0


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic abc"])
def test_writing_needs_a_token(make_server, header):
    server = make_server()
    server.token()
    headers = {"Content-Type": "application/json"} | ({"Authorization": header} if header else {})
    with server.client() as http:
        r = http.post("/api/jobs", content=VERIFY_JOB.read_bytes(), headers=headers)
        assert http.get("/api/runs").status_code == 200  # reading is open by default
    assert r.status_code == 401 and "token" in r.json()["detail"]
    assert _counts(server) == (0, 0)


def test_reading_can_require_a_token(make_server):
    server = make_server(read_requires_token=True)
    token = server.token()
    with server.client() as anonymous, server.client(token) as http:
        assert anonymous.get("/api/runs").status_code == 401
        assert anonymous.get("/").status_code == 401
        assert http.get("/api/runs").json() == []


def test_token_is_stored_only_as_hash(make_server):
    server = make_server()
    token = server.token("ci")
    with server.service.engine.connect() as c:
        rows = c.execute(sa.text("SELECT name, hash FROM token")).all()
    assert rows[0][0] == "ci" and token not in rows[0][1] and len(rows[0][1]) == 64


def test_openapi_and_index(make_server):
    server = make_server()
    with server.client() as http:
        doc = http.get("/openapi.json").json()
        index = http.get("/")
        twin = http.get("/index.json").json()
    assert {"/api/jobs", "/api/submissions", "/api/metrics/{name}/series", "/api/runs/{run_id}/job"} <= set(doc["paths"])
    assert index.status_code == 200 and 'href="/index.json"' in index.text
    assert twin == {"metrics": [], "runs": [], "alerts": []}
