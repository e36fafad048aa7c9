"""`surveyqa provenance` and `surveyqa reproduce`: thin shells over `value_provenance` and `plan_reproduce`."""

from __future__ import annotations

import json

import click

__all__ = ["provenance", "reproduce", "format_provenance"]

#: Inputs of one dataset type listed in the text output (all of them are in --json).
_SHOWN_PER_TYPE = 5
#: Packages named in the text output (all of them are in --json).
_KEY_PACKAGES = ("surveyqa", "daf_butler", "pipe_base", "numpy", "pyarrow", "astropy", "python")


def _data_id(data_id: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in data_id.items()) or "(no data ID)"


def _dataset(entry: dict) -> str:
    return f"{entry['dataset_type']} {_data_id(entry['data_id'])}  run {entry['run']}  id {entry['id']}"


def _value(row: dict) -> str:
    keys = [f"{k}={row[k]}" for k in ("band", "tract", "patch", "visit", "detector", "column") if row.get(k) is not None]
    value = "nan" if row.get("value") is None else f"{row['value']:.6g}"
    return f"{row['metric']} = {value} {row.get('unit') or ''} ({row['level']}: {' '.join(keys)}) {row.get('status')}"


def format_provenance(p: dict, indent: str = "") -> list[str]:
    """The text of `surveyqa provenance` (the same content as its JSON, packages abridged)."""
    lines = []
    if "values" in p:
        shown = p["values"][:5]
        lines += [f"value     {_value(r)}" for r in shown]
        if len(p["values"]) > len(shown):
            lines.append(f"          ... {len(p['values']) - len(shown)} more values in this dataset")
    lines.append(f"{indent}dataset   {_dataset(p['dataset'])}")
    task = p.get("task")
    if task:
        md = task.get("metadata") or {}
        when = f", ran {md['start']} on {md['node']}" if md.get("start") else ""
        lines.append(f"{indent}task      {task['label']} ({task['class']}) quantum {task['quantum_id']} "
                     f"{_data_id(task['data_id'])}{when}")
    cfg = p.get("config")
    if cfg:
        diff = cfg["differs_from_defaults"]
        lines.append(f"{indent}config    {cfg['dataset_type']} id {cfg['id']}: "
                     + (f"{len(diff)} value(s) differ from the defaults" if diff else "the defaults"))
        lines += [f"{indent}            {k} = {d['value']!r} (default {d['default']!r})" for k, d in diff.items()]
    pkgs = p.get("packages")
    if pkgs:
        versions = pkgs["versions"]
        named = ", ".join(f"{k} {versions[k].split(' ')[0]}" for k in _KEY_PACKAGES if k in versions)
        lines.append(f"{indent}packages  {named} ({len(versions)} packages)")
    if p.get("inputs_note"):
        lines.append(f"{indent}inputs    {p['inputs_note']}")
    elif "inputs" in p:
        lines.append(f"{indent}inputs    {len(p['inputs'])}")
        groups: dict[str, list] = {}
        for entry in p["inputs"]:
            groups.setdefault(entry["dataset_type"], []).append(entry)
        for entries in sorted(groups.values(), key=len):  # the quantum's own few inputs first
            for entry in entries[:_SHOWN_PER_TYPE]:
                lines.append(f"{indent}  - {_dataset(entry)}" + (" (above)" if entry.get("seen") else ""))
                if entry.get("task"):
                    lines += format_provenance({**entry, "dataset": entry}, indent + "      ")[1:]
            if len(entries) > _SHOWN_PER_TYPE:
                lines.append(f"{indent}    ... {len(entries) - _SHOWN_PER_TYPE} more {entries[0]['dataset_type']} "
                             "(all of them in --json)")
    changes = p.get("changes")
    if changes:
        lines.append(f"changes against {changes['against']}:")
        for k, d in changes["config"].items():
            lines.append(f"  config    {k}: {d['other']!r} -> {d['value']!r}")
        for k, d in changes["packages"].items():
            lines.append(f"  package   {k}: {d['other']} -> {d['value']}")
        for kind in ("added", "removed"):
            for e in changes["inputs"][kind]:
                lines.append(f"  input {kind}: {_dataset(e)}")
        for c in changes["inputs"]["changed"]:
            lines.append(f"  input changed: {c['new']['dataset_type']} {_data_id(c['new']['data_id'])}: "
                         f"{c['old']['id']} -> {c['new']['id']}")
        if not (changes["config"] or changes["packages"] or any(changes["inputs"].values())):
            lines.append("  nothing: same config, software versions and inputs")
    return lines


