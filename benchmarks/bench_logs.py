"""Log database: ingest rate (records/s) and search latency over N records, SQLite and PostgreSQL.

Records are pipeline-like: 10 message templates with numbers and file names, 20 per quantum over
visits x detectors (the records of a quantum share their data ID dict, as those of one ``_log``
dataset do), 1 in 1,000 an ERROR with a traceback, over 10 days. Ingest goes through the same
`write_source` as `surveyqa logs ingest`, 100,000 records per source (transaction): all but the
last ``--incremental`` records as a first ingest (`bulk_load`: indexes built after, that time
counted), then those into the full table with its indexes kept up to date. The peer is what the
logs were before: scanning the JSON-lines file per query (``grep -E``).

    python benchmarks/bench_logs.py --records 10000000 --backend sqlite --backend postgresql
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from surveyqa.logs.db import bulk_load, open_log_db, write_source
from surveyqa.logs.query import LogQuery
from surveyqa.logs.records import LogRecord
from surveyqa.logs.store import LogStore

T0 = 1_780_000_000.0
SPAN = 10 * 86400.0
TEMPLATES = [
    "Preparing execution of quantum for label={task} dataId={{instrument: 'HSC', visit: {visit}, detector: {det}}}.",
    "Constructing task and executing quantum for label={task} dataId={{visit: {visit}}}.",
    "Read {n} sources from sourceTable_visit for visit {visit}",
    "Matched {n} of {m} stars to the reference catalog within 1.0 arcsec",
    "Measured photometric repeatability on {n} stars: {x:.3f} mmag",
    "Execution of task '{task}' on quantum {{visit: {visit}}} took {x:.3f} seconds",
    "Selected {n} bright unresolved stars (S/N > 50)",
    "Wrote qaMetricValues_visit for visit {visit} ({n} rows)",
    "Fitted PSF model with {n} stars, chi2/dof = {x:.2f}",
    "Applying background subtraction, {n} bins",
]
ERROR = ("Execution of task '{task}' on quantum {{visit: {visit}}} failed. Exception ValueError: cannot read "
         "sourceTable_visit file /repo/drp/sourceTable_visit/{visit}/sourceTable_visit_HSC_{visit}.parq: "
         "Parquet magic bytes not found in footer")


def make_records(n: int, seed: int, start: int = 0, total: int = 10**7) -> list[LogRecord]:
    rng = random.Random(seed + start)
    random_, randrange = rng.random, rng.randrange
    out = []
    append = out.append
    data_id: dict = {}
    tasks = ("qaVisit", "qaDetectorReference", "qaTract")
    tracebacks = "Traceback (most recent call last):\n  ...\nValueError: bad"
    for i in range(start, start + n):
        visit = 1000 + (i * 5000 // total)  # visits in time order, as a survey takes them
        if i % 20 == 0 or i == start or data_id["visit"] != visit:
            # a quantum (visit, detector) logs ~20 records, as a <label>_log holds them, sharing its data ID
            det = (i // 20) % 104
            data_id = {"instrument": "HSC", "visit": visit, "detector": det}
        task = tasks[i % 3]
        is_error = random_() < 0.001
        text = (ERROR if is_error else TEMPLATES[i % len(TEMPLATES)]).format(
            task=task, visit=visit, det=det, n=randrange(100000), m=randrange(100000), x=random_() * 10)
        append(LogRecord("drp/run1", task, data_id, T0 + SPAN * i / total, 40 if is_error else 20,
                         "lsst.pipe.base" if is_error else f"lsst.{task}", text, f"node{i % 16:02d}", 1000 + i % 64,
                         "MainProcess", "MainThread", "ValueError" if is_error else None,
                         tracebacks if is_error else None))
    return out


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def bench(url: str, n: int, chunk: int, jsonl: Path | None, extra: int) -> dict:
    engine = open_log_db(url)
    ingest_s = 0.0
    made_s = 0.0
    with (jsonl.open("w") if jsonl else open(os.devnull, "w")) as out:
        t = time.perf_counter()
        loading = bulk_load(engine)  # a first ingest of many sources, as `LogStore.ingest_repo` does it
        loading.__enter__()
        ingest_s += time.perf_counter() - t
        for start in range(0, n - extra, chunk):
            t = time.perf_counter()
            records = make_records(min(chunk, n - extra - start), seed=1, start=start, total=n)
            made_s += time.perf_counter() - t
            if jsonl:
                for r in records:
                    out.write(json.dumps({"time": r.time, "levelno": r.levelno, "message": r.message, "task": r.task,
                                          "data_id": r.data_id}) + "\n")
            t = time.perf_counter()
            with engine.begin() as conn:
                write_source(conn, f"bench:{uuid.uuid4()}", "bench", "bench", records, [])
            ingest_s += time.perf_counter() - t
            print(f"  {start + len(records):>10,d} records, {(start + len(records)) / ingest_s:,.0f} records/s",
                  flush=True)
        t = time.perf_counter()
        loading.__exit__(None, None, None)
        indexes_s = time.perf_counter() - t
        ingest_s += indexes_s
        print(f"  indexes built in {indexes_s:.1f} s: {(n - extra) / ingest_s:,.0f} records/s", flush=True)
        # then sources into the full table, its indexes kept up to date (a later, incremental ingest)
        records = make_records(extra, seed=1, start=n - extra, total=n)
        if jsonl:
            for r in records:
                out.write(json.dumps({"time": r.time, "levelno": r.levelno, "message": r.message, "task": r.task,
                                      "data_id": r.data_id}) + "\n")
        t = time.perf_counter()
        for start in range(0, extra, chunk):
            with engine.begin() as conn:
                write_source(conn, f"bench:{uuid.uuid4()}", "bench", "bench", records[start:start + chunk], [])
        incremental_s = time.perf_counter() - t
        print(f"  {extra:,d} more into the full table: {extra / incremental_s:,.0f} records/s", flush=True)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE log_record")
    engine.dispose()
    store = LogStore(url)
    hour_from = T0 + SPAN / 2
    queries = {
        "regex, 1 hour": LogQuery(grep=r"cannot read .* file", since=hour_from, until=hour_from + 3600),
        "regex, 1 day": LogQuery(grep=r"Matched \d+ of 9\d{4} stars", since=hour_from, until=hour_from + 86400),
        "level ERROR + visit": LogQuery(level="ERROR", where="visit = 3500"),
        "level INFO + visit + detector": LogQuery(level="INFO", where=f"visit = 3500 AND detector = {n // 2 // 20 % 104}"),
        "regex, all time (rare literal)": LogQuery(grep=r"magic bytes not found.*footer", limit=1000),
    }
    figures = {"records": n, "ingest_records_per_s": (n - extra) / ingest_s, "generate_s": made_s,
               "incremental_records_per_s": extra / incremental_s, "indexes_s": indexes_s}
    for name, q in queries.items():
        seconds, rows = timed(lambda q=q: store.records(q))
        figures[name] = (seconds, len(rows))
        print(f"  {name:34s} {seconds * 1000:9.1f} ms  {len(rows):7d} rows", flush=True)
    store.close()
    if jsonl:
        t = time.perf_counter()
        found = subprocess.run(["grep", "-cE", "magic bytes not found.*footer", str(jsonl)], capture_output=True,
                               text=True).stdout.strip()
        figures["peer grep -E over the JSON lines"] = (time.perf_counter() - t, int(found or 0))
        print(f"  {'peer: grep -E over JSON lines':34s} {figures['peer grep -E over the JSON lines'][0] * 1000:9.1f} ms"
              f"  {found:>7s} rows", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--incremental", type=int, default=200_000,
                        help="the last records, ingested after the indexes are built (kept up to date per source)")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-admin", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-peer", action="store_true", help="do not write the JSON-lines file for grep")
    parser.add_argument("--pg-prefix", default="bench_logs_", help="name prefix of the PostgreSQL database made (and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = None if args.no_peer else Path(tmp) / "logs.jsonl"
        for backend in args.backend or ["sqlite"]:
            print(f"{backend}: {args.records:,d} records", flush=True)
            if backend == "sqlite":
                bench(f"sqlite:///{tmp}/logs.db", args.records, args.chunk, jsonl, args.incremental)
            else:
                name = f"{args.pg_prefix}{uuid.uuid4().hex[:8]}"
                admin = sa.create_engine(args.pg_admin, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
                try:
                    bench(args.pg_admin.rsplit("/", 1)[0] + f"/{name}", args.records, args.chunk, jsonl, args.incremental)
                finally:
                    with admin.connect() as conn:
                        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    admin.dispose()
            jsonl = None  # the peer once is enough


if __name__ == "__main__":
    main()
