"""The "open in Jupyter" notebook: the place the page shows, loaded again from the same repository.

DMTN-085 §4.12 asks for a way to leave the dashboard for a notebook "with the relevant datasets
already loaded". The notebook opens the repository the server serves, by its absolute path (or
its URI), with ``QARepository`` read through `CachedSource` (as the server reads it: with the
outlines of tracts, visits and detectors), rebuilds the page's view with the same `model`
function the page calls (`model.metric_view`, `model.visit_view`, `model.focal_plane`), prints
what the page says of that place (at a leaf, a patch or a detector, its values and the rows
behind them) and draws the page's plots again with matplotlib (`plot_drill`, `plot_focal_plane`).

Nothing typed into the page or its URL reaches the notebook as code: `place_from_query` checks
every value (the view is one of `NOTEBOOK_VIEWS`, the metric one of the manifest's, the band one
of that metric's, ids integers, the place one the repository has) and the notebook is written
from the checked `Place` with ``repr``, never by formatting the raw input.

With ``--jupyter-url`` (`JupyterServer`), `upload` puts the notebook into a running Jupyter
server through its REST contents API, and the page opens it there in a new tab.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import nbformat
import numpy as np
import pandas as pd

from surveyqa.errors import SurveyQAError

from .model import data_id

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .model import DrillView, FocalPlane
    from .source import DataSource

__all__ = ["NOTEBOOK_VIEWS", "Place", "place_from_query", "make_notebook", "notebook_name", "query_name",
           "write_notebook", "summary", "focal_summary", "plot_drill", "plot_focal_plane", "JupyterServer", "JupyterError",
           "parse_jupyter_url", "upload", "check_jupyter", "repository_location", "load", "query_from_json"]

#: Views that have a notebook, and the data-ID keys each one takes from the query (others are left out).
_VIEW_KEYS: dict[str, tuple[str, ...]] = {"quicklook": (), "failures": (), "metric": ("tract", "patch"),
                                          "visits": ("visit", "detector"), "focalplane": ("detector",)}
NOTEBOOK_VIEWS = tuple(_VIEW_KEYS)
_IDS = ("tract", "patch", "visit", "detector")
_MODEL_CALL = {"metric": "metric_view", "visits": "visit_view", "focalplane": "focal_plane"}
_COMPARE_VIEWS = ("compare", "compare_metric", "compare_visits")


# -- the place -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Place:
    """A checked place of the dashboard: what a notebook loads.

    Made by `place_from_query`, which checks it against the repository; the notebook is written
    from these values only (with ``repr``), so they are typed here too.

    Parameters
    ----------
    view : str
        One of `NOTEBOOK_VIEWS`.
    metric : str, optional
        A metric of the repository's manifest (the manifest's own string).
    band : str, optional
        One of the metric's bands.
    tract, patch, visit, detector : int, optional
        Data-ID values, only those the view uses.
    """

    view: str
    metric: str | None = None
    band: str | None = None
    tract: int | None = None
    patch: int | None = None
    visit: int | None = None
    detector: int | None = None

    def __post_init__(self) -> None:
        if self.view not in NOTEBOOK_VIEWS:
            raise SurveyQAError(f"view={self.view!r} has no notebook", f"views with one: {', '.join(NOTEBOOK_VIEWS)}")
        for name in ("metric", "band"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise SurveyQAError(f"{name} must be text, not {type(getattr(self, name)).__name__}")
        for name in _IDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise SurveyQAError(f"{name} must be an integer, not {value!r}")
            if value is not None and name not in _VIEW_KEYS[self.view]:
                raise SurveyQAError(f"view={self.view} takes no {name}",
                                    f"it takes: {', '.join(_VIEW_KEYS[self.view]) or 'no data ID'}")
        if self.view in _MODEL_CALL and self.metric is None:
            raise SurveyQAError(f"view={self.view} needs a metric", "add metric=<name> (see /api/manifest.json)")

    def query(self) -> dict[str, Any]:
        """The page's URL query of this place (None left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def parent(self) -> Place | None:
        """The place one level up of a leaf (its tract, its visit), whose children the page shows."""
        if self.view == "metric" and self.patch is not None:
            return Place("metric", self.metric, self.band, tract=self.tract)
        if self.view == "visits" and self.detector is not None:
            return Place("visits", self.metric, self.band, visit=self.visit)
        return None

    def where(self) -> str:
        """The place in words: ``validate_drp.PA1, band r, tract 100``."""
        parts = [self.metric or ("failed quanta" if self.view == "failures" else "quick look")]
        if self.view == "focalplane":
            parts.append("focal plane")
        elif self.view == "visits":
            parts.append("by visit")
        parts += [f"band {self.band}"] if self.band else []
        parts += [f"{k} {getattr(self, k)}" for k in _IDS if getattr(self, k) is not None]
        return ", ".join(parts)


