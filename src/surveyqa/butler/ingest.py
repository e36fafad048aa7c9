"""Ingest a table of metric values computed elsewhere (e.g. HSC PDR2's per-tract validate_drp
values) into a Butler repository, as `qaMetricValues_tract` datasets plus a `qaManifest`, so the
readers and the dashboard treat it like a QA run.

The table is tidy (``metric``, ``value``[, ``unit``] and data ID columns) or wide (one column per
metric, with an optional ``<column>_unit`` column), indexed or keyed by ``tract`` and a band or
filter. Wide column names may be spec names (``validate_drp.PA1.design_gri``): the metric is
the longest prefix that is a known metric.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from surveyqa.errors import SurveyQAError

__all__ = ["read_metric_table", "ingest_metric_table", "HSC_BANDS"]

log = logging.getLogger(__name__)

#: HSC filter names -> band.
HSC_BANDS = {"HSC-G": "g", "HSC-R": "r", "HSC-R2": "r", "HSC-I": "i", "HSC-I2": "i", "HSC-Z": "z", "HSC-Y": "y"}


def _band(value: object) -> str:
    text = str(value)
    return HSC_BANDS.get(text, text)


def read_metric_table(path: str | Path) -> pd.DataFrame:
    """Read a metric table (Parquet or CSV) into tidy rows: metric, value, unit, tract, band[, filter]."""
    from surveyqa.metrics.registry import load_default_registry

    path = Path(path)
    if not path.is_file():
        raise SurveyQAError(f"{path} does not exist", "give a Parquet or CSV file of metric values")
    df = pd.read_parquet(path) if path.suffix in (".parq", ".parquet", ".pq") else pd.read_csv(path)
    if isinstance(df.index, pd.MultiIndex) or df.index.name is not None:
        names = [n or ("filter" if i == 0 else "tract") for i, n in enumerate(df.index.names)]
        if len(names) == 2 and not any(str(n) == "tract" for n in df.index.names):
            # An unnamed (filter, tract) index, as in the HSC PDR2 dashboard table.
            first = df.index.get_level_values(0)
            names = ["tract", "filter"] if np.issubdtype(np.asarray(first).dtype, np.integer) else ["filter", "tract"]
        df.index = df.index.set_names(names)
        df = df.reset_index()
    if "tract" not in df.columns:
        raise SurveyQAError(f"{path} has no tract column or index level", f"its columns: {', '.join(map(str, df.columns[:12]))}")
    band_col = next((c for c in ("band", "filter", "filter_name") if c in df.columns), None)
    ids = ["tract"] + ([band_col] if band_col else [])
    if {"metric", "value"} <= set(df.columns):
        tidy = df[ids + ["metric", "value"] + (["unit"] if "unit" in df.columns else [])].copy()
    else:
        known = set(load_default_registry().metrics)
        parts = []
        for col in df.columns:
            if col in ids or str(col).endswith("_unit") or not np.issubdtype(df[col].dtype, np.number):
                continue
            metric = _metric_of(str(col), known)
            part = df[ids].copy()
            part["metric"] = metric
            part["value"] = df[col].astype(float)
            part["unit"] = df[f"{col}_unit"] if f"{col}_unit" in df.columns else ""
            group = re.search(r"_(gri|uzy)(\.|$)", str(col))
            if group and band_col:  # a band-group column (PA1.design_gri) holds values for its bands only
                part = part[part[band_col].map(_band).isin(list(group.group(1)))]
            parts.append(part)
        if not parts:
            raise SurveyQAError(f"{path} has no numeric metric columns")
        tidy = pd.concat(parts, ignore_index=True)
    if "unit" not in tidy.columns:
        tidy["unit"] = ""
    tidy["unit"] = tidy["unit"].fillna("").astype(str).replace({"percent": "%", "None": ""})
    tidy["band"] = tidy[band_col].map(_band) if band_col else None
    if band_col and band_col != "band":
        tidy = tidy.rename(columns={band_col: "filter"})
    tidy["tract"] = tidy["tract"].astype(np.int64)
    return tidy.dropna(subset=["value"]).reset_index(drop=True)


def _metric_of(column: str, known: set[str]) -> str:
    parts = column.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in known:
            return ".".join(parts[:k])
    return column


def _skymap_tracts(csv: Path, tracts: set[int]) -> dict[int, tuple[float, float, float, float]]:
    """(ra_min, ra_max, dec_min, dec_max) of tracts from a skymap CSV (id or first column, x0, x1, y0, y1)."""
    sky = pd.read_csv(csv)
    id_col = "tract" if "tract" in sky.columns else sky.columns[0]
    sky = sky[sky[id_col].isin(tracts)]
    missing = tracts - set(sky[id_col].astype(int))
    if missing:
        raise SurveyQAError(f"{len(missing)} tract(s) of the table are not in {csv}: {sorted(missing)[:5]}")
    return {int(t): (min(a, b), max(a, b), min(c, d), max(c, d))
            for t, a, b, c, d in zip(sky[id_col], sky["x0"], sky["x1"], sky["y0"], sky["y1"])}


def ingest_metric_table(repo: str | Path, table: str | Path, collection: str, skymap_csv: str | Path | None = None,
                        skymap: str = "hsc_rings_v1", instrument: str | None = "HSC") -> int:
    """Write a metric table into ``repo`` (created, SQLite, if absent) under RUN ``collection``.

    Everything is read and checked before anything is written. Returns the number of values.
    """
    from surveyqa.butler.repo import create_repo, open_repo, register_dataset_types
    from surveyqa.sim.geometry import box_polygon
    from surveyqa.tasks.manifest import build_manifest
    from surveyqa.tasks.values import attach_specs, to_metric_values

    tidy = read_metric_table(table)
    tracts = set(tidy["tract"].tolist())
    boxes = _skymap_tracts(Path(skymap_csv), tracts) if skymap_csv else None
    repo = Path(repo)
    if (repo / "butler.yaml").exists():
        butler = open_repo(repo, writeable=True)
        if collection in set(butler.collections.query("*")):
            raise SurveyQAError(f"collection {collection!r} already exists in {repo}", "choose a new name")
    else:
        if not re.fullmatch(r"[\w./-]+", collection):
            raise SurveyQAError(f"bad collection name {collection!r}")
        butler = create_repo(repo)
    register_dataset_types(butler, ["qaMetricValues_tract", "qaManifest"])
    known_skymaps = {r.name for r in butler.query_dimension_records("skymap", explain=False)}
    if skymap not in known_skymaps:
        butler.registry.insertDimensionData("skymap", {"name": skymap, "hash": skymap.encode(), "tract_max": 10**6,
                                                       "patch_nx_max": 9, "patch_ny_max": 9})
    existing = {r.id for r in butler.query_dimension_records("tract", where="skymap = s", bind={"s": skymap},
                                                             explain=False)}
    new = sorted(tracts - existing)
    if new:
        if boxes is None:
            raise SurveyQAError(f"tracts {new[:5]} are not in the repository's skymap {skymap!r}",
                                "give --skymap-csv with their corners")
        butler.registry.insertDimensionData("tract", *[{"skymap": skymap, "id": t, "region": box_polygon(*boxes[t])}
                                                       for t in new])
    butler.registry.registerRun(collection)
    tables = []
    for tract, group in tidy.groupby("tract"):
        values = pa.table({"metric": group["metric"].astype(str).tolist(), "value": group["value"].to_numpy(float),
                           "unit": group["unit"].tolist(), "band": group["band"].tolist(),
                           "physical_filter": (group["filter"].astype(str).tolist() if "filter" in group
                                               else pa.nulls(len(group), pa.string())),
                           "n": pa.nulls(len(group), pa.int64()), "selection": ["as ingested"] * len(group),
                           "aggregation": ["as ingested"] * len(group)})
        values = attach_specs(to_metric_values(values, "tract", {"tract": int(tract)}), instrument)
        butler.put(values, "qaMetricValues_tract", {"skymap": skymap, "tract": int(tract)}, run=collection)
        tables.append(values)
    manifest = build_manifest(collection, [str(table)], tables, detector_metrics=False)
    butler.put(manifest, "qaManifest", {}, run=collection)
    return len(tidy)
