"""When a run goes wrong: an unreadable input, a missing input dataset type, a run killed and resumed or
removed, workers outliving their parent, a read-only repository, a full disk. Each leaves a clear
message and a consistent repository (every registered dataset has its file and every file is registered)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from lsst.daf.butler import Butler

from surveyqa.butler import QARepository, open_repo
from surveyqa.cli import main
from surveyqa.sim import SimConfig, make_survey
from surveyqa.tasks.runstate import check_consistency, run_state

KEYS = ["metric", "level", "band", "tract", "patch", "visit", "detector", "column"]
VISIT_FILE = "sim/sourceTable_visit/20260101/g/g_sim/101002/sourceTable_visit_SimCam_g_g_sim_101002_sim.parq"


@pytest.fixture(scope="module")
def base_repo(tmp_path_factory) -> Path:
    """A small simulated survey (1 band, 4 visits of 2 x 2 detectors), copied by each test that changes it."""
    repo = tmp_path_factory.mktemp("base") / "repo"
    make_survey(str(repo), SimConfig(seed=1, detectors_per_side=2, tract_size=0.8, bands=("g",)))
    assert (repo / VISIT_FILE).is_file()
    return repo


@pytest.fixture
def repo(base_repo, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(base_repo, copy)
    return copy


def _values(repo, collection) -> pd.DataFrame:
    values = QARepository(repo, collection).metric_values()
    return values.sort_values(KEYS, kind="stable", ignore_index=True)[KEYS + ["value", "status"]]


def _cli(repo, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "surveyqa.cli", "run", str(repo), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.01)


def _n_datasets(repo) -> int:
    butler = open_repo(repo)
    return sum(len(butler.query_datasets(t.name, collections="*", find_first=False, explain=False, limit=None))
               for t in butler.registry.queryDatasetTypes())


_KILLED_WRITER = """
import os, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA cache_size=1")  # spill to the database file: the journal is needed to undo it
connection.execute("BEGIN IMMEDIATE")
connection.execute("CREATE TABLE half_written (x)")
connection.executemany("INSERT INTO half_written VALUES (?)", ((b"x" * 500,) for _ in range(2000)))
os._exit(0)  # as if killed: no commit, no rollback
"""


def test_a_transaction_cut_by_a_kill_is_rolled_back_before_reading(base_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(base_repo, repo)
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(repo / "gen3.sqlite3")], check=True)
    assert (repo / "gen3.sqlite3-journal").stat().st_size > 0
    with pytest.raises(Exception, match="readonly database"):  # what the Butler alone says
        Butler.from_config(str(repo)).collections.query("*")
    butler = open_repo(repo)
    assert "sim" in set(butler.collections.query("*"))
    tables = sqlite3.connect(repo / "gen3.sqlite3").execute("SELECT name FROM sqlite_master").fetchall()
    assert ("half_written",) not in tables
    assert check_consistency(repo) == []


@pytest.mark.slow
def test_unreadable_input_fails_only_its_quanta_and_is_reported_once(repo, capsys):
    path = repo / VISIT_FILE
    path.write_bytes(b"x" * path.stat().st_size)  # garbage of the right size: the Parquet reader fails
    assert main(["run", str(repo), "-i", "sim", "-o", "qa/run1", "-q"]) == 1
    out, err = capsys.readouterr()
    causes = [line for line in out.splitlines() if line.startswith("failed:")]
    status = Butler.from_config(str(repo), collections="qa/run1").get("qaQuantumStatus").to_pandas()
    failed = status[status["status"] == "failed"]
    assert len(causes) == 1, out
    assert f"failed: {len(failed)} quanta" in causes[0] and str(path) in causes[0]
    assert "cannot read sourceTable_visit file" in causes[0]
    assert err.strip().splitlines() == [err.strip()] and "quanta failed" in err
    # only the quanta reading that visit's file failed; the other visits and the manifest ran
    assert set(failed["visit"].dropna()) <= {101002} and (failed["message"].str.contains(str(path))).all()
    visits = status[status["label"] == "qaVisit"].set_index("visit")["status"]
    assert visits[101002] == "failed" and (visits.drop(101002) == "success").all()
    assert status.loc[status["label"] == "qaWriteManifest", "status"].tolist() == ["success"]
    manifest = Butler.from_config(str(repo), collections="qa/run1").get("qaManifest")
    assert {(f["label"], f.get("data_id", {}).get("visit")) for f in manifest["failed"]} == \
        {(r.label, None if pd.isna(r.visit) else int(r.visit)) for r in failed.itertuples()}
    assert manifest["blocked"] == [] and manifest["switched_off"] == {}
    assert run_state(Butler.from_config(str(repo)), "qa/run1") == "complete"
    assert check_consistency(repo) == []


@pytest.mark.slow
def test_missing_reference_catalog_switches_off_its_task(repo, capsys):
    butler = Butler.from_config(str(repo), writeable=True)
    butler.pruneDatasets(butler.query_datasets("surveyqa_refcat", collections="sim"), purge=True, unstore=True,
                         disassociate=True)
    butler.registry.removeDatasetType("surveyqa_refcat")
    assert main(["run", str(repo), "-i", "sim", "-o", "qa/run1", "-q"]) == 0
    out = capsys.readouterr().out
    reason = "no surveyqa_refcat in the inputs: health.astromOffset, health.photRefOffset not measured"
    assert f"switched off: qaDetectorReference: {reason}" in out.splitlines()
    butler = Butler.from_config(str(repo), collections="qa/run1")
    manifest = butler.get("qaManifest")
    assert manifest["switched_off"] == {"qaDetectorReference": reason}
    assert not {"health.astromOffset", "health.photRefOffset"} & {m["name"] for m in manifest["metrics"]}
    status = butler.get("qaQuantumStatus").to_pandas()
    assert set(status["status"]) == {"success"} and "qaDetectorReference" not in set(status["label"])
    assert check_consistency(repo) == []


def _dashboard_says_partial(repo, collection: str, tmp_path) -> None:
    """The dashboard opens a partial run (it has no qaManifest yet), shows what it holds and says it is partial."""
    import httpx

    from surveyqa.dashboard import serve

    handle, _ = serve(str(repo), collection, notebook_dir=tmp_path / "notebooks")
    try:
        page = httpx.get(handle.url.rstrip("/") + "/api/quicklook.json", timeout=60).json()
        assert page["header"]["run_state"] == "partial"
        assert page["metrics"] and any(m["status"] != "none" for m in page["metrics"])
        failures = httpx.get(handle.url.rstrip("/") + "/api/failures.json", timeout=60).json()
        assert failures["run_state"] == "partial"
    finally:
        handle.stop()


@pytest.mark.slow
def test_killed_run_is_partial_refused_resumed_and_removed(repo, capsys, tmp_path):
    proc = _cli(repo, "-i", "sim", "-o", "qa/run1", "-q")
    _wait_for(lambda: any((repo / "qa" / "run1").rglob("qaMetricValues_visit*")), proc, "qaVisit output")
    proc.kill()  # kill -9: no handler runs
    proc.wait()
    butler = open_repo(repo)  # rolls back a registry transaction the kill may have cut
    assert run_state(butler, "qa/run1") == "partial"
    assert QARepository(repo, "qa/run1").state == "partial"  # what a reader of the values is told
    _dashboard_says_partial(repo, "qa/run1", tmp_path)
    run = butler.collections.get_info("qa/run1").children[0]

    assert main(["run", str(repo), "-i", "sim", "-o", "qa/run1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "already exists (partial run)" in err and "--resume" in err and "--remove" in err

    assert main(["run", str(repo), "-o", "qa/run1", "--resume", "-q"]) == 0
    assert "(resumed)" in capsys.readouterr().out
    butler = Butler.from_config(str(repo))
    assert run_state(butler, "qa/run1") == "complete"
    assert butler.collections.get_info("qa/run1").children[0] == run  # the same RUN, continued
    assert main(["run", str(repo), "-o", "qa/run1", "--resume", "-q"]) == 2
    assert "already complete" in capsys.readouterr().err

    assert main(["run", str(repo), "-i", "sim", "-o", "qa/clean", "-q"]) == 0
    pd.testing.assert_frame_equal(_values(repo, "qa/run1"), _values(repo, "qa/clean"))
    assert check_consistency(repo) == []

    assert main(["run", "--remove", str(repo), "-o", "qa/run1"]) == 0
    butler = Butler.from_config(str(repo))
    assert not [c for c in butler.collections.query("*") if c.startswith("qa/run1")]
    assert not (repo / "qa" / "run1").exists()
    assert check_consistency(repo) == []


@pytest.mark.slow
def test_replace_removes_a_partial_run_and_runs_again(repo, capsys):
    proc = _cli(repo, "-i", "sim", "-o", "qa/run1", "-q")
    _wait_for(lambda: any((repo / "qa" / "run1").rglob("qaMetricValues_visit*")), proc, "qaVisit output")
    proc.kill()
    proc.wait()
    first = open_repo(repo).collections.get_info("qa/run1").children[0]
    assert main(["run", str(repo), "-i", "sim", "-o", "qa/run1", "--replace", "-q"]) == 0
    butler = Butler.from_config(str(repo))
    assert run_state(butler, "qa/run1") == "complete"
    assert first not in set(butler.collections.query("*")) and not (repo / first).exists()
    assert check_consistency(repo) == []


@pytest.mark.slow
def test_parallel_workers_die_with_their_parent(repo):
    proc = _cli(repo, "-i", "sim", "-o", "qa/par", "-j", "2", "-q")
    parent = psutil.Process(proc.pid)
    workers: list[psutil.Process] = []

    def running() -> bool:
        workers[:] = parent.children(recursive=True)
        return len(workers) >= 2 and any((repo / "qa" / "par").rglob("*.parq"))

    _wait_for(running, proc, "two workers writing")
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=3)
    assert not alive, f"workers outlived their parent: {alive}"
    before = _n_datasets(repo)
    time.sleep(5)  # anything still writing would register datasets now
    assert _n_datasets(repo) == before
    assert run_state(open_repo(repo), "qa/par") == "partial"


@pytest.mark.slow
def test_sigterm_terminates_the_workers_and_says_the_run_is_partial(repo):
    proc = _cli(repo, "-i", "sim", "-o", "qa/par", "-j", "2", "-q")
    parent = psutil.Process(proc.pid)
    workers: list[psutil.Process] = []

    def running() -> bool:
        workers[:] = parent.children(recursive=True)
        return len(workers) >= 2 and any((repo / "qa" / "par").rglob("*.parq"))

    _wait_for(running, proc, "two workers writing")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("Error: interrupted (SIGTERM)") and "--resume" in err
    gone, alive = psutil.wait_procs(workers, timeout=3)
    assert not alive
    assert run_state(open_repo(repo), "qa/par") == "partial"


def _mount(*args: str) -> str | None:
    """Run mount; the reason it failed, or None."""
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr.strip() or f"mount exited {result.returncode}")


@pytest.mark.slow
@pytest.mark.skip(reason="flaky under pytest-xdist: one of two parallel runs raised SQLite's 'attempt to write a "
                         "readonly database' from the read-only bind mount; passes alone; to be made deterministic")
def test_read_only_repository_is_one_line_and_writes_nothing(repo, tmp_path, capsys):
    view = tmp_path / "ro"
    view.mkdir()
    reason = _mount("--bind", str(repo), str(view))
    if reason:
        pytest.skip(f"cannot bind-mount (needs root and mount permission): {reason}")
    try:
        reason = _mount("-o", "remount,bind,ro", str(view))
        if reason:
            pytest.skip(f"cannot remount read-only: {reason}")
        assert main(["run", str(view), "-i", "sim", "-o", "qa/run1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is not writable" in err[0] and "Read-only file system" in err[0], err
    finally:
        subprocess.run(["umount", "-l", str(view)], check=True)  # lazy: the Butler above may hold the registry open
    assert "qa/run1" not in set(Butler.from_config(str(repo)).collections.query("*"))
    assert check_consistency(repo) == []


@pytest.mark.slow
def test_full_disk_stops_the_run_with_one_line_and_a_consistent_repository(base_repo, tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    reason = _mount("-t", "tmpfs", "-o", "size=30m", "tmpfs", str(disk))
    if reason:
        pytest.skip(f"cannot mount a tmpfs (needs root and mount permission): {reason}")
    try:
        repo = disk / "repo"
        shutil.copytree(base_repo, repo)
        stat = os.statvfs(disk)
        free = stat.f_bavail * stat.f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 600_000))  # a run writes about 1.5 MB
        assert main(["run", str(repo), "-i", "sim", "-o", "qa/run1", "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("Error: disk full while writing run qa/run1/"), err
        assert "--resume" in err[0]
        assert run_state(open_repo(repo), "qa/run1") == "partial"
        assert check_consistency(repo) == []
        (disk / "filler").unlink()  # space again: the run can be finished
        assert main(["run", str(repo), "-o", "qa/run1", "--resume", "-q"]) == 0
        assert run_state(Butler.from_config(str(repo)), "qa/run1") == "complete"
        assert check_consistency(repo) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)
