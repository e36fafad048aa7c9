"""User-facing errors.

Every failure a user can cause (a wrong path, a bad file, an unknown metric) is raised as a
`SurveyQAError` carrying what was wrong and what to do, so the CLI can print one clear line and
exit non-zero, and the web APIs can answer 4xx, without a traceback.
"""

from __future__ import annotations

__all__ = ["SurveyQAError", "DefinitionError", "InsufficientDataError", "MissingColumnError"]


class SurveyQAError(Exception):
    """An error caused by the user's input, with a hint on how to fix it.

    Parameters
    ----------
    message : str
        What was wrong.
    hint : str, optional
        What to do about it.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class DefinitionError(SurveyQAError):
    """A metric definition or specification file is malformed."""


class InsufficientDataError(SurveyQAError):
    """A table cannot give a metric: too few repeat visits, no bright stars, ..."""


class MissingColumnError(SurveyQAError):
    """A table lacks a column a metric needs."""
