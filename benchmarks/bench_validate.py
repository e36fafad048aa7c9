"""`surveyqa validate`'s column scans against pandera running the same rules on the same Parquet file.

    .venv/bin/python benchmarks/bench_validate.py --rows 10000000          # 10^7 rows x 150 columns
    .venv/bin/python benchmarks/bench_validate.py --rows 1000000 --file t.parquet

The table: ``id`` (unique long), ``ra``, ``dec`` and 49 aperture fluxes, each with its error and
flag (``apNNFlux``, ``apNNFluxErr``, ``apNNFlux_flag``): 150 columns, as a Felis schema written
beside it. The rules, the same on both sides: a flux is not NaN and not infinite unless its flag is
set; an error is not NaN or infinite unless its flag is set, and positive; ra in [0, 360), dec in
[-90, 90]; id unique. Injected: 0.1 % unflagged NaN in 5 flux columns, 0.05 % negative errors in
3 error columns, 0.5 % flagged NaN in every flux (not failures). Both sides must count the same bad
rows per check; the figures are row-checks (rows x checks) per second and per core.

Ours is `surveyqa.validate.validate_files` (DuckDB over the Parquet); pandera (0.35, pandas backend)
validates the file in chunks of ``--chunk`` rows read with pyarrow (the whole table does not fit
in memory as pandas), with ``lazy=True`` so it counts every failure, not just the first.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N_FLUX = 49
BAD_NAN = [0, 7, 14, 21, 28]
BAD_ERR = [3, 10, 17]


def write_table(path: Path, rows: int, group: int = 1_000_000, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, group):
        n = min(group, rows - start)
        cols = {"id": np.arange(start, start + n, dtype=np.int64), "ra": rng.uniform(0, 360, n),
                "dec": rng.uniform(-90, 90, n)}
        for i in range(N_FLUX):
            flux = rng.normal(1000, 100, n)
            err = rng.uniform(5, 50, n).astype(np.float32)
            flag = rng.random(n) < 0.005
            flux[flag] = np.nan
            err[flag] = np.nan
            if i in BAD_NAN:
                flux[(rng.random(n) < 0.001) & ~flag] = np.nan
            if i in BAD_ERR:
                err[(rng.random(n) < 0.0005) & ~flag] = -1.0
            cols[f"ap{i:02d}Flux"], cols[f"ap{i:02d}FluxErr"], cols[f"ap{i:02d}Flux_flag"] = flux, err, flag
        fields = [pa.field(k, pa.array(v).type, metadata={"unit": "nJy"} if "Flux" in k and "flag" not in k
                           else {"unit": "deg"} if k in ("ra", "dec") else None) for k, v in cols.items()]
        table = pa.table(list(cols.values()), schema=pa.schema(fields))
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=group)
    writer.close()


def write_schema(path: Path) -> None:
    cols = ["    - {name: id, '@id': '#Bench.id', datatype: long, nullable: false}",
            "    - {name: ra, '@id': '#Bench.ra', datatype: double, 'ivoa:unit': deg, 'ivoa:ucd': pos.eq.ra}",
            "    - {name: dec, '@id': '#Bench.dec', datatype: double, 'ivoa:unit': deg, 'ivoa:ucd': pos.eq.dec}"]
    for i in range(N_FLUX):
        for name, dtype, unit in ((f"ap{i:02d}Flux", "double", "nJy"), (f"ap{i:02d}FluxErr", "float", "nJy"),
                                  (f"ap{i:02d}Flux_flag", "boolean", None)):
            u = f", 'ivoa:unit': {unit}" if unit else ""
            cols.append(f"    - {{name: {name}, '@id': '#Bench.{name}', datatype: {dtype}{u}}}")
    path.write_text("name: bench\n'@id': '#bench'\ntables:\n  - name: Bench\n    '@id': '#Bench'\n"
                    "    primaryKey: '#Bench.id'\n    columns:\n" + "\n".join(cols) + "\n")


def _cpu() -> float:
    """CPU seconds of this process, all threads (the machine is shared: wall time alone overstates the cost)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def ours(path: Path, schema: Path) -> tuple[float, dict, int, float, int]:
    from surveyqa.validate import validate_files
    from surveyqa.validate.rules import Rules, load_rules

    base = load_rules()
    rules = base.merged(Rules(datasets={"bench": "Bench"}), {"datasets"})
    t0, c0 = time.perf_counter(), _cpu()
    report = validate_files({"bench": [({}, str(path))]}, str(schema), rules)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    bad = {(r.column, r.check): r.n_bad for r in report.results if r.kind in ("nan", "inf", "range", "unique")}
    return seconds, bad, report.n_row_checks, cpu, report.n_footer_checks


