"""Request and response models of the tracking API: the OpenAPI document is built from these.

Two submission formats are accepted. `VerifyJob` is the lsst.verify Job JSON exactly as
``dispatch_verify.py`` writes it (and as SQuaSH accepted it); unknown fields are kept. `Submission`
is our own, built from a repository's ``qaMetricValues_*`` tables (columns in docs/data-model.md).
Strings are bounded and may not hold NUL characters so that every database refuses nothing we
accepted: bad input is a 422 here, never a 500 later.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "Name",
    "VerifyMeasurement",
    "VerifyBlob",
    "VerifyMetric",
    "VerifyThreshold",
    "VerifySpec",
    "VerifyPackage",
    "VerifyMeta",
    "VerifyJob",
    "RunProvenance",
    "RunInfo",
    "PackageIn",
    "MetricIn",
    "ValueIn",
    "Submission",
    "SubmitResult",
    "SubscriptionIn",
    "DATA_ID_KEY",
]

INT64 = 2**63 - 1


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


def _bounded(n: int, min_length: int = 0) -> Any:
    return Annotated[str, StringConstraints(max_length=n, min_length=min_length), AfterValidator(_no_nul)]


#: A metric or spec name such as ``validate_drp.PA1`` (package, dot, name).
Name = Annotated[
    str,
    StringConstraints(min_length=3, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)+$"),
]
SpecName = Annotated[
    str,
    StringConstraints(min_length=3, max_length=300, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)+$"),
]
#: A data ID key (``band``, ``tract``, ``instrument``, ``filter_name``...).
DATA_ID_KEY = r"^[a-z_][a-z0-9_]{0,49}$"
Short = _bounded(200)
Long = _bounded(2000)
UnitStr = _bounded(100)
Int64 = Annotated[int, Field(ge=-INT64, le=INT64)]
DataIdValue = Annotated[str, StringConstraints(max_length=200), AfterValidator(_no_nul)] | Int64


class VerifyMeasurement(BaseModel):
    """One lsst.verify measurement; ``value`` NaN means lsst.verify could not compute it."""

    model_config = ConfigDict(extra="allow")
    metric: Name
    identifier: Short | None = None
    value: float | None = Field(description="in `unit`; NaN or null when not computed")
    unit: UnitStr = ""
    blob_refs: list[Short] = Field(default_factory=list, max_length=1000)


class VerifyBlob(BaseModel):
    """A blob: extra data a measurement refers to (kept exactly as sent)."""

    model_config = ConfigDict(extra="allow")
    identifier: Short
    name: Short | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class VerifyMetric(BaseModel):
    """An lsst.verify metric definition carried in a job."""

    model_config = ConfigDict(extra="allow")
    name: Name
    description: Long | None = None
    unit: UnitStr = ""
    tags: list[Short] | Short | None = None
    reference: dict[str, Any] | None = None


class VerifyThreshold(BaseModel):
    """A threshold: value, unit and the operator a passing value satisfies (``value OP threshold``)."""

    value: float = Field(allow_inf_nan=False)
    unit: UnitStr = ""
    operator: Annotated[str, StringConstraints(pattern=r"^(<=|<|>=|>|==|!=)$")]


class VerifySpec(BaseModel):
    """An lsst.verify specification (a threshold on a metric, maybe limited by a metadata query)."""

    model_config = ConfigDict(extra="allow")
    name: SpecName
    type: Short = "threshold"
    threshold: VerifyThreshold | None = None
    metadata_query: dict[str, Any] = Field(default_factory=dict)
    tags: list[Short] | Short | None = None


class VerifyPackage(BaseModel):
    """A software package of the run (name, EUPS version, git sha)."""

    model_config = ConfigDict(extra="allow")
    name: Short
    git_sha: Short | None = None
    git_url: Long | None = None
    git_branch: Short | None = None
    eups_version: Short | None = None


class VerifyMeta(BaseModel):
    """Job metadata: packages, environment (``env``) and free keys (instrument, filter_name...)."""

    model_config = ConfigDict(extra="allow")
    packages: dict[Short, VerifyPackage] = Field(default_factory=dict)
    env: dict[str, Any] = Field(default_factory=dict)


class VerifyJob(BaseModel):
    """An lsst.verify Job, as written by ``dispatch_verify.py`` (SQuaSH's upload format)."""

    model_config = ConfigDict(extra="allow")
    measurements: list[VerifyMeasurement] = Field(min_length=1, max_length=100_000)
    blobs: list[VerifyBlob] = Field(default_factory=list)
    metrics: list[VerifyMetric] = Field(default_factory=list)
    specs: list[VerifySpec] = Field(default_factory=list)
    meta: VerifyMeta = Field(default_factory=VerifyMeta)


class RunProvenance(BaseModel):
    """What made a run's values (`surveyqa.provenance.run_record`): kept so that an alert can say
    which config and inputs changed between the last good and the first bad run, not only the code."""

    repo: Long | None = None
    collection: Long | None = None
    runs: list[Long] = Field(default_factory=list, max_length=10_000)
    configs: dict[Short, dict[Short, Any]] = Field(default_factory=dict, description="{task label: {config key: value}}")
    packages: dict[Short, Short] = Field(default_factory=dict, description="{package: version}")
    datasets: dict[Long, Short] = Field(default_factory=dict, description="{'type data ID': dataset ID} of the values")
    inputs: dict[Long, Short] = Field(default_factory=dict, description="{'type data ID': dataset ID} the quanta read")


class RunInfo(BaseModel):
    """Where a run's values come from: dataset, pipeline, time, repository and collection, environment."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")] | None = Field(
        None, description="idempotency key: resubmitting a run with the same key changes nothing"
    )
    dataset: _bounded(300, 1)
    pipeline: _bounded(300) | None = None
    time: dt.datetime | None = Field(None, description="when the run was made (UTC if no zone); default: now")
    repo: Long | None = Field(None, description="URI of the Butler repository holding the outputs")
    collection: Long | None = None
    env: dict[str, Any] = Field(default_factory=dict, description="env_name, ci_id, ci_url, git_sha ...")
    config: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict, description="data ID keys shared by every value, e.g. instrument")
    provenance: RunProvenance | None = Field(None, description="configs, software and dataset IDs behind the values")


class PackageIn(BaseModel):
    """A package of the run's software."""

    name: Short
    version: Short | None = None
    git_sha: Short | None = None
    git_url: Long | None = None
    git_branch: Short | None = None


class MetricIn(BaseModel):
    """A metric definition sent along with values (needed for metrics the service does not know yet)."""

    name: Name
    unit: UnitStr = ""
    description: Long | None = None
    tags: list[Short] = Field(default_factory=list)
    reference: dict[str, Any] | None = None
    higher_is_better: bool | None = None


class ValueIn(BaseModel):
    """One row of a ``qaMetricValues_*`` table."""

    metric: Name
    value: float | None = Field(description="in `unit`; NaN/null only with a `note` saying why")
    unit: UnitStr = ""
    data_id: dict[Annotated[str, StringConstraints(pattern=DATA_ID_KEY)], DataIdValue] = Field(
        default_factory=dict, max_length=20
    )
    level: _bounded(20) | None = None
    n: Int64 | None = None
    selection: Short | None = None
    aggregation: _bounded(100) | None = None
    note: Long | None = None


class Submission(BaseModel):
    """Our own submission format: one run and its metric values."""

    run: RunInfo
    packages: list[PackageIn] = Field(default_factory=list, max_length=10_000)
    metrics: list[MetricIn] = Field(default_factory=list, max_length=10_000)
    specs: list[VerifySpec] = Field(default_factory=list, max_length=10_000)
    values: list[ValueIn] = Field(min_length=1, max_length=1_000_000)


class SubmitResult(BaseModel):
    """What a submission did."""

    run_id: int
    created: bool = Field(description="false when the same run was already stored (nothing changed)")
    values: int
    alerts: list[int] = Field(default_factory=list, description="ids of alerts this run opened")
    url: str


class SubscriptionIn(BaseModel):
    """Subscribe an e-mail address or a webhook URL to a metric (``*`` patterns allowed)."""

    metric: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.*\-]+$")]
    channel: Annotated[str, StringConstraints(pattern=r"^(email|webhook)$")]
    target: Annotated[str, StringConstraints(min_length=3, max_length=500), AfterValidator(_no_nul)]
