"""Rubin's own upload client, lsst.verify's ``dispatch_verify.py``, against ``surveyqa track serve``.

The client is the real one in ../shared/clients/lsst-verify (run as its README says), the server
the real command, over real HTTP on a free port: what a Rubin CI job would do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tracking_fixtures import VERIFY_JOB, free_port

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIENT = SHARED / "clients" / "lsst-verify"
DISPATCH = CLIENT / "bin.src" / "dispatch_verify.py"
SURVEYQA = Path(sys.executable).with_name("surveyqa")


@pytest.fixture(scope="module")
def squash_server(tmp_path_factory):
    """``surveyqa track serve`` over a seeded SQLite database with a token named ``ci``."""
    from surveyqa.tracking.db import open_database
    from surveyqa.tracking.seed import seed_definitions
    from surveyqa.tracking.tokens import create_token

    tmp = tmp_path_factory.mktemp("squash")
    db = f"sqlite:///{tmp / 'track.db'}"
    engine = open_database(db)
    seed_definitions(engine)
    token = create_token(engine, "ci")
    engine.dispose()
    port = free_port()
    log = open(tmp / "serve.log", "w")
    proc = subprocess.Popen([str(SURVEYQA), "track", "serve", "--db", db, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"surveyqa track serve did not start: {(tmp / 'serve.log').read_text()[-2000:]}")
        time.sleep(0.2)
    yield {"url": url, "token": token, "tmp": tmp}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def dispatch(server: dict, password: str, build: str, job: Path = VERIFY_JOB) -> subprocess.CompletedProcess:
    """Run the real dispatch_verify.py as Rubin's Jenkins did (``--env jenkins``, build id in BUILD_ID)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(CLIENT / "python"),
        "VERIFY_METRICS_DIR": str(SHARED / "data" / "verify_metrics"),
        "BUILD_ID": build,
        "BUILD_URL": f"https://ci.example.org/job/validate_drp/{build}/",
        "PRODUCT": "validate_drp",
        "dataset": "validation_data_cfht",
    }
    # --ignore-blobs: requests >= 2.26 refuses to send the NaN these blobs hold (the client's README)
    cmd = [sys.executable, str(DISPATCH), str(job), "--url", server["url"] + "/squash", "--user", "ci", "--password", password,
           "--ignore-lsstsw", "--ignore-blobs", "--env", "jenkins"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=server["tmp"])


def runs(server: dict) -> list[dict]:
    return httpx.get(server["url"] + "/api/runs").json()


def test_dispatch_verify_twice_for_one_build_stores_one_run_with_its_measurements(squash_server) -> None:
    first = dispatch(squash_server, squash_server["token"], "1001")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "status: 202" in first.stdout and "Job stored as run" in first.stdout
    retry = dispatch(squash_server, squash_server["token"], "1001")  # a CI retry: same build, a new meta.env.date
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert "status: 200" in retry.stdout and "already stored" in retry.stdout

    stored = [r for r in runs(squash_server) if r["ci_id"] == "1001"]
    assert len(stored) == 1
    run = httpx.get(f"{squash_server['url']}/api/runs/{stored[0]['id']}").json()
    job = json.loads(VERIFY_JOB.read_text())
    assert len(run["values"]) == 30
    assert sorted(v["metric"] for v in run["values"]) == sorted(m["metric"] for m in job["measurements"])
    sent = {m["metric"]: m for m in job["measurements"]}
    am1 = next(v for v in run["values"] if v["metric"] == "validate_drp.AM1")
    assert am1["value"] == pytest.approx(sent["validate_drp.AM1"]["value"]) and am1["unit"] == "marcsec"
    assert run["env_name"] == "jenkins" and run["dataset"] == "validation_data_cfht"
    assert run["ci_url"] == "https://ci.example.org/job/validate_drp/1001/"
    assert run["meta"]["env"]["ci_name"] == "validate_drp"

    other = dispatch(squash_server, squash_server["token"], "1002")  # the next build is a run of its own
    assert other.returncode == 0, other.stdout + other.stderr
    assert {r["ci_id"] for r in runs(squash_server)} >= {"1001", "1002"}