def _text(query: Mapping[str, object], name: str) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SurveyQAError(f"{name} must be text, not {type(value).__name__}", f"give {name} as a string")
    return value


def _shown(value: object, limit: int = 60) -> str:
    """A query value quoted for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def _bands(source: DataSource, metric: str, view: str) -> list[str]:
    """The bands the page offers for this metric (the focal plane: those with per-detector values)."""
    values = source.metric_values(metric=metric)
    if view == "focalplane" and len(values):
        values = values[values["level"] == "detector"]
    return sorted(values["band"].dropna().unique().tolist()) if len(values) and "band" in values else []


def place_from_query(source: DataSource, query: Mapping[str, object]) -> Place:
    """Check a page's query against the repository and return the `Place` it names.

    The notebook is code; its values come from here only. Each is checked against what the
    repository has, and kept as the repository's own value (the manifest's metric name, the
    data's band), so nothing typed by a user is written into it.

    Parameters
    ----------
    source : DataSource
        The run the page shows.
    query : mapping
        The page's query (strings, from a URL) or its JSON (ids may be ints). ``view`` defaults
        to ``metric`` when a metric is given, else ``quicklook``; data-ID keys the view does not
        use (a tract in visit mode) are left out, as the page leaves them out.

    Raises
    ------
    SurveyQAError
        Saying which value is wrong and what to give instead: an unknown view, metric (its message
        starts "no metric"), band, a non-integer id, or a place the repository does not have
        ("no tract ...", "no visit ...", "no detector ...").
    """
    from . import model

    metric = _text(query, "metric")
    view = _text(query, "view") or ("metric" if metric else "quicklook")
    if view in _COMPARE_VIEWS:
        raise SurveyQAError(f"view={view} compares two runs: a notebook opens one",
                            "open the place in run A or B (open in A / open in B) and take that page's notebook")
    if view not in _VIEW_KEYS:
        from .state import VIEWS

        if view in VIEWS:
            raise SurveyQAError(f"view={view} has no notebook", f"views with one: {', '.join(NOTEBOOK_VIEWS)}")
        raise SurveyQAError(f"view={_shown(view)} is not a view of the dashboard",
                            f"give one of: {', '.join(NOTEBOOK_VIEWS)}")
    if view not in _MODEL_CALL:
        return Place(view)
    if metric is None:
        raise SurveyQAError(f"view={view} needs a metric", "add metric=<name> (the metrics: /api/manifest.json)")
    name = model.metric_entry(source, metric)["name"]
    ids = {k: data_id(k, query.get(k)) for k in _VIEW_KEYS[view]}  # the page's and JSON routes' rule
    band = _text(query, "band")
    if band is not None:
        bands = _bands(source, name, view)
        if band not in bands:
            raise SurveyQAError(f"band={_shown(band)} is not a band of {name}",
                                f"its bands: {', '.join(bands)}" if bands else "it has no bands: leave band out")
        band = bands[bands.index(band)]
    place = Place(view, name, band, **ids)
    load(source, place)  # an unknown tract, visit or detector: the error the page would show
    return place


def load(source: DataSource, place: Place):
    """The page's model of ``place`` (computed once per server, as the page computes it)."""
    from . import model
    from .source import memo

    if place.view == "metric":
        return memo(source, ("metric_view", place.metric, place.band, place.tract, place.patch),
                    lambda: model.metric_view(source, place.metric, place.band, place.tract, place.patch))
    if place.view == "visits":
        return memo(source, ("visit_view", place.metric, place.band, place.visit, place.detector),
                    lambda: model.visit_view(source, place.metric, place.band, place.visit, place.detector))
    if place.view == "focalplane":
        return memo(source, ("focal_plane", place.metric, place.band, place.detector),
                    lambda: model.focal_plane(source, place.metric, place.band, place.detector))
    raise SurveyQAError(f"view={place.view} has no model to load")


# -- the notebook ---------------------------------------------------------------------------------------------

def repository_location(repo: str | Path) -> str:
    """A repository as a notebook opened in any folder finds it: a local path made absolute, a URI unchanged.

    ``s3://``, ``file://``, ``https://`` and other ``scheme://`` locations name the same place from
    everywhere; a relative path names one only from the folder the server was started in.
    """
    text = str(repo)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return text
    return str(Path(text).expanduser().resolve())


