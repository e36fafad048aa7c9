"""Turn either submission format into one normalized run, checked before anything is stored.

`from_verify_job` reads an lsst.verify Job unchanged (blobs kept as sent); `from_submission`
reads our own format; `submission_from_table` builds our format from a ``qaMetricValues_*``
table (pandas or pyarrow) plus run metadata, which is what ``surveyqa track submit REPO`` sends.
Everything here is pure: no database, no HTTP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from surveyqa.errors import SurveyQAError
from surveyqa.tracking.schemas import MetricIn, PackageIn, RunInfo, Submission, ValueIn, VerifyJob, VerifySpec

__all__ = [
    "InvalidSubmission",
    "MetricDef",
    "SpecDef",
    "ValueRow",
    "NormalizedRun",
    "DATA_ID_KEYS",
    "INT_KEYS",
    "canonical_data_id",
    "clean_json",
    "from_verify_job",
    "from_submission",
    "job_key",
    "submission_from_table",
    "utc_naive",
]

#: Keys of a verify job's ``meta`` that form the data ID of its measurements.
DATA_ID_KEYS = ("instrument", "filter_name", "band", "physical_filter", "skymap", "tract", "patch", "visit", "detector")
#: Data ID keys whose values are integers (Butler dimensions with integer ids).
INT_KEYS = frozenset({"tract", "patch", "visit", "detector", "exposure"})


class InvalidSubmission(SurveyQAError):
    """A submission that cannot be stored; the API answers 422 with the message."""


@dataclass
class MetricDef:
    name: str
    unit: str
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    reference: dict[str, Any] | None = None
    higher_is_better: bool | None = None

    @property
    def package(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass
class SpecDef:
    name: str
    metric: str
    type: str
    operator: str | None
    threshold: float | None
    unit: str | None
    metadata_query: dict[str, Any]
    tags: list[str]


@dataclass
class ValueRow:
    metric: str
    data_id: dict[str, str]
    value: float | None
    unit: str
    n: int | None = None
    identifier: str | None = None
    blob_refs: list[str] | None = None
    level: str | None = None
    selection: str | None = None
    aggregation: str | None = None
    note: str | None = None


@dataclass
class NormalizedRun:
    """A run ready to store: every value carries its metric name, unit and data ID."""

    key: str
    format: str
    dataset: str
    time: dt.datetime
    pipeline: str | None = None
    env_name: str | None = None
    ci_id: str | None = None
    ci_url: str | None = None
    repo: str | None = None
    collection: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    packages: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[MetricDef] = field(default_factory=list)
    specs: list[SpecDef] = field(default_factory=list)
    blobs: list[dict[str, Any]] = field(default_factory=list)
    values: list[ValueRow] = field(default_factory=list)
    job_metrics: list[str] | None = None
    job_specs: list[str] | None = None
    provenance: dict[str, Any] | None = None


def utc_naive(value: Any, default: dt.datetime | None = None) -> dt.datetime:
    """Return ``value`` (datetime or ISO string) as a naive UTC datetime; the database stores UTC."""
    if value is None or value == "":
        value = default or dt.datetime.now(dt.UTC)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidSubmission(f"cannot read the time {value!r}", "use ISO 8601, e.g. 2026-11-22T12:00:00Z") from exc
    if not isinstance(value, dt.datetime):
        raise InvalidSubmission(f"cannot read the time {value!r}", "use ISO 8601, e.g. 2026-11-22T12:00:00Z")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def clean_json(obj: Any, where: str = "metadata") -> Any:
    """Return ``obj`` with non-finite floats as None; NUL characters are refused.

    JSON columns of PostgreSQL refuse NaN and NUL; metadata is free-form, so it is cleaned once here.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        if "\x00" in obj:
            raise InvalidSubmission(f"{where} holds a NUL character", "remove control characters from the text")
        return obj
    if isinstance(obj, dict):
        return {clean_json(str(k), where): clean_json(v, where) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v, where) for v in obj]
    return obj


