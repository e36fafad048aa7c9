"""A metric's stored per-row values re-aggregated over a whole collection: Dask against DuckDB at 10^8 rows.

    .venv/bin/python benchmarks/bench_dask.py                      # 10^8 rows in 100 per-tract files
    .venv/bin/python benchmarks/bench_dask.py --rows 10000000 --tracts 10 --keep /tmp/dask-bench

Writes per-tract Parquet files shaped like the QA's ``qaMetricRows_tract`` (``metric``, ``value``,
``selected``, ``tract``, ``patch``, ``band``; sorted by patch, as the QA writes them), one metric whose
aggregation is the median (``health.psfFwhm``), then computes its per-(tract, patch, band) values
three ways, each timed end to end:

* **DuckDB, one SQL query** over every file (``median(value) ... GROUP BY``): the fastest a single
  process gets, the peer;
* **the DuckDB reader path** the dashboard takes (`QARepository._read_files` of one file, then the
  metric's own aggregation, `surveyqa.metrics.engine.aggregate_rows`), file after file in this process;
* **Dask**: `DaskQARepository.aggregate_metric_rows`'s task (`aggregate_file`) mapped over the files
  on a ``LocalCluster`` of ``--workers`` processes, only the per-group values coming back.

All three must give the same values. Each path runs in a fresh process; the peak RSS printed is
its largest process's (``VmHWM``, workers included): the Dask path's point is that no process
holds more than one file's rows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METRIC = "health.psfFwhm"
BANDS = np.array(["g", "r", "i", "z", "y"])


def write_files(folder: Path, rows: int, tracts: int, seed: int = 1) -> list[str]:
    """``tracts`` per-tract files of ``rows // tracts`` rows each (81 patches, 5 bands), sorted by patch."""
    rng = np.random.default_rng(seed)
    per = rows // tracts
    files = []
    for tract in range(tracts):
        path = folder / f"rows_{tract:05d}.parquet"
        files.append(str(path))
        if path.exists():
            continue
        patch = np.sort(rng.integers(0, 81, per))
        value = rng.normal(0.7 + 0.001 * tract, 0.05, per)
        value[rng.random(per) < 0.001] = np.nan
        table = pa.table({
            "metric": pa.DictionaryArray.from_arrays(pa.array(np.zeros(per, np.int32)), pa.array([METRIC])),
            "value": value, "selected": rng.random(per) < 0.9,
            "tract": np.full(per, 9000 + tract, np.int64), "patch": patch.astype(np.int64),
            "band": pa.array(BANDS[rng.integers(0, 5, per)]).dictionary_encode(),
        })
        pq.write_table(table, path, row_group_size=1 << 20)
    return files


def duckdb_sql(files: list[str]) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect()
    try:
        return con.execute(
            "SELECT tract, patch, band::VARCHAR AS band, median(value) AS value, count(*) AS n "
            "FROM read_parquet($files) WHERE metric = $m AND selected AND isfinite(value) "
            "GROUP BY tract, patch, band ORDER BY tract, patch, band", {"files": files, "m": METRIC}).df()
    finally:
        con.close()


def reader_path(files: list[str]) -> pd.DataFrame:
    from surveyqa.butler.dask_reader import aggregate_file

    return pd.concat([aggregate_file(f, METRIC, ["tract", "patch", "band"]) for f in files], ignore_index=True)


def dask_path(client, files: list[str]) -> pd.DataFrame:
    from surveyqa.butler.dask_reader import aggregate_file

    futures = client.map(aggregate_file, files, metric_name=METRIC, group_by=["tract", "patch", "band"], pure=False)
    return pd.concat(client.gather(futures), ignore_index=True)


