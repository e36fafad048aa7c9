"""The log database: tables, indexes, text search, and the bulk writes of one source at a time.

SQLite or PostgreSQL through SQLAlchemy Core, as the tracking service. A source (one ``_log``
dataset, one file or the new part of a growing one) is written in ONE transaction with the row
that marks it ingested: a kill -9 leaves either all of it or none, and ingesting again skips
what is marked. Bulk rows go through the driver's fastest path (``executemany`` on SQLite,
``COPY`` on PostgreSQL): SQLAlchemy's per-row work would cap ingest far below 10^5 records/s.
A record row is narrow: where it came from (run, task, data ID) and who wrote it (host,
process, thread) are stored once in ``log_key`` / ``log_origin`` and referred to by id. Each
index kept up to date costs about as much as the row itself, so a first load builds them after
the rows (`bulk_load`, and a single source larger than the table).

Text search: on SQLite an FTS5 word index (``unicode61``, no positions: a quarter of the work of
trigrams per message, and enough to narrow; a regular expression is narrowed by the whole words
of its literal parts, then by the parts as substrings, then checked with Python's ``re``); on
PostgreSQL a pg_trgm GIN index over the distinct message templates (`message_template`: digit
runs as ``0``) in ``log_template``, which each record refers to by ``template_id``: the regex's
literal parts, as templates, pick the templates, the records of those are tried with ``~``
(a plain scan of the templates when ``CREATE EXTENSION pg_trgm`` does not work). A GIN over every
message cost PostgreSQL 20-40 us per record, more than the rest of an ingest; pipeline messages
repeat their templates (a few dozen per task), so the templates' index is small and kept up to date.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import logging
import re
import time
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from surveyqa.errors import SurveyQAError

from .records import DATA_ID_COLUMNS, Execution, LogRecord, canonical_data_id, data_id_text, message_template

__all__ = ["metadata", "record_t", "key_t", "origin_t", "template_t", "execution_t", "source_t", "run_t", "collection_t",
           "open_log_db",
           "write_source", "bulk_load", "known_sources", "has_text_index", "RECORD_COLUMNS"]

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
    # the ids its records lie between (with others' when ingests ran side by side): a replaced
    # source is deleted by a primary-key range, without an index on source_id to keep up
    sa.Column("first_id", sa.BigInteger, nullable=True),
    sa.Column("last_id", sa.BigInteger, nullable=True),
    sa.Column("ingested", sa.Float, nullable=False),
)

def _data_id_columns() -> list[sa.Column]:
    return [sa.Column(k, sa.Integer if k in ("tract", "patch", "visit", "exposure", "detector") else sa.String(100),
                      nullable=True) for k in DATA_ID_COLUMNS]

#: Where a record came from (run, task label, data ID), stored once and referred to by ``key_id``:
#: a source's thousands of records share a handful, so the record rows stay narrow and the data ID
#: columns are indexed on a table of thousands of rows instead of millions.
key_t = sa.Table(
    "log_key", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ident", sa.String(1200), nullable=False, unique=True),  # JSON [run_id, task, data_id]
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("task", sa.String(200), nullable=True),
    sa.Column("data_id", sa.String(400), nullable=False),
    *_data_id_columns(),
    sa.Index("ix_log_key_run", "run_id", "task"),
    sa.Index("ix_log_key_task", "task"),
    sa.Index("ix_log_key_visit", "visit", "detector"),
    sa.Index("ix_log_key_tract", "tract", "patch"),
)

#: Which host / process / thread wrote a record, stored once and referred to by ``origin_id``.
origin_t = sa.Table(
    "log_origin", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ident", sa.String(1200), nullable=False, unique=True),  # JSON [host, process, process_name, thread]
    sa.Column("host", sa.String(200), nullable=True),
    sa.Column("process", sa.Integer, nullable=True),
    sa.Column("process_name", sa.String(200), nullable=True),
    sa.Column("thread", sa.String(200), nullable=True),
    sa.Index("ix_log_origin_process", "process"),
    sa.Index("ix_log_origin_host", "host"),
)

#: Each distinct message template (`message_template`), stored once and referred to by ``template_id``
#: (on PostgreSQL; SQLite's word index covers the messages themselves and leaves it empty).
template_t = sa.Table(
    "log_template", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ident", sa.String(32), nullable=False, unique=True),  # md5 of the text: a long one fits a B-tree
    sa.Column("text", sa.Text, nullable=False),
)

record_t = sa.Table(
    "log_record", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("source_id", sa.Integer, nullable=False),
    sa.Column("key_id", sa.Integer, nullable=False),
    sa.Column("origin_id", sa.Integer, nullable=False),
    sa.Column("time", sa.Float, nullable=False),  # seconds since 1970 UTC
    sa.Column("levelno", sa.SmallInteger, nullable=False),
    sa.Column("logger", sa.String(300), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("exc_type", sa.String(300), nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
    sa.Column("template_id", sa.Integer, nullable=True),  # PostgreSQL only (log_template)
    sa.Index("ix_log_record_time", "time"),
    sa.Index("ix_log_record_key", "key_id", "levelno", "time"),
    sa.Index("ix_log_record_level_time", "levelno", "time"),
    sa.Index("ix_log_record_origin", "origin_id", "time"),
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

#: The record columns written in bulk, in order (PostgreSQL's rows also have ``template_id``, last).
RECORD_COLUMNS = ["source_id", "key_id", "origin_id", "time", "levelno", "logger", "message", "exc_type", "traceback"]
#: The index of the records by template, PostgreSQL only (made, dropped and built again as the others).
TEMPLATE_INDEX = "CREATE INDEX IF NOT EXISTS ix_log_record_template ON log_record (template_id)"
#: A source of at least this many records, more than the table holds, is loaded before its indexes are built.
DEFER_INDEXES_AT = 50_000


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
        _check_schema(engine, url)
        metadata.create_all(engine)
        _add_templates(engine)
        _ensure_indexes(engine)
        _text_index(engine)
    except sa.exc.ArgumentError as exc:
        raise SurveyQAError(f"cannot use database URL {url!r}: {exc}",
                            "use e.g. sqlite:///logs.db or postgresql+psycopg2://user@host/db") from exc
    except sa.exc.OperationalError as exc:
        raise SurveyQAError(f"cannot open log database {url!r}: {str(exc.orig).strip().splitlines()[0]}") from exc
    return engine


def _ensure_indexes(engine: Engine) -> None:
    """Build the record indexes an ingest killed during `bulk_load` left out."""
    with engine.begin() as conn:
        for index in record_t.indexes:
            index.create(conn, checkfirst=True)


def _check_schema(engine: Engine, url: str) -> None:
    """Refuse a log database whose records still carry their data IDs in every row (the first schema)."""
    inspector = sa.inspect(engine)
    if inspector.has_table("log_record") and "key_id" not in {c["name"] for c in inspector.get_columns("log_record")}:
        raise SurveyQAError(f"log database {url!r} was made by an earlier surveyqa (one data ID per record row)",
                            "ingest into a new database (--db), or delete this one: the logs are read again from "
                            "their sources")


def _add_templates(engine: Engine) -> None:
    """Give the records of a PostgreSQL log database made before ``log_template`` their templates,
    and drop the trigram index over every message that it replaces (the same `message_template`
    in SQL: digit runs as ``0``, md5 of the UTF-8 text)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        if "template_id" in {c["name"] for c in sa.inspect(conn).get_columns("log_record")}:
            return
        conn.exec_driver_sql("ALTER TABLE log_record ADD COLUMN template_id INTEGER")
        template = "regexp_replace(message, '[0-9]+', '0', 'g')"
        conn.exec_driver_sql(f"INSERT INTO log_template (ident, text) SELECT DISTINCT md5({template}), {template} "
                             "FROM log_record ON CONFLICT (ident) DO NOTHING")
        conn.exec_driver_sql(f"UPDATE log_record SET template_id = t.id FROM log_template t "
                             f"WHERE t.ident = md5({template})")
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_log_record_message_trgm")


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
            # words, not trigrams: a quarter of the work per message (trigrams alone capped ingest near
            # 50,000 records/s); no positions (detail=none): the index only narrows, the regex decides
            conn.exec_driver_sql("CREATE VIRTUAL TABLE IF NOT EXISTS log_record_fts USING fts5("
                                 "message, content='log_record', content_rowid='id', tokenize='unicode61', "
                                 "detail=none, columnsize=0)")
            return
    with engine.begin() as conn:
        conn.exec_driver_sql(TEMPLATE_INDEX)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_log_template_text_trgm ON log_template "
                                 "USING gin (text gin_trgm_ops)")
    except sa.exc.DBAPIError as exc:  # no pg_trgm on this server, or no right to create it: plain scans
        log.warning("no trigram index on the log messages (%s); regular expressions scan the rows",
                    str(exc.orig).strip().splitlines()[0])


