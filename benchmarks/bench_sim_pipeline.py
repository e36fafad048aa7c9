"""Time the simulated survey and the QA pipeline at a large scale, and say where the time goes.

Makes a survey with every defect (`surveyqa.sim.make_survey`), runs the QA pipeline over it with
`surveyqa run` (in-process executor) and, as the peer, with the middleware's own
`pipetask run -j 1` on the same inputs, then prints rows per second and per-step timings
(simulation steps; quantum-graph build, init and execution; seconds per task label).

Example::

    .venv/bin/python benchmarks/bench_sim_pipeline.py --density 400000 --visits 4 --bands gri
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", type=float, default=400000.0, help="true objects per deg^2")
    parser.add_argument("--visits", type=int, default=4, help="visits per band per tract")
    parser.add_argument("--bands", default="gri")
    parser.add_argument("--tracts", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--no-pipetask", action="store_true", help="skip the pipetask peer run")
    parser.add_argument("--keep", default=None, help="folder for the repository (default: a temporary one)")
    args = parser.parse_args()

    from surveyqa.metrics.registry import load_default_registry
    from surveyqa.sim import DefectConfig, SimConfig, make_survey
    from surveyqa.tasks import PIPELINE
    from surveyqa.tasks.executor import run_qa

    load_default_registry()  # one-off cost, not the run's
    root = Path(args.keep or tempfile.mkdtemp(prefix="surveyqa-bench-"))
    repo = root / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    config = SimConfig(seed=1, tracts=args.tracts, visits=args.visits, bands=tuple(args.bands),
                       density=args.density, defects=DefectConfig.all_on())
    t = time.perf_counter()
    sim = make_survey(str(repo), config, progress=lambda line: None)
    sim_s = time.perf_counter() - t
    print(f"sim: {sim.n_sources:,} source rows, {sim.n_objects:,} objects, {sim.n_visits} visits in {sim_s:.1f} s "
          f"= {sim.n_sources / sim_s:,.0f} source rows/s")
    for step, seconds in sim.timings.items():
        print(f"  sim.{step}: {seconds:.2f} s")

    t = time.perf_counter()
    result = run_qa(str(repo), "sim", "qa/bench", jobs=args.jobs)
    qa_s = time.perf_counter() - t
    by_label: dict[str, list[float]] = {}
    for s in result.statuses:
        by_label.setdefault(s.label, []).append(s.seconds)
    print(f"surveyqa run -j {args.jobs}: {len(result.statuses)} quanta ({len(result.failed)} failed) in {qa_s:.1f} s "
          f"= {sim.n_sources / qa_s:,.0f} source rows/s")
    for step, seconds in result.timings.items():
        print(f"  run.{step}: {seconds:.2f} s")
    for label, secs in by_label.items():
        print(f"  task {label}: {len(secs)} quanta, {sum(secs):.2f} s total, {max(secs):.2f} s max")

    if not args.no_pipetask:
        pipetask = Path(sys.executable).parent / "pipetask"
        t = time.perf_counter()
        proc = subprocess.run([str(pipetask), "run", "-b", str(repo), "-i", "sim", "-o", "qa/peer", "-p",
                               str(PIPELINE), "--register-dataset-types", "-j", "1"], capture_output=True, text=True)
        peer_s = time.perf_counter() - t
        print(f"peer pipetask run -j 1: exit {proc.returncode} (failed quanta expected) in {peer_s:.1f} s "
              f"= {sim.n_sources / peer_s:,.0f} source rows/s")
    import resource

    du = subprocess.run(["du", "-sm", str(repo)], capture_output=True, text=True).stdout.split()[0]
    print(f"repository size: {du} MB at {repo}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
