"""Rubin's tools against surveyqa: reading analysis_tools bundles, and SQuaSH-protocol uploads.

A. ``--tracts N`` analysis_tools ``objectTableCore_metrics`` bundles (``--tools`` tools ×
   ``--measurements`` measurements each, analysis_tools' JSON layout) ingested into a fresh Butler
   repository, read into our metric-value table by `AnalysisToolsMetrics.metric_values`, beside the
   peer a user without analysis_tools would write: ``json.loads(butler.getURI(ref).read())`` per
   dataset, rows into a DataFrame (no thresholds, no units parsed).
B. ``--uploads K`` uploads of the real lsst.verify job (``../shared/data/squash_jobs/verify_job.json``,
   30 measurements, blobs dropped as ``dispatch_verify.py --ignore-blobs`` does) to a live server
   over HTTP: ``POST /squash/job`` (``JWT``, after ``GET /squash`` and ``POST /squash/auth``, as
   lsst.verify's client does per upload) beside our own ``POST /api/jobs`` (``Bearer``), each
   upload a new CI build; then one retry of the same build on each route.

Run: ``.venv/bin/python benchmarks/bench_rubin_tools.py --tracts 2000 --uploads 20``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT.parent / "shared" / "data" / "squash_jobs" / "verify_job.json"
sys.path.insert(0, str(ROOT / "tests"))


def make_repo(root: Path, tracts: int, tools: int, measurements: int) -> tuple[str, str]:
    from lsst.daf.butler import Butler, DatasetRef, DatasetType, FileDataset

    Butler.makeRepo(str(root))
    butler = Butler(str(root), writeable=True)
    butler.registry.insertDimensionData("skymap", {"name": "bench", "hash": b"bench", "tract_max": tracts, "patch_nx_max": 1,
                                                   "patch_ny_max": 1})
    butler.registry.insertDimensionData("tract", *({"skymap": "bench", "id": t} for t in range(tracts)))
    run = "bench/atools"
    butler.collections.register(run)
    dt = DatasetType("objectTableCore_metrics", ["skymap", "tract"], "MetricMeasurementBundle", universe=butler.dimensions)
    butler.registry.registerDatasetType(dt)
    folder = root / "incoming"
    folder.mkdir()
    datasets = []
    for t in range(tracts):
        bundle = {f"tool{k}": [{"metric": f"{'gri'[m % 3]}_stat{m}", "identifier": uuid.uuid4().hex, "value": t + 0.1 * m,
                                "unit": "mmag", "blob_refs": []} for m in range(measurements)] for k in range(tools)}
        bundle.update({"__dataset_identifier": "bench", "__metricNamePrefix": ""})
        path = folder / f"b{t}.json"
        path.write_text(json.dumps(bundle))
        ref = DatasetRef(dt, {"skymap": "bench", "tract": t}, run=run)
        datasets.append(FileDataset(path=str(path), refs=[ref], formatter="lsst.daf.butler.formatters.json.JsonFormatter"))
    butler.ingest(*datasets, transfer="move")
    return str(root), run


def peer_read(repo: str, run: str) -> pd.DataFrame:
    from lsst.daf.butler import Butler

    butler = Butler(repo)
    rows = []
    for ref in butler.query_datasets("objectTableCore_metrics", collections=run, explain=False):
        doc = json.loads(butler.getURI(ref).read())
        for tool, ms in doc.items():
            if tool.startswith("__"):
                continue
            for m in ms:
                rows.append({"metric": f"{tool}_{m['metric']}", "value": m["value"], "unit": m["unit"], "tract": ref.dataId["tract"]})
    return pd.DataFrame(rows)


def ours_read(repo: str, run: str) -> pd.DataFrame:
    from lsst.daf.butler import Butler

    from surveyqa.butler.analysis_tools import AnalysisToolsMetrics

    return AnalysisToolsMetrics(Butler(repo), run, metric_information=None).metric_values()


def timed(fn, *args, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_reads(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        repo, run = make_repo(Path(tmp) / "repo", args.tracts, args.tools, args.measurements)
        print(f"A. {args.tracts} bundles × {args.tools} tools × {args.measurements} measurements ingested in {time.perf_counter() - t0:.1f} s")
        for name, fn in (("peer: getURI + json.loads per dataset", peer_read), ("ours: AnalysisToolsMetrics.metric_values", ours_read)):
            seconds, df = timed(fn, repo, run, repeat=args.repeat)
            print(f"   {name:45s} {seconds:7.2f} s  {len(df):8d} rows  {len(df) / seconds:9.0f} rows/s")


def bench_uploads(args) -> None:
    import uvicorn

    from tracking_fixtures import free_port
    from surveyqa.tracking.app import create_app
    from surveyqa.tracking.config import TrackingConfig
    from surveyqa.tracking.seed import seed_definitions
    from surveyqa.tracking.service import TrackingService
    from surveyqa.tracking.tokens import create_token

    job = json.loads(JOB.read_text())
    body = {"measurements": job["measurements"], "meta": job["meta"]}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = TrackingConfig(db=f"sqlite:///{tmp}/track.db", base_url=f"http://127.0.0.1:{port}")
        service = TrackingService.open(config)
        seed_definitions(service.engine)
        token = create_token(service.engine, "bench")
        server = uvicorn.Server(uvicorn.Config(create_app(config, service), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = config.base_url
        http = httpx.Client(timeout=120)

        def squash(build: str) -> int:
            urls = http.get(url + "/squash").json()
            access = http.post(urls["auth"], json={"username": "bench", "password": token}).json()["access_token"]
            meta = {**body["meta"], "env": {**body["meta"]["env"], "ci_id": build, "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00")}}
            return http.post(urls["job"], content=json.dumps({**body, "meta": meta}), headers={"Authorization": f"JWT {access}",
                                                                                            "Content-Type": "application/json"}).status_code

        def ours(build: str) -> int:
            meta = {**body["meta"], "env": {**body["meta"]["env"], "ci_id": build, "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00")}}
            return http.post(url + "/api/jobs", content=json.dumps({**body, "meta": meta}), headers={"Authorization": f"Bearer {token}",
                                                                                                   "Content-Type": "application/json"}).status_code

        print(f"B. {args.uploads} uploads per route of a 30-measurement lsst.verify job (SQLite, seeded, checks on)")
        routes = (("peer: POST /api/jobs (Bearer)", ours, "o"), ("ours: GET /squash, POST auth, POST job (JWT)", squash, "s"))
        times = {name: [] for name, _, _ in routes}
        codes = {name: set() for name, _, _ in routes}
        for i in range(args.uploads):  # alternating, so that both see series of the same length
            for name, fn, prefix in routes:
                t0 = time.perf_counter()
                codes[name].add(fn(f"{prefix}{i}"))
                times[name].append(time.perf_counter() - t0)
        for name, fn, prefix in routes:
            t0 = time.perf_counter()
            retry = fn(f"{prefix}0")
            print(f"   {name:45s} median {1000 * statistics.median(times[name]):6.1f} ms  statuses {sorted(codes[name])}  "
                  f"retry {1000 * (time.perf_counter() - t0):6.1f} ms -> {retry}")
        server.should_exit = True
        thread.join(timeout=30)
        service.engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracts", type=int, default=2000)
    p.add_argument("--tools", type=int, default=5)
    p.add_argument("--measurements", type=int, default=6)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--uploads", type=int, default=20)
    p.add_argument("--only", choices=("reads", "uploads"), default=None)
    args = p.parse_args()
    if args.only != "uploads":
        bench_reads(args)
    if args.only != "reads":
        bench_uploads(args)


if __name__ == "__main__":
    main()
