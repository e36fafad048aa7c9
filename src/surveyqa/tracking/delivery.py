"""Delivery of alerts from the outbox, in a background thread, with retries.

Why in the background: a submission must not wait for a mail server (a slow one would slow every
submission, an absent one would lose the alert). The submission only commits delivery rows
(`outbox.enqueue_deliveries`); this worker claims them, sends each (`alerts.Sender`), marks it
sent at once, and on failure schedules a retry with doubling back-off
(``delivery_backoff``, ``delivery_attempts``). Rows claimed by a server that died are taken
over after ``delivery_lease`` seconds. The worker also runs the service's recovery task (checks
left pending by a crash) before each round.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from surveyqa.tracking import outbox
from surveyqa.tracking.alerts import SEND_ERRORS, Sender
from surveyqa.tracking.config import TrackingConfig

__all__ = ["Deliverer"]

log = logging.getLogger(__name__)


class Deliverer:
    """Sends due deliveries; `start` runs it in a daemon thread, `run_once` does one round inline.

    Parameters
    ----------
    engine : Engine
    config : TrackingConfig
    render : callable
        Alert id -> the alert as a dict (what `alerts.format_alert` formats).
    lock : callable
        Returns the context manager serializing this process's writers (SQLite).
    recover : callable, optional
        Run before each round with ``first`` (True in the first round): the service's recovery
        of pending checks.
    """

    def __init__(self, engine: Engine, config: TrackingConfig, render: Callable[[int], dict[str, Any] | None],
                 lock: Callable[[], Any] = contextlib.nullcontext, recover: Callable[[bool], Any] | None = None):
        self.engine = engine
        self.config = config
        self.render = render
        self.lock = lock
        self.recover = recover
        self.worker = uuid.uuid4().hex
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if not self.running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="surveyqa-delivery", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (a submission just committed alerts)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        first = True
        while not self._stop.is_set():
            wait = self.config.delivery_interval
            try:
                if self.recover is not None:
                    self.recover(first)
                    first = False
                while self.run_once() and not self._stop.is_set():
                    pass
                with self.engine.connect() as conn:
                    due = outbox.seconds_to_next(conn)
                if due is not None:
                    wait = min(wait, max(due, 0.05))
            except Exception:  # noqa: BLE001 - the worker must outlive a database hiccup; it retries next round
                log.exception("delivery round failed; retrying in %.0f s", wait)
            self._wake.wait(wait)
            self._wake.clear()

    def run_once(self, limit: int = 200) -> int:
        """Claim and send up to ``limit`` due deliveries; returns how many were tried."""
        with self.lock(), self.engine.begin() as conn:
            rows = outbox.claim_deliveries(conn, self.worker, self.config.delivery_lease, limit)
        if not rows:
            return 0
        rendered: dict[int, dict[str, Any] | None] = {}
        with Sender(self.config) as sender:
            for row in rows:
                if row.alert_id not in rendered:
                    rendered[row.alert_id] = self.render(row.alert_id)
                error = None
                try:
                    sender.send(row.channel, row.target, rendered[row.alert_id])
                except SEND_ERRORS as exc:
                    error = str(exc) or type(exc).__name__
                    log.warning("could not deliver alert %d to %s %s (try %d): %s", row.alert_id, row.channel, row.target, row.attempts + 1, error)
                with self.lock(), self.engine.begin() as conn:
                    if error is None:
                        outbox.mark_sent(conn, row.id, self.worker)
                    else:
                        outbox.mark_failed(conn, row, self.worker, error, self.config.delivery_attempts, self.config.delivery_backoff)
        return len(rows)
