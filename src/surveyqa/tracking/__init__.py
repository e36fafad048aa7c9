"""The tracking service: metric values of runs over time, per data ID, with regression alerts.

Public API (imported lazily, so that ``surveyqa --help`` does not load the web stack):
`TrackingService`, `TrackingStore`, `TrackingConfig`, `load_config`, `create_app`,
`submission_from_table`, `from_verify_job`, `create_token`. See docs/tracking.md.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "TrackingService",
    "TrackingStore",
    "TrackingConfig",
    "load_config",
    "create_app",
    "submission_from_table",
    "from_verify_job",
    "create_token",
]

_WHERE = {
    "TrackingService": "surveyqa.tracking.service",
    "TrackingStore": "surveyqa.tracking.store",
    "TrackingConfig": "surveyqa.tracking.config",
    "load_config": "surveyqa.tracking.config",
    "create_app": "surveyqa.tracking.app",
    "submission_from_table": "surveyqa.tracking.ingest",
    "from_verify_job": "surveyqa.tracking.ingest",
    "create_token": "surveyqa.tracking.tokens",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'surveyqa.tracking' has no attribute {name!r}")
