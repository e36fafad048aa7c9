"""The dashboard's "where does this number come from" page, its JSON twin, and the link to it.

The page and ``/api/provenance/<metric>.json`` are one view: `provenance_payload` (the object of
``surveyqa provenance --json`` plus a ``graph`` of nodes and edges), drawn by `render_page` as an
SVG graph, inputs on the left, then the task's quantum, the dataset, the value on the right.
`ProvenanceLink` is the link a metric view shows for its current place. The place is given as
data-ID parameters, never as SQL: the ``where`` is built here from checked values.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import panel as pn
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler

from surveyqa.errors import SurveyQAError

from . import model
from .api import _Handler, _encode
from .source import memo

__all__ = ["PROVENANCE_ROUTES", "provenance_routes", "provenance_payload", "provenance_graph", "render_page",
           "ProvenanceLink", "place_where", "page_path"]

log = logging.getLogger(__name__)

PROVENANCE_ROUTES = {
    "/api/provenance/<metric>.json": "where a value comes from (`surveyqa provenance --json` plus its graph): "
                                     "?band=&tract=&patch=&visit=&detector=&level=&side=",
    "/provenance/<metric>": "the same, drawn as a graph (HTML)",
}
_INT_KEYS = ("tract", "patch", "visit", "detector")
_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_LEVELS = ("detector", "visit", "patch", "tract")
#: Inputs of one dataset type drawn one by one; the others are one "+N more" node.
_DRAWN_PER_TYPE = 5


def place_where(query: dict[str, Any]) -> str:
    """The ``where`` of a place given as data-ID parameters (ints checked, band and level words only)."""
    parts = []
    for key in _INT_KEYS:
        value = model.data_id(key, query.get(key))
        if value is not None:
            parts.append(f"{key} = {value}")
    band, level = query.get("band") or None, query.get("level") or None
    if band is not None:
        if not _WORD.match(str(band)):
            raise SurveyQAError(f"band={str(band)[:20]!r} is not a band name", "give a band as letters, e.g. band=i")
        parts.append(f"band = '{band}'")
    if level is not None:
        if level not in _LEVELS:
            raise SurveyQAError(f"level={str(level)[:20]!r} is not a level", f"levels: {', '.join(_LEVELS)}")
        parts.append(f"level = '{level}'")
    return " AND ".join(parts)


def page_path(metric: str, query: dict[str, Any], suffix: str = "") -> str:
    """The page's address (relative to the server root) for a metric and place; ``suffix=".json"``
    with ``api/`` before it: its JSON twin."""
    args = {k: query[k] for k in (*_INT_KEYS, "band", "level", "side") if query.get(k) not in (None, "", "a")}
    return f"provenance/{quote(metric, safe='')}{suffix}" + (f"?{urlencode(args)}" if args else "")


def provenance_payload(repo: str, collection: str, metric: str, where: str, depth: int = 2) -> dict[str, Any]:
    """`value_provenance` of the place, with its ``graph``; an unknown metric or value is a `model.NotFoundError`."""
    from surveyqa.provenance import value_provenance

    try:
        p = value_provenance(repo, collection, metric, where, depth=depth)
    except SurveyQAError as exc:
        if exc.message.startswith(("no metric", "no value", "collection ")):
            raise model.NotFoundError(exc.message, exc.hint) from None
        raise
    p["graph"] = provenance_graph(p)
    return p


def _dataset_label(entry: dict) -> str:
    keys = " ".join(f"{k}={v}" for k, v in entry["data_id"].items())
    return f"{entry['dataset_type']} {keys}".strip()


def provenance_graph(p: dict[str, Any]) -> dict[str, Any]:
    """Nodes (``id``, ``kind``: value, dataset, task, input, more; ``label``; ``layer``, 0 the value) and
    edges ``[from, to]`` (from what was read to what was made) of a provenance object."""
    nodes: list[dict] = []
    edges: list[list[str]] = []

    def node(id_: str, kind: str, label: str, layer: int, title: str = "") -> str:
        if not any(n["id"] == id_ for n in nodes):
            nodes.append({"id": id_, "kind": kind, "label": label, "layer": layer, "title": title or label})
        return id_

    values = p.get("values", [])
    shown = ", ".join((f"{v['value']:.4g}" if v.get("value") is not None else "nan") + f" {v.get('unit') or ''}"
                      for v in values[:3]).strip()
    value = node("value", "value", f"{p.get('metric')} = {shown}{' ...' if len(values) > 3 else ''}", 0,
                 f"{len(values)} value(s) matching {p.get('where') or 'all'}")

    def add(entry: dict, made: str, layer: int) -> None:
        dataset = node(entry["dataset"]["id"], "dataset", _dataset_label(entry["dataset"]), layer,
                       f"run {entry['dataset']['run']}, id {entry['dataset']['id']}")
        edges.append([dataset, made])
        task = entry.get("task")
        if not task:
            return
        cfg = entry.get("config") or {}
        changed = len(cfg.get("differs_from_defaults", {}))
        quantum = node(f"quantum:{task.get('quantum_id') or entry['dataset']['id']}", "task",
                       f"{task.get('label')} {' '.join(f'{k}={v}' for k, v in task.get('data_id', {}).items())}",
                       layer + 1, f"{task.get('class')}, quantum {task.get('quantum_id')}, config: "
                       + (f"{changed} value(s) differ from the defaults" if changed else "the defaults"))
        edges.append([quantum, dataset])
        groups: dict[str, list] = {}
        for item in entry.get("inputs", []):
            groups.setdefault(item["dataset_type"], []).append(item)
        for items in groups.values():
            for item in items[:_DRAWN_PER_TYPE]:
                if item.get("task"):
                    add({**item, "dataset": item}, quantum, layer + 2)
                else:
                    edges.append([node(item["id"], "input", _dataset_label(item), layer + 2,
                                       f"run {item['run']}, id {item['id']}"), quantum])
            if len(items) > _DRAWN_PER_TYPE:
                more = node(f"more:{quantum}:{items[0]['dataset_type']}", "more",
                            f"+{len(items) - _DRAWN_PER_TYPE} more {items[0]['dataset_type']}", layer + 2)
                edges.append([more, quantum])

    add(p, value, 1)
    return {"nodes": nodes, "edges": edges}


_BOX_W, _BOX_H, _GAP_X, _GAP_Y = 300, 30, 70, 12
_COLOURS = {"value": "#c8e6c9", "dataset": "#bbdefb", "task": "#ffe0b2", "input": "#e1bee7", "more": "#eeeeee"}


def _svg(graph: dict[str, Any]) -> str:
    layers = max((n["layer"] for n in graph["nodes"]), default=0)
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for n in graph["nodes"]:
        row = rows.get(n["layer"], 0)
        rows[n["layer"]] = row + 1
        place[n["id"]] = ((layers - n["layer"]) * (_BOX_W + _GAP_X) + 10, row * (_BOX_H + _GAP_Y) + 10)
    width = (layers + 1) * (_BOX_W + _GAP_X) + 20
    height = max(rows.values(), default=1) * (_BOX_H + _GAP_Y) + 20
    parts = [f'<svg class="sq-prov-graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for a, b in graph["edges"]:
        (xa, ya), (xb, yb) = place[a], place[b]
        parts.append(f'<line class="sq-prov-edge" x1="{xa + _BOX_W}" y1="{ya + _BOX_H / 2}" x2="{xb}" '
                     f'y2="{yb + _BOX_H / 2}" stroke="#777" stroke-width="1.2"/>')
    for n in graph["nodes"]:
        x, y = place[n["id"]]
        label = n["label"] if len(n["label"]) <= 48 else n["label"][:47] + "…"
        parts.append(f'<g class="sq-prov-node sq-prov-{n["kind"]}" data-id="{html.escape(n["id"])}">'
                     f'<title>{html.escape(n["title"])}</title>'
                     f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="5" fill="{_COLOURS[n["kind"]]}" '
                     f'stroke="#555"/><text x="{x + 8}" y="{y + 19}" font-size="11" font-family="sans-serif">'
                     f'{html.escape(label)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def render_page(p: dict[str, Any], json_path: str) -> str:
    """The HTML page of a provenance object: the graph, then the task, config changes and packages."""
    task = p.get("task") or {}
    cfg = p.get("config") or {}
    diff = cfg.get("differs_from_defaults", {})
    versions = (p.get("packages") or {}).get("versions", {})
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(d['value']))}</td>"
                   f"<td>{html.escape(str(d['default']))}</td></tr>" for k, d in diff.items())
    pkgs = ", ".join(f"{html.escape(k)} {html.escape(v.split(' ')[0])}" for k, v in versions.items())
    esc = html.escape
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>where {esc(p['metric'])} comes from</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px}} .sq-prov-scroll{{overflow-x:auto}}</style></head><body>
<h2>Where does this number come from? <code>{esc(p['metric'])}</code> ({esc(p.get('where') or 'all')})</h2>
<div class="sq-prov-scroll">{_svg(p['graph'])}</div>
<p class="sq-prov-dataset">dataset <b>{esc(_dataset_label(p['dataset']))}</b>, run <code>{esc(p['dataset']['run'])}</code>,
id <code>{esc(p['dataset']['id'])}</code></p>
<p class="sq-prov-task">task <b>{esc(str(task.get('label')))}</b> (<code>{esc(str(task.get('class')))}</code>),
quantum <code>{esc(str(task.get('quantum_id')))}</code></p>
<p class="sq-prov-config">config <code>{esc(str(cfg.get('dataset_type')))}</code>: {len(diff)} value(s) differ from
the defaults</p>{f'<table><tr><th>key</th><th>value</th><th>default</th></tr>{rows}</table>' if rows else ''}
<p class="sq-prov-packages">packages: {pkgs}</p>
<p>{len(p.get('inputs', []))} input datasets; the whole record as JSON:
<a class="sq-prov-json" href="{esc(json_path)}">{esc(json_path)}</a></p>
</body></html>"""


