"""Every JSON route of the demo, swept over its metrics, bands, levels and data IDs, and hostile input.

A user types addresses by hand and follows old links: whatever the query, the dashboard must
answer what it has (200) or say what was wrong (4xx with ``error`` and ``hint``), never a 500,
and never an empty 200 for a data ID or band the run does not have. The data IDs come from
the JSON routes themselves (the tracts a metric lists, the patches of a tract, the visits, the
detectors of a visit), over real HTTP on a real server of the demo repository; the pages are
checked in headless Chromium (`test_bad_addresses_are_said_in_the_red_banner`).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import pytest

from conftest import require_chromium
from surveyqa.dashboard import api, browser

#: Integers a data ID must refuse (400): not integers, negative, beyond int64, spaces, unicode digits.
BAD_INTEGERS = ["abc", "-1", str(10**22), " 1", "1.5", "1e3", "0x10", "١٠٠", "①", "ü"]
#: Metrics no run has (404), among them a path and unicode.
BAD_METRICS = ["no.such.metric", "../../etc/passwd", "métrique", "validate_drp.PA1 ", "%00", "<script>"]
#: Bands no metric has (400: the hint lists the metric's bands).
BAD_BANDS = ["zz", " r", "R", "ü", "g,r"]
#: Routes that take a metric, and the data-ID keys of each (first the parent, then the child).
DRILL_ROUTES = {"metric": ("tract", "patch"), "visits": ("visit", "detector"), "focalplane": ("detector",)}


@pytest.fixture(scope="module")
def server(demo_repo, tmp_path_factory):
    from surveyqa.dashboard import serve

    handle, _ = serve(*demo_repo, notebook_dir=tmp_path_factory.mktemp("notebooks"))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def compare_server(demo_repo, tmp_path_factory):
    """The demo compared with itself (two readers of one collection): the compare routes' paths."""
    from surveyqa.butler import QARepository
    from surveyqa.dashboard import serve_source

    handle, _ = serve_source(QARepository(*demo_repo), repo=demo_repo[0], collection=demo_repo[1],
                             compare=QARepository(*demo_repo), compare_repo=demo_repo[0],
                             compare_collection=demo_repo[1], notebook_dir=tmp_path_factory.mktemp("notebooks"))
    yield handle
    handle.stop()


