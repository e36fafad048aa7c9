"""Twenty clients at once: every distinct submission lands exactly once, identical ones once in all."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from tracking_fixtures import db_url, job_with, make_server  # noqa: F401


def _count(server, table):
    with server.service.engine.connect() as c:
        return c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()


def test_twenty_concurrent_submissions_land_exactly_once(make_server):
    server = make_server()
    token = server.token()
    # distinct runs sharing metrics and data IDs: they race to create the same metric, data ID and series rows
    jobs = [job_with({"surveyqa.a": float(i), "surveyqa.b": 2.0 * i}, f"2026-02-{i + 1:02d}T00:00:00Z") for i in range(20)]

    def send(job):
        with server.client(token) as http:
            return http.post("/api/jobs", json=job)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(send, jobs))
    assert [r.status_code for r in responses] == [201] * 20
    assert len({r.json()["run_id"] for r in responses}) == 20
    assert (_count(server, "run"), _count(server, "value"), _count(server, "series"), _count(server, "metric")) == (20, 40, 2, 2)
    with server.client() as http:
        points = http.get("/api/metrics/surveyqa.a/series").json()["series"][0]["points"]
    assert [p["value"] for p in points] == [float(i) for i in range(20)]


def test_twenty_concurrent_copies_of_one_run_store_it_once(make_server):
    server = make_server()
    token = server.token()
    job = job_with({"surveyqa.a": 1.0}, "2026-02-01T00:00:00Z")

    def send(_):
        with server.client(token) as http:
            return http.post("/api/jobs", json=job)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(send, range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["run_id"] for r in responses}) == 1
    assert (_count(server, "run"), _count(server, "value"), _count(server, "package")) == (1, 1, 1)
