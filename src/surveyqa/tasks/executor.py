"""Run the QA pipeline in-process (`surveyqa run`), quantum by quantum, without stopping on failures.

Builds the quantum graph with pipe_base's `AllDimensionsQuantumGraphBuilder`, then executes each
quantum with `SingleQuantumExecutor` itself, so that a failed quantum (a detector outside the
reference catalog, an unreadable input file) is recorded and the quanta that needed its outputs
are blocked while every other quantum still runs, as ``pipetask run`` does. A quantum whose
failed inputs were all optional (``multiple=True`` connections with enough inputs left, like the
manifest's) still runs. With ``jobs > 1`` the quanta of each generation of the graph run in
forked worker processes (no re-import of the stack per quantum), which die with the parent.

Before the graph is built, tasks whose required inputs are not in the input collections are
switched off (`switch_off_missing`) rather than failing the build. After the quanta, the
manifest is completed with what failed, was blocked or was switched off, every metric value is
written in one table (``qaMetricValues``) and, last, every quantum's status (``qaQuantumStatus``):
its presence marks the run complete (`surveyqa.tasks.runstate.run_state`). A partial run can be
resumed (``resume=True``: quanta whose outputs exist are skipped) or replaced. A full disk stops
the run, with the files it wrote but could not register removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from surveyqa.butler.repo import check_collection, open_repo, register_dataset_types
from surveyqa.errors import InsufficientDataError, SurveyQAError
from surveyqa.tasks import runstate

__all__ = ["run_qa", "QARunResult", "QuantumStatus", "STATUS_SCHEMA", "switch_off_missing"]

log = logging.getLogger(__name__)

STATUS_SCHEMA = pa.schema([
    ("label", pa.string()), ("quantum_id", pa.string()), ("status", pa.string()), ("instrument", pa.string()),
    ("visit", pa.int64()), ("detector", pa.int64()), ("skymap", pa.string()), ("tract", pa.int64()),
    ("data_id", pa.string()), ("exception_type", pa.string()), ("message", pa.string()),
    ("traceback", pa.string()), ("seconds", pa.float64()),
])

_RESUME_HINT = ("`surveyqa run {repo} --output {output} --resume` finishes it; `--replace` starts it again; "
                "`surveyqa run --remove {repo} --output {output}` removes it")


@dataclass
class QuantumStatus:
    """Outcome of one quantum: ``success``, ``failed`` (with its exception) or ``blocked`` (upstream failed).

    ``kind`` tells a failure's nature: ``finding`` (the data cannot give the metric, e.g. a detector
    the reference catalog does not cover: QA reporting on the data), ``disk_full``, or ``error``.
    """

    label: str
    quantum_id: str
    status: str
    data_id: dict
    exception_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    kind: str | None = None


@dataclass
class QARunResult:
    """What `run_qa` did: the output collection and run, every quantum's status, timings (s), and the
    tasks switched off for want of an input (``{label: reason}``)."""

    repo: str
    output: str
    run: str
    statuses: list[QuantumStatus] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    switched_off: dict[str, str] = field(default_factory=dict)
    resumed: bool = False

    @property
    def failed(self) -> list[QuantumStatus]:
        """Quanta that failed or were blocked."""
        return [s for s in self.statuses if s.status != "success"]

    @property
    def errors(self) -> list[QuantumStatus]:
        """Failed quanta other than findings: what makes ``surveyqa run`` exit with code 1."""
        return [s for s in self.statuses if s.status == "failed" and s.kind != "finding"]


# Worker-process state (set in the parent before forking, or by the pool initializer).
_STATE: dict = {}


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:  # the parent died before the prctl call
        os._exit(1)


def _init_worker(repo: str, output: str, run: str, resume: bool, parent_pid: int) -> None:
    from lsst.daf.butler import Butler

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited by the fork
    _die_with_parent(parent_pid)
    butler = Butler.from_config(repo, writeable=True, collections=[output], run=run)
    _STATE["executor"] = _single_executor(butler, run, resume)


class _TracebackInLog(logging.Filter):
    """Put the traceback on the executor's "Execution of task ... failed" record, which it logs inside its
    ``except``: the quantum's ``<label>_log`` dataset then holds it (pipetask has it only in ``--log-file``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info is None and sys.exc_info()[0] is not None:
            record.exc_info = sys.exc_info()
        return True


