"""A QA run's provenance in one small record, and what changed between two runs.

What a tracking service keeps of a run so that an alert can say what changed between the last
good and the first bad run: the repository and collection, each task's config, the software
versions, the IDs of the metric-value datasets and of every input dataset their quanta read.
All of it is read from the Butler's records (`surveyqa.provenance.walk`); `run_changes` compares
two records: code (package versions), config (task keys) and inputs (same dataset type and data
ID, another dataset; or a dataset one run read and the other did not).
"""

from __future__ import annotations

from typing import Any

from surveyqa.provenance.configs import flatten_config
from surveyqa.provenance.locate import VALUE_DATASETS, data_id_text
from surveyqa.provenance.walk import ProvenanceWalker

__all__ = ["run_record", "run_changes", "changes_summary"]


def _key(ref) -> str:
    return f"{ref.datasetType.name} {data_id_text(ref)}".strip()


def run_record(repo: str, collection: str, butler=None) -> dict[str, Any]:
    """``repo``, ``collection``, ``runs``, ``configs`` (``{label: {key: value}}``), ``packages``
    (``{name: version}``), ``datasets`` and ``inputs`` (``{"type data ID": dataset ID}``) of a QA run.

    Raises
    ------
    SurveyQAError
        Not a repository, unknown collection.
    """
    from surveyqa.butler.repo import check_collection, open_repo

    butler = butler or open_repo(repo)
    check_collection(butler, collection)
    walker = ProvenanceWalker(butler)
    registered = {d.name for d in butler.registry.queryDatasetTypes()}
    refs = [r for name in VALUE_DATASETS if name in registered
            for r in butler.query_datasets(name, collections=collection, explain=False, limit=None)]
    runs = sorted({r.run for r in refs})
    configs: dict[str, dict] = {}
    packages: dict[str, str] = {}
    for run in runs:
        for label, (config, _, _) in walker.configs(run).items():
            configs[label] = flatten_config(config)
        packages.update(walker.packages(run)[1])
    inputs: dict[str, str] = {}
    for ref in refs:
        _, read = walker.inputs(ref)
        for input_ref in read or []:
            inputs[_key(input_ref)] = str(input_ref.id)
    return {"repo": str(repo), "collection": collection, "runs": runs, "configs": configs, "packages": packages,
            "datasets": {_key(r): str(r.id) for r in refs}, "inputs": inputs}


def _diff(old: dict, new: dict) -> dict[str, dict]:
    return {k: {"old": old.get(k), "new": new.get(k)} for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def run_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed from run record ``old`` (last good) to ``new`` (first bad).

    ``code``: packages whose version differs (a package only one run recorded is in
    ``code_recorded_in_one_only``: the Butler records the modules a process imported);
    ``config``: ``{"label.key": {"old", "new"}}`` of the tasks both ran (``tasks_in_one_only``
    names the others); ``inputs``: ``changed`` (same dataset type and
    data ID, another dataset), ``added``, ``removed``.
    """
    a, b = old["packages"], new["packages"]
    code = {k: {"old": a[k], "new": b[k]} for k in sorted(set(a) & set(b)) if a[k] != b[k]}
    both = set(old["configs"]) & set(new["configs"])
    flat_old = {f"{label}.{k}": v for label in both for k, v in old["configs"][label].items()}
    flat_new = {f"{label}.{k}": v for label in both for k, v in new["configs"][label].items()}
    i, j = old["inputs"], new["inputs"]
    return {"code": code, "code_recorded_in_one_only": {"old": sorted(set(a) - set(b)), "new": sorted(set(b) - set(a))},
            "config": _diff(flat_old, flat_new),
            "tasks_in_one_only": {"old": sorted(set(old["configs"]) - both), "new": sorted(set(new["configs"]) - both)},
            "inputs": {"changed": {k: {"old": i[k], "new": j[k]} for k in sorted(set(i) & set(j)) if i[k] != j[k]},
                       "added": sorted(set(j) - set(i)), "removed": sorted(set(i) - set(j))}}


def _by_type(keys, examples: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(keys):
        dataset_type, _, data_id = key.partition(" ")
        entry = out.setdefault(dataset_type, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < examples:
            entry["examples"].append(data_id)
    return out


def changes_summary(changes: dict[str, Any], examples: int = 3) -> dict[str, Any]:
    """`run_changes` without the code, its inputs counted per dataset type with a few data IDs.

    What an alert keeps: a reprocessing makes every input a new dataset, so the list of changed
    inputs of a DRP-sized run is ~10^4 entries, the same for each of its alerts; per dataset type it
    is a line (``{"sourceTable_visit": {"count": 65, "examples": ["instrument=HSC visit=1228", ...]}}``).
    """
    inputs = changes["inputs"]
    return {"config": changes["config"], "tasks_in_one_only": changes["tasks_in_one_only"],
            "inputs": {"changed": _by_type(inputs["changed"], examples), "added": _by_type(inputs["added"], examples),
                       "removed": _by_type(inputs["removed"], examples)}}
