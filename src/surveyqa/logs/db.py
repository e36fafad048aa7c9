"""The log database: tables, indexes, text search, and the bulk writes of one source at a time.

SQLite or PostgreSQL through SQLAlchemy Core, as the tracking service. A source (one ``_log``
dataset, one file or the new part of a growing one) is written in ONE transaction with the row
that marks it ingested: a kill -9 leaves either all of it or none, and ingesting again skips
what is marked. Bulk rows go through the driver's fastest path (``executemany`` on SQLite,
``COPY`` on PostgreSQL): SQLAlchemy's per-row work would cap ingest far below 10^5 records/s.

Text search: on SQLite an FTS5 table with the trigram tokenizer (any substring of 3+ characters;
a regular expression is narrowed by its literal parts, then checked with Python's ``re``); on
PostgreSQL ``~`` with a pg_trgm GIN index when ``CREATE EXTENSION pg_trgm`` works, a plain scan
when it does not.
"""

from __future__ import annotations

import io
import logging
import re
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from surveyqa.errors import SurveyQAError

from .records import DATA_ID_COLUMNS, Execution, LogRecord, canonical_data_id, data_id_text

__all__ = ["metadata", "record_t", "execution_t", "source_t", "run_t", "collection_t", "open_log_db",
           "write_source", "known_sources", "has_text_index", "RECORD_COLUMNS"]

log = logging.getLogger(__name__)

metadata = sa.MetaData()

run_t = sa.Table(
    "log_run", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(400), nullable=False, unique=True),
    sa.Column("state", sa.String(20), nullable=True),  # "in progress", "complete" or None (unknown)
    sa.Column("updated", sa.Float, nullable=True),
)

collection_t = sa.Table(
    "log_collection", metadata,
    sa.Column("repo", sa.String(1000), primary_key=True),
    sa.Column("collection", sa.String(400), primary_key=True),
    sa.Column("runs", sa.Text, nullable=False),  # JSON list of RUN names
    sa.Column("ingested", sa.Float, nullable=False),
)

source_t = sa.Table(
    "log_source", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(1200), nullable=False, unique=True),  # "dataset:<uuid>" or "file:<path>"
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False, default=0),  # bytes of a file already stored
    sa.Column("digest", sa.String(64), nullable=True),
    sa.Column("n_records", sa.Integer, nullable=False, default=0),
    sa.Column("ingested", sa.Float, nullable=False),
)

def _data_id_columns() -> list[sa.Column]:
    return [sa.Column(k, sa.Integer if k in ("tract", "patch", "visit", "exposure", "detector") else sa.String(100),
                      nullable=True) for k in DATA_ID_COLUMNS]