class _ProvenanceView:
    """What the JSON route and the page share: the place read from the query, the payload memoised."""

    def _place(self, metric: str) -> tuple[tuple, Callable[[], Any], dict]:
        query = {k: self.get_query_argument(k, None, strip=False) for k in (*_INT_KEYS, "band", "level", "side")}
        side = query.get("side") or "a"
        if side not in ("a", "b"):
            raise SurveyQAError(f"side={side[:20]!r} is neither a nor b", "side=a: this run, side=b: the compared run")
        source, repo, collection, _ = self.config.side(side)
        if repo is None or collection is None:
            raise SurveyQAError("this dashboard serves no repository (no provenance to show)",
                                "start it on a repository: surveyqa dashboard REPO --collection C")
        where = place_where(query)
        key = ("provenance", side, metric, where)
        return key, lambda: provenance_payload(repo, collection, metric, where), query


class ProvenanceHandler(_ProvenanceView, _Handler):
    """``/api/provenance/<metric>.json?...``: the JSON twin of the page."""

    def view(self, metric: str) -> tuple[tuple, Callable[[], Any]]:
        key, build, _ = self._place(metric)
        return key, build


class ProvenancePageHandler(_ProvenanceView, RequestHandler):
    """``/provenance/<metric>?...``: the graph page, from the same memoised payload as its twin."""

    def initialize(self, config, pool=None) -> None:
        self.config, self.pool = config, pool

    async def get(self, metric: str) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        try:
            key, build, query = self._place(metric)
            body = await IOLoop.current().run_in_executor(
                self.pool, lambda: memo(self.config.source, ("json",) + key, lambda: _encode(build())))
        except SurveyQAError as exc:
            self.set_status(404 if isinstance(exc, model.NotFoundError) else 400)
            self.finish(f"<!doctype html><p class='sq-error'><b>Error:</b> {html.escape(exc.message)}"
                        f"{' (' + html.escape(exc.hint) + ')' if exc.hint else ''}</p>")
            return
        self.finish(render_page(json.loads(body), "/api/" + page_path(metric, query, ".json")))


