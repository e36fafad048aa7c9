"""The QA pipeline through Rubin's batch-production system, ctrl_bps (`surveyqa bps`).

``surveyqa run`` executes every quantum in one process on one machine; ``bps submit`` with one of
the configurations shipped in ``tasks/bps/`` hands the same pipeline's quanta to a workflow
system (Parsl on this machine's cores or on a Slurm cluster; HTCondor through Rubin's own plugin),
as Rubin runs its data release production. BPS runs ``$CTRL_MPEXEC_DIR/bin/pipetask`` and
``$DAF_BUTLER_DIR/bin/butler``, which a pip installation does not set: `environment` gives them
(``eval "$(surveyqa bps env)"``), with ``SURVEYQA_DIR`` for the configurations' pipeline path.

Each BPS job is a new process that imports the stack before its first quantum, so the shipped
configuration groups visit quanta into jobs (``qa-common.yaml``); `submit` lets tests and
benchmarks change the grouping and the cores without editing it. The final job's last command is
`finish`: the run's one-file table of metric values, as ``surveyqa run`` writes it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from surveyqa.errors import SurveyQAError

__all__ = ["CONFIG_DIR", "CONFIGS", "BpsRun", "environment", "submit", "finish", "bps"]

log = logging.getLogger(__name__)

#: Where the shipped BPS configurations are.
CONFIG_DIR = Path(__file__).parent / "bps"
#: name -> shipped BPS configuration (``bps submit`` it).
CONFIGS = {"local-parsl": CONFIG_DIR / "local-parsl.yaml", "slurm-parsl": CONFIG_DIR / "slurm-parsl.yaml",
           "htcondor": CONFIG_DIR / "htcondor.yaml"}

_RUN_NAME = re.compile(r"^Run Name: (\S+)", re.M)
_FAILED_TASKS = re.compile(r"Tasks in state States\.(?:failed|dep_fail): (\d+)")


def environment() -> dict[str, str]:
    """The variables ``bps submit`` of a shipped configuration needs, with their values here.

    ``CTRL_MPEXEC_DIR`` and ``DAF_BUTLER_DIR`` are the folders whose ``bin/`` holds ``pipetask`` and
    ``butler`` (a Rubin stack sets them itself: set values are kept); ``SURVEYQA_DIR`` is the
    surveyqa package, whose ``tasks/pipelines/qa.yaml`` the configurations run.
    """
    env = {"SURVEYQA_DIR": str(Path(__file__).resolve().parents[1])}
    for variable, program in (("CTRL_MPEXEC_DIR", "pipetask"), ("DAF_BUTLER_DIR", "butler")):
        if os.environ.get(variable):
            env[variable] = os.environ[variable]
            continue
        found = Path(sys.executable).parent / program
        path = found if found.exists() else (Path(p) if (p := shutil.which(program)) else None)
        if path is None:
            raise SurveyQAError(f"no `{program}` program next to {sys.executable} or on PATH",
                                "install lsst-ctrl-mpexec and lsst-daf-butler in this environment")
        env[variable] = str(path.parent.parent)
    return env


@dataclass
class BpsRun:
    """A finished ``bps submit``: output collection, RUN, wall time (s), submit folder and its log."""

    output: str
    run: str
    seconds: float
    submit_dir: Path
    log: Path


def submit(repo: str | Path, inputs: str, output: str, *, config: str | Path = "local-parsl",
           cores: int | None = None, visits_per_job: int | None = None, where: str = "",
           workdir: str | Path = ".") -> BpsRun:
    """``bps submit`` a shipped configuration for ``repo``, wait for it, check that no job failed.

    Parameters
    ----------
    repo : path-like
        Butler repository.
    inputs, output : str
        Input collection(s) (comma-separated) and the new CHAINED output collection.
    config : str or path-like
        A name of `CONFIGS` or a BPS YAML file.
    cores : int, optional
        Parsl workers of the local site (default: the configuration's).
    visits_per_job : int, optional
        Visit quanta grouped into one job (default: the configuration's ``partitionMaxSize``).
    where : str
        Data query restricting the quanta.
    workdir : path-like
        Where BPS makes its ``submit/`` folder and Parsl its ``runinfo/``.

    Raises
    ------
    SurveyQAError
        Unknown configuration, ``bps`` missing or exiting with an error, or a job that failed.
    """
    path = Path(CONFIGS.get(str(config), config)).resolve()
    if not path.is_file():
        raise SurveyQAError(f"no BPS configuration {config}", f"give a file or one of {', '.join(CONFIGS)}")
    bps_program = Path(sys.executable).parent / "bps"
    if not bps_program.exists():
        raise SurveyQAError(f"no `bps` program next to {sys.executable}",
                            "pip install lsst-ctrl-bps lsst-ctrl-bps-parsl")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    overrides: dict = {"includeConfigs": [str(path)]}
    if cores is not None:
        overrides["site"] = {"local": {"cores": int(cores)}}
    if visits_per_job is not None:
        overrides["cluster"] = {"qaVisitGroup": {"partitionMaxSize": int(visits_per_job)}}
    submitted = workdir / f"bps-{re.sub(r'[^A-Za-z0-9]+', '-', output)}.yaml"
    submitted.write_text(yaml.safe_dump(overrides))
    repo = Path(repo).resolve() if Path(repo).exists() else repo  # a path, or a repository alias or URI
    command = [str(bps_program), "submit", str(submitted), "-b", str(repo), "-i", inputs, "-o", output]
    if where:
        command += ["-d", where]
    log_path = workdir / f"{submitted.stem}.log"
    env = {**os.environ, **environment(), "PWD": str(workdir),  # BPS's submitPath is ${PWD}/submit/...
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log.info("running %s", " ".join(command))
    t = time.perf_counter()
    with open(log_path, "w") as out:
        code = subprocess.call(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t
    text = log_path.read_text()
    if code != 0:
        tail = [line for line in text.splitlines() if line.strip()][-1:] or [""]
        raise SurveyQAError(f"bps submit exited with code {code}: {tail[0][:300]}", f"its output is in {log_path}")
    failed = sum(int(n) for n in _FAILED_TASKS.findall(text))
    name = _RUN_NAME.search(text)
    if failed or name is None:
        raise SurveyQAError(f"bps submit: {failed} job(s) failed" if failed else "bps submit named no run",
                            f"the jobs' logs are under {workdir / 'submit' / output}")
    runs = sorted((workdir / "submit" / output).iterdir(), key=lambda p: p.stat().st_mtime)
    run_dir = runs[-1]
    return BpsRun(output, f"{output}/{run_dir.name}", seconds, run_dir, log_path)


def finish(repo: str | Path, run: str) -> int:
    """Write the run's ``qaMetricValues`` (every metric value in one table), as ``surveyqa run`` does
    once its quanta are done: the BPS final job's last step. Returns the number of values."""
    from surveyqa.butler.reader import RUN_METRIC_VALUES
    from surveyqa.butler.repo import check_collection, open_repo, register_dataset_types
    from surveyqa.tasks.executor import _write_metric_table  # the one implementation of that table

    check_collection(open_repo(repo), run)
    butler = open_repo(repo, writeable=True, run=run)
    register_dataset_types(butler, [RUN_METRIC_VALUES])
    _write_metric_table(str(repo), butler, run)
    return len(butler.get(RUN_METRIC_VALUES, collections=run))


@click.group("bps")
def bps() -> None:
    """The QA through Rubin's ctrl_bps (Parsl locally or on Slurm; HTCondor): docs/scale.md.

    \b
    Example:
        eval "$(surveyqa bps env)"
        bps submit "$SURVEYQA_DIR/tasks/bps/local-parsl.yaml" -b repo -i drp -o qa/bps
    """


@bps.command("env")
def env_command() -> None:
    """Print the shell exports ``bps submit`` needs (CTRL_MPEXEC_DIR, DAF_BUTLER_DIR, SURVEYQA_DIR).

    \b
    Example:
        eval "$(surveyqa bps env)"
    """
    for key, value in environment().items():
        click.echo(f"export {key}='{value}'")


@bps.command("config")
@click.argument("name", type=click.Choice(sorted(CONFIGS)), default="local-parsl")
def config_command(name: str) -> None:
    """Print the path of a shipped BPS configuration.

    \b
    Example:
        bps submit "$(surveyqa bps config local-parsl)" -b repo -i drp -o qa/bps
    """
    click.echo(str(CONFIGS[name]))


@bps.command("finish")
@click.argument("repo", type=click.Path())
@click.option("--run", required=True, help="The RUN collection the BPS jobs wrote.")
def finish_command(repo: str, run: str) -> None:
    """Write the run's one-file metric-value table (the BPS final job's last command).

    \b
    Example:
        surveyqa bps finish repo --run qa/bps/20261204T033538Z
    """
    n = finish(repo, run)
    click.echo(f"qaMetricValues: {n} metric values of run {run}")
