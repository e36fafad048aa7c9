"""The tracking views: each builds one dict, served as JSON (``.json``) or rendered as HTML.

The time-series plot is a server-rendered SVG: no JavaScript, nothing to load, readable by a
test; every point is a link to the drill-down dashboard on that run's repository and collection,
and the spec thresholds that apply are drawn as dashed lines.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from typing import Any

import sqlalchemy as sa

from surveyqa.tracking import queries
from surveyqa.tracking.config import dashboard_link, dashboard_linker
from surveyqa.tracking.db import run_t

__all__ = ["metric_view", "run_view", "index_view", "render_series_svg", "render_page"]


def metric_view(service: Any, name: str, dataset: str | None = None, data_id: dict[str, Any] | None = None, limit: int | None = None) -> dict[str, Any] | None:
    """A metric's definition, specs and time series (one per data ID and dataset matching the filter)."""
    with service.engine.connect() as conn:
        metric = queries.get_metric(conn, name)
        if metric is None:
            return None
        series = queries.find_series(conn, name, dataset, data_id)
        points = queries.series_points(conn, [s["series_id"] for s in series], limit)
        specs = queries.specs_for(conn, name)
        latest = max((p[-1]["run_id"] for p in points.values() if p), default=None)
        meta = conn.execute(sa.select(run_t.c.meta).where(run_t.c.id == latest)).scalar() if latest else {}
        thresholds = service.thresholds(conn, name, metric["unit"], meta or {})
    for s in series:
        s["points"] = points[s["series_id"]]
        link = dashboard_linker(service.config, name, s["data_id"])
        for p in s["points"]:
            p["link"] = link(p["repo"], p["collection"], p["run_id"])
    return {
        "metric": metric,
        "specs": specs,
        "thresholds": [{"name": t.name, "operator": t.operator, "value": t.value, "unit": metric["unit"]} for t in thresholds],
        "filter": {"dataset": dataset, "data_id": data_id or {}},
        "series": series,
    }


def run_view(service: Any, run_id: int) -> dict[str, Any] | None:
    with service.engine.connect() as conn:
        run = queries.get_run(conn, run_id)
    if run is None:
        return None
    for v in run["values"]:
        v["link"] = dashboard_link(service.config, v["metric"], run["repo"], run["collection"], run_id, v["data_id"])
    return run


def index_view(service: Any) -> dict[str, Any]:
    with service.engine.connect() as conn:
        metrics = queries.list_metrics(conn)
        runs = queries.list_runs(conn, limit=20)
    return {"metrics": metrics, "runs": runs, "alerts": service.list_alerts(status="open", limit=20)}


def _parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.rstrip("Z")).timestamp()


