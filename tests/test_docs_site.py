"""The documentation site builds with warnings as errors, and its generated reference is complete.

`mkdocs build --strict` fails on a broken link, a missing page or an API object that no longer
exists; the generated pages are then checked against the code they come from: every sub-command
of the CLI, every metric of the registry, every route of the tracking service.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, DISABLE_MKDOCS_2_WARNING="true")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the site does not build:\n{result.stdout}\n{result.stderr}"
    return out


def _text(site: Path, page: str) -> str:
    path = site / page / "index.html"
    assert path.is_file(), f"{page} was not built"
    return path.read_text()


def test_cli_reference_has_every_subcommand(site):
    from surveyqa.cli import cli

    page = _text(site, "reference/cli")
    commands = cli.list_commands(None)
    assert commands, "the CLI lists no sub-commands"
    for name in commands:
        assert f"surveyqa {name}" in page, f"sub-command {name} is missing from the CLI reference"


def test_metric_catalog_has_every_metric(site):
    from surveyqa.metrics.registry import load_default_registry

    page = _text(site, "reference/metric-catalog")
    registry = load_default_registry()
    missing = [m.full_name for m in registry if f"<code>{m.full_name}</code>" not in page]
    assert not missing, f"{len(missing)} metrics missing from the catalog, e.g. {missing[:5]}"


def test_tracking_reference_has_every_route(site, tmp_path):
    from surveyqa.tracking import create_app, load_config

    page = _text(site, "reference/tracking-api")
    spec = create_app(load_config(db=f"sqlite:///{tmp_path}/t.db")).openapi()
    for path, operations in spec["paths"].items():
        for method in operations:
            assert f"{method.upper()} {path}" in page, f"{method.upper()} {path} is missing from the API reference"


def test_api_reference_renders_docstrings(site):
    page = _text(site, "reference/api")
    for name in ("QARepository", "metric_values", "measure", "run_qa", "TrackingService"):
        assert name in page, f"{name} is missing from the Python API reference"


def test_every_doc_page_is_in_the_site(site):
    pages = [p for p in (ROOT / "docs").rglob("*.md")]
    for page in pages:
        rel = page.relative_to(ROOT / "docs").with_suffix("")
        built = site / ("" if rel.name == "index" else rel) / "index.html"
        assert built.is_file(), f"docs/{page.relative_to(ROOT / 'docs')} is not in the built site"
