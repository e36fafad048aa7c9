"""Write the reference pages made from the code when the documentation site is built (mkdocs-gen-files).

The metric catalog comes from the metric definitions and specifications the registry loads (the
same ones `surveyqa metrics list` shows), and the tracking API from the OpenAPI document the
tracking service's FastAPI app serves at ``/openapi.json``: neither is written by hand, so
neither can drift from the code.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict

import mkdocs_gen_files

from surveyqa.metrics.registry import load_default_registry
from surveyqa.metrics.units import unit_to_string


def _cell(text: object) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def metric_catalog() -> str:
    registry = load_default_registry()
    specs = defaultdict(list)
    for spec in registry.specs:
        specs[spec.metric].append(spec)
    lines = ["# Metric catalog", "",
             f"Every metric surveyqa knows: {len(registry)} metrics of {len(registry.packages)} packages, with "
             f"{len(registry.specs)} specifications (Rubin's verify_metrics definitions and surveyqa's own `health` "
             "package). Generated from the definitions; `surveyqa metrics show NAME` prints one.", ""]
    for package in registry.packages:
        metrics = registry.filter(package=package)
        lines += [f"## {package}", "", "| metric | unit | description | specifications |", "|---|---|---|---|"]
        for metric in metrics:
            shown = ", ".join(f"`{s.name.split('.')[-1]}` {s.operator} {s.threshold.value:g} "
                              f"{unit_to_string(s.threshold.unit)}".rstrip() for s in specs[metric.full_name][:4])
            more = len(specs[metric.full_name]) - 4
            shown += f" (+{more} more)" if more > 0 else ""
            lines.append(f"| `{metric.full_name}` | {_cell(unit_to_string(metric.unit)) or '—'} | "
                         f"{_cell(metric.description)} | {_cell(shown) or '—'} |")
        lines.append("")
    return "\n".join(lines)


def tracking_api() -> str:
    from surveyqa.tracking import create_app, load_config

    with tempfile.TemporaryDirectory() as folder:
        spec = create_app(load_config(db=f"sqlite:///{folder}/docs.db")).openapi()
    lines = ["# Tracking HTTP API", "",
             f"{_cell(spec['info'].get('description'))} Generated from the service's OpenAPI document "
             "(`GET /openapi.json` on a running `surveyqa track serve`; `/docs` shows it interactively).", ""]
    for path, operations in sorted(spec["paths"].items()):
        for method, op in operations.items():
            lines += [f"## `{method.upper()} {path}`", "", _cell(op.get("summary") or op.get("description")), ""]
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | required | description |", "|---|---|---|---|"]
                for p in params:
                    lines.append(f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                                 f"{_cell(p.get('description'))} |")
                lines.append("")
            answers = ", ".join(f"{code} {_cell(r.get('description'))}" for code, r in op.get("responses", {}).items())
            lines += [f"Answers: {answers}.", ""]
    return "\n".join(lines)


with mkdocs_gen_files.open("reference/metric-catalog.md", "w") as out:
    out.write(metric_catalog())
with mkdocs_gen_files.open("reference/tracking-api.md", "w") as out:
    out.write(tracking_api())
