"""Alert delivery: who gets an alert, what it says, and sending it by SMTP or webhook.

An alert names the metric, the data ID and dataset, the size of the change (in the metric's
unit and in percent), the last good and first bad runs and the code changes between them, and
links to the tracking view and the drill-down dashboard. Subscribers of the metric (``*``
patterns allowed) get it; metrics of the SRD packages (``validate_drp``) also go to the
configured stakeholders. Webhooks get Slack-compatible JSON (``text`` plus ``blocks``).
"""

from __future__ import annotations

import fnmatch
import logging
import smtplib
from email.message import EmailMessage
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from surveyqa.tracking.config import TrackingConfig
from surveyqa.tracking.db import subscription_t

__all__ = ["recipients_for", "format_alert", "send_email", "send_webhook", "Sender", "SEND_ERRORS"]

#: What a failed send raises: recorded on the delivery and retried, never raised to a submitter.
SEND_ERRORS = (OSError, RuntimeError, smtplib.SMTPException, httpx.HTTPError)

log = logging.getLogger(__name__)


def recipients_for(conn: Connection, config: TrackingConfig, metric: str) -> list[tuple[str, str]]:
    """(channel, target) pairs for ``metric``: its subscriptions, plus stakeholders for SRD metrics."""
    out: list[tuple[str, str]] = []
    for r in conn.execute(sa.select(subscription_t).order_by(subscription_t.c.id)):
        if fnmatch.fnmatchcase(metric, r.metric):
            out.append((r.channel, r.target))
    if metric.split(".", 1)[0] in config.srd_packages:
        for target in config.stakeholders:
            out.append(("webhook" if target.startswith(("http://", "https://")) else "email", target))
    return list(dict.fromkeys(out))


def _fmt(x: float | None, unit: str) -> str:
    return "n/a" if x is None else f"{x:.6g} {unit}".strip()


def format_alert(alert: dict[str, Any]) -> tuple[str, str]:
    """Subject line and plain-text body of an alert (a dict as `service` builds it)."""
    data_id = ", ".join(f"{k}={v}" for k, v in alert["data_id"].items()) or "(no data ID)"
    unit = alert["unit"]
    change = ""
    if alert["before"] is not None and alert["after"] is not None:
        delta = alert["after"] - alert["before"]
        pct = f" ({100 * delta / abs(alert['before']):+.1f}%)" if alert["before"] else ""
        change = f"{_fmt(alert['before'], unit)} -> {_fmt(alert['after'], unit)}, change {delta:+.6g} {unit}{pct}".strip()
    subject = f"[surveyqa] regression in {alert['metric']} at {data_id} ({alert['dataset']})"
    lines = [
        f"Metric:   {alert['metric']}",
        f"Data ID:  {data_id}",
        f"Dataset:  {alert['dataset']}",
        f"Checks:   {', '.join(alert['checks'])}",
        f"Change:   {change or alert['detail']}",
        f"Detail:   {alert['detail']}",
        f"Last good run: {alert['last_good_run']}   first bad run: {alert['first_bad_run']}",
        "Code changes between them:",
    ]
    changes = alert.get("code_changes") or []
    if not changes:
        lines.append("  (none recorded)")
    for c in changes:
        if c["change"] == "changed":
            lines.append(f"  {c['package']}: {c['old_version']} ({c['old_sha']}) -> {c['new_version']} ({c['new_sha']})")
        else:
            lines.append(f"  {c['package']}: {c['change']}")
    lines.extend(changes_lines(alert.get("changes")))
    lines.append(f"Tracking: {alert['url']}")
    if alert.get("dashboard"):
        lines.append(f"Dashboard: {alert['dashboard']}")
    return subject, "\n".join(lines)


def changes_lines(changes: dict[str, Any] | None) -> list[str]:
    """The config and input changes of an alert (or a run against the previous one), as text lines."""
    if changes is None:
        return ["Config and input changes: not recorded (a run was submitted without its provenance)"]
    lines = ["Config changes between them:"]
    lines += [f"  {key}: {c['old']!r} -> {c['new']!r}" for key, c in changes["config"].items()] or ["  (none)"]
    for side, word in (("old", "only in the last good run"), ("new", "only in the first bad run")):
        if changes["tasks_in_one_only"][side]:
            lines.append(f"  tasks {word}: {', '.join(changes['tasks_in_one_only'][side])}")
    lines.append("Input changes between them:")
    inputs = changes["inputs"]
    for kind in ("changed", "added", "removed"):
        for dataset_type, entry in inputs[kind].items():
            more = ", ..." if entry["count"] > len(entry["examples"]) else ""
            lines.append(f"  {dataset_type}: {entry['count']} {kind} ({'; '.join(entry['examples'])}{more})")
    if not any(inputs.values()):
        lines.append("  (none)")
    return lines


def send_email(config: TrackingConfig, to: str, subject: str, body: str) -> None:
    """Send one e-mail through the configured SMTP server."""
    if not config.smtp_host:
        raise RuntimeError("no smtp_host configured")
    msg = EmailMessage()
    msg["From"] = config.smtp_sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=30) as smtp:
        smtp.send_message(msg)


def send_webhook(config: TrackingConfig, url: str, subject: str, body: str, alert: dict[str, Any]) -> None:
    """POST Slack-compatible JSON (``text``, ``blocks``) plus the alert itself under ``surveyqa``."""
    payload = {
        "text": f"{subject}\n{body}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"```{body[:2900]}```"}},
        ],
        "surveyqa": alert,
    }
    r = httpx.post(url, json=payload, timeout=config.webhook_timeout)
    r.raise_for_status()


class Sender:
    """Sends alerts one recipient at a time, keeping one SMTP connection open for a whole batch.

    Why: a batch of thousands of alerts would otherwise open thousands of SMTP connections.
    Use as a context manager; `send` raises one of `SEND_ERRORS` when a delivery fails (the
    connection is then dropped and reopened for the next message).
    """

    def __init__(self, config: TrackingConfig):
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except SEND_ERRORS:
                pass
            self._smtp = None

    def send(self, channel: str, target: str, alert: dict[str, Any]) -> None:
        subject, body = format_alert(alert)
        if channel != "email":
            send_webhook(self.config, target, subject, body, alert)
            return
        if not self.config.smtp_host:
            raise RuntimeError("no smtp_host configured")
        msg = EmailMessage()
        msg["From"] = self.config.smtp_sender
        msg["To"] = target
        msg["Subject"] = subject
        msg.set_content(body)
        try:
            if self._smtp is None:
                self._smtp = smtplib.SMTP(self.config.smtp_host, self.config.smtp_port, timeout=30)
            self._smtp.send_message(msg)
        except SEND_ERRORS:
            self._close()
            raise
