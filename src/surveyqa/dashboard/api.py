"""The JSON twins of the pages, served beside the Panel app by the same Tornado server.

Each route calls the same `model` function as its page, so a test (or a script) can read the
numbers a user sees. Bad input answers 400/404 with ``{"error": ..., "hint": ...}``.

| route | page |
|---|---|
| ``/api/quicklook.json?sky_metric=M&sky_band=B`` | quick look |
| ``/api/metric/<metric>.json?band=&tract=&patch=`` | metric view, coadd mode |
| ``/api/visits/<metric>.json?band=&visit=&detector=`` | metric view, visit mode |
| ``/api/focalplane/<metric>.json?band=&detector=`` | focal plane: a detector metric per detector over all visits |
| ``/api/linked.json?metrics=A,B&level=&band=&selected=`` | linked metrics: one row per data ID, a value per metric; the selected data IDs |
| ``/api/failures.json`` | failures |
| ``/api/manifest.json`` | the repository's QA manifest |
| ``/api/notebook.ipynb?view=&metric=&band=&tract=...`` | the "open in Jupyter" notebook |
| ``POST /api/jupyter`` (JSON: the page's query) | the same notebook, put into the ``--jupyter-url`` server |
| ``/api/compare/quicklook.json`` | compare (``--compare``): every metric in A and B, worst change first |
| ``/api/compare/metric/<metric>.json?band=&tract=&patch=`` | compare, coadd mode |
| ``/api/compare/visits/<metric>.json?band=&visit=&detector=`` | compare, visit mode |

The compare routes answer 404 on a server that compares no second run.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nbformat
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler

from surveyqa.errors import SurveyQAError

from . import compare, model, notebook
from .source import memo

__all__ = ["api_routes", "ROUTES", "WORKERS"]

log = logging.getLogger(__name__)

ROUTES = {
    "/api/quicklook.json": "quick look: header counts, culprits (what is wrong, by place), one row per metric "
                           "(and band), sky map values",
    "/api/metric/<metric>.json": "coadd drill-down: ?band=, ?tract=, ?patch=",
    "/api/visits/<metric>.json": "visit drill-down: ?band=, ?visit=, ?detector=",
    "/api/focalplane/<metric>.json": "focal plane: per detector over every visit of a band: ?band=, ?detector=",
    "/api/linked.json": "linked metrics: ?metrics=A,B&level=&band=&selected=; one row per data ID, a value per metric",
    "/api/failures.json": "failed quanta",
    "/api/manifest.json": "the QA manifest (metrics, selections, specs)",
    "/api/notebook.ipynb": "notebook loading the view given by the query (view, metric, band, tract, patch, visit, "
                           "detector, side); every value checked, 404 for an unknown metric or place",
    "/api/jupyter": "POST the page's query as JSON: its notebook put into the --jupyter-url server; "
                    "{path, url}; 502 when that server cannot be reached",
    "/api/compare/quicklook.json": "compare: header counts of A and B, every metric's values, delta and change",
    "/api/compare/metric/<metric>.json": "compare, coadd drill-down: ?band=, ?tract=, ?patch=",
    "/api/compare/visits/<metric>.json": "compare, visit drill-down: ?band=, ?visit=, ?detector=",
}


#: Threads per server computing the JSON routes' answers off Tornado's IO loop, which meanwhile
#: serves the pages and the answers already computed. Measured on the demo (2 cores,
#: `benchmarks/bench_dashboard_concurrency.py`): a view's pandas work on its small frames holds
#: the GIL (104 views in 4 threads took 1.3x as long as one after the other) and the reads are
#: one at a time (`CachedSource`), so more threads do not add throughput; 4 let a quick answer
#: pass a slow read (p50 of 20 clients 1.4-1.8 s, 2.1-2.2 s with 2 threads), and clients
#: asking for one view share one computation whatever the number.
WORKERS = 4


def _status(exc: SurveyQAError) -> int:
    """404 for a metric, data ID or second run the server does not have; 400 for malformed input."""
    if isinstance(exc, model.NotFoundError):
        return 404
    return 404 if "no metric" in exc.message or "compares no" in exc.message else 400


def _encode(payload: Any) -> str:
    return json.dumps(payload, default=str, allow_nan=False)


class _Handler(RequestHandler):
    """A JSON route: the query is read on the IO loop, the answer computed in the server's threads.

    Each handler's `view` reads its query (a malformed value raises `SurveyQAError` at once) and
    returns a key and a function building the payload; the encoded answer is computed once per
    server and key (`source.memo`, shared with the pages' models where the keys are theirs), in
    the server's `ThreadPoolExecutor`, so the IO loop keeps serving other clients meanwhile.
    """

    def initialize(self, config, pool: ThreadPoolExecutor | None = None) -> None:
        self.config = config
        self.pool = pool

    def _int(self, name: str) -> int | None:
        """A data ID of the query, read as the page reads it (`model.data_id`; not stripped: `` 1`` is refused)."""
        return model.data_id(name, self.get_query_argument(name, None, strip=False))

    def _str(self, name: str) -> str | None:
        """A text of the query (metric, band), as given; None if empty or absent."""
        raw = self.get_query_argument(name, None, strip=False)
        return raw or None

    async def get(self, *path_args: str) -> None:
        try:
            key, build = self.view(*path_args)
            body = await IOLoop.current().run_in_executor(self.pool, self._body, key, build)
        except SurveyQAError as exc:
            self.set_status(_status(exc))
            body = _encode({"error": exc.message, "hint": exc.hint})
        except Exception as exc:  # noqa: BLE001 - a bug: said in JSON, with the traceback in the log
            log.exception("%s failed", self.request.uri)
            self.set_status(500)
            body = _encode({"error": f"the server failed: {type(exc).__name__}: {exc}",
                            "hint": "this is a bug in surveyqa: please report it with this URL"})
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    def _body(self, key: tuple, build: Callable[[], Any]) -> str:
        return memo(self.config.source, ("json",) + key, lambda: _encode(build()))


def _view(source, key: tuple, compute: Callable[[], Any]) -> Callable[[], dict]:
    """Build the JSON of the model ``compute()`` makes, computed once per server under the page's own ``key``."""
    return lambda: memo(source, key, compute).to_json()


class QuickLookHandler(_Handler):
    def view(self) -> tuple[tuple, Callable[[], Any]]:
        source, metric, band = self.config.source, self._str("sky_metric"), self._str("sky_band")

        def build() -> dict:
            page = memo(source, ("quicklook", metric, band), lambda: model.quicklook(source, metric, band))
            model.require_sky_band(source, page, band)
            return page.to_json()

        return ("quicklook", metric, band), build


class MetricHandler(_Handler):
    def view(self, metric: str) -> tuple[tuple, Callable[[], Any]]:
        source, band, tract, patch = self.config.source, self._str("band"), self._int("tract"), self._int("patch")
        key = ("metric_view", metric, band, tract, patch)
        return key, _view(source, key, lambda: model.metric_view(source, metric, band, tract, patch))


class VisitsHandler(_Handler):
    def view(self, metric: str) -> tuple[tuple, Callable[[], Any]]:
        source, band, visit, detector = (self.config.source, self._str("band"), self._int("visit"),
                                         self._int("detector"))
        key = ("visit_view", metric, band, visit, detector)
        return key, _view(source, key, lambda: model.visit_view(source, metric, band, visit, detector))


class FocalPlaneHandler(_Handler):
    def view(self, metric: str) -> tuple[tuple, Callable[[], Any]]:
        source, band, detector = self.config.source, self._str("band"), self._int("detector")
        key = ("focal_plane", metric, band, detector)
        return key, _view(source, key, lambda: model.focal_plane(source, metric, band, detector))


class LinkedHandler(_Handler):
    def view(self) -> tuple[tuple, Callable[[], Any]]:
        from .linked import linked_view, selection_indices

        source, band, level = self.config.source, self._str("band"), self._str("level")
        metrics = tuple(m for m in (self._str("metrics") or "").split(",") if m)
        key = ("linked", metrics, level, band)
        selected = self._str("selected")
        build = _view(source, key, lambda: linked_view(source, list(metrics), level, band))
        if selected is None:
            return key, build

        def with_selection() -> dict:  # the rows the page highlights for this address
            view = memo(source, key, lambda: linked_view(source, list(metrics), level, band))
            rows = view.table.iloc[selection_indices(view, selected)][view.keys]
            return {**build(), "selected": model._records(rows)}

        return key + (selected,), with_selection


class FailuresHandler(_Handler):
    def view(self) -> tuple[tuple, Callable[[], Any]]:
        source = self.config.source
        return ("failures",), lambda: {"run_state": model.run_state(source),
                                       "failures": model._records(model.failures_view(source))}


class ManifestHandler(_Handler):
    def view(self) -> tuple[tuple, Callable[[], Any]]:
        return ("manifest",), self.config.source.manifest


class NotebookHandler(_Handler):
    """``GET /api/notebook.ipynb?view=&metric=&band=&tract=...&side=``: the notebook of that place.

    Every value is checked (`notebook.place_from_query`) before a notebook is made: bad input
    answers 400, an unknown metric or place 404, and nothing is written anywhere.
    """

    _KEYS = ("view", "metric", "band", "tract", "patch", "visit", "detector")

    def _place(self, query: dict):
        """The run (repository, collection) and checked place of ``query``; ``side=b``: the compared run."""
        side = query.get("side") or "a"
        if side not in ("a", "b"):
            raise SurveyQAError(f"side={str(side)[:20]!r} is neither a nor b", "side=a: this run, side=b: the compared run")
        source, repo, collection, _ = self.config.side(side)
        if repo is None or collection is None:
            raise SurveyQAError("this dashboard serves no repository (no notebook to make)",
                                "start it on a repository: surveyqa dashboard REPO --collection C")
        return repo, collection, notebook.place_from_query(source, {k: query.get(k) for k in self._KEYS})

    def _fail(self, exc: SurveyQAError) -> None:
        missing = (exc.message.startswith(("no metric", "no tract ", "no visit ", "no detector "))
                   or "serves no repository" in exc.message or "compares no" in exc.message
                   or "opens no Jupyter" in exc.message)
        self.set_status(502 if isinstance(exc, notebook.JupyterError) else 404 if missing else 400)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": exc.message, "hint": exc.hint}))

    def get(self) -> None:
        try:
            repo, collection, place = self._place({k: self.get_query_argument(k, None)
                                                   for k in (*self._KEYS, "side")})
        except SurveyQAError as exc:
            self._fail(exc)
            return
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.set_header("Content-Disposition", f"attachment; filename={notebook.notebook_name(place)}")
        self.finish(nbformat.writes(notebook.make_notebook(repo, collection, place)))


class JupyterHandler(NotebookHandler):
    """``POST /api/jupyter`` with the page's query as a JSON object: the notebook of that place,
    put into the Jupyter server of ``--jupyter-url``; answers ``{"path", "url", "jupyter"}``.

    What the "open in Jupyter" button calls. A JSON body (not a form) keeps other web sites from
    posting to it. The server unreachable, or refusing, answers 502 with what to do; the page
    shows it.
    """

    async def post(self) -> None:
        try:
            if self.config.jupyter is None:
                raise SurveyQAError("this dashboard opens no Jupyter server",
                                    "start it with --jupyter-url URL (the URL `jupyter lab` prints, with its token)")
            if not self.request.headers.get("Content-Type", "").startswith("application/json"):
                raise SurveyQAError("POST /api/jupyter takes the page's query as JSON",
                                    "send it with Content-Type: application/json")
            repo, collection, place = self._place(notebook.query_from_json(self.request.body))
            opened = await notebook.upload(self.config.jupyter, notebook.make_notebook(repo, collection, place),
                                           notebook.notebook_name(place))
        except SurveyQAError as exc:
            log.warning("open in Jupyter: %s", exc)
            self._fail(exc)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(opened))


