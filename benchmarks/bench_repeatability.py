"""PA1 and AM1 on a synthetic 10^7-row matched catalog: surveyqa's engine vs a plain pandas group-by.

Both implementations compute surveyqa's current definitions (lsst/faro's, see "The SRD metrics
as implemented" in docs/metric-engine.md) from the same Parquet file, each in its own subprocess
so that its peak memory (VmHWM) is its own. Objects are (obj_index, band); mag is
31.4 - 2.5 log10(psfFlux / nJy), S/N is psfFlux / psfFluxErr.

* PA1 (faro's filterMatches as photRepeat calls it): objects with every magnitude finite, median
  of the finite S/N >= 200, extendedness < 0.9 in every visit (NaN: not point-like) and >= 3
  measurements; per object the population std (ddof=0) of its magnitudes; the median over the
  selected objects, in mmag (NaN with 10 or fewer objects).
* AM1: objects with >= 2 measurements, every magnitude finite, median finite S/N >= 50,
  extendedness < 0.9 in every visit, 17 <= median mag < 21.5 (the synthetic catalog has no flag
  or detect_isPrimary column); position: the normalized sum of the sources' unit vectors; at
  most 20,000 objects (seeded sample) and 1,000,000 pairs with 4 <= d < 6 arcmin (chords);
  per pair the sample std (ddof=1) of the distance over common visits (pairs with >= 2); the
  median over pairs, in mas (NaN with fewer than 10 pairs). The pair search (cKDTree) is the
  same; what differs is the per-object statistics and the per-pair, per-visit join (ours:
  numpy segment reductions and a position cube of the sampled objects; pandas: group-by
  aggregations and two merges over all sources).

Each side reads the columns it uses: ours passes ``measure`` a ``pyarrow.parquet.ParquetFile``
(strings read as Arrow dictionaries), from which it reads the columns the metric asks for;
its "read" is then opening the file, and the reading is in its compute (``--ours-input table`` reads the
``input_columns`` with ``read_table`` first instead); pandas reads with
``pd.read_parquet(path, columns=...)``. Compare the totals; the line "reads: ..." says how ours read.

Usage::

    python benchmarks/bench_repeatability.py [--rows 10000000] [--visits 10] [--repeat 3] [--file F]
                                             [--ours-input parquet|table]

Prints, per metric and implementation, read and compute seconds (wall and CPU), the value, and
peak RSS; medians of ``--repeat`` alternating runs, because the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the columns each pandas implementation uses (ours asks the engine: `input_columns`).
PANDAS_COLUMNS = {"PA1": ["obj_index", "band", "psfFlux", "psfFluxErr", "extendedness"],
                  "AM1": ["obj_index", "band", "visit", "coord_ra", "coord_dec", "psfFlux", "psfFluxErr",
                          "extendedness"]}


def _ours(metric: str, path: str, source: str = "parquet") -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from surveyqa.metrics.engine import input_columns, measure
    from surveyqa.metrics.library import get_metric

    m = get_metric(metric)
    t0, c0 = time.perf_counter(), time.process_time()
    schema = pq.read_schema(path)
    columns = input_columns(m, schema.names)
    # string columns (band) straight into Arrow dictionaries: no Python string per row
    strings = [c for c in columns if pa.types.is_string(schema.field(c).type)]
    if source == "table":  # read the metric's columns, then measure the table
        table = pq.read_table(path, columns=columns, read_dictionary=strings, memory_map=True)
    else:  # measure reads the columns it uses from the file
        table = pq.ParquetFile(path, memory_map=True, read_dictionary=strings)
    t1, c1 = time.perf_counter(), time.process_time()
    value = measure(m, table).values["value"][0].as_py()
    how = "read inside measure from the ParquetFile" if source != "table" else "read_table then measure"
    return _timings(t0, c0, t1, c1) | {"value": value, "columns": columns, "how": how}


def _timings(t0: float, c0: float, t1: float, c1: float) -> dict:
    """Wall and CPU (process, all threads) seconds of the read (t0-t1) and of the compute (t1-now)."""
    t2, c2 = time.perf_counter(), time.process_time()
    return {"read_s": t1 - t0, "compute_s": t2 - t1, "read_cpu_s": c1 - c0, "compute_cpu_s": c2 - c1}


def _pandas_objects(df):
    """Per-source columns of faro's filterMatches: mag, finite S/N, finite mag, point-like."""
    import numpy as np

    df["mag"] = -2.5 * np.log10(df["psfFlux"]) + 31.4
    snr = df["psfFlux"] / df["psfFluxErr"]
    df["snr"] = snr.where(np.isfinite(snr))  # the median of the finite S/N (pandas skips NaN)
    df["mag_ok"] = np.isfinite(df["mag"])
    df["point"] = df["extendedness"] < 0.9  # NaN is not point-like
    return df


