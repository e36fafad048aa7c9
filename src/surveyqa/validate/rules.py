"""Rules: Rubin's conventions (``data/conventions.yaml``) and a user's ``--rules`` file, one format.

The schema says what a column is; the rules say what follows from that (a declination lies in
[-90, 90]), which dataset type holds which table, which rows Rubin leaves NaN on purpose, and
what a user adds or tightens for one column. Both files are read into the same pydantic model
and merged, the user's last, so a user's entry for a column overrides the derived one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from surveyqa.errors import DefinitionError

__all__ = ["Range", "Match", "DeriveRule", "ColumnRule", "Reference", "TableRule", "SkyRows", "Rules",
           "load_rules", "CONVENTIONS"]

CONVENTIONS = Path(__file__).resolve().parent / "data" / "conventions.yaml"
Severity = Literal["error", "warning"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """Bounds on the finite values of a column (in the column's unit)."""

    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    def describe(self) -> str:
        lo = "" if self.min is None else f"{'>=' if self.min_inclusive else '>'} {self.min:g}"
        hi = "" if self.max is None else f"{'<=' if self.max_inclusive else '<'} {self.max:g}"
        return " and ".join(x for x in (lo, hi) if x) or "any"


class Match(_Strict):
    """Which columns a derived rule applies to: every given key must match."""

    ucd: list[str] | None = None
    name: str | None = None
    unit: str | None = None
    datatype: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _regex(cls, value):
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def matches(self, name: str, ucd: str | None, unit: str | None, datatype: str) -> bool:
        if self.ucd is not None and not all(w in (ucd or "").split(";") for w in self.ucd):
            return False
        if self.name is not None and not re.fullmatch(self.name, name):
            return False
        if self.unit is not None and not _same_unit(self.unit, unit):
            return False
        return self.datatype is None or datatype in self.datatype


def _same_unit(a: str | None, b: str | None) -> bool:
    from surveyqa.validate.units import same_unit

    return same_unit(a, b)


class DeriveRule(_Strict):
    """A check that follows from a column's meaning (UCD, unit, name, type)."""

    name: str
    description: str = ""
    when: list[Match] = Field(min_length=1)
    range: Range | None = None
    severity: Severity = "error"

    def applies(self, name: str, ucd: str | None, unit: str | None, datatype: str) -> bool:
        return any(m.matches(name, ucd, unit, datatype) for m in self.when)


class ColumnRule(_Strict):
    """A user's checks for one column: a range, how many bad rows are tolerated, whether NaN is allowed."""

    range: Range | None = None
    max_bad_fraction: float | None = Field(None, ge=0, le=1)
    allow_nan: bool | None = None
    severity: Severity | None = None
    required: bool | None = None


class Reference(_Strict):
    """Each row's ``columns`` must name a row of ``table`` by its ``referenced`` columns."""

    columns: list[str] = Field(min_length=1)
    table: str
    referenced: list[str] = Field(min_length=1)


class TableRule(_Strict):
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    references: list[Reference] = Field(default_factory=list)
    unique_over: str | None = None
    unknown_columns: Severity | None = None
    missing_columns: Severity | None = None


class SkyRows(_Strict):
    flags: list[str] = Field(default_factory=list)
    except_: str | None = Field(None, alias="except")


class Rules(_Strict):
    """Everything the checks are derived with, besides the schema."""

    datasets: dict[str, str] = Field(default_factory=dict)
    sky_rows: SkyRows = SkyRows()
    tables: dict[str, TableRule] = Field(default_factory=dict)
    data_id_columns: dict[str, list[str]] = Field(default_factory=dict)
    derive: list[DeriveRule] = Field(default_factory=list)
    max_bad_fraction: float = Field(0.0, ge=0, le=1)

    def merged(self, other: "Rules", explicit: set[str]) -> "Rules":
        """These rules with ``other``'s on top (``explicit``: the top-level keys ``other``'s file set)."""
        tables = dict(self.tables)
        for name, rule in other.tables.items():
            mine = tables.get(name, TableRule())
            tables[name] = TableRule(
                columns={**mine.columns, **rule.columns}, references=[*mine.references, *rule.references],
                unique_over=rule.unique_over or mine.unique_over,
                unknown_columns=rule.unknown_columns or mine.unknown_columns,
                missing_columns=rule.missing_columns or mine.missing_columns)
        names = {d.name for d in other.derive}
        return Rules(datasets={**self.datasets, **other.datasets},
                     sky_rows=other.sky_rows if "sky_rows" in explicit else self.sky_rows, tables=tables,
                     data_id_columns={**self.data_id_columns, **other.data_id_columns},
                     derive=[d for d in self.derive if d.name not in names] + list(other.derive),
                     max_bad_fraction=other.max_bad_fraction if "max_bad_fraction" in explicit
                     else self.max_bad_fraction)

    def table(self, name: str) -> TableRule:
        return self.tables.get(name, TableRule())


def _read(path: Path) -> tuple[Rules, set[str]]:
    if not path.is_file():
        raise DefinitionError(f"rules file {path} does not exist", "give a YAML file (docs/validate.md)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DefinitionError(f"rules file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"rules file {path} must hold a mapping (datasets, tables, derive, ...)")
    try:
        return Rules.model_validate(raw), set(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise DefinitionError(f"rules file {path}: {where}: {first.get('msg')}",
                              "see docs/validate.md for the format") from None


def load_rules(user: str | Path | None = None) -> Rules:
    """Rubin's conventions, with the rules of ``user`` (a YAML file) on top."""
    base, _ = _read(CONVENTIONS)
    if user is None:
        return base
    theirs, keys = _read(Path(user))
    return base.merged(theirs, keys)
