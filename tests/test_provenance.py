"""`surveyqa provenance` on the Rubin-shaped demo repository: from a metric value to what made it.

Every expectation is read from the repository itself (the Butler's registry, the run's
``<label>_metadata`` and ``packages``), not written down here: the task that ran the quantum,
the dataset IDs of the visit's ``sourceTable_visit`` and of the tract's tables.
"""

from __future__ import annotations

import json

import pytest

import surveyqa
from surveyqa.cli import main
from surveyqa.provenance import value_provenance


@pytest.fixture(scope="module")
def butler(rubin_demo_repo):
    from lsst.daf.butler import Butler

    return Butler.from_config(rubin_demo_repo[0])


@pytest.fixture(scope="module")
def visit_value(rubin_demo_repo, butler):
    """A visit-level value of the run: (visit, its provenance)."""
    table = butler.get("qaMetricValues", collections=rubin_demo_repo[1]).to_pandas()
    rows = table[(table.metric == "health.psfFwhm") & (table.level == "visit")]
    visit = int(rows.visit.iloc[len(rows) // 2])
    return visit, value_provenance(*rubin_demo_repo, "health.psfFwhm", f"visit = {visit} AND level = 'visit'")


def _inputs(p: dict, dataset_type: str) -> list[dict]:
    return [e for e in p["inputs"] if e["dataset_type"] == dataset_type]


def test_visit_value_names_its_dataset_task_config_packages_and_the_visits_source_table(rubin_demo_repo, butler,
                                                                                         visit_value):
    visit, p = visit_value
    repo, collection = rubin_demo_repo
    holder = butler.find_dataset("qaMetricValues_visit", instrument="HSC", visit=visit, collections=collection)
    assert p["dataset"] == {"dataset_type": "qaMetricValues_visit", "data_id": {"instrument": "HSC", "visit": visit},
                            "run": holder.run, "id": str(holder.id)}
    assert [r["visit"] for r in p["values"]] == [visit] and p["values"][0]["metric"] == "health.psfFwhm"
    assert p["task"]["label"] == "qaVisit"
    assert p["task"]["class"] == "surveyqa.tasks.pipeline_tasks.QaVisitTask"
    # the quantum's own metadata lists this dataset among the outputs it wrote
    metadata = butler.get(butler.get_dataset(p["task"]["metadata"]["id"]))
    assert str(holder.id) in [str(x) for x in metadata["quantum"].to_dict()["outputs"]]
    assert p["config"]["dataset_type"] == "qaVisit_config" and p["config"]["values"]["debug"] is False
    assert p["config"]["differs_from_defaults"] == {}
    assert p["packages"]["versions"]["surveyqa"] == surveyqa.__version__
    assert p["packages"]["versions"]["daf_butler"] == butler.get("packages", collections=holder.run)["daf_butler"]
    sources = butler.find_dataset("sourceTable_visit", instrument="HSC", visit=visit, collections=collection)
    assert _inputs(p, "sourceTable_visit") == [{"dataset_type": "sourceTable_visit",
                                                "data_id": {"instrument": "HSC", "visit": visit},
                                                "run": sources.run, "id": str(sources.id)}]
    assert [e["id"] for e in _inputs(p, "ccdVisitTable")] == [
        str(butler.find_dataset("ccdVisitTable", instrument="HSC", collections=collection).id)]


def test_tract_value_lists_the_tracts_tables_and_its_overlapping_visits(rubin_demo_repo, butler):
    repo, collection = rubin_demo_repo
    holder = butler.query_datasets("qaMetricValues_tract", collections=collection)[0]
    tract, skymap = holder.dataId["tract"], holder.dataId["skymap"]
    p = value_provenance(repo, collection, "health.objectCount", f"tract = {tract} AND level = 'tract'", depth=2)
    assert p["task"]["label"] == "qaTract" and p["dataset"]["data_id"]["tract"] == tract
    for name in ("objectTable_tract", "isolated_star_presources", "isolated_star_presource_associations"):
        expected = butler.query_datasets(name, collections=collection, data_id={"skymap": skymap, "tract": tract})
        assert [e["id"] for e in _inputs(p, name)] == [str(r.id) for r in expected], name
    # the tract's quantum read the sourceTable_visit of every visit that overlaps it, and only those
    overlapping = {r.dataId["visit"] for r in butler.query_datasets(
        "sourceTable_visit", collections=collection, data_id={"skymap": skymap, "tract": tract})}
    assert {e["data_id"]["visit"] for e in _inputs(p, "sourceTable_visit")} == overlapping
    # the simulated DRP inputs were put outside any quantum: nothing further back is recorded
    assert not any("task" in e for e in p["inputs"])


def test_json_cli_prints_dataset_task_config_packages_and_inputs(rubin_demo_repo, visit_value, capsys):
    visit, expected = visit_value
    code = main(["provenance", rubin_demo_repo[0], "health.psfFwhm", "--collection", rubin_demo_repo[1],
                 "--where", f"visit = {visit} AND level = 'visit'", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"dataset", "task", "config", "packages", "inputs"} <= set(out)
    assert out["dataset"] == expected["dataset"] and out["task"]["label"] == "qaVisit"
    for entry in out["inputs"]:
        assert set(entry) >= {"dataset_type", "data_id", "run", "id"}


def test_text_cli_names_the_task_and_the_visits_source_table(rubin_demo_repo, visit_value, capsys):
    visit, p = visit_value
    code = main(["provenance", rubin_demo_repo[0], "health.psfFwhm", "-c", rubin_demo_repo[1],
                 "-d", f"visit = {visit} AND level = 'visit'"])
    out = capsys.readouterr().out
    assert code == 0
    assert "task      qaVisit (surveyqa.tasks.pipeline_tasks.QaVisitTask)" in out
    assert f"sourceTable_visit instrument=HSC visit={visit}  run" in out
    assert f"surveyqa {surveyqa.__version__}" in out


@pytest.mark.parametrize("args, needle", [
    (["health.noSuchMetric"], "no metric 'health.noSuchMetric'"),
    (["health.psfFwhm", "-d", "visit = -5"], "no value of health.psfFwhm"),
    (["health.psfFwhm", "-d", "vist = 5"], "cannot apply --where"),
    (["health.psfFwhm", "-d", "level = 'visit'"], "lie in"),  # every visit: one dataset each
    (["health.psfFwhm", "-d", "visit = (SELECT 1 FROM read_csv('/etc/passwd'))"], "cannot apply --where"),
    (["health.psfFwhm", "--depth", "0"], "depth must be at least 1"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(rubin_demo_repo, butler, args, needle, capsys):
    before = sorted(butler.collections.query("*"))
    code = main(["provenance", rubin_demo_repo[0], *args[:1], "-c", rubin_demo_repo[1], *args[1:]])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("Error: ") and needle in err and len(err.strip().splitlines()) == 1
    butler.registry.refresh()
    assert sorted(butler.collections.query("*")) == before


def test_unknown_collection_and_not_a_repository(rubin_demo_repo, tmp_path, capsys):
    assert main(["provenance", rubin_demo_repo[0], "health.psfFwhm", "-c", "qa/nope"]) == 2
    assert "collection 'qa/nope' does not exist" in capsys.readouterr().err
    assert main(["provenance", str(tmp_path), "health.psfFwhm", "-c", "qa/demo"]) == 2
    assert "is not a Butler repository" in capsys.readouterr().err