def canonical_data_id(data_id: dict[str, Any]) -> dict[str, str]:
    """Return a data ID as sorted ``key -> str(value)``; None values are dropped."""
    out = {}
    for key in sorted(data_id):
        value = data_id[key]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        out[str(key)] = str(value)
    return out


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, allow_nan=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _spec_metric(name: str, known: set[str]) -> str:
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:i]) in known:
            return ".".join(parts[:i])
    return ".".join(parts[:-1]) if len(parts) > 2 else name


def _spec_defs(specs: list[Any], known: set[str]) -> list[SpecDef]:
    out = []
    for s in specs:
        th = s.threshold
        out.append(
            SpecDef(
                name=s.name,
                metric=_spec_metric(s.name, known),
                type=s.type,
                operator=th.operator if th else None,
                threshold=th.value if th else None,
                unit=th.unit if th else None,
                metadata_query=clean_json(s.metadata_query, f"spec {s.name}"),
                tags=_tags(s.tags),
            )
        )
    return out


def _dataset_of(meta: dict[str, Any]) -> str:
    env = meta.get("env") or {}
    for candidate in (meta.get("dataset"), meta.get("dataset_name"), env.get("ci_dataset")):
        if candidate and candidate != "unknown":
            return str(candidate)[:300]
    url = meta.get("dataset_repo_url")
    if url:
        return str(url).rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")[:300] or "unknown"
    return "unknown"


def job_key(job: VerifyJob, dataset: str, data_id: dict[str, str]) -> str:
    """The idempotency key of an lsst.verify job: what makes two uploads the same run.

    ``dispatch_verify.py`` stamps ``meta.env.date`` with the time of each upload, so a CI retry
    differs from the first upload only there. A job from a CI build (``env.ci_id`` known) is keyed
    by the build: ``env_name``, ``ci_name``, ``ci_id``, dataset, plus its data ID and metric names,
    so that the several jobs one build uploads (one per filter, say) stay apart. Any other job is
    keyed by its whole content except ``meta.env.date``.
    """
    env = job.meta.env or {}
    ci_id = env.get("ci_id")
    if ci_id not in (None, "", "unknown"):
        parts = {
            "build": [env.get("env_name"), env.get("ci_name"), str(ci_id), dataset],
            "data_id": data_id,
            "metrics": sorted({m.metric for m in job.measurements}),
        }
        return "ci-" + _hash(parts)[:60]
    body = job.model_dump(mode="python")
    body["meta"]["env"] = {k: v for k, v in (body["meta"].get("env") or {}).items() if k != "date"}
    return _hash(body)


