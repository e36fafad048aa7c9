"""Assemble one browser session's page: navigation, error banner, and the view its state asks for.

`DashboardConfig` is what a server knows (the source, where to write notebooks); `session_page`
makes a fresh `DrillState` per session, syncs it with the URL, and shows the page it asks for.
Each page (quick look, metric view, failures) is built once per session, the first time it is
shown; moving around only hides the others and updates the data of the one shown. An error while drawing is shown in a red banner on the page (and logged), never only
in the server log.
"""

from __future__ import annotations

import html
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import panel as pn

from surveyqa.errors import SurveyQAError

from . import notebook
from .drill_view import DrillPanel
from .failures_view import failures_panel
from .quicklook_view import QuickLookPanel
from .source import DataSource
from .state import URL_KEYS, DrillState

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
    """

    source: DataSource
    title: str = "surveyqa"
    repo: str | None = None
    collection: str | None = None
    notebook_dir: Path | None = None
    extra: dict = field(default_factory=dict)


def _nav(config: DashboardConfig, state: DrillState) -> pn.Row:
    home = pn.widgets.Button(label="quick look", button_type="primary", css_classes=["sq-nav-home"])
    home.on_click(lambda e: state.go(view="quicklook"))
    try:
        n_failed = len(config.source.failures())
    except SurveyQAError as exc:
        log.warning("cannot read failures: %s", exc)
        n_failed = 0
    fails = pn.widgets.Button(label=f"failures ({n_failed})", button_type="danger" if n_failed else "light",
                              css_classes=["sq-nav-failures"])
    fails.on_click(lambda e: state.go(view="failures"))
    return pn.Row(home, fails)


class _Jupyter:
    """The "open in Jupyter" button: download the notebook of the current place; its path on the server is shown."""

    def __init__(self, config: DashboardConfig, state: DrillState):
        self.state = state
        if config.repo is None or config.collection is None:
            self.button = None
            self.panel = pn.Column(pn.pane.HTML("<small>(no repository: no notebook)</small>"))
            return
        where = pn.pane.HTML("", css_classes=["sq-notebook-path"])

        def build() -> io.BytesIO:
            query = state.query()
            directory = config.notebook_dir or Path.cwd()
            path = notebook.write_notebook(config.repo, config.collection, query, directory)
            where.object = f"<small>notebook written to <code class='sq-notebook'>{html.escape(str(path))}</code></small>"
            return io.BytesIO(path.read_bytes())

        self.button = pn.widgets.FileDownload(callback=build, filename=notebook.notebook_name(state.query()),
                                              label="open in Jupyter", button_type="success", width=160,
                                              css_classes=["sq-jupyter"])
        self.panel = pn.Column(self.button, where)

    def update(self) -> None:
        if self.button is not None:
            self.button.filename = notebook.notebook_name(self.state.query())


class _Session:
    """One browser session's pages, each built the first time it is shown and then only updated."""

    def __init__(self, config: DashboardConfig, state: DrillState):
        self.config, self.state = config, state
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["sq-error"],
                                   sizing_mode="stretch_width")
        self.body = pn.Column(sizing_mode="stretch_width")
        self.pages: dict[str, object] = {}
        self.jupyter: _Jupyter | None = None

    def _page(self, kind: str):
        if kind not in self.pages:
            config, state = self.config, self.state
            if kind == "quicklook":
                self.pages[kind] = QuickLookPanel(config.source, state, config.title)
            elif kind == "failures":
                self.pages[kind] = _Static(failures_panel(config.source))
            else:
                self.jupyter = _Jupyter(config, state)
                self.pages[kind] = DrillPanel(config.source, state, extras=[self.jupyter.panel])
        return self.pages[kind]

    def _show(self, shown) -> None:
        """Put the page shown alone in the body (a hidden page would still be laid out at every step)."""
        objects = [shown.panel] if shown is not None else []
        if len(self.body.objects) != len(objects) or any(a is not b for a, b in zip(self.body.objects, objects)):
            self.body.objects = objects

    def render(self, *_events) -> None:
        state = self.state
        try:
            with pn.io.hold():
                if state.view == "quicklook" or state.metric is None and state.view != "failures":
                    page = self._page("quicklook")
                elif state.view == "failures":
                    page = self._page("failures")
                else:
                    page = self._page("drill")
                    self.jupyter.update()
                started = time.perf_counter()
                page.update()
                self.error.visible = False
                self._show(page)
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


class _Static:
    """A page with nothing to update (failures: the run does not change under the server)."""

    def __init__(self, panel):
        self.panel = panel

    def update(self) -> None:
        pass


def session_page(config: DashboardConfig) -> pn.viewable.Viewable:
    """Build the page for a new browser session (Panel calls this once per session)."""
    pn.extension("tabulator")
    state = DrillState()
    if pn.state.location is not None:
        pn.state.location.sync(state, URL_KEYS)
    session = _Session(config, state)
    state.param.watch(session.render, list(URL_KEYS))
    session.render()
    return pn.Column(_nav(config, state), session.error, session.body, sizing_mode="stretch_width")