def peer(path: Path, chunk: int) -> tuple[float, dict, int, float]:
    import pandas as pd
    import pandera.pandas as pdr

    checks: dict[str, list] = {"ra": [pdr.Check.ge(0), pdr.Check.lt(360)], "dec": [pdr.Check.in_range(-90, 90)]}
    frame_checks = []
    names = []
    for i in range(N_FLUX):
        f, e, g = f"ap{i:02d}Flux", f"ap{i:02d}FluxErr", f"ap{i:02d}Flux_flag"
        frame_checks += [pdr.Check(lambda df, f=f, g=g: ~np.isnan(df[f]) | df[g], name=f"{f}:nan"),
                         pdr.Check(lambda df, f=f, g=g: ~np.isinf(df[f]) | df[g], name=f"{f}:inf"),
                         pdr.Check(lambda df, e=e, g=g: ~np.isnan(df[e]) | df[g], name=f"{e}:nan"),
                         pdr.Check(lambda df, e=e, g=g: ~np.isinf(df[e]) | df[g], name=f"{e}:inf")]
        checks[e] = [pdr.Check(lambda s: ~(np.isfinite(s) & (s <= 0)), name=f"{e}:positive_error")]
        names += [f, e, g]
    schema = pdr.DataFrameSchema(
        {"id": pdr.Column("int64", nullable=False), "ra": pdr.Column("float64", checks["ra"]),
         "dec": pdr.Column("float64", checks["dec"]),
         **{n: pdr.Column(None, checks.get(n, []), nullable=True) for n in names}},
        checks=frame_checks)
    t0, c0 = time.perf_counter(), _cpu()
    bad: dict = {}
    ids = []
    n_checks = 0
    reader = pq.ParquetFile(path)
    for batch in reader.iter_batches(batch_size=chunk):
        df = batch.to_pandas()
        ids.append(df["id"].to_numpy())
        try:
            schema.validate(df, lazy=True)
        except pdr.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            for (col, check), n in cases.groupby(["column", "check"], dropna=False).size().items():
                bad[(col, str(check))] = bad.get((col, str(check)), 0) + int(n)
        n_checks += len(df) * (2 + 2 + 5 * N_FLUX + 2)  # ra 2, dec 1 + types, 5 per flux triple, id
    dup = int(pd.Series(np.concatenate(ids)).duplicated(keep=False).sum())
    return time.perf_counter() - t0, {"bad": bad, "duplicates": dup}, n_checks, _cpu() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--file", type=Path, default=None, help="Reuse (or write) this Parquet file.")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="pandera's rows per chunk")
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()
    path = args.file or Path(f"bench_validate_{args.rows}.parquet")
    schema = path.with_suffix(".felis.yaml")
    if not path.exists():
        t0 = time.perf_counter()
        write_table(path, args.rows)
        print(f"wrote {path} ({path.stat().st_size / 1e9:.1f} GB) in {time.perf_counter() - t0:.0f} s")
    write_schema(schema)
    rows = pq.read_metadata(path).num_rows
    cores = os.cpu_count() or 1
    print(f"{rows:,} rows x {pq.read_metadata(path).num_columns} columns, {cores} cores")
    s, bad, n, cpu, footer = ours(path, schema)
    print(f"surveyqa validate (DuckDB): {s:.1f} s wall, {cpu:.1f} CPU s, {n:,} row-checks "
          f"({footer:,} answered by Parquet statistics), {n / s / 1e6:.0f} M row-checks/s, "
          f"{n / s / cores / 1e6:.0f} M per core by wall time, {n / cpu / 1e6:.0f} M per CPU second")
    print("  unflagged NaN fluxes:", {c: v for (c, k), v in bad.items() if k == "nan" and v and "Err" not in c})
    print("  negative errors:", {c: v for (c, k), v in bad.items() if k == "positive_error" and v})
    print("  duplicate ids:", bad.get(("id", "unique")))
    if args.skip_peer:
        return
    s2, pbad, n2, cpu2 = peer(path, args.chunk)
    print(f"pandera {__import__('pandera').__version__} (pandas, chunks of {args.chunk:,}): {s2:.1f} s wall, "
          f"{cpu2:.1f} CPU s, {n2:,} row-checks, {n2 / s2 / 1e6:.0f} M row-checks/s, "
          f"{n2 / cpu2 / 1e6:.0f} M per CPU second (pandas runs on one core)")
    nan = {k[1].split(":")[0]: v for k, v in pbad["bad"].items() if k[1].endswith(":nan") and "Err" not in k[1]}
    print("  unflagged NaN fluxes:", nan)
    print("  negative errors:", {k[1].split(":")[0]: v for k, v in pbad["bad"].items() if "positive" in k[1]})
    print("  duplicate ids:", pbad["duplicates"])
    print(f"ours / pandera wall time: {s2 / s:.1f}x faster")


if __name__ == "__main__":
    main()
