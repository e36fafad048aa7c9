"""One spec engine: a spec applies, and fails, identically in the QA and in the tracking alerts.

Rubin's ``validate_drp.PA1.cfht_design_g`` (verify_metrics) queries list-valued metadata
(``visits: [849375, 850587]``, ``ccds: [...]``). The same metadata goes to the QA's registry and,
as an lsst.verify job's ``meta``, through the tracking service's threshold checks into an alert.
"""

from __future__ import annotations

import uuid

import astropy.units as u
import pytest

from surveyqa.metrics.registry import load_default_registry

METRIC = "validate_drp.PA1"


@pytest.fixture(scope="module")
def registry():
    return load_default_registry()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from surveyqa.tracking.config import TrackingConfig
    from surveyqa.tracking.seed import seed_definitions
    from surveyqa.tracking.service import TrackingService

    svc = TrackingService.open(TrackingConfig(db=f"sqlite:///{tmp_path_factory.mktemp('spec') / 'track.db'}"))
    seed_definitions(svc.engine)
    yield svc
    svc.engine.dispose()


def _job(meta: dict, value: float, day: int) -> dict:
    return {
        "measurements": [{"metric": METRIC, "identifier": uuid.uuid4().hex, "value": value, "unit": "mmag"}],
        "meta": {**meta, "env": {"env_name": "test", "ci_id": f"{meta['dataset']}-{day}", "date": f"2026-11-{day:02d}T00:00:00Z"}},
    }


def _variants(registry) -> dict[str, dict]:
    query = registry.spec("validate_drp.PA1.cfht_design_g").metadata_query
    assert isinstance(query["visits"], list) and len(query["visits"]) > 1  # the case this test is about
    return {
        "as_written": dict(query),
        "visits_as_tuple": {**query, "visits": tuple(query["visits"]), "ccds": tuple(query["ccds"])},
        "one_visit_fewer": {**query, "visits": query["visits"][:1]},
        "visits_reordered": {**query, "visits": list(reversed(query["visits"]))},
        "other_filter": {**query, "filter_name": "r"},
    }


@pytest.mark.parametrize("variant", ["as_written", "visits_as_tuple", "one_visit_fewer", "visits_reordered", "other_filter"])
def test_list_valued_query_applies_and_fails_alike_in_qa_and_alerts(registry, service, variant) -> None:
    import sqlalchemy as sa

    from surveyqa.tracking.db import run_t
    from surveyqa.tracking.schemas import VerifyJob

    meta = _variants(registry)[variant]
    good, bad = 1.0 * u.mmag, 40.0 * u.mmag
    # the QA: which specs apply to this metadata, which the bad value newly fails
    applies_qa = {r.spec for r in registry.evaluate(METRIC, good, meta)}
    newly_failing_qa = {r.spec for r in registry.evaluate(METRIC, bad, meta) if not r.passed} - {
        r.spec for r in registry.evaluate(METRIC, good, meta) if not r.passed}

    # the alerts: two runs of one series, the second one bad
    dataset = f"cfht-{variant}"
    for day, value in ((1, good), (2, bad)):
        result = service.submit_job(VerifyJob.model_validate(_job({**meta, "dataset": dataset}, value.value, day)))
    with service.engine.connect() as conn:  # the run's metadata as the service stored it (JSON: tuples are lists)
        stored_meta = conn.execute(sa.select(run_t.c.meta).where(run_t.c.id == result["run_id"])).scalar()
        applies_alerts = {t.name for t in service.thresholds(conn, METRIC, "mmag", stored_meta)}
    assert applies_alerts == applies_qa
    alerts = [service.alert(a) for a in result["alerts"]]
    fired = set()
    for a in alerts:
        if "threshold" in a["checks"]:
            fired |= set(a["detail"].split("now fails ", 1)[1].split(", "))
    assert fired == newly_failing_qa
    design = "validate_drp.PA1.cfht_design_g"
    expected = variant in ("as_written", "visits_as_tuple")  # lsst.verify: equal lists, in order, same filter
    assert (design in applies_qa) is expected and (design in fired) is expected


def test_operators_and_units_are_the_engines(registry) -> None:
    """The tracking checks use the spec engine's operators and conversion, not a table of their own."""
    from surveyqa.metrics.specs import Specification, compare
    from surveyqa.tracking.detect import Threshold, passes

    spec = Specification.from_dict({"name": "p.m.s", "metric": "p.m", "threshold": {"value": 5, "unit": "mmag", "operator": "<="},
                                    "metadata_query": {"visits": [1, 2]}})
    assert spec.threshold_in("mag") == pytest.approx(0.005)
    assert spec.applies_to({"visits": (1, 2)}) and not spec.applies_to({"visits": [2, 1]})
    for op in ("<", "<=", ">", ">=", "==", "!="):
        for value in (4.0, 5.0, 6.0, float("nan")):
            assert passes(value, Threshold("t", op, 5.0)) == compare(value, op, 5.0)
            assert compare(value, op, 5.0) == Specification("p.m.s", "p.m", op, 5 * u.mmag).check(value * u.mmag)
