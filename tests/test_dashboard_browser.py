"""The dashboard in headless Chromium on the demo repository: what a user clicks, and what they see.

The demo repository holds a simulated survey with every defect injected; its truth manifest
says which detector, visit and patch are bad, and these tests check the dashboard shows them.
Screenshots go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT, require_chromium
from surveyqa.dashboard import browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = ROOT / "test-artifacts" / "dashboard"


@pytest.fixture(scope="module")
def server(demo_repo, tmp_path_factory):
    from surveyqa.dashboard import serve

    require_chromium(browser.chromium_path())
    handle, url = serve(*demo_repo, notebook_dir=tmp_path_factory.mktemp("notebooks"))
    yield handle
    handle.stop()


@pytest.fixture
def page(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with browser.launch() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        yield page
    assert not errors, f"JavaScript errors in the page: {errors}"


def open_page(page, server, query: str = "") -> None:
    page.goto(server.url + query, wait_until="domcontentloaded")


def click_cell(page, field: str, value: int) -> None:
    """Click the table row whose ``field`` cell reads exactly ``value``."""
    browser.shown(page, f'.tabulator-cell[tabulator-field="{field}"]', has_text=re.compile(rf"^{value:,}$")).first.click()


def test_quick_look_shows_counts_and_injected_defects_in_red(page, server, truth):
    open_page(page, server)
    browser.wait_for_plot(page, "sky", ["level:quicklook"])
    page.screenshot(path=SHOTS / "quicklook.png", full_page=True)
    header = page.locator(".sq-count[data-key='tracts']").inner_text()
    assert header.split()[0] == str(len(truth["tracts"]))
    visits = page.locator(".sq-count[data-key='visits']").inner_text()
    assert visits.split()[0] == str(len(truth["visits"]))
    # the bad detector breaks the astrometric offset, the bad visit the zero-point offset in its band
    bad_band = next(v["band"] for v in truth["visits"] if v["visit"] == truth["defects"]["bad_zeropoint_visit"]["visit"])
    for label in ("health.astromOffset", f"health.zeroPointOffset {bad_band}:", "health.emptyCellFraction"):
        button = page.locator(".sq-fail button", has_text=label)
        assert button.count() >= 1, f"{label} should be a red (failed) button"
        assert "bk-btn-danger" in button.first.get_attribute("class")
    assert page.locator(".sq-pass button").count() > 0, "the metrics the defects do not touch should be green"
    # one bad detector among many: the button says how many values fail and names the worst one
    bad_detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    label = page.locator(".sq-fail button", has_text="health.astromOffset").first.inner_text()
    assert re.search(rf"\d+/\d+ detectors fail, worst .* mas at visit \d+ detector {bad_detector}$", label), label
    assert "median" not in label


def test_a_detector_bad_in_every_visit_is_one_culprit_and_stands_out_on_the_focal_plane(page, server, truth):
    bad_detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    open_page(page, server)
    browser.wait_for_plot(page, "sky", ["level:quicklook"])
    n_visits = len(truth["visits"])
    culprit = browser.shown(page, ".sq-culprit-place button", has_text=f"detector {bad_detector} ({n_visits} of "
                            f"{n_visits} visits)")
    assert culprit.count() == 1, browser.visible_text(page)
    culprit.click()
    browser.wait_for_plot(page, "focalplane", ["level:focalplane", "metric:health.astromOffset"])
    assert "view=focalplane" in page.url
    tags = browser.plot_tags(page, "focalplane")[0]
    assert f"failing:{bad_detector}" in tags, tags
    page.screenshot(path=SHOTS / "focalplane.png", full_page=True)
    browser.click_polygon(page, "focalplane", "detector", bad_detector)
    page.wait_for_selector(f"{browser.SHOWN_PAGE} h3.sq-focal-detector")
    assert f"detector={bad_detector}" in page.url
    band = next(t for t in tags if t.startswith("band:")).split(":")[1]
    in_band = sum(v["band"] == band for v in truth["visits"])
    assert browser.shown(page, "h3.sq-focal-detector").inner_text().startswith(
        f"detector {bad_detector}: {in_band} visits")
    page.reload(wait_until="domcontentloaded")  # the state is in the URL
    browser.wait_for_plot(page, "focalplane", ["level:focalplane", f"band:{band}"])
    assert browser.shown(page, "h3.sq-focal-detector").inner_text().startswith(f"detector {bad_detector}:")


def test_metric_tract_patch_drill_down_and_breadcrumbs(page, server, truth):
    open_page(page, server)
    browser.wait_for_plot(page, "sky", ["level:quicklook"])
    page.locator(".sq-metric button", has_text="validate_drp.PA1 r:").click()
    browser.wait_for_plot(page, "sky", ["level:dataset"])
    tract = truth["tracts"][0]["tract"] if isinstance(truth["tracts"][0], dict) else truth["tracts"][0]
    click_cell(page, "tract", tract)
    browser.wait_for_plot(page, "sky", ["level:tract", f"tract:{tract}"])
    browser.wait_for_plot(page, "scatter", ["level:tract"])
    assert f"tract={tract}" in page.url
    page.screenshot(path=SHOTS / "tract.png", full_page=True)
    # a real mouse click on a patch of the sky plot selects it
    browser.click_polygon(page, "sky", "patch", 6)
    browser.wait_for_plot(page, "scatter", ["level:patch", "patch:6"])
    assert "patch=6" in page.url
    assert browser.shown(page, "h2.sq-title[data-level='patch']").count() == 1
    page.screenshot(path=SHOTS / "patch.png", full_page=True)
    browser.shown(page, ".sq-crumb button", has_text=f"tract {tract}").click()
    browser.wait_for_plot(page, "sky", ["level:tract", f"tract:{tract}"])
    assert "patch=6" not in page.url
    assert browser.shown(page, "h2.sq-title[data-level='tract']").count() == 1


def test_metric_views_built_ahead_stay_hidden_until_clicked(page, server):
    """While the user reads the quick look, the metric views of the first failing metrics (one in
    coadd mode, one in visit mode) are built in the page, hidden; a click shows the metric clicked."""
    open_page(page, server)
    browser.wait_for_plot(page, "sky", ["level:quicklook"])
    page.locator(".sq-page-drill_coadd").wait_for(state="attached")
    page.locator(".sq-page-drill_visits").wait_for(state="attached")
    text = browser.visible_text(page)
    assert "quick look" in text and "value against magnitude" not in text and "against its number" not in text
    assert browser.plot_tags(page, "series") == [] and browser.plot_tags(page, "scatter") == []
    page.locator(".sq-metric button", has_text="validate_drp.PA1 r:").click()
    browser.wait_for_plot(page, "sky", ["level:dataset"])
    title = browser.shown(page, "h2.sq-title").inner_text()
    assert title.startswith("validate_drp.PA1"), title
    assert "view=metric" in page.url and "metric=validate_drp.PA1" in page.url
    assert [t for t in browser.plot_tags(page, "sky") if "level:quicklook" in t] == []
    browser.shown(page, ".sq-crumb button", has_text="quick look").click()
    browser.wait_for_plot(page, "sky", ["level:quicklook"])
    assert browser.plot_tags(page, "scatter") == []
    # the address says quick look too: a reload opens it, not the metric left
    page.wait_for_function("() => !window.location.search.includes('metric=')", timeout=30_000)
    page.reload(wait_until="domcontentloaded")
    browser.wait_for_plot(page, "sky", ["level:quicklook"])


def test_a_click_at_once_shows_the_rows_of_the_metric_clicked(page, server, truth):
    """Clicked as soon as the quick look appears, while the session builds pages ahead, a metric's
    table ends up with its own rows (the bad visit first among the zero-point outliers), not those
    of the place the page was built at. (The demo is small: rows lost while the browser built the
    table, `drill_view.resend_tables`, showed at 100 tracts, in `benchmarks/bench_dashboard.py`.)"""
    from playwright.sync_api import expect

    bad = truth["defects"]["bad_zeropoint_visit"]["visit"]
    band = next(v["band"] for v in truth["visits"] if v["visit"] == bad)
    open_page(page, server)
    browser.wait_for_plot(page, "sky", ["level:quicklook"])
    page.locator(".sq-metric button", has_text=f"health.zeroPointOffset {band}:").click()
    browser.wait_for_plot(page, "series", ["level:visits"])
    first = browser.shown(page, '.sq-children .tabulator-row .tabulator-cell[tabulator-field="visit"]').first
    expect(first).to_have_text(f"{bad:,}", timeout=15_000)


def test_visit_mode_highlights_the_injected_bad_detector(page, server, truth):
    bad_detector = truth["defects"]["bad_astrometry_detector"]["detector"]
    open_page(page, server, "?view=visits&metric=health.astromOffset")
    browser.wait_for_plot(page, "series", ["level:visits"])
    page.screenshot(path=SHOTS / "visits.png", full_page=True)
    visit = truth["visits"][-1]["visit"]
    click_cell(page, "visit", visit)
    browser.wait_for_plot(page, "series", ["level:visit", f"visit:{visit}"])
    tags = [t for t in browser.plot_tags(page, "series") if f"visit:{visit}" in t][0]
    outliers = next(t for t in tags if t.startswith("outliers:")).split(":")[1]
    assert outliers == str(bad_detector), f"outlier detectors {outliers!r}, injected bad detector {bad_detector}"
    page.screenshot(path=SHOTS / "visit_detectors.png", full_page=True)
    click_cell(page, "detector", bad_detector)
    page.wait_for_selector("h2.sq-title[data-level='detector']")
    assert f"detector={bad_detector}" in page.url


def test_bad_visit_stands_out_against_visit_number(page, server, truth):
    bad_visit = truth["defects"]["bad_zeropoint_visit"]["visit"]
    open_page(page, server, "?view=visits&metric=health.zeroPointOffset")
    browser.wait_for_plot(page, "series", ["level:visits"])
    tags = browser.plot_tags(page, "series")[0]
    outliers = next(t for t in tags if t.startswith("outliers:")).split(":")[1].split(",")
    assert str(bad_visit) in outliers
    page.screenshot(path=SHOTS / "zeropoint_visits.png", full_page=True)


def test_overlapping_visits_jump_into_visit_mode(page, server, truth):
    tract = truth["tracts"][0]["tract"] if isinstance(truth["tracts"][0], dict) else truth["tracts"][0]
    open_page(page, server, f"?view=metric&metric=validate_drp.PA1&band=r&tract={tract}&show_visits=true")
    browser.wait_for_plot(page, "sky", ["level:tract", f"visits:{len(truth['visits'])}"])
    page.screenshot(path=SHOTS / "tract_visit_outlines.png", full_page=True)
    visit = truth["visits"][0]["visit"]
    page.locator(".sq-overlapping-visits").locator('.tabulator-cell[tabulator-field="visit"]',
                                                   has_text=re.compile(rf"^{visit:,}$")).click()
    browser.wait_for_plot(page, "series", ["level:visit", f"visit:{visit}"])
    page.wait_for_url(re.compile("view=visits"))


def test_failures_are_listed_and_drawn_on_the_sky(page, server, truth):
    failing = truth["defects"]["outside_refcat"]["failing"]
    open_page(page, server)
    browser.wait_for_plot(page, "sky", ["level:quicklook"])
    page.locator(".sq-nav-failures button").click()
    # 90 s: the first failures page of a server reads every quantum's status; slow with both cores busy
    browser.wait_for_plot(page, "failures_sky", ["level:failures", f"n:{len(failing)}"], timeout=90_000)
    # the title is its own pane: under load it can render after the plot (seen in CI), so wait for it too
    browser.shown(page, "h2.sq-title").filter(has_text=f"{len(failing)} failed quanta").wait_for(timeout=30_000)
    text = browser.visible_text(page)
    assert f"{len(failing)} failed quanta" in text
    assert "NoReferenceObjectsError" in text
    page.screenshot(path=SHOTS / "failures.png", full_page=True)


def test_a_page_error_is_shown_to_the_user(page, server):
    open_page(page, server, "?view=metric&metric=no.such.metric")
    page.wait_for_selector(".sq-error >> text=no metric 'no.such.metric'")
    page.screenshot(path=SHOTS / "error.png", full_page=True)


def test_open_in_jupyter_writes_the_notebook(page, server):
    open_page(page, server, "?view=metric&metric=validate_drp.PA1&band=r")
    browser.wait_for_plot(page, "sky", ["level:dataset"])
    with page.expect_download() as download:
        browser.shown(page, ".sq-jupyter").locator("a, button").first.click()
    assert download.value.suggested_filename == "surveyqa_PA1_r.ipynb"
    path = browser.shown(page, "code.sq-notebook").inner_text()
    setup = Path(path).read_text()
    # the repository by the absolute path the server resolved: the notebook runs from any folder
    assert Path(server.config.repo).is_absolute() and repr(server.config.repo)[1:-1] in setup
    assert "metric_view(repo, 'validate_drp.PA1', band='r')" in setup.replace('\\"', '"')


def test_a_box_selection_in_one_metric_highlights_the_same_data_ids_in_the_others(page, server, truth):
    bad_visit = truth["defects"]["bad_zeropoint_visit"]["visit"]
    band = next(v["band"] for v in truth["visits"] if v["visit"] == bad_visit)
    metrics = "health.astromOffset,health.photRefOffset,health.zeroPointOffset"
    open_page(page, server, f"?view=linked&metrics={metrics}&band={band}")
    for i in range(3):
        browser.wait_for_plot(page, f"linked_{i}", ["level:linked"])
    assert browser.selected_indices(page, "linked_0") == []
    # the bad visit's detectors all sit far above the others in the photometric offset: box them there
    browser.drag_box(page, "linked_1", (-0.5, 200.0), (8.5, 1e6))
    selected = browser.shown(page, ".sq-linked-selected[data-n]")
    selected.wait_for()
    text = selected.inner_text()
    page.screenshot(path=SHOTS / "linked.png", full_page=True)
    in_visit = [d for d in text.split(": ", 1)[1].split(", ")]
    assert in_visit and all(name.startswith(f"visit {bad_visit} detector ") for name in in_visit), text
    picked = browser.selected_indices(page, "linked_1")
    assert picked and browser.selected_indices(page, "linked_0") == picked == browser.selected_indices(
        page, "linked_2")
    assert browser.selected_indices(page, "linked_sky") == picked
    # the selection is in the address: a reload (or the link, shared) selects the same data IDs
    page.wait_for_function("() => window.location.search.includes('selected=')", timeout=30_000)
    assert f"selected={bad_visit}." in page.url
    page.reload(wait_until="domcontentloaded")
    browser.wait_for_plot(page, "linked_2", ["level:linked"])
    browser.shown(page, ".sq-linked-selected[data-n]").wait_for()
    assert browser.selected_indices(page, "linked_0") == picked == browser.selected_indices(page, "linked_sky")
    browser.shown(page, ".sq-linked-clear button").click()
    browser.shown(page, ".sq-linked-selected:not([data-n])").wait_for()
    assert browser.selected_indices(page, "linked_0") == []
    page.wait_for_function("() => !window.location.search.includes('selected=')", timeout=30_000)
    page.reload(wait_until="domcontentloaded")  # the metrics are in the URL
    browser.wait_for_plot(page, "linked_2", ["level:linked", "metric:health.zeroPointOffset"])
