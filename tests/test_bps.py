"""The QA through Rubin's ctrl_bps with the Parsl plugin on this machine: `bps submit` of the shipped
configuration gives the metric values `surveyqa run` gives, on a Rubin-shaped repository."""

from __future__ import annotations

import pandas as pd
import pytest

from surveyqa.errors import SurveyQAError
from surveyqa.tasks import bps

from conftest import SMALL_RUBIN_VISITS as N_VISITS


def _values(repo: str, collection: str, per_quantum: bool = False) -> pd.DataFrame:
    from surveyqa.butler.reader import METRIC_VALUE_DATASETS, QARepository

    qa = QARepository(repo, collection)
    if not per_quantum:
        return qa.metric_values()
    parts = [qa._read(name, uniform=True) for name in METRIC_VALUE_DATASETS]
    frame = pd.concat([p for p in parts if len(p)], ignore_index=True)
    return frame.sort_values(["metric", "level", "band", "tract", "patch", "visit", "detector", "column"],
                             ignore_index=True)


def test_bps_submit_with_parsl_gives_the_values_of_surveyqa_run(small_rubin_repo, tmp_path):
    repo, where = small_rubin_repo
    done = bps.submit(repo, "drp", "qa/bps", config="local-parsl", cores=2, visits_per_job=N_VISITS // 2,
                      where=where, workdir=tmp_path)
    assert done.run.startswith("qa/bps/")

    ours, theirs = _values(repo, "qa/run"), _values(repo, "qa/bps")
    assert set(ours["level"]) >= {"visit", "tract", "detector"}
    assert ours["visit"].nunique() == N_VISITS
    pd.testing.assert_frame_equal(theirs, ours)
    # the final job wrote the run's one-file table (read above), and every quantum's own table agrees too
    from surveyqa.butler.reader import RUN_METRIC_VALUES, QARepository

    assert len(QARepository(repo, "qa/bps").datasets(RUN_METRIC_VALUES)) == 1
    pd.testing.assert_frame_equal(_values(repo, "qa/bps", per_quantum=True), _values(repo, "qa/run", per_quantum=True))

    # the visit quanta ran grouped, N_VISITS // 2 to a job, as the configuration asked
    visit_jobs = sorted((done.submit_dir / "logs" / "qaVisitGroup").glob("*.stderr"))
    assert len(visit_jobs) == 2
    for job in visit_jobs:
        assert f"out of total {N_VISITS // 2} quanta" in job.read_text()


def test_shipped_configurations_load_and_name_their_workflow_system():
    from lsst.ctrl.bps import BpsConfig

    for name, path in bps.CONFIGS.items():
        config = BpsConfig(str(path))
        assert config["pipelineYaml"].endswith("tasks/pipelines/qa.yaml"), name
        assert config["cluster"]["qaVisitGroup"]["pipetasks"] == "qaVisit", name
        assert "surveyqa bps finish" in config["finalJob"]["command2"], name
    assert BpsConfig(str(bps.CONFIGS["local-parsl"]))["wmsServiceClass"] == "lsst.ctrl.bps.parsl.ParslService"
    assert BpsConfig(str(bps.CONFIGS["slurm-parsl"]))["site"]["slurm"]["class"] == "lsst.ctrl.bps.parsl.sites.Slurm"


def test_environment_points_at_the_programs_bps_runs():
    from pathlib import Path

    env = bps.environment()
    assert (Path(env["CTRL_MPEXEC_DIR"]) / "bin" / "pipetask").exists()
    assert (Path(env["DAF_BUTLER_DIR"]) / "bin" / "butler").exists()
    assert (Path(env["SURVEYQA_DIR"]) / "tasks" / "pipelines" / "qa.yaml").is_file()


def test_unknown_configuration_is_one_clear_error(tmp_path):
    with pytest.raises(SurveyQAError, match="no BPS configuration nowhere.yaml"):
        bps.submit(tmp_path, "drp", "qa/bps", config="nowhere.yaml", workdir=tmp_path)


def test_finish_of_a_run_that_is_not_there_is_one_clear_error(small_rubin_repo):
    repo, _ = small_rubin_repo
    with pytest.raises(SurveyQAError, match="collection 'qa/nowhere' does not exist"):
        bps.finish(repo, "qa/nowhere")
