"""`surveyqa reproduce`: regenerate one value with ``pipetask run``, debug on, into a new collection.

On a copy of the Rubin-shaped demo repository. The tract's quantum is run again by the very
command `reproduce` prints; every value it writes is compared, bit for bit, with the demo
run's, and the change of config (debug on) is what `provenance --against` reports.
"""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_debug import same_bits

from surveyqa.cli import main
from surveyqa.provenance import value_provenance


@pytest.fixture(scope="module")
def repo_copy(rubin_demo_repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("reproduce") / "repo"
    shutil.copytree(rubin_demo_repo[0], path)
    return str(path), rubin_demo_repo[1]


@pytest.fixture(scope="module")
def tract(repo_copy):
    from lsst.daf.butler import Butler

    ref = Butler.from_config(repo_copy[0]).query_datasets("qaMetricValues_tract", collections=repo_copy[1])[0]
    return ref.dataId["tract"]


@pytest.fixture(scope="module")
def tract_visit(repo_copy, tract):
    """A visit whose calibration offset the tract's quantum measured."""
    from lsst.daf.butler import Butler

    values = Butler.from_config(repo_copy[0]).get("qaMetricValues_tract", skymap="hsc_rings_v1", tract=tract,
                                                   collections=repo_copy[1]).to_pandas()
    return int(values[(values.metric == "health.visitPhotOffset") & (values.level == "visit")].visit.iloc[0])


@pytest.fixture(scope="module")
def reproduced(repo_copy, tract, tract_visit, tmp_path_factory):
    """`surveyqa reproduce --debug --run` of a tract's visit-level calibration value: its stdout."""
    import io
    from contextlib import redirect_stdout

    repo, collection = repo_copy
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["reproduce", repo, "health.visitPhotOffset", "-c", collection, "-d",
                     f"tract = {tract} AND level = 'visit' AND visit = {tract_visit}",
                     "--debug", "--run", "-o", "qa/reproduced", "--dir", str(tmp_path_factory.mktemp("plan"))])
    assert code == 0, out.getvalue()
    return out.getvalue()


def test_reproduce_prints_the_pipetask_command_with_debug_and_the_tract_query(reproduced, tract):
    command = next(line for line in reproduced.splitlines() if line.startswith("pipetask run"))
    assert f"-d \"skymap = 'hsc_rings_v1' AND tract = {tract}\"" in command
    assert "-c qaTract:debug=True" in command and "-o qa/reproduced" in command and "-i drp" in command
    assert "reproduced in qa/reproduced: identical" in reproduced
    assert f"debug dataset: qaTract_debug_starResiduals skymap=hsc_rings_v1 tract={tract}" in reproduced
    assert f"debug dataset: qaTract_debug_residualsVsMag skymap=hsc_rings_v1 tract={tract}" in reproduced


def test_every_value_of_the_regenerated_tract_is_the_same_bit_for_bit(repo_copy, reproduced, tract):
    from lsst.daf.butler import Butler

    butler = Butler.from_config(repo_copy[0])
    for name in ("qaMetricValues_tract", "qaMetricRows_tract"):
        old = butler.get(name, skymap="hsc_rings_v1", tract=tract, collections=repo_copy[1])
        new = butler.get(name, skymap="hsc_rings_v1", tract=tract, collections="qa/reproduced")
        assert new.num_rows == old.num_rows > 0 and new.schema.equals(old.schema)
        for column in old.column_names:
            assert same_bits(new[column], old[column]), f"{name}.{column}"
    residuals = butler.get("qaTract_debug_starResiduals", skymap="hsc_rings_v1", tract=tract,
                           collections="qa/reproduced")
    rows = butler.get("qaMetricRows_tract", skymap="hsc_rings_v1", tract=tract, collections=repo_copy[1])
    photometric = rows.filter(pc.equal(rows["metric"].cast(pa.string()), "health.visitPhotOffset"))
    # the debug table holds every source behind the visit offsets, the same residuals
    assert residuals.num_rows == photometric.num_rows
    assert sorted(residuals["sourceId"].to_pylist()) == sorted(photometric["sourceId"].to_pylist())


def test_provenance_against_the_original_shows_the_config_change_only(repo_copy, reproduced, tract):
    repo, collection = repo_copy
    p = value_provenance(repo, "qa/reproduced", "health.objectCount", f"tract = {tract} AND level = 'tract'",
                         against=collection)
    assert p["config"]["differs_from_defaults"] == {"debug": {"value": True, "default": False}}
    assert p["changes"]["config"] == {"debug": {"value": True, "other": False}}
    assert p["changes"]["packages"] == {}
    assert p["changes"]["inputs"] == {"added": [], "removed": [], "changed": []}
    assert p["task"]["label"] == "qaTract" and p["dataset"]["run"].startswith("qa/reproduced/")


def test_reproduce_without_run_writes_the_plan_and_touches_no_collection(repo_copy, tmp_path, capsys):
    from lsst.daf.butler import Butler
    from lsst.pipe.base import Pipeline

    repo, collection = repo_copy
    butler = Butler.from_config(repo)
    visit = butler.query_datasets("qaMetricValues_visit", collections=collection)[0].dataId["visit"]
    before = sorted(butler.collections.query("*"))
    code = main(["reproduce", repo, "health.psfFwhm", "-c", collection, "-d", f"visit = {visit} AND level = 'visit'",
                 "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and f"-d \"instrument = 'HSC' AND visit = {visit}\"" in out and "debug=True" not in out
    pipeline = Pipeline.from_uri(tmp_path / "pipeline.yaml").to_graph()
    assert list(pipeline.tasks) == ["qaVisit"]
    assert pipeline.tasks["qaVisit"].config.debug is False
    assert (tmp_path / "query.txt").read_text().strip() == f"instrument = 'HSC' AND visit = {visit}"
    butler.registry.refresh()
    assert sorted(butler.collections.query("*")) == before
    # an output collection that exists is refused before anything is written
    assert main(["reproduce", repo, "health.psfFwhm", "-c", collection, "-d", f"visit = {visit} AND level = 'visit'",
                 "-o", collection, "--dir", str(tmp_path / "b")]) == 2
    assert "already exists" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_run_records_say_what_changed_between_two_runs(repo_copy, reproduced, tract):
    """What a tracking alert's "what changed" needs: code, config and input changes of two QA runs."""
    from lsst.daf.butler import Butler

    from surveyqa.provenance import run_changes, run_record

    repo, collection = repo_copy
    old, new = run_record(repo, collection), run_record(repo, "qa/reproduced")
    butler = Butler.from_config(repo)
    holder = butler.find_dataset("qaMetricValues_tract", skymap="hsc_rings_v1", tract=tract, collections=collection)
    assert old["datasets"][f"qaMetricValues_tract skymap=hsc_rings_v1 tract={tract}"] == str(holder.id)
    assert old["packages"]["surveyqa"] == new["packages"]["surveyqa"]
    changes = run_changes(old, new)
    assert changes["code"] == {}
    assert changes["config"] == {"qaTract.debug": {"old": False, "new": True}}
    assert changes["tasks_in_one_only"] == {"old": ["qaVisit", "qaWriteManifest"], "new": []}
    # the same input datasets, but the visit quanta's ccdVisitTable: the reproduced run has no visit quanta
    assert changes["inputs"] == {"changed": {}, "added": [], "removed": ["ccdVisitTable instrument=HSC"]}
