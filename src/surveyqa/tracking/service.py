"""The tracking service's use cases: submit a run, check it, and hand its alerts to delivery.

The web API, the CLI (``track submit --db``) and the benchmarks all call `TrackingService`.
It joins three parts with one job each: storage (`store`: a run's values and its pending check,
in one transaction), the alert policy (`policy`: what the run's values mean, written with the
claim of the pending check, in one transaction) and delivery (`delivery`: sending from the
outbox in the background, with retries). A crash between any two steps loses nothing: pending
checks are run again by `recover` (on start, in each delivery round, and when the same run is
submitted again), and deliveries stay in the outbox until sent.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from surveyqa.tracking import outbox, queries
from surveyqa.tracking.config import TrackingConfig, dashboard_link
from surveyqa.tracking.db import alert_t, metric_t, run_t, series_t
from surveyqa.tracking.delivery import Deliverer
from surveyqa.tracking.detect import Threshold
from surveyqa.tracking.ingest import NormalizedRun, from_submission, from_verify_job
from surveyqa.tracking.policy import AlertPolicy, info_query, thresholds_for
from surveyqa.tracking.schemas import Submission, VerifyJob
from surveyqa.tracking.store import StoredRun, TrackingStore

__all__ = ["TrackingService", "RECOVER_AFTER"]

#: Seconds after which a running server takes over a pending check nobody ran (its submitter died).
RECOVER_AFTER = 60.0

log = logging.getLogger(__name__)


class TrackingService:
    """Submissions, regression checks and alerts over one tracking database.

    Without a started `deliverer` (``start_delivery``), alerts are delivered inline after each
    submission (the CLI's ``track submit --db``); the web app starts it in the background.

    Parameters
    ----------
    store : TrackingStore
        Where runs, values, alerts and the outbox are kept.
    config : TrackingConfig
        The service's settings (database, alert channels, limits).
    """

    def __init__(self, store: TrackingStore, config: TrackingConfig):
        self.store = store
        self.config = config
        self.deliverer = Deliverer(store.engine, config, self.alert, store.write_lock,
                                   lambda first: self.recover(0.0 if first else RECOVER_AFTER))

    @classmethod
    def open(cls, config: TrackingConfig) -> TrackingService:
        return cls(TrackingStore.open(config.db), config)

    @property
    def engine(self) -> sa.engine.Engine:
        return self.store.engine

    def start_delivery(self) -> None:
        """Deliver (and recover pending checks) in a background thread from now on."""
        self.deliverer.start()

    def stop_delivery(self) -> None:
        self.deliverer.stop()

    # -- submission ---------------------------------------------------------------------------

    def submit_job(self, job: VerifyJob) -> dict[str, Any]:
        """Store an lsst.verify Job and check its series; see `submit_run`."""
        return self.submit_run(from_verify_job(job))

    def submit(self, submission: Submission) -> dict[str, Any]:
        """Store one of our submissions and check its series; see `submit_run`."""
        return self.submit_run(from_submission(submission))

    def submit_run(self, run: NormalizedRun) -> dict[str, Any]:
        """Store ``run`` (nothing if its key is known) and run its pending regression checks.

        A run whose key is known but whose checks never finished (the server died) gets them
        now: resubmitting repairs, it does not duplicate.

        Returns
        -------
        dict
            ``run_id``, ``created``, ``values``, ``alerts`` (ids of alerts opened) and ``url``.
        """
        stored: StoredRun = self.store.submit(run)
        alerts = self.check_run(stored.run_id)
        if alerts:
            self._hand_over()
        return {
            "run_id": stored.run_id,
            "created": stored.created,
            "values": stored.values,
            "alerts": alerts,
            "url": f"{self.config.base_url.rstrip('/')}/runs/{stored.run_id}",
        }

    def _hand_over(self) -> None:
        if self.deliverer.running:
            self.deliverer.wake()
        else:
            while self.deliverer.run_once():
                pass

    # -- checks -------------------------------------------------------------------------------

    def check_run(self, run_id: int) -> list[int]:
        """Run the pending checks of ``run_id``, if any are left; returns the alerts opened.

        The claim of the pending check, the alerts and their deliveries commit together, without
        waiting for the disk (`TrackingStore.lazy_commit_transaction` says why that loses nothing).
        """
        with self.store.write_lock(), self.store.lazy_commit_transaction() as conn:
            if not outbox.claim_check(conn, run_id):
                return []
            return AlertPolicy(conn, self.config).check_run(run_id)

    def recover(self, min_age: float = 0.0) -> list[int]:
        """Check every run whose checks were left pending (oldest first); returns alerts opened.

        ``min_age`` (seconds) leaves alone the checks a submission has just queued and is about to
        run itself (so that its answer lists the alerts it opened); the delivery worker passes 0
        at start, when every pending check is a crash's leftover, and `RECOVER_AFTER` later.
        """
        with self.engine.connect() as conn:
            pending = outbox.pending_checks(conn, min_age)
        opened = []
        for run_id in pending:
            log.warning("checking run %d, stored but left unchecked", run_id)
            opened.extend(self.check_run(run_id))
        return opened

    def pending(self) -> dict[str, int]:
        """Counts of pending checks and of deliveries by status."""
        with self.engine.connect() as conn:
            return outbox.outbox_counts(conn)

    def thresholds(self, conn: sa.Connection, metric: str, unit: str, meta: dict[str, Any]) -> list[Threshold]:
        """The specs of ``metric`` that apply to a run with ``meta``, converted to ``unit`` (`policy.thresholds_for`)."""
        return thresholds_for(conn, metric, unit, meta)

    # -- alerts -------------------------------------------------------------------------------

    def alert(self, alert_id: int) -> dict[str, Any] | None:
        """An alert as a dict (metric, data ID, dataset, checks, change, runs, code changes, links)."""
        with self.engine.connect() as conn:
            a = conn.execute(sa.select(alert_t).where(alert_t.c.id == alert_id)).first()
            if a is None:
                return None
            info = conn.execute(info_query().where(series_t.c.id == a.series_id)).one()
            deliveries = outbox.deliveries_of(conn, [a.id])[a.id]
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
            "changes": a.changes,
            "deliveries": deliveries,
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
