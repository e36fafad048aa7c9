"""`surveyqa dashboard`: serve the drill-down dashboard of a QA repository."""

from __future__ import annotations

import click

__all__ = ["dashboard"]


@click.command()
@click.argument("repo")
@click.option("--collection", required=True, help="Collection holding the QA outputs (with its qaManifest).")
@click.option("--port", type=int, default=0, show_default=True, help="TCP port; 0 picks a free one.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Interface to listen on; the default serves this machine only.")
@click.option("--show/--no-show", default=False, help="Open the page in the default web browser.")
@click.option("--compare", "compare", default=None, metavar="REPO_B",
              help="A second QA repository (B) to compare with REPO (A); the page opens on what changed.")
@click.option("--compare-collection", default=None,
              help="B's collection (default: --collection); with the same REPO, compares two collections.")
@click.option("--cache-mb", type=click.IntRange(min=0), default=2048, show_default=True,
              help="Memory (MiB) the server may keep read tables and computed views in, per repository; "
                   "least recently used go first. 0 keeps nothing.")
@click.option("--notebook-dir", type=click.Path(file_okay=False), default=None,
              help="Where 'open in Jupyter' writes notebooks (default: a temporary folder).")
@click.option("--jupyter-url", default=None, metavar="URL",
              help="A running Jupyter server, as it prints its URL (http://127.0.0.1:8888/lab?token=...): "
                   "'open in Jupyter' opens the notebook there instead of downloading it.")
def dashboard(repo: str, collection: str, port: int, address: str, show: bool, compare: str | None,
              compare_collection: str | None, cache_mb: int, notebook_dir: str | None,
              jupyter_url: str | None) -> None:
    """Serve the drill-down dashboard of REPO: quick look, metric view, tract -> patch -> object,
    visit -> detector, failed quanta, and 'open in Jupyter'.

    With --compare REPO_B, two runs side by side: every metric's values in A and B, regressions
    first, and B - A on the sky down to patches and detectors.

    'Open in Jupyter' downloads a notebook that loads the place on screen (REPO made absolute:
    it runs from any folder); with --jupyter-url it opens in that Jupyter server instead.

    Every page has a JSON twin under /api/ (e.g. /api/quicklook.json). Stop with Ctrl-C.

    \b
    Examples:
        surveyqa dashboard demo-repo --collection u/qa/run1 --port 5006
        surveyqa dashboard repo --collection qa/v1 --compare repo --compare-collection qa/v2
        surveyqa dashboard demo-repo --collection u/qa/run1 --jupyter-url 'http://127.0.0.1:8888/lab?token=abc'
    """
    from pathlib import Path

    from .server import serve

    server, url = serve(repo, collection, port=port, show=show, address=address,
                        notebook_dir=Path(notebook_dir) if notebook_dir else None, compare=compare,
                        compare_collection=compare_collection, cache_bytes=cache_mb * 2**20,
                        jupyter_url=jupyter_url)
    against = f" compared with {compare} ({compare_collection or collection})" if compare else ""
    click.echo(f"dashboard of {repo} ({collection}){against} at {url}  (Ctrl-C stops it)")
    if server.config.jupyter is not None:
        click.echo(f"'open in Jupyter' opens notebooks in {server.config.jupyter.base} "
                   f"(folder {server.config.jupyter.folder})")
    server.wait()
