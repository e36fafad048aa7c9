"""Assemble one browser session's page: navigation, error banner, and the view its state asks for.

`DashboardConfig` is what a server knows (the source, a second run to compare it with, where to
write notebooks); `session_page` makes a fresh `DrillState` per session, syncs it with the URL,
and shows the page it asks for. Each page (quick look, metric view in coadd mode and in visit
mode, failures, comparisons) is built once per session and then stays in the document: moving
around hides the others, without laying the document out again, and updates the data of the
one shown. The metric views a first click opens are built, hidden, while the user reads the
quick look. An error while drawing is shown in a red banner on the page (and logged), never
only in the server log.
"""

from __future__ import annotations

import html
import io
import logging
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import panel as pn

from surveyqa.errors import SurveyQAError

from . import notebook, plots
from .compare_view import CompareDrillPanel, CompareQuickLookPanel
from .drill_view import DrillPanel
from .failures_view import failures_panel
from .focalplane_view import FocalPlanePanel
from .linked_page import LinkedPanel
from .provenance_view import ProvenanceLink
from .quicklook_view import QuickLookPanel
from .source import DataSource
from .state import COMPARE_VIEWS, URL_KEYS, DrillState

__all__ = ["DashboardConfig", "session_page"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DashboardConfig:
    """What every session of one server shares (read-only).

    Parameters
    ----------
    source : DataSource
        The repository (usually wrapped in `CachedSource`).
    title : str
        Shown on every page.
    repo, collection : str, optional
        Where the source came from; needed for the "open in Jupyter" notebook.
    notebook_dir : Path, optional
        Where notebooks are written (their path is shown on the page).
    jupyter : notebook.JupyterServer, optional
        A running Jupyter server (``--jupyter-url``): "open in Jupyter" puts the notebook there
        and opens it in a new tab, instead of downloading it.
    """

    source: DataSource
    title: str = "surveyqa"
    repo: str | None = None
    collection: str | None = None
    notebook_dir: Path | None = None
    extra: dict = field(default_factory=dict)
    compare: DataSource | None = None
    compare_repo: str | None = None
    compare_collection: str | None = None
    jupyter: notebook.JupyterServer | None = None

    @property
    def labels(self) -> tuple[str, str]:
        """How the compare pages name run A and run B (repository name and collection)."""
        return (_label(self.repo, self.collection, self.title), _label(self.compare_repo, self.compare_collection, "B"))

    def side(self, side: str) -> tuple[DataSource, str | None, str | None, str]:
        """The source, repository, collection and title of run ``a`` (this server's) or ``b`` (compared)."""
        if side == "b":
            if self.compare is None:
                raise SurveyQAError("this dashboard compares no second run (side=b)",
                                    "start it with --compare REPO_B, or remove side=b from the address")
            return self.compare, self.compare_repo, self.compare_collection, f"B: {self.labels[1]}"
        return self.source, self.repo, self.collection, self.title


def _label(repo: str | None, collection: str | None, default: str) -> str:
    if repo is None:
        return default
    return f"{Path(str(repo)).name} · {collection}" if collection else Path(str(repo)).name


def _nav(config: DashboardConfig, state: DrillState) -> pn.Row:
    buttons = []
    if config.compare is not None:
        both = pn.widgets.Button(label="compare A and B", button_type="primary", css_classes=["sq-nav-compare"])
        both.on_click(lambda e: state.go(view="compare", metric=None, band=None, side="a"))
        quick_b = pn.widgets.Button(label="quick look B", button_type="default", css_classes=["sq-nav-home-b"])
        quick_b.on_click(lambda e: state.go(view="quicklook", metric=None, band=None, side="b"))
        buttons = [both, quick_b]
    home = pn.widgets.Button(label="quick look A" if buttons else "quick look", button_type="default" if buttons
                             else "primary", css_classes=["sq-nav-home"])
    home.on_click(lambda e: state.go(view="quicklook", metric=None, band=None, side="a"))
    failures = []
    for side in ("a", "b") if config.compare is not None else ("a",):
        try:
            n_failed = len(config.side(side)[0].failures())
        except SurveyQAError as exc:
            log.warning("cannot read failures: %s", exc)
            n_failed = 0
        name = f"failures {side.upper()}" if config.compare is not None else "failures"
        button = pn.widgets.Button(label=f"{name} ({n_failed})", button_type="danger" if n_failed else "light",
                                   css_classes=[f"sq-nav-failures{'' if side == 'a' else '-b'}"])
        button.on_click(lambda e, side=side: state.go(view="failures", metric=None, band=None, side=side))
        failures.append(button)
    linked = pn.widgets.Button(label="linked metrics", button_type="default", css_classes=["sq-nav-linked"],
                               description="several metrics side by side, a selection in one shown in all")
    linked.on_click(lambda e: state.go(view="linked", side="a"))
    return pn.Row(*buttons[:1], home, *buttons[1:], linked, *failures)


class _Jupyter:
    """The "open in Jupyter" button of a metric view.

    Without a Jupyter server it downloads the notebook of the current place (also written on
    the server, its path shown). With one (``--jupyter-url``) a click opens a tab at once (a tab
    opened later, when the server answers, is a pop-up browsers block), asks ``POST
    /api/jupyter`` to put the notebook there, and sends the tab to it; an error (the Jupyter
    server unreachable, a wrong token) closes the tab and is shown beside the button.
    """

    #: The button's click in the browser: the page's query (its URL) to ``/api/jupyter``, the answer shown.
    OPEN_JS = """
const tab = window.open("", "_blank");
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                           "'": "&#39;"})[c]);
const show = (html) => { where.text = esc(html); };  // the HTML pane's text is HTML, escaped once more
const query = Object.fromEntries(new URLSearchParams(window.location.search));
show("<small class='sq-jupyter-sending'>sending the notebook to Jupyter...</small>");
fetch(new URL("api/jupyter", window.location.origin + "/"),
      {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(query)})
  .then((r) => r.json().then((body) => ({ok: r.ok, body})))
  .then(({ok, body}) => {
    if (!ok) { throw new Error(body.error + (body.hint ? " (" + body.hint + ")" : "")); }
    if (tab) { tab.location.href = body.url; }
    show("<small class='sq-jupyter-opened'>opened in Jupyter: <a class='sq-notebook' target='_blank' href='"
         + esc(body.url) + "'>" + esc(body.path) + "</a></small>");
  })
  .catch((e) => {
    if (tab) { tab.close(); }
    show("<div class='sq-jupyter-error' style='color:#c62828'><b>open in Jupyter failed:</b> " + esc(e.message)
         + "</div>");
  });
"""

    def __init__(self, config: DashboardConfig, state: DrillState, side: str = "a"):
        self.state = state
        source, repo, collection, _ = config.side(side)
        if repo is None or collection is None:
            self.button = None
            self.panel = pn.Column(pn.pane.HTML("<small>(no repository: no notebook)</small>"))
            return
        where = pn.pane.HTML("", css_classes=["sq-notebook-path"])
        if config.jupyter is not None:
            self.button = pn.widgets.Button(label="open in Jupyter", button_type="success", width=160,
                                            css_classes=["sq-jupyter"])
            self.button.js_on_click(args={"where": where}, code=self.OPEN_JS)
            self.panel = pn.Column(self.button, where)
            return

        def build() -> io.BytesIO:
            query = {k: v for k, v in state.query().items() if k != "side"}
            try:
                place = notebook.place_from_query(source, query)
            except SurveyQAError as exc:  # said beside the button, not only in the log
                where.object = f"<div class='sq-jupyter-error' style='color:#c62828'>{html.escape(str(exc))}</div>"
                raise
            path = notebook.write_notebook(repo, collection, place, config.notebook_dir or Path.cwd())
            where.object = f"<small>notebook written to <code class='sq-notebook'>{html.escape(str(path))}</code></small>"
            return io.BytesIO(path.read_bytes())

        self.button = pn.widgets.FileDownload(callback=build, filename=self._filename(),
                                              label="open in Jupyter", button_type="success", width=160,
                                              css_classes=["sq-jupyter"])
        self.panel = pn.Column(self.button, where)

    def _filename(self) -> str:
        """The download's file name (the place itself is checked when the file is made)."""
        return notebook.query_name(self.state.query())

    def update(self) -> None:
        if isinstance(self.button, pn.widgets.FileDownload):
            self.button.filename = self._filename()


#: Inline styles of the page shown, and of the pages kept in the document but not shown (`_Session._show`):
#: out of the flow, behind, transparent (Panel's HTML and table views set their own ``visibility``, so
#: only opacity hides them) and deaf to the mouse. Pages carry the class ``sq-page`` (`browser.SHOWN_PAGE`).
_HERE = {"position": "relative", "visibility": "visible", "opacity": "1", "pointer-events": "auto", "z-index": "auto"}
_AWAY = {"position": "absolute", "top": "0px", "left": "0px", "right": "0px", "visibility": "hidden",
         "opacity": "0", "pointer-events": "none", "z-index": "-1"}


class _Session:
    """One browser session's pages, each built the first time it is shown and then only updated."""

    def __init__(self, config: DashboardConfig, state: DrillState):
        self.config, self.state = config, state
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["sq-error"],
                                   sizing_mode="stretch_width")
        # the pages kept hidden lie over the shown one, out of the flow: clipped, they add no scrolling
        self.body = pn.Column(sizing_mode="stretch_width", styles={"position": "relative", "overflow": "hidden"})
        self.pages: dict[tuple[str, str], object] = {}
        self.jupyter: dict[tuple[str, str], _Jupyter] = {}
        self.provenance: dict[tuple[str, str], ProvenanceLink] = {}  # "where does this number come from"

    def _page(self, kind: str, side: str = "a"):
        """The session's page of that kind for run A or B, built the first time it is shown."""
        if kind.startswith("compare"):
            side = "a"
        if (kind, side) not in self.pages:
            config, state = self.config, self.state
            source, _, _, title = config.side(side)
            if kind == "compare":
                page = CompareQuickLookPanel(config.source, config.compare, state, config.labels)
            elif kind == "compare_drill":
                page = CompareDrillPanel(config.source, config.compare, state, config.labels)
            elif kind == "quicklook":
                page = QuickLookPanel(source, state, title)
            elif kind == "failures":
                page = _Static(failures_panel(source, repo=config.side(side)[1]))
            elif kind == "focalplane":
                self.jupyter[(kind, side)] = _Jupyter(config, state, side)
                page = FocalPlanePanel(source, state, extras=[self.jupyter[(kind, side)].panel])
            elif kind == "linked":
                page = LinkedPanel(source, state)
            else:  # a metric view: one page per mode (coadd, visits), each laid out for its mode
                self.jupyter[(kind, side)] = _Jupyter(config, state, side)
                self.provenance[(kind, side)] = ProvenanceLink(state)
                page = DrillPanel(source, state, extras=[self.jupyter[(kind, side)].panel,
                                                         self.provenance[(kind, side)].panel])
            page.panel.css_classes = [*page.panel.css_classes, "sq-page", f"sq-page-{kind}"]
            self.pages[(kind, side)] = page
        return self.pages[(kind, side)]

    def _kind(self, state: DrillState | None = None) -> str:
        state = state or self.state
        if state.view in COMPARE_VIEWS:
            if self.config.compare is None:
                raise SurveyQAError("this dashboard compares no second run",
                                    "start it with --compare REPO_B (and --compare-collection C) to compare two")
            return "compare" if state.view == "compare" or state.metric is None else "compare_drill"
        if state.view == "failures":
            return "failures"
        if state.view == "focalplane" and state.metric is not None:
            return "focalplane"
        if state.view == "linked":
            return "linked"
        if state.view == "quicklook" or state.metric is None:
            return "quicklook"
        return "drill_visits" if state.view == "visits" else "drill_coadd"

    def _show(self, shown) -> None:
        """Show one page; the others built in this session stay in the document, laid out but hidden.

        Adding or removing a page, or changing its ``visible``, makes Bokeh lay out the whole
        document again and the browser recompute the style of every element: 0.4 s for a metric
        view, besides painting it. A page kept in the document, hidden by inline styles (which
        Bokeh does not treat as layout) and out of the flow, is shown by a repaint.
        """
        if shown is None:
            for page in self.pages.values():
                page.panel.styles = _AWAY
            return
        if not any(p is shown.panel for p in self.body.objects):
            shown.panel.styles = _HERE
            self.body.append(shown.panel)
        for page in self.pages.values():
            wanted = _HERE if page is shown else _AWAY
            if page.panel.styles != wanted:
                page.panel.styles = wanted

    def prepare_next(self) -> None:
        """Build the pages a first click opens, hidden, once the browser shows the first page.

        The first metric view of a session costs ~270 Bokeh models: 0.3-0.5 s to make them on the
        server, as long again for the browser to build their views, and 0.4 s to lay the page
        out: 0.8-0.9 s for the first click. Built and laid out while the user reads the quick
        look, at a likely place of each mode (the first failing metric in coadd mode and in
        visit mode), a click only sends data and shows the page. A page opened directly at a
        metric view has nothing to build ahead.
        """
        plots.compile_kernels_in_background()
        kind = self._kind() if not self.error.visible else None
        if kind not in ("quicklook", "compare"):
            return
        side = "a" if kind == "compare" else self.state.side
        try:
            places = self.pages[(kind, side)].first_clicks()
        except Exception:  # only a speed-up: the pages are built when first opened
            log.exception("cannot tell which pages to build ahead")
            return
        self._build_ahead(places, side)

    def _build_ahead(self, places: list[DrillState], side: str) -> None:
        """Build the first place's page hidden, then the others one per turn of the event loop.

        Each page is its own callback, so other callbacks of the server may run between them.
        (Measured: a click sent at once was still drawn after both pages, 1.7 s at 100 tracts.)
        """
        if not places or self.error.visible or self._kind() not in ("quicklook", "compare"):
            return  # the user has moved on: the page clicked is built by `render`, the rest would only delay it
        place, rest = places[0], places[1:]
        kind = self._kind(place)
        if (kind, side) not in self.pages:
            started = time.perf_counter()
            try:
                page = self._page(kind, side)
                with pn.io.hold():
                    page.update(place)  # the widgets of a likely place: a click then changes data only
                    page.panel.styles = _AWAY
                    self.body.append(page.panel)
                log.debug("built the %s page ahead in %.3f s", kind, time.perf_counter() - started)
            except Exception:  # built again, with its error shown, when the user opens it
                log.exception("could not build the %s page ahead", kind)
                self.pages.pop((kind, side), None)
        if rest:
            doc = pn.state.curdoc
            if doc is not None and doc.session_context is not None:
                doc.add_next_tick_callback(lambda: self._build_ahead(rest, side))
            else:
                self._build_ahead(rest, side)

    def render(self, *_events) -> None:
        state = self.state
        try:
            with pn.io.hold():
                kind = self._kind()
                page = self._page(kind, state.side)
                if kind.startswith("drill") or kind == "focalplane":
                    self.jupyter[(kind, state.side)].update()
                if (kind, state.side) in self.provenance:
                    self.provenance[(kind, state.side)].update()
                started = time.perf_counter()
                page.update()
                self.error.visible = False
                self._show(page)
                _write_address(state)
            log.debug("drew %s in %.3f s", state.query(), time.perf_counter() - started)
        except SurveyQAError as exc:
            log.warning("page error: %s", exc)
            self._fail(f"**Error:** {html.escape(str(exc))}")
        except Exception as exc:  # the user must see that the page broke, not a blank page
            log.exception("page failed for %s", state.query())
            self._fail(f"**Error:** the page could not be drawn: {html.escape(type(exc).__name__)}: "
                       f"{html.escape(str(exc))}")

    def _fail(self, message: str) -> None:
        self.error.object = message
        self.error.visible = True
        self._show(None)


