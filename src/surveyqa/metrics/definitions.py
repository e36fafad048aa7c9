"""Metric definitions in the lsst.verify YAML format, plus what DMTN-085 §4.11.1 asks of each.

A metrics file maps metric names to ``description``, ``unit``, ``reference`` ``{doc, url, page}``
and ``tags`` (a string or a list); the package is the file's stem (``validate_drp.yaml`` defines
``validate_drp.PA1``), exactly as lsst.verify reads Rubin's ``verify_metrics``. Our own definitions
use the same format and may also say, as DMTN-085 §4.11.1 asks, the finest granularity at which
the metric's values are stored, the selection of rows it is computed on, how per-row values are
aggregated, and which direction is better, so a number on a screen can always be traced back.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import yaml

from surveyqa.errors import DefinitionError
from surveyqa.metrics.units import parse_unit, unit_to_string

__all__ = [
    "GRANULARITIES",
    "EXTRA_FIELDS",
    "Reference",
    "MetricDefinition",
    "metric_from_dict",
    "load_metrics_file",
    "load_metrics_dir",
    "read_yaml_documents",
    "as_tags",
]

log = logging.getLogger(__name__)

#: Storage granularities, finest first (DMTN-085 §4.11.1: "maximum granularity at which it is stored").
GRANULARITIES: tuple[str, ...] = ("source", "detector", "visit", "patch", "tract", "dataset")

#: The §4.11.1 fields a definition may carry beyond lsst.verify's.
EXTRA_FIELDS: tuple[str, ...] = ("granularity", "selection", "aggregation", "higher_is_better")

_VERIFY_FIELDS = ("description", "unit", "reference", "tags")
_REFERENCE_FIELDS = ("doc", "url", "page")

try:  # the C loader is ~10x faster on the 1,800 spec documents
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


@dataclass(frozen=True)
class Reference:
    """Where a metric or threshold is defined: a document, its URL and a page (all optional)."""

    doc: str | None = None
    url: str | None = None
    page: str | None = None

    def to_dict(self) -> dict[str, str]:
        """Return the non-empty fields, as written in YAML."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def __str__(self) -> str:
        parts = [self.doc or "", f"p. {self.page}" if self.page else "", self.url or ""]
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class MetricDefinition:
    """One metric: what it measures, in which unit, and (for our own metrics) how it is made.

    Parameters
    ----------
    package : str
        The package that defines it (the metrics file's stem), e.g. ``'validate_drp'``.
    name : str
        The short name, e.g. ``'PA1'``.
    description : str
        What the metric measures.
    unit : astropy.units.UnitBase
        The unit every value of this metric carries (dimensionless for counts of nothing in particular).
    reference : Reference, optional
        The document defining it (LPM-17 page 21 for PA1).
    tags : tuple of str
        Free-form labels (``'photometry'``, ``'ap_verify'``); a single string in YAML is one tag.
    granularity : str, optional
        Finest level its values are stored at: one of `GRANULARITIES`.
    selection : str, optional
        Name of the selection of rows it is computed on (e.g. ``'bright_unresolved_stars'``).
    aggregation : str, optional
        How per-row values become one value per data ID (e.g. ``'rms'``, ``'median'``).
    higher_is_better : bool, optional
        Direction of improvement; None where it is not meaningful or not said.
    source : pathlib.Path, optional
        File it was read from (for error messages and ``metrics show``); not part of equality.
    """

    package: str
    name: str
    description: str
    unit: u.UnitBase
    reference: Reference | None = None
    tags: tuple[str, ...] = ()
    granularity: str | None = None
    selection: str | None = None
    aggregation: str | None = None
    higher_is_better: bool | None = None
    source: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        where = f"metric {self.package}.{self.name}"
        if self.granularity is not None and self.granularity not in GRANULARITIES:
            raise DefinitionError(
                f"{_file(self.source)}{where}: unknown granularity {self.granularity!r}",
                f"use one of {', '.join(GRANULARITIES)}",
            )
        if self.higher_is_better is not None and not isinstance(self.higher_is_better, bool):
            raise DefinitionError(
                f"{_file(self.source)}{where}: higher_is_better must be true or false, "
                f"not {self.higher_is_better!r}",
                "write higher_is_better: true, false, or leave it out",
            )
        for key in ("selection", "aggregation"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise DefinitionError(f"{_file(self.source)}{where}: {key} must be a string, not {value!r}")

    @property
    def full_name(self) -> str:
        """``package.name``, the name used everywhere else (``validate_drp.PA1``)."""
        return f"{self.package}.{self.name}"

    @property
    def summary(self) -> str:
        """First line of the description."""
        lines = self.description.strip().splitlines()
        return lines[0].strip() if lines else ""

    def with_fields(self, fields: Mapping[str, Any], source: Path | None = None) -> MetricDefinition:
        """Return a copy with some §4.11.1 fields set (the implementations overlay uses this)."""
        unknown = set(fields) - set(EXTRA_FIELDS)
        if unknown:
            raise DefinitionError(
                f"{_file(source)}{self.full_name}: unknown field(s) {', '.join(sorted(unknown))}",
                f"an overlay may set only {', '.join(EXTRA_FIELDS)}",
            )
        try:
            return dataclasses.replace(self, **dict(fields))
        except DefinitionError as exc:
            raise DefinitionError(f"{_file(source)}{exc.message}", exc.hint) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the YAML fields plus ``full_name``; the unit as a string ('' = dimensionless)."""
        out: dict[str, Any] = {
            "full_name": self.full_name,
            "package": self.package,
            "name": self.name,
            "description": self.description.strip(),
            "unit": unit_to_string(self.unit),
            "reference": self.reference.to_dict() if self.reference else None,
            "tags": list(self.tags),
        }
        for key in EXTRA_FIELDS:
            out[key] = getattr(self, key)
        return out


def _file(path: Path | str | None) -> str:
    return f"{path}: " if path else ""


def as_tags(value: Any, where: str) -> tuple[str, ...]:
    """Normalise YAML tags (a string, a list or set of strings, or nothing) to a tuple without repeats."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (set, frozenset)):  # Rubin's files use YAML !!set for some tags
        value = sorted(map(str, value))
    if not isinstance(value, list) or not all(isinstance(t, (str, int, float)) for t in value):
        raise DefinitionError(f"{where}: tags must be a string or a list of strings, not {value!r}")
    return tuple(dict.fromkeys(str(t) for t in value))


def _reference(value: Any, where: str) -> Reference | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Reference(doc=value)
    if not isinstance(value, dict):
        raise DefinitionError(f"{where}: reference must be a mapping with doc, url, page, not {value!r}")
    unknown = set(value) - set(_REFERENCE_FIELDS)
    if unknown:
        raise DefinitionError(
            f"{where}: unknown reference field(s) {', '.join(sorted(map(str, unknown)))}",
            "a reference has doc, url and page",
        )
    return Reference(**{k: None if value.get(k) is None else str(value[k]).strip() for k in _REFERENCE_FIELDS})


def metric_from_dict(package: str, name: str, doc: Any, source: Path | str | None = None) -> MetricDefinition:
    """Build one definition from its YAML mapping.

    Raises
    ------
    DefinitionError
        Naming the file and the metric: a missing description or unit, an unknown unit,
        an unknown field (a typo such as ``unti``), a bad granularity.
    """
    source = Path(source) if source else None
    where = f"{_file(source)}metric {package}.{name}"
    if not isinstance(doc, dict):
        raise DefinitionError(f"{where}: expected a mapping of fields, got {doc!r}")
    unknown = set(doc) - set(_VERIFY_FIELDS) - set(EXTRA_FIELDS)
    if unknown:
        raise DefinitionError(
            f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}",
            f"a metric has {', '.join(_VERIFY_FIELDS + EXTRA_FIELDS)}",
        )
    if "unit" not in doc:
        raise DefinitionError(f"{where}: no unit", "add unit: (use '' for dimensionless)")
    description = doc.get("description")
    if not isinstance(description, str) or not description.strip():
        raise DefinitionError(f"{where}: no description", "say in a sentence what the metric measures")
    try:
        unit = parse_unit(doc["unit"])
    except DefinitionError as exc:
        raise DefinitionError(f"{where}: {exc.message}", exc.hint) from None
    return MetricDefinition(
        package=package,
        name=str(name),
        description=description,
        unit=unit,
        reference=_reference(doc.get("reference"), where),
        tags=as_tags(doc.get("tags"), where),
        source=source,
        **{key: doc.get(key) for key in EXTRA_FIELDS},
    )


