"""Compare mode: the demo run (every defect injected) against the same survey without defects.

Run A is the clean survey, run B the demo; the demo's truth manifest says which detector, visit
and patch are bad, so the comparison must show exactly those as regressions: in the numbers
(model and JSON over real HTTP), in the browser (headless Chromium), and from the command line.
Screenshots go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, require_chromium
from surveyqa.dashboard import browser

SHOTS = ROOT / "test-artifacts" / "dashboard"


@pytest.fixture(scope="module")
def runs(clean_demo_repo, demo_repo):
    from surveyqa.butler import QARepository
    from surveyqa.dashboard.source import CachedSource

    return CachedSource(QARepository(*clean_demo_repo)), CachedSource(QARepository(*demo_repo))


@pytest.fixture(scope="module")
def server(clean_demo_repo, demo_repo, tmp_path_factory):
    from surveyqa.dashboard import serve

    handle, _ = serve(*clean_demo_repo, compare=demo_repo[0], compare_collection=demo_repo[1],
                      notebook_dir=tmp_path_factory.mktemp("notebooks"))
    yield handle
    handle.stop()


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_quick_look_comparison_puts_the_injected_defects_first(runs, truth):
    from surveyqa.dashboard import compare

    rows = compare.compare_quicklook(*runs)
    regressed = rows[rows["change"] == "regressed"]
    assert len(regressed) and (rows["change"].iloc[:len(regressed)] == "regressed").all(), "regressions come first"
    bad_band = next(v["band"] for v in truth["visits"] if v["visit"] == truth["defects"]["bad_zeropoint_visit"]["visit"])
    names = set(zip(regressed["metric"], regressed["band"].fillna("")))
    assert ("health.zeroPointOffset", bad_band) in names
    assert {"health.astromOffset", "health.emptyCellFraction"} <= set(regressed["metric"])
    # every regression fails in B and passed (or had fewer failing values) in A
    assert ((regressed["status_b"] == "fail") | (regressed["n_fail_b"] > regressed["n_fail_a"])).all()
    # B - A in A's unit
    row = regressed.iloc[0]
    assert row["delta"] == pytest.approx(row["value_b"] - row["value_a"])
    # the zero point defect only touches its band: the other bands of that metric did not regress
    others = rows[(rows["metric"] == "health.zeroPointOffset") & (rows["band"] != bad_band)]
    assert len(others) and not (others["change"] == "regressed").any()


def test_visit_comparison_singles_out_the_bad_detector(runs, truth):
    from surveyqa.dashboard import compare

    bad = truth["defects"]["bad_astrometry_detector"]["detector"]
    visit = truth["visits"][-1]["visit"]
    view = compare.compare_view(*runs, "health.astromOffset", mode="visit", visit=visit)
    assert view.level == "visit" and view.child_key == "detector"
    regressed = view.children.loc[view.children["change"] == "regressed", "detector"].tolist()
    assert regressed == [bad], f"regressed detectors {regressed}, injected bad detector {bad}"
    assert view.children["polygon"].notna().all(), "every detector can be drawn on the sky"


def test_compare_json_over_http(server, truth):
    status, body = get_json(server.url + "api/compare/quicklook.json")
    assert status == 200
    assert body["counts"]["regressed"] > 0 and body["metrics"][0]["change"] == "regressed"
    assert body["header"]["A"]["tracts"] == body["header"]["B"]["tracts"] == len(truth["tracts"])
    tract = truth["tracts"][0]["tract"] if isinstance(truth["tracts"][0], dict) else truth["tracts"][0]
    status, body = get_json(server.url + f"api/compare/metric/health.emptyCellFraction.json?tract={tract}")
    assert status == 200 and body["child_key"] == "patch"
    empty_patch = truth["defects"]["empty_region"]["patch"]
    regressed = [c["patch"] for c in body["children"] if c["change"] == "regressed"]
    assert empty_patch in regressed, f"patch {empty_patch} holds the empty region; regressed: {regressed}"
    # bad input: a clear 4xx with a hint, never a 500
    status, body = get_json(server.url + "api/compare/metric/no.such.metric.json")
    assert status == 404 and "no.such.metric" in body["error"] and body["hint"]
    status, body = get_json(server.url + "api/compare/metric/health.emptyCellFraction.json?tract=abc")
    assert status == 400 and "tract" in body["error"]


def test_compare_routes_answer_404_without_a_second_run(demo_repo):
    from surveyqa.dashboard import serve

    handle, url = serve(*demo_repo)
    try:
        status, body = get_json(url + "api/compare/quicklook.json")
        assert status == 404 and "--compare" in body["hint"]
    finally:
        handle.stop()


@pytest.mark.parametrize("args, message", [
    (["--compare-collection", "qa/other"], "--compare-collection needs --compare"),
    (["--compare", "{repo}"], "with itself"),
    (["--compare", "{repo}", "--compare-collection", "qa/nothing-here"], "qa/nothing-here"),
    (["--cache-mb", "-1"], "--cache-mb"),
])
def test_dashboard_cli_refuses_a_bad_comparison_or_cache_size(demo_repo, args, message):
    repo, collection = demo_repo
    args = [a.format(repo=repo) for a in args]
    surveyqa = Path(sys.executable).parent / "surveyqa"
    result = subprocess.run([str(surveyqa), "dashboard", repo, "--collection", collection, *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


@pytest.mark.browser
@pytest.mark.slow
def test_compare_pages_in_the_browser(server, truth):
    require_chromium(browser.chromium_path())
    SHOTS.mkdir(parents=True, exist_ok=True)
    bad = truth["defects"]["bad_astrometry_detector"]["detector"]
    with browser.launch() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url, wait_until="domcontentloaded")
        page.wait_for_selector(".sq-compare-table .tabulator-row")
        page.screenshot(path=SHOTS / "compare_quicklook.png", full_page=True)
        assert "regressed" in browser.shown(page, ".sq-compare-summary").inner_text()
        first = page.locator(".sq-compare-table .tabulator-row").first
        assert "regressed" in first.inner_text()
        # open the astrometric offset: a visit metric, so the comparison opens in visit mode
        page.locator('.sq-compare-table .tabulator-cell[tabulator-field="metric"]',
                     has_text=re.compile(r"^health\.astromOffset$")).first.click()
        browser.wait_for_plot(page, "compare_sky", ["compare", "level:visits"])
        assert "view=compare_visits" in page.url
        band = re.search(r"band=(\w+)", page.url)  # the row clicked is one band's (or all bands')
        visit = [v["visit"] for v in truth["visits"] if band is None or v["band"] == band.group(1)][-1]
        browser.shown(page, '.sq-compare-children .tabulator-cell[tabulator-field="visit"]',
                     has_text=re.compile(rf"^{visit:,}$")).first.click()
        browser.wait_for_plot(page, "compare_sky", ["compare", "level:visit", f"visit:{visit}"])
        tags = [t for t in browser.plot_tags(page, "compare_sky") if f"visit:{visit}" in t][0]
        assert f"regressed:{bad}" in tags, tags
        page.screenshot(path=SHOTS / "compare_visit.png", full_page=True)
        # the comparison's place is in the address: a reload (or the link, shared) reopens it
        address = page.url
        page.reload(wait_until="domcontentloaded")
        browser.wait_for_plot(page, "compare_sky", ["compare", "level:visit", f"visit:{visit}"])
        assert page.url == address
        assert f"regressed:{bad}" in [t for t in browser.plot_tags(page, "compare_sky") if f"visit:{visit}" in t][0]
        # the same place in run B's own drill-down
        browser.shown(page, ".sq-open-b button").click()
        browser.wait_for_plot(page, "series", ["level:visit", f"visit:{visit}"])
        assert "side=b" in page.url and f"visit={visit}" in page.url
        assert not errors, f"JavaScript errors in the page: {errors}"
