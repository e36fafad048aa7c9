"""Collectors: what a Butler repository, a pipetask JSON file or a JSON-lines stream holds, as sources
of `LogRecord` and `Execution` objects.

Each source is read whole before anything of it is stored: one that cannot be read (a corrupt or
truncated file) comes back as a `BadSource` naming its location, and the others go on. A
repository's sources are its ``<label>_log`` datasets (ButlerLogRecords, as
`lsst.pipe.base.log_capture` writes them: the records, and in ``extra`` the exception of a failed
attempt), its ``qaQuantumStatus`` (what ``surveyqa run`` knew of every quantum, blocked ones
included) and, where ``butler ingest-graph`` made one, its ``run_provenance`` (status and
exception per attempt).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .records import Execution, LogRecord, parse_label, to_epoch

__all__ = ["Source", "BadSource", "RepoContents", "repo_contents", "read_file_source", "records_from_butler"]

log = logging.getLogger(__name__)


@dataclass
class Source:
    """One unit of ingest: stored whole or not at all."""

    key: str
    kind: str
    location: str
    records: list[LogRecord] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    offset: int = 0
    digest: str | None = None
    replace: bool = False


@dataclass
class BadSource:
    """A source that could not be read: where, and why."""

    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class RepoContents:
    """The RUN collections behind a collection (with their state) and the sources still to read."""

    runs: dict[str, str | None]
    sources: Iterator[Source | BadSource]
    n_new: int


def records_from_butler(records, run: str | None = None, task: str | None = None,
                        data_id: dict | None = None) -> list[LogRecord]:
    """`LogRecord` objects from `lsst.daf.butler.ButlerLogRecord` ones; run, task and data ID from
    their MDC (``RUN``, ``LABEL``) unless given."""
    out = []
    for r in records:
        mdc = r.MDC or {}
        label_task, label_data_id = parse_label(mdc.get("LABEL"))
        traceback = r.exc_info or None
        out.append(LogRecord(run=run or mdc.get("RUN") or None, task=task or label_task,
                             data_id=data_id if data_id is not None else label_data_id, time=r.asctime.timestamp(),
                             levelno=r.levelno, logger=r.name, message=r.message, host=mdc.get("HOST"),
                             process=r.process, process_name=r.processName, thread=mdc.get("THREAD"),
                             exc_type=_exc_type(traceback), traceback=traceback))
    return out


def _exc_type(traceback: str | None) -> str | None:
    """The exception class of a formatted traceback (its last line, ``ValueError: ...``)."""
    if not traceback:
        return None
    last = [line for line in traceback.strip().splitlines() if line and not line.startswith(" ")]
    return last[-1].split(":", 1)[0].strip() if last else None


# --- a Butler repository -------------------------------------------------------------------------


def repo_contents(repo: str, collection: str, known: set[str]) -> RepoContents:
    """What ``collection`` of ``repo`` holds that is not in ``known`` (source keys already stored).

    Raises
    ------
    SurveyQAError
        Not a repository, or no such collection.
    """
    from lsst.daf.butler import CollectionType

    from surveyqa.butler.repo import check_collection, open_repo
    from surveyqa.tasks import runstate

    butler = open_repo(repo)
    check_collection(butler, collection)
    infos = butler.collections.query_info(collection, flatten_chains=True, include_doc=True)
    runs = {i.name: _state(i.doc, runstate) for i in infos if i.type == CollectionType.RUN}
    types = {t.name: t for t in butler.registry.queryDatasetTypes()}
    refs = []
    for name, dataset_type in sorted(types.items()):
        if name.endswith("_log") and dataset_type.storageClass_name == "ButlerLogRecords":
            kind = "butler_log"
        elif name == "qaQuantumStatus":
            kind = "qa_status"
        elif name == "run_provenance":
            kind = "run_provenance"
        else:
            continue
        found = butler.query_datasets(name, collections=collection, find_first=False, explain=False, limit=None)
        refs += [(kind, ref) for ref in found if f"dataset:{ref.id}" not in known]
    # statuses last: a quantum's log (with its exception) first, then what the executor knew of it
    refs.sort(key=lambda item: item[0] == "qa_status")
    return RepoContents(runs, (_read_ref(butler, kind, ref) for kind, ref in refs), len(refs))


def _state(doc: str | None, runstate) -> str | None:
    if doc == runstate.IN_PROGRESS:
        return "in progress"
    if doc == runstate.COMPLETE:
        return "complete"
    return None


def _read_ref(butler, kind: str, ref) -> Source | BadSource:
    key = f"dataset:{ref.id}"
    try:
        uri = butler.getURI(ref)
        location = uri.ospath if uri.scheme == "file" else str(uri)
    except Exception as exc:  # a dataset without its file: reported, the others go on
        return BadSource(f"{ref.datasetType.name} {ref.dataId} in {ref.run}", f"{type(exc).__name__}: {exc}")
    try:
        if kind == "butler_log":
            return _from_log_dataset(butler.get(ref), ref, key, location)
        if kind == "qa_status":
            return _from_status_table(butler.get(ref), ref, key, location)
        return _from_provenance(butler.get(ref), ref, key, location)
    except Exception as exc:  # corrupt or truncated JSON, an unreadable table: reported, the others go on
        message = str(exc).strip().splitlines()
        return BadSource(location, f"{type(exc).__name__}: {message[0] if message else ''}")


def _data_id_of(ref) -> dict:
    return {k: ref.dataId[k] for k in ref.dataId.required.keys()}


def _from_log_dataset(records, ref, key: str, location: str) -> Source:
    task = ref.datasetType.name[: -len("_log")]
    data_id = _data_id_of(ref)
    out = records_from_butler(records, run=ref.run, task=task, data_id=data_id)
    exception = (records.extra or {}).get("exception")
    errors = [r for r in out if r.levelno >= logging.ERROR]
    traceback = next((r.traceback for r in reversed(errors) if r.traceback), None)
    times = [r.time for r in out]
    execution = Execution(run=ref.run, task=task, data_id=data_id, status="failed" if exception else "success",
                          exc_type=exception.get("type_name") if exception else None,
                          message=exception.get("message") if exception else None, traceback=traceback,
                          start=min(times) if times else None, end=max(times) if times else None)
    for r in errors:  # the executor's ERROR line names the exception; keep its type on the record
        if r.exc_type is None and exception:
            r.exc_type = exception.get("type_name")
    return Source(key, "butler_log", location, out, [execution])


def _from_status_table(table, ref, key: str, location: str) -> Source:
    executions = []
    for row in table.to_pylist():
        data_id = _parse_text_data_id(row.get("data_id") or "")
        executions.append(Execution(run=ref.run, task=row["label"], data_id=data_id, status=row["status"],
                                    exc_type=row.get("exception_type"), message=row.get("message"),
                                    traceback=row.get("traceback")))
    return Source(key, "qa_status", location, [], executions)


def _parse_text_data_id(text: str) -> dict:
    """``instrument=HSC, visit=1228`` (as qaQuantumStatus writes it) as a dict."""
    out = {}
    for item in text.replace(",", " ").split():
        if "=" in item:
            k, v = item.split("=", 1)
            out[k] = int(v) if v.lstrip("-").isdigit() else v
    return out


def _from_provenance(graph, ref, key: str, location: str) -> Source:
    """Executions from a ``run_provenance`` graph (`lsst.pipe.base.quantum_graph.ProvenanceQuantumGraph`):
    every quantum that did not simply succeed, with the exception of its last attempt."""
    report = graph.make_status_report()
    executions = []
    for task, by_status in report.root.items():
        for status, by_exception in by_status.items():
            for reports in by_exception.values():
                for quantum in reports:
                    last = quantum.attempts[-1] if quantum.attempts else None
                    exc = last.exception if last is not None else None
                    executions.append(Execution(run=ref.run, task=task, data_id=dict(quantum.data_id),
                                                status="failed" if status == "FAILED" else status.lower(),
                                                exc_type=exc.type_name if exc else None,
                                                message=exc.message if exc else None))
    return Source(key, "run_provenance", location, [], executions)


# --- files -----------------------------------------------------------------------------------------

#: The delimiter after which a streamed ButlerLogRecords file holds its "extra" JSON.
_EXTRA = "###EXTRA###"


def read_file_source(path: str | Path, offset: int = 0, digest: str | None = None,
                     follow: bool = False) -> Source | BadSource | None:
    """The new content of a log file since ``offset`` bytes, or None when there is none.

    A file that is one JSON document (pipetask ``--summary``, a ButlerLogRecords model) is read
    again whole when its digest changed. Otherwise it is JSON lines (pipetask ``--log-file``,
    any JSON-lines stream): only complete lines after ``offset`` are read; with ``follow`` an
    unfinished last line is left for later, without it the file is truncated and is reported.
    """
    path = Path(path)
    location = str(path.resolve())
    key = f"file:{location}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return BadSource(location, exc.strerror or str(exc))
    new_digest = hashlib.sha1(data).hexdigest()
    if offset and digest == new_digest:
        return None
    head = data.lstrip()[:1]
    whole = None
    if head in (b"{", b"[") and (offset == 0 or digest is not None):
        try:
            whole = json.loads(data)
        except ValueError:
            whole = None
        if isinstance(whole, dict) and not _is_line_record(whole):
            try:
                return _from_document(whole, key, location, len(data), new_digest)
            except (ValueError, KeyError, TypeError) as exc:
                return BadSource(location, f"not a pipetask summary or log file: {str(exc).splitlines()[0]}")
    if len(data) < offset:
        return BadSource(location, f"file is shorter ({len(data)} bytes) than what was stored ({offset}): "
                                   "it was replaced; ingest it into a new database or under another name")
    return _from_lines(data, offset, key, location, follow)


def _is_line_record(obj: dict) -> bool:
    return "message" in obj or "msg" in obj


def _from_document(doc: dict, key: str, location: str, size: int, digest: str) -> Source:
    if "quantaReports" in doc:
        from lsst.pipe.base.quantum_reports import Report

        report = Report.model_validate(doc)
        executions = [_from_quantum_report(q) for q in report.quantaReports]
        return Source(key, "pipetask_summary", location, [], executions, offset=size, digest=digest, replace=True)
    if "records" in doc:
        from lsst.daf.butler.logging import ButlerLogRecords

        records = ButlerLogRecords.from_raw(json.dumps(doc))
        return Source(key, "butler_log_file", location, records_from_butler(records), [], offset=size,
                      digest=digest, replace=True)
    raise ValueError("neither quantaReports nor records in it")


_STATUS = {"success": "success", "failure": "failed", "timeout": "timeout", "skipped": "skipped"}


def _from_quantum_report(q) -> Execution:
    info = q.exceptionInfo
    return Execution(run=None, task=q.taskLabel or "", data_id=dict(q.dataId), status=_STATUS.get(q.status.value,
                     q.status.value), exit_code=q.exitCode, exc_type=info.className if info else None,
                     message=info.message if info else None)


def _from_lines(data: bytes, offset: int, key: str, location: str, follow: bool) -> Source | BadSource | None:
    from lsst.daf.butler.logging import ButlerLogRecord

    chunk = data[offset:]
    end = chunk.rfind(b"\n") + 1
    if end < len(chunk) and chunk[end:].strip():
        if not follow:
            n = data[:offset].count(b"\n") + chunk.count(b"\n") + 1
            return BadSource(f"{location}:{n}", "truncated: the last line is incomplete")
        chunk = chunk[:end]  # the writer is still writing it
    else:
        end = len(chunk)
    if not chunk.strip():
        return None
    records = []
    first_line = data[:offset].count(b"\n") + 1
    for i, raw in enumerate(chunk.split(b"\n")):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(_EXTRA.encode()):
            break  # a streamed ButlerLogRecords file: what follows is not records
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            if "levelno" in obj and "MDC" in obj and "asctime" in obj:
                records += records_from_butler([ButlerLogRecord.model_validate(obj)])
            else:
                records.append(_generic_record(obj))
        except Exception as exc:  # any bad line: the whole new part is reported and left out
            reason = str(exc).strip().splitlines()
            return BadSource(f"{location}:{first_line + i}", f"{type(exc).__name__}: {reason[0] if reason else ''}")
    return Source(key, "json_lines", location, records, [], offset=offset + end, digest=None)


def _generic_record(obj: dict) -> LogRecord:
    """A record of a JSON-lines stream from outside the Butler: the field names are documented in docs/logs.md."""
    from .records import level_number

    time_value = next((obj[k] for k in ("time", "timestamp", "asctime", "created") if obj.get(k) is not None), None)
    if time_value is None:
        raise ValueError("no time (time, timestamp, asctime or created)")
    level = next((obj[k] for k in ("levelno", "level", "levelname") if obj.get(k) is not None), None)
    if level is None:
        raise ValueError("no level (levelno, level or levelname)")
    message = obj.get("message", obj.get("msg"))
    if message is None:
        raise ValueError("no message")
    task, data_id = parse_label(obj.get("label")) if obj.get("label") else (obj.get("task"), {})
    given = obj.get("data_id", obj.get("dataId"))
    if isinstance(given, dict):
        data_id = given
    elif isinstance(given, str):
        data_id = _parse_text_data_id(given)
    traceback = obj.get("traceback") or obj.get("exc_info")
    process = obj.get("process", obj.get("pid"))
    return LogRecord(run=obj.get("run"), task=task, data_id=data_id, time=to_epoch(time_value),
                     levelno=level_number(level), logger=str(obj.get("logger", obj.get("name", ""))),
                     message=str(message), host=obj.get("host", obj.get("hostname")),
                     process=int(process) if process is not None else None,
                     process_name=obj.get("processName", obj.get("process_name")),
                     thread=str(obj["thread"]) if obj.get("thread") is not None else obj.get("threadName"),
                     exc_type=obj.get("exc_type", obj.get("exception")) or _exc_type(traceback), traceback=traceback)