record_t = sa.Table(
    "log_record", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("source_id", sa.Integer, nullable=False),
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("task", sa.String(200), nullable=True),
    sa.Column("data_id", sa.String(400), nullable=False),
    *_data_id_columns(),
    sa.Column("time", sa.Float, nullable=False),  # seconds since 1970 UTC
    sa.Column("levelno", sa.SmallInteger, nullable=False),
    sa.Column("logger", sa.String(300), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("host", sa.String(200), nullable=True),
    sa.Column("process", sa.Integer, nullable=True),
    sa.Column("process_name", sa.String(200), nullable=True),
    sa.Column("thread", sa.String(200), nullable=True),
    sa.Column("exc_type", sa.String(300), nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
    sa.Index("ix_log_record_time", "time"),
    sa.Index("ix_log_record_execution", "run_id", "task", "data_id"),
    sa.Index("ix_log_record_level_time", "levelno", "time"),
    sa.Index("ix_log_record_visit", "visit", "levelno"),
    sa.Index("ix_log_record_tract", "tract", "levelno"),
    sa.Index("ix_log_record_process", "process", "time"),
)

execution_t = sa.Table(
    "log_execution", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("task", sa.String(200), nullable=False),
    sa.Column("data_id", sa.String(400), nullable=False),
    *_data_id_columns(),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("exc_type", sa.String(300), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
    sa.Column("start", sa.Float, nullable=True),
    sa.Column("end", sa.Float, nullable=True),
    sa.Column("seen", sa.Float, nullable=False),  # when it was first ingested
    sa.UniqueConstraint("run_id", "task", "data_id", name="uq_log_execution"),
    sa.Index("ix_log_execution_status", "status"),
)

#: The record columns written in bulk, in order.
RECORD_COLUMNS = ["source_id", "run_id", "task", "data_id", *DATA_ID_COLUMNS, "time", "levelno", "logger",
                  "message", "host", "process", "process_name", "thread", "exc_type", "traceback"]


def open_log_db(url: str) -> Engine:
    """An engine on the log database at ``url``, its tables and text index made if missing.

    Raises
    ------
    SurveyQAError
        The URL is not a database SQLAlchemy can open.
    """
    try:
        engine = sa.create_engine(url)
        if engine.dialect.name == "sqlite":
            @sa.event.listens_for(engine, "connect")
            def _setup(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed transaction survives a kill
                cur.execute("PRAGMA busy_timeout=60000")
                cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: index pages stay cached during a bulk ingest
                cur.close()
                dbapi_conn.create_function("regexp", 2, _regexp, deterministic=True)
        elif engine.dialect.name != "postgresql":
            raise SurveyQAError(f"log database {url!r}: only SQLite and PostgreSQL are supported")
        metadata.create_all(engine)
        _text_index(engine)
    except sa.exc.ArgumentError as exc:
        raise SurveyQAError(f"cannot use database URL {url!r}: {exc}",
                            "use e.g. sqlite:///logs.db or postgresql+psycopg2://user@host/db") from exc
    except sa.exc.OperationalError as exc:
        raise SurveyQAError(f"cannot open log database {url!r}: {str(exc.orig).strip().splitlines()[0]}") from exc
    return engine


_PATTERNS: dict[str, re.Pattern] = {}


def _regexp(pattern: str, text: str | None) -> bool:
    if text is None:
        return False
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled.search(text) is not None


def _text_index(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("CREATE VIRTUAL TABLE IF NOT EXISTS log_record_fts USING fts5("
                                 "message, content='log_record', content_rowid='id', tokenize='trigram')")
            return
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_log_record_message_trgm ON log_record "
                                 "USING gin (message gin_trgm_ops)")
    except sa.exc.DBAPIError as exc:  # no pg_trgm on this server, or no right to create it: plain scans
        log.warning("no trigram index on the log messages (%s); regular expressions scan the rows",
                    str(exc.orig).strip().splitlines()[0])


def has_text_index(engine: Engine) -> bool:
    """Whether messages have a text index (FTS5 on SQLite, pg_trgm on PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        return True
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_log_record_message_trgm'"
                                    ).first() is not None


def known_sources(conn, prefix: str) -> dict[str, tuple[int, str | None]]:
    """``{key: (offset, digest)}`` of the sources already stored whose key starts with ``prefix``."""
    rows = conn.execute(sa.select(source_t.c.key, source_t.c.offset, source_t.c.digest)
                        .where(source_t.c.key.startswith(prefix, autoescape=True)))
    return {key: (offset, digest) for key, offset, digest in rows}


def run_id(conn, name: str | None, state: str | None = None, cache: dict | None = None) -> int | None:
    """The id of run ``name`` (made if new); its state updated when given."""
    if name is None:
        return None
    if cache is not None and name in cache and state is None:
        return cache[name]
    found = conn.execute(sa.select(run_t.c.id).where(run_t.c.name == name)).scalar()
    if found is None:
        found = conn.execute(run_t.insert().values(name=name, state=state, updated=time.time())).inserted_primary_key[0]
    elif state is not None:
        conn.execute(run_t.update().where(run_t.c.id == found).values(state=state, updated=time.time()))
    if cache is not None:
        cache[name] = found
    return found


def write_source(conn, key: str, kind: str, location: str, records: list[LogRecord], executions: list[Execution],
                 offset: int = 0, digest: str | None = None, replace: bool = False) -> int:
    """Store one source's records and executions and mark it ingested, in the caller's transaction.

    ``replace`` first removes the records of a source stored before under the same key (a whole
    file that changed); otherwise the records are added to it (the new part of a growing file).
    Returns the number of records written.
    """
    existing = conn.execute(sa.select(source_t.c.id, source_t.c.n_records).where(source_t.c.key == key)).first()
    if existing is None:
        source_id = conn.execute(source_t.insert().values(key=key, kind=kind, location=location, offset=offset,
                                                          digest=digest, n_records=len(records),
                                                          ingested=time.time())).inserted_primary_key[0]
    else:
        source_id = existing.id
        if replace:
            _delete_records(conn, source_id)
        conn.execute(source_t.update().where(source_t.c.id == source_id).values(
            offset=offset, digest=digest, ingested=time.time(),
            n_records=len(records) + (0 if replace else existing.n_records)))
    runs: dict = {}
    places: dict = {}
    rows = [_record_row(source_id, run_id(conn, r.run, cache=runs), r, places) for r in records]
    _bulk_insert(conn, rows)
    for execution in executions:
        _upsert_execution(conn, run_id(conn, execution.run, cache=runs), execution)
    return len(rows)


def _record_row(source_id: int, run: int | None, r: LogRecord, places: dict) -> tuple:
    """One row of ``log_record``; ``places`` caches the data ID columns (a source's records share few data IDs)."""
    key = tuple(r.data_id.items())
    place = places.get(key)
    if place is None:
        data_id = canonical_data_id(r.data_id)
        place = places[key] = (data_id_text(data_id), *(data_id.get(k) for k in DATA_ID_COLUMNS))
    return (source_id, run, r.task, *place, r.time, r.levelno, r.logger, r.message, r.host, r.process,
            r.process_name, r.thread, r.exc_type, r.traceback)


def _bulk_insert(conn, rows: list[tuple]) -> None:
    if not rows:
        return
    dbapi = conn.connection.dbapi_connection
    cursor = dbapi.cursor()
    try:
        if conn.dialect.name == "sqlite":
            first = cursor.execute("SELECT coalesce(max(id), 0) FROM log_record").fetchone()[0]
            cursor.executemany(f"INSERT INTO log_record ({', '.join(RECORD_COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(RECORD_COLUMNS))})", rows)
            cursor.execute("INSERT INTO log_record_fts (rowid, message) SELECT id, message FROM log_record "
                           "WHERE id > ?", (first,))
        else:
            buffer = io.StringIO()
            for row in rows:
                buffer.write("\t".join(_copy_value(v) for v in row))
                buffer.write("\n")
            buffer.seek(0)
            cursor.copy_expert(f"COPY log_record ({', '.join(RECORD_COLUMNS)}) FROM STDIN", buffer)
    finally:
        cursor.close()


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, float):
        return repr(value)
    return str(value).replace("\x00", "").translate(_COPY_ESCAPES)


def _delete_records(conn, source_id: int) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("INSERT INTO log_record_fts (log_record_fts, rowid, message) SELECT 'delete', id, message "
                             "FROM log_record WHERE source_id = ?", (source_id,))
    conn.execute(record_t.delete().where(record_t.c.source_id == source_id))


def _upsert_execution(conn, run: int | None, e: Execution) -> None:
    """Store an execution, or complete the one stored: a later source may know its exit code or traceback."""
    data_id = canonical_data_id(e.data_id)
    text = data_id_text(data_id)
    values = {"status": e.status, "exit_code": e.exit_code, "exc_type": e.exc_type, "message": e.message,
              "traceback": e.traceback, "start": e.start, "end": e.end}
    found = conn.execute(sa.select(execution_t).where(execution_t.c.run_id == run, execution_t.c.task == e.task,
                                                      execution_t.c.data_id == text)).first()
    if found is None:
        conn.execute(execution_t.insert().values(run_id=run, task=e.task, data_id=text, seen=time.time(),
                                                 **{k: data_id.get(k) for k in DATA_ID_COLUMNS}, **values))
        return
    update = {k: v for k, v in values.items() if v is not None}
    if found.status != "success" and e.status == "success" and found.exc_type and not e.exc_type:
        update.pop("status")  # one source saw it fail (a log with its exception): a status-less one does not undo that
    if update:
        conn.execute(execution_t.update().where(execution_t.c.id == found.id).values(**update))
