"""``surveyqa track``: the tracking service's commands, thin shells over `surveyqa.tracking`."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import click

from surveyqa.errors import SurveyQAError

__all__ = ["track"]

log = logging.getLogger(__name__)

_db = click.option("--db", envvar="SURVEYQA_TRACK_DB", default=None, help="Database URL (default sqlite:///surveyqa-tracking.db).")
_config = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="Tracking settings (YAML).")


def _cfg(config_path: str | None, **overrides: Any):
    from surveyqa.tracking.config import load_config

    return load_config(config_path, **overrides)


@click.group()
def track() -> None:
    """Track metric values across runs: submit, serve, alert on regressions.

    \b
    Example:
        surveyqa track init --db sqlite:///track.db
        surveyqa track token create ci --db sqlite:///track.db
        surveyqa track serve --db sqlite:///track.db --port 8080
        surveyqa track submit verify_job.json --server http://127.0.0.1:8080 --token $TOKEN
    """


@track.command()
@_db
@_config
@click.option("--seed/--no-seed", default=True, show_default=True, help="Load the known metric definitions and specs.")
def init(db: str | None, config_path: str | None, seed: bool) -> None:
    """Create or upgrade the tracking database and load the known metric definitions.

    \b
    Example:
        surveyqa track init --db sqlite:///track.db
    """
    from surveyqa.tracking.db import open_database

    cfg = _cfg(config_path, db=db)
    engine = open_database(cfg.db)
    click.echo(f"tracking database ready: {engine.url.render_as_string(hide_password=True)}")
    if seed:
        from surveyqa.tracking.seed import seed_definitions

        n_metrics, n_specs = seed_definitions(engine)
        click.echo(f"known metrics: {n_metrics}, specs: {n_specs}")


@track.group()
def token() -> None:
    """Manage API tokens (needed to submit).

    \b
    Example:
        surveyqa track token create ci --db sqlite:///track.db
    """


@token.command("create")
@click.argument("name")
@_db
@_config
def token_create(name: str, db: str | None, config_path: str | None) -> None:
    """Make a token called NAME and print it (only now: only its hash is stored).

    \b
    Example:
        surveyqa track token create ci --db sqlite:///track.db
    """
    from surveyqa.tracking.db import open_database
    from surveyqa.tracking.tokens import create_token

    engine = open_database(_cfg(config_path, db=db).db)
    click.echo(create_token(engine, name))


@token.command("revoke")
@click.argument("name")
@_db
@_config
def token_revoke(name: str, db: str | None, config_path: str | None) -> None:
    """Revoke the token called NAME.

    \b
    Example:
        surveyqa track token revoke ci --db sqlite:///track.db
    """
    from surveyqa.tracking.db import open_database
    from surveyqa.tracking.tokens import revoke_token

    if not revoke_token(open_database(_cfg(config_path, db=db).db), name):
        raise SurveyQAError(f"no token named {name!r}", "list them with `surveyqa track token list`")
    click.echo(f"revoked {name}")


@token.command("list")
@_db
@_config
def token_list(db: str | None, config_path: str | None) -> None:
    """List tokens (names and dates, never the tokens).

    \b
    Example:
        surveyqa track token list --db sqlite:///track.db
    """
    from surveyqa.tracking.db import open_database
    from surveyqa.tracking.tokens import list_tokens

    for t in list_tokens(open_database(_cfg(config_path, db=db).db)):
        click.echo(f"{t['name']}\t{t['created']}\t{'revoked' if t['revoked'] else 'active'}")


@track.command()
@_db
@_config
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--dashboard-url", default=None, help="URL of the drill-down dashboard the points link to.")
def serve(db: str | None, config_path: str | None, host: str, port: int, dashboard_url: str | None) -> None:
    """Serve the tracking API and pages with uvicorn.

    \b
    Example:
        surveyqa track serve --db sqlite:///track.db --port 8080 --dashboard-url http://127.0.0.1:5006
    """
    import uvicorn

    from surveyqa.tracking.app import create_app

    cfg = _cfg(config_path, db=db, dashboard_url=dashboard_url)
    if cfg.base_url == "http://127.0.0.1:8080":
        cfg.base_url = f"http://{host}:{port}"
    uvicorn.run(create_app(cfg), host=host, port=port, log_level="info")


@track.command()
@click.argument("source")
@click.option("--collection", default=None, help="With a repository SOURCE: the collection holding qaMetricValues_*.")
@click.option("--server", envvar="SURVEYQA_TRACK_SERVER", default=None, help="URL of a running tracking service.")
@click.option("--token", envvar="SURVEYQA_TRACK_TOKEN", default=None, help="API token (or SURVEYQA_TRACK_TOKEN).")
@_db
@_config
@click.option("--dataset", default=None, help="Dataset name: runs of one dataset are compared (default: from the job, or the repository).")
@click.option("--repo", "repo_uri", default=None, help="With a job: the repository of its outputs (for dashboard links).")
@click.option("--metric-information", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With a repository: analysis_tools' metricInformation.yaml, the thresholds of its metrics "
              "(default: $SURVEYQA_METRIC_INFORMATION, else the installed analysis_tools' own).")
@click.option("--provenance/--no-provenance", default=True, show_default=True,
              help="With a repository: send the run's provenance record (configs, software, dataset IDs) so that "
              "alerts name the config and input changes; it reads each value dataset's inputs.")
def submit(source: str, collection: str | None, server: str | None, token: str | None, db: str | None, config_path: str | None,
           dataset: str | None, repo_uri: str | None, metric_information: str | None, provenance: bool) -> None:
    """Submit an lsst.verify job file, or a repository's metric values (REPO --collection C).

    Sends to --server over HTTP, or with --db writes straight into a database. A repository's
    analysis_tools metrics (``*_metrics`` bundles, ``*_metrics_table``) go along with ours.

    \b
    Example:
        surveyqa track submit verify_job.json --server http://127.0.0.1:8080 --token $TOKEN
        surveyqa track submit /repo/main --collection u/qa/run1 --db sqlite:///track.db
    """
    from surveyqa.tracking import client

    if collection:
        table, metrics, specs = client.read_repository(source, collection, metric_information)
        record = None
        if provenance:
            from surveyqa.provenance import run_record

            record = run_record(source, collection)
        payload = client.repo_submission(table, source, collection, dataset, metrics=metrics, specs=specs, provenance=record)
        path = "/api/submissions"
    else:
        if os.path.isdir(source):
            raise SurveyQAError(f"{source} is a directory", "to submit a repository's metric values give --collection")
        payload = client.prepare_job(client.read_job(source), repo=repo_uri, collection=collection, dataset=dataset)
        path = "/api/jobs"
    if server:
        _, result = client.post(server, path, payload, token)
    else:
        result = _submit_local(_cfg(config_path, db=db), path, payload)
    verb = "stored" if result["created"] else "already stored, nothing changed:"
    click.echo(f"{verb} run {result['run_id']} ({result['values']} values) {result['url']}")
    for a in result.get("alerts", []):
        click.echo(f"alert {a} opened")


def _submit_local(cfg: Any, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    from pydantic import ValidationError

    from surveyqa.tracking.schemas import Submission, VerifyJob
    from surveyqa.tracking.service import TrackingService

    service = TrackingService.open(cfg)
    try:
        if path == "/api/jobs":
            return service.submit_job(VerifyJob.model_validate(payload))
        return service.submit(Submission.model_validate(payload))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SurveyQAError(f"invalid submission: {'.'.join(map(str, first['loc']))}: {first['msg']}", "see docs/tracking.md") from exc


@track.command()
@click.argument("metric")
@_db
@_config
@click.option("--dataset", default=None)
@click.option("--where", "where", multiple=True, help="Data ID filter KEY=VALUE (repeatable), e.g. band=r.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's answer).")
def series(metric: str, db: str | None, config_path: str | None, dataset: str | None, where: tuple[str, ...], as_json: bool) -> None:
    """Print the time series of METRIC per data ID.

    \b
    Example:
        surveyqa track series validate_drp.PA1 --db sqlite:///track.db --where filter_name=r
    """
    from surveyqa.tracking.service import TrackingService
    from surveyqa.tracking.views import metric_view

    data_id = {}
    for w in where:
        key, sep, value = w.partition("=")
        if not sep:
            raise SurveyQAError(f"bad --where {w!r}", "use KEY=VALUE, e.g. --where band=r")
        data_id[key] = value
    view = metric_view(TrackingService.open(_cfg(config_path, db=db)), metric, dataset, data_id)
    if view is None:
        raise SurveyQAError(f"unknown metric {metric}", "list metrics with values at /api/metrics")
    if as_json:
        click.echo(json.dumps(view, indent=1))
        return
    unit = view["metric"]["unit"]
    for s in view["series"]:
        did = ", ".join(f"{k}={v}" for k, v in s["data_id"].items())
        click.echo(f"{metric} [{did}] dataset={s['dataset']}")
        for p in s["points"]:
            value = "nan" if p["value"] is None else f"{p['value']:.6g}"
            click.echo(f"  run {p['run_id']}  {p['time']}  {value} {unit}")


@track.command()
@click.argument("metric")
@click.argument("target")
@_db
@_config
def subscribe(metric: str, target: str, db: str | None, config_path: str | None) -> None:
    """Send alerts of METRIC (``*`` patterns allowed) to TARGET: an e-mail address or a webhook URL.

    \b
    Example:
        surveyqa track subscribe 'validate_drp.*' qa-team@example.org --db sqlite:///track.db
    """
    from surveyqa.tracking.db import open_database, subscription_t
    from surveyqa.tracking.schemas import SubscriptionIn
    from surveyqa.tracking.store import upsert

    channel = "webhook" if target.startswith(("http://", "https://")) else "email"
    sub = SubscriptionIn(metric=metric, channel=channel, target=target)
    with open_database(_cfg(config_path, db=db).db).begin() as conn:
        upsert(conn, subscription_t, [sub.model_dump()], ["metric", "channel", "target"])
    click.echo(f"{channel} {target} subscribed to {metric}")
