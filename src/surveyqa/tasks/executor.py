"""Run the QA pipeline in-process (`surveyqa run`), quantum by quantum, without stopping on failures.

Builds the quantum graph with `SimplePipelineExecutor`, then executes each quantum with
`SingleQuantumExecutor` itself, so that a failed quantum (a detector outside the reference
catalog) is recorded and its descendants are skipped while every other quantum still runs,
as ``pipetask run`` does. With ``jobs > 1`` the quanta of each generation of the graph run in
forked worker processes (no re-import of the stack per quantum). Every quantum's status, with
the exception of a failed one, is written to the run as ``qaQuantumStatus``, and every metric
value the quanta wrote, in one table, as ``qaMetricValues`` (readers then open one file, not
one per quantum).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from surveyqa.butler.repo import check_collection, open_repo, register_dataset_types
from surveyqa.errors import SurveyQAError

__all__ = ["run_qa", "QARunResult", "QuantumStatus", "STATUS_SCHEMA"]

log = logging.getLogger(__name__)

STATUS_SCHEMA = pa.schema([
    ("label", pa.string()), ("quantum_id", pa.string()), ("status", pa.string()), ("instrument", pa.string()),
    ("visit", pa.int64()), ("detector", pa.int64()), ("skymap", pa.string()), ("tract", pa.int64()),
    ("data_id", pa.string()), ("exception_type", pa.string()), ("message", pa.string()),
    ("traceback", pa.string()), ("seconds", pa.float64()),
])


@dataclass
class QuantumStatus:
    """Outcome of one quantum: ``success``, ``failed`` (with its exception) or ``blocked`` (upstream failed)."""

    label: str
    quantum_id: str
    status: str
    data_id: dict
    exception_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    seconds: float = 0.0


@dataclass
class QARunResult:
    """What `run_qa` did: the output collection and run, every quantum's status, timings (s)."""

    repo: str
    output: str
    run: str
    statuses: list[QuantumStatus] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[QuantumStatus]:
        return [s for s in self.statuses if s.status != "success"]


# Worker-process state (set in the parent before forking, or by the pool initializer).
_STATE: dict = {}


def _init_worker(repo: str, output: str, run: str) -> None:
    from lsst.daf.butler import Butler
    from lsst.pipe.base.single_quantum_executor import SingleQuantumExecutor
    from lsst.pipe.base.taskFactory import TaskFactory

    butler = Butler.from_config(repo, writeable=True, collections=[output], run=run)
    _STATE["executor"] = SingleQuantumExecutor(butler=butler, task_factory=TaskFactory())


def _execute(quantum_id) -> QuantumStatus:
    nodes = _STATE["nodes"]
    node = nodes[quantum_id]
    data_id = {k: node["quantum"].dataId[k] for k in node["quantum"].dataId.required.keys()} \
        if node["quantum"].dataId is not None else {}
    label = node["pipeline_node"].label
    t = time.perf_counter()
    try:
        _STATE["executor"].execute(node["pipeline_node"], node["quantum"], quantum_id)
    except Exception as exc:  # a failed quantum is recorded, never fatal to the run
        return QuantumStatus(label, str(quantum_id), "failed", data_id, type(exc).__name__, str(exc),
                             traceback.format_exc(), time.perf_counter() - t)
    return QuantumStatus(label, str(quantum_id), "success", data_id, seconds=time.perf_counter() - t)


