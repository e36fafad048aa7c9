"""surveyqa: quality assurance for astronomical survey data processing.

Metrics are defined once (lsst.verify YAML), computed at full granularity by separate
compute -> select -> aggregate steps, stored with Butler data IDs, tracked across runs and
explored in a drill-down dashboard.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