def _call(place: Place) -> str:
    """The model call of ``place`` as code: each argument the ``repr`` of a checked value."""
    args = [repr(place.metric)]
    args += [f"{k}={getattr(place, k)!r}" for k in ("band", *_VIEW_KEYS[place.view]) if getattr(place, k) is not None]
    return f"{_MODEL_CALL[place.view]}(repo, {', '.join(args)})"


def _cells_drill(place: Place) -> list:
    code, markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    parent = place.parent()
    load_code = f"# the place the page showed, by the same call the page makes\nview = {_call(place)}\n"
    if parent is not None:
        load_code += ("# a leaf: the page keeps it among its siblings, itself selected (its parent's children)\n"
                      f"parent = {_call(parent)}\n")
    load_code += f"print(summary(view{', parent' if parent is not None else ''}))"
    key = "patch" if place.view == "metric" else "detector"
    children = (f"parent.children[parent.children[{key!r}] == {getattr(place, key)!r}]"
                if parent is not None else "view.children")
    return [
        code(load_code),
        markdown("The place's own stored values (`view.values`: value, unit, status, the spec and its threshold):"),
        code("view.values"),
        markdown("This place as the page lists it among its siblings (its parent's `children`)" if parent is not None
                 else "One level down (`view.children`), as the page's table lists them (`outlier`: robust "
                      "z-score above 3.5):"),
        code(f"{children}.drop(columns=['polygon'], errors='ignore')"),
        markdown("The rows behind it (`view.rows`: per source or per object; `view.columns` names their value, "
                 "magnitude and position columns):"),
        code("print(view.columns)\nview.rows"),
        markdown("The page's plots, drawn again (`surveyqa.dashboard.notebook.plot_drill`):"),
        code(f"fig = plot_drill(view{', parent' if parent is not None else ''})"),
        markdown("Every stored value of this metric, tidy (one row per data ID):"),
        code(f"repo.metric_values(metric={place.metric!r})"),
    ]


def _cells_focal(place: Place) -> list:
    code, markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    cells = [
        code(f"# the focal plane the page showed, by the same call the page makes\nfp = {_call(place)}\n"
             "print(focal_summary(fp))"),
        markdown("One row per detector: `value` is the median of its stored values over every visit of the band, "
                 "`n` its visits, `n_fail` those failing:"),
        code("fp.detectors.drop(columns=['polygon'], errors='ignore')"),
    ]
    if place.detector is not None:
        cells += [markdown(f"Detector {place.detector} in each visit (`fp.visits`):"), code("fp.visits")]
    return cells + [markdown("The page's focal plane, drawn again (`surveyqa.dashboard.notebook.plot_focal_plane`):"),
                    code("fig = plot_focal_plane(fp)")]


def make_notebook(repo: str, collection: str, place: Place) -> nbformat.NotebookNode:
    """The notebook of ``place``: opens ``repo``/``collection`` and loads what the page showed there.

    Parameters
    ----------
    repo : str
        The repository the dashboard serves, as `repository_location` gives it (absolute path or URI).
    collection : str
        The collection the dashboard serves.
    place : Place
        A place checked by `place_from_query`.
    """
    if not isinstance(place, Place):
        raise TypeError(f"make_notebook takes a Place (see place_from_query), not {type(place).__name__}")
    code, markdown = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    query = urlencode(place.query())
    cells = [markdown(
        f"# surveyqa: {place.where()}\n\n"
        f"Opened from the drill-down dashboard at `?{query}`, on the repository `{repo}`, collection "
        f"`{collection}`.\nThe cells below load the same rows the page showed, with the functions the page uses "
        "(`surveyqa.dashboard.model`), and draw its plots again.")]
    imports = {"quicklook": "quicklook", "failures": "failures_view", "metric": "metric_view",
               "visits": "visit_view", "focalplane": "focal_plane"}[place.view]
    helpers = {"metric": "plot_drill, summary", "visits": "plot_drill, summary",
               "focalplane": "focal_summary, plot_focal_plane"}.get(place.view)
    cells.append(code(
        "%matplotlib inline\n"
        "from surveyqa.butler import QARepository\n"
        "from surveyqa.dashboard.source import CachedSource\n"
        f"from surveyqa.dashboard.model import {imports}\n"
        + (f"from surveyqa.dashboard.notebook import {helpers}\n" if helpers else "")
        + "\n# the repository and collection the dashboard serves (an absolute path: run this notebook from any "
          "folder)\n"
        f"qa = QARepository({repo!r}, {collection!r})\n"
        "# read as the dashboard reads it: CachedSource also gives tracts, visits and detectors their outlines\n"
        "repo = CachedSource(qa)"))
    if place.view in ("metric", "visits"):
        cells += _cells_drill(place)
    elif place.view == "focalplane":
        cells += _cells_focal(place)
    elif place.view == "failures":
        cells.append(code("failures = failures_view(repo)\nprint(f'{len(failures)} failed quanta')\nfailures"))
    else:
        cells.append(code("ql = quicklook(repo)\nprint(f'{len(ql.summary)} metric values')\nql.summary"))
        cells.append(code("# what is wrong, by place (worst first), as the page lists it\n"
                          "from surveyqa.culprits import flag_text\n\n"
                          "for culprit in ql.culprits:\n    print(culprit.place)\n"
                          "    for flag in culprit.flags:\n        print('   ', flag_text(flag, culprit.data_id))"))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["surveyqa"] = {"repo": repo, "collection": collection, "place": place.query()}
    return notebook


