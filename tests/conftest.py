"""Shared fixtures: paths to the real Rubin/HSC data beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real data (`../shared/data`); every test that needs it fails loudly without it."""
    assert SHARED_DATA.is_dir(), f"real test data not found at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory) -> tuple[str, str]:
    """The `surveyqa demo` repository (simulated survey with every defect + its QA run), built
    once per test session: ``(repo_path, collection)``."""
    from surveyqa.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo") / "demo-repo")