def _keep_tracebacks() -> None:
    executor_log = logging.getLogger("lsst.pipe.base.single_quantum_executor")
    if not any(isinstance(f, _TracebackInLog) for f in executor_log.filters):
        executor_log.addFilter(_TracebackInLog())


def _single_executor(butler, run: str, resume: bool):
    from lsst.pipe.base.single_quantum_executor import SingleQuantumExecutor
    from lsst.pipe.base.taskFactory import TaskFactory

    _keep_tracebacks()
    if resume:  # skip quanta that finished; clear the partial outputs of those that did not
        return SingleQuantumExecutor(butler=butler, task_factory=TaskFactory(), skip_existing_in=[run],
                                     clobber_outputs=True)
    return SingleQuantumExecutor(butler=butler, task_factory=TaskFactory())


def _data_id(node) -> dict:
    data_id = node["quantum"].dataId
    return {k: data_id[k] for k in data_id.required.keys()} if data_id is not None else {}


def _execute(quantum_id) -> QuantumStatus:
    node = _STATE["nodes"][quantum_id]
    label = node["pipeline_node"].label
    t = time.perf_counter()
    try:
        _STATE["executor"].execute(node["pipeline_node"], node["quantum"], quantum_id)
    except Exception as exc:  # a failed quantum is recorded, never fatal to the run
        return QuantumStatus(label, str(quantum_id), "failed", _data_id(node), type(exc).__name__, _describe(exc),
                             traceback.format_exc(), time.perf_counter() - t, kind=_kind(exc))
    return QuantumStatus(label, str(quantum_id), "success", _data_id(node), seconds=time.perf_counter() - t)


_FORMATTER_FAILURE = re.compile(r"Failure from formatter '[^']*' for dataset \S+ \((\S+) from file://(\S+)\): (.*)",
                                re.S)
_SIZE_MISMATCH = re.compile(r"Size of file file://(\S+) \((\d+)\) does not match size recorded in registry of (\d+)")


def _describe(exc: BaseException) -> str:
    """An exception's message, with an unreadable file named plainly (the Butler's wording is long)."""
    message = str(exc)
    if m := _FORMATTER_FAILURE.search(message):
        return f"cannot read {m.group(1).split('.')[0]} file {m.group(2)}: {m.group(3).splitlines()[0]}"
    if m := _SIZE_MISMATCH.search(message):
        return (f"cannot read file {m.group(1)}: {m.group(2)} bytes on disk, {m.group(3)} recorded in the registry "
                "(overwritten or truncated)")
    return message


def _kind(exc: BaseException) -> str:
    from surveyqa.tasks.compute import NoReferenceObjectsError

    if runstate.is_disk_full(exc):
        return "disk_full"
    return "finding" if isinstance(exc, (NoReferenceObjectsError, InsufficientDataError)) else "error"


def switch_off_missing(pipeline, butler, inputs: list[str]) -> dict[str, str]:
    """Remove from ``pipeline`` the tasks whose required inputs are not there, and say why.

    A required input is a regular or prerequisite connection with ``minimum >= 1``. It is missing
    when no other task of the pipeline writes it and its dataset type is not registered or has
    no dataset in ``inputs``. Tasks that need the outputs of a task switched off go too.

    Parameters
    ----------
    pipeline : lsst.pipe.base.Pipeline
        Modified in place.
    butler : lsst.daf.butler.Butler
    inputs : list of str
        Input collections.

    Returns
    -------
    dict
        ``{label: reason}``, the reason naming the dataset type and the metrics not measured.
    """
    from lsst.daf.butler import MissingDatasetTypeError

    from surveyqa.tasks.manifest import TASK_METRICS

    graph = pipeline.to_graph()
    connections = {label: node.get_connections() for label, node in graph.tasks.items()}
    outputs = {label: [getattr(c, n).name for n in sorted(c.outputs)] for label, c in connections.items()}
    producer = {name: label for label, names in outputs.items() for name in names}
    present: dict[str, bool] = {}

    def in_inputs(name: str) -> bool:
        if name not in present:
            try:
                present[name] = bool(butler.query_datasets(name, collections=inputs, limit=1, explain=False))
            except MissingDatasetTypeError:
                present[name] = False
        return present[name]

    switched: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for label, c in connections.items():
            if label in switched:
                continue
            for name in sorted(c.inputs | c.prerequisiteInputs):
                conn = getattr(c, name)
                if getattr(conn, "minimum", 1) == 0:
                    continue
                if conn.name in producer:
                    if producer[conn.name] not in switched:
                        continue
                    why = f"{producer[conn.name]} is switched off, so no {conn.name}"
                elif not in_inputs(conn.name):
                    why = f"no {conn.name} in the inputs"
                else:
                    continue
                lost = TASK_METRICS.get(label)
                switched[label] = (f"{why}: {', '.join(lost)} not measured" if lost
                                   else f"{why}: {', '.join(outputs[label])} not written")
                changed = True
                break
    for label in switched:
        pipeline.removeTask(label)
    return switched