@click.command("provenance")
@click.argument("repo", type=click.Path())
@click.argument("metric")
@click.option("--collection", "-c", required=True, help="The QA run's output collection.")
@click.option("--where", "-d", default="", help="SQL over the metric-value columns naming the value, e.g. "
                                                 "\"visit = 1228 AND level = 'visit'\".")
@click.option("--depth", default=3, show_default=True, help="Steps back through the inputs.")
@click.option("--against", default=None, help="Another collection: list what changed (config, versions, inputs).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (dataset, task, config, packages, inputs).")
def provenance(repo, metric, collection, where, depth, against, as_json):
    """Where a metric value comes from: its dataset, task and quantum, config, packages and inputs.

    \b
    Example:
        surveyqa provenance repo health.psfFwhm --collection qa/demo --where "visit = 1228 AND level = 'visit'"
        surveyqa provenance repo health.objectCount -c qa/run2 -d "tract = 9615 AND level = 'tract'" --against qa/run1
    """
    from surveyqa.provenance.api import value_provenance

    p = value_provenance(repo, collection, metric, where, depth=depth, against=against)
    if as_json:
        click.echo(json.dumps(p, indent=2, default=str))
        return
    for line in format_provenance(p):
        click.echo(line)


@click.command("reproduce")
@click.argument("repo", type=click.Path())
@click.argument("metric")
@click.option("--collection", "-c", required=True, help="The QA run's output collection.")
@click.option("--where", "-d", required=True, help="SQL over the metric-value columns naming the value.")
@click.option("--debug", is_flag=True, help="Switch the task's debug mode on: its <label>_debug_* datasets too.")
@click.option("--output", "-o", default=None, help="New output collection (default reproduce/<label>/<data ID>).")
@click.option("--dir", "folder", default=None, type=click.Path(file_okay=False),
              help="Where to write pipeline.yaml, the config file and the data query.")
@click.option("--run", "run_it", is_flag=True, help="Run the command, then compare the value with the original.")
def reproduce(repo, metric, collection, where, debug, output, folder, run_it):
    """Write the pipeline subset and data query that regenerate a value; print (or --run) the pipetask command.

    \b
    Example:
        surveyqa reproduce repo health.psfFwhm -c qa/demo -d "visit = 1228 AND level = 'visit'" --debug --run
    """
    from surveyqa.provenance.reproduce import plan_reproduce, run_plan

    plan = plan_reproduce(repo, collection, metric, where, debug=debug, output=output, folder=folder)
    click.echo(f"task {plan.label} on {plan.data_query}, inputs {', '.join(plan.inputs)}")
    click.echo(f"wrote {plan.pipeline}, {plan.config_file.name}, query.txt, command.sh")
    click.echo(plan.command_line())
    if not run_it:
        return
    result = run_plan(plan, echo=lambda line: click.echo(line, err=True))
    verdict = "identical" if result.identical else "DIFFERENT"
    click.echo(f"reproduced in {plan.output}: {verdict} ({len(result.reproduced)} value(s); "
               f"first {result.original[0]!r} -> {result.reproduced[0]!r})" if result.original else "no value")
    for name in result.debug_datasets:
        click.echo(f"debug dataset: {name}")
    if not result.identical:
        from surveyqa.errors import SurveyQAError

        raise SurveyQAError(f"the value regenerated in {plan.output} differs from the original",
                            "compare their provenance: surveyqa provenance ... --against")
