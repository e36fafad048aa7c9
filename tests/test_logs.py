"""`surveyqa logs` on a Rubin-shaped repository whose one input file was corrupted before the QA ran,
and on pipetask's own log and summary formats: the five capabilities of DMTN-085 §4.2, failure
classes, incremental and crash-safe ingest, bad log files, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lsst.daf.butler import Butler

from surveyqa.cli import main
from surveyqa.logs import LogQuery, LogStore
from surveyqa.logs.classify import message_pattern

#: The visits the QA runs over (a quick Rubin-shaped run); the first one's sourceTable_visit is corrupted.
VISITS = (384, 404, 1262, 23216)
BAD_VISIT = VISITS[0]


@pytest.fixture(scope="module")
def corrupt_repo(tmp_path_factory) -> dict:
    """Rubin-shaped DRP outputs on the real HSC RC2 registry records; visit 384's sourceTable_visit
    overwritten with garbage of its size after the repository was built; then `surveyqa run`."""
    from surveyqa.sim.rubin import RubinSimConfig, make_rubin_survey
    from surveyqa.tasks.executor import run_qa

    repo = tmp_path_factory.mktemp("logs") / "repo"
    make_rubin_survey(str(repo), RubinSimConfig(seed=1, density=10000.0), collection="drp")
    butler = Butler.from_config(str(repo))
    [ref] = butler.query_datasets("sourceTable_visit", collections="drp", where=f"instrument = 'HSC' AND visit = {BAD_VISIT}",
                                  explain=False)
    path = Path(butler.getURI(ref).ospath)
    path.write_bytes(b"x" * path.stat().st_size)
    result = run_qa(str(repo), "drp", "qa/run1", where=f"visit IN ({', '.join(map(str, VISITS))})")
    return {"repo": str(repo), "collection": "qa/run1", "file": str(path), "result": result}


def _json(capsys, argv) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_the_run_goes_on_and_one_failure_class_names_the_corrupt_input(corrupt_repo, tmp_path, capsys):
    result = corrupt_repo["result"]
    failed = [s for s in result.statuses if s.status == "failed"]
    assert failed and all(s.status == "success" for s in result.statuses if s not in failed)
    assert {s.data_id.get("visit") for s in failed if "visit" in s.data_id} == {BAD_VISIT}
    assert any(s.label == "qaVisit" and s.status == "success" for s in result.statuses)  # the other visits ran
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    out = _json(capsys, ["logs", "failures", corrupt_repo["repo"], "-c", "qa/run1", "--db", db, "--json"])
    [cls] = out["classes"]  # never ingested: ingested on first use
    assert cls["exception"] == "ValueError" and cls["count"] == len(failed)
    assert "cannot read sourceTable_visit file" in cls["pattern"]
    assert {(q["task"], q["data_id"].get("visit")) for q in cls["quanta"]} >= {("qaVisit", BAD_VISIT)}
    assert all(corrupt_repo["file"] in q["message"] for q in cls["quanta"])


def test_error_records_carry_the_traceback_naming_the_file(corrupt_repo, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    out = _json(capsys, ["logs", "show", corrupt_repo["repo"], "-c", "qa/run1", "--db", db, "--level", "ERROR",
                         "--json"])
    records = out["records"]
    failed = [s for s in corrupt_repo["result"].statuses if s.status == "failed"]
    assert len(records) == len(failed)
    for r in records:
        assert r["level"] == "ERROR" and r["exc_type"] == "ValueError"
        assert r["traceback"].startswith("Traceback (most recent call last)")
        assert corrupt_repo["file"] in r["traceback"] and corrupt_repo["file"] in r["message"]
    assert {r["data_id"]["visit"] for r in records if "visit" in r["data_id"]} == {BAD_VISIT}


def test_messages_of_one_execution(corrupt_repo, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    out = _json(capsys, ["logs", "show", corrupt_repo["repo"], "-c", "qa/run1", "--db", db, "--task", "qaVisit",
                         "--where", f"visit = {BAD_VISIT}", "--json"])
    assert out["records"], "the failed quantum's log is empty"
    assert {(r["task"], r["data_id"]["visit"], r["run"]) for r in out["records"]} == \
        {("qaVisit", BAD_VISIT, corrupt_repo["result"].run)}
    other = _json(capsys, ["logs", "show", corrupt_repo["repo"], "-c", "qa/run1", "--db", db, "--task", "qaVisit",
                           "--where", f"visit = {VISITS[1]}", "--json"])
    assert all(r["data_id"]["visit"] == VISITS[1] for r in other["records"])
    assert not any("failed" in r["message"] for r in other["records"])


def test_executions_that_ended_badly_have_status_exception_and_traceback(corrupt_repo, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    out = _json(capsys, ["logs", "failures", corrupt_repo["repo"], "-c", "qa/run1", "--db", db, "--executions",
                         "--json"])
    statuses = {(s.label, tuple(sorted(s.data_id.items()))): s for s in corrupt_repo["result"].statuses}
    bad = [s for s in statuses.values() if s.status != "success"]
    assert len(out["executions"]) == len(bad)
    for e in out["executions"]:
        assert e["status"] == "failed" and e["exc_type"] == "ValueError"
        assert "Traceback" in e["traceback"] and corrupt_repo["file"] in e["message"]


def test_ingest_twice_stores_nothing_twice(corrupt_repo, tmp_path):
    store = LogStore(f"sqlite:///{tmp_path / 'logs.db'}")
    first = store.ingest_repo(corrupt_repo["repo"], "qa/run1")
    n, executions = store.count(), len(store.executions(bad_only=False))
    assert first.sources > 0 and first.records == n > 0 and not first.bad
    again = store.ingest_repo(corrupt_repo["repo"], "qa/run1")
    assert (again.sources, again.records) == (0, 0) and again.skipped == first.sources
    assert store.count() == n and len(store.executions(bad_only=False)) == executions
    # every quantum of the run is one execution, whatever number of sources told about it
    assert executions == len(corrupt_repo["result"].statuses)


def test_a_class_in_a_run_still_going_stands_out(corrupt_repo, tmp_path, capsys):
    from surveyqa.tasks import runstate

    repo = tmp_path / "repo"
    shutil.copytree(corrupt_repo["repo"], repo)
    run = corrupt_repo["result"].run
    butler = Butler.from_config(str(repo), writeable=True)
    butler.registry.setCollectionDocumentation(run, runstate.IN_PROGRESS)  # what `surveyqa run` says while running
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    assert main(["logs", "ingest", str(repo), "-c", "qa/run1", "--db", db]) == 0
    capsys.readouterr()
    assert main(["logs", "failures", str(repo), "-c", "qa/run1", "--db", db]) == 0
    assert "NEW (run in progress)" in capsys.readouterr().out
    butler.registry.setCollectionDocumentation(run, runstate.COMPLETE)
    assert main(["logs", "ingest", str(repo), "-c", "qa/run1", "--db", db]) == 0
    out = _json(capsys, ["logs", "failures", str(repo), "-c", "qa/run1", "--db", db, "--json"])
    assert [c["active"] for c in out["classes"]] == [False]


def test_a_corrupt_log_dataset_is_reported_and_skipped(corrupt_repo, tmp_path, capsys):
    repo = tmp_path / "repo"
    shutil.copytree(corrupt_repo["repo"], repo)
    butler = Butler.from_config(str(repo))
    [ref] = butler.query_datasets("qaVisit_log", collections="qa/run1",
                                  where=f"instrument = 'HSC' AND visit = {BAD_VISIT}", explain=False)
    log_file = Path(butler.getURI(ref).ospath)
    log_file.write_text(log_file.read_text()[:200])  # truncated
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    capsys.readouterr()
    assert main(["logs", "ingest", str(repo), "-c", "qa/run1", "--db", db]) == 0
    out, err = capsys.readouterr()
    assert f"skipped {log_file}" in err and "1 unreadable" in out
    store = LogStore(db)
    assert store.records(LogQuery(task="qaVisit", level="ERROR")) == []  # nothing of it stored
    assert store.records(LogQuery(task="qaTract", level="ERROR"))  # the others are


# --- pipetask's files and JSON-lines streams ---------------------------------------------------------


def _pipetask_log_file(path: Path, records: list[tuple]) -> None:
    """A log file as ``pipetask run --log-file path`` writes it: lsst.daf.butler's JsonLogFormatter, one
    ButlerLogRecord per line, with the MDC that lsst.pipe.base.log_capture sets."""
    from lsst.daf.butler.logging import ButlerMDC, JsonLogFormatter

    handler = logging.FileHandler(path)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("lsst.test.pipetask")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    ButlerMDC.add_mdc_log_record_factory()
    try:
        for label, level, message, fail in records:
            with ButlerMDC.set_mdc({"LABEL": label, "RUN": "HSC/runs/test/w_2026_05"}):
                if fail:
                    try:
                        raise fail
                    except Exception:
                        logger.exception(message)
                else:
                    logger.log(level, message)
    finally:
        logger.removeHandler(handler)
        handler.close()
        ButlerMDC.restore_log_record_factory()


def test_pipetask_log_file_and_summary(tmp_path, capsys):
    from lsst.pipe.base.quantum_reports import ExceptionInfo, ExecutionStatus, QuantumReport, Report
    from lsst.pipe.base.graph import QgraphSummary

    log_file = tmp_path / "pipetask-log.json"
    _pipetask_log_file(log_file, [
        ("isr:{instrument: 'HSC', detector: 42, exposure: 1228}", logging.INFO, "Processing exposure 1228", None),
        ("isr:{instrument: 'HSC', detector: 42, exposure: 1228}", logging.WARNING, "Saturated amp 3", None),
        ("calibrateImage:{instrument: 'HSC', detector: 42, visit: 1228}", logging.ERROR, "calibration failed",
         RuntimeError("PSF fit diverged for detector 42")),
    ])
    summary = tmp_path / "summary.json"
    report = Report(qgraphSummary=QgraphSummary(graphID="g1"), status=ExecutionStatus.FAILURE, quantaReports=[
        QuantumReport(status=ExecutionStatus.FAILURE, dataId={"instrument": "HSC", "visit": 1228, "detector": 42},
                      taskLabel="calibrateImage", exitCode=1,
                      exceptionInfo=ExceptionInfo(className="RuntimeError", message="PSF fit diverged for detector 42")),
        QuantumReport(status=ExecutionStatus.SUCCESS, dataId={"instrument": "HSC", "exposure": 1228, "detector": 42},
                      taskLabel="isr", exitCode=0)])
    summary.write_text(report.model_dump_json())
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    assert main(["logs", "ingest", str(log_file), "--db", db]) == 0
    assert main(["logs", "ingest", str(summary), "--db", db]) == 0
    out = _json(capsys, ["logs", "show", str(log_file), "--db", db, "--level", "warning", "--json"])
    assert [(r["task"], r["level"]) for r in out["records"]] == [("isr", "WARNING"), ("calibrateImage", "ERROR")]
    error = out["records"][1]
    assert error["data_id"] == {"instrument": "HSC", "visit": 1228, "detector": 42}
    assert error["exc_type"] == "RuntimeError" and "PSF fit diverged" in error["traceback"]
    executions = _json(capsys, ["logs", "failures", str(summary), "--db", db, "--executions", "--json"])["executions"]
    assert [(e["task"], e["status"], e["exit_code"], e["exc_type"]) for e in executions] == \
        [("calibrateImage", "failed", 1, "RuntimeError")]


def _jsonl(path: Path, rows: list[dict], mode: str = "w") -> None:
    with path.open(mode) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


STREAM = [  # a BPS-like job outside the Butler: two hosts, processes and threads, not in time order
    {"time": "2026-01-31T12:00:05Z", "level": "INFO", "logger": "job", "message": "step 2 of 3", "host": "n1",
     "process": 11, "thread": "T1", "task": "qaVisit", "data_id": {"instrument": "HSC", "visit": 1}},
    {"time": "2026-01-31T12:00:01Z", "level": "INFO", "logger": "job", "message": "step 1 of 3", "host": "n1",
     "process": 11, "thread": "T1", "task": "qaVisit", "data_id": {"instrument": "HSC", "visit": 1}},
    {"time": "2026-01-31T12:00:02Z", "level": "DEBUG", "logger": "job", "message": "other thread", "host": "n1",
     "process": 11, "thread": "T2"},
    {"time": "2026-01-31T12:00:03Z", "level": "ERROR", "logger": "job", "message": "disk quota exceeded on /scratch/u1",
     "host": "n2", "process": 22, "thread": "T1", "traceback": "Traceback (most recent call last):\nOSError: quota"},
    {"time": "2026-01-31T13:30:00Z", "level": "WARNING", "logger": "job", "message": "disk quota 95% on /scratch/u2",
     "host": "n2", "process": 22, "thread": "T1"},
    {"time": "2026-01-31T12:00:09Z", "level": "INFO", "logger": "job", "message": "step 3 of 3", "host": "n1",
     "process": 11, "thread": "T1"},
]


def test_one_process_and_thread_in_time_order(tmp_path, capsys):
    path = tmp_path / "stream.jsonl"
    _jsonl(path, STREAM)
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    out = _json(capsys, ["logs", "show", str(path), "--db", db, "--process", "11", "--thread", "T1", "--json"])
    assert [r["message"] for r in out["records"]] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert {(r["host"], r["process"], r["thread"]) for r in out["records"]} == {("n1", 11, "T1")}


def _search(store: LogStore) -> tuple[list, list, list]:
    both = [r["message"] for r in store.records(LogQuery(grep=r"disk quota \d+"))]
    bounded = [r["message"] for r in store.records(LogQuery(grep=r"quota.*/scratch/u\d", since="2026-01-31T13:00",
                                                            until="2026-01-31T14:00"))]
    level = [r["message"] for r in store.records(LogQuery(level="INFO", grep="step"))]
    return both, bounded, level


def test_regex_and_time_range_search(tmp_path):
    path = tmp_path / "stream.jsonl"
    _jsonl(path, STREAM)
    store = LogStore(f"sqlite:///{tmp_path / 'logs.db'}")
    store.ingest_file(path)
    both, bounded, level = _search(store)
    assert both == ["disk quota 95% on /scratch/u2"]  # "disk quota exceeded" has no number after "quota "
    assert bounded == ["disk quota 95% on /scratch/u2"]  # the ERROR one is at 12:00
    assert level == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]


def test_a_growing_stream_is_followed_line_by_line(tmp_path):
    path = tmp_path / "stream.jsonl"
    _jsonl(path, STREAM[:2])
    with path.open("a") as f:
        f.write(json.dumps(STREAM[2])[:30])  # the writer is in the middle of a line
    store = LogStore(f"sqlite:///{tmp_path / 'logs.db'}")
    assert store.ingest_file(path, follow=True).records == 2
    with path.open("a") as f:
        f.write(json.dumps(STREAM[2])[30:] + "\n")
    _jsonl(path, STREAM[3:], mode="a")
    assert store.ingest_file(path, follow=True).records == len(STREAM) - 2
    assert store.ingest_file(path, follow=True).records == 0
    assert store.count() == len(STREAM)


def test_corrupt_and_truncated_files_are_reported_with_their_line_and_not_stored(tmp_path, capsys):
    good, corrupt, truncated = tmp_path / "good.jsonl", tmp_path / "corrupt.jsonl", tmp_path / "truncated.jsonl"
    _jsonl(good, STREAM)
    corrupt.write_text(good.read_text().replace('"step 2 of 3"', '"step 2 of 3'))
    truncated.write_text(good.read_text()[:-20])
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    store = LogStore(db)
    for path, line in ((corrupt, 1), (truncated, len(STREAM))):
        report = store.ingest_file(path)
        assert [b.location for b in report.bad] == [f"{path.resolve()}:{line}"] and report.records == 0
        capsys.readouterr()
        assert main(["logs", "ingest", str(path), "--db", db]) == 0
        assert f"skipped {path.resolve()}:{line}" in capsys.readouterr().err
    assert store.count() == 0
    assert store.ingest_file(good).records == len(STREAM)


_KILLED_INGEST = """
import sys, time
from surveyqa.logs.db import open_log_db, write_source
from surveyqa.logs.records import LogRecord
engine = open_log_db(sys.argv[1])
for i in range(10**6):
    records = [LogRecord("r", "t", {"visit": i}, float(j), 20, "l", f"message {i} {j}") for j in range(500)]
    with engine.begin() as conn:
        write_source(conn, f"test:{i}", "test", "test", records, [])
    print(i, flush=True)
