"""`surveyqa metrics list|show`, run as a user runs it: the installed command in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from surveyqa.metrics.registry import load_default_registry

SURVEYQA = Path(sys.executable).parent / "surveyqa"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SURVEYQA), "metrics", *args], capture_output=True, text=True, timeout=120)


def test_list_all_counts_every_metric() -> None:
    result = run("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "UNIT", "TAGS", "DESCRIPTION"]
    total = len(load_default_registry())
    assert lines[-1] == f"{total} metrics"
    assert len(lines) == total + 2
    pa1 = next(line for line in lines if line.startswith("validate_drp.PA1 "))
    assert pa1.split()[1:3] == ["mmag", "photometry"] and "The maximum rms of the unresolved" in pa1


def test_list_filters_by_package_and_tag_as_json() -> None:
    result = run("list", "--package", "validate_drp", "--tag", "photometry", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    names = [m["full_name"] for m in payload["metrics"]]
    assert payload["count"] == len(names) > 0
    assert "validate_drp.PA1" in names and "validate_drp.AM1" not in names
    assert all(m["package"] == "validate_drp" and "photometry" in m["tags"] for m in payload["metrics"])
    expected = [m.full_name for m in load_default_registry().filter(package="validate_drp", tag="photometry")]
    assert names == expected


def test_show_prints_definition_and_specs() -> None:
    result = run("show", "validate_drp.PA1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == "validate_drp.PA1"
    assert "unit: mmag" in out and "reference: LPM-17, p. 21, http://ls.st/lpm-17" in out
    n_specs = len(load_default_registry().specs_for("validate_drp.PA1"))
    assert f"specifications ({n_specs}):" in out
    design = next(line for line in out.splitlines() if "validate_drp.PA1.design_gri " in line)
    assert "<= 5 mmag" in design and "(all measurements)" in design
    hsc_r = next(line for line in out.splitlines() if "validate_drp.PA1.hsc_design_r " in line)
    assert "instrument=HSC" in hsc_r and "filter_name=HSC-R" in hsc_r


def test_show_json_by_short_name() -> None:
    result = run("show", "AM1", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["metric"]["full_name"] == "validate_drp.AM1"
    design = next(s for s in payload["specs"] if s["name"] == "validate_drp.AM1.design")
    assert (design["operator"], design["threshold"]) == ("<=", 10.0)
    assert design["unit"] in ("mas", "marcsec", "milliarcsecond")


@pytest.mark.parametrize(
    "args,expected",
    [
        (("show", "PA"), ["unknown metric 'PA'", "validate_drp.PA1"]),
        (("list", "--package", "validate"), ["unknown package 'validate'", "validate_drp"]),
        (("list", "--tag", "photometri"), ["no metric has the tag 'photometri'", "photometry"]),
    ],
)
def test_bad_names_exit_2_with_candidates(args: tuple[str, ...], expected: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_own_root_is_checked_and_listed(tmp_path: Path) -> None:
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "mine.yaml").write_text("Good:\n  description: fine\n  unit: mmag\n  granularity: visit\n")
    result = run("--root", str(tmp_path), "list", "--package", "mine")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1 metric"
    shown = run("--root", str(tmp_path), "show", "mine.Good")
    assert "granularity: visit" in shown.stdout
    bad = tmp_path / "metrics" / "mine.yaml"
    bad.write_text("Good:\n  description: fine\n  unit: mmag\n  granularity: pixel\n")
    result = run("--root", str(tmp_path), "list")
    assert result.returncode == 2
    assert str(bad) in result.stderr and "mine.Good" in result.stderr and "unknown granularity 'pixel'" in result.stderr


@pytest.mark.parametrize("command", [(), ("list",), ("show",), ("check",)])
def test_help_has_an_example(command: tuple[str, ...]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "Example" in result.stdout and "surveyqa metrics" in result.stdout.split("Example", 1)[1]


def test_check_reports_each_applicable_spec() -> None:
    result = run(
        "check", "validate_drp.PA1", "6.2",
        "--meta", "instrument=HSC", "--meta", "filter_name=HSC-R",
        "--meta", "dataset_repo_url=https://github.com/lsst/validation_data_hsc.git",
        "--meta", "dataset_name=validation_data_hsc",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert (payload["metric"], payload["value"], payload["unit"]) == ("validate_drp.PA1", 6.2, "mmag")
    outcome = {r["spec"]: r["passed"] for r in payload["results"]}
    assert outcome["validate_drp.PA1.hsc_design_r"] is False  # 6.2 > 5 mmag
    assert outcome["validate_drp.PA1.hsc_minimum_r"] is True  # 6.2 <= 8 mmag
    assert "validate_drp.PA1.hsc_design_g" not in outcome


def test_check_converts_units_and_reads_list_metadata() -> None:
    result = run("check", "AM1", "0.012", "--unit", "arcsec")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "validate_drp.AM1 = 0.012 arcsec"
    assert any(line.split()[0] == "validate_drp.AM1.design" and line.endswith("FAIL") for line in lines[1:])  # 12 > 10 mas
    assert any(line.split()[0] == "validate_drp.AM1.minimum" and line.endswith("pass") for line in lines[1:])
    cfht = run(
        "check", "PA1", "4", "-m", "instrument=CFHT", "-m", "filter_name=g",
        "-m", "dataset_repo_url=https://github.com/lsst/validation_data_cfht.git",
        "-m", "dataset_name=validation_data_cfht", "-m", "visits=[849375, 850587]",
        "-m", "ccds=[12, 13, 14, 21, 22, 23]",
    )  # fmt: skip
    assert "validate_drp.PA1.cfht_design_g" in cfht.stdout
    bad = run("check", "AM1", "1", "--unit", "mag")
    assert bad.returncode == 2 and "cannot be checked" in bad.stderr
