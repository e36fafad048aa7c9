"""What a figure or table of the dashboard draws, computed once for the page and its JSON twin.

The page and ``/api/...json`` must show the same numbers: the same histogram bins, the same
worst rows, the same colour range. These pure numpy / pandas functions (no Bokeh, no Panel) are
called by the figures (`plots`, `drill_view`) and by the JSON serialization (`model.DrillView`).

Degenerate data is drawn as what it is: values all (nearly) equal are one value, a histogram
bar in the middle of its axis, a colour range around it (not a bar from 0.1280478046 to
0.1280478054); integer ids stay integers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["HISTOGRAM_BINS", "WORST_ROWS", "ROW_KEYS", "ROW_COLUMNS", "histogram_data", "value_range",
           "constant_value", "worst_rows"]

#: Bins of every histogram (page and JSON).
HISTOGRAM_BINS = 40
#: Rows listed under a view, worst first (page and JSON).
WORST_ROWS = 200
#: Data-ID keys of the listed rows.
ROW_KEYS = ["tract", "patch", "visit", "detector"]
#: Columns of the worst-rows table (generic names; the row table's own names are in its title).
ROW_COLUMNS = ["id", "tract", "patch", "visit", "detector", "band", "value", "mag", "ra", "dec"]


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def constant_value(values) -> float | None:
    """The value, when every finite value is (to 1e-9 relative) the same one; None otherwise."""
    finite = _finite(values)
    if not len(finite):
        return None
    low, high = float(finite.min()), float(finite.max())
    return float(np.median(finite)) if high - low <= 1e-9 * max(abs(low), abs(high), 1e-300) else None


def _pad(value: float) -> float:
    """Half-width of the axis or colour range drawn around one value: 5 % of it, 1 for zero."""
    return 0.05 * abs(value) if value != 0 else 1.0


def value_range(values) -> tuple[float, float]:
    """(low, high) of a colour bar: the finite values' extent, or a range around their one value."""
    finite = _finite(values)
    if not len(finite):
        return 0.0, 1.0
    one = constant_value(finite)
    if one is not None:
        return one - _pad(one), one + _pad(one)
    return float(finite.min()), float(finite.max())


def histogram_data(values) -> dict:
    """`HISTOGRAM_BINS`-bin histogram of the finite values; values all equal are one bar in the
    middle of three bins (so the plot is not one full-width bar); ``constant`` then says the value."""
    finite = _finite(values)
    constant = constant_value(finite)
    if not len(finite):
        counts, edges = np.zeros(0, dtype=int), np.zeros(1)
    elif constant is not None:
        width = _pad(constant) / 1.5
        edges = constant + width * np.array([-1.5, -0.5, 0.5, 1.5])
        counts = np.array([0, len(finite), 0])
    else:
        counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    return {"left": edges[:-1], "right": edges[1:], "top": counts, "n": int(len(finite)), "constant": constant}


def worst_rows(rows: pd.DataFrame, columns: dict, limit: int = WORST_ROWS) -> pd.DataFrame:
    """The ``limit`` rows with the largest values, in the columns of `ROW_COLUMNS` (-1/NaN where absent).

    The same columns at every level, so that a step changes the table's rows, not its layout;
    ``attrs["absent"]`` names the columns these rows do not have.
    """
    worst = rows.nlargest(limit, columns["value"]).reset_index(drop=True)
    ids = [c for c in worst.columns if c.endswith("_id") or c in ("objectId", "sourceId", "id")][:1]
    out = pd.DataFrame(index=worst.index)
    out["id"] = worst[ids[0]].astype("int64") if ids else worst.index.to_numpy()
    for key in ROW_KEYS:
        out[key] = worst[key].fillna(-1).astype("int64") if key in worst else -1
    out["band"] = worst["band"].astype(str) if "band" in worst else ""
    for name in ("value", "mag", "ra", "dec"):
        out[name] = worst[columns[name]].astype(float) if columns.get(name) else np.nan
    out.attrs["absent"] = ([k for k in ROW_KEYS if k not in worst] + (["band"] if "band" not in worst else [])
                           + [n for n in ("mag", "ra", "dec") if not columns.get(n)])
    return out
