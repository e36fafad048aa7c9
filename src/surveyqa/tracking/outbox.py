"""The outbox: what is still to be checked and what is still to be delivered, kept in the database.

Why: alerts must survive a crash of the server and a slow or absent mail server. A run's values
and its *pending check* are committed together (`enqueue_check`, called by the store); the checks
take the pending row (`claim_check`) in the transaction that writes the alerts and one
*delivery* row per recipient (`enqueue_deliveries`). So after any crash the database holds either
the pending check (done again on restart or on resubmission) or all of its alerts, never a part.

Deliveries are claimed in batches by a worker id with a lease (`claim_deliveries`), marked sent
one by one right after sending, and retried with doubling back-off when sending fails. A crash
between sending and marking can repeat that one message; nothing is ever dropped.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from surveyqa.tracking.db import delivery_t, pending_check_t

__all__ = [
    "now",
    "enqueue_check",
    "claim_check",
    "pending_checks",
    "enqueue_deliveries",
    "claim_deliveries",
    "mark_sent",
    "mark_failed",
    "deliveries_of",
    "outbox_counts",
    "seconds_to_next",
]


def now() -> dt.datetime:
    """UTC now, naive (the tables store naive UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def enqueue_check(conn: Connection, run_id: int) -> None:
    """Record that ``run_id`` still needs its regression checks (in the run's own transaction)."""
    conn.execute(pending_check_t.insert().values(run_id=run_id, created=now()))


def claim_check(conn: Connection, run_id: int) -> bool:
    """Take the pending check of ``run_id`` inside the caller's transaction; False if none is left.

    The DELETE locks the row: a second claimer waits for the first one's commit and then finds
    nothing, so each run's checks are written once.
    """
    return conn.execute(pending_check_t.delete().where(pending_check_t.c.run_id == run_id)).rowcount == 1


def pending_checks(conn: Connection, min_age: float = 0.0) -> list[int]:
    """Runs stored but not checked yet, queued at least ``min_age`` seconds ago, oldest first."""
    q = sa.select(pending_check_t.c.run_id).order_by(pending_check_t.c.created, pending_check_t.c.run_id)
    if min_age > 0:
        q = q.where(pending_check_t.c.created <= now() - dt.timedelta(seconds=min_age))
    return list(conn.execute(q).scalars())


def enqueue_deliveries(conn: Connection, alert_id: int, recipients: list[tuple[str, str]]) -> None:
    """One pending delivery per recipient of ``alert_id`` (in the transaction that writes the alert)."""
    if recipients:
        t = now()
        conn.execute(
            delivery_t.insert(),
            [{"alert_id": alert_id, "channel": c, "target": tg, "status": "pending", "attempts": 0, "next_attempt": t} for c, tg in recipients],
        )


def claim_deliveries(conn: Connection, worker: str, lease: float, limit: int = 200) -> list[Any]:
    """Mark up to ``limit`` due deliveries as being sent by ``worker`` and return them.

    Due: pending with ``next_attempt`` passed, or claimed longer than ``lease`` seconds ago by a
    worker that never finished (it crashed). The UPDATE re-checks the status, so two workers never
    claim the same row.
    """
    t = now()
    due = sa.or_(
        sa.and_(delivery_t.c.status == "pending", delivery_t.c.next_attempt <= t),
        sa.and_(delivery_t.c.status == "sending", delivery_t.c.claimed_at < t - dt.timedelta(seconds=lease)),
    )
    ids = list(conn.execute(sa.select(delivery_t.c.id).where(due).order_by(delivery_t.c.id).limit(limit)).scalars())
    if not ids:
        return []
    conn.execute(delivery_t.update().where(delivery_t.c.id.in_(ids), due).values(status="sending", claimed_by=worker, claimed_at=t))
    return conn.execute(
        sa.select(delivery_t).where(delivery_t.c.id.in_(ids), delivery_t.c.claimed_by == worker, delivery_t.c.status == "sending").order_by(delivery_t.c.id)
    ).all()


def mark_sent(conn: Connection, delivery_id: int, worker: str) -> None:
    conn.execute(
        delivery_t.update()
        .where(delivery_t.c.id == delivery_id, delivery_t.c.claimed_by == worker)
        .values(status="sent", attempts=delivery_t.c.attempts + 1, sent_at=now(), last_error=None)
    )


def mark_failed(conn: Connection, row: Any, worker: str, error: str, max_attempts: int, backoff: float) -> None:
    """Schedule a retry after ``backoff * 2**attempts`` seconds (at most an hour), or give up."""
    attempts = row.attempts + 1
    delay = min(backoff * 2 ** (attempts - 1), 3600.0)
    conn.execute(
        delivery_t.update()
        .where(delivery_t.c.id == row.id, delivery_t.c.claimed_by == worker)
        .values(
            status="failed" if attempts >= max_attempts else "pending",
            attempts=attempts,
            next_attempt=now() + dt.timedelta(seconds=delay),
            last_error=error[:300],
            claimed_by=None,
        )
    )


def deliveries_of(conn: Connection, alert_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The delivery state of each alert: channel, target, ok, status, attempts, error, sent time."""
    out: dict[int, list[dict[str, Any]]] = {a: [] for a in alert_ids}
    if not alert_ids:
        return out
    for r in conn.execute(sa.select(delivery_t).where(delivery_t.c.alert_id.in_(alert_ids)).order_by(delivery_t.c.id)):
        d = {"channel": r.channel, "target": r.target, "ok": r.status == "sent", "status": r.status, "attempts": r.attempts}
        if r.last_error:
            d["error"] = r.last_error
        if r.sent_at:
            d["sent"] = r.sent_at.isoformat() + "Z"
        out[r.alert_id].append(d)
    return out


def outbox_counts(conn: Connection) -> dict[str, int]:
    """Pending checks and deliveries by status: what `/api/outbox` reports."""
    counts = {"pending_checks": conn.execute(sa.select(sa.func.count()).select_from(pending_check_t)).scalar_one()}
    for status in ("pending", "sending", "sent", "failed"):
        counts[f"deliveries_{status}"] = 0
    for status, n in conn.execute(sa.select(delivery_t.c.status, sa.func.count()).group_by(delivery_t.c.status)):
        counts[f"deliveries_{status}"] = n
    return counts


def seconds_to_next(conn: Connection) -> float | None:
    """Seconds until the next pending delivery is due (0 if one is due now), None if none is pending."""
    nxt = conn.execute(sa.select(sa.func.min(delivery_t.c.next_attempt)).where(delivery_t.c.status == "pending")).scalar()
    return None if nxt is None else max(0.0, (nxt - now()).total_seconds())
