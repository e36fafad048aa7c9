"""Regenerate one metric value: the pipeline subset, data query and ``pipetask run`` command.

From a value's provenance (`surveyqa.provenance.walk`): the task that wrote it, with the config
the run recorded (``<label>_config``, saved as a config file the pipeline loads), the data ID
of its quantum as the data query, and the runs its inputs were read from as the input
collections. ``--debug`` switches the task's one debug field on (``-c label:debug=True``),
which adds its ``<label>_debug_*`` datasets and changes no value. Run, the same quantum reads
the same input datasets with the same config into a new collection; `compare_reproduced`
checks that the value there is the same, bit for bit.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from surveyqa.errors import SurveyQAError
from surveyqa.provenance.locate import filter_values, locate_value
from surveyqa.provenance.walk import ProvenanceWalker

__all__ = ["ReproducePlan", "plan_reproduce", "run_plan", "compare_reproduced", "ReproduceResult"]

log = logging.getLogger(__name__)


def _query(data_id: dict) -> str:
    """A data query naming one data ID: ``instrument = 'HSC' AND visit = 1228``."""
    def literal(v):
        return f"'{v}'" if isinstance(v, str) else str(int(v))
    return " AND ".join(f"{k} = {literal(v)}" for k, v in data_id.items())


def _quote(arg: str) -> str:
    if shlex.quote(arg) == arg or any(c in arg for c in '"$`\\!'):
        return shlex.quote(arg)
    return f'"{arg}"'


@dataclass
class ReproducePlan:
    """What regenerates a value: written by `plan_reproduce`, run by `run_plan`."""

    repo: str
    collection: str
    metric: str
    where: str
    label: str
    task_class: str
    data_id: dict
    inputs: list[str]
    output: str
    debug: bool
    folder: Path
    pipeline: Path = field(init=False)
    config_file: Path = field(init=False)

    def __post_init__(self):
        self.pipeline = self.folder / "pipeline.yaml"
        self.config_file = self.folder / f"{self.label}_config.py"

    @property
    def data_query(self) -> str:
        return _query(self.data_id)

    def command(self, executable: str = "pipetask") -> list[str]:
        """The ``pipetask run`` command (its arguments) that regenerates the value."""
        cmd = [executable, "run", "-b", self.repo, "-i", ",".join(self.inputs), "-o", self.output,
               "-p", str(self.pipeline), "-d", self.data_query, "--register-dataset-types"]
        if self.debug:
            cmd += ["-c", f"{self.label}:debug=True"]
        return cmd

    def command_line(self) -> str:
        """The command as a shell line (a data query in double quotes, as a user would type it)."""
        return " ".join(_quote(a) for a in self.command())


def plan_reproduce(repo: str | os.PathLike, collection: str, metric: str, where: str = "", *, debug: bool = False,
                   output: str | None = None, folder: str | os.PathLike | None = None) -> ReproducePlan:
    """Find the value, and write the pipeline subset, its config file and the data query to ``folder``.

    Parameters
    ----------
    output : str, optional
        The new output collection (default ``reproduce/<label>/<data ID values>``); must not exist.
    folder : path-like, optional
        Where the files go (default ``reproduce-<label>-<data ID values>`` in the current folder).

    Raises
    ------
    SurveyQAError
        As `value_provenance`; an output collection that exists; a value whose task the run does not record.
    """
    from surveyqa.butler.repo import open_repo

    butler = open_repo(repo)
    located = locate_value(butler, collection, metric, where)
    walker = ProvenanceWalker(butler)
    producer = walker.producer(located.ref)
    if producer is None:
        raise SurveyQAError(f"run {located.ref.run} records no task writing {located.ref.datasetType.name}",
                            "its <label>_config datasets are missing: the value cannot be regenerated")
    _, input_refs = walker.inputs(located.ref)
    if input_refs:
        inputs = list(dict.fromkeys(r.run for r in input_refs))
    else:  # not recorded: the collection's chain without the QA run, as `surveyqa run` made it
        info = butler.collections.get_info(collection)
        inputs = [c for c in getattr(info, "children", ()) if c != located.ref.run]
        if not inputs:
            raise SurveyQAError(f"cannot tell the input collections of {located.describe()}",
                                "its file records no inputs and the collection is not a QA output chain")
    tag = "_".join(str(v) for v in producer.data_id.values()) or "all"
    output = output or f"reproduce/{producer.label}/{tag}"
    if output in set(butler.collections.query("*")):
        raise SurveyQAError(f"output collection {output!r} already exists", "choose another with --output")
    folder = Path(folder or f"reproduce-{producer.label}-{tag}").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    from surveyqa.provenance.configs import task_class_of

    plan = ReproducePlan(str(Path(repo).resolve()) if Path(repo).exists() else str(repo), collection, metric, where,
                         producer.label, task_class_of(producer.config) or "", producer.data_id, inputs, output,
                         debug, folder)
    producer.config.save(str(plan.config_file))
    plan.pipeline.write_text(
        f"description: >\n  Regenerates {metric} ({where or 'all'}) of {collection}: task {producer.label} of run\n"
        f"  {located.ref.run} with the config it recorded, on data ID {plan.data_query}.\n"
        f"tasks:\n  {producer.label}:\n    class: {plan.task_class}\n    config:\n"
        f"      - file: {plan.config_file}\n")
    (folder / "query.txt").write_text(plan.data_query + "\n")
    (folder / "command.sh").write_text("#!/bin/sh\n" + plan.command_line() + "\n")
    return plan


@dataclass
class ReproduceResult:
    """The reproduced value(s) beside the original ones, and the debug datasets written."""

    identical: bool
    original: list[float]
    reproduced: list[float]
    debug_datasets: list[str]


def _pipetask() -> str:
    local = Path(sys.executable).with_name("pipetask")
    return str(local) if local.exists() else "pipetask"


def run_plan(plan: ReproducePlan, echo=log.info) -> ReproduceResult:
    """Run the plan's ``pipetask run`` (each line it prints passed to ``echo``), then compare the value."""
    cmd = plan.command(_pipetask())
    echo(f"running: {plan.command_line()}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    for line in proc.stdout:  # pipetask's own progress lines, as they come
        tail = (tail + [line.rstrip()])[-20:]
        echo(f"pipetask: {line.rstrip()}")
    if proc.wait() != 0:
        raise SurveyQAError(f"pipetask run failed (exit code {proc.returncode}): {tail[-1] if tail else ''}",
                            "its last lines: " + " | ".join(tail[-5:]))
    return compare_reproduced(plan)


_ORDER = ("level", "band", "physical_filter", "tract", "patch", "visit", "detector", "column")


def _sorted(table):
    return table.sort_by([(k, "ascending") for k in _ORDER if k in table.column_names])


def compare_reproduced(plan: ReproducePlan) -> ReproduceResult:
    """The value in the plan's output beside the original: identical means every matched row's value
    has the same bits (NaN equal to NaN)."""
    from surveyqa.butler.repo import open_repo

    butler = open_repo(plan.repo)
    original = locate_value(butler, plan.collection, plan.metric, plan.where)
    new_refs = butler.query_datasets(original.ref.datasetType.name, collections=plan.output, explain=False,
                                     data_id=original.ref.dataId)
    if not new_refs:
        raise SurveyQAError(f"the run into {plan.output!r} wrote no {original.ref.datasetType.name}")
    new = filter_values(butler.get(new_refs[0]), plan.metric, plan.where)
    a, b = (_sorted(t).column("value").to_numpy(zero_copy_only=False).astype(np.float64) for t in (original.rows, new))
    identical = a.shape == b.shape and bool(np.array_equal(a.view(np.int64), b.view(np.int64)))
    debug = sorted({f"{r.datasetType.name} {' '.join(f'{k}={v}' for k, v in r.dataId.required.items())}"
                    for r in butler.query_all_datasets(plan.output, limit=None)
                    if "_debug_" in r.datasetType.name})
    return ReproduceResult(identical, a.tolist(), b.tolist(), debug)
