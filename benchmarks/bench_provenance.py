"""Time provenance look-ups and the cost of the QA tasks' debug mode, each beside its peer.

Usage::

    python benchmarks/bench_provenance.py REPO COLLECTION [--visits 5] [--repeat 3]

On a QA repository (`surveyqa demo` makes one): ``value_provenance`` of a visit value and of a
tract value, at depth 1 and 3, against the peer of reading the dataset that holds the value
(``butler.get``, what a reader does anyway); then the visit task over ``--visits`` visits with
``debug`` off and on (`surveyqa run` with a one-task pipeline, in new collections of REPO), the
per-quantum seconds of each side, and whether their values are identical. Prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo")
    parser.add_argument("collection")
    parser.add_argument("--visits", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from lsst.daf.butler import Butler

    from surveyqa.provenance import value_provenance
    from surveyqa.tasks.executor import run_qa

    butler = Butler.from_config(args.repo, writeable=True)
    values = butler.get("qaMetricValues", collections=args.collection).to_pandas()
    visit = int(values[(values.metric == "health.psfFwhm") & (values.level == "visit")].visit.iloc[0])
    tract_ref = butler.query_datasets("qaMetricValues_tract", collections=args.collection)[0]
    tract = tract_ref.dataId["tract"]
    visit_ref = butler.find_dataset("qaMetricValues_visit", instrument=tract_ref.dataId.get("instrument") or "HSC",
                                    visit=visit, collections=args.collection)
    print(f"provenance look-ups on {args.repo} ({args.collection}), median of {args.repeat}, seconds:")
    print(f"  {'what':52s} {'provenance':>10s} {'peer: butler.get':>17s}")
    cases = [("visit value health.psfFwhm", "health.psfFwhm", f"visit = {visit} AND level = 'visit'", visit_ref),
             ("tract value health.objectCount", "health.objectCount", f"tract = {tract} AND level = 'tract'",
              tract_ref)]
    for label, metric, where, ref in cases:
        peer = _median_time(lambda: butler.get(ref), args.repeat)
        for depth in (1, 3):
            ours = _median_time(lambda: value_provenance(args.repo, args.collection, metric, where, depth=depth,
                                                         butler=butler), args.repeat)
            p = value_provenance(args.repo, args.collection, metric, where, depth=depth, butler=butler)
            name = f"{label}, depth {depth} ({len(p['inputs'])} inputs)"
            print(f"  {name:52s} {ours:10.2f} {peer:17.3f}")

    visits = sorted({r.dataId["visit"] for r in butler.query_datasets("qaMetricValues_visit",
                                                                       collections=args.collection)})
    chosen = visits[:: max(len(visits) // args.visits, 1)][: args.visits]
    where = f"visit IN ({', '.join(map(str, chosen))})"
    stamp = time.strftime("%Y%m%dT%H%M%S")
    seconds, tables = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for debug in (False, True):
            pipeline = Path(tmp) / f"visit-{debug}.yaml"
            pipeline.write_text("description: bench\ntasks:\n  qaVisit:\n    class: surveyqa.tasks.pipeline_tasks."
                                f"QaVisitTask\n    config:\n      debug: {str(debug).lower()}\n")
            output = f"bench/debug-{str(debug).lower()}/{stamp}"
            result = run_qa(args.repo, [c for c in butler.collections.get_info(args.collection).children
                                        if not c.startswith(args.collection + "/")], output, pipeline=pipeline,
                            where=where)
            seconds[debug] = statistics.median(s.seconds for s in result.statuses if s.label == "qaVisit")
            butler.registry.refresh()
            tables[debug] = [butler.get("qaMetricValues_visit", instrument="HSC", visit=v, collections=output)
                             for v in chosen]
    same = all(a.column("value").equals(b.column("value")) for a, b in zip(tables[False], tables[True]))
    print(f"qaVisit over {len(chosen)} visits, median seconds per quantum: debug off (peer) {seconds[False]:.2f}, "
          f"debug on {seconds[True]:.2f} (x{seconds[True] / seconds[False]:.1f}); values identical: {same}")


if __name__ == "__main__":
    main()