"""


def _kill_after_five_sources(script: str, tmp_path) -> list[int]:
    """Run an ingest ``script`` on ``tmp_path/logs.db``, kill -9 it once it said five sources were
    committed; the numbers of those it said."""
    url = f"sqlite:///{tmp_path / 'logs.db'}"
    proc = subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True)
    committed = [int(proc.stdout.readline()) for _ in range(5)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return committed


def test_a_kill_during_ingest_loses_nothing_committed(tmp_path):
    committed = _kill_after_five_sources(_KILLED_INGEST, tmp_path)
    connection = sqlite3.connect(tmp_path / "logs.db")
    sources = connection.execute("SELECT count(*), sum(n_records) FROM log_source").fetchone()
    n_records = connection.execute("SELECT count(*) FROM log_record").fetchone()[0]
    assert sources[0] >= len(committed) and n_records == sources[1] == 500 * sources[0]  # no source half-stored
    indexed = connection.execute("SELECT count(*) FROM log_record_fts WHERE log_record_fts MATCH '\"message\"'")
    assert indexed.fetchone()[0] == n_records


def test_message_pattern_masks_what_differs_between_quanta_of_one_cause():
    a = message_pattern("cannot read sourceTable_visit file /r/drp/sourceTable_visit/384/sTv_HSC_384.parq: bad footer")
    b = message_pattern("cannot read sourceTable_visit file /r/drp/sourceTable_visit/1262/sTv_HSC_1262.parq: bad footer")
    c = message_pattern("No reference objects for detector 42 (dataset 01a23f1c-bd52-76e4-9d96-307aaa2fb166)")
    assert a == b == "cannot read sourceTable_visit file /r/drp/sourceTable_visit/<n>/<file>: bad footer"
    assert c == "No reference objects for detector <n> (dataset <id>)"


@pytest.mark.parametrize("argv, said", [
    (["--where", "colour = 3"], "not a data ID key"),
    (["--where", "visit = abc"], "not an integer"),
    (["--grep", "("], "not a regular expression"),
    (["--since", "yesterday"], "not a time"),
    (["--level", "LOUD"], "unknown log level"),
])
def test_bad_filters_are_one_line_errors(tmp_path, capsys, argv, said):
    path = tmp_path / "stream.jsonl"
    _jsonl(path, STREAM)
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    assert main(["logs", "ingest", str(path), "--db", db]) == 0
    capsys.readouterr()
    assert main(["logs", "show", str(path), "--db", db, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and said in err and len(err.splitlines()) == 1


@pytest.mark.postgres
def test_postgresql_gives_what_sqlite_gives(corrupt_repo, tmp_path, pg_url):
    sqlite_store, pg_store = LogStore(f"sqlite:///{tmp_path / 'logs.db'}"), LogStore(pg_url)
    path = tmp_path / "stream.jsonl"
    _jsonl(path, STREAM)
    for store in (sqlite_store, pg_store):
        store.ingest_repo(corrupt_repo["repo"], "qa/run1")
        store.ingest_file(path)
    assert pg_store.count() == sqlite_store.count()
    assert _search(pg_store) == _search(sqlite_store)
    assert [c.as_dict() for c in pg_store.failure_classes()] == [c.as_dict() for c in sqlite_store.failure_classes()]
    errors = pg_store.records(LogQuery(level="ERROR", where=f"visit = {BAD_VISIT}"))
    assert errors and all(corrupt_repo["file"] in r["traceback"] for r in errors)
    again = pg_store.ingest_repo(corrupt_repo["repo"], "qa/run1")
    assert again.records == 0 and pg_store.count() == sqlite_store.count()
    pg_store.close()


@pytest.mark.browser
@pytest.mark.slow
def test_the_failures_page_draws_the_class_where_the_corrupt_visit_is(corrupt_repo):
    from lsst.sphgeom import LonLat, UnitVector3d

    from conftest import require_chromium
    from surveyqa.dashboard import browser, serve

    require_chromium(browser.chromium_path())
    handle, url = serve(corrupt_repo["repo"], "qa/run1")
    try:
        with browser.launch() as page:
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "?view=failures", wait_until="domcontentloaded")
            browser.wait_for_plot(page, "failures_sky", ["level:failures", "classes:1"], timeout=90_000)
            drawn = page.evaluate("""() => { const m = Bokeh.documents[0].get_model_by_name('failure_classes');
                const d = m.data_source.data; return {xs: d.xs.map(a => Array.from(a)), ys: d.ys.map(a => Array.from(a)),
                data_id: Array.from(d.data_id), task: Array.from(d.task)}; }""")
            table = browser.shown(page, "table.sq-failure-classes").inner_text()
            assert not errors, errors
    finally:
        handle.stop()
    failed = [s for s in corrupt_repo["result"].statuses if s.status == "failed"]
    assert "ValueError" in table and "cannot read sourceTable_visit file" in table
    assert f"\t{len(failed)}\t" in table  # one class holding every failed quantum
    [visit] = Butler.from_config(corrupt_repo["repo"]).query_dimension_records(
        "visit", where=f"instrument = 'HSC' AND visit = {BAD_VISIT}", explain=False)
    [i] = [k for k, task in enumerate(drawn["task"]) if task == "qaVisit"]
    ra, dec = np.mean(drawn["xs"][i][:-1]) % 360.0, np.mean(drawn["ys"][i][:-1])
    assert visit.region.contains(UnitVector3d(LonLat.fromDegrees(ra, dec)))  # drawn where the visit is


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_url(request, tmp_path) -> str:
    """An empty log database on each backend."""
    return f"sqlite:///{tmp_path / 'logs.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")


#: Messages a word index or a substring test could get wrong: words inside longer words, words at
#: the start of a literal, non-ASCII letters, and what COPY must escape (tab, newline, quotes, backslash).
TRICKY = ["Matched 5 of 91234 stars", "UnMatched 5 of 91234 stars", "Matched 5 of 81234 stars",
          "magic bytes not found in footer", "magic bytes not foundation", "magic_bytes not found", "café noir",
          "cafébar", "x_found_y", "tab\there", 'a "quoted" word, a back\\slash', "two\nlines", "", "NUL-free",
          "disk FULL on /scratch", "disk full on /scratch"]


@pytest.mark.parametrize("pattern", [r"Matched \d+ of 9\d{4} stars", r"bytes not found", r"s not found", "found",
                                     "café", "FULL", "x_found", '"quoted" w', r"back\\slash", "two\nlines", r"^$",
                                     r"(?i)full on", "tab\th"])
def test_the_word_index_narrows_and_the_expression_decides(log_url, pattern):
    from surveyqa.logs.db import open_log_db, write_source
    from surveyqa.logs.records import LogRecord

    engine = open_log_db(log_url)
    records = [LogRecord("r", "t", {"visit": i}, 1000.0 + i, 20, "l", m) for i, m in enumerate(TRICKY)]
    with engine.begin() as conn:
        write_source(conn, "test:tricky", "test", "test", records, [])
    engine.dispose()
    store = LogStore(log_url)
    expected = [m for m in TRICKY if re.search(pattern, m)]
    assert [r["message"] for r in store.records(LogQuery(grep=pattern))] == expected
    assert [r["message"] for r in store.records(LogQuery(grep=pattern, since=1000.0, until=2000.0))] == expected
    store.close()


def test_a_replaced_file_keeps_only_its_new_records(log_url):
    from surveyqa.logs.db import open_log_db, write_source
    from surveyqa.logs.records import LogRecord

    engine = open_log_db(log_url)
    for key, messages in (("a", ["old one", "old two", "old three"]), ("b", ["kept one", "kept two"]),
                          ("a", ["new one"])):
        with engine.begin() as conn:
            write_source(conn, f"file:{key}", "test", key, [LogRecord("r", "t", {}, 1.0, 20, "l", m) for m in messages],
                         [], replace=True)
    engine.dispose()
    store = LogStore(log_url)
    assert sorted(r["message"] for r in store.records()) == ["kept one", "kept two", "new one"]
    assert [r["message"] for r in store.records(LogQuery(grep=" one"))] == ["kept one", "new one"]
    if store.engine.dialect.name == "sqlite":  # the word index lost the old rows too (checked against the table)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO log_record_fts (log_record_fts, rank) VALUES ('integrity-check', 1)")
    store.close()


def test_a_large_first_source_is_indexed_after_its_rows(log_url):
    import sqlalchemy as sa

    from surveyqa.logs.db import DEFER_INDEXES_AT, open_log_db, record_t, write_source
    from surveyqa.logs.records import LogRecord

    engine = open_log_db(log_url)
    names = {index.name for index in record_t.indexes}
    records = [LogRecord("r", "t", {"instrument": "HSC", "visit": i // 100}, float(i), 40 if i % 100 == 7 else 20,
                         "l", f"message {i}") for i in range(DEFER_INDEXES_AT)]
    for key, part in (("big", records), ("small", records[:10])):
        with engine.begin() as conn:
            write_source(conn, f"test:{key}", "test", "test", part, [])
    assert names <= {i["name"] for i in sa.inspect(engine).get_indexes("log_record")}
    engine.dispose()
    store = LogStore(log_url)
    assert store.count() == DEFER_INDEXES_AT + 10
    assert [r["message"] for r in store.records(LogQuery(level="ERROR", where="visit = 3"))] == ["message 307"]
    assert [r["message"] for r in store.records(LogQuery(grep=r"message 4999\d$"))] == \
        [f"message {i}" for i in range(49990, 50000)]
    store.close()


_KILLED_BULK_LOAD = """
import sys
from surveyqa.logs.db import bulk_load, open_log_db, write_source
from surveyqa.logs.records import LogRecord
engine = open_log_db(sys.argv[1])
with bulk_load(engine):
    for i in range(10**6):
        records = [LogRecord("r", "t", {"visit": i}, float(j), 20, "l", f"message {i} {j}") for j in range(500)]
        with engine.begin() as conn:
            write_source(conn, f"test:{i}", "test", "test", records, [])
        print(i, flush=True)