def from_verify_job(job: VerifyJob, key: str | None = None) -> NormalizedRun:
    """Normalize an lsst.verify Job.

    The data ID of every measurement is made of the job's ``meta`` keys among `DATA_ID_KEYS`
    (``instrument``, ``filter_name``...). A NaN value (lsst.verify's "not computed") is stored as
    missing with a note. The run's key is `job_key` unless ``meta.run_key`` is set.
    """
    meta = job.meta.model_dump(mode="python")
    packages = meta.pop("packages", {})
    provenance = _provenance(meta.pop("provenance", None))
    env = meta.get("env") or {}
    data_id = canonical_data_id({k: meta[k] for k in DATA_ID_KEYS if k in meta and not isinstance(meta[k], (dict, list))})
    if key is None:
        key = str(meta.get("run_key") or job_key(job, _dataset_of(meta), data_id))[:64]
    known = {m.name for m in job.metrics}
    values = []
    for m in job.measurements:
        value, note = m.value, None
        if value is not None and math.isinf(value):
            raise InvalidSubmission(f"measurement of {m.metric} is infinite", "send a finite value, or NaN if it was not computed")
        if value is None or math.isnan(value):
            value, note = None, "not computed (NaN in the lsst.verify job)"
        extra = m.model_extra or {}
        values.append(
            ValueRow(
                metric=m.metric,
                data_id=data_id,
                value=value,
                unit=m.unit,
                identifier=m.identifier,
                blob_refs=list(m.blob_refs),
                note=note,
                level=str(extra["level"])[:20] if isinstance(extra.get("level"), str) else None,
            )
        )
    blobs = []
    for b in job.blobs:
        d = b.model_dump(mode="python")
        text = json.dumps(d, allow_nan=True)
        if "\\u0000" in text:
            raise InvalidSubmission(f"blob {b.identifier} holds a NUL character", "remove control characters")
        blobs.append({"identifier": b.identifier, "name": b.name, "data": text})
    return NormalizedRun(
        key=key,
        format="lsst.verify",
        dataset=_dataset_of(meta),
        time=utc_naive(env.get("date")),
        pipeline=str(meta["pipeline"])[:300] if meta.get("pipeline") else None,
        env_name=str(env.get("env_name"))[:100] if env.get("env_name") else None,
        ci_id=str(env.get("ci_id"))[:200] if env.get("ci_id") else None,
        ci_url=str(env.get("ci_url")) if env.get("ci_url") else None,
        repo=str(meta["repo"]) if meta.get("repo") else None,
        collection=str(meta["collection"]) if meta.get("collection") else None,
        meta=clean_json(meta),
        config=clean_json(meta.get("config") or {}),
        packages=[
            {
                "name": p.name,
                "version": p.eups_version,
                "git_sha": p.git_sha,
                "git_url": p.git_url,
                "git_branch": p.git_branch,
            }
            for p in packages_models(job)
        ],
        metrics=[
            MetricDef(m.name, m.unit, m.description, _tags(m.tags), clean_json(m.reference or None))
            for m in job.metrics
        ],
        specs=_spec_defs(job.specs, known),
        blobs=blobs,
        values=values,
        job_metrics=[m.name for m in job.metrics],
        job_specs=[s.name for s in job.specs],
        provenance=provenance,
    )