class _CompareHandler(_Handler):
    def _runs(self):
        config = self.config
        if config.compare is None:
            raise SurveyQAError("this dashboard compares no second run",
                                "start it with --compare REPO_B to compare two runs")
        return config.source, config.compare


class CompareQuickLookHandler(_CompareHandler):
    def view(self) -> tuple[tuple, Callable[[], Any]]:
        a, b = self._runs()

        def build() -> dict:
            rows = memo(a, ("compare_quicklook", id(b)), lambda: compare.compare_quicklook(a, b))
            return {"labels": {"A": self.config.labels[0], "B": self.config.labels[1]},
                    "header": memo(a, ("compare_header", id(b)), lambda: compare.compare_header(a, b)),
                    "metrics": model._records(rows),
                    "counts": {c: int((rows["change"] == c).sum()) for c in compare.CHANGE_ORDER}}

        return ("compare_quicklook", id(b)), build


class CompareMetricHandler(_CompareHandler):
    def view(self, metric: str) -> tuple[tuple, Callable[[], Any]]:
        (a, b), band, tract, patch = self._runs(), self._str("band"), self._int("tract"), self._int("patch")
        key = ("compare_view", id(b), "coadd", metric, band, tract, patch, None, None)
        return key, _view(a, key, lambda: compare.compare_view(a, b, metric, band, mode="coadd", tract=tract,
                                                               patch=patch))


