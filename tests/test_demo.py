"""`surveyqa demo`: the summary says which metrics fail and which defects were caught; the
dashboard is served when asked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from surveyqa.cli import main


def test_demo_on_rubin_shaped_outputs_catches_every_injected_defect(rubin_demo_repo, capsys):
    from surveyqa.demo import truth_path
    from surveyqa.sim.rubin import RUBIN_DEFECTS

    assert main(["demo", "--no-serve", "--repo", rubin_demo_repo[0]]) == 0
    out = capsys.readouterr().out
    assert "reusing the demo repository" in out
    caught = out.split("Injected defects and what the QA flagged:")[1].strip().splitlines()
    truth = json.loads(truth_path(rubin_demo_repo[0]).read_text())["defects"]
    assert len(truth) == len(RUBIN_DEFECTS) == len(caught), caught
    for line, (name, defect) in zip(caught, truth.items()):
        assert line.strip().startswith(name.replace("_", " ")) and defect["metric"] in line
        assert line.endswith(": caught"), line


def test_demo_like_simple_prints_the_quick_look(demo_repo, capsys):
    assert main(["demo", "--no-serve", "--like", "simple", "--repo", demo_repo[0]]) == 0
    out = capsys.readouterr().out
    assert "reusing the demo repository" in out
    assert "health.emptyCellFraction" in out and "FAIL" in out
    assert "Failed quanta (" in out and "No reference objects supplied" in out
    caught = out.split("Injected defects and what the QA flagged:")[1]
    assert "health.astromOffset fails on detector(s) [" in caught
    assert "health.nanFraction fails on ['i_psfFlux']" in caught


def test_demo_refuses_a_repository_that_is_not_a_demo(tmp_path, capsys):
    from surveyqa.sim import SimConfig, make_survey

    make_survey(str(tmp_path / "r"), SimConfig(visits=1, bands=("g",), detectors_per_side=2, tract_size=0.8),
                collection="other")
    assert main(["demo", "--no-serve", "--repo", str(tmp_path / "r")]) == 2
    assert "not a surveyqa demo one" in capsys.readouterr().err


def test_demo_serves_the_dashboard(rubin_demo_repo, tmp_path):
    pytest.importorskip("surveyqa.dashboard.server", reason="the dashboard package is not installed")
    repo = tmp_path / "demo-copy"
    shutil.copytree(rubin_demo_repo[0], repo)
    exe = Path(sys.executable).parent / "surveyqa"
    proc = subprocess.Popen([str(exe), "demo", "--repo", str(repo)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        url = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("Dashboard: "):
                url = line.split()[1]
                break
        assert url, "the demo did not print the dashboard URL"
        response = httpx.get(url, timeout=60, follow_redirects=True)
        assert response.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
