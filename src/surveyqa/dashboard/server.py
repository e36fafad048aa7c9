"""Run the dashboard: the Panel app and its JSON twins on one Bokeh/Tornado server, in a thread.

The server listens on 127.0.0.1 unless told otherwise, accepts websocket connections only from
the address it serves, and is stopped with `DashboardServer.stop`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
import threading
import time
import webbrowser
from pathlib import Path

import panel as pn

from surveyqa.errors import SurveyQAError

from . import notebook
from .api import api_routes
from .app import DashboardConfig, session_page
from .source import CachedSource, DataSource, open_repository

__all__ = ["serve", "serve_source", "DashboardServer"]

log = logging.getLogger(__name__)


class DashboardServer:
    """A running dashboard: its URL and a way to stop it."""

    def __init__(self, server, thread: threading.Thread, url: str, config: DashboardConfig):
        self.server = server
        self.thread = thread
        self.url = url
        self.config = config

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and its thread."""
        loop = self.server.io_loop

        def shutdown():
            self.server.stop()
            loop.stop()

        loop.add_callback(shutdown)
        self.thread.join(timeout)

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C stops it)."""
        try:
            while self.thread.is_alive():
                self.thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _warm_up(config: DashboardConfig) -> None:
    """Compute the quick look (and the comparison) once, as soon as the server listens.

    At 100 tracts the quick look reads 12,100 small metric-value files (~5 s); a user who opens
    the page a few seconds after the URL is printed then finds it ready, and one who opens it at
    once waits for this same read (`CachedSource` reads a key once), not for a second one.
    An error is left for the page to show.
    """
    from . import compare, model
    from .source import memo

    started = time.perf_counter()
    try:
        for source in (config.source, config.compare):
            if source is not None:
                memo(source, ("quicklook", None, None), lambda s=source: model.quicklook(s))
        if config.compare is not None:
            memo(config.source, ("compare_quicklook", id(config.compare)),
                 lambda: compare.compare_quicklook(config.source, config.compare))
    except Exception as exc:  # noqa: BLE001 - the page reads again and shows the error to the user
        log.info("warm-up of the quick look failed (the page will say why): %s", exc)
        return
    log.info("quick look ready in %.1f s", time.perf_counter() - started)


def serve_source(source: DataSource, port: int = 0, show: bool = False, *, address: str = "127.0.0.1",
                 title: str = "surveyqa", repo: str | None = None, collection: str | None = None,
                 notebook_dir: Path | None = None, compare: DataSource | None = None,
                 compare_repo: str | None = None, compare_collection: str | None = None,
                 cache_bytes: int = 2 * 1024**3, jupyter_url: str | None = None) -> tuple[DashboardServer, str]:
    """Serve the dashboard for any `DataSource`; returns once the server is listening.

    Parameters
    ----------
    source : DataSource
        Where the numbers come from (wrapped in a `CachedSource` shared by all sessions).
    port : int
        TCP port; 0 picks a free one.
    show : bool
        Open the page in the default web browser.
    address : str
        Interface to listen on (127.0.0.1: this machine only).
    repo, collection : str, optional
        Recorded in "open in Jupyter" notebooks: a local path is made absolute here, once, so that
        a notebook finds the repository from any folder (a URI is kept as it is).
    notebook_dir : Path, optional
        Where notebooks are written; a new temporary folder if omitted.
    compare : DataSource, optional
        A second run (B) to compare with ``source`` (A): the compare pages open first.
    compare_repo, compare_collection : str, optional
        Where the second run came from (its notebooks and labels).
    cache_bytes : int
        Memory the server may keep read tables and computed views in, per run (least recently
        used out first).
    jupyter_url : str, optional
        A running Jupyter server (the URL it prints, with ``?token=``): "open in Jupyter" puts the
        notebook there and opens it in a new tab. Checked now: a malformed URL is refused, one
        that does not answer is logged (and said on the page at each click while it lasts).
    """
    jupyter = notebook.parse_jupyter_url(jupyter_url) if jupyter_url else None
    if jupyter is not None:
        problem = notebook.check_jupyter(jupyter)
        if problem:
            log.warning("'open in Jupyter' will fail until this is fixed: %s", problem)
    repo = notebook.repository_location(repo) if repo is not None else None
    compare_repo = notebook.repository_location(compare_repo) if compare_repo is not None else None
    port = port or _free_port(address)
    cached = source if isinstance(source, CachedSource) else CachedSource(source, max_bytes=cache_bytes)
    if compare is not None and not isinstance(compare, CachedSource):
        compare = CachedSource(compare, max_bytes=cache_bytes)
    config = DashboardConfig(source=cached, title=title, repo=repo, collection=collection,
                             notebook_dir=notebook_dir or Path(tempfile.mkdtemp(prefix="surveyqa-notebooks-")),
                             compare=compare, compare_repo=compare_repo, compare_collection=compare_collection,
                             jupyter=jupyter)
    ready = threading.Event()
    holder: dict = {}

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            server = pn.serve(lambda: session_page(config), port=port, address=address, show=False, start=False,
                              title=title, websocket_origin=[f"{address}:{port}", f"localhost:{port}"],
                              extra_patterns=api_routes(config), verbose=False)
            server.start()
        except OSError as exc:
            holder["error"] = exc
            ready.set()
            return
        holder["server"] = server
        ready.set()
        server.io_loop.start()

    thread = threading.Thread(target=run, name=f"surveyqa-dashboard-{port}", daemon=True)
    thread.start()
    ready.wait(60)
    if "error" in holder:
        raise SurveyQAError(f"cannot listen on {address}:{port}: {holder['error']}", "choose another --port")
    if "server" not in holder:
        raise SurveyQAError("the dashboard server did not start within 60 s", "run with -vv to see why")
    threading.Thread(target=_warm_up, args=(config,), name=f"surveyqa-warm-up-{port}", daemon=True).start()
    url = f"http://{address}:{port}/"
    log.info("dashboard serving %s at %s", title, url)
    if show:
        webbrowser.open(url)
    return DashboardServer(holder["server"], thread, url, config), url


def serve(repo: str, collection: str, port: int = 0, show: bool = False, *, address: str = "127.0.0.1",
          notebook_dir: Path | None = None, compare: str | None = None,
          compare_collection: str | None = None, cache_bytes: int = 2 * 1024**3,
          jupyter_url: str | None = None) -> tuple[DashboardServer, str]:
    """Serve the drill-down dashboard of a QA repository.

    Parameters
    ----------
    repo : str
        Butler repository path or URI. A relative path is made absolute once, here, so that the
        server and its notebooks find the same repository from any working folder.
    collection : str
        Collection holding the QA outputs.
    port : int
        TCP port; 0 picks a free one.
    show : bool
        Open the page in the default web browser.
    compare : str, optional
        A second repository (B) to compare with this one (A); may be the same path.
    compare_collection : str, optional
        B's collection (default: ``collection``). Comparing a run with itself is refused.
    cache_bytes : int
        Memory for read tables and computed views, per run (default 2 GiB).
    jupyter_url : str, optional
        A running Jupyter server (``http://127.0.0.1:8888/lab?token=...``): "open in Jupyter"
        opens the notebook there instead of downloading it.

    Returns
    -------
    server : DashboardServer
        Call ``server.stop()`` to stop it.
    url : str
        The quick-look page.
    """
    if compare is None and compare_collection is not None:
        raise SurveyQAError("--compare-collection needs --compare REPO_B",
                            "give the second repository (it may be the same path as the first)")
    if jupyter_url:
        notebook.parse_jupyter_url(jupyter_url)  # a malformed URL is refused before the repository is read
    repo = notebook.repository_location(repo)
    source = open_repository(repo, collection)
    other = None
    if compare is not None:
        compare = notebook.repository_location(compare)
        compare_collection = compare_collection or collection
        if compare == repo and compare_collection == collection:
            raise SurveyQAError(f"comparing {repo} ({collection}) with itself",
                                "give --compare another repository or --compare-collection another collection")
        other = open_repository(compare, compare_collection)
    return serve_source(source, port, show, address=address, title=f"{Path(repo).name} · {collection}",
                        repo=repo, collection=collection, notebook_dir=notebook_dir, compare=other,
                        compare_repo=compare, compare_collection=compare_collection, cache_bytes=cache_bytes,
                        jupyter_url=jupyter_url)
