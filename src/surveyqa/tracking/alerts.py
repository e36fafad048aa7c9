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

__all__ = ["recipients_for", "format_alert", "send_email", "send_webhook", "deliver"]

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
    lines.append(f"Tracking: {alert['url']}")
    if alert.get("dashboard"):
        lines.append(f"Dashboard: {alert['dashboard']}")
    return subject, "\n".join(lines)


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


def deliver(config: TrackingConfig, recipients: list[tuple[str, str]], alert: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``alert`` to every recipient; a failed delivery is logged and reported, never raised."""
    subject, body = format_alert(alert)
    results = []
    for channel, target in recipients:
        try:
            if channel == "email":
                send_email(config, target, subject, body)
            else:
                send_webhook(config, target, subject, body, alert)
            results.append({"channel": channel, "target": target, "ok": True})
        except (OSError, RuntimeError, smtplib.SMTPException, httpx.HTTPError) as exc:
            log.warning("could not deliver alert %s to %s %s: %s", alert.get("id"), channel, target, exc)
            results.append({"channel": channel, "target": target, "ok": False, "error": str(exc)[:300]})
    return results
