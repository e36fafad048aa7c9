"""`surveyqa track` commands, the migrations and the submitting client."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from tracking_fixtures import VERIFY_JOB, db_url, make_server  # noqa: F401

from surveyqa.cli import main
from surveyqa.tracking.client import environment_metadata, prepare_job, read_job
from surveyqa.tracking.db import create_db_engine, metadata, migrate, open_database

CFHT_RAW = VERIFY_JOB.with_name("Cfht_output_r.json")


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_migrations_match_the_tables(db_url):
    engine = open_database(db_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        # one chain of migrations (get_current_head refuses several heads), and the database at its end
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(__import__("surveyqa.tracking.db", fromlist=["x"])._MIGRATIONS))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        assert head >= "0002"
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()


def test_downgrade_and_upgrade_again(tmp_path):
    from alembic import command
    from alembic.config import Config

    engine = create_db_engine(f"sqlite:///{tmp_path / 't.db'}")
    migrate(engine)
    cfg = Config()
    cfg.set_main_option("script_location", str(__import__("surveyqa.tracking.db", fromlist=["x"])._MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    migrate(engine)
    assert "value" in sa.inspect(engine).get_table_names()


def test_init_token_submit_series(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 't.db'}"
    assert run(capsys, "track", "init", "--db", db, "--no-seed")[0] == 0
    code, out, _ = run(capsys, "track", "token", "create", "ci", "--db", db)
    assert code == 0 and out.startswith("sqt_")
    code, listing, _ = run(capsys, "track", "token", "list", "--db", db)
    assert "ci" in listing and out.strip() not in listing
    code, out, _ = run(capsys, "track", "submit", str(VERIFY_JOB), "--db", db)
    assert code == 0 and "stored run 1 (30 values)" in out
    code, out, _ = run(capsys, "track", "submit", str(VERIFY_JOB), "--db", db)
    assert code == 0 and "already stored, nothing changed: run 1" in out
    code, out, _ = run(capsys, "track", "series", "validate_drp.PA1", "--db", db, "--where", "filter_name=r")
    assert code == 0 and "16.7234 mmag" in out and "instrument=CFHT" in out
    code, _, err = run(capsys, "track", "token", "create", "ci", "--db", db)
    assert code == 2 and "exists" in err


def test_raw_validate_drp_output_gets_environment_and_packages(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 't.db'}"
    code, out, _ = run(capsys, "track", "submit", str(CFHT_RAW), "--db", db, "--repo", "/repo/main")
    assert code == 0 and "(30 values)" in out
    engine = open_database(db)
    with engine.connect() as c:
        env_name, repo = c.execute(sa.text("SELECT env_name, repo FROM run")).one()
        n_packages = c.execute(sa.text("SELECT count(*) FROM package")).scalar()
        names = set(c.execute(sa.text("SELECT name FROM package")).scalars())
    assert env_name == "local" and repo == "/repo/main"
    assert n_packages > 50 and {"surveyqa", "numpy", "astropy"} <= names


def test_submit_over_http_needs_a_valid_token(capsys, make_server, monkeypatch):
    server = make_server()
    token = server.token("ci")
    code, _, err = run(capsys, "track", "submit", str(VERIFY_JOB), "--server", server.url)
    assert code == 2 and "401" in err and "token" in err
    monkeypatch.setenv("SURVEYQA_TRACK_TOKEN", token)
    code, out, _ = run(capsys, "track", "submit", str(VERIFY_JOB), "--server", server.url)
    assert code == 0 and "stored run 1 (30 values)" in out and f"{server.url}/runs/1" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["track", "submit", "no-such.json"], "cannot read no-such.json"),
        (["track", "submit", "."], "give --collection"),
        (["track", "init", "--db", "nonsense://x"], "cannot use database URL"),
        (["track", "series", "surveyqa.nothing", "--db", "sqlite:///{tmp}/t.db"], "unknown metric"),
    ],
)
def test_bad_cli_input_is_one_clear_line(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and message in err and "Traceback" not in err


def test_bad_job_file_is_refused(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 't.db'}"
    bad = tmp_path / "bad.json"
    bad.write_text('{"measurements": [{"metric": "validate_drp.PA1", "value": 1.0, "unit": "parsecs_per_mmag"}]}')
    code, _, err = run(capsys, "track", "submit", str(bad), "--db", db)
    assert code == 2 and "unknown metric(s): validate_drp.PA1" in err
    code, out, _ = run(capsys, "track", "init", "--db", db)
    assert code == 0 and "known metrics:" in out
    code, _, err = run(capsys, "track", "submit", str(bad), "--db", db)
    assert code == 2 and "unknown unit 'parsecs_per_mmag'" in err
    bad.write_text('{"measurements": [{"metric": "validate_drp.PA1", "value": 1.0, "unit": "mmag"}], "meta": {"env": {"date": "2026-01-01"}}}')
    code, out, _ = run(capsys, "track", "submit", str(bad), "--db", db)
    assert code == 0 and "(1 values)" in out


def test_environment_metadata_from_ci_variables():
    env = environment_metadata({"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "42", "GITHUB_SERVER_URL": "https://ci.example", "GITHUB_REPOSITORY": "org/repo", "GITHUB_SHA": "f" * 40})
    assert env["env_name"] == "github" and env["ci_id"] == "42" and env["ci_url"] == "https://ci.example/org/repo/actions/runs/42"
    assert env["git_sha"] == "f" * 40 and env["date"]
    env = environment_metadata({"JENKINS_URL": "x", "BUILD_ID": "7", "BUILD_URL": "https://jenkins.example/7"})
    assert (env["env_name"], env["ci_id"]) == ("jenkins", "7")


def test_prepare_job_keeps_what_the_job_says():
    job = read_job(VERIFY_JOB)
    prepared = prepare_job(job, repo="/repo", collection="u/qa/1")
    assert prepared["meta"]["env"] == job["meta"]["env"] and prepared["meta"]["packages"] == job["meta"]["packages"]
    assert prepared["measurements"] is job["measurements"] and prepared["meta"]["repo"] == "/repo"


def test_help_has_examples(capsys):
    for cmd in (["track"], ["track", "submit"], ["track", "serve"], ["track", "token", "create"], ["track", "init"], ["track", "series"], ["track", "subscribe"]):
        code, out, _ = run(capsys, *cmd, "--help")
        assert code == 0 and "Example" in out, cmd


DOC = __import__("pathlib").Path(__file__).resolve().parents[1] / "docs" / "tracking.md"


def test_every_setting_and_route_is_documented():
    from surveyqa.tracking.app import create_app
    from surveyqa.tracking.config import TrackingConfig

    text = DOC.read_text()
    for key in TrackingConfig.model_fields:
        assert f"| `{key}` |" in text, key
    app = create_app(TrackingConfig(db="sqlite://"))
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/api/"):
            assert f"`{' '.join(sorted(route.methods - {'HEAD'}))} {path}`" in text or f" {path}`" in text, path


def test_public_api_is_importable():
    import surveyqa.tracking as tracking

    for name in tracking.__all__:
        assert getattr(tracking, name) is not None


def test_repository_values_submission_is_idempotent(tmp_path):
    import pyarrow as pa

    from surveyqa.tracking.client import repo_submission
    from surveyqa.tracking.config import TrackingConfig
    from surveyqa.tracking.schemas import Submission
    from surveyqa.tracking.service import TrackingService

    table = pa.table({"metric": ["surveyqa.sourceDensity"] * 2, "value": [1200.0, 900.0], "unit": ["1 / deg2"] * 2,
                      "level": ["tract"] * 2, "band": ["r", "i"], "tract": [9813, 9813], "n": [1200, 900]})
    metrics = [{"name": "surveyqa.sourceDensity", "unit": "1 / deg2", "higher_is_better": True}]
    service = TrackingService.open(TrackingConfig(db=f"sqlite:///{tmp_path / 't.db'}"))
    first = service.submit(Submission.model_validate(repo_submission(table, "/repo/main", "u/qa/run1", metrics=metrics)))
    again = service.submit(Submission.model_validate(repo_submission(table, "/repo/main", "u/qa/run1", metrics=metrics)))
    other = service.submit(Submission.model_validate(repo_submission(table, "/repo/main", "u/qa/run2", metrics=metrics)))
    assert first["created"] and not again["created"] and again["run_id"] == first["run_id"]
    assert other["created"] and other["run_id"] != first["run_id"]
    with service.engine.connect() as c:
        run = c.execute(sa.text("SELECT dataset, repo, collection, env_name FROM run WHERE id = :i"), {"i": first["run_id"]}).one()
    assert tuple(run[:3]) == ("/repo/main", "/repo/main", "u/qa/run1") and run[3]
