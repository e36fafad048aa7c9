"""Threshold specifications in the lsst.verify YAML format: loading, inheritance, evaluation.

Specs live in ``specs/<package>/**.yaml``, many YAML documents per file. A document with ``id:``
is a *partial*, a reusable fragment named ``package:path#id`` (``path`` is the file's path inside
the package folder, without ``.yaml``); any other document is a *specification* named
``package.metric.name``. ``base:`` (a string or a list) inherits from partials (``#id`` in the same
file, ``path#id`` or ``package:path#id`` elsewhere) and from other specifications (``metric.name``
or ``package.metric.name``, in any file). We resolve them the way lsst.verify's ``SpecificationSet``
does: bases are merged first to last, then the document itself; mappings merge key by key, lists
(tags) concatenate, everything else is overwritten by the later document; a specification
inherits its metric from a base specification when it does not name one.

A spec applies to a measurement when every ``metadata_query`` key is in the measurement's
metadata with an equal value; it passes when ``value <operator> threshold`` (value converted to
the threshold's unit first).

This module is the one spec engine: `query_matches` (applicability, list-valued metadata included),
`compare` (the operators) and `Specification.threshold_in` (unit conversion) are what the QA
(`surveyqa.tasks.values`), the dashboard and the tracking service's alerts
(`surveyqa.tracking.service`) all call, so a spec cannot apply in one place and not in another.
The tracking database stores specs as dicts; `Specification.from_dict` turns them back.
"""

from __future__ import annotations

import logging
import operator as op
import re
from collections.abc import Callable, Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np

from surveyqa.errors import DefinitionError, SurveyQAError
from surveyqa.metrics.definitions import Reference, as_tags, read_yaml_documents
from surveyqa.metrics.units import parse_unit, unit_to_string

__all__ = [
    "OPERATORS",
    "Specification",
    "SpecDocument",
    "compare",
    "query_matches",
    "read_spec_dir",
    "resolve_specs",
    "load_specs_dir",
]

log = logging.getLogger(__name__)

#: Threshold operators, oriented ``measurement <op> threshold`` as in lsst.verify.
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "<": op.lt,
    "<=": op.le,
    ">": op.gt,
    ">=": op.ge,
    "==": op.eq,
    "!=": op.ne,
}

_DOC_FIELDS = ("id", "name", "base", "metric", "threshold", "tags", "metadata_query", "provenance_query")
_THRESHOLD_FIELDS = ("value", "unit", "operator", "reference")
_PARTIAL = re.compile(r"^(?:(?P<package>[^\s:#]+):)?(?P<path>[^\s#]+)?#(?P<name>\S+)$")


