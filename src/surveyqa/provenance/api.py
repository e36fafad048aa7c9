"""The public functions: the provenance of a metric value, and what changed between two runs' values."""

from __future__ import annotations

import math
import os
from typing import Any

from surveyqa.provenance.locate import locate_value
from surveyqa.provenance.walk import ProvenanceWalker

__all__ = ["value_provenance", "provenance_changes"]


def _records(table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None  # JSON has no NaN
    return rows


def value_provenance(repo: str | os.PathLike, collection: str, metric: str, where: str = "", depth: int = 3,
                     against: str | None = None, butler=None) -> dict[str, Any]:
    """Where a metric value comes from: its dataset, the quantum and task that wrote it, the task's
    config (and its difference from the defaults), the software versions and the input datasets,
    followed back ``depth`` steps.

    Parameters
    ----------
    repo : path-like
        Butler repository.
    collection : str
        The QA run's output collection (or RUN).
    metric : str
        Metric name, e.g. ``health.psfFwhm``.
    where : str
        SQL over the metric-value columns naming the value, e.g. ``"visit = 1228 AND level = 'visit'"``.
    depth : int
        Steps back through the inputs (1: only the quantum that wrote the value).
    against : str, optional
        Another collection of the same repository: the same value is found there and the changes
        of config, software versions and inputs between the two are added as ``changes``.

    Returns
    -------
    dict
        ``metric``, ``where``, ``collection``, ``values`` (the rows matched), ``dataset``, ``task``,
        ``config``, ``packages``, ``inputs`` (each ``dataset_type``, ``data_id``, ``run``, ``id``,
        and, where recorded, their own ``task``, ``config``, ``packages``, ``inputs``); with
        ``against``, ``changes``.

    Raises
    ------
    SurveyQAError
        Not a repository, unknown collection or metric, no value or several datasets matching.
    """
    from surveyqa.butler.repo import open_repo
    from surveyqa.errors import SurveyQAError

    if depth < 1:
        raise SurveyQAError(f"depth must be at least 1, not {depth}")
    butler = butler or open_repo(repo)
    walker = ProvenanceWalker(butler)
    located = locate_value(butler, collection, metric, where)
    out = {"metric": metric, "where": where, "collection": collection, "values": _records(located.rows),
           **walker.walk(located.ref, depth)}
    if against is not None:
        other_located = locate_value(butler, against, metric, where)
        other = {"collection": against, "values": _records(other_located.rows),
                 **walker.walk(other_located.ref, 1)}
        out["changes"] = provenance_changes(out, other)
    return out


def _key(entry: dict) -> tuple:
    return entry["dataset_type"], tuple(sorted(entry["data_id"].items()))


def provenance_changes(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """What differs between two values' provenance (`value_provenance` outputs): ``config``
    (``{key: {"value", "other"}}``), ``packages`` (versions that differ, ``{name: {"value",
    "other"}}``; ``packages_recorded_in_one_only`` names those only one run recorded) and
    ``inputs`` (``added``, ``removed``, ``changed``: the same dataset type and data ID, another dataset)."""
    a_cfg = (new.get("config") or {}).get("values", {})
    b_cfg = (old.get("config") or {}).get("values", {})
    config = {k: {"value": a_cfg.get(k), "other": b_cfg.get(k)} for k in sorted(set(a_cfg) | set(b_cfg))
              if a_cfg.get(k) != b_cfg.get(k)}
    a_pkg = (new.get("packages") or {}).get("versions", {})
    b_pkg = (old.get("packages") or {}).get("versions", {})
    # The Butler records the versions of the modules a process imported: pipetask imports more
    # than `surveyqa run`, so a package in one list only is not a change of software.
    packages = {k: {"value": a_pkg[k], "other": b_pkg[k]} for k in sorted(set(a_pkg) & set(b_pkg))
                if a_pkg[k] != b_pkg[k]}
    packages_only = {"value": sorted(set(a_pkg) - set(b_pkg)), "other": sorted(set(b_pkg) - set(a_pkg))}
    a_in = {_key(e): e for e in new.get("inputs", [])}
    b_in = {_key(e): e for e in old.get("inputs", [])}
    inputs = {"added": [a_in[k] for k in a_in if k not in b_in], "removed": [b_in[k] for k in b_in if k not in a_in],
              "changed": [{"new": a_in[k], "old": b_in[k]} for k in a_in if k in b_in and a_in[k]["id"] != b_in[k]["id"]]}
    return {"against": old.get("collection"), "config": config, "packages": packages,
            "packages_recorded_in_one_only": packages_only, "inputs": inputs}