def provenance_routes(args: dict) -> list[tuple]:
    """Tornado URL patterns of the page and its twin (before the catch-all ``/api/(.*)``)."""
    return [(r"/api/provenance/(.+)\.json", ProvenanceHandler, args),
            (r"/provenance/([^/?]+)", ProvenancePageHandler, args)]


class ProvenanceLink:
    """The "where does this number come from" link of a metric view, for the place it shows.

    The value is the one the view's place names: a detector or visit in visit mode, a patch or
    tract in coadd mode (in the band shown); at the top of a view, before a place is chosen,
    the link says to choose one.
    """

    def __init__(self, state):
        self.state = state
        self.panel = pn.pane.HTML("", css_classes=["sq-provenance"], min_width=260)
        self.update()

    def query(self) -> dict[str, Any] | None:
        s = self.state
        if not s.metric:
            return None
        if s.view == "visits":
            keys = {"visit": s.visit, "detector": s.detector}
            level = "detector" if s.detector is not None else "visit" if s.visit is not None else None
        else:
            keys = {"tract": s.tract, "patch": s.patch}
            level = "patch" if s.patch is not None else "tract" if s.tract is not None else None
        if level is None:
            return None
        return {**{k: v for k, v in keys.items() if v is not None}, "band": s.band, "level": level, "side": s.side}

    def update(self) -> None:
        query = self.query()
        if query is None:
            self.panel.object = "<small>choose a tract or visit: <i>where does this number come from</i></small>"
            return
        href = "/" + page_path(self.state.metric, query)
        self.panel.object = (f"<a class='sq-provenance-link' href='{html.escape(href)}' target='_blank'>"
                             "where does this number come from?</a>")
