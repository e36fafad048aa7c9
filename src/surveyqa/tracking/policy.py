"""The alert policy: from a stored run's series to the alerts it opens, joins or closes.

Why a module of its own: storage (`store`) and delivery (`delivery`) must not decide what is a
regression, and the policy must not know how values are stored or alerts sent. It works inside
the caller's transaction, so that the alerts and their deliveries commit together with the
claim of the run's pending check (`outbox.claim_check`), or not at all.

One alert per regression: while a series has an open alert, further findings on it join that
alert instead of sending another; a finding whose first bad run is within ``min_size`` points of
an earlier alert's is the same regression seen again. An alert closes when the newest value is
back: finite, passing its specs and nearer the level before the change than after it.
Reads are batched: one query for the latest values of all series of a chunk, one for their
alerts; the change-point screen runs on all series at once (`detect.check_many`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from surveyqa.errors import SurveyQAError
from surveyqa.metrics.specs import Specification
from surveyqa.metrics.units import parse_unit
from surveyqa.tracking import queries
from surveyqa.tracking.alerts import recipients_for
from surveyqa.tracking.config import TrackingConfig
from surveyqa.tracking.db import alert_t, data_id_t, metric_t, run_t, series_t, value_t
from surveyqa.tracking.detect import Finding, Threshold, check_many, passes
from surveyqa.tracking.outbox import enqueue_deliveries, now

__all__ = ["AlertPolicy", "thresholds_for"]

log = logging.getLogger(__name__)
_CHUNK = 500


def thresholds_for(conn: Connection, metric: str, unit: str, meta: dict[str, Any], specs: list[dict[str, Any]] | None = None) -> list[Threshold]:
    """The specs of ``metric`` that apply to a run with ``meta``, converted to ``unit``.

    Applicability and conversion are the spec engine's (`surveyqa.metrics.specs`), as in the QA.
    ``specs``: the metric's stored specs when the caller has them (`queries.specs_of`).
    """
    out = []
    target = parse_unit(unit)
    for s in queries.applicable_specs(queries.specs_for(conn, metric) if specs is None else specs, meta or {}):
        try:
            spec = Specification.from_dict(s)
            value = spec.threshold_in(target)
        except SurveyQAError as exc:  # a spec in an unrelated unit cannot be drawn or checked
            log.debug("%s", exc.message)
            continue
        out.append(Threshold(spec.name, spec.operator, value))
    return out


def info_query() -> sa.Select:
    """Metric name, unit, direction and data ID key of series (filter by ``series_t.c.id``)."""
    return (
        sa.select(series_t.c.id, series_t.c.dataset, metric_t.c.name, metric_t.c.unit, metric_t.c.higher_is_better, data_id_t.c.key)
        .join(metric_t, metric_t.c.id == series_t.c.metric_id)
        .join(data_id_t, data_id_t.c.id == series_t.c.data_id_id)
    )


class AlertPolicy:
    """Decide and record the alerts of one run, inside one transaction.

    Parameters
    ----------
    conn : Connection
        In a transaction; nothing is committed here.
    config : TrackingConfig
    """

    def __init__(self, conn: Connection, config: TrackingConfig):
        self.conn = conn
        self.config = config
        self._recipients: dict[str, list[tuple[str, str]]] = {}
        self._changes: dict[tuple, Any] = {}  # per (last good, first bad) pair: one look-up per run

    def check_run(self, run_id: int) -> list[int]:
        """Check every series that got a value in ``run_id`` and the dataset's silent series."""
        conn = self.conn
        run = conn.execute(sa.select(run_t).where(run_t.c.id == run_id)).one()
        series_ids = sorted(conn.execute(sa.select(value_t.c.series_id).where(value_t.c.run_id == run_id)).scalars())
        log.info("checking run %d (%d series)", run_id, len(series_ids))
        opened: list[int] = []
        thresholds: dict[str, list[Threshold]] = {}
        depth = self.config.window + self.config.min_size + 2
        since = (self._since(run, depth - 1), self._since(run, 3 * depth))
        for i in range(0, len(series_ids), _CHUNK):
            chunk = series_ids[i : i + _CHUNK]
            infos, rows, open_alerts, earlier = self._load(chunk, run, since)
            units = {info.name: info.unit for info in infos.values() if info.name not in thresholds}
            for name, specs in (queries.specs_of(conn, list(units)) if units else {}).items():
                thresholds[name] = thresholds_for(conn, name, units[name], run.meta or {}, specs)
            heads = [sid for sid in chunk if rows[sid] and rows[sid][-1][1] == run.id]  # late runs: nothing new at the head
            values = {sid: np.array([r[2] for r in rows[sid]], dtype=float) for sid in heads}  # None (not computed): NaN
            findings = check_many([(values[sid], thresholds[infos[sid].name], infos[sid].higher_is_better) for sid in heads], self.config)
            for sid, found in zip(heads, findings, strict=True):
                opened.extend(self._apply(infos[sid], [r[1] for r in rows[sid]], values[sid], found, thresholds[infos[sid].name], open_alerts.get(sid), earlier[sid]))
        opened.extend(self._check_stale(run, set(series_ids)))
        return opened

    # -- reads ---------------------------------------------------------------------------------

    def _since(self, run: Any, runs_back: int) -> dt.datetime:
        """The time of the ``runs_back``-th latest run of the run's dataset (the oldest that can matter)."""
        return self.conn.execute(
            sa.select(run_t.c.time).where(run_t.c.dataset == run.dataset, run_t.c.time <= run.time)
            .order_by(run_t.c.time.desc()).offset(runs_back).limit(1)
        ).scalar() or dt.datetime(1, 1, 1)

    def _load(self, chunk: list[int], run: Any, since: tuple[dt.datetime, dt.datetime]) -> tuple:
        """Series info, the latest ``depth`` (series id, run id, value) of each series, and their alerts.

        Dense series (a value in each of the dataset's latest ``depth`` runs) come from one plain
        index range scan; only the others need the ranked query over three times as many runs.
        """
        conn = self.conn
        depth = self.config.window + self.config.min_size + 2
        near, far = since
        infos = {r.id: r for r in conn.execute(info_query().where(series_t.c.id.in_(chunk)))}
        ids = ",".join(str(int(sid)) for sid in chunk)
        sql = f"SELECT series_id, run_id, value FROM value WHERE series_id IN ({ids}) AND run_time >= ? ORDER BY series_id, run_time, run_id"
        rows = _by_series(queries.raw_rows(conn, sql, (near,)), chunk)
        sparse = [sid for sid in chunk if len(rows[sid]) < depth]
        for sid in chunk:
            rows[sid] = rows[sid][-depth:]
        if sparse and far < near:
            ranked = (
                sa.select(
                    value_t.c.series_id,
                    value_t.c.run_id,
                    value_t.c.value,
                    value_t.c.run_time,
                    sa.func.row_number()
                    .over(partition_by=value_t.c.series_id, order_by=(value_t.c.run_time.desc(), value_t.c.run_id.desc()))
                    .label("rank"),
                )
                .where(value_t.c.series_id.in_(sparse), value_t.c.run_time >= far)
                .subquery()
            )
            q = sa.select(ranked.c.series_id, ranked.c.run_id, ranked.c.value).where(ranked.c.rank <= depth)
            q = q.order_by(ranked.c.series_id, ranked.c.run_time, ranked.c.run_id)
            rows.update(_by_series([tuple(r) for r in conn.execute(q)], sparse))
        open_alerts: dict[int, Any] = {}
        earlier: dict[int, list[int]] = {sid: [] for sid in chunk}
        for a in conn.execute(sa.select(alert_t).where(alert_t.c.series_id.in_(chunk))):
            earlier[a.series_id].append(a.first_bad_run_id)
            if a.status == "open":
                open_alerts[a.series_id] = a
        return infos, rows, open_alerts, earlier

    # -- decisions -----------------------------------------------------------------------------

    def _apply(self, info: Any, run_ids: list[int], values: np.ndarray, findings: list[Finding], limits: list[Threshold],
               open_alert: Any, earlier: list[int]) -> list[int]:
        close = open_alert is not None and not findings and _recovered(values[-1], open_alert, limits)
        if close:
            self.conn.execute(alert_t.update().where(alert_t.c.id == open_alert.id).values(status="closed", closed=now()))
            log.info("alert %d closed: %s recovered", open_alert.id, info.name)
            open_alert = None
        opened = []
        for f in findings:
            if open_alert is not None:
                if f.check not in open_alert.checks:
                    checks = [*open_alert.checks, f.check]
                    self.conn.execute(alert_t.update().where(alert_t.c.id == open_alert.id).values(checks=checks))
                    open_alert = SimpleNamespace(id=open_alert.id, checks=checks)
                continue
            position = {rid: i for i, rid in enumerate(run_ids)}
            if any(position.get(b) is not None and abs(position[b] - f.first_bad) <= self.config.min_size for b in earlier):
                continue  # the same regression, seen again
            first_bad = run_ids[f.first_bad]
            last_good = run_ids[f.last_good] if f.last_good is not None else None
            new_id = self._open(info, [f.check], first_bad, last_good, f.before, f.after, f"{info.name} {f.check}: {f.detail}")
            opened.append(new_id)
            earlier.append(first_bad)
            open_alert = SimpleNamespace(id=new_id, checks=[f.check])
        return opened

    def _open(self, info: Any, checks: list[str], first_bad: int, last_good: int | None, before: float | None,
              after: float | None, message: str) -> int:
        """Insert an alert and its pending deliveries."""
        changes = self._code_changes(last_good, first_bad)
        recorded = self._config_input_changes(last_good, first_bad)
        alert_id = self.conn.execute(
            alert_t.insert()
            .values(series_id=info.id, status="open", checks=checks, first_bad_run_id=first_bad, last_good_run_id=last_good,
                    before=before, after=after, message=message, code_changes=changes, changes=recorded, deliveries=[],
                    created=now())
            .returning(alert_t.c.id)
        ).scalar_one()
        if info.name not in self._recipients:
            self._recipients[info.name] = recipients_for(self.conn, self.config, info.name)
        enqueue_deliveries(self.conn, alert_id, self._recipients[info.name])
        log.warning("alert %d: %s (%d recipients)", alert_id, message, len(self._recipients[info.name]))
        return alert_id

    def _config_input_changes(self, last_good: int | None, first_bad: int) -> dict | None:
        if last_good is None:
            return None
        key = ("recorded", last_good, first_bad)
        if key not in self._changes:
            self._changes[key] = queries.config_input_changes(self.conn, last_good, first_bad)
        return self._changes[key]

    def _code_changes(self, last_good: int | None, first_bad: int) -> list:
        if last_good is None:
            return []
        key = (last_good, first_bad)
        if key not in self._changes:
            self._changes[key] = queries.code_changes(self.conn, last_good, first_bad)
        return self._changes[key]

    def _check_stale(self, run: Any, fresh: set[int]) -> list[int]:
        """Series of the run's dataset that got no value for ``stale_after_days`` while runs went on.

        Looks at series whose latest value up to this run is between two and one
        ``stale_after_days`` old: older silences were found by earlier runs. The latest value of
        each series of the dataset not in this run is one index probe (``ix_value_series_time_value``);
        scanning the values of the dataset's runs over those two periods instead cost more than
        the rest of the checks on PostgreSQL.
        """
        conn = self.conn
        stale = dt.timedelta(days=self.config.stale_after_days)
        cutoff = run.time - stale
        latest = (
            sa.select(sa.func.max(value_t.c.run_time))
            .where(value_t.c.series_id == series_t.c.id, value_t.c.run_time <= run.time)
            .scalar_subquery()
        )
        quiet = (
            sa.select(series_t.c.id, latest.label("latest"))
            .where(series_t.c.dataset == run.dataset, series_t.c.id.not_in(sa.select(value_t.c.series_id).where(value_t.c.run_id == run.id)))
            .subquery()
        )
        last = sa.select(sa.func.max(value_t.c.run_time)).where(value_t.c.series_id == quiet.c.id).scalar_subquery()
        q = (
            sa.select(quiet.c.id, last.label("last"))
            .where(quiet.c.latest >= cutoff - stale, quiet.c.latest < cutoff)
            .order_by(quiet.c.id)
        )
        opened = []
        for r in conn.execute(q).all():
            if r.id in fresh:
                continue
            if conn.execute(sa.select(alert_t.c.id).where(alert_t.c.series_id == r.id, alert_t.c.status == "open")).first():
                continue
            info = conn.execute(info_query().where(series_t.c.id == r.id)).one()
            last_run = conn.execute(
                sa.select(value_t.c.run_id).where(value_t.c.series_id == r.id).order_by(value_t.c.run_time.desc()).limit(1)
            ).scalar()
            days = (run.time - r.last).total_seconds() / 86400
            message = f"{info.name} no_data: no value for {days:.1f} days while dataset {run.dataset} got runs"
            opened.append(self._open(info, ["no_data"], run.id, last_run, None, None, message))
        return opened


def _by_series(rows: list[tuple], series_ids: list[int]) -> dict[int, list[tuple]]:
    """The rows of each of ``series_ids`` (sorted), from rows sorted by series id first.

    Slices found by bisection: a submission reads ~45,000 rows, and appending them one by one
    to per-series lists was a tenth of its checks.
    """
    keys = [r[0] for r in rows]
    out, start = {}, 0
    for sid in series_ids:
        start = bisect.bisect_left(keys, sid, start)
        end = bisect.bisect_right(keys, sid, start)
        out[sid] = rows[start:end]
        start = end
    return out


def _recovered(value: float, alert: Any, thresholds: list[Threshold]) -> bool:
    if not np.isfinite(value) or any(not passes(value, t) for t in thresholds):
        return False
    if alert.before is None or alert.after is None:
        return True
    return abs(value - alert.before) <= abs(value - alert.after)
