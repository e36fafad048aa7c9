"""Resolve the unit strings found in lsst.verify YAML and Job JSON to astropy units.

Rubin's definitions use spellings astropy's default parser rejects or reads differently
('%', 'marcsec', empty for dimensionless, 'count'), so every reader of metric definitions,
measurements or submissions goes through `parse_unit` to get one consistent answer.
"""

from __future__ import annotations

import astropy.units as u

from surveyqa.errors import DefinitionError

__all__ = ["parse_unit", "unit_to_string"]

_ALIASES: dict[str, u.UnitBase] = {
    "": u.dimensionless_unscaled,
    "dimensionless": u.dimensionless_unscaled,
    "dimensionless_unscaled": u.dimensionless_unscaled,
    "%": u.percent,
    "percent": u.percent,
    "marcsec": u.milliarcsecond,
    "milliarcsecond": u.milliarcsecond,
    "mas": u.milliarcsecond,
    "arcsec": u.arcsec,
    "arcmin": u.arcmin,
    "mmag": u.mmag,
    "mag": u.mag,
    "count": u.count,
    "ct": u.count,
    "pixel": u.pix,
    "pix": u.pix,
}


def parse_unit(text: str | None) -> u.UnitBase:
    """Return the astropy unit for a unit string as written in lsst.verify files.

    Parameters
    ----------
    text : str or None
        The unit as written (``'mmag'``, ``'marcsec'``, ``'%'``, ``''``, ``'nJy'``, ``'s'``...).
        ``None`` and the empty string mean dimensionless.

    Raises
    ------
    DefinitionError
        If astropy cannot parse the string.
    """
    key = "" if text is None else str(text).strip()
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return u.Unit(key)
    except ValueError:
        pass
    try:
        return u.Unit(key, format="vounit")
    except ValueError as exc:
        raise DefinitionError(
            f"unknown unit {text!r}",
            "use an astropy unit string such as 'mmag', 'milliarcsecond', '%', 'nJy' or '' for dimensionless",
        ) from exc


def unit_to_string(unit: u.UnitBase) -> str:
    """Return the canonical string we store for a unit ('' for dimensionless, '%' for percent)."""
    if unit == u.dimensionless_unscaled:
        return ""
    if unit == u.percent:
        return "%"
    return unit.to_string()
