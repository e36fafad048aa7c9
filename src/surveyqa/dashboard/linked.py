"""Several metrics side by side at one level, one row per data ID: the table behind linked brushing.

DMTN-085 §4.12 asks for cross-filtering: pick several metrics, select the bad points of one and
see where the same data IDs fall in the others (is the detector with the large astrometric
offset also the one with the photometric offset, or the bad seeing?). The page draws one plot
per metric from one shared table, so a box or lasso selection in any plot selects the same rows,
i.e. the same data IDs, in every other. Pure pandas: the page and ``/api/linked.json`` both
build `LinkedView`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from surveyqa.culprits import id_text
from surveyqa.errors import SurveyQAError

from .model import NotFoundError, _records, metric_entry, rollup, unwrap_ra
from .source import DataSource

__all__ = ["LinkedView", "linked_view", "LEVEL_KEYS", "MAX_METRICS", "selection_text", "selection_indices"]

#: The data-ID keys of each level, finest last.
LEVEL_KEYS = {"detector": ["visit", "detector"], "visit": ["visit"], "patch": ["tract", "patch"], "tract": ["tract"]}
#: At most this many metrics side by side (each is a plot).
MAX_METRICS = 6


@dataclass
class LinkedView:
    """One row per data ID of ``level``: its keys, ``ra``/``dec`` (deg, the centre of its
    outline) and, per metric, ``<metric>`` (value) and ``<metric>:status``."""

    metrics: list[dict]
    level: str
    band: str | None
    bands: list[str]
    table: pd.DataFrame

    @property
    def keys(self) -> list[str]:
        return LEVEL_KEYS[self.level]

    def to_json(self) -> dict:
        return {"metrics": [m["name"] for m in self.metrics], "units": {m["name"]: m.get("unit", "") for m in self.metrics},
                "level": self.level, "keys": self.keys, "band": self.band, "bands": self.bands,
                "rows": _records(self.table)}


def linked_view(source: DataSource, metrics: list[str], level: str | None = None,
                band: str | None = None) -> LinkedView:
    """The metrics' stored values at one level, joined by data ID.

    Parameters
    ----------
    metrics : list of str
        Two to `MAX_METRICS` metric names (one is allowed: it is then drawn alone).
    level : str, optional
        ``detector``, ``visit``, ``patch`` or ``tract``; the finest level every metric is stored
        at if omitted.
    band : str, optional
        One band; the first band the metrics have if omitted (a data ID of a band-less metric,
        e.g. a patch's empty-cell fraction, joins every band).
    """
    names = [m for m in dict.fromkeys(metrics) if m]
    if not names:
        raise SurveyQAError("metrics= is empty: nothing to link", "give metrics=A,B (two or more metric names)")
    if len(names) > MAX_METRICS:
        raise SurveyQAError(f"{len(names)} metrics: at most {MAX_METRICS} are drawn side by side",
                            "pick fewer metrics")
    entries = [metric_entry(source, name) for name in names]
    common = [lv for lv in LEVEL_KEYS if all(lv in e.get("levels", []) for e in entries)]
    if level is None:
        if not common:
            levels = "; ".join(f"{e['name']}: {', '.join(e.get('levels', []))}" for e in entries)
            raise SurveyQAError("these metrics share no level to join them at",
                                f"pick metrics stored at the same level ({levels})")
        level = common[0]
    elif level not in LEVEL_KEYS:
        raise SurveyQAError(f"unknown level {level!r}", f"choose from {', '.join(LEVEL_KEYS)}")
    elif level not in common:
        raise SurveyQAError(f"not every metric is stored per {level}",
                            f"levels they share: {', '.join(common) or 'none'}")
    keys = LEVEL_KEYS[level]
    per_metric = {e["name"]: _at_level(source, e, level) for e in entries}
    bands = sorted({b for v in per_metric.values() for b in v["band"].dropna().unique()})
    if band is not None and band not in bands:
        raise SurveyQAError(f"no values in band {band!r} for these metrics", f"bands: {', '.join(bands) or 'none'}")
    band = band if band is not None else (bands[0] if bands else None)
    table = None
    for entry in entries:
        values = per_metric[entry["name"]]
        if band is not None and values["band"].notna().any():
            values = values[values["band"] == band]
        worst = rollup(values, keys, entry.get("higher_is_better"))  # one value per data ID (columns: the worst)
        part = worst[keys + ["value", "status"]].rename(columns={"value": entry["name"],
                                                                 "status": f"{entry['name']}:status"})
        table = part if table is None else table.merge(part, on=keys, how="outer")
    table = table.sort_values(keys, kind="stable").reset_index(drop=True)
    for key in keys:
        table[key] = table[key].astype("int64")
    ra, dec = _centres(source, level, table)
    table.insert(len(keys), "ra", ra)
    table.insert(len(keys) + 1, "dec", dec)
    return LinkedView(entries, level, band, bands, table)


def _at_level(source: DataSource, entry: dict, level: str) -> pd.DataFrame:
    values = source.metric_values(metric=entry["name"])
    values = values[values["level"] == level]
    return values.dropna(subset=LEVEL_KEYS[level])


def _centres(source: DataSource, level: str, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec (deg) of each row's outline centre (NaN where the registry has none)."""
    if level == "detector":
        geometry = source.detectors()
    elif level == "visit":
        geometry = source.visits()
    elif level == "tract":
        geometry = source.tracts()
    else:
        parts = [source.patches(int(t)) for t in table["tract"].unique()]
        geometry = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) \
            else pd.DataFrame()
    keys = LEVEL_KEYS[level]
    if not len(geometry) or "polygon" not in geometry or not set(keys) <= set(geometry.columns):
        return np.full(len(table), np.nan), np.full(len(table), np.nan)
    centres = {}
    for row in geometry[keys + ["polygon"]].itertuples(index=False):
        polygon = row[-1]
        if polygon is None or not len(polygon):
            continue
        vertices = np.asarray(polygon, dtype=float)
        ra = unwrap_ra(vertices[:, 0], float(vertices[0, 0]))
        centres[tuple(int(v) for v in row[:-1])] = (float(ra.mean() % 360.0), float(vertices[:, 1].mean()))
    found = [centres.get(tuple(int(v) for v in ids), (np.nan, np.nan)) for ids in table[keys].itertuples(index=False)]
    return np.array([c[0] for c in found]), np.array([c[1] for c in found])


