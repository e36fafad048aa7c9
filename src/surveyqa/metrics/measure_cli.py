"""``surveyqa measure``: compute one metric on a Parquet or FITS table, outside any Butler.

A thin shell over `surveyqa.metrics.engine.measure` and `read_table`: useful to anyone holding a
matched catalog. Values that cannot be computed (too few repeat visits, no bright stars, a
missing column) are errors with the reason, exit code 2.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import click
import numpy as np

from surveyqa.errors import InsufficientDataError, SurveyQAError

__all__ = ["measure", "read_table", "measure_file"]

log = logging.getLogger(__name__)

_FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fits.fz")


def _unpack_flags(table) -> None:
    """Expand an afw-style packed ``flags`` column (names in TFLAGn header keys) into bool columns."""
    if "flags" not in table.colnames or table["flags"].ndim != 2:
        return
    names = {int(k[5:]): v for k, v in table.meta.items() if k.startswith("TFLAG") and k[5:].isdigit()}
    packed = np.asarray(table["flags"])
    for i, name in sorted(names.items()):
        if i - 1 < packed.shape[1] and name not in table.colnames:
            table[name] = packed[:, i - 1]


def _is_parquet(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".parquet") or name.endswith(".parq") or name.endswith(".pq")


def _parquet_file(path: str | Path):
    """The Parquet file for `measure`: it reads only the columns the metric uses (strings as
    dictionaries), the per-object statistics row group by row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return pq.ParquetFile(path, memory_map=True, read_dictionary=strings)


def read_table(path: str | Path):
    """Read a Parquet file (pyarrow.Table) or a FITS table (astropy Table, packed flags expanded).

    Multi-dimensional FITS columns are dropped after the packed ``flags`` column is expanded into
    one boolean column per flag name (``base_PixelFlags_flag_saturatedCenter`` ...).

    Raises
    ------
    SurveyQAError
        If the file does not exist or is neither Parquet nor FITS.
    """
    path = Path(path)
    if not path.is_file():
        raise SurveyQAError(f"no such file: {path}", "give the path of a Parquet or FITS table")
    name = path.name.lower()
    if _is_parquet(path):
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if name.endswith(_FITS_SUFFIXES):
        from astropy.table import Table

        table = Table.read(path)
        _unpack_flags(table)
        multi = [c for c in table.colnames if table[c].ndim > 1]
        if multi:
            table.remove_columns(multi)
        return table
    raise SurveyQAError(f"cannot tell the format of {path.name}",
                        "give a .parquet or .fits (.fits.gz) file")


def _set_band(table, band: str):
    """Keep the rows of one band, or label a single-band table without a band column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(table, pa.Table):
        if "band" in table.column_names:
            kept = table.filter(pc.equal(table["band"], band))
            if kept.num_rows == 0:
                bands = sorted(set(table["band"].to_pylist()))
                raise InsufficientDataError(f"no rows with band {band!r}", f"the table has bands {bands}")
            return kept
        return table.append_column("band", pa.array([band] * table.num_rows))
    if "band" in table.colnames:
        kept = table[np.asarray(table["band"]).astype(str) == band]
        if len(kept) == 0:
            raise InsufficientDataError(f"no rows with band {band!r}",
                                        f"the table has bands {sorted(set(np.asarray(table['band']).astype(str)))}")
        return kept
    table["band"] = band
    return table


def measure_file(metric_name: str, path: str | Path, band: str | None = None, columns: str | None = None) -> dict:
    """Measure one metric on a file; return the JSON-ready result.

    Returns
    -------
    dict
        ``metric``, ``value``, ``unit``, ``n``, ``selection``, ``aggregation``, ``band``, ``table``,
        and ``specs`` (each spec that applies: name, operator, threshold, unit, passed).

    Raises
    ------
    InsufficientDataError
        When the table cannot give the metric (the reason is the engine's note).
    """
    from surveyqa.metrics.engine import measure as run_measure
    from surveyqa.metrics.library import get_metric

    metric = get_metric(metric_name)
    if band is None and _is_parquet(path) and Path(path).is_file():
        table = _parquet_file(path)  # columns read when the metric asks; per-object statistics streamed
    else:
        table = read_table(path)
    if band:
        table = _set_band(table, band)
    result = run_measure(metric, table, columns=columns)
    row = result.values.to_pylist()[0]
    if row["value"] is None or not math.isfinite(row["value"]):
        raise InsufficientDataError(f"cannot compute {metric.name} on {Path(path).name}: {row['note']}",
                                    "check the selection criteria above, or map other columns with --columns")
    out = {"metric": metric.name, "value": row["value"], "unit": row["unit"], "n": row["n"],
           "selection": row["selection"], "aggregation": row["aggregation"], "band": band,
           "table": str(path)}
    out["specs"] = _specs(metric.name, result.quantity(), band)
    return out


def _specs(name: str, value, band: str | None) -> list[dict]:
    """The specs that apply to this value (band as filter_name), when the registry knows the metric."""
    try:
        from surveyqa.metrics.registry import load_default_registry

        registry = load_default_registry()
        if name not in registry:
            return []
        return [r.to_dict() for r in registry.evaluate(name, value, {"filter_name": band} if band else {})]
    except SurveyQAError as exc:  # a spec problem must not hide the measurement
        log.warning("specs of %s not evaluated: %s", name, exc)
        return []


@click.command("measure")
@click.argument("metric")
@click.argument("table", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--band", help="Band of the rows to use; labels a single-band table that has no band column.")
@click.option("--columns", "columns", metavar="MAP",
              help="Map logical column names to the table's: logical=actual[,...] "
                   "(e.g. mag=base_PsfFlux_mag,obj_id=object). See docs/metric-engine.md.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of one line.")
def measure(metric: str, table: Path, band: str | None, columns: str | None, as_json: bool) -> None:
    """Compute METRIC (e.g. PA1, validate_drp.AM1) on a Parquet or FITS TABLE.

    \b
    Example:
        surveyqa measure PA1 data/hsc_ci_matched/matchedCatalogTract_0_r.fits.gz --band r \\
          --columns mag=base_PsfFlux_mag,obj_id=object,extendedness=base_ClassificationExtendedness_value,snr=base_PsfFlux_snr
    """
    out = measure_file(metric, table, band=band, columns=columns)
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{out['metric']} = {out['value']:.4g} {out['unit'] or '(dimensionless)'}  "
               f"(n={out['n']}, selection {out['selection']}, aggregation {out['aggregation']})")