def _provenance(record: Any) -> dict[str, Any] | None:
    """A job's ``meta.provenance`` as `RunProvenance` checks it (None when the job has none)."""
    if record is None:
        return None
    from pydantic import ValidationError

    from surveyqa.tracking.schemas import RunProvenance

    try:
        return clean_json(RunProvenance.model_validate(record).model_dump(mode="json"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise InvalidSubmission(f"meta.provenance.{where}: {first['msg']}",
                                "send `surveyqa.provenance.run_record(repo, collection)` as meta.provenance, or leave it out") from exc


def packages_models(job: VerifyJob) -> list[Any]:
    """The job's packages, one model each (``meta.packages`` is a name -> package mapping)."""
    return list(job.meta.packages.values())


def from_submission(sub: Submission) -> NormalizedRun:
    """Normalize our own format; a missing value needs a note saying why."""
    run = sub.run
    shared = canonical_data_id({k: v for k, v in run.meta.items() if not isinstance(v, (dict, list))})
    values = []
    for i, v in enumerate(sub.values):
        value = v.value
        if value is not None and math.isinf(value):
            raise InvalidSubmission(f"value {i} ({v.metric}) is infinite", "send a finite value")
        if value is None or math.isnan(value):
            if not v.note:
                raise InvalidSubmission(
                    f"value {i} ({v.metric}) is NaN or null without a note",
                    "send a finite value, or a `note` saying why it could not be computed",
                )
            value = None
        values.append(
            ValueRow(
                metric=v.metric,
                data_id={**shared, **canonical_data_id(v.data_id)},
                value=value,
                unit=v.unit,
                n=v.n,
                level=v.level,
                selection=v.selection,
                aggregation=v.aggregation,
                note=v.note,
            )
        )
    body = sub.model_dump(mode="json", exclude={"run": {"env"}})
    env = run.env
    return NormalizedRun(
        key=run.key or _hash(body),
        format="surveyqa",
        dataset=run.dataset,
        time=utc_naive(run.time),
        pipeline=run.pipeline,
        env_name=str(env.get("env_name"))[:100] if env.get("env_name") else None,
        ci_id=str(env.get("ci_id"))[:200] if env.get("ci_id") else None,
        ci_url=str(env.get("ci_url")) if env.get("ci_url") else None,
        repo=run.repo,
        collection=run.collection,
        meta=clean_json({**run.meta, "env": env}),
        config=clean_json(run.config),
        provenance=clean_json(run.provenance.model_dump(mode="json")) if run.provenance else None,
        packages=[p.model_dump() for p in sub.packages],
        metrics=[MetricDef(m.name, m.unit, m.description, list(m.tags), m.reference, m.higher_is_better) for m in sub.metrics],
        specs=_spec_defs(sub.specs, {m.name for m in sub.metrics} | {v.metric for v in sub.values}),
        values=values,
    )


_VALUE_COLUMNS = ("metric", "value", "unit")
_ID_COLUMNS = ("band", "tract", "patch", "visit", "detector", "instrument", "skymap", "physical_filter", "column")
_OPTIONAL = ("level", "n", "selection", "aggregation", "note")


def submission_from_table(
    table: Any,
    run: RunInfo | dict[str, Any],
    metrics: list[MetricIn | dict[str, Any]] | None = None,
    packages: list[PackageIn | dict[str, Any]] | None = None,
    specs: list[VerifySpec | dict[str, Any]] | None = None,
) -> Submission:
    """Build our submission from a ``qaMetricValues_*`` table (pandas or pyarrow) and run metadata.

    Parameters
    ----------
    table : pandas.DataFrame or pyarrow.Table
        Columns ``metric``, ``value``, ``unit`` and any of the data ID columns (``band``, ``tract``,
        ``patch``, ``visit``, ``detector``...), ``level``, ``n``, ``selection``, ``aggregation``,
        ``note`` (see docs/data-model.md). Null data ID cells are left out of that row's data ID.
    run : RunInfo or dict
        Dataset, repository, collection, environment of the run.
    metrics, packages : list, optional
        Metric definitions (needed for metrics the service does not know) and software versions.
    specs : list, optional
        Specs the service cannot know otherwise (lsst.verify Job form), e.g. analysis_tools' thresholds.
    """
    if hasattr(table, "to_pandas"):
        table = table.to_pandas()
    missing = [c for c in _VALUE_COLUMNS if c not in table.columns]
    if missing:
        raise InvalidSubmission(f"the metric value table lacks columns {missing}", "see docs/data-model.md")
    id_cols = [c for c in _ID_COLUMNS if c in table.columns]
    opt_cols = [c for c in _OPTIONAL if c in table.columns]
    values = []
    for row in table.to_dict("records"):
        data_id = {}
        for c in id_cols:
            cell = row[c]
            if cell is None or (isinstance(cell, float) and math.isnan(cell)):
                continue
            try:
                import pandas as pd

                if pd.isna(cell):
                    continue
            except (TypeError, ValueError):
                pass
            data_id[c] = int(cell) if c in INT_KEYS else str(cell)
        extra = {}
        for c in opt_cols:
            cell = row[c]
            if cell is None or (isinstance(cell, float) and math.isnan(cell)):
                continue
            extra[c] = int(cell) if c == "n" else str(cell)
        value = row["value"]
        values.append(
            ValueIn(
                metric=row["metric"],
                value=None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value),
                unit=row["unit"] or "",
                data_id=data_id,
                **extra,
            )
        )
    return Submission(
        run=run if isinstance(run, RunInfo) else RunInfo(**run),
        values=values,
        metrics=[m if isinstance(m, MetricIn) else MetricIn(**m) for m in metrics or []],
        packages=[p if isinstance(p, PackageIn) else PackageIn(**p) for p in packages or []],
        specs=[s if isinstance(s, VerifySpec) else VerifySpec(**s) for s in specs or []],
    )