def _pandas_pa1(path: str) -> dict:
    import pandas as pd

    t0, c0 = time.perf_counter(), time.process_time()
    df = pd.read_parquet(path, columns=PANDAS_COLUMNS["PA1"])
    t1, c1 = time.perf_counter(), time.process_time()
    df = _pandas_objects(df)
    g = df.groupby(["obj_index", "band"])
    obj = g.agg(n=("mag", "size"), snr=("snr", "median"), mag_ok=("mag_ok", "all"), point=("point", "all"))
    obj["std"] = g["mag"].std(ddof=0)
    sel = obj["mag_ok"] & (obj["snr"] >= 200) & obj["point"] & (obj["n"] >= 3)
    value = float(obj.loc[sel, "std"].median() * 1000.0) if sel.sum() > 10 else float("nan")
    return _timings(t0, c0, t1, c1) | {"value": value, "columns": PANDAS_COLUMNS["PA1"]}


def _pandas_am1(path: str) -> dict:
    import numpy as np
    import pandas as pd
    from scipy.spatial import cKDTree

    from surveyqa.metrics.library.astrometry import MAX_OBJECTS, MAX_PAIRS, SEED

    t0, c0 = time.perf_counter(), time.process_time()
    df = pd.read_parquet(path, columns=PANDAS_COLUMNS["AM1"])
    t1, c1 = time.perf_counter(), time.process_time()
    df = _pandas_objects(df)
    ra, dec = np.radians(df["coord_ra"]), np.radians(df["coord_dec"])
    df["x"], df["y"], df["z"] = np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)
    g = df.groupby(["obj_index", "band"])
    df["obj"] = g.ngroup()  # object number, in the (sorted) order of obj's rows
    obj = g.agg(n=("mag", "size"), mag=("mag", "median"), snr=("snr", "median"), mag_ok=("mag_ok", "all"),
                point=("point", "all"), x=("x", "sum"), y=("y", "sum"), z=("z", "sum"))
    sel = ((obj["n"] >= 2) & obj["mag_ok"] & (obj["snr"] >= 50) & obj["point"]
           & (obj["mag"] >= 17) & (obj["mag"] < 21.5))
    chosen = np.flatnonzero(sel.to_numpy())
    rng = np.random.default_rng(SEED)
    if len(chosen) > MAX_OBJECTS:
        chosen = np.sort(rng.choice(chosen, MAX_OBJECTS, replace=False))
    xyz = obj[["x", "y", "z"]].to_numpy()[chosen]
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    lo, hi = (2 * np.sin(np.radians(a / 60) / 2) for a in (4.0, 6.0))
    pairs = cKDTree(xyz).query_pairs(hi, output_type="ndarray")
    chord = np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1)
    pairs = pairs[(chord >= lo) & (chord < hi)]
    if len(pairs) > MAX_PAIRS:
        pairs = pairs[np.sort(rng.choice(len(pairs), MAX_PAIRS, replace=False))]
    p = pd.DataFrame({"pair": np.arange(len(pairs)), "a": chosen[pairs[:, 0]], "b": chosen[pairs[:, 1]]})
    src = df[["obj", "visit", "x", "y", "z"]].dropna()  # sources with a position
    m = p.merge(src, left_on="a", right_on="obj").merge(
        src, left_on=["b", "visit"], right_on=["obj", "visit"], suffixes=("_a", "_b"))
    va, vb = m[["x_a", "y_a", "z_a"]].to_numpy(), m[["x_b", "y_b", "z_b"]].to_numpy()
    m["dist"] = np.arctan2(np.linalg.norm(np.cross(va, vb), axis=1), np.einsum("ij,ij->i", va, vb))
    rms = m.groupby("pair")["dist"].std().dropna()  # ddof=1; pairs with 2 or more common visits
    value = float(np.degrees(rms.median()) * 3.6e6) if len(rms) >= 10 else float("nan")
    return _timings(t0, c0, t1, c1) | {"value": value, "columns": PANDAS_COLUMNS["AM1"]}


