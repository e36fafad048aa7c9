"""Load the project's metric definitions and specs (Rubin's verify_metrics plus ours) into a
tracking database, so that submissions of known metrics need not carry their definitions."""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from surveyqa.metrics.units import unit_to_string
from surveyqa.tracking.db import metric_t, spec_t
from surveyqa.tracking.ingest import clean_json
from surveyqa.tracking.store import upsert

__all__ = ["seed_definitions"]

log = logging.getLogger(__name__)


def seed_definitions(engine: Engine) -> tuple[int, int]:
    """Insert every metric and threshold spec of the default registry not stored yet.

    Returns
    -------
    tuple of int
        Number of metrics and specs in the registry (existing rows are left as they are).
    """
    from surveyqa.metrics.registry import load_default_registry

    registry = load_default_registry()
    metrics = [
        {
            "name": m.full_name,
            "package": m.package,
            "unit": unit_to_string(m.unit),
            "description": m.description,
            "tags": list(m.tags),
            "reference": m.reference.to_dict() if m.reference else None,
            "higher_is_better": m.higher_is_better,
        }
        for m in registry
    ]
    specs = [
        {
            "name": s.name,
            "metric": s.metric,
            "type": "threshold",
            "operator": s.operator,
            "threshold": float(s.threshold.value),
            "unit": unit_to_string(s.threshold.unit),
            "metadata_query": clean_json(dict(s.metadata_query)),
            "tags": list(s.tags),
        }
        for s in registry.specs
    ]
    with engine.begin() as conn:
        upsert(conn, metric_t, sorted(metrics, key=lambda r: r["name"]), ["name"])
        upsert(conn, spec_t, sorted(specs, key=lambda r: r["name"]), ["name"])
    log.info("seeded %d metrics and %d specs", len(metrics), len(specs))
    return len(metrics), len(specs)
