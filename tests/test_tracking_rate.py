"""Tracking at Rubin's rate: batched checks answer as the per-series checks do; oversized bodies are
refused with 413 and store nothing; run ids beyond the database's integers are a 4xx, not a 500."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from tracking_fixtures import db_url, job_with, make_server  # noqa: F401

from surveyqa.tracking.config import TrackingConfig
from surveyqa.tracking.detect import Threshold, check_many, check_series


def test_batched_checks_equal_the_per_series_checks():
    rng = np.random.default_rng(5)
    cfg = TrackingConfig()
    series = []
    for i in range(300):
        x = rng.normal(10, 0.2, int(rng.integers(2, 60)))
        if i % 3 == 0 and len(x) > 12:
            x[-int(rng.integers(3, 8)) :] += rng.choice([0.5, -0.5, 4.0])  # steps, some large enough for relative_change
        if i % 17 == 0:
            x[-1] = np.nan
        if i % 11 == 0:
            x[rng.integers(0, len(x))] = np.nan
        limits = [Threshold(f"t{i}", "<=", 10.3)] if i % 5 == 0 else []
        series.append((x, limits, [None, True, False][i % 3]))
    batched = check_many(series, cfg)
    one_by_one = [check_series(x, cfg, limits, hib) for x, limits, hib in series]
    assert batched == one_by_one
    assert sum(any(f.check == "changepoint" for f in fs) for fs in batched) >= 10  # the batch did find steps



@pytest.mark.parametrize("settings", [{"statistic": "energy"}, {"screen": None}, {"permutations": 99, "alpha": 0.02},
                                      {"window": 12, "min_size": 2, "alpha": 0.01}])
def test_batched_checks_equal_the_per_series_checks_in_other_settings(settings):
    """The first permutation blocks scored together settle the same series the tests would."""
    rng = np.random.default_rng(8)
    cfg = TrackingConfig(**settings)
    series = []
    for i in range(200):
        x = rng.normal(10, 0.2, int(rng.integers(2, 50)))
        if i % 4 == 0 and len(x) > 12:
            x[-int(rng.integers(3, 8)) :] += rng.choice([0.3, -0.4])
        if i % 13 == 0:
            x[rng.integers(0, len(x))] = np.nan
        series.append((x, [], [None, True, False][i % 3]))
    batched = check_many(series, cfg)
    assert batched == [check_series(x, cfg, limits, hib) for x, limits, hib in series]
    assert sum(any(f.check == "changepoint" for f in fs) for fs in batched) >= 5

def _counts(server) -> tuple[int, int]:
    with server.service.engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM run")).scalar(), c.execute(sa.text("SELECT count(*) FROM value")).scalar()


def _big_job(n_bytes: int) -> bytes:
    job = job_with({"surveyqa.big": 1.0}, "2026-04-01T00:00:00Z")
    job["meta"]["padding"] = "x" * n_bytes
    return json.dumps(job).encode()


def _post(server, token, body, **kw) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        return httpx.post(f"{server.url}/api/jobs", content=body, headers=headers, timeout=120, **kw).status_code
    except httpx.HTTPError as exc:  # the server may close the connection after its 413, before the upload ends
        pytest.fail(f"no answer to an oversized body: {exc!r}")


def test_oversized_body_gets_413_and_stores_nothing(make_server):
    server = make_server()
    token = server.token()
    assert _post(server, token, _big_job(50_000_000)) == 413  # 50 MB against the default 20 MB
    assert _counts(server) == (0, 0)
    r = httpx.post(f"{server.url}/api/jobs", content=b"{" * 30_000_000, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["hint"]

    def chunks():  # no Content-Length: refused once it passes the limit
        body = _big_job(25_000_000)
        for i in range(0, len(body), 1 << 20):
            yield body[i : i + (1 << 20)]

    assert _post(server, token, chunks()) == 413
    assert _counts(server) == (0, 0)
    assert _post(server, token, _big_job(1000)) == 201 and _counts(server) == (1, 1)


def test_body_limit_is_configurable(make_server):
    server = make_server(max_body_bytes=100_000)
    token = server.token()
    assert _post(server, token, _big_job(200_000)) == 413
    assert _post(server, token, _big_job(50_000)) == 201
    assert _counts(server) == (1, 1)


_HUGE = ["/runs/99999999999999999999", "/runs/99999999999999999999.json", "/api/runs/99999999999999999999",
         "/api/runs/99999999999999999999/job", "/runs/99999999999999999999/dashboard?metric=m", "/api/alerts/99999999999999999999",
         "/runs/0", "/runs/-1"]


def test_huge_run_ids_are_4xx(make_server):
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        codes = {path: http.get(path).status_code for path in _HUGE}
        assert all(400 <= c < 500 for c in codes.values()), codes
        assert http.get(f"/runs/{2**31 - 1}.json").status_code == 404


def test_values_are_stored_as_sent(db_url):
    """Every column of a value comes back as sent (PostgreSQL writes them with COPY): text with
    tabs, newlines and backslashes, blob references, counts, missing and extreme values."""
    import datetime as dt

    from surveyqa.tracking.ingest import MetricDef, NormalizedRun, ValueRow
    from surveyqa.tracking.store import TrackingStore

    odd = "tab\there\nnew line\\N back\\slash \r\u00e9\u2013 'quote' \"dq\""
    rows = [
        ValueRow("surveyqa.copyMetric", {"band": "r", "tract": "1"}, 1.0000000000000002, "mmag", n=2**40, identifier=odd,
                 blob_refs=["b1", odd], level="tract", selection=odd, aggregation="median", note=odd),
        ValueRow("surveyqa.copyMetric", {"band": "r", "tract": "2"}, None, "mmag"),
        ValueRow("surveyqa.copyMetric", {"band": "r", "tract": "3"}, -1.5e-300, "mag", note="\\"),
        ValueRow("surveyqa.copyMetric", {"band": "r", "tract": "4"}, 1e300, "mmag", note=""),
    ]
    run = NormalizedRun(key="copy-1", format="surveyqa", dataset="copy", time=dt.datetime(2026, 2, 3, 4, 5, 6, 789012),
                        metrics=[MetricDef("surveyqa.copyMetric", "mmag")], values=rows)
    store = TrackingStore.open(db_url)
    stored = store.submit(run)
    with store.engine.connect() as c:
        got = c.execute(sa.text("SELECT v.value, v.n, v.identifier, v.blob_refs, v.level, v.selection, v.aggregation, v.note, v.run_time, r.time "
                                "FROM value v JOIN run r ON r.id = v.run_id WHERE v.run_id = :r ORDER BY v.series_id"), {"r": stored.run_id}).all()
    store.engine.dispose()
    assert [g[0] for g in got] == [1.0000000000000002, None, -1.5e-300 * 1000.0, 1e300]  # mag converted to mmag
    first = got[0]
    blob_refs = first[3] if isinstance(first[3], list) else json.loads(first[3])
    assert (first[1], first[2], blob_refs, first[4], first[5], first[6], first[7]) == (2**40, odd, ["b1", odd], "tract", odd, "median", odd)
    assert [g[7] for g in got[1:]] == [None, "\\", ""] and got[1][3] is None
    assert {str(g[8]) for g in got} == {str(got[0][9])} == {"2026-02-03 04:05:06.789012"}
