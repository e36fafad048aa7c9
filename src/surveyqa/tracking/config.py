"""Settings of the tracking service: database, links to the dashboard, regression checks, alerts.

Read from a YAML file (``--config``) and/or ``SURVEYQA_TRACK_*`` environment variables; every key
is listed in docs/tracking.md (a test checks that).
"""

from __future__ import annotations

import os
import string
import urllib.parse
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from surveyqa.errors import SurveyQAError
from surveyqa.tracking.db import DEFAULT_DB_URL

__all__ = ["TrackingConfig", "load_config", "dashboard_link", "dashboard_linker"]


class TrackingConfig(BaseModel):
    """Every setting of the tracking service, with its default."""

    db: str = Field(DEFAULT_DB_URL, description="SQLAlchemy URL of the tracking database")
    base_url: str = Field("http://127.0.0.1:8080", description="the service's own URL, used in alert messages")
    public_url: str = Field(
        "", description="URL clients reach the service at (behind a proxy); empty: from each request and its "
        "Forwarded / X-Forwarded-* headers. The SQuaSH endpoint map at /squash is built from it"
    )
    dashboard_url: str = Field(
        "", description="URL of a running drill-down dashboard; empty: the service opens one on each run's own repository"
    )
    link_template: str = Field(
        "{dashboard}/?repo={repo}&collection={collection}&metric={metric}",
        description="link of every time-series point when dashboard_url is set; fields: dashboard, repo, collection, "
        "metric, run_id and data ID keys",
    )
    read_requires_token: bool = Field(False, description="require a token for reading too")
    # regression checks
    relative_change: float = Field(0.5, gt=0, description="alert when a value moves by more than this fraction of the previous one")
    stale_after_days: float = Field(7.0, gt=0, description="alert when a series got no value for this long while its dataset got runs")
    window: int = Field(40, ge=6, le=1000, description="number of latest values the change-point test looks at")
    min_size: int = Field(3, ge=2, description="points needed on each side of a step before it is confirmed")
    alpha: float = Field(0.001, gt=0, lt=1, description="significance of the change-point permutation test")
    permutations: int = Field(999, ge=99, description="permutations per change-point test")
    statistic: str = Field("meanshift", pattern="^(meanshift|energy)$", description="split statistic: meanshift or energy")
    screen: float | None = Field(3.0, description="meanshift only: splits with a t statistic below this skip the permutation test")
    min_step: float = Field(0.0, ge=0, description="ignore confirmed steps smaller than this fraction of the baseline")
    # alerts
    srd_packages: list[str] = Field(["validate_drp"], description="metrics of these packages derive from the science requirements")
    stakeholders: list[str] = Field(default_factory=list, description="e-mail addresses / webhook URLs alerted for every SRD metric")
    smtp_host: str | None = Field(None, description="SMTP server for e-mail alerts (none: e-mail is not sent)")
    smtp_port: int = Field(25, description="SMTP port")
    smtp_sender: str = Field("surveyqa-tracking@localhost", description="From: address of alert e-mails")
    webhook_timeout: float = Field(10.0, gt=0, description="seconds to wait for a webhook receiver")
    # delivery from the outbox, in the background
    delivery_attempts: int = Field(8, ge=1, description="tries per alert and recipient before a delivery is marked failed")
    delivery_backoff: float = Field(30.0, gt=0, description="seconds before the first retry of a failed delivery; doubled each try, at most an hour")
    delivery_lease: float = Field(300.0, gt=0, description="seconds after which a delivery claimed by a vanished server is tried again")
    delivery_interval: float = Field(5.0, gt=0, description="seconds between looks at the outbox when nothing wakes the deliverer")
    # requests
    max_body_bytes: int = Field(20_000_000, ge=1000, description="largest request body accepted (bytes); larger ones get 413")


def load_config(path: str | Path | None = None, **overrides: Any) -> TrackingConfig:
    """Settings from a YAML file, then ``SURVEYQA_TRACK_<KEY>`` variables, then ``overrides`` (not None)."""
    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise SurveyQAError(f"cannot read tracking config {path}: {exc.strerror}", "give an existing YAML file") from exc
    for name, field in TrackingConfig.model_fields.items():
        env = os.environ.get(f"SURVEYQA_TRACK_{name.upper()}")
        if env is not None:
            data[name] = yaml.safe_load(env) if field.annotation not in (str, str | None) else env
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrackingConfig(**data)
    except ValidationError as exc:
        raise SurveyQAError(f"bad tracking config: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", "see docs/tracking.md") from exc


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def dashboard_linker(config: TrackingConfig, metric: str, data_id: dict[str, Any]):
    """The drill-down link maker of one series: ``(repo, collection, run_id) -> link or None``.

    Why a maker: a whole-metric view has 10^5 points over a few hundred series; the parts that
    depend only on the series (the metric and data ID, quoted) are built once, not per point.
    """
    if not config.dashboard_url:  # the service's own route opens a dashboard on each run's outputs
        query = urllib.parse.urlencode({"metric": metric, **{k: v for k, v in data_id.items() if v is not None}})
        prefix = f"{config.base_url.rstrip('/')}/runs/"
        suffix = f"/dashboard?{query}"
        return lambda repo, collection, run_id: f"{prefix}{run_id}{suffix}" if repo else None
    fields = _Blank({k: urllib.parse.quote(str(v), safe="") for k, v in data_id.items()})
    fields.update(dashboard=config.dashboard_url.rstrip("/"), metric=urllib.parse.quote(metric, safe=""))
    formatter = string.Formatter()

    def link(repo: str | None, collection: str | None, run_id: int) -> str | None:
        if not repo:
            return None
        fields.update(repo=urllib.parse.quote(repo, safe=""), collection=urllib.parse.quote(collection or "", safe=""), run_id=str(run_id))
        return formatter.vformat(config.link_template, (), fields)

    return link


def dashboard_link(config: TrackingConfig, metric: str, repo: str | None, collection: str | None, run_id: int, data_id: dict[str, Any]) -> str | None:
    """The drill-down link of one point, or None when the run did not say where its outputs live."""
    return dashboard_linker(config, metric, data_id)(repo, collection, run_id)
