"""Tracking service: submission throughput and time-series query latency with 10^6 stored values.

Run:  .venv/bin/python benchmarks/bench_tracking.py [--values 1000000] [--db sqlite|postgresql|both]

1. Bulk-loads N values (runs x series, 10 metrics x data IDs) straight into the tables
   (executemany on SQLite, COPY on PostgreSQL), after one real submission made the series.
2. Submission throughput through `TrackingService` (validation, storage, the pending check in the
   outbox, and the regression checks of every touched series against its history), and storage alone.
3. Time-series latency: one series (one metric, one data ID) and one whole metric, through the
   same view the API serves, median of repeated queries; the whole metric also over real HTTP
   (uvicorn, `GET /api/metrics/NAME/series`).
4. False-alarm rate of the change-point check on noisy 40-run streams without a step, and the
   Conbench-style lookback z-score on the same streams for comparison.

Peer: SQuaSH (lsst-sqre/squash-restful-api) kept values in MySQL and time series in InfluxDB;
it published no figures to compare with, so the two backends here are compared with each other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from tqdm import tqdm

from surveyqa.tracking.config import TrackingConfig
from surveyqa.tracking.db import run_t, value_t
from surveyqa.tracking.detect import check_series
from surveyqa.tracking.ingest import MetricDef, NormalizedRun, ValueRow
from surveyqa.tracking.service import TrackingService
from surveyqa.tracking.views import metric_view

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
N_METRICS = 10


def _run(i: int, n_ids: int, rng: np.random.Generator, t0: dt.datetime) -> NormalizedRun:
    values = [
        ValueRow(f"bench.m{m}", {"band": "ri"[d % 2], "tract": str(9000 + d // 2)}, float(10 + rng.normal(0, 0.1)), "mmag")
        for m in range(N_METRICS)
        for d in range(n_ids)
    ]
    return NormalizedRun(
        key=f"bench-{i}-{uuid.uuid4().hex[:8]}",
        format="surveyqa",
        dataset="bench",
        time=t0 + dt.timedelta(hours=i),
        metrics=[MetricDef(f"bench.m{m}", "mmag") for m in range(N_METRICS)],
        packages=[{"name": "pipe_tasks", "version": "1.0", "git_sha": "a" * 40, "git_url": None, "git_branch": None}],
        values=values,
    )


def bulk_load(service: TrackingService, n_values: int, n_ids: int) -> float:
    """Make the series with one submission, then load the rest directly; returns seconds."""
    rng = np.random.default_rng(0)
    t0 = dt.datetime(2024, 1, 1)
    first = service.store.submit(_run(0, n_ids, rng, t0))
    series = first.series_ids
    n_runs = n_values // len(series)
    engine = service.engine
    start = time.perf_counter()
    with engine.begin() as conn:
        next_id = conn.execute(sa.select(sa.func.max(run_t.c.id))).scalar() + 1
        runs = [
            {"id": next_id + i, "key": f"bulk-{i}", "format": "surveyqa", "dataset": "bench", "time": t0 + dt.timedelta(hours=i + 1),
             "submitted": t0, "meta": {}, "config": {}}
            for i in range(n_runs - 1)
        ]
        conn.execute(run_t.insert(), runs)
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequence past them
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('run', 'id'), (SELECT max(id) FROM run))"))
    values = rng.normal(10, 0.1, (n_runs - 1, len(series)))
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            for i in tqdm(range(0, n_runs - 1, 100), desc="COPY values", unit="x100 runs"):
                buf = io.StringIO()
                for r in range(i, min(i + 100, n_runs - 1)):
                    when = (t0 + dt.timedelta(hours=r + 1)).isoformat(sep=" ")
                    buf.write("".join(f"{next_id + r}\t{sid}\t{when}\t{float(values[r, j])!r}\n" for j, sid in enumerate(series)))
                buf.seek(0)
                cur.copy_expert("COPY value (run_id, series_id, run_time, value) FROM STDIN", buf)
            raw.commit()
        finally:
            raw.close()
    else:
        with engine.begin() as conn:
            for i in tqdm(range(0, n_runs - 1, 100), desc="insert values", unit="x100 runs"):
                rows = [
                    {"run_id": next_id + r, "series_id": sid, "run_time": t0 + dt.timedelta(hours=r + 1), "value": float(values[r, j])}
                    for r in range(i, min(i + 100, n_runs - 1))
                    for j, sid in enumerate(series)
                ]
                conn.execute(value_t.insert(), rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))  # what autovacuum does after a bulk load: sets the visibility map
    return time.perf_counter() - start


def bench_backend(url: str, n_values: int, n_ids: int) -> dict[str, float]:
    service = TrackingService.open(TrackingConfig(db=url))
    out: dict[str, float] = {}
    out["load_s"] = bulk_load(service, n_values, n_ids)
    with service.engine.connect() as conn:
        out["stored"] = conn.execute(sa.select(sa.func.count()).select_from(value_t)).scalar()
    # submissions through the service: storage + checks of every touched series over its history
    rng = np.random.default_rng(1)
    t0 = dt.datetime(2030, 1, 1)
    n_sub = 5
    start = time.perf_counter()
    for i in tqdm(range(n_sub), desc="submit + check"):
        service.submit_run(_run(10_000 + i, n_ids, rng, t0))
    elapsed = time.perf_counter() - start
    out["submit_checked_values_per_s"] = n_sub * N_METRICS * n_ids / elapsed
    start = time.perf_counter()
    for i in tqdm(range(n_sub), desc="submit only"):
        service.store.submit(_run(20_000 + i, n_ids, rng, t0))
    out["submit_store_values_per_s"] = n_sub * N_METRICS * n_ids / (time.perf_counter() - start)
    # query latency
    one, whole = [], []
    for _ in range(20):
        start = time.perf_counter()
        view = metric_view(service, "bench.m3", "bench", {"band": "r", "tract": 9002})
        one.append(time.perf_counter() - start)
    out["series_points"] = len(view["series"][0]["points"])
    for _ in range(5):
        start = time.perf_counter()
        view = metric_view(service, "bench.m3", "bench")
        whole.append(time.perf_counter() - start)
    out["metric_points"] = sum(len(s["points"]) for s in view["series"])
    out["one_series_ms"] = 1000 * statistics.median(one)
    out["whole_metric_ms"] = 1000 * statistics.median(whole)
    out["whole_metric_http_ms"], out["http_bytes"] = whole_metric_http(service)
    service.engine.dispose()
    return out


def whole_metric_http(service: TrackingService, repeat: int = 5) -> tuple[float, int]:
    """Median ms of ``GET /api/metrics/bench.m3/series?dataset=bench`` from a real uvicorn server, and its size."""
    import socket
    import threading

    import httpx
    import uvicorn

    from surveyqa.tracking.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(service.config, service), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    times, size = [], 0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            for _ in range(repeat):
                start = time.perf_counter()
                r = http.get("/api/metrics/bench.m3/series", params={"dataset": "bench"})
                r.raise_for_status()
                times.append(time.perf_counter() - start)
                size = len(r.content)
    finally:
        server.should_exit = True
        thread.join(30)
    return 1000 * statistics.median(times), size


def false_alarms(n_streams: int = 200, length: int = 40) -> dict[str, float]:
    """Fraction of noisy step-free streams with any alert: our check vs a lookback z-score."""
    cfg = TrackingConfig()
    rng = np.random.default_rng(2026)
    ours = zs = 0
    for _ in tqdm(range(n_streams), desc="false alarms"):
        x = rng.normal(10, 0.2, length)
        ours += any(f.check == "changepoint" for n in range(6, length + 1) for f in check_series(x[:n], cfg))
        # Conbench-style: z of the new value against the previous (up to 20) values, |z| > 5 fires
        zs += any(abs(x[n] - x[max(0, n - 20):n].mean()) / x[max(0, n - 20):n].std(ddof=1) > 5 for n in range(5, length))
    return {"changepoint": ours / n_streams, "lookback_z5": zs / n_streams}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--values", type=int, default=1_000_000)
    p.add_argument("--ids", type=int, default=100, help="data IDs per metric (series = 10 x ids)")
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--streams", type=int, default=200)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.db in ("sqlite", "both"):
            results["SQLite"] = bench_backend(f"sqlite:///{Path(tmp) / 'bench.db'}", args.values, args.ids)
        if args.db in ("postgresql", "both"):
            name = f"sq_track_bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(sa.text(f"CREATE DATABASE {name}"))
            try:
                results["PostgreSQL"] = bench_backend(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}", args.values, args.ids)
            finally:
                with admin.connect() as c:
                    c.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    print(f"\nvalues stored: {args.values:,} ({N_METRICS * args.ids} series)")
    print(f"{'backend':<12}{'bulk load s':>12}{'submit+check val/s':>20}{'store-only val/s':>18}{'1 series ms':>13}{'1 metric ms':>13}"
          f"{'1 metric HTTP ms':>18}")
    for name, r in results.items():
        print(f"{name:<12}{r['load_s']:>12.1f}{r['submit_checked_values_per_s']:>20,.0f}{r['submit_store_values_per_s']:>18,.0f}"
              f"{r['one_series_ms']:>13.1f}{r['whole_metric_ms']:>13.1f}{r['whole_metric_http_ms']:>18.1f}"
              f"   ({r['stored']:,} values; {r['series_points']} and {r['metric_points']:,} points, {r['http_bytes'] / 1e6:.1f} MB JSON)")
    print("peer, the same script before the outbox and batching (benchmarks/README.md, before issue 17): submit+check ~400 val/s"
          " on both backends, one metric 2,610-3,597 ms")
    fa = false_alarms(args.streams)
    print(f"false alarms on {args.streams} noisy 40-run streams without a step: change-point {100 * fa['changepoint']:.1f}%,"
          f" lookback z-score (|z|>5, 20 runs) {100 * fa['lookback_z5']:.1f}%")


if __name__ == "__main__":
    main()
