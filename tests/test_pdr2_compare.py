"""Compare mode on real data: HSC PDR2 tracts observed through the old and the new r filter.

HSC replaced its r filter (HSC-R) by HSC-R2 during the survey; PDR2 holds per-tract metrics of
both. Each filter's rows are ingested into its own collection of one repository (A: HSC-R,
B: HSC-R2, both band r), and the dashboard compares the two collections. The expected deltas,
counts and "only in" rows are derived here from the raw table.
"""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

from surveyqa.cli import main

METRIC, COLUMN = "validate_drp.PA1", "validate_drp.PA1.design_gri"


@pytest.fixture(scope="module")
def raw(shared_data) -> pd.DataFrame:
    table = pd.read_parquet(shared_data / "hsc_pdr2_dashboard" / "PDR2_metrics.parq")
    table.index = table.index.set_names(["filter", "tract"])
    return table


@pytest.fixture(scope="module")
def server(raw, shared_data, tmp_path_factory):
    from surveyqa.dashboard import serve

    folder = tmp_path_factory.mktemp("pdr2-compare")
    repo = folder / "repo"
    skymap = shared_data / "hsc_pdr2_dashboard" / "deepCoadd_skyMap.csv"
    for name in ("HSC-R", "HSC-R2"):
        part = folder / f"{name}.parq"
        raw[raw.index.get_level_values("filter") == name].to_parquet(part)
        assert main(["ingest", str(repo), str(part), "-c", f"hsc/pdr2/{name}", "--skymap-csv", str(skymap)]) == 0
    handle, _ = serve(repo, "hsc/pdr2/HSC-R", compare=str(repo), compare_collection="hsc/pdr2/HSC-R2")
    yield handle
    handle.stop()


def test_tracts_seen_through_both_r_filters_are_compared_tract_by_tract(server, raw):
    flat = raw.reset_index()
    old = flat[flat["filter"] == "HSC-R"].set_index("tract")[COLUMN].dropna()
    new = flat[flat["filter"] == "HSC-R2"].set_index("tract")[COLUMN].dropna()
    both = old.index.intersection(new.index)
    assert len(both) > 10, "PDR2 has tracts observed through both r filters"

    body = httpx.get(server.url + f"api/compare/metric/{METRIC}.json", params={"band": "r"}, timeout=300).json()
    assert body["child_key"] == "tract" and body["unit"] == "mmag"
    children = pd.DataFrame(body["children"]).set_index("tract")
    assert set(children.index) == set(old.index) | set(new.index)
    assert (children.loc[old.index.difference(new.index), "change"] == "only in A").all()
    assert (children.loc[new.index.difference(old.index), "change"] == "only in B").all()
    delta = children.loc[both, "delta"].astype(float)
    np.testing.assert_allclose(delta.to_numpy(), (new[both] - old[both]).to_numpy(), rtol=1e-9, atol=1e-12)
    # both runs fail the 5 mmag design spec in every tract: what changes is the value, not the status
    assert set(children.loc[both, "change"]) <= {"changed", "same"}

    rows = httpx.get(server.url + "api/compare/quicklook.json", timeout=300).json()["metrics"]
    pa1 = next(r for r in rows if r["metric"] == METRIC and r["band"] == "r")
    # each run as its quick look summarises it: many tract values, so its worst one (no median)
    assert pa1["value_a"] == pytest.approx(old.max()) and pa1["value_b"] == pytest.approx(new.max())
