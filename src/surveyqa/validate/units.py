"""Comparing a file's column unit with the schema's, through astropy.

Felis writes IVOA units (``pixel**2``, ``nJy``, ``deg``), astropy tables write their own
spellings into the Parquet metadata (``pix2``); the two agree when they are the same unit,
scale included: ``arcsec`` where the schema says ``deg`` is a factor 3600 wrong, not a synonym.
"""

from __future__ import annotations

from functools import lru_cache

import astropy.units as u

from surveyqa.errors import DefinitionError
from surveyqa.metrics.units import parse_unit

__all__ = ["same_unit", "compare_units"]


@lru_cache(maxsize=512)
def _parse(text: str | None) -> u.UnitBase | None:
    if text is None or not str(text).strip():
        return None
    try:
        return parse_unit(text)
    except DefinitionError:
        return None


def same_unit(a: str | None, b: str | None) -> bool:
    """Whether two unit strings are the same unit, scale included (two empty ones are)."""
    sa, sb = str(a or "").strip(), str(b or "").strip()
    ua, ub = _parse(sa), _parse(sb)
    if ua is None or ub is None:
        return sa == sb
    try:
        return bool(abs(ua.to(ub) - 1.0) < 1e-12)
    except u.UnitConversionError:
        return False


def compare_units(schema: str | None, data: str | None) -> tuple[str, str]:
    """``(verdict, detail)``: ``ok``, ``missing`` (one side has no unit) or ``different``."""
    s, d = (schema or "").strip(), (data or "").strip()
    if not s and not d:
        return "ok", "no unit"
    if not s or not d:
        return "missing", f"schema {s or 'none'}, file {d or 'none'}"
    if _parse(s) is None or _parse(d) is None:
        bad = s if _parse(s) is None else d
        return ("ok" if s == d else "different"), f"unit {bad!r} is not one astropy reads"
    if same_unit(s, d):
        return "ok", s
    return "different", f"schema {s}, file {d}"