class CompareVisitsHandler(_CompareHandler):
    def view(self, metric: str) -> tuple[tuple, Callable[[], Any]]:
        (a, b), band, visit, detector = self._runs(), self._str("band"), self._int("visit"), self._int("detector")
        key = ("compare_view", id(b), "visit", metric, band, None, None, visit, detector)
        return key, _view(a, key, lambda: compare.compare_view(a, b, metric, band, mode="visit", visit=visit,
                                                               detector=detector))


class UnknownRouteHandler(_Handler):
    """Any other address under ``/api/``: 404 in JSON, listing the routes (not Tornado's HTML page)."""

    def view(self, path: str) -> tuple[tuple, Callable[[], Any]]:
        routes = ", ".join(r for r in ROUTES)
        raise model.NotFoundError(f"no route /api/{path}", f"routes: {routes}")


def api_routes(config) -> list[tuple]:
    """Tornado URL patterns for the JSON twins, bound to one server's `DashboardConfig`.

    The routes of one server share one small thread pool (`WORKERS`), shut down when the
    config is no longer used; nothing is shared between servers.
    """
    from .provenance_view import provenance_routes  # imports this module: loaded here

    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="surveyqa-api")
    weakref.finalize(config, pool.shutdown, wait=False)
    args = {"config": config, "pool": pool}
    return [
        (r"/api/quicklook\.json", QuickLookHandler, args),
        (r"/api/metric/(.+)\.json", MetricHandler, args),
        (r"/api/visits/(.+)\.json", VisitsHandler, args),
        (r"/api/focalplane/(.+)\.json", FocalPlaneHandler, args),
        (r"/api/linked\.json", LinkedHandler, args),
        (r"/api/failures\.json", FailuresHandler, args),
        (r"/api/manifest\.json", ManifestHandler, args),
        (r"/api/notebook\.ipynb", NotebookHandler, args),
        (r"/api/jupyter", JupyterHandler, args),
        (r"/api/compare/quicklook\.json", CompareQuickLookHandler, args),
        (r"/api/compare/metric/(.+)\.json", CompareMetricHandler, args),
        (r"/api/compare/visits/(.+)\.json", CompareVisitsHandler, args),
        *provenance_routes(args),  # docs/provenance.md
        (r"/api/(.*)", UnknownRouteHandler, args),
    ]