def notebook_name(place: Place) -> str:
    """A file name that says what the notebook holds, e.g. ``surveyqa_PA1_r_tract100.ipynb``."""
    parts = [str(place.metric or place.view).split(".")[-1]]
    if place.view in ("visits", "focalplane"):
        parts.append(place.view)
    parts += [place.band] if place.band else []
    parts += [f"{k}{getattr(place, k)}" for k in _IDS if getattr(place, k) is not None]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "surveyqa_" + "_".join(parts)) + ".ipynb"


def query_name(query: Mapping[str, object]) -> str:
    """`notebook_name` of a page's query before it is checked (the name a download is offered under)."""
    view = str(query.get("view") or ("metric" if query.get("metric") else "quicklook"))
    keys = _VIEW_KEYS.get(view, ())
    try:
        return notebook_name(Place(view, query.get("metric"), query.get("band"),
                                   **{k: query.get(k) for k in keys}))
    except SurveyQAError:
        return "surveyqa.ipynb"


def write_notebook(repo: str, collection: str, place: Place, directory: Path) -> Path:
    """Write the notebook of ``place`` into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / notebook_name(place)
    nbformat.write(make_notebook(repo, collection, place), path)
    return path


# -- what the notebook prints --------------------------------------------------------------------------------

def _number(value: object) -> str:
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return "nan"


def _given(row: Mapping, name: str) -> Any:
    value = row.get(name)
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA else value


def _value_line(row: Mapping, unit: str, head: str | None = None) -> str:
    """One value as the page says it: ``detector r: 199.799 mas — fail (spec ...; threshold 50)``;
    ``head`` names it (default: its level and band)."""
    band = _given(row, "band")
    if head is None:
        head = f"  {_given(row, 'level') or ''}{' ' + str(band) if band else ''}".rstrip()
    said = [f"spec {_given(row, 'spec')}"] if _given(row, "spec") else []
    said += [f"threshold {_number(row['threshold'])}"] if _given(row, "threshold") is not None else []
    said += [f"n={int(row['n'])}"] if _given(row, "n") is not None else []
    said += [str(_given(row, "note"))] if _given(row, "note") else []
    line = f"{head}: {_number(row.get('value'))} {_given(row, 'unit') or unit} — {_given(row, 'status') or 'none'}"
    return line + (f" ({'; '.join(said)})" if said else "")


def _plural(key: str) -> str:
    return f"{key}{'es' if key.endswith('ch') else 's'}"


def _rows_line(view: DrillView) -> str:
    rows = view.rows
    text = f"{len(rows)} rows"
    if "selected" in rows:
        text += f" ({int(rows['selected'].fillna(False).astype(bool).sum())} selected)"
    return text


def summary(view: DrillView, parent: DrillView | None = None) -> str:
    """What the page says of a drill-down place, as text.

    Above a leaf: how many children and rows, and the place's own values. At a leaf (a patch,
    a detector), whose children are none: its values (``view.values``; where the run stored
    none, its value among its parent's children, as the page shows it) and the rows behind them.
    """
    unit = view.metric.get("unit", "")
    where = ", ".join(f"{k} {v}" for k, v in view.selection.items() if v is not None) or "all data"
    lines = [f"{view.metric['name']} ({unit or 'dimensionless'}), {'band ' + view.band if view.band else 'all bands'}"
             f" — {where}"]
    own = view.values.to_dict(orient="records")
    if view.child_key is not None:
        lines.append(f"{view.level}: {len(view.children)} children, {_rows_line(view)} "
                     f"(children: {_plural(view.child_key)})")
        lines += [_value_line(r, unit) for r in own] or [f"  no value stored for {where}"]
        return "\n".join(lines)
    key = view.level
    here = view.selection.get(key)
    lines.append(f"{key} {here}:")
    if own:
        lines += [_value_line(r, unit) for r in own]
    else:
        siblings = parent.children if parent is not None else pd.DataFrame()
        mine = siblings[siblings[key] == here] if len(siblings) and key in siblings else siblings.iloc[0:0]
        if len(mine):
            lines.append(f"  no value stored for this {key}; on the page, among its {_plural(key)}:")
            lines += [_value_line(r, unit) for r in mine.to_dict(orient="records")]
        else:
            lines.append(f"  no value stored for this {key}")
    lines.append(f"{_rows_line(view)} behind it")
    return "\n".join(lines)


def focal_summary(fp: FocalPlane) -> str:
    """What the focal-plane page says, as text: the detectors, those failing, the selected one per visit."""
    unit = fp.metric.get("unit", "")
    detectors = fp.detectors
    n_visits = int(detectors["n"].max()) if len(detectors) else 0
    layout = (f"reference layout: visit {fp.reference_visit}" if fp.reference_visit is not None
              else "no detector outlines in the registry")
    lines = [f"{fp.metric['name']} ({unit or 'dimensionless'}), band {fp.band}: focal plane, median over "
             f"{n_visits} visits ({layout})"]
    bad = detectors[detectors["n_fail"] > 0].sort_values(["n_fail", "detector"], ascending=[False, True])
    lines.append(f"{len(detectors)} detectors, {len(bad)} failing in some visit"
                 + (": " + ", ".join(f"detector {int(r.detector)} ({int(r.n_fail)} of {int(r.n)} visits, median "
                                     f"{_number(r.value)} {unit})" for r in bad.itertuples()) if len(bad) else ""))
    if fp.detector is not None:
        mine = detectors[detectors["detector"] == fp.detector]
        if len(mine):
            row = mine.iloc[0]
            lines.append(f"detector {fp.detector}: median {_number(row['value'])} {unit} over {int(row['n'])} visits, "
                         f"{int(row['n_fail'])} failing; {len(fp.visits)} visits:")
        lines += [_value_line(r, unit, head=f"  visit {int(r['visit'])}")
                  for r in fp.visits.to_dict(orient="records")]
    return "\n".join(lines)


# -- what the notebook draws ------------------------------------------------------------------------------------

def _polygons(frame: pd.DataFrame) -> list[np.ndarray | None]:
    out = []
    for polygon in frame["polygon"] if "polygon" in frame else [None] * len(frame):
        ok = polygon is not None and not isinstance(polygon, float) and len(polygon) > 0
        out.append(np.asarray(polygon, dtype=float) if ok else None)
    return out


def _sky(ax, frame: pd.DataFrame, key: str, unit: str, selected: int | None, *, plane: bool = False,
         failing: pd.Series | None = None) -> bool:
    """Polygons coloured by value (RA increasing to the left), the selected one in black, failing in red."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from .model import unwrap_ra

    polygons = _polygons(frame)
    keep = [i for i, p in enumerate(polygons) if p is not None]
    if not keep:
        return False
    shown = frame.iloc[keep]
    vertices = [polygons[i].copy() for i in keep]
    if not plane:
        first = np.radians([v[0, 0] for v in vertices])
        reference = float(np.degrees(np.arctan2(np.sin(first).mean(), np.cos(first).mean())) % 360.0)
        for v in vertices:
            v[:, 0] = unwrap_ra(v[:, 0], reference)
    values = np.ma.masked_invalid(shown["value"].to_numpy(dtype=float))
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("lightgrey")
    ids = shown[key].astype(int).to_numpy()
    bad = (failing.iloc[keep].to_numpy(dtype=bool) if failing is not None
           else shown["outlier"].fillna(False).to_numpy(dtype=bool) if "outlier" in shown else np.zeros(len(ids), bool))
    edges = ["black" if i == selected else ("red" if b else "white") for i, b in zip(ids, bad)]
    widths = [2.5 if i == selected or b else 0.5 for i, b in zip(ids, bad)]
    collection = PolyCollection(vertices, array=values, cmap=cmap, edgecolors=edges, linewidths=widths)
    ax.add_collection(collection)
    ax.autoscale_view()
    ax.invert_xaxis()
    if key in ("patch", "detector"):  # tiles side by side; tracts and visits overlap, their labels would too
        for v, i in zip(vertices, ids):
            ax.annotate(str(i), v.mean(axis=0), ha="center", va="center", fontsize=7)
    ax.figure.colorbar(collection, ax=ax, orientation="horizontal", label=f"value ({unit})" if unit else "value")
    if plane:
        ax.set(aspect="equal", xlabel="x on the sky (deg, RA increasing to the left)", ylabel="y (deg, north up)")
    else:
        ax.set(xlabel="RA (deg)", ylabel="Dec (deg)")
    return True


def _series(ax, frame: pd.DataFrame, key: str, unit: str, selected: int | None) -> None:
    """The value against the child's number, outliers as red crosses (the page's series plot)."""
    x = frame[key].astype(int).to_numpy()
    y = frame["value"].to_numpy(dtype=float)
    bad = frame["outlier"].fillna(False).to_numpy(dtype=bool) if "outlier" in frame else np.zeros(len(x), bool)
    ax.scatter(x[~bad], y[~bad], color="#1f77b4", s=25, label=key)
    ax.scatter(x[bad], y[bad], color="red", marker="x", s=60, linewidths=2.5, label="outlier")
    if selected is not None and (x == selected).any():
        ax.scatter(x[x == selected], y[x == selected], facecolors="none", edgecolors="black", s=160, linewidths=1.5,
                   label="this one")
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))  # ids: no tick at 109005.5
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:.0f}"))
    ax.set(xlabel=key, ylabel=f"value ({unit})" if unit else "value")
    ax.legend(fontsize=7)