def has_text_index(engine: Engine) -> bool:
    """Whether messages have a text index (FTS5 on SQLite, pg_trgm over the templates on PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        return True
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_log_template_text_trgm'"
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
    s = source_t.c
    existing = conn.execute(sa.select(s.id, s.n_records, s.first_id, s.last_id).where(s.key == key)).first()
    if existing is None:
        source_id = conn.execute(source_t.insert().values(key=key, kind=kind, location=location, offset=offset,
                                                          digest=digest, n_records=len(records),
                                                          ingested=time.time())).inserted_primary_key[0]
        span = (None, None)
    else:
        source_id = existing.id
        span = (existing.first_id, existing.last_id)
        if replace:
            _delete_records(conn, source_id, *span)
            span = (None, None)
        conn.execute(source_t.update().where(s.id == source_id).values(
            offset=offset, digest=digest, ingested=time.time(),
            n_records=len(records) + (0 if replace else existing.n_records)))
    runs: dict = {}
    if records:
        first, last = _bulk_insert(conn, _record_rows(conn, source_id, records, runs), len(records))
        conn.execute(source_t.update().where(s.id == source_id).values(
            first_id=first if span[0] is None else min(first, span[0]),
            last_id=last if span[1] is None else max(last, span[1])))
    for execution in executions:
        _upsert_execution(conn, run_id(conn, execution.run, cache=runs), execution)
    return len(records)


def _record_rows(conn, source_id: int, records: list[LogRecord], runs: dict) -> Iterator[tuple]:
    """The ``log_record`` rows of ``records``, in `RECORD_COLUMNS` order, their keys and origins interned.

    The rows are made as they are consumed: on PostgreSQL while the server stores those before.

    A key is looked up by the identity of the record's data ID dict (the records of one
    ``_log`` dataset share one), then by its content, and made canonical once per distinct
    one: the per-record work is two dict look-ups and the row itself.
    """
    places = {(r.run, r.task, id(r.data_id)): r for r in records}  # the records (alive) keep each id() unique
    key_rows: dict[str, tuple] = {}
    seen: dict[tuple, str] = {}  # equal data IDs in distinct dicts (one per line of a JSON-lines file)
    canonical: dict[int, tuple[dict, str]] = {}  # by id() of a data ID dict: one per dict, whatever the task
    for place, r in places.items():
        try:
            content = (r.run, r.task, tuple(r.data_id.items()))
            ident = seen.get(content)
        except TypeError:  # a value that cannot be hashed
            content, ident = None, None
        if ident is None:
            made = canonical.get(id(r.data_id))
            if made is None:
                data_id = canonical_data_id(r.data_id)
                made = canonical[id(r.data_id)] = (data_id, data_id_text(data_id, canonical=True))
            data_id, text = made
            run = run_id(conn, r.run, cache=runs)
            ident = json.dumps([run, r.task, text])
            if ident not in key_rows:
                key_rows[ident] = (ident, run, r.task, text, *(data_id.get(k) for k in DATA_ID_COLUMNS))
            if content is not None:
                seen[content] = ident
        places[place] = ident
    key_ids = _intern(conn, "log_key", ["ident", "run_id", "task", "data_id", *DATA_ID_COLUMNS], key_rows)
    places = {place: key_ids[ident] for place, ident in places.items()}
    origins = {origin: json.dumps(origin) for origin in {(r.host, r.process, r.process_name, r.thread)
                                                         for r in records}}
    origin_ids = _intern(conn, "log_origin", ["ident", "host", "process", "process_name", "thread"],
                         {ident: (ident, *origin) for origin, ident in origins.items()})
    origins = {origin: origin_ids[ident] for origin, ident in origins.items()}
    if conn.dialect.name == "sqlite":
        return ((source_id, places[r.run, r.task, id(r.data_id)], origins[r.host, r.process, r.process_name, r.thread],
                 r.time, r.levelno, r.logger, r.message, r.exc_type, r.traceback) for r in records)
    templates = [message_template(r.message) for r in records]
    hashes = {hashlib.md5(t.encode()).hexdigest(): t for t in set(templates)}
    ids = _intern(conn, "log_template", ["ident", "text"], {h: (h, t) for h, t in hashes.items()})
    template_ids = {t: ids[h] for h, t in hashes.items()}
    return ((source_id, places[r.run, r.task, id(r.data_id)], origins[r.host, r.process, r.process_name, r.thread],
             r.time, r.levelno, r.logger, r.message, r.exc_type, r.traceback, template_ids[t])
            for r, t in zip(records, templates))


def _intern(conn, table: str, columns: list[str], rows: dict[str, tuple]) -> dict[str, int]:
    """``{ident: id}`` for ``rows`` (keyed by their ``ident``, their first column), those not yet in ``table`` added.

    Through the driver (SQLAlchemy's per-row parameter work is most of the cost at thousands of
    keys per source). ``ON CONFLICT DO NOTHING``, then the look-up: an ingest running beside
    this one may have added the same ident.
    """
    cursor = conn.connection.dbapi_connection.cursor()
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    found: dict[str, int] = {}

    def look(idents: list[str]) -> None:
        for i in range(0, len(idents), 500):
            batch = idents[i:i + 500]
            cursor.execute(f"SELECT ident, id FROM {table} WHERE ident IN ({', '.join([mark] * len(batch))})", batch)
            found.update(cursor.fetchall())

    try:
        if rows:
            insert = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))}) "
                      "ON CONFLICT (ident) DO NOTHING")  # those already there: one failed probe each
            if conn.dialect.name == "sqlite":
                cursor.executemany(insert, list(rows.values()))
                look(list(rows))
            else:  # COPY to a temporary table, then one insert and one look-up (parameters cost more)
                staged = f"staged_{table}"
                cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staged} ON COMMIT DELETE ROWS AS "
                               f"SELECT {', '.join(columns)} FROM {table} WITH NO DATA")
                cursor.execute(f"DELETE FROM {staged}")  # what an earlier source of this transaction staged
                cursor.copy_expert(f"COPY {staged} ({', '.join(columns)}) FROM STDIN",
                                   io.StringIO("".join(_text_line(row) for row in rows.values())))
                cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM {staged} "
                               "ON CONFLICT (ident) DO NOTHING")
                cursor.execute(f"SELECT s.ident, t.id FROM {staged} s JOIN {table} t ON t.ident = s.ident")
                found.update(cursor.fetchall())
    finally:
        cursor.close()
    return found


_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": None})


def _text_line(row: tuple) -> str:
    """One row in ``COPY``'s text format: none as ``\\N``, so that an empty string stays one."""
    return "\t".join("\\N" if v is None else v.translate(_TEXT_ESCAPES) if isinstance(v, str) else str(v)
                     for v in row) + "\n"