def _child(which: str, metric: str, path: str, source: str = "parquet") -> None:
    fn = {("ours", "PA1"): lambda: _ours("PA1", path, source), ("ours", "AM1"): lambda: _ours("AM1", path, source),
          ("pandas", "PA1"): lambda: _pandas_pa1(path), ("pandas", "AM1"): lambda: _pandas_am1(path)}[(which, metric)]
    out = fn()
    out["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(out))


def _peak_rss_mb() -> float:
    """This process's peak resident memory, MB: VmHWM of /proc/self/status where there is one.

    Not ``ru_maxrss`` on Linux: a child started by ``subprocess`` inherits its parent's peak
    through exec, and the parent has just generated the catalog.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--visits", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each implementation (alternating); medians shown")
    ap.add_argument("--file", help="use this matched catalog (Parquet) instead of writing one")
    ap.add_argument("--ours-input", choices=("parquet", "table"), default="parquet",
                    help="ours measures the ParquetFile (default: the columns are read inside measure)"
                         " or a table read first with read_table")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    import pyarrow.parquet as pq

    from surveyqa.metrics.synthetic import matched_catalog

    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            path = str(Path(tmp) / "matched.parquet")
            n_obj = args.rows // args.visits
            print(f"generating {n_obj * args.visits:,} rows ({n_obj:,} objects x {args.visits} visits, 3 deg field)"
                  " ...", flush=True)
            pq.write_table(matched_catalog(n_objects=n_obj, n_visits=args.visits, field_deg=3.0, seed=0), path)
        print(f"{pq.ParquetFile(path).metadata.num_rows:,} rows in {path}; {os.cpu_count()} cores, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        for rep in range(args.repeat):
            for metric in ("PA1", "AM1"):
                for which in ("ours", "pandas"):
                    print(f"  run {rep + 1}/{args.repeat} {metric} {which} ...", flush=True)
                    proc = subprocess.run([sys.executable, __file__, "--child", which, metric, path, args.ours_input],
                                          capture_output=True, text=True, check=True)
                    runs.setdefault((metric, which), []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\n{'metric':6} {'impl':8} {'read s':>7} {'compute s':>10} {'total s':>8} {'read CPU s':>10} "
          f"{'compute CPU s':>13} {'peak RSS MB':>12} value   (medians of {args.repeat} runs; peak RSS: the largest)")
    summary = {}
    for (metric, which), rs in runs.items():
        r = {k: _median([x[k] for x in rs]) for k in ("read_s", "compute_s", "read_cpu_s", "compute_cpu_s")}
        r["total_s"] = _median([x["read_s"] + x["compute_s"] for x in rs])
        r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in rs)
        r["value"] = rs[0]["value"]
        summary[(metric, which)] = r
        print(f"{metric:6} {which:8} {r['read_s']:7.2f} {r['compute_s']:10.2f} {r['total_s']:8.2f} {r['read_cpu_s']:10.2f}"
              f" {r['compute_cpu_s']:13.2f} {r['peak_rss_mb']:12.0f} {r['value']:.13g}")
    for (metric, which), rs in runs.items():
        how = f" ({rs[0]['how']})" if "how" in rs[0] else ""
        print(f"  {metric} {which} reads: {', '.join(rs[0]['columns'])}{how}")
    for metric in ("PA1", "AM1"):
        o, p = summary[(metric, "ours")], summary[(metric, "pandas")]
        agree = "identical" if o["value"] == p["value"] else f"agree to {abs(o['value'] / p['value'] - 1):.1e} (relative)"
        read = (f"read {p['read_s'] / o['read_s']:.1f}x" if o["read_s"] >= 0.01
                else "ours reads inside its compute")
        cpu = (p["read_cpu_s"] + p["compute_cpu_s"]) / (o["read_cpu_s"] + o["compute_cpu_s"])
        print(f"{metric}: end-to-end {p['total_s'] / o['total_s']:.1f}x (CPU {cpu:.1f}x);"
              f" compute {p['compute_s'] / o['compute_s']:.1f}x (CPU {p['compute_cpu_s'] / o['compute_cpu_s']:.1f}x), {read};"
              f" peak RSS {o['peak_rss_mb']:.0f} vs {p['peak_rss_mb']:.0f} MB; values {agree}"
              f" (peer: pandas {__import__('pandas').__version__} group-by)")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