def values_read(folder: Path, n_rows: int, seed: int = 1) -> None:
    """The quick look's read at DR1 scale: one ``qaMetricValues`` file of ``n_rows`` metric values
    (every column of the QA's schema, ~40 metrics), read whole and for one metric by the reader."""
    from surveyqa.butler.reader import QARepository
    from surveyqa.tasks.values import METRIC_VALUE_SCHEMA

    path = folder / f"values_{n_rows}.parquet"
    rng = np.random.default_rng(seed)
    if not path.exists():
        metrics = np.array([f"health.m{i:02d}" for i in range(40)])
        columns = {}
        for field in METRIC_VALUE_SCHEMA:
            if pa.types.is_string(field.type):
                pool = metrics if field.name == "metric" else np.array([f"{field.name}{i}" for i in range(6)])
                columns[field.name] = pa.array(pool[rng.integers(0, len(pool), n_rows)]).dictionary_encode() \
                    .cast(pa.dictionary(pa.int32(), pa.string())).cast(pa.string())
            elif pa.types.is_integer(field.type):
                columns[field.name] = rng.integers(0, 10**4, n_rows)
            else:
                columns[field.name] = rng.normal(size=n_rows)
        table = pa.table(columns).sort_by([("metric", "ascending"), ("level", "ascending")])
        pq.write_table(table, path, row_group_size=1 << 20)
    for name, where in (("every value", None), ("one metric", {"metric": "health.m07"})):
        t = time.perf_counter()
        frame = QARepository._read_files([str(path)], where, (), union_by_name=False)
        print(f"qaMetricValues of {n_rows:,} rows ({path.stat().st_size / 1e6:.0f} MB), {name}: "
              f"{len(frame):,} rows read in {time.perf_counter() - t:.1f} s")


def _peak_mb() -> float:
    """This process's peak RSS, MB, from ``VmHWM``: ``ru_maxrss`` would report a spawned worker's
    parent's peak (it is inherited through fork and exec). A process's peak only grows, so each
    path runs in a fresh process (`_child`)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _child(path_name: str, files: list[str], workers: int) -> tuple[pd.DataFrame, float, float, float]:
    """One path in this (fresh) process: (result, seconds, peak RSS MB of the largest process, start-up s)."""
    from distributed import Client, LocalCluster

    from surveyqa.metrics.library import get_metric

    get_metric(METRIC)  # the metric library's first load (YAML, units) is not part of any path
    if path_name == "sql":
        t = time.perf_counter()
        return duckdb_sql(files), time.perf_counter() - t, _peak_mb(), 0.0
    if path_name == "reader":
        t = time.perf_counter()
        return reader_path(files), time.perf_counter() - t, _peak_mb(), 0.0
    t = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.run(get_metric, METRIC)  # each worker loads the library once, as a long-lived cluster has
        started = time.perf_counter() - t
        t = time.perf_counter()
        got = dask_path(client, files)
        seconds = time.perf_counter() - t
        peak = max([_peak_mb(), *client.run(_peak_mb).values()])
    return got, seconds, peak, started


def _norm(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(band=frame["band"].astype(str), n=frame["n"].astype(np.int64))
    return frame[["tract", "patch", "band", "value", "n"]].sort_values(["tract", "patch", "band"], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--tracts", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="write (or reuse) the files here")
    parser.add_argument("--values-rows", type=int, default=5_000_000,
                        help="rows of the one-file metric-value table read as the quick look does (0: skip)")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    files = write_files(folder, args.rows, args.tracts)
    size = sum(Path(f).stat().st_size for f in files)
    print(f"{args.rows:,} rows in {len(files)} files, {size / 1e9:.2f} GB ({time.perf_counter() - t:.1f} s to make)")

    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    results = {}
    for key, name in (("sql", "DuckDB, one SQL query"), ("reader", "DuckDB reader path, file by file"),
                      ("dask", f"Dask, LocalCluster of {args.workers}")):
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            frame, seconds, peak, started = pool.submit(_child, key, files, args.workers).result()
        results[name + (f" (+{started:.1f} s to start it)" if started else "")] = (frame, seconds, peak)
        print(f"{name}: {seconds:.1f} s", flush=True)

    want = _norm(next(iter(results.values()))[0])
    print("\n| path | s | rows/s | peak RSS MB (largest process) |")
    print("|---|---|---|---|")
    for name, (frame, seconds, peak) in results.items():
        frame = _norm(frame)
        np.testing.assert_allclose(frame["value"], want["value"], rtol=1e-12)
        assert (frame["n"].to_numpy() == want["n"].to_numpy()).all(), name
        print(f"| {name} | {seconds:.1f} | {args.rows / seconds:,.0f} | {peak:,.0f} |")
    print(f"\n{len(want):,} (tract, patch, band) values, equal on every path")
    if args.values_rows:
        values_read(folder, args.values_rows)


if __name__ == "__main__":
    main()