def test_a_wrong_password_gets_401_and_stores_nothing(squash_server) -> None:
    before = runs(squash_server)
    result = dispatch(squash_server, "sqt_not-the-token", "2001")
    assert result.returncode != 0
    assert "401" in result.stdout + result.stderr
    assert runs(squash_server) == before

    r = httpx.post(squash_server["url"] + "/squash/auth", json={"username": "someone-else", "password": squash_server["token"]})
    assert r.status_code == 401  # a valid token under another name is not a login
    assert r.json()["description"] == "Invalid credentials" and r.json()["status_code"] == 401
    job = json.loads(VERIFY_JOB.read_text())
    body = {"measurements": job["measurements"][:1], "meta": {k: job["meta"][k] for k in ("instrument", "filter_name", "env")}}
    r = httpx.post(squash_server["url"] + "/squash/job", json=body)
    assert r.status_code == 401 and r.json()["error"] == "Authorization Required"
    r = httpx.post(squash_server["url"] + "/squash/job", json=body, headers={"Authorization": "JWT sqt_forged"})
    assert r.status_code == 401
    r = httpx.post(squash_server["url"] + "/squash/job/", json=body)  # a trailing slash is no redirect either
    assert r.status_code == 401 and r.json()["error"] == "Authorization Required"
    assert runs(squash_server) == before


def test_the_endpoint_map_is_json_with_absolute_urls_behind_a_proxy_too(squash_server) -> None:
    url = squash_server["url"]
    direct = httpx.get(url + "/squash", headers={"Accept": "application/json; version=1.0"})
    assert direct.status_code == 200
    assert direct.json()["auth"] == url + "/squash/auth" and direct.json()["job"] == url + "/squash/job"
    proxied = httpx.get(url + "/squash", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "qa.example.org",
                                                  "X-Forwarded-Prefix": "/tracking"}).json()
    assert proxied["job"] == "https://qa.example.org/tracking/squash/job"
    rfc7239 = httpx.get(url + "/squash", headers={"Forwarded": 'for=10.0.0.1;proto=https;host="qa.example.org:8443"'}).json()
    assert rfc7239["auth"] == "https://qa.example.org:8443/squash/auth"
    # every URL of the map answers (none is a dead link)
    assert httpx.get(direct.json()["jobs"]).status_code == 200 and httpx.get(direct.json()["metrics"]).status_code == 200


def test_a_configured_public_url_wins_and_jwt_works_on_our_own_job_route(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from surveyqa.tracking.app import create_app
    from surveyqa.tracking.config import TrackingConfig
    from surveyqa.tracking.service import TrackingService
    from surveyqa.tracking.tokens import create_token

    config = TrackingConfig(db=f"sqlite:///{tmp_path / 't.db'}", public_url="https://surveyqa.example.org/track/")
    service = TrackingService.open(config)
    token = create_token(service.engine, "ci")
    with TestClient(create_app(config, service)) as http:
        assert http.get("/squash", headers={"X-Forwarded-Host": "elsewhere"}).json()["job"] == "https://surveyqa.example.org/track/squash/job"
        login = http.post("/squash/auth", json={"username": "ci", "password": token})
        assert login.status_code == 200
        job = {"measurements": [{"metric": "test.m1", "value": 1.0, "unit": "mmag"}],
               "metrics": [{"name": "test.m1", "unit": "mmag"}], "meta": {"dataset": "d"}}
        r = http.post("/api/jobs", json=job, headers={"Authorization": f"JWT {login.json()['access_token']}"})
        assert r.status_code == 201
        bad = http.post("/squash/job", content=b"[1, 2]", headers={"Authorization": f"JWT {token}"})
        assert bad.status_code == 422 and "message" in bad.json()
        unknown = http.post("/squash/job", json={"measurements": [{"metric": "nobody.knows", "value": 1.0, "unit": "mmag"}]},
                            headers={"Authorization": f"JWT {token}"})
        assert unknown.status_code == 422 and "unknown metric" in unknown.json()["message"]
        assert len(http.get("/api/runs").json()) == 1  # the refused jobs stored nothing
    service.engine.dispose()
