"""Unit strings as Rubin writes them resolve to the astropy units they mean."""

from __future__ import annotations

import astropy.units as u
import pytest

from surveyqa.errors import DefinitionError
from surveyqa.metrics.units import parse_unit, unit_to_string


@pytest.mark.parametrize(
    "text,expected",
    [
        ("mmag", u.mmag),
        ("marcsec", u.milliarcsecond),
        ("milliarcsecond", u.milliarcsecond),
        ("%", u.percent),
        ("", u.dimensionless_unscaled),
        (None, u.dimensionless_unscaled),
        ("nJy", u.nJy),
        ("arcsec", u.arcsec),
        ("s", u.s),
        ("pixel", u.pix),
    ],
)
def test_rubin_unit_strings(text, expected) -> None:
    assert parse_unit(text) == expected


def test_percent_converts_to_fraction() -> None:
    assert (5 * parse_unit("%")).to_value(u.dimensionless_unscaled) == pytest.approx(0.05)


def test_unknown_unit_names_the_unit() -> None:
    with pytest.raises(DefinitionError, match="furlongs_per_blip"):
        parse_unit("furlongs_per_blip")


@pytest.mark.parametrize("unit", [u.mmag, u.percent, u.dimensionless_unscaled, u.milliarcsecond, u.nJy])
def test_string_round_trip(unit) -> None:
    assert parse_unit(unit_to_string(unit)) == unit
