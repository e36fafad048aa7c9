"""Does the compiled per-object kernel pay on the paths `surveyqa run` takes?

Why: the kernel (`surveyqa.metrics.actions._segments`, with its plumbing ~1,500 lines) must earn
its place where the QA pipeline runs, not only in `surveyqa measure`. This runs the tract task's
pure function `surveyqa.tasks.compute.tract_qa` (where every per-object statistic of the QA
pipeline is computed) on the tract of a Rubin-shaped repository, twice with the kernel and twice
with it switched off (`segments.available` patched to False: the numpy code), counts the calls
in which the kernel was actually used, and checks that the values are the same.

Run it on a repository made by `bench_rubin_run.py --keep DIR` (about 10^7 sources)::

    .venv/bin/python benchmarks/bench_kernel_run_paths.py --repo /tmp/rubin-big/repo
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="a Rubin-shaped repository (surveyqa sim --like hsc-rc2)")
    parser.add_argument("--collection", default="drp")
    parser.add_argument("--max-stars", type=int, default=10000, help="qaTract's max_srd_stars (its default)")
    args = parser.parse_args()

    import surveyqa.metrics.actions.compute as actions
    from lsst.daf.butler import Butler
    from surveyqa.metrics.actions import segments
    from surveyqa.tasks import compute

    butler = Butler.from_config(args.repo, collections=args.collection)
    (tract_ref,) = butler.query_datasets("objectTable_tract")
    data_id = dict(tract_ref.dataId.required)
    arrow = {"storageClass": "ArrowTable"}
    objects = butler.get(tract_ref, **arrow)
    assoc = butler.get("isolated_star_presource_associations", data_id, instrument="HSC", **arrow)
    presources = butler.get("isolated_star_presources", data_id, instrument="HSC", **arrow)
    visits = {ref.dataId["visit"]: butler.get(ref, parameters={"columns": compute.MATCH_COLUMNS}, **arrow)
              for ref in butler.query_datasets("sourceTable_visit")}
    print(f"tract {data_id['tract']}: {objects.num_rows:,} objects, {presources.num_rows:,} isolated-star sources, "
          f"{sum(t.num_rows for t in visits.values()):,} visit sources")

    used = {"n": 0}
    fused = actions._fused_object_stats

    def counting(*a, **k):
        out = fused(*a, **k)
        used["n"] += out is not None
        return out

    actions._fused_object_stats = counting
    available = segments.available
    results = {}
    print(f"| tract_qa (max_srd_stars={args.max_stars}) | s | kernel used in calls |\n|---|---|---|")
    for kernel in (True, False, True, False):
        segments.available = available if kernel else (lambda: False)
        used["n"] = 0
        t = time.perf_counter()
        _, values = compute.tract_qa(objects, assoc, presources, data_id["tract"], "HSC", args.max_stars or None,
                                     visits)
        seconds = time.perf_counter() - t
        segments.available = available
        results.setdefault(kernel, []).append(values.column("value").to_numpy(zero_copy_only=False))
        print(f"| {'kernel' if kernel else 'numpy'} | {seconds:.2f} | {used['n']} |")
    same = all(np.allclose(a, b, rtol=1e-9, equal_nan=True) for a in results[True] for b in results[False])
    print(f"values identical with and without the kernel: {same}")


if __name__ == "__main__":
    main()
