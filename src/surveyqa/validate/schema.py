"""The Felis schema as the single source of truth: which tables, columns, types, units and keys.

Rubin publishes its data models as Felis YAML (``lsst-sdm-schemas``: ``dp1``, ``dp02_dc2``, ...)
and reads them with ``felis.datamodel.Schema``; this module reads them the same way and turns
each table into a small `TableSpec` the checks are derived from, so that nothing downstream
depends on felis' pydantic model. Which dataset type holds which schema table is a convention
of the pipelines (``sourceTable_visit`` -> ``Source``), kept in ``data/conventions.yaml``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from surveyqa.errors import SurveyQAError

__all__ = ["ColumnSpec", "TableSpec", "ForeignKey", "SchemaSpec", "load_schema", "available_schemas",
           "ARROW_KINDS"]

log = logging.getLogger(__name__)

#: Felis datatype -> (kind, bits) of the Arrow type it is stored as. Kinds: b(ool), i(nt), f(loat), s(tring),
#: t(imestamp), x (binary).
ARROW_KINDS: dict[str, tuple[str, int]] = {
    "boolean": ("b", 1), "byte": ("i", 8), "short": ("i", 16), "int": ("i", 32), "long": ("i", 64),
    "float": ("f", 32), "double": ("f", 64), "char": ("s", 0), "string": ("s", 0), "unicode": ("s", 0),
    "text": ("s", 0), "binary": ("x", 0), "timestamp": ("t", 64),
}


@dataclass(frozen=True)
class ColumnSpec:
    """One column as the schema describes it: Felis ``datatype``, ``ivoa:unit``, ``ivoa:ucd``, ``nullable``,
    ``length`` (characters, for char columns) and ``description``."""

    name: str
    datatype: str
    unit: str | None = None
    ucd: str | None = None
    nullable: bool = True
    length: int | None = None
    description: str = ""


@dataclass(frozen=True)
class ForeignKey:
    """``columns`` of this table must each name a row of ``table`` by its ``referenced`` columns."""

    name: str
    columns: tuple[str, ...]
    table: str
    referenced: tuple[str, ...]


@dataclass
class TableSpec:
    """A schema table: its columns, the keys that must be unique, and its foreign keys."""

    name: str
    columns: dict[str, ColumnSpec]
    unique: list[tuple[str, ...]] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)


@dataclass
class SchemaSpec:
    """A whole schema (``name``, where it came from, its tables by name)."""

    name: str
    source: str
    tables: dict[str, TableSpec]

    def table(self, name: str) -> TableSpec:
        if name not in self.tables:
            raise SurveyQAError(f"schema {self.name} has no table {name!r}",
                                f"its tables are: {', '.join(sorted(self.tables))}")
        return self.tables[name]


def _schemas_dir() -> Path:
    import lsst.sdm.schemas

    return Path(lsst.sdm.schemas.__file__).resolve().parent


def available_schemas() -> list[str]:
    """Names of the schemas ``lsst-sdm-schemas`` ships (``dp1``, ``dp02_dc2``, ...)."""
    return sorted(p.stem for p in _schemas_dir().glob("*.yaml"))


_ALIASES = {"dp02": "dp02_dc2", "dp03": "dp03_10yr"}


def _resolve(name_or_file: str) -> Path:
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SurveyQAError(f"schema file {path} does not exist", "give a Felis YAML file or a schema name "
                                f"({', '.join(available_schemas())})")
        return path.resolve()
    shipped = _schemas_dir() / f"{_ALIASES.get(name_or_file, name_or_file)}.yaml"
    if not shipped.is_file():
        raise SurveyQAError(f"unknown schema {name_or_file!r}",
                            f"choose one lsst-sdm-schemas ships ({', '.join(available_schemas())}) or a Felis YAML file")
    return shipped


def _local(ref: str) -> str:
    """``'#Source.visit'`` -> ``'visit'``; ``'#Visit.visit'`` -> ``'visit'`` (a Felis column ``@id``)."""
    return ref.lstrip("#").split(".", 1)[-1]


def _table_of(ref: str) -> str:
    return ref.lstrip("#").split(".", 1)[0]


def _key(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(_local(v) for v in ([value] if isinstance(value, str) else value))


@lru_cache(maxsize=8)
def _load(path: str) -> SchemaSpec:
    from felis.datamodel import Schema
    from pydantic import ValidationError

    try:
        schema = Schema.from_uri(path, context={"id_generation": True})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise SurveyQAError(f"{path} is not a valid Felis schema: {where}: {first.get('msg')} "
                            f"({exc.error_count()} errors)", "check it with `felis validate`") from None
    except Exception as exc:  # a YAML syntax error or an unreadable file
        raise SurveyQAError(f"cannot read the Felis schema {path}: {str(exc).splitlines()[0]}") from None
    tables = {}
    for t in schema.tables:
        columns = {c.name: ColumnSpec(c.name, str(c.datatype.value), c.ivoa_unit or c.fits_tunit, c.ivoa_ucd,
                                      bool(c.nullable), c.length, " ".join((c.description or "").split()))
                   for c in t.columns}
        unique = [_key(t.primary_key)] if t.primary_key else []
        fks = []
        for con in t.constraints:
            kind = type(con).__name__
            if kind == "UniqueConstraint":
                unique.append(_key(con.columns))
            elif kind == "ForeignKeyConstraint":
                fks.append(ForeignKey(con.name, _key(con.columns), _table_of(con.referenced_columns[0]),
                                      _key(con.referenced_columns)))
        tables[t.name] = TableSpec(t.name, columns, list(dict.fromkeys(k for k in unique if k)), fks)
    log.debug("schema %s: %d tables from %s", schema.name, len(tables), path)
    return SchemaSpec(schema.name, path, tables)


def load_schema(name_or_file: str = "dp1") -> SchemaSpec:
    """Read a Felis schema: a name ``lsst-sdm-schemas`` ships (``dp1``, ``dp02``, ...) or a YAML file.

    Raises a one-line `SurveyQAError` for an unknown name or a file that is not a valid schema.
    """
    return _load(str(_resolve(name_or_file)))
