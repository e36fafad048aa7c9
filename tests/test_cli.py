"""The `surveyqa` entry point: help, version, and the one-line error on a bad command."""

from __future__ import annotations

import subprocess
import sys

from surveyqa.cli import SUBCOMMANDS, cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "surveyqa.cli", *args], capture_output=True, text=True)


def test_help_lists_every_available_subcommand() -> None:
    result = run("--help")
    assert result.returncode == 0
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        assert name in result.stdout


def test_every_listed_subcommand_has_help_with_an_example() -> None:
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        result = run(name, "--help")
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout, f"`surveyqa {name} --help` should show an example"


def test_unknown_subcommand_exits_nonzero_with_a_message() -> None:
    result = run("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_subcommand_table_names_modules_inside_the_package() -> None:
    assert all(target.startswith("surveyqa.") for target in SUBCOMMANDS.values())
