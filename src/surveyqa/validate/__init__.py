"""Schema-driven checks of every column of every data product (``surveyqa validate``, docs/validate.md).

``schema`` reads a Felis schema, ``rules`` Rubin's conventions and a user's rules, ``checks``
derives each column's checks from both, ``scan`` runs them as DuckDB column scans over the
Parquet files, ``run`` judges the counts, ``store`` writes them as QA metric values through the
Butler, ``report`` renders them for a terminal, HTML and JSON, ``cli`` is the command.
"""

from surveyqa.validate.run import CheckResult, ValidationReport, validate_files, validate_repository

__all__ = ["CheckResult", "ValidationReport", "validate_files", "validate_repository"]
