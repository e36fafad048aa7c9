"""The "open in Jupyter" notebook: the same rows the page shows, loaded from the same repository.

DMTN-085 §4.12 asks for a way to leave the dashboard for a notebook "with the relevant datasets
already loaded". The notebook opens the repository with `QARepository` and rebuilds the page's
view with the same functions the dashboard uses, so the rows match what was on screen.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

__all__ = ["make_notebook", "write_notebook", "notebook_name"]

_DRILL_KEYS = ("band", "tract", "patch", "visit", "detector")


def _call(query: dict) -> str:
    args = {k: query[k] for k in _DRILL_KEYS if query.get(k) is not None}
    if query.get("view") == "visits":
        args.pop("tract", None), args.pop("patch", None)
        fn = "visit_view"
    else:
        args.pop("visit", None), args.pop("detector", None)
        fn = "metric_view"
    rendered = "".join(f", {k}={v!r}" for k, v in args.items())
    return f"view = {fn}(repo, {query['metric']!r}{rendered})"


def make_notebook(repo: str, collection: str, query: dict) -> nbformat.NotebookNode:
    """A notebook that opens ``repo``/``collection`` and loads the view described by ``query``.

    Parameters
    ----------
    repo, collection : str
        The repository and collection the dashboard is serving.
    query : dict
        The page's state (``view``, ``metric``, ``band``, ``tract``, ``patch``, ``visit``, ``detector``).
    """
    cells = [nbformat.v4.new_markdown_cell(
        f"# surveyqa: {query.get('metric') or 'quick look'}\n\n"
        f"Opened from the drill-down dashboard at `{json.dumps(query, sort_keys=True)}`.\n"
        "The cells below load the same rows the page showed; `view.children` holds the values one\n"
        "level down, `view.rows` the per-source (or per-object) values.")]
    setup = ("from surveyqa.butler import QARepository\n"
             "from surveyqa.dashboard.model import metric_view, visit_view, quicklook\n\n"
             f"repo = QARepository({repo!r}, {collection!r})")
    cells.append(nbformat.v4.new_code_cell(setup))
    if query.get("metric"):
        cells.append(nbformat.v4.new_code_cell(
            _call(query) + "\nprint(f'{view.level}: {len(view.children)} children, {len(view.rows)} rows')"))
        cells.append(nbformat.v4.new_code_cell("view.children.drop(columns=['polygon'], errors='ignore')"))
        cells.append(nbformat.v4.new_code_cell("view.rows.head(20)"))
    else:
        cells.append(nbformat.v4.new_code_cell("ql = quicklook(repo)\nprint(f'{len(ql.summary)} metric values')\n"
                                               "ql.summary"))
    cells.append(nbformat.v4.new_code_cell(
        "# every metric value stored in the collection, tidy (one row per metric and data ID)\n"
        "values = repo.metric_values()\nvalues.head()"))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def notebook_name(query: dict) -> str:
    """A file name that says what the notebook holds, e.g. ``surveyqa_PA1_tract9813.ipynb``."""
    parts = [str(query.get("metric") or "quicklook").split(".")[-1]]
    parts += [f"{k}{query[k]}" for k in _DRILL_KEYS if query.get(k) is not None]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "surveyqa_" + "_".join(parts)) + ".ipynb"


def write_notebook(repo: str, collection: str, query: dict, directory: Path) -> Path:
    """Write the notebook into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / notebook_name(query)
    nbformat.write(make_notebook(repo, collection, query), path)
    return path
