"""`surveyqa validate`: a thin shell over `surveyqa.validate.validate_repository`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from surveyqa.errors import SurveyQAError

__all__ = ["validate"]


@click.command("validate")
@click.argument("repo", type=click.Path(file_okay=False))
@click.option("--collection", required=True, help="Collection holding the catalog datasets (e.g. the DRP run).")
@click.option("--schema", "schema", default="dp1", show_default=True,
              help="A schema lsst-sdm-schemas ships (dp1, dp02, ...) or a Felis YAML file.")
@click.option("--rules", "rules", type=click.Path(dir_okay=False), default=None,
              help="YAML rules that add or tighten checks (docs/validate.md).")
@click.option("--gate", is_flag=True, help="Exit with code 1 when a check fails (halts a production between steps).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as a JSON object.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Also write an HTML report.")
@click.option("--no-store", is_flag=True, help="Do not store the verdicts as metric values in the repository.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Concurrent scans (default: cores).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
def validate(repo: str, collection: str, schema: str, rules: str | None, gate: bool, as_json: bool,
             html_path: str | None, no_store: bool, jobs: int | None, quiet: bool) -> None:
    """Check every column of every catalog dataset of REPO against a Felis schema.

    Presence, type, unit, nullability, NaN and infinity no flag explains, ranges that follow from
    each column's UCD, unit and name, unique keys and references between tables. The good-row
    percentage of every column at every data ID is stored as metric values in a new RUN chained
    as COLLECTION/validate (dashboard and `surveyqa track submit` read it).

    \b
    Example:
        surveyqa validate demo-repo --collection drp --gate
        surveyqa validate demo-repo --collection drp --schema dp1 --rules rules.yaml --json
    """
    from surveyqa.validate.report import html_report, json_report, text_report
    from surveyqa.validate.run import validate_repository

    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    report = validate_repository(repo, collection, schema=schema, rules=rules, workers=jobs, store=not no_store,
                                 progress=say, show_bar=not quiet and sys.stderr.isatty())
    if html_path:
        Path(html_path).write_text(html_report(report))
        say(f"wrote {html_path}")
    click.echo(json_report(report) if as_json else text_report(report))
    if gate and not report.passed:
        n = len(report.failures)
        raise ValidationFailed(f"{n} check{'' if n == 1 else 's'} failed against schema {report.schema}",
                               "the gate is closed: fix the data, or loosen a check with --rules")


class ValidationFailed(SurveyQAError):
    """``--gate``: a check failed. Exit code 1, as a failed test, not 2 (a user error)."""

    exit_code = 1