class Sweep:
    """GET many paths of one server (several at once: the server serves them concurrently) and
    check each answer: no 5xx, and every 4xx a JSON body with ``error`` and ``hint``."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.answers: dict[str, tuple[int, dict]] = {}

    def get(self, path: str) -> tuple[int, dict]:
        if path not in self.answers:
            self.many([path])
        return self.answers[path]

    def many(self, paths: list[str]) -> list[tuple[int, dict]]:
        todo = [p for p in dict.fromkeys(paths) if p not in self.answers]
        with httpx.Client(timeout=120) as client, ThreadPoolExecutor(4) as pool:
            for path, answer in zip(todo, pool.map(lambda p: self._fetch(client, p), todo)):
                self.answers[path] = answer
        return [self.answers[p] for p in paths]

    def _fetch(self, client: httpx.Client, path: str) -> tuple[int, dict]:
        response = client.get(self.url + path)
        assert response.status_code < 500, f"{path}: {response.status_code} {response.text[:500]}"
        assert response.headers["content-type"].startswith("application/json"), f"{path}: {response.text[:200]}"
        body = response.json()
        if response.status_code >= 400:
            assert body.get("error") and body.get("hint"), f"{path}: {response.status_code} without a hint: {body}"
        return response.status_code, body


def _path(route: str, metric: str, **query) -> str:
    given = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items() if v is not None)
    return f"/api/{route}/{quote(metric, safe='')}.json" + (f"?{given}" if given else "")


@pytest.fixture(scope="module")
def sweep(server) -> Sweep:
    return Sweep(server.url)


@pytest.fixture(scope="module")
def places(sweep) -> dict:
    """Every metric with its bands, and the data IDs the routes list: tracts, patches of each
    tract, visits, detectors of each visit."""
    status, manifest = sweep.get("/api/manifest.json")
    assert status == 200
    metrics = {m["name"]: m for m in manifest["metrics"]}
    tops = dict(zip(metrics, sweep.many([_path("metric", m) for m in metrics])))
    series = dict(zip(metrics, sweep.many([_path("visits", m) for m in metrics])))
    bands = {m: tops[m][1]["bands"] for m in metrics}
    tracts = sorted({c["tract"] for _, top in tops.values() for c in top["children"]})
    visits = sorted({c["visit"] for _, top in series.values() for c in top["children"]})
    assert tracts and visits and all(status == 200 for status, _ in [*tops.values(), *series.values()])
    patches, detectors = {}, {}
    for tract in tracts:  # every metric's tract view is swept anyway: the patches any of them lists
        answers = sweep.many([_path("metric", m, tract=tract) for m in metrics])
        patches[tract] = sorted({c["patch"] for status, page in answers if status == 200 for c in page["children"]})
    # a visit view reads that visit's per-source rows (~0.3 s cold): one metric per visit, in turn
    per_detector = [m for m, entry in metrics.items() if "detector" in entry.get("levels", [])]
    for i, visit in enumerate(visits):
        status, page = sweep.get(_path("visits", per_detector[i % len(per_detector)], visit=visit))
        detectors[visit] = sorted(c["detector"] for c in page["children"]) if status == 200 else []
    assert all(patches.values()) and all(detectors.values())
    return {"metrics": metrics, "bands": bands, "tracts": tracts, "patches": patches, "visits": visits,
            "detectors": detectors}


def _rotate(items: list, i: int, n: int) -> list:
    """``n`` of ``items`` starting at the ``i``-th share: over the metrics, every item is taken."""
    return [items[(i * n + k) % len(items)] for k in range(min(n, len(items)))] if items else []


def test_every_metric_band_level_and_data_id_answers(sweep, places):
    """Each metric x each of its bands (and none) at the top of each mode; each tract, patches
    of each tract, visits and detectors of a visit (every one of them for some metric)."""
    paths, expect = [], {}
    for i, (metric, entry) in enumerate(places["metrics"].items()):
        for band in [None, *places["bands"][metric]]:
            paths += [_path(route, metric, band=band) for route in DRILL_ROUTES]
            for tract in places["tracts"]:
                path = _path("metric", metric, band=band, tract=tract)
                paths.append(path)
                expect[path] = {"tract": tract, "patch": None}
        for tract in places["tracts"]:
            for patch in _rotate(places["patches"][tract], i, 3):
                path = _path("metric", metric, tract=tract, patch=patch)
                paths.append(path)
                expect[path] = {"tract": tract, "patch": patch}
        for visit in _rotate(places["visits"], i, 1):
            path = _path("visits", metric, visit=visit)
            paths.append(path)
            expect[path] = {"visit": visit, "detector": None}
            for detector in _rotate(places["detectors"][visit], i, 2):
                path = _path("visits", metric, visit=visit, detector=detector)
                paths.append(path)
                expect[path] = {"visit": visit, "detector": detector}
        if "detector" in entry.get("levels", []):
            for band in places["bands"][metric] or [None]:
                paths += [_path("focalplane", metric, band=band, detector=d) for d in places["detectors"][
                    places["visits"][i % len(places["visits"])]]]
    answers = dict(zip(paths, sweep.many(paths)))
    for path, selection in expect.items():
        status, page = answers[path]
        assert status == 200 and page["selection"] == selection, (path, status, page.get("error"))
    for path, (status, page) in answers.items():
        # only a metric with no value per detector has no focal plane (400, said so)
        assert status == 200 or ("/focalplane/" in path and "no per-detector values" in page["error"]), (path, page)
    covered = {(m, b) for m in places["metrics"] for b in places["bands"][m]}
    assert all(any(f"/{quote(m, safe='')}.json?band={b}" in p for p in paths) for m, b in covered)
    assert {v for p in expect for v in re.findall(r"visit=(\d+)", p)} == {str(v) for v in places["visits"]}


def test_every_visit_of_a_nearly_constant_metric_answers(sweep, places):
    """The simulated PSF FWHM is nearly the same in every source of a visit: the histogram of its
    rows once failed ("Too many bins for data range": a 500 at
    ``/api/visits/health.psfFwhm.json?visit=101001`` and 43 other places)."""
    visits = places["visits"]
    paths = [_path("visits", "health.psfFwhm", visit=v) for v in visits]
    paths += [_path("visits", "health.psfFwhm", visit=visits[0], detector=d) for d in places["detectors"][visits[0]]]
    answers = dict(zip(paths, sweep.many(paths)))
    assert all(status == 200 and page["rows"]["n"] for status, page in answers.values())


def test_other_json_routes_answer(sweep, places):
    """The quick look (its sky map of a few metrics, in each of their bands: each is a whole quick
    look, ~0.5 s), the failures and the manifest."""
    mapped = list(places["metrics"])[::6]
    paths = ["/api/quicklook.json", "/api/failures.json", "/api/manifest.json",
             *(f"/api/quicklook.json?sky_metric={quote(m)}" for m in mapped),
             *(f"/api/quicklook.json?sky_metric={quote(m)}&sky_band={b}" for m in mapped[:2]
               for b in places["bands"][m])]
    answers = dict(zip(paths, sweep.many(paths)))
    assert all(status == 200 for status, _ in answers.values()), {p: a[1] for p, a in answers.items() if a[0] != 200}


def test_linked_metrics_answer_at_every_level_they_share(sweep, places):
    """Pairs of metrics stored at the same level, in each band they have, and hostile lists."""
    by_level: dict[str, list[str]] = {}
    for name, entry in places["metrics"].items():
        for level in ("detector", "visit", "patch", "tract"):
            if level in entry.get("levels", []):
                by_level.setdefault(level, []).append(name)
    paths = []
    for level, names in by_level.items():
        for a, b in zip(names, names[1:] + names[:1]):
            paths.append(f"/api/linked.json?metrics={quote(a)},{quote(b)}&level={level}")
            paths += [f"/api/linked.json?metrics={quote(a)},{quote(b)}&level={level}&band={band}"
                      for band in sorted(set(places["bands"][a]) | set(places["bands"][b]))]
    answers = dict(zip(paths, sweep.many(paths)))
    for path, (status, page) in answers.items():  # a band only the other metric has is said so
        assert status == 200 and page["rows"] or (status == 400 and "band" in page["error"]), (path, page)
    hostile = {f"/api/linked.json?metrics={quote(m)}": 404 for m in BAD_METRICS}
    hostile.update({"/api/linked.json?metrics=" + ",".join(list(places["metrics"])[:7]): 400,
                    "/api/linked.json?metrics=health.psfFwhm,health.zeroPoint&level=%00": 400})
    for path, (status, page) in zip(hostile, sweep.many(list(hostile))):
        assert status == hostile[path] and page["error"] and page["hint"], (path, status, page)


def test_every_route_is_swept():
    swept = {"/api/quicklook.json", "/api/failures.json", "/api/manifest.json", "/api/metric/<metric>.json",
             "/api/linked.json",
             "/api/visits/<metric>.json", "/api/focalplane/<metric>.json", "/api/compare/quicklook.json",
             "/api/compare/metric/<metric>.json", "/api/compare/visits/<metric>.json"}
    owned_elsewhere = {"/api/notebook.ipynb", "/api/jupyter"}  # their own tests (tests/test_dashboard_api.py)
    assert set(api.ROUTES) - owned_elsewhere == swept


def test_hostile_values_answer_4xx_with_a_hint(sweep, places):
    metric, visit_metric, detector_metric = "validate_drp.PA1", "health.zeroPointOffset", "health.astromOffset"
    tract, visit = places["tracts"][0], places["visits"][0]
    cases: dict[str, int] = {}
    for value in BAD_INTEGERS:
        for key in ("tract", "patch"):
            cases[_path("metric", metric, tract=tract if key == "patch" else value,
                        patch=value if key == "patch" else None)] = 400
        for key in ("visit", "detector"):
            cases[_path("visits", visit_metric, visit=visit if key == "detector" else value,
                        detector=value if key == "detector" else None)] = 400
        cases[_path("focalplane", detector_metric, detector=value)] = 400
    for route in DRILL_ROUTES:
        for name in BAD_METRICS:
            cases[_path(route, name)] = 404
        for band in BAD_BANDS:
            cases[_path(route, detector_metric, band=band)] = 400
    cases[_path("metric", metric, band="zz", tract=tract)] = 400
    cases[_path("visits", visit_metric, band="zz", visit=visit)] = 400
    cases["/api/quicklook.json?sky_band=zz"] = 400
    cases["/api/quicklook.json?sky_metric=no.such.metric"] = 404
    cases["/api/metric/.json"] = 404  # no metric at all: no route
    cases["/api/nothing.json"] = 404
    answers = dict(zip(cases, sweep.many(list(cases))))
    wrong = {p: (answers[p][0], answers[p][1].get("error")) for p, status in cases.items() if answers[p][0] != status}
    assert not wrong, wrong
    assert "bands of health.astromOffset: g, i, r" in answers[_path("metric", detector_metric, band="zz")][1]["hint"]


def test_empty_values_are_absent(sweep):
    """An empty value is no value (a form's empty field): the level above, not an error."""
    status, page = sweep.get("/api/metric/validate_drp.PA1.json?band=&tract=&patch=")
    assert status == 200 and page["level"] == "dataset"


def test_unknown_data_ids_answer_404_not_an_empty_page(sweep, places):
    tract, visit = places["tracts"][0], places["visits"][0]
    patches, detectors = places["patches"][tract], places["detectors"][visit]
    cases = {
        _path("metric", "validate_drp.PA1", tract=999): "no tract 999 in this repository",
        _path("metric", "validate_drp.PA1", tract=tract, patch=max(patches) + 1):
            f"no patch {max(patches) + 1} in tract {tract}",
        _path("metric", "validate_drp.PA1", tract=10**18): f"no tract {10**18} in this repository",
        _path("visits", "health.astromOffset", visit=max(places["visits"]) + 1):
            f"no visit {max(places['visits']) + 1} in this repository",
        _path("visits", "health.astromOffset", visit=visit, detector=max(detectors) + 1):
            f"no detector {max(detectors) + 1} in visit {visit}",
        _path("focalplane", "health.astromOffset", detector=max(detectors) + 1): f"no detector {max(detectors) + 1}",
    }
    for path, (status, body) in zip(cases, sweep.many(list(cases))):
        assert status == 404 and body["error"].startswith(cases[path]), (path, body)
        assert "known" in body["hint"], body


def test_malformed_levels_answer_400(sweep):
    for path, needle in [(_path("metric", "validate_drp.PA1", patch=3), "needs its tract"),
                         (_path("visits", "health.astromOffset", detector=3), "needs its visit")]:
        status, body = sweep.get(path)
        assert status == 400 and needle in body["error"]


def test_compare_routes_sweep(compare_server, places, sweep):
    """The compare routes, on the demo compared with itself: each metric's top level, a band,
    the data IDs one level down, and the same hostile values; without --compare, 404."""
    other = Sweep(compare_server.url)
    status, page = other.get("/api/compare/quicklook.json")
    assert status == 200 and page["metrics"] and set(page["counts"]) >= {"same"}
    tract, visit = places["tracts"][0], places["visits"][0]
    paths = []
    for i, metric in enumerate(places["metrics"]):  # each metric's top level; one level down for every 4th
        band = (places["bands"][metric] or [None])[i % max(1, len(places["bands"][metric]))]
        paths += [_path("compare/metric", metric, band=band), _path("compare/visits", metric, band=band)]
        if i % 4 == 0:
            paths += [_path("compare/metric", metric, tract=tract, patch=_rotate(places["patches"][tract], i, 1)[0]),
                      _path("compare/visits", metric, visit=visit)]
    answers = other.many(paths)
    assert all(status == 200 for status, _ in answers), [(p, a[1].get("error")) for p, a in zip(paths, answers)
                                                          if a[0] != 200]
    bad = {_path("compare/metric", "validate_drp.PA1", tract="abc"): 400,
           _path("compare/metric", "validate_drp.PA1", tract=10**22): 400,
           _path("compare/visits", "health.astromOffset", visit=-1): 400,
           _path("compare/metric", "validate_drp.PA1", band="zz"): 400,
           _path("compare/metric", "validate_drp.PA1", tract=999): 404,
           _path("compare/visits", "health.astromOffset", visit=visit, detector=99): 404,
           _path("compare/metric", "../../etc/passwd"): 404}
    got = dict(zip(bad, other.many(list(bad))))
    assert {p: got[p][0] for p in bad} == bad, {p: got[p][1].get("error") for p in bad}
    for path in ["/api/compare/quicklook.json", _path("compare/metric", "validate_drp.PA1")]:
        status, body = sweep.get(path)
        assert status == 404 and "compares no second run" in body["error"]


# -- concurrent clients ---------------------------------------------------------------------------

def test_threads_asking_one_key_share_one_computation():
    """`CachedSource.memo` from 8 threads at once: one computes, the others wait for its result."""
    import threading
    import time

    import pandas as pd

    from surveyqa.dashboard.source import CachedSource, TableSource

    cached = CachedSource(TableSource(pd.DataFrame({"metric": ["m"], "value": [1.0], "level": ["tract"]})))
    calls, results = [], []
    start = threading.Barrier(8)

    def compute() -> list:
        calls.append(threading.get_ident())
        time.sleep(0.2)  # long enough for every thread to ask while it runs
        return [cached.metric_values(metric="m")]

    def ask() -> None:
        start.wait()
        results.append(cached.memo(("view", "m"), compute))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 8 and all(r is results[0] for r in results)


def test_concurrent_clients_of_one_cold_url_get_the_same_answer(server, places):
    metric = list(places["metrics"])[-1]
    tract = places["tracts"][0]
    patch = places["patches"][tract][-1]
    path = server.url.rstrip("/") + _path("metric", metric, band=places["bands"][metric][-1] if places["bands"][metric]
                                          else None, tract=tract, patch=patch)
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: client.get(path), range(20)))
    assert {a.status_code for a in answers} == {200} and len({a.text for a in answers}) == 1


