"""The small named actions metrics are composed of: compute, select, aggregate (and group-by)."""

from surveyqa.metrics.actions import aggregate, compute, groups, select

__all__ = ["aggregate", "compute", "groups", "select"]
