"""Provenance in tracking: a run submitted from a repository keeps its provenance record, and an
alert's "what changed" names the config and input changes between the last good and first bad run.

Two real QA runs of the Rubin-shaped demo (a copy of it): the demo's own, then `surveyqa run` again
with one config value changed (``qaTract.max_srd_stars``, the SRD metrics on fewer stars). Both
are submitted over HTTP with `surveyqa track submit REPO --collection C`; the tracking config
alerts on a 1 % move, so that the SRD values computed on fewer stars open alerts.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from tracking_fixtures import db_url, delivered, make_server, wait_for_outbox, webhook_receiver  # noqa: F401

from surveyqa.cli import main
from surveyqa.demo import DEMO_INPUT

FEWER = 300


@pytest.fixture(scope="module")
def two_runs(rubin_demo_repo, tmp_path_factory):
    """(repo, collection of the demo's run, collection of the run with ``max_srd_stars`` changed)."""
    from surveyqa.tasks import PIPELINE_REFCAT

    folder = tmp_path_factory.mktemp("tracking-provenance")
    repo = folder / "repo"
    shutil.copytree(rubin_demo_repo[0], repo)
    pipeline = yaml.safe_load(PIPELINE_REFCAT.read_text())
    pipeline["tasks"]["qaTract"]["config"] = {"max_srd_stars": FEWER}
    path = folder / "qa-fewer-stars.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    assert main(["run", str(repo), "-i", DEMO_INPUT, "-o", "qa/fewer-stars", "-p", str(path), "-q"]) == 0
    return str(repo), rubin_demo_repo[1], "qa/fewer-stars"


@pytest.mark.slow
def test_an_alert_names_the_config_change_between_two_qa_runs(two_runs, make_server, webhook_receiver, capsys):
    repo, before, after = two_runs
    server = make_server(relative_change=0.01)
    token = server.token("ci")
    with server.client(token) as http:
        assert http.post("/api/subscriptions", json={"metric": "validate_drp.*", "channel": "webhook",
                                                      "target": webhook_receiver.url}).status_code == 201
    for collection in (before, after):
        assert main(["track", "submit", repo, "--collection", collection, "--server", server.url, "--token", token,
                     "--dataset", "demo"]) == 0
    printed = capsys.readouterr().out
    assert "alert" in printed, printed

    with server.client() as http:
        alerts = http.get("/api/alerts").json()
        alerts = alerts["alerts"] if isinstance(alerts, dict) else alerts
        assert alerts, "the SRD values on fewer stars opened no alert"
        for a in alerts:
            alert = http.get(f"/api/alerts/{a['id']}").json()
            assert alert["changes"]["config"] == {"qaTract.max_srd_stars": {"old": 10000, "new": FEWER}}, alert
            # the same input datasets: both runs read the demo's DRP outputs
            assert alert["changes"]["inputs"] == {"changed": {}, "added": {}, "removed": {}}
        run = http.get(f"/runs/{alerts[0]['first_bad_run']}.json").json()
        run = run.get("run") or run
        assert run["provenance_recorded"] and run["changes"]["config"]["qaTract.max_srd_stars"]["new"] == FEWER
        page = http.get(f"/runs/{alerts[0]['first_bad_run']}").text
        assert f"qaTract.max_srd_stars: 10000 -&gt; {FEWER}" in page

    wait_for_outbox(server.url, delivered)
    bodies = [r["json"]["text"] for r in webhook_receiver.received]
    assert len(bodies) == sum(a["metric"].startswith("validate_drp.") for a in alerts) > 0
    for body in bodies:
        assert f"Config changes between them:\n  qaTract.max_srd_stars: 10000 -> {FEWER}" in body
        assert "Input changes between them:\n  (none)" in body


def test_a_malformed_provenance_record_is_refused_and_nothing_is_stored(make_server):
    server = make_server()
    token = server.token("ci")
    submission = {"run": {"dataset": "demo", "provenance": {"configs": {"qaTract": "not a mapping"}}},
                  "values": [{"metric": "validate_drp.PA1", "value": 7.5, "unit": "mmag", "data_id": {"tract": 9615}}]}
    with server.client(token) as http:
        r = http.post("/api/submissions", json=submission)
        assert r.status_code == 422 and "configs" in r.text
        runs = http.get("/api/runs").json()
        assert (runs["runs"] if isinstance(runs, dict) else runs) == []
        # an lsst.verify job carrying a bad meta.provenance: refused the same way
        job = {"measurements": [{"metric": "validate_drp.PA1", "value": 7.5, "unit": "mmag"}],
               "meta": {"dataset": "demo", "provenance": {"inputs": ["not", "a", "mapping"]}}}
        r = http.post("/api/jobs", json=job)
        assert r.status_code == 422 and "meta.provenance.inputs" in r.text
        runs = http.get("/api/runs").json()
        assert (runs["runs"] if isinstance(runs, dict) else runs) == []
