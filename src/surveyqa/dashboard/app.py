"""Assemble one browser session's page: navigation, error banner, and the view its state asks for.

`DashboardConfig` is what a server knows (the source, where to write notebooks); `session_page`
makes a fresh `DrillState` per session, syncs it with the URL, and redraws the body whenever it
changes. An error while drawing is shown in a red banner on the page (and logged), never only
in the server log.
"""

from __future__ import annotations

import html
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import panel as pn

from surveyqa.errors import SurveyQAError

from . import notebook
from .drill_view import drill_panel
from .failures_view import failures_panel
from .quicklook_view import quicklook_panel
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


def _jupyter(config: DashboardConfig, state: DrillState) -> pn.Column:
    """The "open in Jupyter" button: download the notebook; its path on the server is shown too."""
    if config.repo is None or config.collection is None:
        return pn.Column(pn.pane.HTML("<small>(no repository: no notebook)</small>"))
    where = pn.pane.HTML("", css_classes=["sq-notebook-path"])

    def build() -> io.BytesIO:
        query = state.query()
        directory = config.notebook_dir or Path.cwd()
        path = notebook.write_notebook(config.repo, config.collection, query, directory)
        where.object = f"<small>notebook written to <code class='sq-notebook'>{html.escape(str(path))}</code></small>"
        return io.BytesIO(path.read_bytes())

    button = pn.widgets.FileDownload(callback=build, filename=notebook.notebook_name(state.query()),
                                     label="open in Jupyter", button_type="success", width=160,
                                     css_classes=["sq-jupyter"])
    return pn.Column(button, where)


def session_page(config: DashboardConfig) -> pn.viewable.Viewable:
    """Build the page for a new browser session (Panel calls this once per session)."""
    pn.extension("tabulator")
    state = DrillState()
    if pn.state.location is not None:
        pn.state.location.sync(state, URL_KEYS)
    error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["sq-error"],
                          sizing_mode="stretch_width")
    body = pn.Column(sizing_mode="stretch_width")

    def render(*_events) -> None:
        try:
            if state.view == "quicklook" or state.metric is None and state.view != "failures":
                content = quicklook_panel(config.source, state, config.title)
            elif state.view == "failures":
                content = failures_panel(config.source)
            else:
                content = drill_panel(config.source, state, extras=[_jupyter(config, state)])
            error.visible = False
            body.objects = [content]
        except SurveyQAError as exc:
            log.warning("page error: %s", exc)
            error.object = f"**Error:** {html.escape(str(exc))}"
            error.visible = True
            body.objects = []
        except Exception as exc:  # the user must see that the page broke, not a blank page
            log.exception("page failed for %s", state.query())
            error.object = f"**Error:** the page could not be drawn: {html.escape(type(exc).__name__)}: " \
                           f"{html.escape(str(exc))}"
            error.visible = True
            body.objects = []

    state.param.watch(render, list(URL_KEYS))
    render()
    return pn.Column(_nav(config, state), error, body, sizing_mode="stretch_width")