@dataclass(frozen=True)
class Specification:
    """A threshold on one metric, possibly restricted to some measurements by their metadata.

    Parameters
    ----------
    name : str
        Fully-qualified name ``package.metric.spec`` (``validate_drp.PA1.design_gri``).
    metric : str
        Full name of the metric it constrains (``validate_drp.PA1``).
    operator : str
        One of `OPERATORS`; the test is ``measurement <operator> threshold``.
    threshold : astropy.units.Quantity
        The threshold, with its unit.
    tags : tuple of str
        Labels, inherited tags first (``'design'``, ``'minimum'``, ``'release'``...).
    metadata_query : dict
        Metadata a measurement must carry (all keys, equal values) for the spec to apply.
    provenance_query : dict
        Kept as written (Rubin's prototype field); not evaluated.
    reference : Reference, optional
        Where the threshold comes from, when the file says.
    source : pathlib.Path, optional
        File it was defined in.
    """

    name: str
    metric: str
    operator: str
    threshold: u.Quantity = field(hash=False)
    tags: tuple[str, ...] = ()
    metadata_query: dict[str, Any] = field(default_factory=dict, hash=False)
    provenance_query: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)
    reference: Reference | None = field(default=None, repr=False)
    source: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise DefinitionError(
                f"{_file(self.source)}spec {self.name}: unknown operator {self.operator!r}",
                f"use one of {' '.join(OPERATORS)}",
            )

    @property
    def short_name(self) -> str:
        """The spec's own name, without package and metric (``design_gri``)."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def package(self) -> str:
        """Package of the spec (first name component)."""
        return self.name.split(".", 1)[0]

    def applies_to(self, metadata: Mapping[str, Any] | None) -> bool:
        """True when every ``metadata_query`` term is in ``metadata`` with an equal value.

        A spec without a query applies to every measurement (lsst.verify's ``MetadataQuery``).
        """
        return query_matches(self.metadata_query, metadata)

    def check(self, value: u.Quantity | float) -> bool:
        """Whether ``value <operator> threshold`` holds, after converting ``value`` to the threshold's unit.

        Parameters
        ----------
        value : astropy.units.Quantity
            The measurement; a plain number is accepted only for a dimensionless threshold.
            NaN fails every operator but ``!=``, as in IEEE arithmetic.

        Raises
        ------
        SurveyQAError
            If the value's unit cannot be converted to the threshold's.
        """
        try:
            converted = u.Quantity(value).to_value(self.threshold.unit)
        except u.UnitsError:
            got = unit_to_string(u.Quantity(value).unit) or "dimensionless"
            raise SurveyQAError(
                f"spec {self.name}: a value in {got!r} cannot be compared with a threshold in "
                f"{unit_to_string(self.threshold.unit) or 'dimensionless'!r}",
                "give the value in a unit convertible to the metric's unit",
            ) from None
        return compare(converted, self.operator, float(self.threshold.value))

    def threshold_in(self, unit: u.UnitBase | str) -> float:
        """The threshold's value in ``unit`` (a metric's unit string or an astropy unit).

        Raises
        ------
        SurveyQAError
            If the threshold's unit does not convert to ``unit``.
        """
        target = parse_unit(unit) if isinstance(unit, str) or unit is None else unit
        try:
            return float(self.threshold.to_value(target))
        except u.UnitsError:
            raise SurveyQAError(
                f"spec {self.name}: its threshold in {unit_to_string(self.threshold.unit) or 'dimensionless'!r} "
                f"does not convert to {unit_to_string(target) or 'dimensionless'!r}",
                "give the spec a unit convertible to its metric's",
            ) from None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Specification:
        """A spec from its stored form: ``name``, ``metric``, ``threshold`` as a mapping of
        ``value``, ``unit``, ``operator`` (the lsst.verify Job form) or flat ``threshold``/``unit``/
        ``operator`` keys (`to_dict`), ``metadata_query``, ``tags``.

        Raises
        ------
        DefinitionError
            If the operator or the unit is unknown.
        """
        th = d.get("threshold")
        if isinstance(th, Mapping):
            value, unit, operator = th.get("value"), th.get("unit"), th.get("operator")
        else:
            value, unit, operator = th, d.get("unit"), d.get("operator")
        return cls(
            name=str(d["name"]),
            metric=str(d.get("metric") or str(d["name"]).rsplit(".", 1)[0]),
            operator=str(operator),
            threshold=u.Quantity(float(value), parse_unit(unit)),
            tags=tuple(d.get("tags") or ()),
            metadata_query=dict(d.get("metadata_query") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (threshold value and unit string separate)."""
        return {
            "name": self.name,
            "metric": self.metric,
            "operator": self.operator,
            "threshold": float(self.threshold.value),
            "unit": unit_to_string(self.threshold.unit),
            "tags": list(self.tags),
            "metadata_query": dict(self.metadata_query),
            "provenance_query": dict(self.provenance_query),
            "reference": self.reference.to_dict() if self.reference else None,
        }


def _file(path: Path | str | None) -> str:
    return f"{path}: " if path else ""


def _names(keys: set[Any]) -> str:
    return ", ".join(sorted(map(str, keys)))


def compare(value: float, operator: str, threshold: float) -> bool:
    """Whether ``value <operator> threshold`` holds (both in one unit); NaN fails all but ``!=``."""
    try:
        return bool(OPERATORS[operator](np.float64(value), np.float64(threshold)))
    except KeyError:
        raise DefinitionError(f"unknown operator {operator!r}", f"use one of {' '.join(OPERATORS)}") from None