def _bulk_insert(conn, rows: Iterator[tuple], n: int) -> tuple[int, int]:
    """Insert the ``n`` ``rows`` through the driver; the ids they lie between.

    A load much larger than the table drops its indexes first and builds them after (in the same
    transaction: a kill leaves the table as it was).
    """
    dbapi = conn.connection.dbapi_connection
    cursor = dbapi.cursor()
    sqlite = conn.dialect.name == "sqlite"
    try:
        cursor.execute("SELECT coalesce(max(id), 0) FROM log_record")
        first = cursor.fetchone()[0]  # new ids are above every id handed out before
        deferred = _drop_indexes(conn, cursor) if n >= DEFER_INDEXES_AT and n > first else {}
        if sqlite:
            cursor.executemany(f"INSERT INTO log_record ({', '.join(RECORD_COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(RECORD_COLUMNS))})", rows)
            cursor.execute("INSERT INTO log_record_fts (rowid, message) SELECT id, message FROM log_record "
                           "WHERE id > ?", (first,))
        else:
            _copy(cursor, rows)
        cursor.execute("SELECT max(id) FROM log_record")
        last = cursor.fetchone()[0]
        _build_indexes(conn, cursor, deferred.values())
    finally:
        cursor.close()
    return first + 1, last


def _record_indexes(conn, cursor) -> dict[str, str]:
    """``{name: CREATE statement}`` of the indexes ``log_record`` has now (its primary key aside), and on
    PostgreSQL the trigram index of ``log_template``."""
    if conn.dialect.name == "sqlite":
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'log_record' "
                       "AND sql IS NOT NULL")
    else:
        # and the templates' trigram index: when messages hardly repeat (an ID in each) there are
        # nearly as many templates as records, and a GIN kept up to date costs 70 us a row
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE (tablename = 'log_record' "
                       "AND indexname <> 'log_record_pkey') OR indexname = 'ix_log_template_text_trgm'")
    return dict(cursor.fetchall())


