"""Which checks each column gets, derived from its schema entry, the file's Arrow schema and the rules.

A column the schema describes always gets a presence check, and a present one its type and unit
checks (read from the Parquet footer, no data); row checks follow from its meaning: non-nullable
columns have no nulls, floating-point columns no NaN or infinity that no flag explains (Rubin's
flags by `surveyqa.metrics.library.health.explaining_flags`, the one place that rule lives, plus
sky rows), and the ranges the derived rules give. Keys become uniqueness and reference checks
across every file of a dataset type. Nothing here reads data: `scan` runs what this plans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from surveyqa.metrics.library.health import explaining_flags
from surveyqa.validate.rules import Range, Reference, Rules
from surveyqa.validate.schema import ARROW_KINDS, TableSpec
from surveyqa.validate.units import compare_units

__all__ = ["Check", "Outcome", "TablePlan", "plan_table", "ROW_KINDS", "arrow_kind"]

#: Checks evaluated on every row by a column scan; the others read only the footer or span files.
ROW_KINDS = ("null", "nan", "inf", "range", "length", "data_id")


@dataclass(frozen=True)
class Check:
    """One check of one column (or key) of one table.

    ``kind`` is presence, type, unit, null, nan, inf, range, length, data_id, unique or reference;
    ``name`` is what reports call it (``nan``, ``ra_range``, ``unique``, ...); a check passes when
    at most ``max_bad_fraction`` of the rows fail it. ``explained_by``: flag columns whose True
    value makes a NaN or infinity the pipeline's own. ``value``: the data ID key (data_id), the
    maximum length (length) or the `Reference` (reference).
    """

    column: str
    kind: str
    name: str
    description: str
    severity: str = "error"
    origin: str = "schema"
    range: Range | None = None
    max_bad_fraction: float = 0.0
    explained_by: tuple[str, ...] = ()
    value: object = field(default=None, compare=False)
    columns: tuple[str, ...] = ()

    @property
    def row_level(self) -> bool:
        return self.kind in ROW_KINDS


@dataclass(frozen=True)
class Outcome:
    """A check decided from the footer alone: passed or not, and why."""

    check: Check
    passed: bool
    detail: str = ""


@dataclass
class TablePlan:
    """What one file of a table gets checked for."""

    table: str
    checks: list[Check]
    outcomes: list[Outcome]
    unknown: list[str]
    missing: list[str]

    @property
    def row_checks(self) -> list[Check]:
        return [c for c in self.checks if c.row_level]

    @property
    def key_checks(self) -> list[Check]:
        return [c for c in self.checks if c.kind in ("unique", "reference")]


def arrow_kind(t: pa.DataType) -> tuple[str, int]:
    """(kind, bits) of an Arrow type in `ARROW_KINDS`' terms."""
    if pa.types.is_dictionary(t):
        return arrow_kind(t.value_type)
    if pa.types.is_boolean(t):
        return "b", 1
    if pa.types.is_integer(t):
        return "i", t.bit_width
    if pa.types.is_floating(t):
        return "f", t.bit_width
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "s", 0
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "t", 64
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "x", 0
    return "?", 0


def _type_outcome(check: Check, datatype: str, t: pa.DataType) -> Outcome:
    want, bits = ARROW_KINDS.get(datatype, ("?", 0))
    have, have_bits = arrow_kind(t)
    if have != want:
        return Outcome(check, False, f"{t} in the file, schema says {datatype}")
    if bits and have_bits > bits:  # wider than the schema: an ingest narrows it, no value is wrong
        warn = Check(check.column, "type", "type_width", "no wider than the schema's type", "warning")
        return Outcome(warn, False, f"{t} in the file, schema says {datatype} ({bits} bits)")
    return Outcome(check, True, str(t))


def _file_unit(f: pa.Field) -> str | None:
    meta = f.metadata or {}
    raw = meta.get(b"unit")
    return raw.decode() if raw else None


