"""Failure classes on the sky: the failed quanta's regions (detector, visit or tract), coloured by class.

RTN-041 §4 diagnosed the DP0.2 failures by where they were on the sky; a class is the one rule
of `surveyqa.logs.classify` (exception type + message with numbers and IDs masked), so the page
and ``surveyqa logs failures`` group the same way. A run still going (partial) marks its classes
as new: they appeared while it runs.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.palettes import Category10_10

from surveyqa.logs.classify import classify

from . import plots

__all__ = ["failure_classes", "add_class_regions", "classes_table"]


def failure_classes(failures: pd.DataFrame) -> tuple[list, np.ndarray]:
    """The classes of the failed quanta (blocked ones are not failures of their own) and, per row, its
    class index (-1 for a row in none)."""
    rows = []
    index = []
    for i, row in failures.reset_index(drop=True).iterrows():
        if row.get("status", "failed") == "blocked":
            continue
        rows.append({"exc_type": row.get("exception_type"), "message": row.get("message"), "task": row.get("label"),
                     "data_id": {"row": i}})
        index.append(i)
    classes = classify(rows)
    which = np.full(len(failures), -1, dtype=int)
    for k, c in enumerate(classes):
        for q in c.quanta:
            which[q["data_id"]["row"]] = k
    return classes, which


_REGIONS = {  # the finest unit a data ID names -> its dimension record with a region, and the keys of its where
    ("visit", "detector"): ("visit_detector_region", ("instrument", "visit", "detector")),
    ("visit",): ("visit", ("instrument", "visit")),
    ("tract", "patch"): ("patch", ("skymap", "tract", "patch")),
    ("tract",): ("tract", ("skymap", "tract")),
}


def _region(butler, row) -> np.ndarray | None:
    """The outline (RA, Dec vertices, deg) of the finest unit a failed quantum's data ID names, from the
    registry: a failed quantum wrote no QA output, so the dashboard's own tables do not hold its region."""
    from lsst.sphgeom import LonLat

    data_id = _data_id(row)
    for keys, (element, where_keys) in _REGIONS.items():
        if all(k in data_id for k in keys) and all(k in data_id for k in where_keys):
            where = " AND ".join(f"{k} = {data_id[k]!r}" if isinstance(data_id[k], str) else f"{k} = {data_id[k]}"
                                 for k in where_keys)
            records = butler.query_dimension_records(element, where=where, explain=False, limit=1)
            if records and records[0].region is not None:
                points = [LonLat(v) for v in records[0].region.getVertices()]
                return np.array([[p.getLon().asDegrees(), p.getLat().asDegrees()] for p in points])
    return None


def _data_id(row) -> dict:
    """The data ID of a failed quantum's row (its ``data_id`` text, ``instrument=HSC, visit=384``)."""
    out = {}
    for item in str(row.get("data_id") or "").replace(",", " ").split():
        key, _, value = item.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


#: At most this many failed quanta are drawn (one registry query each).
MAX_REGIONS = 2000


def add_class_regions(fig, repo: str | None, failures: pd.DataFrame, reference: float, partial: bool) -> list:
    """Draw each failed quantum's region (from the registry of ``repo``) filled in its class's colour;
    returns the classes."""
    from surveyqa.butler.repo import open_repo

    classes, which = failure_classes(failures)
    butler = open_repo(repo) if repo is not None else None
    data = {"xs": [], "ys": [], "colour": [], "class": [], "task": [], "data_id": [], "exception": [], "pattern": []}
    for i, row in failures.reset_index(drop=True).iterrows():
        if which[i] < 0 or butler is None or len(data["xs"]) >= MAX_REGIONS:
            continue
        vertices = _region(butler, row)
        if vertices is None:
            continue
        ra = plots.unwrap_ra(vertices[:, 0], reference)
        c = classes[which[i]]
        data["xs"].append(np.append(ra, ra[0]))
        data["ys"].append(np.append(vertices[:, 1], vertices[0, 1]))
        data["colour"].append(Category10_10[which[i] % 10])
        data["class"].append(f"{which[i] + 1}")
        data["task"].append(str(row.get("label")))
        data["data_id"].append(str(row.get("data_id")))
        data["exception"].append(c.exception)
        data["pattern"].append(c.pattern)
    regions = fig.patches("xs", "ys", source=ColumnDataSource(data), fill_color="colour", fill_alpha=0.35,
                          line_color="colour", line_width=2, name="failure_classes")
    fig.add_tools(HoverTool(renderers=[regions], tooltips=[("class", "@class"), ("task", "@task"),
                                                           ("data ID", "@data_id"), ("exception", "@exception"),
                                                           ("pattern", "@pattern")]))
    fig.tags = [*fig.tags, f"classes:{len(classes)}", f"regions:{len(data['xs'])}"]
    for c in classes:
        c.active = partial
    return classes


def classes_table(classes: list) -> pn.viewable.Viewable:
    """The classes, largest first: colour, exception, pattern, count and the quanta's tasks; a class of a
    run still going is marked NEW."""
    rows = []
    for k, c in enumerate(classes):
        new = " <b class='sq-class-new' style='color:#c62828'>NEW (run in progress)</b>" if c.active else ""
        tasks = ", ".join(sorted({str(q["task"]) for q in c.quanta}))
        rows.append(f"<tr class='sq-failure-class'><td style='background:{Category10_10[k % 10]};width:1em'></td>"
                    f"<td>{k + 1}</td><td>{html.escape(c.exception)}</td><td>{html.escape(c.pattern)}{new}</td>"
                    f"<td class='sq-class-count'>{c.count}</td><td>{html.escape(tasks)}</td></tr>")
    return pn.pane.HTML("<table class='sq-failure-classes'><tr><th></th><th>class</th><th>exception</th>"
                        "<th>message pattern</th><th>quanta</th><th>tasks</th></tr>" + "".join(rows) + "</table>",
                        sizing_mode="stretch_width")
