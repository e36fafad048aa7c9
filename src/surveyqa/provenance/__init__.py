"""Provenance of every metric value and one command to reproduce it (issue 15, DMTN-085 §4.5).

`value_provenance` goes from a metric value to the dataset holding it, the quantum and task
that wrote it, the task's config, the software versions and the input datasets, recursively,
from the Butler's own records (`record`, `walk`). `reproduce` writes the pipeline subset and
data query that regenerate a value and the ``pipetask run`` command that runs them.
`run_record` / `run_changes` give a whole run's provenance and what changed between two runs
(code, config, inputs), what a tracking service keeps beside a run's values. The CLI
(`surveyqa provenance`, `surveyqa reproduce`) is in `surveyqa.provenance.cli`.
"""

from surveyqa.provenance.api import provenance_changes, value_provenance
from surveyqa.provenance.runs import changes_summary, run_changes, run_record

__all__ = ["value_provenance", "provenance_changes", "run_record", "run_changes", "changes_summary"]
