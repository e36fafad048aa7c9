"""``surveyqa metrics``: list and show metric definitions and their specifications.

A thin shell over `surveyqa.metrics.registry`; every command has a ``--json`` twin of its table.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import click
import yaml

from surveyqa.errors import SurveyQAError
from surveyqa.metrics.definitions import EXTRA_FIELDS, MetricDefinition
from surveyqa.metrics.registry import MetricRegistry, default_roots, load_default_registry, load_registry
from surveyqa.metrics.specs import Specification
from surveyqa.metrics.units import parse_unit, unit_to_string

__all__ = ["metrics"]

_DESCRIPTION_WIDTH = 70


def _registry(ctx: click.Context) -> MetricRegistry:
    roots = ctx.obj.get("roots") if ctx.obj else None
    if roots:
        return load_registry(*default_roots(), *roots)
    return load_default_registry()


def _unit(unit: Any) -> str:
    return unit_to_string(unit) or "-"


def _threshold(operator: str, threshold: Any) -> str:
    return f"{operator} {threshold.value:g} {unit_to_string(threshold.unit)}".rstrip()


def _query(spec: Specification) -> str:
    return " ".join(f"{k}={v}" for k, v in spec.metadata_query.items()) or "(all measurements)"


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


@click.group()
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also read definitions from this folder (holding metrics/*.yaml and specs/<package>/*.yaml). Repeatable.",
)
@click.pass_context
def metrics(ctx: click.Context, roots: tuple[Path, ...]) -> None:
    """Metric definitions and specifications (lsst.verify YAML format).

    Rubin's verify_metrics (1,032 metrics, 1,705 specs) are built in, plus surveyqa's own.

    \b
    Example:
        surveyqa metrics list --tag photometry
        surveyqa metrics show validate_drp.PA1
        surveyqa metrics check validate_drp.PA1 6.2 --meta instrument=HSC
        surveyqa metrics --root mydefs/ list --package mypackage   # check your own files
    """
    ctx.obj = {"roots": list(roots)}


@metrics.command("list")
@click.option("--package", "-p", help="Only metrics of this package (e.g. validate_drp).")
@click.option("--tag", "-t", help="Only metrics carrying this tag (e.g. photometry).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
@click.pass_context
def list_metrics(ctx: click.Context, package: str | None, tag: str | None, as_json: bool) -> None:
    """List metrics: name, unit, tags and the first line of the description.

    \b
    Example:
        surveyqa metrics list --package validate_drp --tag photometry
        surveyqa metrics list --json
    """
    registry = _registry(ctx)
    if package is not None and package not in registry.packages:
        raise SurveyQAError(f"unknown package {package!r}", f"known packages: {', '.join(registry.packages)}")
    if tag is not None and tag not in registry.tags:
        close = difflib.get_close_matches(tag, registry.tags, n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'surveyqa metrics list' to see the tags in use"
        raise SurveyQAError(f"no metric has the tag {tag!r}", hint)
    found = registry.filter(package=package, tag=tag)
    if as_json:
        click.echo(json.dumps({"count": len(found), "metrics": [m.to_dict() for m in found]}, indent=2))
        return
    rows = [[m.full_name, _unit(m.unit), ",".join(m.tags), _shorten(m.summary)] for m in found]
    for line in _table(rows, ["NAME", "UNIT", "TAGS", "DESCRIPTION"]):
        click.echo(line)
    click.echo(f"{len(found)} metric{'s' if len(found) != 1 else ''}")


def _shorten(text: str) -> str:
    return text if len(text) <= _DESCRIPTION_WIDTH else text[: _DESCRIPTION_WIDTH - 3].rstrip() + "..."


@metrics.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@click.pass_context
def show_metric(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show one metric's definition and all its specifications.

    NAME is a full name (validate_drp.PA1) or an unambiguous short name (PA1).

    \b
    Example:
        surveyqa metrics show validate_drp.PA1
        surveyqa metrics show AM1 --json
    """
    registry = _registry(ctx)
    metric = registry.get(name)
    specs = registry.specs_for(metric.full_name)
    if as_json:
        click.echo(json.dumps({"metric": metric.to_dict(), "specs": [s.to_dict() for s in specs]}, indent=2))
        return
    for line in _describe(metric):
        click.echo(line)
    click.echo(f"specifications ({len(specs)}):")
    rows = [[s.name, _threshold(s.operator, s.threshold), ",".join(s.tags), _query(s)] for s in specs]
    for line in _table(rows, ["SPEC", "THRESHOLD", "TAGS", "APPLIES TO"]) if rows else ["  (none)"]:
        click.echo(f"  {line}" if rows else line)