# -- the pages: a bad address is said in the red banner ------------------------------------------

@pytest.fixture
def page(server):
    require_chromium(browser.chromium_path())
    with browser.launch() as page:
        yield page


#: An element's text, its shadow roots' included (Panel draws the banner's Markdown in one).
_DEEP_TEXT = """(el) => {
  const walk = (n) => (n.shadowRoot ? walk(n.shadowRoot) : "")
      + [...n.childNodes].map((c) => (c.nodeType === 3 ? c.textContent : walk(c))).join("");
  return walk(el);
}"""


def _banner(page, needle: str) -> str:
    """The red banner's text, once it shows ``needle``."""
    banner = page.locator(".sq-error").filter(has_text=needle)
    banner.wait_for(state="visible", timeout=60_000)
    return banner.evaluate(_DEEP_TEXT)


@pytest.mark.browser
@pytest.mark.slow
def test_bad_addresses_are_said_in_the_red_banner(page, server):
    from playwright.sync_api import expect

    cases = {
        "?view=metric&metric=validate_drp.PA1&tract=abc": "tract='abc' is not an integer",
        "?view=metric&metric=validate_drp.PA1&band=zz": "validate_drp.PA1 has no values in band 'zz'",
        "?view=visits&metric=health.astromOffset&visit=-1": "visit -1 is out of range",
        "?view=metric&metric=validate_drp.PA1&tract=999": "no tract 999 in this repository",
        "?view=nonsense": "no view 'nonsense'",
        "?view=metric&metric=no.such.metric": "no metric 'no.such.metric'",
        "?view=linked&metrics=health.astromOffset,health.photRefOffset&selected=1.2.3": "is not a detector data ID",
    }
    for query, needle in cases.items():
        page.goto(server.url + query, wait_until="domcontentloaded")
        text = _banner(page, needle)
        assert "Error" in text, text
        assert page.locator(browser.SHOWN_PAGE).count() == 0, f"{query}: a page is shown beside the error"
    # from a bad address, the navigation leads on and the banner goes
    page.locator(".sq-nav-home button").click()
    browser.wait_for_plot(page, "sky", ["level:quicklook"])
    expect(page.locator(".sq-error")).to_be_hidden()
    # and a good address opens its page without a banner
    page.goto(server.url + "?view=metric&metric=validate_drp.PA1&band=r", wait_until="domcontentloaded")
    browser.wait_for_plot(page, "sky", ["level:dataset"])
    expect(page.locator(".sq-error")).to_be_hidden()


@pytest.mark.browser
@pytest.mark.slow
def test_band_zz_names_the_bands_the_metric_has(page, server):
    page.goto(server.url + "?view=metric&metric=validate_drp.PA1&band=zz", wait_until="domcontentloaded")
    assert "bands of validate_drp.PA1: g, i, r" in _banner(page, "has no values in band 'zz'")
