"""Alerts are never lost: a real `surveyqa track serve` killed (-9) during the checks of a submission
finds, after a restart, every alert written and delivered exactly once; resubmitting repairs nothing twice.
A mail server that stalls holds up no submission."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa
import yaml
from tracking_fixtures import db_url, delivered, free_port, make_server, smtp_server, wait_for_outbox  # noqa: F401

from surveyqa.tracking.config import TrackingConfig
from surveyqa.tracking.ingest import MetricDef, NormalizedRun, ValueRow
from surveyqa.tracking.service import TrackingService
from surveyqa.tracking.tokens import create_token

N_IDS = 1000  # series in the submission that regresses: one alert each
SURVEYQA = Path(sys.executable).with_name("surveyqa")


def _run(i: int, level: float) -> NormalizedRun:
    """A run at one level in every series (no noise: a noisy history of 1,000 series has false alarms)."""
    values = [ValueRow("surveyqa.outboxMetric", {"band": "r", "tract": str(9000 + d)}, level, "mmag") for d in range(N_IDS)]
    return NormalizedRun(
        key=f"outbox-{i}", format="surveyqa", dataset="outbox", time=dt.datetime(2026, 3, 1) + dt.timedelta(days=i),
        metrics=[MetricDef("surveyqa.outboxMetric", "mmag")], values=values,
    )


def _submission(rng: np.random.Generator) -> dict:
    """The regressing run (twice the level of the history in every series), in the HTTP format."""
    return {
        "run": {"key": "outbox-regress", "dataset": "outbox", "time": "2026-03-20T00:00:00"},
        "metrics": [{"name": "surveyqa.outboxMetric", "unit": "mmag"}],
        "values": [{"metric": "surveyqa.outboxMetric", "value": float(20 + rng.normal(0, 0.05)), "unit": "mmag",
                    "data_id": {"band": "r", "tract": str(9000 + d)}} for d in range(N_IDS)],
    }


class Served:
    """`surveyqa track serve` in its own process (so that kill -9 is a real crash)."""

    def __init__(self, config_path: Path, db: str, port: int, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("ab")
        self.proc = subprocess.Popen([str(SURVEYQA), "track", "serve", "--db", db, "--port", str(port), "--config", str(config_path)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"tracking server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self._log.close()


def _count(engine, sql: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text(sql)).scalar()


def test_kill_during_checks_loses_no_alert_and_sends_each_once(db_url, smtp_server, tmp_path):
    rng = np.random.default_rng(17)
    service = TrackingService.open(TrackingConfig(db=db_url))
    engine = service.engine
    for i in range(12):  # history: stable series, checked in-process, no alerts
        assert service.submit_run(_run(i, 10.0))["alerts"] == []
    token = create_token(engine, "ci")
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO subscription (metric, channel, target) VALUES ('surveyqa.*', 'email', 'qa@example.org')"))
    config = tmp_path / "track.yaml"
    config.write_text(yaml.safe_dump({"smtp_host": "127.0.0.1", "smtp_port": smtp_server.port, "delivery_interval": 0.5}))
    port = free_port()
    log = tmp_path / "serve.log"
    payload = _submission(rng)

    server = Served(config, db_url, port, log)
    try:
        def post() -> None:  # the client loses its answer when the server dies
            try:
                httpx.post(f"{server.url}/api/submissions", json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=120)
            except httpx.HTTPError:
                pass

        sender = threading.Thread(target=post)
        sender.start()
        # values and the pending check commit together; the checks run after: kill as soon as it shows
        deadline = time.time() + 60
        while _count(engine, "SELECT count(*) FROM pending_check") == 0:
            assert time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.005)
        server.kill()
        sender.join(60)
    finally:
        server.stop()
    # the crash came during the checks: run and values stored, no alert yet, the check still pending
    assert _count(engine, "SELECT count(*) FROM run WHERE key = 'outbox-regress'") == 1
    assert _count(engine, "SELECT count(*) FROM value v JOIN run r ON r.id = v.run_id WHERE r.key = 'outbox-regress'") == N_IDS
    assert _count(engine, "SELECT count(*) FROM pending_check") == 1
    assert _count(engine, "SELECT count(*) FROM alert") == 0 and smtp_server.messages == []

    server = Served(config, db_url, port, log)  # restart: the pending check is found and done, then delivered
    try:
        counts = wait_for_outbox(server.url, lambda c: delivered(c) and c["deliveries_sent"] == N_IDS, timeout=120)
        assert counts["deliveries_failed"] == 0
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            again = http.post("/api/submissions", json=payload)  # resubmitting after the crash: nothing twice
            assert again.status_code == 200 and again.json()["alerts"] == [] and again.json()["created"] is False
            alerts = http.get("/api/alerts", params={"limit": 1000}).json()
        time.sleep(1.0)  # give a wrongly repeated delivery the time to show up
        counts = wait_for_outbox(server.url, delivered)
    finally:
        server.stop()
    assert len(alerts) == N_IDS and len({a["series_id"] for a in alerts}) == N_IDS
    assert all(a["checks"] == ["relative_change"] and [d["status"] for d in a["deliveries"]] == ["sent"] for a in alerts)
    assert counts["deliveries_sent"] == N_IDS
    subjects = [m["message"]["Subject"] for m in smtp_server.messages]
    assert len(subjects) == N_IDS and len(set(subjects)) == N_IDS  # every alert once, none twice
    assert {f"tract={9000 + d}" for d in range(N_IDS)} == {s.split("at band=r, ")[1].split(" ")[0] for s in subjects}
    assert _count(engine, "SELECT count(*) FROM pending_check") == 0
    engine.dispose()


def test_a_stalled_mail_server_does_not_hold_up_submissions(make_server, tmp_path):
    """The SMTP server accepts the message only when the test lets it: the submission has answered
    (its alert committed, its delivery pending) long before; the alert then arrives once."""
    import asyncio

    from aiosmtpd.controller import Controller
    from tracking_fixtures import job_with

    release, got = threading.Event(), []

    class Stalled:
        async def handle_DATA(self, server, session, envelope):
            while not release.is_set():
                await asyncio.sleep(0.05)
            got.append(envelope.rcpt_tos)
            return "250 OK"

    smtp = Controller(Stalled(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        server = make_server(smtp_host="127.0.0.1", smtp_port=smtp.port)
        token = server.token()
        with server.client(token) as http:
            http.post("/api/subscriptions", json={"metric": "*", "channel": "email", "target": "qa@example.org"})
            assert http.post("/api/jobs", json=job_with({"surveyqa.m": 1.0}, "2026-05-01T00:00:00Z")).status_code == 201
            r = http.post("/api/jobs", json=job_with({"surveyqa.m": 3.0}, "2026-05-02T00:00:00Z"))
            assert r.status_code == 201 and len(r.json()["alerts"]) == 1
            # answered while the mail server still holds the message
            counts = wait_for_outbox(server.url, lambda c: c["deliveries_sending"] == 1)
            assert counts["deliveries_sent"] == 0 and got == []
            third = http.post("/api/jobs", json=job_with({"surveyqa.m": 3.1}, "2026-05-03T00:00:00Z"))
            assert third.status_code == 201  # further submissions go through too
            release.set()
            counts = wait_for_outbox(server.url, delivered)
            alert = http.get(f"/api/alerts/{r.json()['alerts'][0]}").json()
        assert counts["deliveries_sent"] == 1 and got == [["qa@example.org"]]
        assert [d["status"] for d in alert["deliveries"]] == ["sent"]
    finally:
        release.set()
        smtp.stop()
