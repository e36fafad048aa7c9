"""The one command, `surveyqa`, with a sub-command per job.

Sub-commands are thin shells over public Python functions and live beside the code they wrap;
this module only finds them, lazily, so that `surveyqa --help` does not import the Butler,
the web stack and the database layer, and turns `SurveyQAError` into one line and exit code 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from surveyqa.errors import SurveyQAError

__all__ = ["main", "cli", "SUBCOMMANDS"]

#: name -> "module:attribute" of the click command implementing it.
SUBCOMMANDS: dict[str, str] = {
    "metrics": "surveyqa.metrics.cli:metrics",
    "measure": "surveyqa.metrics.measure_cli:measure",
    "sim": "surveyqa.sim.cli:sim",
    "run": "surveyqa.tasks.cli:run",
    "demo": "surveyqa.demo:demo",
    "ingest": "surveyqa.butler.cli:ingest",
    "dashboard": "surveyqa.dashboard.cli:dashboard",
    "track": "surveyqa.tracking.cli:track",
    "validate": "surveyqa.validate.cli:validate",
    "bps": "surveyqa.tasks.bps:bps",
    "logs": "surveyqa.logs.cli:logs",
    "provenance": "surveyqa.provenance.cli:provenance",
    "reproduce": "surveyqa.provenance.cli:reproduce",
}


def _available(name: str) -> bool:
    module = SUBCOMMANDS[name].split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is not there either
        return False


class LazyGroup(click.Group):
    """A click group that imports a sub-command's module only when it is run or asked for help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in SUBCOMMANDS if _available(name))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS or not _available(name):
            return None
        module_name, attr = SUBCOMMANDS[name].split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="surveyqa")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Quality assurance for astronomical survey data processing.

    \b
    Example:
        surveyqa demo            # simulated survey, QA pipeline, dashboard
        surveyqa metrics list --tag photometry
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line to stderr and return exit code 2."""
    try:
        cli.main(args=argv, prog_name="surveyqa", standalone_mode=False)
    except SurveyQAError as exc:
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
