"""Time `surveyqa run` on a Rubin-shaped repository of ~10^7 sources, beside `pipetask run`.

Why: the QA must keep up with a Rubin DRP output. This builds (or reuses) a Rubin-shaped
repository (`surveyqa.sim.rubin.make_rubin_survey`, every defect on), runs the QA pipeline over
its ``drp`` collection with `surveyqa.tasks.executor.run_qa` at ``-j 1`` and, as the peer, the
middleware's own ``pipetask run -j 1`` of the same pipeline on the same inputs, and prints:
total, graph build, init, execute, source rows per second past start-up
(``n_sources / (total - graph - init)``), and the split between compute (time inside the pure
functions `surveyqa.tasks.compute.visit_qa` and `tract_qa`, timed by wrapping them in this
process only) and Butler bookkeeping (quantum seconds minus compute, plus the graph, init and
metric-table phases).

Run it (density 2.2e6 per square degree gives ~1.0e7 sources (1.9e6: 8.9e6); 60000 gives ~3e5)::

    .venv/bin/python benchmarks/bench_rubin_run.py --density 60000
    nohup .venv/bin/python benchmarks/bench_rubin_run.py --density 2200000 --keep /tmp/rubin-big \\
        > /tmp/bench_rubin_run.log 2>&1 &
    .venv/bin/python benchmarks/bench_rubin_run.py --repo /tmp/rubin-big/repo --jobs2   # reuse it
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_COMPUTE: dict[str, list[float]] = {}


def _timed(name: str, func):
    """Wrap ``func`` so each call's wall time is added to ``_COMPUTE[name]``."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            _COMPUTE.setdefault(name, []).append(time.perf_counter() - t)

    return wrapper


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(repo: Path, density: float) -> int:
    """Make the Rubin-shaped repository; return its source rows."""
    from surveyqa.sim.rubin import RubinDefects, RubinSimConfig, make_rubin_survey

    t = time.perf_counter()
    truth = make_rubin_survey(str(repo), RubinSimConfig(seed=1, density=density,
                                                        defects=RubinDefects(True, True, True, True)),
                              truth_path=str(repo) + ".truth.json", progress=lambda line: print("  sim:", line,
                                                                                               flush=True))
    sim_s = time.perf_counter() - t
    n = int(truth["n_sources"])
    print(f"sim: {n:,} sources, {len(truth['visits'])} visits, {truth['n_ccds']} ccds in {sim_s:.1f} s "
          f"({n / sim_s:,.0f} rows/s); peak RSS {_rss_mb():,.0f} MB", flush=True)
    return n


def n_sources_of(repo: Path) -> int:
    """Source rows of an existing repository, from its truth file beside it or from the Butler."""
    truth = Path(str(repo) + ".truth.json")
    if truth.is_file():
        data = json.loads(truth.read_text())
        if "n_sources" in data:
            return int(data["n_sources"])
    from lsst.daf.butler import Butler

    butler = Butler.from_config(str(repo), collections=["drp"])
    total = 0
    for ref in butler.query_datasets("sourceTable_visit", explain=False):
        total += butler.get(ref.makeComponentRef("rowcount"))
    return total


def run_surveyqa(repo: Path, jobs: int, output: str) -> dict:
    """`run_qa` over ``drp``; return its figures (compute split only meaningful at jobs=1)."""
    import surveyqa.tasks.compute as compute
    from surveyqa.tasks.executor import run_qa

    _COMPUTE.clear()
    originals = {name: getattr(compute, name) for name in ("visit_qa", "tract_qa")}
    for name, func in originals.items():
        setattr(compute, name, _timed(name, func))
    try:
        t = time.perf_counter()
        result = run_qa(str(repo), ["drp"], output, jobs=jobs, replace=True)
        wall = time.perf_counter() - t
    finally:
        for name, func in originals.items():
            setattr(compute, name, func)
    by_label: dict[str, list[float]] = {}
    for s in result.statuses:
        by_label.setdefault(s.label, []).append(s.seconds)
    quantum_s = sum(s.seconds for s in result.statuses)
    compute_s = sum(sum(v) for v in _COMPUTE.values())
    tm = result.timings
    return {"wall": wall, "timings": dict(tm), "by_label": by_label, "quantum_s": quantum_s,
            "compute": {k: sum(v) for k, v in _COMPUTE.items()}, "compute_s": compute_s,
            "statuses": {st: sum(1 for s in result.statuses if s.status == st)
                         for st in {s.status for s in result.statuses}},
            "n_quanta": len(result.statuses)}