def _histogram(ax, values: np.ndarray, unit: str, what: str) -> None:
    """The page's histogram (`payload.histogram_data`: its bins, one bar for a constant)."""
    from .payload import histogram_data

    data = histogram_data(values)
    left, right = np.asarray(data["left"], float), np.asarray(data["right"], float)
    if len(left):
        ax.bar(left, data["top"], width=right - left, align="edge", color="#1f77b4", edgecolor="white")
    ax.set(xlabel=f"value ({unit})" if unit else "value", ylabel="count", title=f"distribution of {data['n']} {what}")


def _rows_panels(view: DrillView) -> list:
    """The per-row plots the page draws: value against magnitude, the rows on the sky (coloured by value)."""
    from .model import unwrap_ra

    rows, columns, unit = view.rows, view.columns, view.metric.get("unit", "")
    value = rows[columns["value"]].to_numpy(dtype=float)
    panels = []
    if columns.get("mag"):
        def against_mag(ax):
            ax.scatter(rows[columns["mag"]].to_numpy(dtype=float), value, s=2, alpha=0.5, rasterized=True)
            ax.set(xlabel="magnitude (AB mag)", ylabel=f"value ({unit})" if unit else "value",
                   title="value against magnitude")
        panels.append(against_mag)
    if columns.get("ra") and columns.get("dec"):
        def on_sky(ax):
            ra = rows[columns["ra"]].to_numpy(dtype=float)
            ra = unwrap_ra(ra, float(np.nanmedian(ra))) if len(ra) else ra
            points = ax.scatter(ra, rows[columns["dec"]].to_numpy(dtype=float), c=value, s=2, cmap="viridis",
                                rasterized=True)
            ax.invert_xaxis()
            ax.figure.colorbar(points, ax=ax, orientation="horizontal", label=f"value ({unit})" if unit else "value")
            ax.set(xlabel="RA (deg)", ylabel="Dec (deg)", title="values on the sky")
        panels.append(on_sky)
    return panels