def selection_text(view: LinkedView, indices) -> str | None:
    """The ``selected=`` value of rows ``indices`` of the view's table: their data IDs, keys joined by '.'."""
    if not len(indices):
        return None
    rows = view.table.iloc[sorted(indices)][view.keys]
    return ",".join(".".join(str(int(v)) for v in ids) for ids in rows.itertuples(index=False))


def selection_indices(view: LinkedView, text: str | None) -> list[int]:
    """The rows of the view's table that a ``selected=`` value names; a `SurveyQAError` if it is malformed
    or names a data ID the view does not have (a shared link from another run, or mistyped)."""
    if not text:
        return []
    where = {tuple(int(v) for v in ids): i for i, ids in enumerate(view.table[view.keys].itertuples(index=False))}
    out = []
    for token in text.split(","):
        parts = token.strip().split(".")
        try:
            ids = tuple(int(p) for p in parts)
        except ValueError:
            ids = ()
        if len(ids) != len(view.keys):
            raise SurveyQAError(f"selected={token[:40]!r} is not a {view.level} data ID",
                                f"give {'.'.join(view.keys)} integers joined by '.', e.g. selected={_example(view)}")
        if ids not in where:
            raise NotFoundError(f"selected: {id_text(dict(zip(view.keys, ids)))} is not among the {len(where)} "
                                f"{view.level} data IDs of these metrics", "select again in the plots")
        out.append(where[ids])
    return sorted(set(out))


def _example(view: LinkedView) -> str:
    first = view.table[view.keys].head(1).itertuples(index=False)
    return next((".".join(str(int(v)) for v in ids) for ids in first), ".".join("1" for _ in view.keys))