def run_pipetask(repo: Path, output: str) -> tuple[float, int, str]:
    """``pipetask run -j 1`` of the same pipeline; return wall seconds, exit code and its last line."""
    from surveyqa.tasks import PIPELINE

    pipetask = Path(sys.executable).parent / "pipetask"
    t = time.perf_counter()
    proc = subprocess.run([str(pipetask), "run", "-b", str(repo), "-i", "drp", "-o", output, "-p", str(PIPELINE),
                           "--register-dataset-types", "-j", "1"], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if " ERROR" in line or "Error:" in line]
    tail = ((errors[:1] if proc.returncode else []) or lines or [""])[-1][:300]  # a failure: its first error
    return time.perf_counter() - t, proc.returncode, tail


def report(n: int, fig: dict, jobs: int) -> None:
    tm = fig["timings"]
    past_startup = tm["total"] - tm["graph"] - tm["init"]
    print(f"\nsurveyqa run -j {jobs}: {fig['n_quanta']} quanta {fig['statuses']}")
    print(f"  {'phase':<34}{'s':>10}")
    for key in ("graph", "init", "execute", "metric_table", "total"):
        if key in tm:
            print(f"  {key:<34}{tm[key]:>10.1f}")
    for key in sorted(set(tm) - {"graph", "init", "execute", "metric_table", "total"}):
        print(f"  {key:<34}{tm[key]:>10.1f}")
    print(f"  {'source rows/s (whole run)':<34}{n / tm['total']:>10,.0f}")
    print(f"  {'source rows/s past start-up':<34}{n / past_startup:>10,.0f}")
    for label, secs in fig["by_label"].items():
        print(f"  task {label}: {len(secs)} quanta, {sum(secs):.1f} s, max {max(secs):.1f} s")
    if jobs == 1:
        quantum_bk = fig["quantum_s"] - fig["compute_s"]
        phases = sum(tm.get(k, 0.0) for k in ("graph", "init", "metric_table"))
        print(f"  compute (visit_qa+tract_qa)       {fig['compute_s']:>10.1f}   "
              + ", ".join(f"{k} {v:.1f}" for k, v in fig["compute"].items()))
        print(f"  bookkeeping inside quanta         {quantum_bk:>10.1f}")
        print(f"  bookkeeping phases (graph+init+metric_table) {phases:.1f}")
        bk = quantum_bk + phases
        print(f"  bookkeeping total                 {bk:>10.1f}   "
              f"({100 * bk / (bk + fig['compute_s']):.0f}% of bookkeeping+compute)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="example: .venv/bin/python benchmarks/bench_rubin_run.py --density 60000",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--density", type=float, default=2_200_000.0,
                        help="true objects per deg^2 (60000 -> ~3e5 sources, 1.9e6 -> ~1e7)")
    parser.add_argument("--repo", default=None, help="reuse this existing Rubin-shaped repository")
    parser.add_argument("--keep", default=None, help="folder for a new repository (default: temporary, removed)")
    parser.add_argument("--jobs2", action="store_true", help="also time surveyqa run -j 2 (wall clock only)")
    parser.add_argument("--no-pipetask", action="store_true", help="skip the pipetask peer run")
    args = parser.parse_args()

    from surveyqa.metrics.registry import load_default_registry

    load_default_registry()  # one-off import cost, not the run's
    root = None
    if args.repo:
        repo = Path(args.repo)
        n = n_sources_of(repo)
        print(f"reusing {repo}: {n:,} sources", flush=True)
    else:
        root = Path(args.keep or tempfile.mkdtemp(prefix="surveyqa-rubin-"))
        root.mkdir(parents=True, exist_ok=True)
        repo = root / "repo"
        if repo.exists():
            shutil.rmtree(repo)
        n = build(repo, args.density)

    stamp = time.strftime("%Y%m%dT%H%M%S")
    fig1 = run_surveyqa(repo, 1, f"qa/bench-{stamp}")
    report(n, fig1, 1)
    print(f"  peak RSS {_rss_mb():,.0f} MB", flush=True)
    if args.jobs2:
        fig2 = run_surveyqa(repo, 2, f"qa/bench2-{stamp}")
        report(n, fig2, 2)
    if not args.no_pipetask:
        peer_s, rc, tail = run_pipetask(repo, f"qa/pt-{stamp}")
        print(f"\npipetask run -j 1: {peer_s:.1f} s wall (exit {rc}) "
              f"= {n / peer_s:,.0f} source rows/s; last line: {tail}")

    print("\n| run | wall s | source rows/s |")
    print("|---|---|---|")
    print(f"| surveyqa run -j 1 | {fig1['wall']:.1f} | {n / fig1['wall']:,.0f} |")
    if args.jobs2:
        print(f"| surveyqa run -j 2 | {fig2['wall']:.1f} | {n / fig2['wall']:,.0f} |")
    if not args.no_pipetask:
        print(f"| pipetask run -j 1 | {peer_s:.1f} | {n / peer_s:,.0f} |")
    du = subprocess.run(["du", "-sm", str(repo)], capture_output=True, text=True).stdout.split()[0]
    print(f"\n{n:,} source rows; repository {du} MB at {repo}; peak RSS of this process {_rss_mb():,.0f} MB")
    if root is not None and not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