def render_series_svg(series: dict[str, Any], thresholds: list[dict[str, Any]], unit: str, width: int = 720, height: int = 240) -> str:
    """An SVG line plot of one series: points (links), thresholds (dashed), axes labels in ``unit``."""
    pts = [(p, _parse_time(p["time"]), p["value"]) for p in series["points"] if p["value"] is not None]
    ys = [v for _, _, v in pts] + [t["value"] for t in thresholds if math.isfinite(t["value"])]
    if not pts:
        return f'<svg class="series" width="{width}" height="40"><text x="10" y="25">no values</text></svg>'
    x0, x1 = min(t for _, t, _ in pts), max(t for _, t, _ in pts)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = 0.08 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad
    left, right, top, bottom = 70, 10, 10, 30

    def sx(t: float) -> float:
        return left + (t - x0) / (x1 - x0) * (width - left - right)

    def sy(v: float) -> float:
        return top + (y1 - v) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg class="series" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" data-series="{series["series_id"]}">']
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#999"/>')
    for v in (y0 + pad, y1 - pad):
        parts.append(f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="10">{v:.4g}</text>')
    parts.append(f'<text x="12" y="{height / 2}" font-size="10" transform="rotate(-90 12 {height / 2})">{html.escape(unit or "dimensionless")}</text>')
    for label, t in (("first", x0), ("last", x1)):
        when = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")
        anchor = "start" if label == "first" else "end"
        parts.append(f'<text x="{sx(t):.1f}" y="{height - 10}" text-anchor="{anchor}" font-size="10">{when}</text>')
    for th in thresholds:
        y = sy(th["value"])
        parts.append(
            f'<line class="threshold" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c33" stroke-dasharray="4 3">'
            f"<title>{html.escape(th['name'])} {html.escape(th['operator'])} {th['value']:.4g}</title></line>"
        )
        parts.append(f'<text x="{width - right - 2}" y="{y - 2:.1f}" text-anchor="end" font-size="9" fill="#c33">{html.escape(th["name"].rsplit(".", 1)[-1])}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(t):.1f},{sy(v):.1f}" for i, (_, t, v) in enumerate(pts))
    parts.append(f'<path d="{path}" fill="none" stroke="#36c"/>')
    for p, t, v in pts:
        dot = f'<circle class="point" cx="{sx(t):.1f}" cy="{sy(v):.1f}" r="3" fill="#36c"><title>run {p["run_id"]}: {v:.6g} {html.escape(unit)}</title></circle>'
        parts.append(f'<a href="{html.escape(p["link"])}">{dot}</a>' if p.get("link") else dot)
    parts.append("</svg>")
    return "".join(parts)


_STYLE = "body{font-family:sans-serif;margin:1.5em;max-width:1100px}table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}code{font-size:90%}"


def render_page(title: str, body: str, json_url: str) -> str:
    """A complete HTML page with a link to its JSON twin."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f'<link rel="alternate" type="application/json" href="{html.escape(json_url)}"></head><body>'
        f'<p><a href="/">surveyqa tracking</a> · <a href="{html.escape(json_url)}">JSON</a></p><h1>{html.escape(title)}</h1>{body}</body></html>'
    )


def _did(d: dict[str, Any]) -> str:
    return html.escape(", ".join(f"{k}={v}" for k, v in d.items()) or "—")


def metric_html(view: dict[str, Any]) -> str:
    m = view["metric"]
    out = [f"<p>{html.escape(m['description'] or '')} <b>Unit:</b> {html.escape(m['unit'] or 'dimensionless')}</p>"]
    if view["thresholds"]:
        out.append("<p><b>Thresholds:</b> " + ", ".join(f"{html.escape(t['name'])} {html.escape(t['operator'])} {t['value']:.4g}" for t in view["thresholds"]) + "</p>")
    for s in view["series"]:
        out.append(f"<h2>{_did(s['data_id'])} · dataset {html.escape(s['dataset'])}</h2>")
        out.append(render_series_svg(s, view["thresholds"], m["unit"]))
    if not view["series"]:
        out.append("<p>No values match.</p>")
    return "".join(out)


def run_html(run: dict[str, Any]) -> str:
    out = [
        "<table>",
        *(f"<tr><th>{k}</th><td>{html.escape(str(run[k]))}</td></tr>" for k in ("dataset", "time", "format", "pipeline", "env_name", "ci_id", "ci_url", "repo", "collection")),
        "</table>",
    ]
    prev = run["previous_run"]
    out.append(f"<h2>Code changes since <a href='/runs/{prev}'>run {prev}</a></h2>" if prev else "<h2>Code changes</h2><p>No earlier run of this dataset.</p>")
    if prev:
        if not run["code_changes"]:
            out.append("<p>None.</p>")
        out.append("<table class='code-changes'><tr><th>package</th><th>change</th><th>old</th><th>new</th></tr>")
        for c in run["code_changes"]:
            old = f"{c.get('old_version') or ''} {(c.get('old_sha') or '')[:10]}"
            new = f"{c.get('new_version') or ''} {(c.get('new_sha') or '')[:10]}"
            out.append(f"<tr><td>{html.escape(c['package'])}</td><td>{c['change']}</td><td><code>{html.escape(old)}</code></td><td><code>{html.escape(new)}</code></td></tr>")
        out.append("</table>")
    if prev:
        from surveyqa.tracking.alerts import changes_lines

        out.append(f"<h2>Config and input changes since run {prev}</h2>")
        out.append("<pre class='changes'>" + html.escape("\n".join(changes_lines(run["changes"]))) + "</pre>")
    out.append("<h2>Values</h2><table><tr><th>metric</th><th>data ID</th><th>value</th><th>unit</th><th>note</th></tr>")
    for v in run["values"]:
        value = "—" if v["value"] is None else f"{v['value']:.6g}"
        name = f"<a href='/metrics/{html.escape(v['metric'])}'>{html.escape(v['metric'])}</a>"
        if v.get("link"):
            value = f"<a href='{html.escape(v['link'])}'>{value}</a>"
        out.append(f"<tr><td>{name}</td><td>{_did(v['data_id'])}</td><td>{value}</td><td>{html.escape(v['unit'])}</td><td>{html.escape(v['note'] or '')}</td></tr>")
    out.append(f"</table><p>{len(run['packages'])} packages, {run['blobs']} blobs.</p>")
    return "".join(out)


def index_html(view: dict[str, Any]) -> str:
    out = ["<h2>Open alerts</h2>"]
    out.append("<ul>" + "".join(f"<li>{html.escape(a['detail'])} at {_did(a['data_id'])} (<a href='{a['url']}'>run {a['first_bad_run']}</a>)</li>" for a in view["alerts"]) + "</ul>" if view["alerts"] else "<p>None.</p>")
    out.append("<h2>Metrics</h2><ul>" + "".join(f"<li><a href='/metrics/{html.escape(m['name'])}'>{html.escape(m['name'])}</a> ({m['series']} series)</li>" for m in view["metrics"]) + "</ul>")
    out.append("<h2>Latest runs</h2><ul>" + "".join(f"<li><a href='/runs/{r['id']}'>run {r['id']}</a> {html.escape(r['dataset'])} {r['time']}</li>" for r in view["runs"]) + "</ul>")
    return "".join(out)