def _figure(panels: list, title: str) -> Figure:
    import matplotlib.pyplot as plt

    columns = min(3, max(1, len(panels)))
    rows = -(-len(panels) // columns) if panels else 1
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.6 * rows), squeeze=False, layout="constrained")
    for ax, draw in zip(axes.flat, panels):
        draw(ax)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    if not panels:
        axes[0, 0].text(0.5, 0.5, "nothing to draw at this place", ha="center", va="center")
    fig.suptitle(title)
    return fig


def plot_drill(view: DrillView, parent: DrillView | None = None) -> Figure:
    """Draw the page's plots of a drill-down place with matplotlib.

    The children (or, at a leaf, its siblings with itself outlined in black) on the sky coloured
    by value and, in visit mode or without outlines, against their number with the outliers as
    red crosses; the histogram of the rows' values (of the children's without rows); and the
    rows against magnitude and on the sky.

    Parameters
    ----------
    view : DrillView
        The place (`model.metric_view` or `model.visit_view`).
    parent : DrillView, optional
        At a leaf, its parent's view: the siblings the page keeps on screen.
    """
    unit = view.metric.get("unit", "")
    frame, key, selected = view.children, view.child_key, None
    if key is None and parent is not None:
        frame, key, selected = parent.children, parent.child_key, view.selection.get(parent.child_key)
    panels = []
    if key is not None and len(frame):
        has_polygons = any(p is not None for p in _polygons(frame))
        if has_polygons:
            panels.append(lambda ax: (_sky(ax, frame, key, unit, selected), ax.set_title(f"{_plural(key)} on the sky")))
        if view.mode == "visit" or not has_polygons:
            panels.append(lambda ax: (_series(ax, frame, key, unit, selected),
                                      ax.set_title(f"value against {key} number: outliers as red crosses")))
    has_rows = len(view.rows) and view.columns.get("value")
    if has_rows:
        values, what = view.rows[view.columns["value"]].to_numpy(dtype=float), "rows"
    else:
        values, what = (frame["value"].to_numpy(dtype=float) if key is not None and len(frame) else np.zeros(0)), \
            _plural(key or "value")
    if len(values):
        panels.append(lambda ax: _histogram(ax, values, unit, what))
    if has_rows:
        panels += _rows_panels(view)
    where = ", ".join(f"{k} {v}" for k, v in view.selection.items() if v is not None) or "all data"
    return _figure(panels, f"{view.metric['name']}{' ' + view.band if view.band else ''} — {where}")


