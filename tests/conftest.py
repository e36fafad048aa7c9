"""Shared fixtures: paths to the real Rubin/HSC data beside the checkout."""

from __future__ import annotations

import os
import uuid
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
    """The simple-shape demo repository (`surveyqa demo --like simple`: surveyqa's own small survey
    with every defect + its QA run), built once per test session: ``(repo_path, collection)``."""
    from surveyqa.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo") / "demo-repo", shape="simple")


@pytest.fixture(scope="session")
def rubin_demo_repo(tmp_path_factory) -> tuple[str, str]:
    """The default `surveyqa demo` repository: Rubin-shaped DRP outputs on the real HSC RC2 registry
    records, with every realistic defect, and its QA run. ``(repo_path, collection)``."""
    from surveyqa.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("rubin-demo") / "demo-repo")


@pytest.fixture(scope="session")
def clean_rubin_demo_repo(tmp_path_factory) -> tuple[str, str]:
    """The default demo's survey (same seed, same export) without any defect, QA'd into ``qa/demo``:
    the clean twin on which nothing injected may be named. ``(repo_path, collection)``."""
    from surveyqa.demo import DEMO_INPUT, DEMO_OUTPUT
    from surveyqa.sim.rubin import RubinSimConfig, make_rubin_survey
    from surveyqa.tasks.executor import run_qa

    repo = tmp_path_factory.mktemp("rubin-clean") / "clean-repo"
    make_rubin_survey(str(repo), RubinSimConfig(seed=1), collection=DEMO_INPUT)
    run_qa(str(repo), DEMO_INPUT, DEMO_OUTPUT)
    return str(repo), DEMO_OUTPUT


@pytest.fixture(scope="session")
def truth(demo_repo) -> dict:
    """The demo's truth manifest: which detector, visit, patch and column the injected defects hit."""
    from surveyqa.butler import QARepository

    return QARepository(*demo_repo).truth()


@pytest.fixture(scope="session")
def clean_demo_repo(tmp_path_factory) -> tuple[str, str]:
    """The demo's survey (same seed, same visits and tracts) without any defect, QA'd into ``qa/clean``:
    the reference run the demo is compared with. ``(repo_path, collection)``."""
    from surveyqa.sim import SimConfig, make_survey
    from surveyqa.tasks.executor import run_qa

    repo = tmp_path_factory.mktemp("clean") / "clean-repo"
    make_survey(str(repo), SimConfig(seed=1), collection="sim")
    run_qa(str(repo), "sim", "qa/clean")
    return str(repo), "qa/clean"


PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url():
    """A new, empty PostgreSQL database on the local server (dropped afterwards), as a SQLAlchemy URL."""
    import sqlalchemy

    name = f"surveyqa_test_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not running ({exc}); `make test` starts it")
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def require_chromium(path: str) -> None:
    """Skip a browser test where no Chromium is installed, except in CI, where that is a failure."""
    if not Path(path).exists():
        message = f"no Chromium at {path} (`make test` installs Debian's chromium; or set SURVEYQA_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


#: Visits of `small_rubin_repo` the QA ran on (tests/test_bps.py groups them two jobs to a run).
SMALL_RUBIN_VISITS = 6


@pytest.fixture(scope="session")
def small_rubin_repo(tmp_path_factory) -> tuple[str, str]:
    """A Rubin-shaped repository (HSC RC2 registry records, every realistic defect) at a tenth of the
    demo's density, with `surveyqa run`'s QA of its first `SMALL_RUBIN_VISITS` visits and their tract
    in ``qa/run``: ``(repo_path, where)``, ``where`` the data query that chose them."""
    from surveyqa.butler.repo import open_repo
    from surveyqa.sim.rubin import RubinDefects, RubinSimConfig, make_rubin_survey
    from surveyqa.tasks.executor import run_qa

    repo = str(tmp_path_factory.mktemp("small-rubin") / "repo")
    make_rubin_survey(repo, RubinSimConfig(seed=1, density=10000.0, defects=RubinDefects.from_names(["all"])),
                      collection="drp")
    visits = sorted(ref.dataId["visit"] for ref in open_repo(repo).query_datasets("sourceTable_visit",
                                                                                 collections="drp"))
    where = f"visit IN ({', '.join(str(v) for v in visits[:SMALL_RUBIN_VISITS])})"
    run_qa(repo, "drp", "qa/run", where=where)
    return repo, where
