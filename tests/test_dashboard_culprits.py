"""The quick look names what is wrong and where, on the default demo (Rubin-shaped DRP outputs on
real HSC registry records, with every realistic defect) and names none of it on the clean twin.

The truth file beside the demo repository says where each defect was injected (visit, detector,
column, patch) and which metric must single it out; a user reads the quick look without clicking.
"""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import ROOT, require_chromium
from surveyqa.dashboard import browser

SHOTS = ROOT / "test-artifacts" / "dashboard"


def expected_place(defect: dict) -> str:
    """How a person names the place of a defect: ``visit 424 detector 39``, ``tract 9615 patch 15``."""
    if "column" in defect:
        return f"visit {defect['visit']} column {defect['column']}"
    if defect["level"] == "detector":
        return f"visit {defect['visit']} detector {defect['detector']}"
    if defect["level"] == "visit":
        return f"visit {defect['visit']}"
    return f"tract {defect['tract']} patch {defect['patch']}"


@pytest.fixture(scope="module")
def defects(rubin_demo_repo) -> dict:
    from surveyqa.demo import truth_path

    return json.loads(truth_path(rubin_demo_repo[0]).read_text())["defects"]


@pytest.fixture(scope="module")
def servers(rubin_demo_repo, clean_rubin_demo_repo, tmp_path_factory):
    from surveyqa.dashboard import serve

    handles = {name: serve(*repo, notebook_dir=tmp_path_factory.mktemp(f"nb-{name}"))[0]
               for name, repo in (("demo", rubin_demo_repo), ("clean", clean_rubin_demo_repo))}
    yield handles
    for handle in handles.values():
        handle.stop()


def quicklook_json(server) -> dict:
    response = httpx.get(server.url.rstrip("/") + "/api/quicklook.json", timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def test_quicklook_json_has_one_culprit_per_injected_defect_with_its_metric(servers, defects):
    culprits = {c["place"]: c for c in quicklook_json(servers["demo"])["culprits"]}
    for name, defect in defects.items():
        place = expected_place(defect)
        assert place in culprits, f"{name}: no culprit {place!r} in {list(culprits)}"
        assert defect["metric"] in {f["metric"] for f in culprits[place]["flags"]}, (name, culprits[place])
        keys = {k: defect[k] for k in ("patch", "visit", "detector") if k in defect}
        assert keys.items() <= culprits[place]["data_id"].items()


def test_clean_twin_names_no_injected_place(servers, defects):
    places = {c["place"] for c in quicklook_json(servers["clean"])["culprits"]}
    assert not places & {expected_place(d) for d in defects.values()}, places


def test_quick_look_names_each_culprit_without_a_click_and_one_click_opens_it(servers, defects):
    require_chromium(browser.chromium_path())
    SHOTS.mkdir(parents=True, exist_ok=True)
    with browser.launch() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(servers["demo"].url, wait_until="domcontentloaded")
        browser.wait_for_plot(page, "sky", ["level:quicklook"])
        page.screenshot(path=SHOTS / "rubin_quicklook.png", full_page=True)
        text = browser.visible_text(page)
        for name, defect in defects.items():
            place = expected_place(defect)
            assert place in text, f"{name}: {place!r} not on the quick look"
            flags = browser.shown(page, f".sq-culprit-flags[data-place='{place}']").inner_text()
            assert defect["metric"] in flags, (name, flags)
        detector = defects["astrometry_detector"]
        browser.shown(page, ".sq-culprit-place button", has_text=expected_place(detector)).click()
        page.wait_for_selector(f"{browser.SHOWN_PAGE} h2.sq-title[data-level='detector']")
        assert f"visit={detector['visit']}" in page.url and f"detector={detector['detector']}" in page.url
        assert f"metric={detector['metric']}" in page.url
        page.goto(servers["clean"].url, wait_until="domcontentloaded")
        browser.wait_for_plot(page, "sky", ["level:quicklook"])
        # a passing metric's button may name its worst value's place; what is wrong names none
        clean = " ".join(browser.shown(page, ".sq-culprit-place button").all_inner_texts())
        page.screenshot(path=SHOTS / "rubin_clean_quicklook.png", full_page=True)
        for defect in defects.values():
            assert expected_place(defect) not in clean
        assert not errors, errors
