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
@click.option("--notebook-dir", type=click.Path(file_okay=False), default=None,
              help="Where 'open in Jupyter' writes notebooks (default: a temporary folder).")
def dashboard(repo: str, collection: str, port: int, address: str, show: bool, notebook_dir: str | None) -> None:
    """Serve the drill-down dashboard of REPO: quick look, metric view, tract -> patch -> object,
    visit -> detector, failed quanta, and 'open in Jupyter'.

    Every page has a JSON twin under /api/ (e.g. /api/quicklook.json). Stop with Ctrl-C.

    \b
    Example:
        surveyqa dashboard demo-repo --collection u/qa/run1 --port 5006
    """
    from pathlib import Path

    from .server import serve

    server, url = serve(repo, collection, port=port, show=show, address=address,
                        notebook_dir=Path(notebook_dir) if notebook_dir else None)
    click.echo(f"dashboard of {repo} ({collection}) at {url}  (Ctrl-C stops it)")
    server.wait()
