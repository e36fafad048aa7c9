"""The JSON twins of the pages, served beside the Panel app by the same Tornado server.

Each route calls the same `model` function as its page, so a test (or a script) can read the
numbers a user sees. Bad input answers 400/404 with ``{"error": ..., "hint": ...}``.

| route | page |
|---|---|
| ``/api/quicklook.json?sky_metric=M&sky_band=B`` | quick look |
| ``/api/metric/<metric>.json?band=&tract=&patch=`` | metric view, coadd mode |
| ``/api/visits/<metric>.json?band=&visit=&detector=`` | metric view, visit mode |
| ``/api/focalplane/<metric>.json?band=&detector=`` | focal plane: a detector metric per detector over all visits |
| ``/api/failures.json`` | failures |
| ``/api/manifest.json`` | the repository's QA manifest |
| ``/api/notebook.ipynb?view=&metric=&band=&tract=...`` | the "open in Jupyter" notebook |
| ``/api/compare/quicklook.json`` | compare (``--compare``): every metric in A and B, worst change first |
| ``/api/compare/metric/<metric>.json?band=&tract=&patch=`` | compare, coadd mode |
| ``/api/compare/visits/<metric>.json?band=&visit=&detector=`` | compare, visit mode |

The compare routes answer 404 on a server that compares no second run.
"""

from __future__ import annotations

import json
import logging

import nbformat
from tornado.web import RequestHandler

from surveyqa.errors import SurveyQAError

from . import compare, model, notebook

__all__ = ["api_routes", "ROUTES"]

log = logging.getLogger(__name__)

ROUTES = {
    "/api/quicklook.json": "quick look: header counts, culprits (what is wrong, by place), one row per metric "
                           "(and band), sky map values",
    "/api/metric/<metric>.json": "coadd drill-down: ?band=, ?tract=, ?patch=",
    "/api/visits/<metric>.json": "visit drill-down: ?band=, ?visit=, ?detector=",
    "/api/focalplane/<metric>.json": "focal plane: per detector over every visit of a band: ?band=, ?detector=",
    "/api/failures.json": "failed quanta",
    "/api/manifest.json": "the QA manifest (metrics, selections, specs)",
    "/api/notebook.ipynb": "notebook loading the view given by the query (view, metric, band, tract, ...)",
    "/api/compare/quicklook.json": "compare: header counts of A and B, every metric's values, delta and change",
    "/api/compare/metric/<metric>.json": "compare, coadd drill-down: ?band=, ?tract=, ?patch=",
    "/api/compare/visits/<metric>.json": "compare, visit drill-down: ?band=, ?visit=, ?detector=",
}


class _Handler(RequestHandler):
    def initialize(self, config) -> None:
        self.config = config

    def _int(self, name: str) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw in (None, ""):
            return None
        try:
            return int(raw)
        except ValueError:
            raise SurveyQAError(f"{name}={raw!r} is not an integer", f"give {name} as a number, e.g. {name}=0")

    def _str(self, name: str) -> str | None:
        raw = self.get_query_argument(name, None)
        return raw or None

    def _send(self, build) -> None:
        try:
            payload = build()
        except SurveyQAError as exc:
            missing = ("no metric" in exc.message or "compares no" in exc.message
                       or exc.message.startswith(("no tract ", "no visit ", "no detector ")))
            self.set_status(404 if missing else 400)
            payload = {"error": exc.message, "hint": exc.hint}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload, default=str, allow_nan=False))


class QuickLookHandler(_Handler):
    def get(self) -> None:
        self._send(lambda: model.quicklook(self.config.source, self._str("sky_metric"),
                                           self._str("sky_band")).to_json())


class MetricHandler(_Handler):
    def get(self, metric: str) -> None:
        self._send(lambda: model.metric_view(self.config.source, metric, self._str("band"), self._int("tract"),
                                             self._int("patch")).to_json())


class VisitsHandler(_Handler):
    def get(self, metric: str) -> None:
        self._send(lambda: model.visit_view(self.config.source, metric, self._str("band"), self._int("visit"),
                                            self._int("detector")).to_json())


class FocalPlaneHandler(_Handler):
    def get(self, metric: str) -> None:
        self._send(lambda: model.focal_plane(self.config.source, metric, self._str("band"),
                                             self._int("detector")).to_json())


class FailuresHandler(_Handler):
    def get(self) -> None:
        self._send(lambda: {"run_state": model.run_state(self.config.source),
                            "failures": model._records(model.failures_view(self.config.source))})


class ManifestHandler(_Handler):
    def get(self) -> None:
        self._send(lambda: self.config.source.manifest())


class NotebookHandler(_Handler):
    def get(self) -> None:
        config = self.config
        if config.repo is None:
            self.set_status(404)
            self.finish({"error": "this dashboard serves no repository", "hint": "start it on a repository"})
            return
        query = {k: self.get_query_argument(k, None) for k in ("view", "metric", "band")}
        try:
            query.update({k: self._int(k) for k in ("tract", "patch", "visit", "detector")})
            if query.get("metric"):
                model.metric_entry(config.source, query["metric"])
        except SurveyQAError as exc:
            self.set_status(404 if "no metric" in exc.message else 400)
            self.finish({"error": exc.message, "hint": exc.hint})
            return
        query = {k: v for k, v in query.items() if v is not None}
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.set_header("Content-Disposition", f"attachment; filename={notebook.notebook_name(query)}")
        self.finish(nbformat.writes(notebook.make_notebook(config.repo, config.collection, query)))


class _CompareHandler(_Handler):
    def _runs(self):
        config = self.config
        if config.compare is None:
            raise SurveyQAError("this dashboard compares no second run",
                                "start it with --compare REPO_B to compare two runs")
        return config.source, config.compare


class CompareQuickLookHandler(_CompareHandler):
    def get(self) -> None:
        def build() -> dict:
            a, b = self._runs()
            rows = compare.compare_quicklook(a, b)
            return {"labels": {"A": self.config.labels[0], "B": self.config.labels[1]},
                    "header": compare.compare_header(a, b), "metrics": model._records(rows),
                    "counts": {c: int((rows["change"] == c).sum()) for c in compare.CHANGE_ORDER}}

        self._send(build)


class CompareMetricHandler(_CompareHandler):
    def get(self, metric: str) -> None:
        self._send(lambda: compare.compare_view(*self._runs(), metric, self._str("band"), mode="coadd",
                                                tract=self._int("tract"), patch=self._int("patch")).to_json())


class CompareVisitsHandler(_CompareHandler):
    def get(self, metric: str) -> None:
        self._send(lambda: compare.compare_view(*self._runs(), metric, self._str("band"), mode="visit",
                                                visit=self._int("visit"), detector=self._int("detector")).to_json())


def api_routes(config) -> list[tuple]:
    """Tornado URL patterns for the JSON twins, bound to one server's `DashboardConfig`."""
    args = {"config": config}
    return [
        (r"/api/quicklook\.json", QuickLookHandler, args),
        (r"/api/metric/(.+)\.json", MetricHandler, args),
        (r"/api/visits/(.+)\.json", VisitsHandler, args),
        (r"/api/focalplane/(.+)\.json", FocalPlaneHandler, args),
        (r"/api/failures\.json", FailuresHandler, args),
        (r"/api/manifest\.json", ManifestHandler, args),
        (r"/api/notebook\.ipynb", NotebookHandler, args),
        (r"/api/compare/quicklook\.json", CompareQuickLookHandler, args),
        (r"/api/compare/metric/(.+)\.json", CompareMetricHandler, args),
        (r"/api/compare/visits/(.+)\.json", CompareVisitsHandler, args),
    ]