"""


def test_a_kill_during_a_first_bulk_load_loses_nothing_committed_and_the_indexes_come_back(tmp_path):
    import sqlalchemy as sa

    from surveyqa.logs.db import record_t

    committed = _kill_after_five_sources(_KILLED_BULK_LOAD, tmp_path)
    connection = sqlite3.connect(tmp_path / "logs.db")
    indexes = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                                      "AND tbl_name = 'log_record'")}
    assert not indexes & {index.name for index in record_t.indexes}  # killed before they were built again
    connection.close()
    store = LogStore(f"sqlite:///{tmp_path / 'logs.db'}")  # opening builds them
    built = {i["name"] for i in sa.inspect(store.engine).get_indexes("log_record")}
    assert {index.name for index in record_t.indexes} <= built
    with store.engine.connect() as conn:
        sources, n_records = conn.exec_driver_sql("SELECT count(*), sum(n_records) FROM log_source").one()
    assert sources >= len(committed) and store.count() == n_records == 500 * sources
    assert [r["message"] for r in store.records(LogQuery(where="visit = 3", grep="message 3 49"))] == \
        ["message 3 49"] + [f"message 3 49{j}" for j in range(10)]
    store.close()


def test_a_database_of_the_first_schema_is_refused_with_what_to_do(tmp_path):
    from surveyqa.errors import SurveyQAError

    path = tmp_path / "logs.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE log_record (id INTEGER PRIMARY KEY, source_id INTEGER, run_id INTEGER, "
                       "task VARCHAR, data_id VARCHAR, message TEXT)")
    connection.commit()
    connection.close()
    with pytest.raises(SurveyQAError, match="earlier surveyqa"):
        LogStore(f"sqlite:///{path}")
    assert sqlite3.connect(path).execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] == 1
