"""Time the compare pages in headless Chromium: the comparison's load, then each drill-down step.

Usage::

    python benchmarks/bench_compare.py REPO_A COLLECTION_A REPO_B COLLECTION_B
        [--metric health.emptyCellFraction] [--visit-metric health.astromOffset] [--repeat 3]

Serves ``REPO_A`` compared with ``REPO_B`` (`surveyqa dashboard A --compare B`) and times, as
`bench_dashboard.py` does for one run (``performance.now()`` from just before the click to the
next level's plot rendered with data and painted): the compare page's load (navigation start
to its table rendered), then, from the mouse button going down, a coadd metric (click its row) -> a tract (click its row) -> back to
the comparison, a visit metric -> a visit (click its row). The peer is the issue's target for
the single-run pages: load < 3 s, each step < 500 ms, on the 2-core machine. "cold" is the
first session of the server; the median is over ``--repeat`` later sessions.
"""

from __future__ import annotations

import argparse
import logging
import re
import time

from surveyqa.butler import QARepository
from surveyqa.dashboard import browser, compare, serve

# a step is timed as in bench_dashboard.py: from the mouse button going down to the new plot painted
from bench_dashboard import MARK, PAINTED, PRESS, SINCE, report  # noqa: E402 - the script's own folder


def _cell(page, table: str, field: str, text: str):
    pattern = re.compile(rf"^{re.escape(text)}$")
    return lambda: browser.shown(page, f'{table} .tabulator-cell[tabulator-field="{field}"]', has_text=pattern).first.click()


def _step(page, action, tags: list[str]) -> float:
    page.evaluate(MARK)
    action()
    browser.wait_for_plot(page, "compare_sky", tags, timeout=120_000)
    return page.evaluate(SINCE) / 1000.0


def run_once(url: str, metric: str, tract: int, visit_metric: str, visit: int, think: float = 0.0) -> dict[str, float]:
    times = {}
    with browser.launch() as page:
        page.add_init_script(PRESS)
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector(".sq-compare-table .tabulator-row", timeout=120_000)
        times["compare (load)"] = page.evaluate(PAINTED) / 1000.0
        page.wait_for_timeout(think * 1000)  # the user reads the comparison before clicking
        times["coadd metric (click row)"] = _step(
            page, _cell(page, ".sq-compare-table", "metric", metric), ["compare", "level:dataset"])
        times["tract (click row)"] = _step(page, _cell(page, ".sq-compare-children", "tract", f"{tract:,}"),
                                           ["compare", "level:tract", f"tract:{tract}"])
        page.evaluate(MARK)
        page.locator(".sq-nav-compare button").click()
        browser.shown(page, ".sq-compare-table .tabulator-row").first.wait_for(timeout=120_000)
        times["back to the comparison"] = page.evaluate(SINCE) / 1000.0
        times["visit metric (click row)"] = _step(
            page, _cell(page, ".sq-compare-table", "metric", visit_metric), ["compare", "level:visits"])
        times["visit (click row)"] = _step(page, _cell(page, ".sq-compare-children", "visit", f"{visit:,}"),
                                           ["compare", "level:visit", f"visit:{visit}"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo_a")
    parser.add_argument("collection_a")
    parser.add_argument("repo_b")
    parser.add_argument("collection_b")
    parser.add_argument("--metric", default="health.emptyCellFraction")
    parser.add_argument("--visit-metric", default="health.astromOffset")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds between the comparison painted and the first click (a user reading it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    a, b = QARepository(args.repo_a, args.collection_a), QARepository(args.repo_b, args.collection_b)
    tract = int(a.tracts()["tract"].iloc[0])
    rows = compare.compare_quicklook(a, b)
    band = rows.loc[rows["metric"] == args.visit_metric, "band"].iloc[0]  # the row clicked: its first band
    visits = compare.compare_view(a, b, args.visit_metric, band, mode="visit").children
    visit = int(visits["visit"].iloc[min(3, len(visits) - 1)])  # near the top of the table: on screen
    print(f"A: {args.repo_a} ({args.collection_a}), B: {args.repo_b} ({args.collection_b}): {len(rows)} metric "
          f"values compared ({', '.join(f'{n} {c}' for c, n in rows['change'].value_counts().items())}); "
          f"{len(a.tracts())} tracts, {len(a.visits())} visits")

    server, url = serve(args.repo_a, args.collection_a, compare=args.repo_b, compare_collection=args.collection_b)
    try:
        t0 = time.perf_counter()
        cold = run_once(url, args.metric, tract, args.visit_metric, visit, args.think)
        print(f"first session (first import of the plotting stack, cold caches): {time.perf_counter() - t0:.1f} s")
        runs = [run_once(url, args.metric, tract, args.visit_metric, visit, args.think) for _ in range(args.repeat)]
        print(f"the first row clicked {args.think:g} s after the comparison was painted")
    finally:
        server.stop()
    report(cold, runs, load_step="compare (load)")


if __name__ == "__main__":
    main()
