"""The real HSC PDR2 per-tract metrics, brought into a Butler repository with `surveyqa ingest`
(with the real HSC ring skymap) and explored in the same dashboard as a QA run.

Expected numbers are derived here from the raw table: HSC-R and HSC-R2 are both band r, so the
quick look's PA1 in r is the median over every (tract, r filter) value of the table's
``validate_drp.PA1.design_gri`` column.
"""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

from surveyqa.cli import main
from surveyqa.dashboard import browser


@pytest.fixture(scope="module")
def pdr2(shared_data, tmp_path_factory):
    folder = shared_data / "hsc_pdr2_dashboard"
    repo = tmp_path_factory.mktemp("pdr2") / "repo"
    assert main(["ingest", str(repo), str(folder / "PDR2_metrics.parq"), "-c", "hsc/pdr2",
                 "--skymap-csv", str(folder / "deepCoadd_skyMap.csv")]) == 0
    raw = pd.read_parquet(folder / "PDR2_metrics.parq")
    raw.index = raw.index.set_names(["filter", "tract"])
    return repo, raw.reset_index()


@pytest.fixture(scope="module")
def server(pdr2):
    from surveyqa.dashboard import serve

    handle, _ = serve(pdr2[0], "hsc/pdr2")
    yield handle
    handle.stop()


def test_every_filter_keeps_its_own_value(pdr2):
    from surveyqa.butler import QARepository

    repo, raw = pdr2
    values = QARepository(repo, "hsc/pdr2").metric_values("validate_drp.PA1")
    assert not values.duplicated(["tract", "band", "physical_filter"]).any()
    # The gri column holds the g, r, i filters' values, the uzy column the y filter's.
    gri = raw[raw["filter"].isin(["HSC-G", "HSC-R", "HSC-R2", "HSC-I", "HSC-I2"])]["validate_drp.PA1.design_gri"]
    uzy = raw[raw["filter"] == "HSC-Y"]["validate_drp.PA1.design_uzy"]
    assert len(values) == gri.notna().sum() + uzy.notna().sum()


def test_quick_look_of_the_real_survey(pdr2, server):
    _, raw = pdr2
    page = httpx.get(server.url.rstrip("/") + "/api/quicklook.json", timeout=120).json()
    assert page["header"]["tracts"] == raw["tract"].nunique()
    r_rows = raw[raw["filter"].isin(["HSC-R", "HSC-R2"])]["validate_drp.PA1.design_gri"].dropna()
    pa1_r = next(m for m in page["metrics"] if m["metric"] == "validate_drp.PA1" and m["band"] == "r")
    # one value per (tract, physical filter): the quick look counts them and names the worst, and
    # draws no median of them (no metric defines one)
    assert pa1_r["level"] == "tract" and pa1_r["n"] == len(r_rows) and pa1_r["value"] is None
    assert pa1_r["unit"] == "mmag"
    # HSC PDR2's ~12 mmag repeatability is above the 5 mmag design requirement of LPM-17.
    assert pa1_r["status"] == "fail" and pa1_r["n_fail"] == int((r_rows > 5.0).sum())
    assert pa1_r["worst"] == pytest.approx(r_rows.max())
    worst_tract = int(raw.loc[r_rows.idxmax(), "tract"])
    assert pa1_r["worst_text"] == f"tract {worst_tract}"
    listed = {m["metric"] for m in page["metrics"]}
    assert listed == {m for m in listed if m.startswith("validate_drp.")}, "only metrics the table holds"


def test_drill_into_one_real_tract(pdr2, server):
    _, raw = pdr2
    row = raw[(raw["filter"] == "HSC-R2")].dropna(subset=["validate_drp.PA1.design_gri"]).iloc[0]
    page = httpx.get(server.url.rstrip("/") + "/api/metric/validate_drp.PA1.json",
                     params={"band": "r", "tract": int(row["tract"])}, timeout=120).json()
    values = {v["physical_filter"]: v["value"] for v in page["values"]}
    assert values["HSC-R2"] == pytest.approx(row["validate_drp.PA1.design_gri"])
    assert [c["label"] for c in page["breadcrumbs"]][-1] == f"tract {int(row['tract'])}"


@pytest.mark.browser
def test_quick_look_page_draws_the_real_tracts(server, tmp_path):
    with browser.launch() as page:
        page.goto(server.url, wait_until="domcontentloaded")
        browser.wait_for_plot(page, "sky", ["level:quicklook"])
        page.screenshot(path=tmp_path / "pdr2-quicklook.png", full_page=True)
        assert page.locator(".sq-count[data-key='tracts']").inner_text().split()[0] == "686"
        assert page.locator(".sq-fail button", has_text="validate_drp.PA1").count() >= 1