def query_matches(query: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> bool:
    """lsst.verify's ``MetadataQuery``: every term of ``query`` is in ``metadata`` with an equal value.

    An empty query matches everything. A list-valued term (``visits: [849375, 850587]``) equals a
    list, tuple or array with the same items in the same order, as a JSON round trip would give.
    """
    metadata = metadata or {}
    return all(key in metadata and _equal(metadata[key], value) for key, value in (query or {}).items())


def _equal(given: Any, wanted: Any) -> bool:
    """Equality that also holds for a tuple or array of visits against a YAML list."""
    if isinstance(given, (list, tuple, np.ndarray)) or isinstance(wanted, (list, tuple)):
        try:
            return bool(np.array_equal(np.asarray(given), np.asarray(wanted)))
        except (TypeError, ValueError):
            return False
    return bool(given == wanted)


@dataclass
class SpecDocument:
    """One YAML document of a spec file, with the context needed to name it and its bases."""

    doc: dict[str, Any]
    package: str
    yaml_id: str
    source: Path
    index: int
    bases: list[str] = field(default_factory=list)

    @property
    def is_partial(self) -> bool:
        return "id" in self.doc

    @property
    def label(self) -> str:
        """How an error message names this document."""
        if self.is_partial:
            return f"partial {self.partial_id}"
        return f"spec {self.doc.get('name')!r} (document {self.index + 1})"

    @property
    def partial_id(self) -> str:
        return _partial_name(str(self.doc["id"]), self.package, self.yaml_id)

    def error(self, what: str, hint: str | None = None) -> DefinitionError:
        return DefinitionError(f"{self.source}: {self.label}: {what}", hint)


def _partial_name(name: str, package: str, yaml_id: str) -> str:
    """``#id`` / ``path#id`` / ``pkg:path#id`` -> ``pkg:path#id`` (lsst.verify's partial naming)."""
    if "#" not in name:
        name = "#" + name
    match = _PARTIAL.match(name)
    if match is None:
        raise ValueError(name)
    return f"{match['package'] or package}:{match['path'] or yaml_id}#{match['name']}"


def _spec_name(name: str, package: str, metric: str | None = None) -> str | None:
    """Fully qualify a spec name, or None when its metric is not known yet."""
    parts = name.split(".")
    if len(parts) == 3:
        return name
    if len(parts) == 2:
        return f"{package}.{name}"
    if len(parts) == 1 and metric:
        return f"{_metric_name(metric, package)}.{name}"
    return None


def _metric_name(metric: str, package: str) -> str:
    return metric if "." in metric else f"{package}.{metric}"


def read_spec_dir(package_dir: Path | str) -> list[SpecDocument]:
    """Read every document of every ``*.yaml`` / ``*.yml`` file under one package's spec folder.

    The folder's name is the package. Documents are checked for unknown fields and bad base
    names here; inheritance is resolved by `resolve_specs`, which may combine several folders.
    """
    package_dir = Path(package_dir)
    package = package_dir.name
    out: list[SpecDocument] = []
    files = sorted(p for p in package_dir.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        yaml_id = path.relative_to(package_dir).with_suffix("").as_posix()
        for index, doc in enumerate(read_yaml_documents(path)):
            if doc is None:
                continue
            out.append(_prepare(doc, package, yaml_id, path, index))
    return out


def _prepare(doc: Any, package: str, yaml_id: str, path: Path, index: int) -> SpecDocument:
    if not isinstance(doc, dict):
        raise DefinitionError(f"{path}: document {index + 1}: expected a mapping, got {doc!r}")
    sd = SpecDocument(dict(doc), package, yaml_id, path, index)
    unknown = set(doc) - set(_DOC_FIELDS)
    if unknown:
        raise sd.error(f"unknown field(s) {_names(unknown)}", f"a spec has {', '.join(_DOC_FIELDS)}")
    if not sd.is_partial and not isinstance(doc.get("name"), str):
        raise sd.error("no name (a document without id: is a specification and needs name:)")
    threshold = doc.get("threshold", {})
    if not isinstance(threshold, dict):
        raise sd.error(f"threshold must be a mapping of value, unit, operator, not {threshold!r}")
    unknown = set(threshold) - set(_THRESHOLD_FIELDS)
    if unknown:
        raise sd.error(f"unknown threshold field(s) {_names(unknown)}", "a threshold has value, unit, operator")
    if "operator" in threshold and threshold["operator"] not in OPERATORS:
        raise sd.error(f"unknown operator {threshold['operator']!r}", f"use one of {' '.join(OPERATORS)}")
    if "unit" in threshold:
        try:
            parse_unit(threshold["unit"])
        except DefinitionError as exc:
            raise sd.error(exc.message, exc.hint) from None
    for key in ("metadata_query", "provenance_query"):
        if not isinstance(doc.get(key, {}), dict):
            raise sd.error(f"{key} must be a mapping of key: value, not {doc[key]!r}")
    sd.doc["tags"] = list(as_tags(doc.get("tags"), f"{path}: {sd.label}"))
    bases = doc.get("base", [])
    for base in [bases] if isinstance(bases, str) else bases if isinstance(bases, list) else [None]:
        if not isinstance(base, str):
            raise sd.error(f"base must be a name or a list of names, not {bases!r}")
        if "#" in base:
            try:
                sd.bases.append(_partial_name(base, package, yaml_id))
            except ValueError:
                hint = "write '#id', 'path#id' or 'package:path#id'"
                raise sd.error(f"base {base!r} is not a partial name", hint) from None
        else:
            name = _spec_name(base, package)
            if name is None:
                raise sd.error(
                    f"base {base!r} is neither a partial ('#id') nor a spec name ('metric.spec')",
                    "write '#id' for a partial, 'PA1.design_gri' or 'validate_drp.PA1.design_gri' for a spec",
                )
            sd.bases.append(name)
    sd.doc.pop("base", None)
    return sd


def _merge(base: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """lsst.verify's merge: mappings key by key, lists concatenated, other values replaced."""
    out = deepcopy(base)
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + list(value)
        else:
            out[key] = deepcopy(value)
    return out


def resolve_specs(documents: Iterable[SpecDocument]) -> list[Specification]:
    """Resolve inheritance across all documents (any file, any package) and build the specifications.

    Documents are resolved in rounds, like lsst.verify: a document whose bases are all resolved is
    merged; the others wait for the next round. A round without progress means a base that does
    not exist (or a cycle), which is reported for the first such document.

    Raises
    ------
    DefinitionError
        Naming the file and spec: a base that does not resolve, a missing threshold value, unit or
        operator, no metric, a value that is not a number, a spec or partial defined twice.
    """
    pending = list(documents)
    partials: dict[str, tuple[dict[str, Any], SpecDocument]] = {}
    specs: dict[str, tuple[dict[str, Any], SpecDocument]] = {}
    seen_ids: dict[str, SpecDocument] = {}
    for sd in pending:
        if sd.is_partial:
            if sd.partial_id in seen_ids:
                raise sd.error(f"is defined twice (also document {seen_ids[sd.partial_id].index + 1})")
            seen_ids[sd.partial_id] = sd
    while pending:
        waiting: list[SpecDocument] = []
        for sd in pending:
            missing = [b for b in sd.bases if (b not in partials if "#" in b else b not in specs)]
            if missing:
                waiting.append(sd)
                continue
            built: dict[str, Any] = {}
            for base in sd.bases:
                if "#" in base:
                    built = _merge(built, partials[base][0])
                else:
                    base_doc = specs[base][0]
                    built = _merge(built, base_doc)
                    built["metric"] = base_doc["metric"]
            own = {k: v for k, v in sd.doc.items() if k not in ("id", "name")}
            if "metric" in own:
                own["metric"] = _metric_name(str(own["metric"]), sd.package)
            built = _merge(built, own)
            if sd.is_partial:
                partials[sd.partial_id] = (built, sd)
                continue
            name = _spec_name(sd.doc["name"], sd.package, built.get("metric"))
            if name is None:
                raise sd.error("no metric: name one with metric: or inherit it from a base spec")
            if "metric" not in built:
                built["metric"] = name.rsplit(".", 1)[0]
            if name in specs:
                raise sd.error(f"{name} is defined twice (also in {specs[name][1].source})", "rename one of them")
            specs[name] = (built, sd)
        if len(waiting) == len(pending):
            sd = waiting[0]
            missing = [b for b in sd.bases if (b not in partials if "#" in b else b not in specs)]
            raise sd.error(
                f"base {', '.join(missing)} does not resolve (no such partial or spec, or a cycle)",
                "check the spelling; partials are named path#id, specs metric.name",
            )
        pending = waiting
    out = [_build(name, built, sd) for name, (built, sd) in specs.items()]
    log.debug("resolved %d specifications from %d partials", len(out), len(partials))
    return out


def _build(name: str, doc: dict[str, Any], sd: SpecDocument) -> Specification:
    where = f"{sd.source}: spec {name}"
    threshold = doc.get("threshold")
    if not threshold:
        raise DefinitionError(f"{where}: no threshold", "add threshold: {value: ..., unit: ..., operator: ...}")
    for key in ("value", "unit", "operator"):
        if key not in threshold:
            raise DefinitionError(
                f"{where}: threshold has no {key} (not here nor in its bases)", f"add threshold: {key}:"
            )
    try:
        value = float(threshold["value"])  # YAML 1.1 reads 1e-6 as a string
    except (TypeError, ValueError):
        raise DefinitionError(f"{where}: threshold value {threshold['value']!r} is not a number") from None
    ref = threshold.get("reference")
    return Specification(
        name=name,
        metric=doc["metric"],
        operator=str(threshold["operator"]),
        threshold=u.Quantity(value, parse_unit(threshold["unit"])),
        tags=tuple(dict.fromkeys(doc.get("tags", []))),
        metadata_query=dict(doc.get("metadata_query", {})),
        provenance_query=dict(doc.get("provenance_query", {})),
        reference=Reference(**{k: None if ref.get(k) is None else str(ref[k]) for k in ("doc", "url", "page")})
        if isinstance(ref, dict)
        else None,
        source=sd.source,
    )


def load_specs_dir(specs_root: Path | str) -> list[Specification]:
    """Load every package folder under a ``specs/`` folder and resolve them together."""
    specs_root = Path(specs_root)
    documents: list[SpecDocument] = []
    for package_dir in sorted(p for p in specs_root.iterdir() if p.is_dir()):
        documents.extend(read_spec_dir(package_dir))
    return resolve_specs(documents)