def plot_focal_plane(fp: FocalPlane) -> Figure:
    """Draw the page's focal plane with matplotlib: each detector where it is, coloured by its median
    over the visits, those failing in any visit outlined in red, the selected one in black (and its
    value in each visit). Without detector outlines, the medians against detector number."""
    unit = fp.metric.get("unit", "")
    detectors = fp.detectors
    panels = []
    if len(detectors):
        failing = detectors["n_fail"] > 0

        def plane(ax):
            if not _sky(ax, detectors, "detector", unit, fp.detector, plane=True, failing=failing):
                _series(ax, detectors.assign(outlier=failing), "detector", unit, fp.detector)
                ax.set_title("no detector outlines: median against detector number (failing: red crosses)")
            else:
                ax.set_title(f"reference layout: visit {fp.reference_visit}")
        panels.append(plane)
    if fp.detector is not None and len(fp.visits):
        panels.append(lambda ax: (_series(ax, fp.visits, "visit", unit, None),
                                  ax.set_title(f"detector {fp.detector} in each visit")))
    return _figure(panels, f"{fp.metric['name']}{' ' + fp.band if fp.band else ''}: focal plane")


# -- a running Jupyter server --------------------------------------------------------------------------------

class JupyterError(SurveyQAError):
    """The Jupyter server of ``--jupyter-url`` could not be reached, or refused the notebook."""


#: Path segments after a Jupyter server's base URL (its UIs and APIs): what comes before one is the base.
_JUPYTER_PAGES = ("lab", "tree", "notebooks", "doc", "edit", "api", "login", "files", "view")
_DEFAULT_FOLDER = "surveyqa"


@dataclass(frozen=True)
class JupyterServer:
    """Where "open in Jupyter" sends notebooks: a running Jupyter server (``--jupyter-url``).

    Parameters
    ----------
    base : str
        The server's base URL, without a trailing slash (``http://127.0.0.1:8888``, or with its
        ``base_url``: ``https://hub.example.org/user/me``).
    token : str, optional
        Its token (from the URL's ``?token=``), sent as ``Authorization: token ...``; never shown.
    folder : str
        Where notebooks go, relative to the server's root (``surveyqa``, or the folder the URL
        opened: ``/lab/tree/work`` -> ``work``).
    ui : str, optional
        ``lab`` (JupyterLab) or ``notebooks`` (Notebook 7, classic), as the URL said; None: ask
        the server when opening.
    """

    base: str
    token: str | None = field(default=None, repr=False)
    folder: str = _DEFAULT_FOLDER
    ui: str | None = None

    def contents(self, path: str) -> str:
        """The contents-API URL of ``path`` (relative to the server's root)."""
        return f"{self.base}/api/contents/{quote(path)}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


def parse_jupyter_url(url: str) -> JupyterServer:
    """Read ``--jupyter-url``: the URL a Jupyter server prints (``http://127.0.0.1:8888/lab?token=...``).

    Raises
    ------
    SurveyQAError
        If it is not an http(s) URL with a host.
    """
    hint = "give the URL `jupyter lab` (or `jupyter server list`) prints, e.g. http://127.0.0.1:8888/lab?token=..."
    try:
        parts = urlsplit(str(url).strip())
    except ValueError as exc:
        raise SurveyQAError(f"--jupyter-url is not a URL: {exc}", hint) from exc
    if parts.scheme not in ("http", "https") or not parts.netloc:
        shown = str(url).strip().split("?", 1)[0]  # never the token
        if "://" not in shown:
            hint = f"with its scheme: http://{shown}?token=..."
        raise SurveyQAError(f"--jupyter-url {shown!r} is not an http(s) URL of a Jupyter server", hint)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    at = next((i for i, s in enumerate(segments) if s in _JUPYTER_PAGES), len(segments))
    base = f"{parts.scheme}://{parts.netloc}" + "".join(f"/{quote(s)}" for s in segments[:at])
    page, rest = (segments[at], segments[at + 1:]) if at < len(segments) else (None, [])
    ui = {"lab": "lab", "doc": "lab", "tree": "notebooks", "notebooks": "notebooks", "edit": "notebooks"}.get(page)
    if page == "lab" and rest[:1] == ["tree"]:
        rest = rest[1:]
    elif page not in ("tree", "notebooks", "lab"):
        rest = []
    if rest and "." in rest[-1]:  # the URL opened a file: its folder
        rest = rest[:-1]
    token = (parse_qs(parts.query).get("token") or [None])[0]
    return JupyterServer(base=base, token=token, folder="/".join(rest) or _DEFAULT_FOLDER, ui=ui)


