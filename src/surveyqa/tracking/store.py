"""Write a normalized run into the tracking database: all of it in one transaction, or nothing.

A run is identified by its key: storing the same key again changes nothing and answers with the
stored run, also when twenty clients send it at once (the unique key decides; the loser rolls back).
Values are converted to their metric's unit; an unknown metric or unit refuses the whole run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import threading
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Any

import astropy.units as u
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from surveyqa.errors import DefinitionError
from surveyqa.metrics.units import parse_unit, unit_to_string
from surveyqa.tracking.db import (
    blob_t,
    data_id_item_t,
    data_id_t,
    metric_t,
    open_database,
    package_t,
    run_t,
    series_t,
    spec_t,
    value_t,
)
from surveyqa.tracking.ingest import InvalidSubmission, MetricDef, NormalizedRun
from surveyqa.tracking.outbox import enqueue_check

__all__ = ["StoredRun", "TrackingStore", "upsert"]

log = logging.getLogger(__name__)
_CHUNK = 500


@dataclass
class StoredRun:
    """What storing a run did: its id, whether it is new, and the series it added a value to."""

    run_id: int
    created: bool
    values: int
    series_ids: list[int] = field(default_factory=list)


class _AlreadyStored(Exception):
    pass


def upsert(conn: Connection, table: sa.Table, rows: list[dict], keys: list[str]) -> None:
    """Insert rows, skipping those whose ``keys`` already exist (race-free on SQLite and PostgreSQL)."""
    if not rows:
        return
    dialect = conn.dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    for i in range(0, len(rows), _CHUNK):
        chunk = rows[i : i + _CHUNK]
        if insert is None:  # pragma: no cover - other databases: check then insert
            for row in chunk:
                cond = sa.and_(*(table.c[k] == row[k] for k in keys))
                if conn.execute(sa.select(sa.literal(1)).where(cond)).first() is None:
                    conn.execute(table.insert().values(**row))
        else:
            conn.execute(insert(table).on_conflict_do_nothing(index_elements=keys), chunk)


def _select_in(conn: Connection, cols: list, column: sa.Column, keys: list) -> list:
    out = []
    for i in range(0, len(keys), _CHUNK):
        out.extend(conn.execute(sa.select(*cols).where(column.in_(keys[i : i + _CHUNK]))).all())
    return out


def _unit(text: str | None, what: str) -> u.UnitBase:
    try:
        return parse_unit(text)
    except DefinitionError as exc:
        raise InvalidSubmission(f"{what}: {exc.message}", exc.hint) from exc


class TrackingStore:
    """The tracking database behind the API, the CLI and the benchmarks.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        An engine on a migrated database (see `surveyqa.tracking.db.open_database`).
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        # SQLite allows one writer; serialize this process's writers instead of failing on "locked".
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    def write_lock(self) -> Any:
        """A context manager serializing this process's writers on SQLite (a no-op elsewhere)."""
        return self._write_lock if self._write_lock is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def lazy_commit_transaction(self) -> Iterator[Connection]:
        """A transaction whose commit returns before it is on disk (for what can be redone).

        For the regression checks: committing their claim of the pending check and their alerts
        without waiting for the disk was a fifth of a submission on SQLite. A process crash
        (kill -9) loses nothing: the commit is in the database's log (SQLite's WAL, PostgreSQL's
        WAL buffers). A power loss or server crash may undo the last such commits, and then the
        pending check is back and done again, to the same alerts; no message of an undone alert
        can have been sent, because delivery claims its rows in an ordinary (synchronous) commit
        first, which puts every earlier commit on disk too (both logs are written in order).
        The run's values keep their synchronous commit: their submitter is told they are stored.
        """
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # a connection setting, outside a transaction; put back afterwards
                level = conn.exec_driver_sql("PRAGMA synchronous").scalar()
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                conn.commit()
            try:
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    yield conn
            finally:
                if sqlite:
                    conn.rollback()
                    conn.exec_driver_sql(f"PRAGMA synchronous={int(level)}")
                    conn.commit()

    @classmethod
    def open(cls, url: str) -> TrackingStore:
        """Connect to ``url``, migrating the schema to the newest version."""
        return cls(open_database(url))

    # -- writing -----------------------------------------------------------------------------

    def submit(self, run: NormalizedRun) -> StoredRun:
        """Store ``run`` unless a run with its key exists; raise `InvalidSubmission` on bad input."""
        for attempt in range(5):
            try:
                if self._write_lock is not None:
                    with self._write_lock:
                        return self._submit_once(run)
                return self._submit_once(run)
            except _AlreadyStored:
                break
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                # A concurrent writer won a unique key or a deadlock was broken: retry once it committed.
                if attempt == 4:
                    raise
                log.info("retrying submission %s after %s", run.key, type(exc.orig).__name__)
        with self.engine.connect() as conn:
            run_id = conn.execute(sa.select(run_t.c.id).where(run_t.c.key == run.key)).scalar_one()
        return StoredRun(run_id, False, 0)

    def _submit_once(self, run: NormalizedRun) -> StoredRun:
        with self.engine.begin() as conn:
            if conn.execute(sa.select(run_t.c.id).where(run_t.c.key == run.key)).first() is not None:
                raise _AlreadyStored
            units = self._ensure_metrics(conn, run)
            rows = self._convert_values(run, units)
            self._ensure_specs(conn, run)
            keys = _keys([v.data_id for v in run.values])
            series_of = self._ensure_series(conn, run, keys)
            run_id = conn.execute(
                (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(run_t)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(run_t.c.id),
                [self._run_row(run)],
            ).scalar()
            if run_id is None:
                raise _AlreadyStored
            if run.packages:
                conn.execute(package_t.insert(), [{**p, "run_id": run_id} for p in _unique_by_name(run.packages)])
            if run.blobs:
                conn.execute(blob_t.insert(), [{**b, "run_id": run_id} for b in _unique_by(run.blobs, "identifier")])
            values = []
            seen: set[int] = set()
            for (v, value), key in zip(rows, keys, strict=True):
                sid = series_of[(v.metric, key)]
                if sid in seen:
                    raise InvalidSubmission(
                        f"two values for {v.metric} at data ID {v.data_id} in one run",
                        "send one value per metric and data ID",
                    )
                seen.add(sid)
                values.append(
                    {
                        "run_id": run_id,
                        "series_id": sid,
                        "run_time": run.time,
                        "value": value,
                        "n": v.n,
                        "identifier": v.identifier,
                        "blob_refs": v.blob_refs,
                        "level": v.level,
                        "selection": v.selection,
                        "aggregation": v.aggregation,
                        "note": v.note,
                    }
                )
            _insert_values(conn, values)
            enqueue_check(conn, run_id)  # with the values, or not at all: no run is ever left unchecked
        log.info("stored run %s (%s, %d values)", run_id, run.dataset, len(values))
        return StoredRun(run_id, True, len(values), sorted(seen))

    @staticmethod
    def _run_row(run: NormalizedRun) -> dict:
        return {
            "key": run.key,
            "format": run.format,
            "dataset": run.dataset,
            "pipeline": run.pipeline,
            "env_name": run.env_name,
            "ci_id": run.ci_id,
            "ci_url": run.ci_url,
            "time": run.time,
            "submitted": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            "repo": run.repo,
            "collection": run.collection,
            "meta": run.meta,
            "config": run.config,
            "job_metrics": run.job_metrics,
            "job_specs": run.job_specs,
            "provenance": run.provenance,
        }

    def _ensure_metrics(self, conn: Connection, run: NormalizedRun) -> dict[str, u.UnitBase]:
        """Insert new metric definitions; return the stored unit of every metric the run uses."""
        new = {m.name: m for m in run.metrics}
        for m in new.values():
            _unit(m.unit, f"metric {m.name}")
        names = sorted(set(new) | {v.metric for v in run.values})
        stored = {r.name: r.unit for r in _select_in(conn, [metric_t.c.name, metric_t.c.unit], metric_t.c.name, names)}
        for name, m in new.items():
            if name in stored and not _unit(m.unit, name).is_equivalent(_unit(stored[name], name)):
                raise InvalidSubmission(
                    f"metric {name} is stored in {stored[name]!r}, not convertible from {m.unit!r}",
                    "send the metric in a unit of the same physical type, or rename it",
                )
        unknown = sorted({v.metric for v in run.values} - set(stored) - set(new))
        if unknown:
            raise InvalidSubmission(
                f"unknown metric(s): {', '.join(unknown[:10])}",
                "send the definition in `metrics` (name, unit, description) or use a known metric",
            )
        upsert(conn, metric_t, [_metric_row(new[n]) for n in sorted(new) if n not in stored], ["name"])
        return {n: _unit(stored.get(n, new[n].unit if n in new else ""), n) for n in names}

    @staticmethod
    def _convert_values(run: NormalizedRun, units: dict[str, u.UnitBase]) -> list:
        out, factors = [], {}
        for v in run.values:
            key = (v.unit, v.metric)
            if key not in factors:
                unit = _unit(v.unit, f"value of {v.metric}")
                try:
                    factors[key] = unit.to(units[v.metric])
                except u.UnitConversionError as exc:
                    raise InvalidSubmission(
                        f"value of {v.metric} is in {v.unit!r}, which cannot be converted to the metric's unit "
                        f"{unit_to_string(units[v.metric])!r}",
                        "send the value in the metric's unit",
                    ) from exc
            out.append((v, None if v.value is None else v.value * factors[key]))
        return out

    @staticmethod
    def _ensure_specs(conn: Connection, run: NormalizedRun) -> None:
        rows = []
        for s in _unique_by(run.specs, "name"):
            if s.unit is not None:
                _unit(s.unit, f"spec {s.name}")
            rows.append({k: getattr(s, k) for k in ("name", "metric", "type", "operator", "threshold", "unit", "metadata_query", "tags")})
        upsert(conn, spec_t, sorted(rows, key=lambda r: r["name"]), ["name"])

    @staticmethod
    def _ensure_series(conn: Connection, run: NormalizedRun, keys: list[str]) -> dict[tuple[str, str], int]:
        """Series ids of the run's (metric, data ID) pairs, creating the missing data IDs and series.

        Looks the known ones up first and inserts only what is new: a steady stream of runs over
        the same series then writes nothing here (an upsert of every row cost most of a submission).
        ``keys`` are the values' data ID keys, in the order of ``run.values``.
        """
        ids = dict(zip(keys, (v.data_id for v in run.values), strict=True))
        for k, d in ids.items():
            if len(k) > 1000 or any(len(kk) > 50 or len(vv) > 200 for kk, vv in d.items()):
                raise InvalidSubmission(f"data ID too long: {k[:100]}...", "keys up to 50 characters, values up to 200")
        wanted_keys = sorted(ids)
        id_of = {r.key: r.id for r in _select_in(conn, [data_id_t.c.key, data_id_t.c.id], data_id_t.c.key, wanted_keys)}
        new_keys = [k for k in wanted_keys if k not in id_of]
        if new_keys:
            upsert(conn, data_id_t, [{"key": k} for k in new_keys], ["key"])
            new_ids = {r.key: r.id for r in _select_in(conn, [data_id_t.c.key, data_id_t.c.id], data_id_t.c.key, new_keys)}
            items = [{"data_id_id": new_ids[k], "key": kk, "value": vv} for k in new_keys for kk, vv in ids[k].items()]
            upsert(conn, data_id_item_t, items, ["data_id_id", "key"])
            id_of.update(new_ids)
        metric_names = sorted({v.metric for v in run.values})
        metric_id = {r.name: r.id for r in _select_in(conn, [metric_t.c.name, metric_t.c.id], metric_t.c.name, metric_names)}
        pairs = sorted({(v.metric, k) for v, k in zip(run.values, keys, strict=True)})
        wanted = {(metric_id[m], id_of[k]): (m, k) for m, k in pairs}
        data_ids = sorted({id_of[k] for _, k in pairs})

        def lookup() -> dict[tuple[str, str], int]:
            found = {}
            q = sa.select(series_t.c.id, series_t.c.metric_id, series_t.c.data_id_id).where(series_t.c.dataset == run.dataset)
            for i in range(0, len(data_ids), _CHUNK):
                for sid, mid, did in conn.execute(q.where(series_t.c.data_id_id.in_(data_ids[i : i + _CHUNK]))):
                    if (mid, did) in wanted:
                        found[wanted[(mid, did)]] = sid
            return found

        found = lookup()
        if len(found) < len(pairs):
            missing = [{"metric_id": metric_id[m], "data_id_id": id_of[k], "dataset": run.dataset} for m, k in pairs if (m, k) not in found]
            upsert(conn, series_t, missing, ["metric_id", "data_id_id", "dataset"])
            found = lookup()
        return found


_VALUE_COLUMNS = ("run_id", "series_id", "run_time", "value", "n", "identifier", "blob_refs", "level", "selection", "aggregation", "note")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _insert_values(conn: Connection, values: list[dict]) -> None:
    """Insert a run's value rows, in the caller's transaction.

    On PostgreSQL with psycopg2 this is one ``COPY``: the multi-row INSERT of 1,000 values that
    SQLAlchemy's executemany sends was half of a submission's storage time. Elsewhere, rows
    without blob references leave the JSON column out (SQL NULL): encoding a JSON null per row
    was a third of the insert time.
    """
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2":
        _copy_values(conn, values)
        return
    if conn.dialect.name == "sqlite" and conn.dialect.driver == "pysqlite":
        _executemany_values(conn, values)
        return
    plain = [r for r in values if r["blob_refs"] is None]
    for r in plain:
        del r["blob_refs"]
    for group in (plain, [r for r in values if "blob_refs" in r]):
        for i in range(0, len(group), 5000):
            conn.execute(value_t.insert(), group[i : i + 5000])


def _executemany_values(conn: Connection, values: list[dict]) -> None:
    """The rows as plain DBAPI parameters: SQLAlchemy's processing of 11 parameters per row cost
    more than SQLite's insert. Times in SQLAlchemy's SQLite text form, blob references as its
    JSON text, and missing blob references as SQL NULL (what leaving the column out gives)."""
    import sqlite3

    when: dict[dt.datetime, str] = {}

    def row(r: dict) -> tuple:
        t = r["run_time"]
        if t not in when:
            when[t] = t.isoformat(sep=" ", timespec="microseconds")
        refs = r["blob_refs"]
        return (r["run_id"], r["series_id"], when[t], r["value"], r["n"], r["identifier"], None if refs is None else json.dumps(refs),
                r["level"], r["selection"], r["aggregation"], r["note"])

    statement = f"INSERT INTO value ({', '.join(_VALUE_COLUMNS)}) VALUES ({', '.join('?' * len(_VALUE_COLUMNS))})"
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(statement, [row(r) for r in values])
    except sqlite3.Error as exc:  # as SQLAlchemy would raise it: the submission's retries rely on it
        raise sa.exc.DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc
    finally:
        cursor.close()


def _copy_values(conn: Connection, values: list[dict]) -> None:
    import psycopg2

    def field(v: Any) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, float):
            return repr(v)  # shortest exact form; nan and inf are read as NaN and Infinity
        if isinstance(v, dt.datetime):
            return v.isoformat(sep=" ")
        if isinstance(v, list | dict):
            v = json.dumps(v)
        return str(v).translate(_COPY_ESCAPES)

    lines = []
    optional = _VALUE_COLUMNS[4:]
    bare = "\t\\N" * len(optional) + "\n"  # most values have none of the optional columns
    for r in values:
        head = f"{r['run_id']}\t{r['series_id']}\t{field(r['run_time'])}\t{field(r['value'])}"
        rest = [r[c] for c in optional]
        lines.append(head + bare if rest.count(None) == len(rest) else head + "".join("\t" + field(v) for v in rest) + "\n")
    text = "".join(lines)
    statement = f"COPY value ({', '.join(_VALUE_COLUMNS)}) FROM STDIN"
    cursor = conn.connection.cursor()
    try:
        cursor.copy_expert(statement, io.StringIO(text))
    except psycopg2.Error as exc:  # as SQLAlchemy would raise it: the submission's retries and error answers rely on it
        raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg2.Error) from exc
    finally:
        cursor.close()

def _key(data_id: dict[str, str]) -> str:
    return json.dumps(data_id, sort_keys=True, separators=(",", ":"))


def _keys(data_ids: list[dict[str, str]]) -> list[str]:
    """`_key` of each data ID, encoded once per distinct data ID (a run has values of many metrics at each)."""
    done: dict[tuple, str] = {}
    out = []
    for d in data_ids:
        try:
            items = tuple(d.items())
            key = done.get(items)
            if key is None:
                key = done[items] = _key(d)
        except TypeError:  # an unhashable value: encode it every time
            key = _key(d)
        out.append(key)
    return out


def _metric_row(m: MetricDef) -> dict:
    return {
        "name": m.name,
        "package": m.package,
        "unit": unit_to_string(parse_unit(m.unit)),
        "description": m.description,
        "tags": m.tags,
        "reference": m.reference,
        "higher_is_better": m.higher_is_better,
    }


def _unique_by_name(rows: list[dict]) -> list[dict]:
    return list({r["name"]: r for r in rows}.values())


def _unique_by(items: list, attr: str) -> list:
    get = (lambda x: x[attr]) if items and isinstance(items[0], dict) else (lambda x: getattr(x, attr))
    return list({get(x): x for x in items}.values())