def run_qa(repo: str | Path, inputs: str | list[str], output: str, jobs: int = 1, pipeline: str | Path | None = None,
           where: str = "", progress: Callable[[QuantumStatus, int, int], None] | None = None) -> QARunResult:
    """Run the QA pipeline over a repository and write its outputs back into it.

    Parameters
    ----------
    repo : path-like
        Butler repository root.
    inputs : str or list of str
        Input collection(s) holding the DRP outputs (``sim`` for `surveyqa sim`).
    output : str
        New CHAINED output collection (like ``pipetask run -o``): its RUN is ``{output}/{timestamp}``.
    jobs : int
        Worker processes for independent quanta.
    pipeline : path-like, optional
        Pipeline YAML (default: `surveyqa.tasks.PIPELINE`).
    where : str
        Data ID query constraining the quanta (``"visit IN (101001, 101002)"``).
    progress : callable, optional
        ``progress(status, done, total)`` after each quantum.

    Returns
    -------
    QARunResult

    Raises
    ------
    SurveyQAError
        Not a repository, unknown input collection, output collection already there, or nothing to do.
    """
    import networkx as nx
    from lsst.pipe.base import Instrument
    from lsst.pipe.base.simple_pipeline_executor import SimplePipelineExecutor
    from lsst.pipe.base.single_quantum_executor import SingleQuantumExecutor
    from lsst.pipe.base.taskFactory import TaskFactory

    from surveyqa.tasks import PIPELINE

    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    if jobs < 1:
        raise SurveyQAError(f"jobs must be at least 1, not {jobs}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    probe = open_repo(repo)
    for name in inputs:
        check_collection(probe, name)
    if output in set(probe.collections.query("*")):
        raise SurveyQAError(f"output collection {output!r} already exists", "choose a new name, e.g. qa/run2")
    pipeline = str(pipeline or PIPELINE)
    if not Path(pipeline).is_file():
        raise SurveyQAError(f"pipeline file {pipeline} does not exist")
    run = f"{output}/{Instrument.makeCollectionTimestamp()}"
    butler = SimplePipelineExecutor.prep_butler(str(repo), inputs, output, run)
    register_dataset_types(butler, ["qaQuantumStatus", "qaMetricValues"])
    try:
        spe = SimplePipelineExecutor.from_pipeline_filename(pipeline, where=where, butler=butler)
    except Exception as exc:
        _undo(butler, output, run)
        raise SurveyQAError(f"cannot build the quantum graph: {str(exc).splitlines()[0]}",
                            "check that the input collection holds sourceTable_visit and objectTable_tract") from exc
    predicted = spe.predicted
    if len(predicted) == 0:
        _undo(butler, output, run)
        raise SurveyQAError(f"nothing to do: no quanta for collection(s) {', '.join(inputs)}",
                            "the QA needs sourceTable_visit, ccdVisitTable and objectTable_tract datasets")
    timings["graph"] = time.perf_counter() - t0
    t = time.perf_counter()
    predicted.pipeline_graph.register_dataset_types(butler)
    predicted.write_configs(butler, compare_existing=False)
    predicted.write_init_outputs(butler, skip_existing=False)
    predicted.write_packages(butler, compare_existing=False)
    predicted.build_execution_quanta()
    xgraph = predicted.quantum_only_xgraph
    _STATE["nodes"] = xgraph.nodes
    _STATE["executor"] = SingleQuantumExecutor(butler=butler, task_factory=TaskFactory())
    timings["init"] = time.perf_counter() - t

    result = QARunResult(str(repo), output, run, timings=timings)
    bad: set = set()
    total, done = len(predicted), 0
    t = time.perf_counter()
    for generation in nx.topological_generations(xgraph):
        ready = []
        for qid in generation:
            if any(p in bad for p in xgraph.predecessors(qid)):
                bad.add(qid)
                node = xgraph.nodes[qid]
                status = QuantumStatus(node["pipeline_node"].label, str(qid), "blocked", dict(node["quantum"].dataId.required),
                                       message="an upstream quantum failed")
                result.statuses.append(status)
                done += 1
                if progress:
                    progress(status, done, total)
            else:
                ready.append(qid)
        if jobs > 1 and len(ready) > 1:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(jobs, initializer=_init_worker, initargs=(str(repo), output, run)) as pool:
                outcomes = pool.imap_unordered(_execute, ready)
                done = _collect(outcomes, result, bad, progress, done, total)
            butler.registry.refresh()
        else:
            done = _collect(map(_execute, ready), result, bad, progress, done, total)
    timings["execute"] = time.perf_counter() - t
    t = time.perf_counter()
    _write_metric_table(str(repo), butler, run)
    timings["metric_table"] = time.perf_counter() - t
    _write_status(butler, run, result.statuses)
    timings["total"] = time.perf_counter() - t0
    _STATE.clear()
    return result


def _collect(outcomes, result, bad, progress, done, total) -> int:
    import uuid

    for status in outcomes:
        if status.status != "success":
            bad.add(uuid.UUID(status.quantum_id))
        result.statuses.append(status)
        done += 1
        if progress:
            progress(status, done, total)
    return done


def _undo(butler, output: str, run: str) -> None:
    """Remove the collections made for a run that could not start (nothing is left behind)."""
    try:
        butler.registry.removeCollection(output)
        butler.removeRuns([run], unstore=True)
    except Exception as exc:  # best effort: report, but keep the original error
        log.warning("could not remove %s / %s: %s", output, run, exc)


def _write_metric_table(repo: str, butler, run: str) -> None:
    """Put the union of the run's per-quantum metric-value tables into the run as ``qaMetricValues``.

    The dashboard's quick look reads every metric value of a run; at 100 tracts they lie in
    12,100 files (one per visit, tract and detector quantum), which took 3-5 s to find and read.
    Written after the quanta rather than by a PipelineTask: such a task would wait on every
    quantum, so one failed detector would block it.
    """
    from surveyqa.butler.reader import QARepository
    from surveyqa.tasks.values import METRIC_VALUE_SCHEMA

    butler.registry.refresh()
    values = QARepository(repo, run).metric_values()
    table = pa.Table.from_pandas(values[METRIC_VALUE_SCHEMA.names], schema=METRIC_VALUE_SCHEMA, preserve_index=False)
    butler.put(table, "qaMetricValues", {}, run=run)


def _write_status(butler, run: str, statuses: list[QuantumStatus]) -> None:
    rows = []
    for s in statuses:
        d = asdict(s)
        data_id = d.pop("data_id")
        rows.append({**d, "instrument": data_id.get("instrument"), "visit": data_id.get("visit"),
                     "detector": data_id.get("detector"), "skymap": data_id.get("skymap"),
                     "tract": data_id.get("tract"),
                     "data_id": ", ".join(f"{k}={v}" for k, v in data_id.items())})
    table = pa.Table.from_pylist(rows, schema=STATUS_SCHEMA)
    butler.put(table, "qaQuantumStatus", {}, run=run)