def _drop_indexes(conn, cursor) -> dict[str, str]:
    """Drop the indexes of ``log_record`` (B-trees, and PostgreSQL's trigram one); the statements
    that make them again."""
    indexes = _record_indexes(conn, cursor)
    for name in indexes:
        cursor.execute(f"DROP INDEX {name}")
    return indexes


def _build_indexes(conn, cursor, creates) -> None:
    """Build indexes over a full table with room to sort in memory (with SQLite's 64 MiB cache a
    sort of 10^7 entries goes through temporary files), on both cores."""
    creates = list(creates)
    if not creates:
        return
    if conn.dialect.name == "postgresql":
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for create in creates:
            cursor.execute(create)
        return
    cursor.execute("PRAGMA cache_size = -1048576")  # 1 GiB, for the sorts (pages are only taken as needed)
    cursor.execute("PRAGMA threads = 2")
    try:
        for create in creates:
            cursor.execute(create)
    finally:
        cursor.execute("PRAGMA threads = 0")
        cursor.execute("PRAGMA cache_size = -65536")


@contextlib.contextmanager
def bulk_load(engine: Engine) -> Iterator[None]:
    """A first (or much larger than stored) ingest of many sources: the record indexes dropped
    before and built once after, instead of kept up to date row by row (several times the cost).

    Each source is still its own transaction. Killed in between, nothing committed is lost and
    the next `open_log_db` builds the missing indexes again; until then queries scan.
    """
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        creates = _drop_indexes(conn, cursor)
        cursor.close()
    try:
        yield
    finally:
        with engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            have = _record_indexes(conn, cursor)
            _build_indexes(conn, cursor, [create for name, create in creates.items() if name not in have])
            cursor.close()