def _write_address(state: DrillState) -> None:
    """Make the address bar say exactly where the session is (`DrillState.query`), with keys cleared dropped.

    Panel's sync of the address writes each changed parameter on its own and leaves out a
    parameter set back to its default (``view=quicklook``) or to None: going back to the quick
    look kept ``?view=metric&metric=...`` and a reload reopened the metric. The address is the
    state's own query, written after each page is drawn.
    """
    location = pn.state.location
    if location is None:
        return
    query = urllib.parse.urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in state.query().items()})
    search = f"?{query}" if query else ""
    if location.search != search:
        location.search = search


class _Static:
    """A page with nothing to update (failures: the run does not change under the server)."""

    def __init__(self, panel):
        self.panel = panel

    def update(self) -> None:
        pass


def session_page(config: DashboardConfig) -> pn.viewable.Viewable:
    """Build the page for a new browser session (Panel calls this once per session).

    The address is read by the dashboard's rules (`state.read_query`) before Panel syncs it:
    Panel drops every value of an address one of whose values its parameter cannot take
    (``tract=abc``), which would show the quick look instead, without a word. A value that
    is wrong is said in the red banner, and no page is drawn until the user goes elsewhere.
    """
    from .state import read_query

    pn.extension("tabulator")
    args = pn.state.session_args or {}
    values, errors = read_query(args)
    state = DrillState(**values)
    if pn.state.location is not None:
        # Panel's reading of the address is not ours (band=1 becomes a number): what it cannot apply, it leaves
        pn.state.location.sync(state, URL_KEYS, on_error=lambda unapplied: None)
        state.param.update(**values)
    if config.compare is not None and "view" not in args:
        state.view = "compare"  # a server comparing two runs opens on the comparison
    session = _Session(config, state)
    state.param.watch(session.render, list(URL_KEYS))
    if errors:
        log.warning("bad address %s: %s", pn.state.location.search if pn.state.location else args,
                    "; ".join(map(str, errors)))
        session._fail("**Error in the address:** " + "; ".join(html.escape(str(e)) for e in errors))
    else:
        session.render()
    pn.state.onload(session.prepare_next)
    return pn.Column(_nav(config, state), session.error, session.body, sizing_mode="stretch_width")