def _refused(server: JupyterServer, response, what: str) -> JupyterError:
    try:
        said = response.json().get("message") or response.reason_phrase
    except ValueError:
        said = response.reason_phrase
    hint = {401: "check the token in --jupyter-url", 403: "check the token in --jupyter-url (`jupyter server list` "
            "prints it)", 404: f"is {server.base} the server's base URL? give the URL it prints"}.get(
        response.status_code, "see the Jupyter server's log")
    return JupyterError(f"the Jupyter server at {server.base} refused {what} ({response.status_code}: {said})", hint)


def _unreachable(server: JupyterServer, exc: Exception) -> JupyterError:
    return JupyterError(f"cannot reach the Jupyter server at {server.base}: {type(exc).__name__}: {exc}",
                        "start it (`jupyter lab`), or restart the dashboard with the --jupyter-url it prints")


async def upload(server: JupyterServer, notebook: nbformat.NotebookNode, name: str,
                 timeout: float = 15.0) -> dict[str, str]:
    """Put ``notebook`` into ``server.folder/name`` through the Jupyter REST contents API.

    Creates the folder (and its parents) first, replaces a notebook of the same name (the same
    place), and answers where to open it: ``{"path", "url", "jupyter"}`` with ``url`` the page of
    JupyterLab (``/lab/tree/<path>``) or of Notebook (``/notebooks/<path>``), as ``server.ui``
    says or, when the URL did not say, as the server has.

    Raises
    ------
    JupyterError
        The server cannot be reached, or refuses (a wrong token: 403), with what to do.
    """
    import httpx

    path = f"{server.folder}/{name}" if server.folder else name
    folders = server.folder.split("/") if server.folder else []
    try:
        async with httpx.AsyncClient(timeout=timeout, headers=server.headers(), follow_redirects=False) as client:
            for depth in range(1, len(folders) + 1):
                response = await client.put(server.contents("/".join(folders[:depth])), json={"type": "directory"})
                if response.status_code not in (200, 201):
                    raise _refused(server, response, f"the folder {'/'.join(folders[:depth])!r}")
            response = await client.put(server.contents(path), json={"type": "notebook", "format": "json",
                                                                      "content": notebook})
            if response.status_code not in (200, 201):
                raise _refused(server, response, f"the notebook {path!r}")
            ui = server.ui
            if ui is None:
                ui = "lab" if (await client.get(f"{server.base}/lab")).status_code == 200 else "notebooks"
    except httpx.HTTPError as exc:
        raise _unreachable(server, exc) from exc
    where = f"lab/tree/{quote(path)}" if ui == "lab" else f"notebooks/{quote(path)}"
    return {"path": path, "url": f"{server.base}/{where}", "jupyter": server.base}


def check_jupyter(server: JupyterServer, timeout: float = 3.0) -> str | None:
    """Why ``server`` cannot take notebooks now (unreachable, wrong token), or None if it answers.

    Called once when the dashboard starts, so the terminal says it at once; the page says it
    again on each click while it lasts.
    """
    import httpx

    try:
        response = httpx.get(server.contents(""), headers=server.headers(), timeout=timeout,
                             params={"content": "0"})
    except httpx.HTTPError as exc:
        return str(_unreachable(server, exc))
    if response.status_code != 200:
        return str(_refused(server, response, "to list its files"))
    return None


def query_from_json(body: bytes) -> dict:
    """The JSON object of a request body (the page's query), or a `SurveyQAError` saying what it should be."""
    try:
        query = json.loads(body or b"{}")
    except ValueError as exc:
        raise SurveyQAError(f"the request body is not JSON: {exc}", 'send the page\'s query as JSON, e.g. '
                            '{"view": "metric", "metric": "validate_drp.PA1", "band": "r", "tract": 100}') from exc
    if not isinstance(query, dict):
        raise SurveyQAError("the request body must be a JSON object (the page's query)",
                            'e.g. {"view": "visits", "metric": "health.astromOffset", "visit": 109005}')
    return query