def read_yaml_documents(path: Path) -> list[Any]:
    """Read every document of a YAML file, refusing duplicate top-level keys.

    PyYAML silently keeps the last of two equal keys; in a metrics file that would drop a
    metric, in a spec document a threshold, so we say so. Nested duplicates are left alone
    (one of Rubin's real files repeats ``config:`` inside a ``provenance_query``).

    Raises
    ------
    DefinitionError
        If the file cannot be read or parsed, naming the file and the line.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DefinitionError(f"{path}: cannot read ({exc.strerror})") from None
    loader = _Loader(text)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    key = key_node.value
                    if key in seen:
                        raise DefinitionError(
                            f"{path}: line {key_node.start_mark.line + 1}: {key!r} is defined twice "
                            f"(first on line {seen[key] + 1})",
                            "remove or rename one of them",
                        )
                    seen[key] = key_node.start_mark.line
            docs.append(loader.construct_document(node))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(f"{path}: {line}not valid YAML ({problem})") from None
    finally:
        loader.dispose()
    return docs


def load_metrics_file(path: Path | str) -> list[MetricDefinition]:
    """Read one lsst.verify metrics file; the package is the file's stem.

    Parameters
    ----------
    path : path-like
        A YAML file whose top-level keys are metric names.
    """
    path = Path(path)
    docs = [d for d in read_yaml_documents(path) if d is not None]
    if not docs:
        return []
    if len(docs) > 1 or not isinstance(docs[0], dict):
        raise DefinitionError(
            f"{path}: a metrics file must be one mapping of metric name -> fields",
            "see docs/metrics.md for the format",
        )
    return [metric_from_dict(path.stem, str(name), doc, path) for name, doc in docs[0].items()]


def load_metrics_dir(directory: Path | str) -> list[MetricDefinition]:
    """Read every ``*.yaml`` metrics file in a folder (not recursive), in name order."""
    metrics: list[MetricDefinition] = []
    for path in sorted(Path(directory).glob("*.yaml")):
        metrics.extend(load_metrics_file(path))
    log.debug("read %d metric definitions from %s", len(metrics), directory)
    return metrics

