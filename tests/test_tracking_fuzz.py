"""Schema-driven fuzzing of the OpenAPI document (schemathesis): no input makes the server fail (5xx).

Bounded: a few dozen examples per operation, against a server holding the real verify job,
with a valid token so that the writing routes are exercised beyond the 401.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from tracking_fixtures import VERIFY_JOB, Server, make_db

from surveyqa.tracking.config import TrackingConfig


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fuzz_server(request, tmp_path_factory):
    gen = make_db(request.param, tmp_path_factory.mktemp("fuzz"))
    url = next(gen)
    with Server(TrackingConfig(db=url)) as server:
        server.fuzz_token = server.token("fuzz")
        with server.client(server.fuzz_token) as http:
            assert http.post("/api/jobs", content=VERIFY_JOB.read_bytes(), headers={"Content-Type": "application/json"}).status_code == 201
        yield server
    gen.close()


def test_no_input_makes_a_server_error(fuzz_server):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzz_server.fuzz_token}"}
    failures, calls = [], []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def fuzz(case):
            response = case.call(base_url=fuzz_server.url, headers=headers)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:200]}: {response.status_code} {response.text[:300]}")

        fuzz()
    assert len(calls) > 100
    assert not failures, "\n".join(failures[:10])
