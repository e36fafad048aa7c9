"""Regressions raise one alert each, delivered to a real SMTP server and a real webhook receiver."""

from __future__ import annotations

import datetime as dt

import numpy as np
from tracking_fixtures import db_url, delivered, job_with, make_server, smtp_server, wait_for_outbox, webhook_receiver  # noqa: F401


def _day(i: int) -> str:
    return (dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=i)).isoformat()


def _stream(server, token, values, metric="surveyqa.stepMetric", step_at=None, **meta):
    opened = []
    with server.client(token) as http:
        for i, v in enumerate(values):
            sha = "b" * 40 if step_at is not None and i >= step_at else "a" * 40
            version = "1.1" if step_at is not None and i >= step_at else "1.0"
            job = job_with({metric: float(v)}, _day(i), {"pipe_tasks": (version, sha), "afw": ("2.0", "c" * 40)}, **meta)
            r = http.post("/api/jobs", json=job)
            assert r.status_code == 201, r.text
            opened += r.json()["alerts"]
    return opened


def _subscribe(server, token, metric, smtp, hook):
    with server.client(token) as http:
        assert http.post("/api/subscriptions", json={"metric": metric, "channel": "email", "target": "qa@example.org"}).status_code == 201
        assert http.post("/api/subscriptions", json={"metric": metric, "channel": "webhook", "target": hook.url}).status_code == 201


def test_injected_step_raises_exactly_one_alert(make_server, smtp_server, webhook_receiver):
    server = make_server(smtp_host="127.0.0.1", smtp_port=smtp_server.port)
    token = server.token()
    _subscribe(server, token, "surveyqa.step*", smtp_server, webhook_receiver)
    values = np.random.default_rng(4).normal(10.0, 0.1, 30)
    values[20:] += 0.6  # a 6% step: below the relative-change check, so only the change-point test sees it
    opened = _stream(server, token, values, step_at=20)
    assert len(opened) == 1
    wait_for_outbox(server.url, delivered)
    with server.client() as http:
        alert = http.get(f"/api/alerts/{opened[0]}").json()
        all_alerts = http.get("/api/alerts").json()
        runs = {r["ci_id"]: r["id"] for r in http.get("/api/runs").json()}
    assert len(all_alerts) == 1
    assert alert["metric"] == "surveyqa.stepMetric" and alert["data_id"] == {"filter_name": "r", "instrument": "HSC"}
    assert alert["checks"] == ["changepoint"]
    assert alert["first_bad_run"] == runs[_day(20)] and alert["last_good_run"] == runs[_day(19)]
    assert 0.45 < alert["after"] - alert["before"] < 0.75
    assert alert["code_changes"] == [
        {"package": "pipe_tasks", "change": "changed", "old_version": "1.0", "new_version": "1.1", "old_sha": "a" * 40, "new_sha": "b" * 40, "git_url": None}
    ]
    assert [d["ok"] for d in alert["deliveries"]] == [True, True]
    assert len(smtp_server.messages) == 1 and len(webhook_receiver.received) == 1
    mail = smtp_server.messages[0]
    assert mail["to"] == ["qa@example.org"]
    body = mail["message"].get_payload(decode=True).decode()
    assert "surveyqa.stepMetric" in mail["message"]["Subject"] and "filter_name=r" in body
    assert "pipe_tasks: 1.0 (" + "a" * 40 + ") -> 1.1 (" + "b" * 40 + ")" in body
    assert "change +0." in body
    hook = webhook_receiver.received[0]["json"]
    assert "surveyqa.stepMetric" in hook["text"] and hook["blocks"][0]["type"] == "header"
    assert hook["surveyqa"]["id"] == alert["id"]


def test_noisy_runs_without_a_step_raise_nothing(make_server, smtp_server, webhook_receiver):
    server = make_server(smtp_host="127.0.0.1", smtp_port=smtp_server.port)
    token = server.token()
    _subscribe(server, token, "*", smtp_server, webhook_receiver)
    values = np.random.default_rng(99).normal(10.0, 0.3, 30)
    assert _stream(server, token, values) == []
    assert wait_for_outbox(server.url, delivered)["deliveries_sent"] == 0
    with server.client() as http:
        assert http.get("/api/alerts").json() == []
    assert smtp_server.messages == [] and webhook_receiver.received == []


def test_srd_metric_alerts_stakeholders_once_and_recovers(make_server, smtp_server):
    server = make_server(smtp_host="127.0.0.1", smtp_port=smtp_server.port, stakeholders=["srd@example.org"])
    token = server.token()
    spec = {"name": "validate_drp.PA1.design", "type": "threshold", "threshold": {"value": 10.0, "unit": "mmag", "operator": "<="}, "metadata_query": {}, "tags": []}
    opened = []
    with server.client(token) as http:
        for i, v in enumerate([8.0, 8.1, 7.9, 11.0, 11.1, 11.05, 8.0]):
            job = job_with({"validate_drp.PA1": v}, _day(i))
            job["specs"] = [spec]
            opened += http.post("/api/jobs", json=job).json()["alerts"]
        wait_for_outbox(server.url, delivered)
        alert = http.get(f"/api/alerts/{opened[0]}").json()
    assert len(opened) == 1 and len(smtp_server.messages) == 1
    assert smtp_server.messages[0]["to"] == ["srd@example.org"]
    assert alert["checks"][0] == "threshold" and "validate_drp.PA1.design" in alert["detail"]
    assert alert["status"] == "closed"  # back under the threshold at the last run


def test_series_without_data_for_a_while_raises_no_data(make_server):
    server = make_server(stale_after_days=3)
    token = server.token()
    with server.client(token) as http:
        http.post("/api/jobs", json=job_with({"surveyqa.a": 1.0, "surveyqa.b": 2.0}, _day(0)))
        for i in (2, 5, 6):
            opened = http.post("/api/jobs", json=job_with({"surveyqa.a": 1.0}, _day(i))).json()["alerts"]
            if i == 2:
                assert opened == []
        alerts = http.get("/api/alerts").json()
    assert len(alerts) == 1 and alerts[0]["metric"] == "surveyqa.b" and alerts[0]["checks"] == ["no_data"]


def test_failed_delivery_is_recorded_retried_then_given_up(make_server):
    server = make_server(smtp_host="127.0.0.1", smtp_port=1, delivery_attempts=3, delivery_backoff=0.2)
    token = server.token()
    with server.client(token) as http:
        http.post("/api/subscriptions", json={"metric": "*", "channel": "email", "target": "qa@example.org"})
        http.post("/api/jobs", json=job_with({"surveyqa.m": 1.0}, _day(0)))
        r = http.post("/api/jobs", json=job_with({"surveyqa.m": 3.0}, _day(1)))
        assert r.status_code == 201
        counts = wait_for_outbox(server.url, lambda c: c["deliveries_failed"] == 1)
        alert = http.get(f"/api/alerts/{r.json()['alerts'][0]}").json()
    assert counts["deliveries_sent"] == 0 and counts["deliveries_pending"] == 0
    assert alert["checks"] == ["relative_change"]
    [d] = alert["deliveries"]
    assert d["ok"] is False and d["status"] == "failed" and d["attempts"] == 3 and d["error"]
