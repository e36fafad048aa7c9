"""All metric definitions and specifications we know, looked up by name and evaluated on values.

The default registry is Rubin's ``verify_metrics`` (shipped as package data, unchanged), plus
surveyqa's own definitions in the same format, plus an overlay (``implementations.yaml``) that
gives Rubin's metrics the DMTN-085 §4.11.1 fields (granularity, selection, aggregation, direction)
without editing Rubin's files.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import astropy.units as u

from surveyqa.errors import DefinitionError, SurveyQAError
from surveyqa.metrics.definitions import MetricDefinition, load_metrics_dir, read_yaml_documents
from surveyqa.metrics.specs import SpecDocument, Specification, read_spec_dir, resolve_specs
from surveyqa.metrics.units import unit_to_string

__all__ = [
    "SpecResult",
    "MetricRegistry",
    "load_registry",
    "load_default_registry",
    "default_roots",
    "OVERLAY_FILE",
]

log = logging.getLogger(__name__)

#: File name, inside a definitions root, of the §4.11.1 overlay for metrics defined elsewhere.
OVERLAY_FILE = "implementations.yaml"


@dataclass(frozen=True)
class SpecResult:
    """The outcome of one specification on one measurement.

    Attributes
    ----------
    spec : str
        Full spec name (``validate_drp.PA1.design_gri``).
    operator : str
        ``<``, ``<=``, ``>``, ``>=``, ``==`` or ``!=``; the test is ``value <operator> threshold``.
    threshold : astropy.units.Quantity
        The threshold, in the spec's unit.
    passed : bool
        Whether the value met it.
    tags : tuple of str
        The spec's tags (``design``, ``minimum``...).
    """

    spec: str
    operator: str
    threshold: u.Quantity
    passed: bool
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "spec": self.spec,
            "operator": self.operator,
            "threshold": float(self.threshold.value),
            "unit": unit_to_string(self.threshold.unit),
            "passed": self.passed,
            "tags": list(self.tags),
        }


class MetricRegistry:
    """Metric definitions by full name and their specifications, read-only once built.

    Parameters
    ----------
    metrics : iterable of MetricDefinition
        Full names must be unique.
    specs : iterable of Specification
        Each must constrain a known metric, with a threshold unit convertible to the metric's.

    Raises
    ------
    DefinitionError
        On a metric defined twice, or a spec for an unknown metric or in an incompatible unit.
    """

    def __init__(self, metrics: Any = (), specs: Any = ()):
        by_name: dict[str, MetricDefinition] = {}
        for metric in metrics:
            if metric.full_name in by_name:
                raise DefinitionError(
                    f"metric {metric.full_name} is defined twice: in {by_name[metric.full_name].source} "
                    f"and in {metric.source}",
                    "keep one definition",
                )
            by_name[metric.full_name] = metric
        by_metric: dict[str, list[Specification]] = {name: [] for name in by_name}
        for spec in specs:
            metric = by_name.get(spec.metric)
            if metric is None:
                raise DefinitionError(
                    f"{spec.source}: spec {spec.name}: metric {spec.metric} is not defined",
                    "define the metric in a metrics/*.yaml file, or fix the spec's metric:",
                )
            if not spec.threshold.unit.is_equivalent(metric.unit):
                raise DefinitionError(
                    f"{spec.source}: spec {spec.name}: threshold unit "
                    f"{unit_to_string(spec.threshold.unit) or 'dimensionless'!r} cannot be converted to "
                    f"{metric.full_name}'s unit {unit_to_string(metric.unit) or 'dimensionless'!r}",
                    "give the threshold in the metric's unit",
                )
            by_metric[spec.metric].append(spec)
        self._metrics = MappingProxyType(by_name)
        self._specs = MappingProxyType({k: tuple(v) for k, v in by_metric.items()})
        self._by_short: dict[str, list[str]] = {}
        for full in by_name:
            self._by_short.setdefault(by_name[full].name, []).append(full)

    # -- lookup ---------------------------------------------------------------------------------
    @property
    def metrics(self) -> Mapping[str, MetricDefinition]:
        """Read-only mapping full name -> definition, in load order."""
        return self._metrics

    @property
    def specs(self) -> list[Specification]:
        """Every specification, grouped by metric."""
        return [s for specs in self._specs.values() for s in specs]

    @property
    def packages(self) -> list[str]:
        """Sorted package names."""
        return sorted({m.package for m in self._metrics.values()})

    @property
    def tags(self) -> list[str]:
        """Sorted tags used by any metric."""
        return sorted({t for m in self._metrics.values() for t in m.tags})

    def __len__(self) -> int:
        return len(self._metrics)

    def __iter__(self) -> Iterator[MetricDefinition]:
        return iter(self._metrics.values())

    def __contains__(self, name: object) -> bool:
        return name in self._metrics

    def get(self, name: str) -> MetricDefinition:
        """Look a metric up by full name (``validate_drp.PA1``) or by an unambiguous short name (``PA1``).

        Raises
        ------
        SurveyQAError
            If no metric or several have that name, listing the candidates.
        """
        if name in self._metrics:
            return self._metrics[name]
        matches = self._by_short.get(name, [])
        if len(matches) == 1:
            return self._metrics[matches[0]]
        if matches:
            raise SurveyQAError(
                f"metric name {name!r} is ambiguous: {', '.join(sorted(matches))}", "use the full name package.metric"
            )
        lowered = name.lower()
        candidates = [f for f in self._metrics if f.lower() == lowered or f.rsplit(".", 1)[-1].lower() == lowered]
        candidates += difflib.get_close_matches(name, list(self._metrics), n=5, cutoff=0.75)
        close_short = difflib.get_close_matches(name, list(self._by_short), n=5, cutoff=0.75)
        candidates += [full for short in close_short for full in self._by_short[short]]
        candidates = list(dict.fromkeys(candidates))[:8]
        hint = (
            f"did you mean {', '.join(candidates)}?" if candidates else "run 'surveyqa metrics list' to see the names"
        )
        raise SurveyQAError(f"unknown metric {name!r}", hint)

    def specs_for(self, full_name: str, metadata: Mapping[str, Any] | None = None) -> list[Specification]:
        """Specifications of a metric (full or unambiguous short name); only those applying to
        ``metadata`` when it is given."""
        metric = self.get(full_name)
        specs = list(self._specs[metric.full_name])
        if metadata is not None:
            specs = [s for s in specs if s.applies_to(metadata)]
        return specs

    def spec(self, name: str) -> Specification:
        """One specification by full name ``package.metric.spec``."""
        metric_name = name.rsplit(".", 1)[0]
        for spec in self._specs.get(metric_name, ()):
            if spec.name == name:
                return spec
        raise SurveyQAError(f"unknown specification {name!r}", "run 'surveyqa metrics show METRIC' to list its specs")

    def evaluate(
        self, full_name: str, value: u.Quantity, metadata: Mapping[str, Any] | None = None
    ) -> list[SpecResult]:
        """Check a measurement against every spec of its metric that applies to its metadata.

        Parameters
        ----------
        full_name : str
            Metric name (full, or an unambiguous short name).
        value : astropy.units.Quantity
            The measurement, in any unit convertible to the metric's.
        metadata : mapping, optional
            What the measurement is about, with the keys Rubin's specs query (``instrument``,
            ``filter_name``, ``dataset_repo_url``, ...). Without it only specs with no
            ``metadata_query`` apply.

        Raises
        ------
        SurveyQAError
            If the metric is unknown or the value's unit does not convert to the metric's.
        """
        metric = self.get(full_name)
        quantity = u.Quantity(value)
        if not quantity.unit.is_equivalent(metric.unit):
            raise SurveyQAError(
                f"{metric.full_name} is in {unit_to_string(metric.unit) or 'dimensionless'!r}; "
                f"a value in {unit_to_string(quantity.unit) or 'dimensionless'!r} cannot be checked",
                "give the value with a unit convertible to the metric's",
            )
        return [
            SpecResult(s.name, s.operator, s.threshold, s.check(quantity), s.tags)
            for s in self.specs_for(metric.full_name, metadata or {})
        ]

    def filter(self, package: str | None = None, tag: str | None = None) -> list[MetricDefinition]:
        """Metrics of one package and/or carrying one tag (exact match), in load order."""
        return [
            m
            for m in self._metrics.values()
            if (package is None or m.package == package) and (tag is None or tag in m.tags)
        ]


def _read_overlay(path: Path) -> dict[str, dict[str, Any]]:
    docs = [d for d in read_yaml_documents(path) if d is not None]
    if not docs:
        return {}
    if len(docs) > 1 or not isinstance(docs[0], dict):
        raise DefinitionError(f"{path}: expected one mapping of metric full name -> fields")
    for name, fields in docs[0].items():
        if not isinstance(fields, dict):
            raise DefinitionError(f"{path}: {name}: expected a mapping of fields, got {fields!r}")
    return docs[0]


def load_registry(*roots: Path | str) -> MetricRegistry:
    """Build a registry from definition roots, each holding ``metrics/*.yaml`` and/or ``specs/<package>/``.

    Specs of all roots are resolved together, so a spec may inherit from one in another root.
    A root's ``implementations.yaml`` (metric full name -> granularity, selection, aggregation,
    higher_is_better) is applied after every root is read, so it may annotate any root's metrics.
    """
    metrics: list[MetricDefinition] = []
    documents: list[SpecDocument] = []
    overlays: list[tuple[Path, dict[str, dict[str, Any]]]] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise DefinitionError(f"{root}: no such definitions folder", "give a folder holding metrics/ and specs/")
        if (root / "metrics").is_dir():
            metrics.extend(load_metrics_dir(root / "metrics"))
        if (root / "specs").is_dir():
            for package_dir in sorted(p for p in (root / "specs").iterdir() if p.is_dir()):
                documents.extend(read_spec_dir(package_dir))
        if (root / OVERLAY_FILE).is_file():
            overlays.append((root / OVERLAY_FILE, _read_overlay(root / OVERLAY_FILE)))
    index = {m.full_name: i for i, m in enumerate(metrics)}
    for path, overlay in overlays:
        for name, fields in overlay.items():
            if name not in index:
                raise DefinitionError(f"{path}: {name}: no such metric", "use a full name such as validate_drp.PA1")
            metrics[index[name]] = metrics[index[name]].with_fields(fields, source=path)
    registry = MetricRegistry(metrics, resolve_specs(documents))
    log.info("loaded %d metrics and %d specifications", len(registry), len(registry.specs))
    return registry


def default_roots() -> list[Path]:
    """Rubin's verify_metrics, then surveyqa's own definitions when present."""
    data = Path(str(resources.files("surveyqa.metrics") / "data"))
    roots = [data / "verify_metrics"]
    if (data / "surveyqa").is_dir():
        roots.append(data / "surveyqa")
    return roots


@functools.lru_cache(maxsize=1)
def load_default_registry() -> MetricRegistry:
    """The registry of the shipped definitions (read once per process; it is read-only)."""
    return load_registry(*default_roots())
