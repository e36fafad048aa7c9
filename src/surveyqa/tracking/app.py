"""The HTTP API of the tracking service (FastAPI): submissions, runs, metrics, series, alerts.

``/api/...`` routes are the documented contract (OpenAPI at ``/openapi.json``); the HTML pages
``/``, ``/metrics/NAME``, ``/runs/ID`` each have a JSON twin (``/index.json``, ``/metrics/NAME.json``,
``/runs/ID.json``) built by the same view. Writing needs ``Authorization: Bearer <token>`` (or
``JWT <token>``, lsst.verify's scheme); reading is open unless ``read_requires_token`` is set.
``/squash`` speaks SQuaSH's upload protocol for ``dispatch_verify.py`` (`surveyqa.tracking.squash`).
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from surveyqa.errors import SurveyQAError
from surveyqa.tracking import queries, views
from surveyqa.tracking.config import TrackingConfig
from surveyqa.tracking.db import subscription_t
from surveyqa.tracking.drilldown import DashboardLauncher
from surveyqa.tracking.ingest import InvalidSubmission
from surveyqa.tracking.limits import BodyLimit
from surveyqa.tracking.schemas import Submission, SubmitResult, SubscriptionIn, VerifyJob
from surveyqa.tracking.service import TrackingService
from surveyqa.tracking.squash import squash_router
from surveyqa.tracking.store import upsert
from surveyqa.tracking.tokens import verify_token

__all__ = ["create_app"]

log = logging.getLogger(__name__)

#: Run ids are database integers: a larger number is a 422, not an overflow inside the driver (500).
RunId = Annotated[int, Path(ge=1, le=2**31 - 1)]

_DATA_ID_PARAMS = ("instrument", "band", "filter_name", "physical_filter", "skymap", "tract", "patch", "visit", "detector")


def _service(request: Request) -> TrackingService:
    return request.app.state.service


def _bearer(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` or ``JWT <token>`` (lsst.verify's SQuaSH client)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "jwt") and token.strip() else None


def require_token(request: Request) -> str:
    """The name of the caller's token; 401 if missing or invalid."""
    name = verify_token(_service(request).engine, _bearer(request))
    if name is None:
        raise HTTPException(
            401,
            detail="missing or invalid token: send 'Authorization: Bearer <token>' (make one with `surveyqa track token create NAME`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return name


def read_access(request: Request) -> None:
    if _service(request).config.read_requires_token:
        require_token(request)


def _data_id(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in _DATA_ID_PARAMS and v is not None}


def create_app(config: TrackingConfig | None = None, service: TrackingService | None = None) -> FastAPI:
    """Build the ASGI app over ``service`` (or a service opened from ``config``)."""
    config = config or TrackingConfig()
    service = service or TrackingService.open(config)
    app = FastAPI(
        title="surveyqa tracking",
        version="1",
        description="Metric values of survey pipeline runs over time, with regression alerts (docs/tracking.md).",
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.router.on_startup.append(service.start_delivery)  # delivers the outbox and recovers unchecked runs
    app.router.on_shutdown.append(service.stop_delivery)

    @app.middleware("http")
    async def _refuse_nul(request: Request, call_next: Any) -> Any:
        # NUL cannot be stored or compared by PostgreSQL; refuse it in paths and queries up front.
        if "\x00" in request.path_params.get("name", "") or "\x00" in urllib.parse.unquote(request.url.path) or any(
            "\x00" in k or "\x00" in v for k, v in request.query_params.multi_items()
        ):
            return JSONResponse({"detail": "NUL characters are not allowed in URLs", "hint": "remove control characters"}, status_code=400)
        return await call_next(request)

    @app.exception_handler(SurveyQAError)
    async def _user_error(request: Request, exc: SurveyQAError) -> JSONResponse:
        status = 422 if isinstance(exc, InvalidSubmission) else 400
        return JSONResponse({"detail": exc.message, "hint": exc.hint}, status_code=status)

    def _submitted(result: dict[str, Any]) -> JSONResponse:
        return JSONResponse(SubmitResult(**result).model_dump(), status_code=201 if result["created"] else 200)

    write = [Depends(require_token)]
    read = [Depends(read_access)]

    @app.post("/api/jobs", response_model=SubmitResult, status_code=201, dependencies=write, tags=["submit"],
              responses={200: {"description": "already stored: nothing changed", "model": SubmitResult}})
    def submit_job(job: VerifyJob) -> JSONResponse:
        """Submit an lsst.verify Job (as ``dispatch_verify.py`` writes it); resubmitting changes nothing."""
        return _submitted(service.submit_job(job))

    @app.post("/api/submissions", response_model=SubmitResult, status_code=201, dependencies=write, tags=["submit"],
              responses={200: {"description": "already stored: nothing changed", "model": SubmitResult}})
    def submit(submission: Submission) -> JSONResponse:
        """Submit a run's metric values in our own format (rows of ``qaMetricValues_*``)."""
        return _submitted(service.submit(submission))

    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, str]:
        with service.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/api/outbox", dependencies=read, tags=["alerts"])
    def outbox_state() -> dict[str, int]:
        """Runs stored but not yet checked, and alert deliveries by status (pending, sending, sent, failed)."""
        return service.pending()

    @app.get("/api/runs", dependencies=read, tags=["read"])
    def runs(dataset: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[dict[str, Any]]:
        """Runs, newest first."""
        with service.engine.connect() as conn:
            return queries.list_runs(conn, dataset, limit, offset)

    @app.get("/api/runs/{run_id}", dependencies=read, tags=["read"])
    def run(run_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict[str, Any]:
        """A run: metadata, packages, values, and code changes since the previous run of its dataset."""
        return _found(views.run_view(service, run_id), f"run {run_id}")

    @app.get("/api/runs/{run_id}/job", dependencies=read, tags=["read"])
    def run_job(run_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict[str, Any]:
        """A run as an lsst.verify Job (measurements, blobs, metrics, specs, meta); NaN comes back as null."""
        with service.engine.connect() as conn:
            return _found(queries.run_job(conn, run_id), f"run {run_id}")

    @app.get("/api/metrics", dependencies=read, tags=["read"])
    def metrics(all: bool = False) -> list[dict[str, Any]]:
        """Metrics with stored values (``all=true``: every known metric)."""
        with service.engine.connect() as conn:
            return queries.list_metrics(conn, with_values=not all)

    @app.get("/api/metrics/{name}", dependencies=read, tags=["read"])
    def metric(name: str) -> dict[str, Any]:
        """A metric definition and its specs."""
        with service.engine.connect() as conn:
            m = _found(queries.get_metric(conn, name), f"metric {name}")
            return {**m, "specs": queries.specs_for(conn, name)}

    @app.get("/api/metrics/{name}/series", dependencies=read, tags=["read"])
    def series(
        name: str,
        dataset: str | None = None,
        instrument: str | None = None,
        band: str | None = None,
        filter_name: str | None = None,
        physical_filter: str | None = None,
        skymap: str | None = None,
        tract: int | None = None,
        patch: int | None = None,
        visit: int | None = None,
        detector: int | None = None,
        limit: Annotated[int | None, Query(ge=1, le=100000, description="latest points per series")] = None,
    ) -> dict[str, Any]:
        """Time series of a metric per data ID and dataset, filtered by any data ID keys; each point links to the dashboard."""
        # JSONResponse straight from the view: 10^5 points through FastAPI's generic encoder took seconds
        return JSONResponse(_found(views.metric_view(service, name, dataset, _data_id(locals()), limit), f"metric {name}"))

    @app.get("/api/alerts", dependencies=read, tags=["alerts"])
    def alerts(status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None, metric: str | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        """Alerts, newest first."""
        return service.list_alerts(status, metric, limit)

    @app.get("/api/alerts/{alert_id}", dependencies=read, tags=["alerts"])
    def alert(alert_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict[str, Any]:
        return _found(service.alert(alert_id), f"alert {alert_id}")

    @app.get("/api/subscriptions", dependencies=read, tags=["alerts"])
    def subscriptions() -> list[dict[str, Any]]:
        with service.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(subscription_t).order_by(subscription_t.c.id))]

    @app.post("/api/subscriptions", status_code=201, dependencies=write, tags=["alerts"])
    def subscribe(sub: SubscriptionIn) -> dict[str, Any]:
        """Subscribe an e-mail address or webhook URL to a metric (``*`` patterns allowed)."""
        with service.engine.begin() as conn:
            upsert(conn, subscription_t, [sub.model_dump()], ["metric", "channel", "target"])
        return sub.model_dump()

    # -- HTML pages and their JSON twins ----------------------------------------------------

    @app.get("/index.json", dependencies=read, include_in_schema=False)
    def index_json() -> dict[str, Any]:
        return views.index_view(service)

    @app.get("/", dependencies=read, include_in_schema=False, response_class=HTMLResponse)
    def index_page() -> str:
        return views.render_page("surveyqa tracking", views.index_html(views.index_view(service)), "/index.json")

    @app.get("/metrics/{name}.json", dependencies=read, include_in_schema=False)
    def metric_json(name: str, request: Request) -> JSONResponse:
        dataset = request.query_params.get("dataset")
        return JSONResponse(_found(views.metric_view(service, name, dataset, _data_id(dict(request.query_params))), f"metric {name}"))

    @app.get("/metrics/{name}", dependencies=read, include_in_schema=False, response_class=HTMLResponse)
    def metric_page(name: str, request: Request) -> str:
        dataset = request.query_params.get("dataset")
        view = _found(views.metric_view(service, name, dataset, _data_id(dict(request.query_params))), f"metric {name}")
        twin = f"/metrics/{name}.json" + (f"?{request.url.query}" if request.url.query else "")
        return views.render_page(name, views.metric_html(view), twin)

    app.include_router(squash_router(service))  # lsst.verify's dispatch_verify.py uploads here unchanged

    app.state.dashboards = DashboardLauncher()
    app.router.on_shutdown.append(app.state.dashboards.stop)

    @app.get("/runs/{run_id}/dashboard", dependencies=read, include_in_schema=False)
    def run_dashboard(run_id: RunId, request: Request, metric: str) -> RedirectResponse:
        """Open the drill-down dashboard on this run's outputs at ``metric`` and the data ID in the query."""
        run = _found(views.run_view(service, run_id), f"run {run_id}")
        if not run.get("repo") or not run.get("collection"):
            raise HTTPException(404, detail=f"run {run_id} does not say where its outputs live (repository, collection)")
        data_id = {k: v for k, v in request.query_params.items() if k in _DATA_ID_PARAMS}
        url = app.state.dashboards.url(run["repo"], run["collection"], metric, data_id)
        return RedirectResponse(url, status_code=307)

    @app.get("/runs/{run_id}.json", dependencies=read, include_in_schema=False)
    def run_json(run_id: RunId) -> dict[str, Any]:
        return _found(views.run_view(service, run_id), f"run {run_id}")

    @app.get("/runs/{run_id}", dependencies=read, include_in_schema=False, response_class=HTMLResponse)
    def run_page(run_id: RunId) -> str:
        view = _found(views.run_view(service, run_id), f"run {run_id}")
        return views.render_page(f"Run {run_id}: {view['dataset']}", views.run_html(view), f"/runs/{run_id}.json")

    return app


def _found(obj: Any, what: str) -> Any:
    if obj is None:
        raise HTTPException(404, detail=f"no {what}")
    return obj
