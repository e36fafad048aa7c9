"""Debug mode of the QA tasks: one boolean, extra ``<label>_debug_*`` datasets, and the same values bit for bit.

Run on a copy of the Rubin-shaped demo repository (the session's repository is shared with
other tests and stays as it was): the visit task with ``debug: true`` over a few visits, its
values compared with those of the demo's run, made with debug off.
"""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.compute as pc
import pytest

from surveyqa.tasks import pipeline_tasks


@pytest.fixture(scope="module")
def repo_copy(rubin_demo_repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("debug") / "repo"
    shutil.copytree(rubin_demo_repo[0], path)
    return str(path), rubin_demo_repo[1]


@pytest.fixture(scope="module")
def debug_run(repo_copy, tmp_path_factory):
    """The visit task alone, debug on, over three visits of the demo: (butler, visits, output)."""
    from lsst.daf.butler import Butler

    from surveyqa.tasks.executor import run_qa

    repo, collection = repo_copy
    butler = Butler.from_config(repo)
    visits = sorted({r.dataId["visit"] for r in butler.query_datasets("qaMetricValues_visit",
                                                                       collections=collection)})[::20][:3]
    pipeline = tmp_path_factory.mktemp("pipeline") / "visit-debug.yaml"
    pipeline.write_text("description: the visit task with its debug mode on\ntasks:\n  qaVisit:\n"
                        "    class: surveyqa.tasks.pipeline_tasks.QaVisitTask\n    config:\n      debug: true\n")
    result = run_qa(repo, "drp", "qa/debug", pipeline=pipeline, where=f"visit IN ({', '.join(map(str, visits))})")
    assert not result.failed, result.failed
    butler.registry.refresh()
    return butler, visits, "qa/debug"


def test_every_task_has_one_debug_field_off_by_default():
    for task in (pipeline_tasks.QaVisitTask, pipeline_tasks.QaTractTask, pipeline_tasks.QaDetectorReferenceTask,
                 pipeline_tasks.QaManifestTask):
        config = task.ConfigClass()
        assert config.debug is False
        assert [name for name in config.toDict() if "debug" in name.lower()] == ["debug"]
        connections = task.ConfigClass.ConnectionsClass(config=config)
        assert not [n for n in connections.outputs if n.startswith("debug_")]
        config.debug = True
        on = task.ConfigClass.ConnectionsClass(config=config)
        for name in (n for n in on.outputs if n.startswith("debug_")):
            assert getattr(on, name).name.startswith(task._DefaultName + "_debug_")


def test_debug_on_gives_the_same_values_bit_for_bit(repo_copy, debug_run):
    butler, visits, output = debug_run
    for visit in visits:
        for name in ("qaMetricValues_visit", "qaMetricRows_visit", "qaDetectorValues_visit"):
            off = butler.get(name, instrument="HSC", visit=visit, collections=repo_copy[1])
            on = butler.get(name, instrument="HSC", visit=visit, collections=output)
            assert on.num_rows == off.num_rows > 0
            assert on.schema.equals(off.schema), name
            for column in off.column_names:
                assert same_bits(on[column], off[column]), f"{name}.{column} of visit {visit} differs with debug on"


def same_bits(a, b) -> bool:
    """Two columns hold the same values: floats compared by their bits (Arrow's equality has NaN != NaN)."""
    import pyarrow as pa

    if not pa.types.is_floating(a.type):
        return a.equals(b)
    if a.null_count != b.null_count or not pc.is_null(a).equals(pc.is_null(b)):
        return False
    x, y = (c.to_numpy(zero_copy_only=False).astype(np.float64) for c in (a, b))
    return bool(np.array_equal(x.view(np.int64), y.view(np.int64)))


def test_debug_writes_the_sources_table_and_the_detector_plot(repo_copy, debug_run):
    butler, visits, output = debug_run
    for visit in visits:
        sources = butler.get("qaVisit_debug_sources", instrument="HSC", visit=visit, collections=output)
        drp = butler.get("sourceTable_visit", instrument="HSC", visit=visit, collections="drp",
                         storageClass="ArrowTable")
        real = drp.filter(pc.invert(pc.fill_null(drp["sky_source"], False)))
        assert 0 < real.num_rows < drp.num_rows
        assert sources.num_rows == real.num_rows  # every source the metrics saw, no sky source
        assert sources.column("sourceId").to_pylist() == real.column("sourceId").to_pylist()
        assert sources.schema.field("mag").metadata[b"unit"] == b"mag"
        png = butler.getURI("qaVisit_debug_detectorSummary", instrument="HSC", visit=visit, collections=output)
        assert png.read()[:8] == b"\x89PNG\r\n\x1a\n"
    # debug datasets only where debug is on
    assert not butler.query_datasets("qaVisit_debug_sources", collections=repo_copy[1], explain=False)


def test_a_debug_dataset_has_the_provenance_of_its_quantum(repo_copy, debug_run):
    from surveyqa.provenance.record import read_provenance

    butler, visits, output = debug_run
    debug = butler.find_dataset("qaVisit_debug_sources", instrument="HSC", visit=visits[0], collections=output)
    values = butler.find_dataset("qaMetricValues_visit", instrument="HSC", visit=visits[0], collections=output)
    a, b = read_provenance(butler, debug), read_provenance(butler, values)
    assert a.quantum_id == b.quantum_id is not None
    assert {i.id for i in a.inputs} == {i.id for i in b.inputs}
    source = butler.find_dataset("sourceTable_visit", instrument="HSC", visit=visits[0], collections="drp")
    assert source.id in {i.id for i in a.inputs}
