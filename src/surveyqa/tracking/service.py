"""The tracking service's use cases: submit a run, check its series, raise and deliver alerts.

The web API, the CLI (``track submit --db``) and the benchmarks all call `TrackingService`;
it joins the store (database), the pure checks (`detect`) and delivery (`alerts`).
One alert per regression: while a series has an open alert, further findings on it join that
alert instead of sending another; a finding whose first bad run is within ``min_size`` points of
an earlier alert's is the same regression seen again. An alert closes when the newest value is
back: finite, passing its specs and nearer the level before the change than after it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import sqlalchemy as sa

from surveyqa.errors import SurveyQAError
from surveyqa.metrics.specs import Specification
from surveyqa.metrics.units import parse_unit
from surveyqa.tracking import queries
from surveyqa.tracking.alerts import deliver, recipients_for
from surveyqa.tracking.config import TrackingConfig, dashboard_link
from surveyqa.tracking.db import alert_t, data_id_t, metric_t, run_t, series_t, value_t
from surveyqa.tracking.detect import Finding, Threshold, check_series, passes
from surveyqa.tracking.ingest import NormalizedRun, from_submission, from_verify_job
from surveyqa.tracking.schemas import Submission, VerifyJob
from surveyqa.tracking.store import StoredRun, TrackingStore

__all__ = ["TrackingService"]

log = logging.getLogger(__name__)


class TrackingService:
    """Submissions, regression checks and alerts over one tracking database.

    Parameters
    ----------
    store : TrackingStore
    config : TrackingConfig
    """

    def __init__(self, store: TrackingStore, config: TrackingConfig):
        self.store = store
        self.config = config

    @classmethod
    def open(cls, config: TrackingConfig) -> TrackingService:
        return cls(TrackingStore.open(config.db), config)

    @property
    def engine(self) -> sa.engine.Engine:
        return self.store.engine

    # -- submission ---------------------------------------------------------------------------

    def submit_job(self, job: VerifyJob) -> dict[str, Any]:
        """Store an lsst.verify Job and check its series; see `submit_run`."""
        return self.submit_run(from_verify_job(job))

    def submit(self, submission: Submission) -> dict[str, Any]:
        """Store one of our submissions and check its series; see `submit_run`."""
        return self.submit_run(from_submission(submission))

    def submit_run(self, run: NormalizedRun) -> dict[str, Any]:
        """Store ``run`` (nothing if its key is known) and run the regression checks on it.

        Returns
        -------
        dict
            ``run_id``, ``created``, ``values``, ``alerts`` (ids of alerts opened) and ``url``.
        """
        stored: StoredRun = self.store.submit(run)
        alerts: list[int] = []
        if stored.created:
            alerts = self.check_run(stored.run_id, stored.series_ids)
        return {
            "run_id": stored.run_id,
            "created": stored.created,
            "values": stored.values,
            "alerts": alerts,
            "url": f"{self.config.base_url.rstrip('/')}/runs/{stored.run_id}",
        }

    # -- checks -------------------------------------------------------------------------------

    def check_run(self, run_id: int, series_ids: list[int]) -> list[int]:
        """Check every series that got a value in ``run_id`` and the dataset's silent series.

        Reads are batched (one query for the latest ``window`` values of all series, one for
        their open alerts); only series with something to record are written.
        """
        opened: list[int] = []
        with self.store.write_lock():
            with self.engine.connect() as conn:
                run = conn.execute(sa.select(run_t).where(run_t.c.id == run_id)).one()
                batch = self._load_batch(conn, run, series_ids)
            for sid in series_ids:
                opened.extend(self._check_series(sid, run, *batch))
            opened.extend(self._check_stale(run, set(series_ids)))
        for aid in opened:
            self._deliver(aid)
        return opened

    def _load_batch(self, conn: sa.Connection, run: Any, series_ids: list[int]) -> tuple:
        depth = self.config.window + self.config.min_size + 2
        infos, rows, open_alerts, earlier = {}, {sid: [] for sid in series_ids}, {}, {sid: [] for sid in series_ids}
        thresholds: dict[str, list[Threshold]] = {}
        # the checks look at the latest `window` values: read only the runs of this dataset that can hold them
        since = conn.execute(
            sa.select(run_t.c.time).where(run_t.c.dataset == run.dataset, run_t.c.time <= run.time)
            .order_by(run_t.c.time.desc()).offset(3 * depth).limit(1)
        ).scalar() or dt.datetime(1, 1, 1)
        for i in range(0, len(series_ids), 500):
            chunk = series_ids[i : i + 500]
            for r in conn.execute(self._info_query().where(series_t.c.id.in_(chunk))):
                infos[r.id] = r
                if r.name not in thresholds:
                    thresholds[r.name] = self.thresholds(conn, r.name, r.unit, run.meta or {})
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
                .where(value_t.c.series_id.in_(chunk))
                .where(value_t.c.run_time >= since)
                .subquery()
            )
            q = sa.select(ranked).where(ranked.c.rank <= depth).order_by(ranked.c.series_id, ranked.c.run_time, ranked.c.run_id)
            for r in conn.execute(q):
                rows[r.series_id].append(r)
            for a in conn.execute(sa.select(alert_t).where(alert_t.c.series_id.in_(chunk))):
                earlier[a.series_id].append(a.first_bad_run_id)
                if a.status == "open":
                    open_alerts[a.series_id] = a
        return infos, rows, thresholds, open_alerts, earlier

    def _info_query(self) -> sa.Select:
        return (
            sa.select(series_t.c.id, series_t.c.dataset, metric_t.c.name, metric_t.c.unit, metric_t.c.higher_is_better, data_id_t.c.key)
            .join(metric_t, metric_t.c.id == series_t.c.metric_id)
            .join(data_id_t, data_id_t.c.id == series_t.c.data_id_id)
        )

    def _series_info(self, conn: sa.Connection, sid: int) -> Any:
        return conn.execute(self._info_query().where(series_t.c.id == sid)).one()

    def thresholds(self, conn: sa.Connection, metric: str, unit: str, meta: dict[str, Any]) -> list[Threshold]:
        """The specs of ``metric`` that apply to a run with ``meta``, converted to ``unit``.

        Applicability and conversion are the spec engine's (`surveyqa.metrics.specs`), as in the QA.
        """
        out = []
        target = parse_unit(unit)
        for s in queries.applicable_specs(queries.specs_for(conn, metric), meta or {}):
            try:
                spec = Specification.from_dict(s)
                value = spec.threshold_in(target)
            except SurveyQAError as exc:  # a spec in an unrelated unit cannot be drawn or checked
                log.debug("%s", exc.message)
                continue
            out.append(Threshold(spec.name, spec.operator, value))
        return out

    def _check_series(self, sid: int, run: Any, infos: dict, rows: dict, thresholds: dict, open_alerts: dict, earlier: dict) -> list[int]:
        info = infos[sid]
        series_rows = rows[sid]
        run_ids = [r.run_id for r in series_rows]
        if not run_ids or run_ids[-1] != run.id:
            return []  # a late run, older than the newest value: nothing new at the head of the series
        values = np.array([np.nan if r.value is None else r.value for r in series_rows], dtype=float)
        limits = thresholds[info.name]
        open_alert = open_alerts.get(sid)
        findings = check_series(values, self.config, limits, info.higher_is_better)
        close = open_alert is not None and not findings and self._recovered(values[-1], open_alert, limits)
        if not findings and not close:
            return []
        opened = []
        with self.engine.begin() as conn:
            if close:
                conn.execute(
                    alert_t.update()
                    .where(alert_t.c.id == open_alert.id)
                    .values(status="closed", closed=dt.datetime.now(dt.UTC).replace(tzinfo=None))
                )
                log.info("alert %d closed: %s recovered", open_alert.id, info.name)
                open_alert = None
            for f in findings:
                new_id = self._record(conn, info, f, run_ids, open_alert, earlier[sid])
                if new_id is not None:
                    opened.append(new_id)
                    earlier[sid].append(run_ids[f.first_bad])
                    open_alert = conn.execute(sa.select(alert_t).where(alert_t.c.id == new_id)).one()
        return opened

    @staticmethod
    def _recovered(value: float, alert: Any, thresholds: list[Threshold]) -> bool:
        if not np.isfinite(value) or any(not passes(value, t) for t in thresholds):
            return False
        if alert.before is None or alert.after is None:
            return True
        return abs(value - alert.before) <= abs(value - alert.after)

    def _record(self, conn: sa.Connection, info: Any, f: Finding, run_ids: list[int], open_alert: Any, earlier: list[int]) -> int | None:
        first_bad = run_ids[f.first_bad]
        last_good = run_ids[f.last_good] if f.last_good is not None else None
        if open_alert is not None:
            if f.check not in open_alert.checks:
                conn.execute(alert_t.update().where(alert_t.c.id == open_alert.id).values(checks=[*open_alert.checks, f.check]))
            return None
        position = {rid: i for i, rid in enumerate(run_ids)}
        for first_bad_run in earlier:
            pos = position.get(first_bad_run)
            if pos is not None and abs(pos - f.first_bad) <= self.config.min_size:
                return None  # the same regression, seen again
        changes = queries.code_changes(conn, last_good, first_bad) if last_good else []
        message = f"{info.name} {f.check}: {f.detail}"
        return conn.execute(
            alert_t.insert()
            .values(
                series_id=info.id,
                status="open",
                checks=[f.check],
                first_bad_run_id=first_bad,
                last_good_run_id=last_good,
                before=f.before,
                after=f.after,
                message=message,
                code_changes=changes,
                deliveries=[],
                created=dt.datetime.now(dt.UTC).replace(tzinfo=None),
            )
            .returning(alert_t.c.id)
        ).scalar_one()

    def _check_stale(self, run: Any, fresh: set[int]) -> list[int]:
        """Series of the run's dataset that got no value for ``stale_after_days`` while runs went on.

        Looks at series that had values between two and one ``stale_after_days`` before this run
        and none since: older silences were found by earlier runs.
        """
        stale = dt.timedelta(days=self.config.stale_after_days)
        cutoff = run.time - stale

        def series_between(lo: dt.datetime, hi: dt.datetime) -> sa.Select:
            runs = sa.select(run_t.c.id).where(run_t.c.dataset == run.dataset, run_t.c.time >= lo, run_t.c.time <= hi)
            return sa.select(value_t.c.series_id).where(value_t.c.run_id.in_(runs)).distinct()

        last = sa.func.max(value_t.c.run_time)
        q = (
            sa.select(value_t.c.series_id.label("id"), last.label("last"))
            .where(value_t.c.series_id.in_(series_between(cutoff - stale, cutoff - dt.timedelta(microseconds=1))))
            .where(value_t.c.series_id.not_in(series_between(cutoff, run.time)))
            .group_by(value_t.c.series_id)
        )
        opened = []
        with self.engine.begin() as conn:
            for r in conn.execute(q).all():
                if r.id in fresh:
                    continue
                if conn.execute(sa.select(alert_t.c.id).where(alert_t.c.series_id == r.id, alert_t.c.status == "open")).first():
                    continue
                info = self._series_info(conn, r.id)
                last_run = conn.execute(
                    sa.select(value_t.c.run_id).where(value_t.c.series_id == r.id).order_by(value_t.c.run_time.desc()).limit(1)
                ).scalar()
                days = (run.time - r.last).total_seconds() / 86400
                opened.append(
                    conn.execute(
                        alert_t.insert()
                        .values(
                            series_id=r.id,
                            status="open",
                            checks=["no_data"],
                            first_bad_run_id=run.id,
                            last_good_run_id=last_run,
                            message=f"{info.name} no_data: no value for {days:.1f} days while dataset {run.dataset} got runs",
                            code_changes=queries.code_changes(conn, last_run, run.id),
                            deliveries=[],
                            created=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                        )
                        .returning(alert_t.c.id)
                    ).scalar_one()
                )
        return opened

    # -- alerts -------------------------------------------------------------------------------

    def alert(self, alert_id: int) -> dict[str, Any] | None:
        """An alert as a dict (metric, data ID, dataset, checks, change, runs, code changes, links)."""
        with self.engine.connect() as conn:
            a = conn.execute(sa.select(alert_t).where(alert_t.c.id == alert_id)).first()
            if a is None:
                return None
            info = self._series_info(conn, a.series_id)
            bad = conn.execute(sa.select(run_t).where(run_t.c.id == a.first_bad_run_id)).first()
        data_id = queries.typed_data_id(info.key)
        base = self.config.base_url.rstrip("/")
        return {
            "id": a.id,
            "status": a.status,
            "metric": info.name,
            "unit": info.unit,
            "data_id": data_id,
            "dataset": info.dataset,
            "series_id": a.series_id,
            "checks": list(a.checks),
            "before": a.before,
            "after": a.after,
            "detail": a.message,
            "last_good_run": a.last_good_run_id,
            "first_bad_run": a.first_bad_run_id,
            "code_changes": a.code_changes or [],
            "deliveries": a.deliveries or [],
            "created": a.created.isoformat() + "Z",
            "closed": a.closed.isoformat() + "Z" if a.closed else None,
            "url": f"{base}/runs/{a.first_bad_run_id}",
            "dashboard": dashboard_link(self.config, info.name, bad.repo, bad.collection, bad.id, data_id) if bad else None,
        }

    def list_alerts(self, status: str | None = None, metric: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(alert_t.c.id).order_by(alert_t.c.id.desc()).limit(limit)
        if status:
            q = q.where(alert_t.c.status == status)
        if metric:
            q = q.join(series_t, series_t.c.id == alert_t.c.series_id).join(metric_t, metric_t.c.id == series_t.c.metric_id)
            q = q.where(metric_t.c.name == metric)
        with self.engine.connect() as conn:
            ids = conn.execute(q).scalars().all()
        return [self.alert(i) for i in ids]

    def _deliver(self, alert_id: int) -> None:
        alert = self.alert(alert_id)
        with self.engine.connect() as conn:
            recipients = recipients_for(conn, self.config, alert["metric"])
        results = deliver(self.config, recipients, alert)
        with self.engine.begin() as conn:
            conn.execute(alert_t.update().where(alert_t.c.id == alert_id).values(deliveries=results))
        log.warning("alert %d: %s (%d recipients)", alert_id, alert["detail"], len(recipients))