def plan_table(table: TableSpec, schema: pa.Schema, rules: Rules, data_id_keys: tuple[str, ...] = ()) -> TablePlan:
    """The checks of one file holding schema table ``table``, whose Arrow schema is ``schema``.

    Parameters
    ----------
    data_id_keys : tuple of str
        The data ID keys of the dataset (``("instrument", "visit")``): the columns
        ``rules.data_id_columns`` names for them must equal the data ID.
    """
    present = {f.name: f for f in schema}
    trule = rules.table(table.name)
    checks: list[Check] = []
    outcomes: list[Outcome] = []
    missing = [name for name in table.columns if name not in present]
    unknown = [name for name in present if name not in table.columns]
    flags = {n for n, f in present.items() if pa.types.is_boolean(f.type)}
    sky = [f for f in rules.sky_rows.flags if f in flags]
    sky_except = re.compile(rules.sky_rows.except_) if rules.sky_rows.except_ else None

    mistyped: set[str] = set()
    for name, spec in table.columns.items():
        crule = trule.columns.get(name)
        required = (crule and crule.required) or trule.missing_columns == "error"
        presence = Check(name, "presence", "presence", "the column is in the file",
                         "error" if required else "warning")
        if name not in present:
            outcomes.append(Outcome(presence, False, f"no column {name} ({spec.datatype}) in the file"))
            continue
        outcomes.append(Outcome(presence, True))
        f = present[name]
        typed = _type_outcome(Check(name, "type", "type", f"stored as {spec.datatype}"), spec.datatype, f.type)
        outcomes.append(typed)
        verdict, detail = compare_units(spec.unit, _file_unit(f))
        if spec.unit or _file_unit(f):
            unit = Check(name, "unit", "unit", f"unit {spec.unit or 'none'}",
                         "error" if verdict == "different" else "warning")
            outcomes.append(Outcome(unit, verdict == "ok", detail))
        kind = arrow_kind(f.type)[0]
        tolerance = crule.max_bad_fraction if crule and crule.max_bad_fraction is not None else rules.max_bad_fraction
        severity = (crule.severity if crule and crule.severity else None) or "error"
        if not spec.nullable:
            checks.append(Check(name, "null", "null", "not null (the schema says NOT NULL)", severity,
                                max_bad_fraction=tolerance))
        if not typed.passed and typed.check.severity == "error":
            mistyped.add(name)
            continue  # values of another kind than the schema's: the type check has failed them all
        if kind == "f" and not (crule and crule.allow_nan):
            explained = [x for x in explaining_flags(name) if x in flags]
            if not (sky_except and sky_except.fullmatch(name)):
                explained += sky
            explained = tuple(dict.fromkeys(explained))
            why = f" unless {' or '.join(explained)}" if explained else ""
            checks.append(Check(name, "nan", "nan", f"no NaN{why}", severity, "conventions",
                                max_bad_fraction=tolerance, explained_by=explained))
            checks.append(Check(name, "inf", "inf", f"no infinity{why}", severity, "conventions",
                                max_bad_fraction=tolerance, explained_by=explained))
        if kind in ("f", "i"):
            for rule in rules.derive:
                if rule.range is not None and rule.applies(name, spec.ucd, spec.unit, spec.datatype):
                    checks.append(Check(name, "range", rule.name, rule.description or rule.range.describe(),
                                        rule.severity if not (crule and crule.severity) else severity,
                                        f"conventions:{rule.name}", rule.range, tolerance))
            if crule and crule.range is not None:
                checks.append(Check(name, "range", "rules_range", crule.range.describe(), severity, "rules",
                                    crule.range, tolerance))
        if kind == "s" and spec.length:
            checks.append(Check(name, "length", "length", f"at most {spec.length} characters", severity,
                                max_bad_fraction=tolerance, value=spec.length))
        for key in data_id_keys:
            if name in rules.data_id_columns.get(key, ()):
                checks.append(Check(name, "data_id", "data_id", f"equals the data ID's {key}", severity, "conventions",
                                    value=key))

    for name in unknown:
        if trule.unknown_columns:
            outcomes.append(Outcome(Check(name, "presence", "unknown", "a column the schema describes",
                                          trule.unknown_columns, "rules"), False, f"{name} is not in {table.name}"))

    primary = trule.unique_over if trule.unique_over in flags else None
    usable = set(present) - mistyped
    for key in table.unique:
        if all(k in usable for k in key):
            over = f" among {primary} rows" if primary else ""
            checks.append(Check(",".join(key), "unique", "unique", f"unique{over}", value=primary, columns=key))
    refs = [Reference(columns=list(fk.columns), table=fk.table, referenced=list(fk.referenced))
            for fk in table.foreign_keys] + list(trule.references)
    for ref in refs:
        if all(k in usable for k in ref.columns):
            checks.append(Check(",".join(ref.columns), "reference", "reference",
                                f"names a row of {ref.table} ({', '.join(ref.referenced)})",
                                origin="schema", value=ref, columns=tuple(ref.columns)))
    return TablePlan(table.name, checks, outcomes, unknown, missing)
