"""The QA through ctrl_bps + Parsl on this machine against `surveyqa run`: wall time with 1 and 2
Parsl workers, and the per-job start-up overhead against the per-quantum work that sizes the jobs.

    .venv/bin/python benchmarks/bench_bps.py                       # the default demo's density (~5 10^5 sources)
    .venv/bin/python benchmarks/bench_bps.py --density 1000000 --keep /tmp/bps-bench

Builds a Rubin-shaped repository (`surveyqa sim --like hsc-rc2`: 65 visits, tract 9615), then runs

* the peer, `surveyqa run -j 1` (one process, every quantum in it);
* `bps submit` of the shipped local-parsl.yaml with 1 and with 2 Parsl workers, visits grouped
  ``--visits-per-job`` to a job (the shipped 32);
* with ``--ungrouped``, `bps submit` with one visit per job: what an ungrouped workflow costs.

Start-up and work are read from each quantum's own ``<label>_metadata`` (pipe_base records the
process's CPU time when the quantum is prepared and when it ends): a quantum that is the first of
its job has as ``prepCpuTime`` the CPU its job spent before any work (importing the stack, reading
the quantum graph, making the quantum-backed Butler), and ``endCpuTime - prepCpuTime`` is a
quantum's work. CPU seconds, not wall: the
2 cores are shared. Job wall times come from the Parsl workers' logs (received -> completed).
Every run's metric values are checked against `surveyqa run`'s.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd


def _quantum_cpu(repo: str, collection: str) -> pd.DataFrame:
    """label, prep CPU s (process CPU when the quantum started), work CPU s, of every quantum."""
    from lsst.daf.butler import Butler

    butler = Butler.from_config(repo, collections=collection)
    rows = []
    for label in ("qaVisit", "qaTract", "qaWriteManifest"):
        for ref in butler.query_datasets(f"{label}_metadata", explain=False):
            q = butler.get(ref)["quantum"]
            rows.append({"label": label, "prep_cpu": q["prepCpuTime"], "work_cpu": q["endCpuTime"] - q["prepCpuTime"]})
    return pd.DataFrame(rows)


_WORKER = re.compile(r"^(\S+ \S+) .*(Received|Completed) executor task (\d+)")


def _job_walls(runinfo: Path) -> list[float]:
    """Wall seconds of every job of one submission, from its Parsl workers' logs (received -> completed)."""
    start: dict[str, datetime] = {}
    walls = []
    for log in sorted(runinfo.glob("local/block-*/*/worker_*.log")):
        for line in log.read_text().splitlines():
            if m := _WORKER.match(line):
                t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
                if m.group(2) == "Received":
                    start[f"{log.parent}/{m.group(3)}"] = t
                else:
                    walls.append((t - start.pop(f"{log.parent}/{m.group(3)}")).total_seconds())
    return walls


