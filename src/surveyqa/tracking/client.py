"""Submitting from anywhere: a laptop, CI or a batch node, over plain HTTP (or straight to a database).

The client fills in what the submitter's environment knows and the job does not: the CI system
and job (GitHub Actions, GitLab CI, Jenkins), the git sha of the working directory, the installed
package versions, the repository and collection of the outputs. What the job already carries is
never changed, so a job is stored as it was written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx

from surveyqa.errors import SurveyQAError

__all__ = [
    "environment_metadata",
    "installed_packages",
    "prepare_job",
    "read_job",
    "post",
    "read_repository",
    "repo_submission",
]

log = logging.getLogger(__name__)


def _git_sha(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_metadata(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``env_name``, ``ci_id``, ``ci_url``, ``date`` (UTC) and ``git_sha`` of the submitting environment."""
    e = os.environ if environ is None else environ
    if e.get("GITHUB_ACTIONS"):
        env = {
            "env_name": "github",
            "ci_id": e.get("GITHUB_RUN_ID"),
            "ci_url": f"{e.get('GITHUB_SERVER_URL', '')}/{e.get('GITHUB_REPOSITORY', '')}/actions/runs/{e.get('GITHUB_RUN_ID', '')}",
            "git_sha": e.get("GITHUB_SHA"),
        }
    elif e.get("GITLAB_CI"):
        env = {"env_name": "gitlab", "ci_id": e.get("CI_JOB_ID"), "ci_url": e.get("CI_JOB_URL"), "git_sha": e.get("CI_COMMIT_SHA")}
    elif e.get("JENKINS_URL"):
        env = {"env_name": "jenkins", "ci_id": e.get("BUILD_ID"), "ci_url": e.get("BUILD_URL"), "git_sha": e.get("GIT_COMMIT")}
    else:
        env = {"env_name": "local", "ci_id": None, "ci_url": None, "git_sha": None}
    env["git_sha"] = env["git_sha"] or _git_sha()
    env["date"] = dt.datetime.now(dt.UTC).isoformat()
    return env


def installed_packages() -> dict[str, dict[str, Any]]:
    """Installed Python distributions as lsst.verify ``meta.packages`` entries (name -> package)."""
    out = {}
    for d in importlib.metadata.distributions():
        name = d.metadata.get("Name")
        if name and name not in out:
            out[name] = {"name": name, "eups_version": d.version, "git_sha": None, "git_url": None, "git_branch": None}
    return dict(sorted(out.items()))


def read_job(path: str | Path) -> dict[str, Any]:
    """Read a job file; a clear error if it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise SurveyQAError(f"cannot read {path}: {exc.strerror}", "give the path of an lsst.verify job JSON file") from exc
    except json.JSONDecodeError as exc:
        raise SurveyQAError(f"{path} is not JSON: {exc}", "give an lsst.verify job as written by dispatch_verify.py") from exc


def prepare_job(job: dict[str, Any], repo: str | None = None, collection: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    """Fill in ``meta.env``, ``meta.packages``, ``meta.repo``/``collection``/``dataset`` where missing."""
    job = dict(job)
    meta = dict(job.get("meta") or {})
    if not meta.get("env"):
        meta["env"] = environment_metadata()
    if not meta.get("packages"):
        meta["packages"] = installed_packages()
    for key, value in (("repo", repo), ("collection", collection), ("dataset", dataset)):
        if value and not meta.get(key):
            meta[key] = value
    job["meta"] = meta
    return job


def post(server: str, path: str, payload: dict[str, Any], token: str | None, timeout: float = 300) -> tuple[int, dict[str, Any]]:
    """POST JSON to the service; an error status becomes a `SurveyQAError` with the server's message."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = json.dumps(payload, allow_nan=True)
    try:
        r = httpx.post(server.rstrip("/") + path, content=body, headers={**headers, "Content-Type": "application/json"}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise SurveyQAError(f"cannot reach {server}: {exc}", "check --server and that `surveyqa track serve` runs") from exc
    try:
        data = r.json()
    except ValueError:
        data = {"detail": r.text[:500]}
    if r.status_code >= 400:
        detail = data.get("detail")
        if isinstance(detail, list):
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail[:5])
        raise SurveyQAError(f"the server refused the submission ({r.status_code}): {detail}", data.get("hint") or "fix the input and resubmit")
    return r.status_code, data


def read_repository(repo: str, collection: str, metric_information: str | None = None
                    ) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """A collection's metric values (columns of docs/data-model.md) and, from its manifest, the
    definitions of the metrics in them, so the service can store metrics it has not seen before,
    and the specs of those it cannot know otherwise (analysis_tools' metricInformation thresholds,
    `surveyqa.butler.analysis_tools`, read from ``metric_information`` when given), in the
    lsst.verify Job form."""
    from surveyqa.butler import QARepository

    qa = QARepository(repo, collection)
    if metric_information:
        qa.analysis_tools.metric_information = metric_information
    keys = ("name", "unit", "description", "reference", "higher_is_better")
    entries = qa.manifest().get("metrics", [])
    metrics = [{k: m.get(k) for k in keys if m.get(k) is not None} for m in entries]
    for m in metrics:
        if isinstance(m.get("reference"), str):  # the manifest writes a reference as one line of text
            m["reference"] = {"doc": m["reference"]}
    specs = [
        {"name": s["name"], "threshold": {"value": s["threshold"], "unit": s["unit"], "operator": s["operator"]},
         "metadata_query": s.get("metadata_query") or {}, "tags": list(s.get("tags") or [])}
        for m in entries if m.get("source") == "analysis_tools" for s in m.get("specs", [])
    ]
    return qa.metric_values(), metrics, specs


def repo_submission(table: Any, repo: str, collection: str, dataset: str | None = None, pipeline: str | None = None,
                    metrics: list[dict[str, Any]] | None = None, specs: list[dict[str, Any]] | None = None,
                    provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Our submission (as JSON) for a metric value table of ``repo``/``collection``.

    ``provenance`` is the run's `surveyqa.provenance.run_record`, so that alerts can name the
    config and input changes. The run key is a hash of repository, collection and values, so
    submitting the same outputs twice stores them once.
    """
    from surveyqa.tracking.ingest import submission_from_table

    packages = [{"name": p["name"], "version": p["eups_version"]} for p in installed_packages().values()]
    sub = submission_from_table(
        table,
        {"dataset": dataset or repo, "pipeline": pipeline, "repo": repo, "collection": collection, "env": environment_metadata(),
         "provenance": provenance},
        metrics=metrics,
        packages=packages,
        specs=specs,
    )
    body = sub.model_dump(mode="json", exclude={"run": {"env", "key"}, "packages": True})
    sub.run.key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return sub.model_dump(mode="json")
