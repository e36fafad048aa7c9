"""Read the tracking database: metrics, specs, runs, code changes and time series.

Every function takes a connection and returns plain dicts and lists ready for JSON, so that the
HTML pages and their ``.json`` twins, the CLI and the alert messages all read the same answers.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from surveyqa.metrics.specs import query_matches
from surveyqa.tracking.db import (
    blob_t,
    data_id_item_t,
    data_id_t,
    metric_t,
    package_t,
    run_t,
    series_t,
    spec_t,
    value_t,
)
from surveyqa.tracking.ingest import INT_KEYS

__all__ = [
    "list_metrics",
    "get_metric",
    "specs_for",
    "applicable_specs",
    "list_runs",
    "get_run",
    "run_job",
    "previous_run_id",
    "code_changes",
    "find_series",
    "series_points",
    "typed_data_id",
    "finite_or_none",
    "raw_rows",
]


def raw_rows(conn: Connection, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of ``sql`` as plain DBAPI tuples, for the hot reads (10^5 rows), where SQLAlchemy's Row
    objects cost more than the query. Write ``?`` for parameters; datetimes are passed in the
    form each backend stores (SQLite: SQLAlchemy's text form)."""
    if conn.dialect.paramstyle != "qmark":
        sql = sql.replace("%", "%%").replace("?", "%s")
    if conn.dialect.name == "sqlite":
        params = tuple(p.isoformat(sep=" ", timespec="microseconds") if isinstance(p, dt.datetime) else p for p in params)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def finite_or_none(x: Any) -> Any:
    """NaN and infinities as None (JSON has no NaN), recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite_or_none(v) for v in x]
    return x


def typed_data_id(key: str) -> dict[str, Any]:
    """A stored data ID key back as a dict, integer dimensions as ints."""
    d = json.loads(key)
    return {k: (int(v) if k in INT_KEYS and v.lstrip("-").isdigit() else v) for k, v in d.items()}


def _metric_dict(r: Any) -> dict[str, Any]:
    return {
        "name": r.name,
        "package": r.package,
        "unit": r.unit,
        "description": r.description,
        "tags": r.tags or [],
        "reference": r.reference,
        "higher_is_better": r.higher_is_better,
    }


def _spec_dict(r: Any) -> dict[str, Any]:
    d = {"name": r.name, "metric": r.metric, "type": r.type, "metadata_query": r.metadata_query or {}, "tags": r.tags or []}
    if r.operator is not None:
        d["threshold"] = {"value": r.threshold, "unit": r.unit or "", "operator": r.operator}
    return d


def list_metrics(conn: Connection, with_values: bool = True) -> list[dict[str, Any]]:
    """Metrics, with the number of series (metric, data ID, dataset) each has."""
    count = sa.select(sa.func.count(series_t.c.id)).where(series_t.c.metric_id == metric_t.c.id).scalar_subquery()
    q = sa.select(metric_t, count.label("series")).order_by(metric_t.c.name)
    if with_values:
        q = q.where(count > 0)
    return [{**_metric_dict(r), "series": r.series} for r in conn.execute(q)]


def get_metric(conn: Connection, name: str) -> dict[str, Any] | None:
    r = conn.execute(sa.select(metric_t).where(metric_t.c.name == name)).first()
    return None if r is None else _metric_dict(r)


def specs_for(conn: Connection, metric: str) -> list[dict[str, Any]]:
    return [_spec_dict(r) for r in conn.execute(sa.select(spec_t).where(spec_t.c.metric == metric).order_by(spec_t.c.name))]


def specs_of(conn: Connection, metrics: list[str]) -> dict[str, list[dict[str, Any]]]:
    """`specs_for` of several metrics in one query (a submission's checks need those of each of its metrics)."""
    out: dict[str, list[dict[str, Any]]] = {m: [] for m in metrics}
    for r in conn.execute(sa.select(spec_t).where(spec_t.c.metric.in_(sorted(out))).order_by(spec_t.c.name)):
        out[r.metric].append(_spec_dict(r))
    return out


def applicable_specs(specs: list[dict[str, Any]], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Threshold specs whose metadata query the run's metadata satisfies, decided by the one spec
    engine (`surveyqa.metrics.specs.query_matches`, the rule the QA applies too)."""
    return [s for s in specs if "threshold" in s and query_matches(s.get("metadata_query"), meta)]


def _run_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "key": r.key,
        "format": r.format,
        "dataset": r.dataset,
        "pipeline": r.pipeline,
        "env_name": r.env_name,
        "ci_id": r.ci_id,
        "ci_url": r.ci_url,
        "time": r.time.isoformat() + "Z",
        "submitted": r.submitted.isoformat() + "Z",
        "repo": r.repo,
        "collection": r.collection,
    }


def list_runs(conn: Connection, dataset: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    q = sa.select(run_t).order_by(run_t.c.time.desc(), run_t.c.id.desc()).limit(limit).offset(offset)
    if dataset:
        q = q.where(run_t.c.dataset == dataset)
    return [_run_dict(r) for r in conn.execute(q)]


def _packages(conn: Connection, run_id: int) -> dict[str, dict[str, Any]]:
    q = sa.select(package_t).where(package_t.c.run_id == run_id).order_by(package_t.c.name)
    return {
        r.name: {"name": r.name, "version": r.version, "git_sha": r.git_sha, "git_url": r.git_url, "git_branch": r.git_branch}
        for r in conn.execute(q)
    }


def _values(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    q = (
        sa.select(value_t, metric_t.c.name.label("metric"), metric_t.c.unit, data_id_t.c.key.label("data_id"), series_t.c.dataset)
        .join(series_t, series_t.c.id == value_t.c.series_id)
        .join(metric_t, metric_t.c.id == series_t.c.metric_id)
        .join(data_id_t, data_id_t.c.id == series_t.c.data_id_id)
        .where(value_t.c.run_id == run_id)
        .order_by(metric_t.c.name, data_id_t.c.key)
    )
    return [
        {
            "metric": r.metric,
            "value": finite_or_none(r.value),
            "unit": r.unit,
            "data_id": typed_data_id(r.data_id),
            "series_id": r.series_id,
            "n": r.n,
            "identifier": r.identifier,
            "blob_refs": r.blob_refs or [],
            "level": r.level,
            "selection": r.selection,
            "aggregation": r.aggregation,
            "note": r.note,
        }
        for r in conn.execute(q)
    ]


def get_run(conn: Connection, run_id: int) -> dict[str, Any] | None:
    """A run: its metadata, packages, values and the code changes since the previous comparable run."""
    r = conn.execute(sa.select(run_t).where(run_t.c.id == run_id)).first()
    if r is None:
        return None
    prev = previous_run_id(conn, run_id)
    n_blobs = conn.execute(sa.select(sa.func.count()).select_from(blob_t).where(blob_t.c.run_id == run_id)).scalar()
    return {
        **_run_dict(r),
        "meta": finite_or_none(r.meta or {}),
        "config": r.config or {},
        "packages": _packages(conn, run_id),
        "values": _values(conn, run_id),
        "blobs": n_blobs,
        "previous_run": prev,
        "code_changes": code_changes(conn, prev, run_id) if prev else [],
        "changes": config_input_changes(conn, prev, run_id),
        "provenance_recorded": r.provenance is not None,
    }


def run_job(conn: Connection, run_id: int) -> dict[str, Any] | None:
    """The run as an lsst.verify Job (measurements, blobs, metrics, specs, meta), NaN as null."""
    r = conn.execute(sa.select(run_t).where(run_t.c.id == run_id)).first()
    if r is None:
        return None
    values = _values(conn, run_id)
    metric_names = r.job_metrics if r.job_metrics is not None else sorted({v["metric"] for v in values})
    metrics = {m.name: _metric_dict(m) for m in conn.execute(sa.select(metric_t).where(metric_t.c.name.in_(metric_names)))}
    specs = []
    if r.job_specs:
        rows = {s.name: s for s in conn.execute(sa.select(spec_t).where(spec_t.c.name.in_(r.job_specs)))}
        specs = [_spec_dict(rows[n]) for n in r.job_specs if n in rows]
    blobs = [finite_or_none(json.loads(b.data)) for b in conn.execute(sa.select(blob_t.c.data).where(blob_t.c.run_id == run_id).order_by(blob_t.c.id))]
    meta = dict(r.meta or {})
    meta["packages"] = _packages(conn, run_id)
    for p in meta["packages"].values():
        p["eups_version"] = p.pop("version")
    return {
        "measurements": [
            {"metric": v["metric"], "identifier": v["identifier"], "value": v["value"], "unit": v["unit"], "blob_refs": v["blob_refs"]}
            for v in values
        ],
        "blobs": blobs,
        "metrics": [{k: metrics[n][k] for k in ("name", "description", "unit", "tags", "reference")} for n in metric_names if n in metrics],
        "specs": specs,
        "meta": finite_or_none(meta),
    }


def previous_run_id(conn: Connection, run_id: int) -> int | None:
    """The latest earlier run on the same dataset (the comparable one for code changes)."""
    r = conn.execute(sa.select(run_t.c.dataset, run_t.c.time).where(run_t.c.id == run_id)).first()
    if r is None:
        return None
    q = (
        sa.select(run_t.c.id)
        .where(run_t.c.dataset == r.dataset)
        .where(sa.or_(run_t.c.time < r.time, sa.and_(run_t.c.time == r.time, run_t.c.id < run_id)))
        .order_by(run_t.c.time.desc(), run_t.c.id.desc())
        .limit(1)
    )
    return conn.execute(q).scalar()


def config_input_changes(conn: Connection, old_run: int | None, new_run: int) -> dict[str, Any] | None:
    """Config and input changes between two runs (`surveyqa.provenance.changes_summary`), or None
    when either run was submitted without its provenance record."""
    if old_run is None:
        return None
    from surveyqa.provenance.runs import changes_summary, run_changes

    records = dict(conn.execute(sa.select(run_t.c.id, run_t.c.provenance).where(run_t.c.id.in_([old_run, new_run]))).all())
    old, new = records.get(old_run), records.get(new_run)
    if not old or not new:
        return None
    return changes_summary(run_changes(old, new))


def code_changes(conn: Connection, old_run: int | None, new_run: int) -> list[dict[str, Any]]:
    """Packages added, removed, or with another version or git sha between two runs."""
    if old_run is None:
        return []
    old, new = _packages(conn, old_run), _packages(conn, new_run)
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None:
            out.append({"package": name, "change": "added", "new_version": b["version"], "new_sha": b["git_sha"]})
        elif b is None:
            out.append({"package": name, "change": "removed", "old_version": a["version"], "old_sha": a["git_sha"]})
        elif (a["version"], a["git_sha"]) != (b["version"], b["git_sha"]):
            out.append(
                {
                    "package": name,
                    "change": "changed",
                    "old_version": a["version"],
                    "new_version": b["version"],
                    "old_sha": a["git_sha"],
                    "new_sha": b["git_sha"],
                    "git_url": b["git_url"],
                }
            )
    return out


def find_series(conn: Connection, metric: str, dataset: str | None = None, data_id: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The series of ``metric`` whose data ID contains every ``data_id`` key/value (and dataset)."""
    q = (
        sa.select(series_t.c.id, series_t.c.dataset, data_id_t.c.key)
        .join(metric_t, metric_t.c.id == series_t.c.metric_id)
        .join(data_id_t, data_id_t.c.id == series_t.c.data_id_id)
        .where(metric_t.c.name == metric)
        .order_by(series_t.c.dataset, data_id_t.c.key)
    )
    if dataset:
        q = q.where(series_t.c.dataset == dataset)
    for k, v in (data_id or {}).items():
        item = data_id_item_t.alias()
        q = q.where(
            sa.exists().where(item.c.data_id_id == series_t.c.data_id_id, item.c.key == k, item.c.value == str(v))
        )
    return [{"series_id": r.id, "dataset": r.dataset, "data_id": typed_data_id(r.key)} for r in conn.execute(q)]


def series_points(conn: Connection, series_ids: list[int], limit: int | None = None) -> dict[int, list[dict[str, Any]]]:
    """Points of each series in time order: run id and time, value (metric unit), repo, collection.

    Built from plain tuples, with each run's fields made once and shared by its points in every
    series (a whole metric is ~10^5 points over ~10^3 runs).
    """
    out: dict[int, list[dict[str, Any]]] = {sid: [] for sid in series_ids}
    if not series_ids:
        return out
    # plain DBAPI rows: SQLAlchemy's Row objects were a third of the time of a 10^5-point view, and
    # the time comes from the run (the value's run_time is its copy, for the index) once per run.
    # The ids are integers from our own tables, written into the SQL as such.
    ids = ",".join(str(int(sid)) for sid in series_ids)
    rows = raw_rows(conn, f"SELECT series_id, run_id, value, n, note FROM value WHERE series_id IN ({ids}) ORDER BY series_id, run_time, run_id")
    runs: dict[int, tuple] = {}
    run_ids = sorted({r[1] for r in rows})
    for i in range(0, len(run_ids), 1000):
        chunk = run_ids[i : i + 1000]
        for rid, when, repo, collection, ci_id in conn.execute(
            sa.select(run_t.c.id, run_t.c.time, run_t.c.repo, run_t.c.collection, run_t.c.ci_id).where(run_t.c.id.in_(chunk))
        ):
            runs[rid] = (when.isoformat() + "Z", repo, collection, ci_id)
    isfinite = math.isfinite
    for sid, rid, value, n, note in rows:
        t, repo, collection, ci_id = runs[rid]
        out[sid].append(
            {
                "run_id": rid,
                "time": t,
                "value": value if value is None or isfinite(value) else None,
                "n": n,
                "note": note,
                "repo": repo,
                "collection": collection,
                "ci_id": ci_id,
            }
        )
    if limit:
        out = {k: v[-limit:] for k, v in out.items()}
    return out
