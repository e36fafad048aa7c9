"""Named, configurable selections: which rows a metric's aggregation uses.

A selection is a definition (a name, a human description, the columns it reads and a vectorized
predicate), never a copy of the data: the engine keeps every computed row and stores the boolean
``selected`` column beside it, so the same per-row values can be re-selected later. Selections
combine with ``&``; `Selection.explain` says how many rows pass each criterion, which is how a
metric tells the user *why* nothing was selected (no bright stars, too few repeat visits ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = [
    "Rows", "Selection", "everything", "unresolved", "snr_min", "mag_range", "not_flagged",
    "min_count", "finite", "equal",
]

log = logging.getLogger(__name__)


class Rows(Protocol):
    """What a selection reads: named per-row arrays (computed values first, then table columns)."""

    n_rows: int

    def get(self, name: str) -> np.ndarray: ...

    def can_resolve(self, name: str) -> bool: ...


@dataclass(frozen=True)
class Selection:
    """A named row selection.

    Parameters
    ----------
    name : str
        Short identifier stored with every metric value (``bright_stars``).
    description : str
        What it keeps, in words with numbers and units.
    columns : tuple of str
        Columns (logical or computed) it reads.
    predicate : callable
        ``predicate(rows) -> bool array``; vectorized.
    optional : bool
        If its columns are absent, select everything and log it, instead of failing.
    parts : tuple of Selection
        The criteria of a combined selection (for `explain`).
    """

    name: str
    description: str
    columns: tuple[str, ...]
    predicate: Callable[[Rows], np.ndarray] = field(repr=False)
    optional: bool = False
    parts: tuple["Selection", ...] = ()

    def applies(self, rows: Rows) -> bool:
        """False when an optional selection's columns are missing (then it keeps every row)."""
        return not self.optional or all(rows.can_resolve(c) for c in self.columns)

    def __call__(self, rows: Rows) -> np.ndarray:
        if self.parts:
            mask = np.ones(rows.n_rows, dtype=bool)
            for part in self.parts:
                mask &= part(rows)
            return mask
        if not self.applies(rows):
            log.info("selection %s skipped: column(s) %s absent", self.name, ", ".join(self.columns))
            return np.ones(rows.n_rows, dtype=bool)
        with np.errstate(invalid="ignore"):
            return np.asarray(self.predicate(rows), dtype=bool)

    def __and__(self, other: "Selection") -> "Selection":
        parts = (self.parts or (self,)) + (other.parts or (other,))
        return Selection(
            name=f"{self.name}&{other.name}",
            description="; ".join(p.description for p in parts),
            columns=tuple(dict.fromkeys(c for p in parts for c in p.columns)),
            predicate=lambda rows: np.ones(rows.n_rows, dtype=bool),
            parts=parts,
        )

    def named(self, name: str, description: str | None = None) -> "Selection":
        """The same selection under another name (e.g. ``bright_stars``)."""
        return Selection(name, description or self.description, self.columns, self.predicate,
                         self.optional, self.parts)

    def explain(self, rows: Rows) -> str:
        """How many rows pass each criterion, e.g. ``'unresolved: 812 of 5891; S/N >= 50: 0 of 5891'``."""
        parts = self.parts or (self,)
        out = []
        for p in parts:
            if not all(rows.can_resolve(c) for c in p.columns) and not p.optional:
                out.append(f"{p.description}: not evaluated")
                continue
            if not p.applies(rows):
                out.append(f"{p.description}: not applied (no {', '.join(p.columns)} column)")
                continue
            out.append(f"{p.description}: {int(np.count_nonzero(p(rows)))} of {rows.n_rows}")
        return "; ".join(out)


def everything() -> Selection:
    """Every row."""
    return Selection("all", "all rows", (), lambda rows: np.ones(rows.n_rows, dtype=bool))


def unresolved(max_extendedness: float = 0.5, column: str = "extendedness") -> Selection:
    """Point sources: extendedness below a cut (Rubin's classifier gives 0 for stars, 1 for galaxies)."""
    return Selection("unresolved", f"{column} < {max_extendedness:g} (unresolved)", (column,),
                     lambda rows: rows.get(column) < max_extendedness)


def snr_min(threshold: float, column: str = "snr") -> Selection:
    """Signal-to-noise ratio at least ``threshold``."""
    return Selection(f"snr>={threshold:g}", f"{column} >= {threshold:g}", (column,),
                     lambda rows: rows.get(column) >= threshold)


def mag_range(bright: float, faint: float, column: str = "mag") -> Selection:
    """Magnitude in [bright, faint) (AB mag)."""
    return Selection(f"{bright:g}<=mag<{faint:g}", f"{bright:g} mag <= {column} < {faint:g} mag", (column,),
                     lambda rows: (rows.get(column) >= bright) & (rows.get(column) < faint))


def not_flagged(column: str = "flag") -> Selection:
    """Rows whose flag column is False; skipped (and logged) when the table has no flag column."""
    return Selection("not_flagged", f"not {column}", (column,), lambda rows: ~rows.get(column).astype(bool),
                     optional=True)


def min_count(n: int, column: str = "n_visits") -> Selection:
    """At least ``n`` in an integer column (e.g. repeat visits of an object)."""
    return Selection(f"{column}>={n}", f"{column} >= {n}", (column,), lambda rows: rows.get(column) >= n)


def finite(column: str) -> Selection:
    """Finite (not NaN, not infinite) values."""
    return Selection(f"finite_{column}", f"{column} finite", (column,),
                     lambda rows: np.isfinite(rows.get(column)))


def equal(value: float, column: str, what: str | None = None, optional: bool = False) -> Selection:
    """Rows whose column equals ``value`` (e.g. a per-object fraction of flagged sources of 0:
    no source flagged); ``what`` says it in words. ``optional``: skipped where the column is absent."""
    return Selection(f"{column}=={value:g}", what or f"{column} == {value:g}", (column,),
                     lambda rows: rows.get(column) == value, optional=optional)