def _copy(cursor, rows: Iterator[tuple]) -> None:
    """``COPY`` in CSV, made as the driver reads it: the server stores one part while the next is written."""
    cursor.copy_expert(f"COPY log_record ({', '.join(RECORD_COLUMNS)}, template_id) FROM STDIN "
                       "WITH (FORMAT csv, FORCE_NULL (exc_type, traceback))", _CsvStream(rows), size=1 << 16)


class _CsvStream:
    """The rows as CSV, a few thousand per ``read``. The ``csv`` module writes it in C; every string
    is quoted, so an empty message stays empty, and an empty exception type or traceback is read
    as none (``FORCE_NULL``)."""

    def __init__(self, rows: Iterator[tuple], per_read: int = 5000):
        self._rows = rows
        self._per_read = per_read
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")

    def read(self, _size: int = -1) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerows(itertools.islice(self._rows, self._per_read))
        text = self._buffer.getvalue()
        return text.replace("\x00", "") if "\x00" in text else text  # PostgreSQL text cannot hold NUL


def _delete_records(conn, source_id: int, first: int | None, last: int | None) -> None:
    if first is None:
        return
    where = "id BETWEEN ? AND ? AND source_id = ?" if conn.dialect.name == "sqlite" else \
        "id BETWEEN %s AND %s AND source_id = %s"
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        if conn.dialect.name == "sqlite":
            cursor.execute("INSERT INTO log_record_fts (log_record_fts, rowid, message) SELECT 'delete', id, message "
                           f"FROM log_record WHERE {where}", (first, last, source_id))
        cursor.execute(f"DELETE FROM log_record WHERE {where}", (first, last, source_id))
    finally:
        cursor.close()


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
