"""The metric library: every implemented `Metric`, found by full or short name.

Each module of this package exposes ``METRICS = [...]``; modules are discovered at first use,
so a new module (e.g. ``health.py``) plugs in without editing this file.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from functools import lru_cache

from surveyqa.errors import SurveyQAError
from surveyqa.metrics.engine import Metric

__all__ = ["get_metric", "available_metrics"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _catalog() -> tuple[dict[str, Metric], dict[str, str]]:
    by_name: dict[str, Metric] = {}
    aliases: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for metric in getattr(module, "METRICS", ()):
            if metric.name in by_name:
                raise SurveyQAError(f"metric {metric.name} is defined twice (second in {module.__name__})")
            by_name[metric.name] = metric
    for metric in by_name.values():
        for alias in (metric.short_name, *metric.aliases):
            if alias in by_name:
                continue
            if alias in aliases and aliases[alias] != metric.name:
                log.debug("short name %s is ambiguous (%s, %s)", alias, aliases[alias], metric.name)
                aliases[alias] = ""  # ambiguous: only the full name works
            else:
                aliases[alias] = metric.name
    return by_name, aliases


def available_metrics() -> list[str]:
    """Full names of every implemented metric, sorted."""
    return sorted(_catalog()[0])


def get_metric(name: str) -> Metric:
    """The implemented metric called ``name`` (full ``validate_drp.PA1`` or short ``PA1``).

    Raises
    ------
    SurveyQAError
        For an unknown or ambiguous name, listing the implemented metrics.
    """
    by_name, aliases = _catalog()
    if name in by_name:
        return by_name[name]
    full = aliases.get(name)
    if full:
        return by_name[full]
    hint = f"implemented metrics: {', '.join(sorted(by_name))}"
    if full == "":
        raise SurveyQAError(f"metric name {name!r} is ambiguous", "use the full package.NAME; " + hint)
    raise SurveyQAError(f"no implemented metric {name!r}", hint)