@contextlib.contextmanager
def _interrupts_raised():
    """SIGTERM, like SIGINT, raises KeyboardInterrupt in the main thread, so that leaving the pool's
    ``with`` terminates its workers; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_qa(repo: str | Path, inputs: str | list[str] | None, output: str, jobs: int = 1,
           pipeline: str | Path | None = None, where: str = "",
           progress: Callable[[QuantumStatus, int, int], None] | None = None, resume: bool = False,
           replace: bool = False) -> QARunResult:
    """Run the QA pipeline over a repository and write its outputs back into it.

    Parameters
    ----------
    repo : path-like
        Butler repository root.
    inputs : str or list of str
        Input collection(s) holding the DRP outputs (``sim`` for `surveyqa sim`); with ``resume``,
        None takes those of the run resumed.
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
    resume : bool
        Finish the partial run in ``output``: same RUN, quanta whose outputs exist are skipped.
    replace : bool
        Remove ``output`` (collections and files) first, if it exists.

    Returns
    -------
    QARunResult

    Raises
    ------
    SurveyQAError
        Not a repository, not writable, unknown input collection, output collection already there,
        nothing to do, a full disk (the run is then partial), or an interruption (`runstate.RunInterrupted`).
    """
    from lsst.pipe.base import Instrument, Pipeline

    from surveyqa.tasks import PIPELINE_REFCAT as PIPELINE

    if jobs < 1:
        raise SurveyQAError(f"jobs must be at least 1, not {jobs}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    probe = open_repo(repo)
    runstate.check_writable(repo)
    exists = output in set(probe.collections.query("*"))
    if exists and replace:
        runstate.remove_output(repo, output)
        probe.registry.refresh()
        exists = False
    if exists and not resume:
        try:
            state = runstate.run_state(probe, output)
        except SurveyQAError:
            state = "not a QA"
        raise SurveyQAError(f"output collection {output!r} already exists ({state} run)",
                            _RESUME_HINT.format(repo=repo, output=output) if state == "partial"
                            else f"choose a new name, e.g. qa/run2, or --replace to run {output} again")
    if resume:
        if not exists:
            raise SurveyQAError(f"nothing to resume: output collection {output!r} does not exist",
                                "run without --resume")
        run = runstate.find_run(probe, output)
        if runstate.run_state(probe, output) == "complete":
            raise SurveyQAError(f"run {run} in {output!r} is already complete",
                                f"nothing to resume; --replace runs it again")
        chain = list(probe.collections.get_info(output).children)
        inputs = [c for c in chain if c != run]
    else:
        if not inputs:
            raise SurveyQAError("no input collection", "give one with --input, e.g. --input sim")
        run = f"{output}/{Instrument.makeCollectionTimestamp()}"
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    for name in inputs:
        check_collection(probe, name)
    pipeline = str(pipeline or PIPELINE)
    if not Path(pipeline).is_file():
        raise SurveyQAError(f"pipeline file {pipeline} does not exist")
    qa_pipeline = Pipeline.from_uri(pipeline)
    switched_off = switch_off_missing(qa_pipeline, probe, inputs)
    for label, reason in switched_off.items():
        log.info("%s switched off: %s", label, reason)
    if not len(qa_pipeline):
        raise SurveyQAError(f"nothing to do: every task is switched off ({'; '.join(switched_off.values())})",
                            "the QA needs sourceTable_visit, ccdVisitTable and objectTable_tract datasets")
    try:
        return _run(str(repo), inputs, output, run, qa_pipeline, jobs, where, progress, resume, switched_off,
                    timings, t0)
    except KeyboardInterrupt as exc:
        raise runstate.RunInterrupted(f"interrupted ({exc or 'SIGINT'}): run {run} is partial",
                                      _RESUME_HINT.format(repo=repo, output=output)) from None
    except SurveyQAError:
        raise
    except Exception as exc:
        if not runstate.is_disk_full(exc):
            raise
        _disk_full(repo, output, run, exc)


def _disk_full(repo, output: str, run: str, exc: BaseException):
    removed = runstate.remove_unregistered_files(repo, run)
    note = f"; {len(removed)} unregistered files removed" if removed else ""
    raise SurveyQAError(f"disk full while writing run {run} ({_describe(exc).splitlines()[0]}); the run is partial"
                        f"{note}", "free some space, then " + _RESUME_HINT.format(repo=repo, output=output)) from exc


def _run(repo, inputs, output, run, qa_pipeline, jobs, where, progress, resume, switched_off, timings, t0):
    import networkx as nx
    from lsst.daf.butler import Butler
    from lsst.pipe.base.all_dimensions_quantum_graph_builder import AllDimensionsQuantumGraphBuilder
    from lsst.pipe.base.simple_pipeline_executor import SimplePipelineExecutor

    if resume:
        butler = Butler.from_config(repo, writeable=True, collections=[output], run=run)
        runstate.remove_unregistered_files(repo, run, butler=butler)
        for name in ("qaMetricValues", "qaQuantumStatus"):  # written at the end of an attempt killed after it
            refs = butler.query_datasets(name, collections=run, explain=False) \
                if name in {d.name for d in butler.registry.queryDatasetTypes(name)} else []
            butler.pruneDatasets(refs, purge=True, unstore=True, disassociate=True)
    else:
        butler = SimplePipelineExecutor.prep_butler(repo, inputs, output, run)
        butler.registry.setCollectionDocumentation(run, runstate.IN_PROGRESS)
    register_dataset_types(butler, ["qaQuantumStatus", "qaMetricValues"])
    try:
        builder = AllDimensionsQuantumGraphBuilder(qa_pipeline.to_graph(), butler, where=where, output_run=run,
                                                   skip_existing_in=[run] if resume else (), clobber=resume)
        predicted = builder.finish(output=output, attach_datastore_records=False, metadata={
            "skip_existing_in": [run] if resume else [], "skip_existing": resume, "data_query": where}).assemble()
    except Exception as exc:
        if not resume:
            _undo(butler, output, run)
        raise SurveyQAError(f"cannot build the quantum graph: {str(exc).splitlines()[0]}",
                            "check that the input collection holds sourceTable_visit and objectTable_tract") from exc
    if len(predicted) == 0 and not resume:
        _undo(butler, output, run)
        raise SurveyQAError(f"nothing to do: no quanta for collection(s) {', '.join(inputs)}",
                            "the QA needs sourceTable_visit, ccdVisitTable and objectTable_tract datasets")
    timings["graph"] = time.perf_counter() - t0
    t = time.perf_counter()
    predicted.pipeline_graph.register_dataset_types(butler)
    predicted.write_configs(butler, compare_existing=resume)
    predicted.write_init_outputs(butler, skip_existing=resume)
    predicted.write_packages(butler, compare_existing=resume)
    predicted.build_execution_quanta()
    xgraph = predicted.quantum_only_xgraph
    _STATE["nodes"] = xgraph.nodes
    _STATE["executor"] = _single_executor(butler, run, resume)
    timings["init"] = time.perf_counter() - t

    result = QARunResult(repo, output, run, timings=timings, switched_off=switched_off, resumed=resume)
    missing: set[uuid.UUID] = set()  # outputs that failed or blocked quanta did not write
    total = len(predicted)
    t = time.perf_counter()

    def record(status: QuantumStatus) -> None:
        result.statuses.append(status)
        if status.status != "success":
            missing.update(ref.id for refs in xgraph.nodes[uuid.UUID(status.quantum_id)]["quantum"].outputs.values()
                           for ref in refs)
        if progress:
            progress(status, len(result.statuses), total)

    try:
        with _interrupts_raised():
            for generation in nx.topological_generations(xgraph):
                ready = []
                for qid in generation:
                    node = xgraph.nodes[qid]
                    reason = _blocked_by(node, missing)
                    if reason:
                        record(QuantumStatus(node["pipeline_node"].label, str(qid), "blocked", _data_id(node),
                                             message=reason))
                    else:
                        ready.append(qid)
                if jobs > 1 and len(ready) > 1:
                    ctx = multiprocessing.get_context("fork")
                    with ctx.Pool(jobs, initializer=_init_worker,
                                  initargs=(repo, output, run, resume, os.getpid())) as pool:
                        full = _collect(pool.imap_unordered(_execute, ready), record)
                    butler.registry.refresh()
                else:
                    full = _collect(map(_execute, ready), record)
                if full is not None:
                    _disk_full(repo, output, run, _DiskFull(full.message))
        timings["execute"] = time.perf_counter() - t
        t = time.perf_counter()
        _complete_manifest(butler, predicted, xgraph, run, inputs, result)
        _write_metric_table(repo, butler, run)
        timings["metric_table"] = time.perf_counter() - t
        _write_status(butler, run, result.statuses)
        butler.registry.setCollectionDocumentation(run, runstate.COMPLETE)
    finally:
        _STATE.clear()
    timings["total"] = time.perf_counter() - t0
    return result


class _DiskFull(OSError):
    def __init__(self, message: str):
        import errno

        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


def _collect(outcomes, record) -> QuantumStatus | None:
    """Record each outcome; stop at the first full disk (no point going on) and return its status."""
    for status in outcomes:
        record(status)
        if status.kind == "disk_full":
            return status
    return None


_CONNECTIONS: dict = {}


def _blocked_by(node, missing: set) -> str | None:
    """Why a quantum cannot run (an input a failed quantum did not write), or None.

    Inputs of a ``multiple=True`` connection may be missing while at least its ``minimum`` are left.
    """
    quantum = node["quantum"]
    lacking = {dt.name: (len(refs), sum(ref.id in missing for ref in refs)) for dt, refs in quantum.inputs.items()}
    lacking = {name: n for name, n in lacking.items() if n[1]}
    if not lacking:
        return None
    task_node = node["pipeline_node"]
    if task_node.label not in _CONNECTIONS:
        c = task_node.get_connections()
        _CONNECTIONS[task_node.label] = {getattr(c, n).name: getattr(c, n) for n in c.inputs}
    connections = _CONNECTIONS[task_node.label]
    for name, (n_refs, n_missing) in sorted(lacking.items()):
        conn = connections.get(name)
        if conn is None or not conn.multiple or n_refs - n_missing < conn.minimum:
            return f"an upstream quantum failed: no {name} from it"
    return None


def _complete_manifest(butler, predicted, xgraph, run: str, inputs: list[str], result: QARunResult) -> None:
    """Put ``qaManifest`` with what failed, was blocked and was switched off.

    The manifest task (which also runs under ``pipetask``) cannot know about other quanta; the
    manifest it wrote is read, completed and put again under the same dataset ID. When the task
    could not run, the manifest is built here from the metric values that were written.
    """
    from lsst.daf.butler import MissingDatasetTypeError

    from surveyqa.tasks.manifest import build_manifest, complete_manifest, per_row_counts

    ref = next((r for qid in xgraph.nodes for dt, refs in xgraph.nodes[qid]["quantum"].outputs.items()
                if dt.name == "qaManifest" for r in refs), None)
    existing = butler.find_dataset("qaManifest", collections=run) if "qaManifest" in _registered(butler) else None
    if ref is None and existing is None:
        return  # no manifest task in this pipeline
    ref = existing or ref
    if existing is not None:
        manifest = butler.get(existing)
        butler.pruneDatasets([existing], purge=True, unstore=True, disassociate=True)
    else:
        tables = []
        for name in ("qaMetricValues_visit", "qaMetricValues_tract"):
            try:
                refs = butler.query_datasets(name, collections=run, explain=False, limit=None)
            except MissingDatasetTypeError:
                refs = []
            tables += [butler.get(r, parameters={"columns": ["metric", "level", "status", "tract"]}) for r in refs]
        stored = {}
        for name in ("qaMetricRows_visit", "qaMetricRows_tract"):
            try:
                refs = butler.query_datasets(name, collections=run, explain=False, limit=None)
            except MissingDatasetTypeError:
                refs = []
            stored[name] = [butler.get(r, parameters={"columns": ["metric"]}) for r in refs]
        rows = per_row_counts(stored)
        manifest = build_manifest(run, inputs, tables, detector_metrics="qaDetectorReference" not in
                                  result.switched_off, rows=rows)
    manifest = complete_manifest(manifest, result.statuses, result.switched_off)
    butler.put(manifest, ref)


def _registered(butler) -> set[str]:
    return {d.name for d in butler.registry.queryDatasetTypes()}


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
    values = QARepository(repo, run, state=runstate.COMPLETE).metric_values()  # all its quanta are done
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