def _source_rows(repo: str) -> int:
    import pyarrow.parquet as pq

    from surveyqa.butler.repo import open_repo

    butler = open_repo(repo)
    refs = butler.query_datasets("sourceTable_visit", collections="drp", explain=False)
    return sum(pq.ParquetFile(butler.getURI(r).ospath).metadata.num_rows for r in refs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", type=float, default=100000.0, help="true objects per square degree")
    parser.add_argument("--visits-per-job", type=int, default=32)
    parser.add_argument("--keep", type=Path, default=None, help="build in (or reuse) this folder")
    parser.add_argument("--ungrouped", action="store_true", help="also one visit per job (65 jobs: slow)")
    parser.add_argument("--dr1-sources", type=float, default=1e10)
    parser.add_argument("--dr1-tracts", type=float, default=1e4)
    parser.add_argument("--sources-per-visit", type=float, default=1e6,
                        help="189 science detectors x ~5,000 sources (a Rubin visit)")
    parser.add_argument("--price", type=float, default=0.04, help="US$ per core-hour (an assumption)")
    args = parser.parse_args()

    from surveyqa.butler import QARepository
    from surveyqa.sim.rubin import RubinDefects, RubinSimConfig, make_rubin_survey
    from surveyqa.tasks import bps
    from surveyqa.tasks.executor import run_qa

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-bps-"))
    work.mkdir(parents=True, exist_ok=True)
    repo = str(work / "repo")
    if not (work / "repo" / "butler.yaml").exists():
        t = time.perf_counter()
        make_rubin_survey(repo, RubinSimConfig(seed=1, density=args.density, defects=RubinDefects.from_names(["all"])),
                          collection="drp")
        print(f"simulated {repo} in {time.perf_counter() - t:.1f} s")
    rows = _source_rows(repo)
    stamp = datetime.now().strftime("%H%M%S")
    print(f"source rows: {rows:,}")

    results = []
    t = time.perf_counter()
    peer = run_qa(repo, "drp", f"qa/peer{stamp}")
    results.append(("surveyqa run -j 1", time.perf_counter() - t, len(peer.statuses), 1))
    want = QARepository(repo, f"qa/peer{stamp}").metric_values()
    print(f"surveyqa run -j 1: {results[-1][1]:.1f} s")

    runs = {}
    plan = [("bps, 1 worker", 1, args.visits_per_job), ("bps, 2 workers", 2, args.visits_per_job)]
    if args.ungrouped:
        plan.append(("bps, 2 workers, 1 visit/job", 2, 1))
    for name, cores, per_job in plan:
        output = f"qa/bps{cores}x{per_job}-{stamp}"
        done = bps.submit(repo, "drp", output, cores=cores, visits_per_job=per_job, workdir=work)
        got = QARepository(repo, output).metric_values()
        pd.testing.assert_frame_equal(got, want)
        walls = _job_walls(max((work / "runinfo").iterdir()))  # Parsl numbers its runs 000, 001, ...
        runs[name] = (output, done, walls)
        results.append((name, done.seconds, len(walls), cores))
        print(f"{name}: {done.seconds:.1f} s, {len(walls)} jobs; values equal surveyqa run's")

    print("\n| run | wall s | jobs (quanta for surveyqa run) | source rows/s |")
    print("|---|---|---|---|")
    for name, seconds, jobs, _ in results:
        print(f"| {name} | {seconds:.1f} | {jobs} | {rows / seconds:,.0f} |")

    grouped = _quantum_cpu(repo, runs["bps, 2 workers"][0])
    visits = grouped[grouped["label"] == "qaVisit"]
    # a quantum that is first in its job started at the job's start-up CPU: the tract's and the
    # manifest's (one quantum per job here) and the visit quantum with the least CPU before it
    firsts = list(grouped[grouped["label"] != "qaVisit"]["prep_cpu"]) + [visits["prep_cpu"].min()]
    startup = statistics.median(firsts)
    work_visit = statistics.median(visits["work_cpu"])
    tract = grouped[grouped["label"] == "qaTract"]["work_cpu"].sum()
    inproc = _quantum_cpu(repo, f"qa/peer{stamp}")
    inproc_visit = statistics.median(inproc[inproc["label"] == "qaVisit"]["work_cpu"])
    print(f"\nper job start-up before its first quantum: {startup:.2f} s CPU (median of {len(firsts)} first quanta)")
    print(f"per visit quantum work: {work_visit:.3f} s CPU in a job, {inproc_visit:.3f} s CPU in surveyqa run; "
          f"per tract quantum: {tract:.2f} s CPU")
    for name, (_, _, walls) in runs.items():
        print(f"{name}: job walls {', '.join(f'{w:.0f}' for w in sorted(walls))} s")
    for per_job in (1, 8, 32, 65):
        share = startup / (startup + per_job * work_visit)
        print(f"  {per_job:>2} visits per job: start-up is {100 * share:.0f} % of a visit job's CPU")
    print(f"source rows per visit: {rows / len(visits):,.0f}; per CPU second of visit work: "
          f"{rows / visits['work_cpu'].sum():,.0f}")
    project(rows, visits["work_cpu"].sum(), tract, startup, args)


def project(rows: int, visit_cpu: float, tract_cpu: float, startup: float, args) -> None:
    """DR1 (10^10 sources, 10^4 tracts) through BPS on N cores, from the CPU figures measured above.

    Work scales with source rows (visit quanta read every source of their visit; a tract quantum
    every object and isolated star of its tract, which scale with the sources); each job adds one
    start-up; the serial steps (graph, manifest, final job) are listed apart, not modelled.
    """
    import math

    sources, tracts = args.dr1_sources, args.dr1_tracts
    visits = sources / args.sources_per_visit
    per_visit = args.sources_per_visit * visit_cpu / rows
    per_tract = sources / tracts * tract_cpu / rows
    # the fewest quanta per job that keep start-up under 10 % of a job's CPU: n >= 9 start-up / work
    n_visits = max(1, math.ceil(9 * startup / per_visit))
    n_tracts = max(1, math.ceil(9 * startup / per_tract))
    jobs = math.ceil(visits / n_visits) + math.ceil(tracts / n_tracts) + 1
    work = sources * (visit_cpu + tract_cpu) / rows
    total = work + jobs * startup
    print(f"\nprojection to DR1: {sources:.0e} sources, {tracts:.0e} tracts, {visits:.0e} visits "
          f"({args.sources_per_visit:.0e} sources each): a visit quantum {per_visit:.0f} s CPU, a tract "
          f"{per_tract:.0f} s; {n_visits} visits and {n_tracts} tracts per job keep start-up under 10 %")
    print("  (per-row figures of small simulated visits overstate the work: their fixed per-quantum costs weigh more)")
    print(f"  work {work / 3600:,.1f} core-h + start-up {jobs:,.0f} jobs x {startup:.1f} s = "
          f"{jobs * startup / 3600:,.1f} core-h; total {total / 3600:,.1f} core-h, "
          f"${total / 3600 * args.price:,.0f} at ${args.price}/core-h")
    print("| cores | wall (parallel part) |")
    print("|---|---|")
    for cores in (2, 64, 512, 4096):
        print(f"| {cores} | {total / cores / 3600:,.2f} h |")


if __name__ == "__main__":
    main()
