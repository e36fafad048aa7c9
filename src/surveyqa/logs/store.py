"""`LogStore`: the Python API of ``surveyqa logs`` — ingest, show, executions that ended badly, failure classes.

The CLI is a thin shell over it. Ingest is incremental: a Butler dataset is stored once (its
UUID is the source key), a growing JSON-lines file from the byte after what was stored; each
source is one transaction, so an ingest killed at any point loses nothing already committed and
leaves nothing half-stored, and running it again goes on from there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from surveyqa.errors import SurveyQAError

from .classify import FailureClass, classify
from .collect import BadSource, Source, read_file_source, repo_contents
from .db import (bulk_load, collection_t, execution_t, key_t, known_sources, open_log_db, origin_t, record_t, run_id, run_t,
                 write_source)
from .query import LogQuery
from .records import level_name

__all__ = ["LogStore", "IngestReport", "default_db_url", "BAD_STATUSES"]

log = logging.getLogger(__name__)

#: An ingest of at least this many new sources, more than are stored, builds the record indexes after its rows.
BULK_SOURCES = 200

#: Execution statuses that mean it ended badly.
BAD_STATUSES = ("failed", "blocked", "timeout")


def default_db_url(target: str | Path) -> str:
    """The log database used when none is given: a SQLite file beside the repository or file
    (never inside a repository, whose every file must be a dataset)."""
    return f"sqlite:///{Path(str(Path(target).resolve()).rstrip('/') + '.logs.sqlite3')}"


@dataclass
class IngestReport:
    """What one ingest did: sources and records stored, sources skipped (already there) and bad ones."""

    sources: int = 0
    records: int = 0
    executions: int = 0
    skipped: int = 0
    bad: list[BadSource] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: IngestReport) -> None:
        self.sources += other.sources
        self.records += other.records
        self.executions += other.executions
        self.skipped += other.skipped
        self.bad += other.bad
        self.seconds += other.seconds


class LogStore:
    """The log database at ``url`` (SQLAlchemy URL; SQLite or PostgreSQL)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = open_log_db(url)

    def close(self) -> None:
        self.engine.dispose()

    # --- ingest ------------------------------------------------------------------------------

    def ingest_repo(self, repo: str | Path, collection: str,
                    progress: Callable[[int, int], None] | None = None) -> IngestReport:
        """Store what ``collection`` of ``repo`` holds that is not stored yet."""
        t0 = time.perf_counter()
        repo = str(Path(repo).resolve())
        with self.engine.connect() as conn:
            known = set(known_sources(conn, "dataset:"))
        contents = repo_contents(repo, collection, known)
        report = IngestReport(skipped=len(known))
        with self.engine.begin() as conn:
            for name, state in contents.runs.items():
                run_id(conn, name, state or "unknown")
            row = {"runs": json.dumps(sorted(contents.runs)), "ingested": time.time()}
            if conn.execute(sa.select(collection_t.c.repo).where(collection_t.c.repo == repo,
                                                                 collection_t.c.collection == collection)).first():
                conn.execute(collection_t.update().where(collection_t.c.repo == repo,
                                                         collection_t.c.collection == collection).values(**row))
            else:
                conn.execute(collection_t.insert().values(repo=repo, collection=collection, **row))
        done = 0
        # many more sources than stored (a first ingest): indexes built once after, not row by row
        bulk = contents.n_new >= BULK_SOURCES and contents.n_new > len(known)
        with bulk_load(self.engine) if bulk else contextlib.nullcontext():
            for source in contents.sources:
                self._store(source, report)
                done += 1
                if progress:
                    progress(done, contents.n_new)
        report.seconds = time.perf_counter() - t0
        return report

    def ingest_file(self, path: str | Path, follow: bool = False) -> IngestReport:
        """Store what is new in a pipetask ``--log-file`` / ``--summary`` JSON or a JSON-lines file."""
        t0 = time.perf_counter()
        path = Path(path)
        if not path.exists():
            raise SurveyQAError(f"no log file {path}")
        key = f"file:{path.resolve()}"
        with self.engine.connect() as conn:
            offset, digest = known_sources(conn, key).get(key, (0, None))
        report = IngestReport()
        source = read_file_source(path, offset, digest, follow=follow)
        if source is None:
            report.skipped += 1
        else:
            self._store(source, report)
        report.seconds = time.perf_counter() - t0
        return report

    def _store(self, source: Source | BadSource, report: IngestReport) -> None:
        if isinstance(source, BadSource):
            log.warning("skipped %s", source)
            report.bad.append(source)
            return
        with self.engine.begin() as conn:
            n = write_source(conn, source.key, source.kind, source.location, source.records, source.executions,
                             offset=source.offset, digest=source.digest, replace=source.replace)
        report.sources += 1
        report.records += n
        report.executions += len(source.executions)

    def follow(self, ingest: Callable[[], IngestReport], done: Callable[[], bool], interval: float = 2.0,
               say: Callable[[IngestReport], None] | None = None, max_seconds: float | None = None) -> IngestReport:
        """Ingest again every ``interval`` s until ``done()`` (the run finished) or Ctrl-C."""
        total = IngestReport()
        started = time.monotonic()
        try:
            while True:
                finished = done()  # asked before the ingest, so that the last one sees everything
                step = ingest()
                total.add(step)
                if say and (step.sources or step.bad):
                    say(step)
                if finished or (max_seconds is not None and time.monotonic() - started > max_seconds):
                    return total
                time.sleep(interval)
        except KeyboardInterrupt:
            return total

    def ingested(self, repo: str | Path, collection: str) -> list[str] | None:
        """The RUN collections of ``collection`` as last ingested, or None if it never was."""
        with self.engine.connect() as conn:
            runs = conn.execute(sa.select(collection_t.c.runs).where(collection_t.c.repo == str(Path(repo).resolve()),
                                                                     collection_t.c.collection == collection)).scalar()
        return None if runs is None else json.loads(runs)

    def run_states(self) -> dict[str, str | None]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(run_t.c.name, run_t.c.state)).all())

    # --- queries -----------------------------------------------------------------------------

    def records(self, query: LogQuery | None = None) -> list[dict]:
        """The records ``query`` selects, in time order (then in the order they were stored)."""
        query = query or LogQuery()
        c, k, o = record_t.c, key_t.c, origin_t.c
        with self.engine.connect() as conn:
            statement = (sa.select(run_t.c.name.label("run"), k.task, k.data_id, c.time, c.levelno, c.logger, c.message,
                                   o.host, o.process, o.process_name, o.thread, c.exc_type, c.traceback)
                         .select_from(record_t.join(key_t, k.id == c.key_id).join(origin_t, o.id == c.origin_id)
                                      .outerjoin(run_t, run_t.c.id == k.run_id))
                         .where(*query.conditions(self.engine.dialect.name, conn)).order_by(c.time, c.id))
            if query.limit:
                statement = statement.limit(query.limit)
            rows = conn.execute(statement).mappings().all()
        return [_record_dict(r) for r in rows]

    def count(self, query: LogQuery | None = None) -> int:
        query = query or LogQuery()
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(record_t)
                                .where(*query.conditions(self.engine.dialect.name, conn))).scalar()

    def executions(self, runs: list[str] | None = None, bad_only: bool = True) -> list[dict]:
        """Executions (quantum attempts), those that ended badly by default: status, exit code, exception, traceback."""
        e = execution_t.c
        statement = (sa.select(run_t.c.name.label("run"), run_t.c.state.label("run_state"), e.task, e.data_id,
                               *[getattr(e, k) for k in ("instrument", "skymap", "tract", "patch", "visit", "exposure",
                                                         "detector", "band")],
                               e.status, e.exit_code, e.exc_type, e.message, e.traceback, e.start, e.end, e.seen)
                     .select_from(execution_t.outerjoin(run_t, run_t.c.id == e.run_id)).order_by(e.id))
        if bad_only:
            statement = statement.where(e.status.in_(BAD_STATUSES))
        if runs is not None:
            statement = statement.where(run_t.c.name.in_(runs))
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [dict(r) for r in rows]

    def failure_classes(self, runs: list[str] | None = None) -> list[FailureClass]:
        """Failed executions in classes (`classify`); blocked quanta are not failures of their own."""
        failures = []
        for e in self.executions(runs):
            if e["status"] == "blocked":
                continue
            failures.append({"exc_type": e["exc_type"], "message": e["message"], "task": e["task"],
                             "data_id": _data_id_dict(e["data_id"]), "run": e["run"], "status": e["status"],
                             "time": e["end"] or e["start"] or e["seen"], "active": e["run_state"] == "in progress"})
        return classify(failures)


def _data_id_dict(text: str) -> dict:
    out = {}
    for item in (text or "").split():
        k, _, v = item.partition("=")
        out[k] = int(v) if v.lstrip("-").isdigit() else v
    return out


def _record_dict(row) -> dict:
    import datetime as dt

    d = dict(row)
    d["level"] = level_name(d.pop("levelno"))
    d["time"] = dt.datetime.fromtimestamp(d["time"], dt.timezone.utc).isoformat()
    d["data_id"] = _data_id_dict(d["data_id"])
    return d