@metrics.command("check")
@click.argument("name")
@click.argument("value", type=float)
@click.option("--unit", "-u", "unit", default=None, help="Unit of VALUE (default: the metric's), e.g. mag, mas, '%'.")
@click.option(
    "--meta",
    "-m",
    "meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Metadata of the measurement, matched against each spec's metadata_query. Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
@click.pass_context
def check_value(
    ctx: click.Context, name: str, value: float, unit: str | None, meta: tuple[str, ...], as_json: bool
) -> None:
    """Check a measured VALUE of metric NAME against every specification that applies to it.

    A spec applies when the measurement's metadata (--meta) has every key of the spec's
    metadata_query with an equal value; specs without a query apply to every measurement.
    Exit status 0 even when specs fail: this reports, it does not gate.

    \b
    Example:
        surveyqa metrics check validate_drp.PA1 6.2 --meta instrument=HSC --meta filter_name=HSC-R
        surveyqa metrics check AM1 0.012 --unit arcsec --json
    """
    registry = _registry(ctx)
    metric = registry.get(name)
    metadata: dict[str, str] = {}
    for item in meta:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise SurveyQAError(f"--meta {item!r} is not KEY=VALUE", "write e.g. --meta instrument=HSC")
        metadata[key] = _meta_value(val)
    quantity = value * (parse_unit(unit) if unit is not None else metric.unit)
    results = registry.evaluate(metric.full_name, quantity, metadata)
    if as_json:
        payload = {
            "metric": metric.full_name,
            "value": value,
            "unit": unit_to_string(quantity.unit),
            "metadata": metadata,
            "results": [r.to_dict() for r in results],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    shown = f"{value:g} {unit_to_string(quantity.unit)}".rstrip()
    rows = [[r.spec, _threshold(r.operator, r.threshold), "pass" if r.passed else "FAIL"] for r in results]
    click.echo(f"{metric.full_name} = {shown}")
    for line in _table(rows, ["SPEC", "THRESHOLD", "RESULT"]) if rows else []:
        click.echo(f"  {line}")
    passed = sum(r.passed for r in results)
    click.echo(f"{passed} of {len(results)} applicable specifications passed")


def _meta_value(text: str) -> Any:
    """Read a --meta value as YAML would (numbers, lists such as [849375, 850587]); text otherwise."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, list)) and not isinstance(value, bool) else text


def _describe(metric: MetricDefinition) -> list[str]:
    lines = [
        metric.full_name,
        f"  description: {' '.join(metric.description.split())}",
        f"  unit: {unit_to_string(metric.unit) or 'dimensionless'}",
    ]
    if metric.reference:
        lines.append(f"  reference: {metric.reference}")
    lines.append(f"  tags: {', '.join(metric.tags) or '-'}")
    for key in EXTRA_FIELDS:
        value = getattr(metric, key)
        if value is not None:
            lines.append(f"  {key}: {str(value).lower() if isinstance(value, bool) else value}")
    if metric.source:
        lines.append(f"  defined in: {_short_path(metric.source)}")
    return lines


def _short_path(path: Path) -> str:
    parts = path.parts
    for anchor in ("verify_metrics", "surveyqa"):
        if anchor in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(anchor) - 1 :])
    return str(path)
