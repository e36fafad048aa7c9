"""The dashboard's "where does this number come from": the link on a metric view, the graph page
in headless Chromium, and its JSON twin over real HTTP, on the Rubin-shaped demo repository."""

from __future__ import annotations

import httpx
import pytest

from conftest import ROOT, require_chromium
from surveyqa.dashboard import browser

SHOTS = ROOT / "test-artifacts" / "provenance"


@pytest.fixture(scope="module")
def server(rubin_demo_repo, tmp_path_factory):
    from surveyqa.dashboard import serve

    handle, _ = serve(*rubin_demo_repo, notebook_dir=tmp_path_factory.mktemp("notebooks"))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def visit(rubin_demo_repo):
    from lsst.daf.butler import Butler

    refs = Butler.from_config(rubin_demo_repo[0]).query_datasets("qaMetricValues_visit", collections=rubin_demo_repo[1])
    return sorted(r.dataId["visit"] for r in refs)[len(refs) // 2]


def test_json_twin_names_the_task_and_the_visits_source_table(server, visit):
    r = httpx.get(f"{server.url}api/provenance/health.psfFwhm.json?visit={visit}&level=visit", timeout=60)
    assert r.status_code == 200
    body = r.json()
    assert body["task"]["label"] == "qaVisit" and body["dataset"]["data_id"]["visit"] == visit
    labels = {n["label"] for n in body["graph"]["nodes"]}
    assert f"sourceTable_visit instrument=HSC visit={visit}" in labels
    assert f"qaMetricValues_visit instrument=HSC visit={visit}" in labels
    ids = {n["id"] for n in body["graph"]["nodes"]}
    assert all(a in ids and b in ids for a, b in body["graph"]["edges"])


@pytest.mark.parametrize("query, status, needle", [
    ("health.psfFwhm.json?visit=abc", 400, "not an integer"),
    ("health.psfFwhm.json?band=i%27%20OR%201=1--", 400, "not a band name"),
    ("health.psfFwhm.json?level=sky", 400, "not a level"),
    ("health.noSuchMetric.json?visit=1", 404, "no metric"),
    ("health.psfFwhm.json?visit=999999&level=visit", 404, "no value"),
    ("health.psfFwhm.json?level=visit", 400, "datasets"),
])
def test_bad_queries_answer_4xx_with_a_hint(server, query, status, needle):
    r = httpx.get(f"{server.url}api/provenance/{query}", timeout=60)
    assert r.status_code == status and needle in r.json()["error"] and r.json()["hint"]


@pytest.mark.browser
def test_metric_view_link_opens_the_graph_of_that_value(server, visit):
    require_chromium(browser.chromium_path())
    SHOTS.mkdir(parents=True, exist_ok=True)
    with browser.launch() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}?view=visits&metric=health.psfFwhm&visit={visit}", wait_until="domcontentloaded")
        link = browser.shown(page, "a.sq-provenance-link")
        link.wait_for(timeout=60_000)
        href = link.get_attribute("href")
        assert f"visit={visit}" in href and "level=visit" in href
        with page.context.expect_page() as opened:
            link.click()
        graph = opened.value
        graph.wait_for_selector("svg.sq-prov-graph", timeout=60_000)
        graph.screenshot(path=SHOTS / "visit_value.png", full_page=True)
        tasks = graph.locator(".sq-prov-task text").all_text_contents()
        inputs = graph.locator(".sq-prov-input text").all_text_contents()
        assert tasks == [f"qaVisit instrument=HSC visit={visit}"]
        assert f"sourceTable_visit instrument=HSC visit={visit}" in inputs
        assert any(t.startswith("ccdVisitTable") for t in inputs)
        # the page draws the graph of its JSON twin, node for node
        twin = httpx.get(server.url.rstrip("/") + graph.locator("a.sq-prov-json").get_attribute("href"), timeout=60)
        assert graph.locator(".sq-prov-node").count() == len(twin.json()["graph"]["nodes"])
        assert graph.locator(".sq-prov-edge").count() == len(twin.json()["graph"]["edges"])
    assert not errors, errors


def test_every_provenance_route_is_documented():
    from surveyqa.dashboard.provenance_view import PROVENANCE_ROUTES

    doc = (ROOT / "docs" / "provenance.md").read_text()
    for route in PROVENANCE_ROUTES:
        assert route in doc, f"{route} is not in docs/provenance.md"
