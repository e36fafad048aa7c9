"""`surveyqa validate` on the Rubin-shaped repositories: the injected unflagged NaN is found at its
dataset, visit and column and nowhere else; the clean twin, with all of Rubin's conventions in
it, passes the gate; every DP1 column the data carry gets a check; the verdicts are stored as
metric values that `QARepository` and `track submit` read; bad input is one line, exit 2."""

from __future__ import annotations

import json
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from surveyqa.butler import QARepository
from surveyqa.cli import main
from surveyqa.demo import DEMO_INPUT, truth_path

SOURCE = "sourceTable_visit"


def _validate(capsys, *args) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["validate", *map(str, args), "--json", "-q"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith("{") else {}


@pytest.fixture(scope="module")
def defect_report(rubin_demo_repo, tmp_path_factory):
    """The demo repository (every defect) copied, validated with --gate and stored: (repo, code, report)."""
    repo = tmp_path_factory.mktemp("validate") / "repo"
    shutil.copytree(rubin_demo_repo[0], repo)
    shutil.copy(truth_path(rubin_demo_repo[0]), truth_path(repo))
    code = main(["validate", str(repo), "--collection", DEMO_INPUT, "--gate", "--json", "-q",
                 "--html", str(repo.parent / "report.html")])
    return repo, code


def _files(repo, dataset_type: str) -> list[str]:
    return [p for _, p in QARepository(repo, DEMO_INPUT).datasets(dataset_type)]


def test_injected_nan_is_reported_at_its_visit_and_column_only(defect_report, capsys):
    repo, gate_code = defect_report
    truth = json.loads(truth_path(repo).read_text())["defects"]["nan_column"]
    assert gate_code == 1  # the gate closes
    code, report = _validate(capsys, repo, "--collection", DEMO_INPUT, "--no-store")
    assert code == 0  # without --gate the report is the answer
    fails = report["failures"]
    assert [(f["dataset_type"], f["data_id"]["visit"], f["column"], f["check"]) for f in fails] == \
        [(truth["dataset"], truth["visit"], truth["column"], "nan")]
    # A few injected rows may land on a saturated source, whose psfFlux_flag already explains a NaN.
    assert 0.9 * truth["n_rows"] <= fails[0]["n_bad"] <= truth["n_rows"]
    assert 0.01 <= fails[0]["n_bad"] / fails[0]["n_rows"] <= 0.021
    html = (repo.parent / "report.html").read_text()
    assert "1 check failed" in html and str(truth["visit"]) in html


def test_clean_twin_passes_the_gate_with_rubins_conventions_in_it(clean_rubin_demo_repo, capsys):
    repo = clean_rubin_demo_repo[0]
    code, report = _validate(capsys, repo, "--collection", DEMO_INPUT, "--gate", "--no-store")
    assert code == 0 and report["passed"] and report["failures"] == []
    # The conventions are there to be respected, so the pass is not vacuous.
    src = _files(repo, SOURCE)
    flagged_nan, sky = duckdb.execute(
        "SELECT count(*) FILTER (WHERE isnan(psfFlux) AND psfFlux_flag), count(*) FILTER (WHERE sky_source) "
        "FROM read_parquet($p)", {"p": src}).fetchone()
    assert flagged_nan > 100 and sky > 1000
    dupes = duckdb.execute("SELECT count(*) FILTER (WHERE NOT detect_isPrimary AND NOT sky_object) "
                           "FROM read_parquet($p)", {"p": _files(repo, "objectTable_tract")}).fetchone()[0]
    assert dupes > 100  # detections of patch overlaps
    unknown = {(u["dataset_type"], u["column"]) for u in report["unknown_columns"]}
    assert {(SOURCE, "ccdVisitId"), ("visitTable", "seeing"), ("objectTable_tract", "detect_isPrimary")} <= unknown
    assert len(report["missing_columns"]["objectTable_tract"]) > 1000  # reported, not failures
    assert set(report["unmapped_datasets"]) == {"isolated_star_presources", "isolated_star_presource_associations"}


def test_every_dp1_column_the_data_carry_gets_a_check(clean_rubin_demo_repo):
    """Counted against the schema read here with felis itself, not through surveyqa's reader."""
    import lsst.sdm.schemas
    from felis.datamodel import Schema
    from pathlib import Path

    from surveyqa.validate import validate_repository

    repo = clean_rubin_demo_repo[0]
    dp1 = Schema.from_uri(str(Path(lsst.sdm.schemas.__file__).parent / "dp1.yaml"), context={"id_generation": True})
    columns = {t.name: {c.name for c in t.columns} for t in dp1.tables}
    tables = {SOURCE: "Source", "objectTable_tract": "Object", "visitTable": "Visit", "ccdVisitTable": "CcdVisit"}
    report = validate_repository(repo, DEMO_INPUT, store=False)
    checked: dict[str, dict[str, set[str]]] = {}
    for r in report.results:
        checked.setdefault(r.dataset_type, {}).setdefault(r.column, set()).add(r.check)
    n = 0
    for dataset_type, table in tables.items():
        carried = set().union(*(pq.read_schema(p).names for p in _files(repo, dataset_type))) & columns[table]
        assert carried, dataset_type
        for column in carried:
            got = checked[dataset_type].get(column, set())
            assert got - {"presence"}, f"{dataset_type}.{column} has no check of its values: {got}"
            n += 1
        # Schema columns the data lack get their presence check (and are reported).
        assert all("presence" in checked[dataset_type][c] for c in columns[table] - carried)
    assert n == sum(len(set(pq.read_schema(_files(repo, dt)[0]).names) & columns[t]) for dt, t in tables.items())
    floats = [c for c in checked[SOURCE] if c in ("psfFlux", "ra", "raErr")]
    assert all({"nan", "inf"} <= checked[SOURCE][c] for c in floats)
    assert "ra_range" in checked[SOURCE]["ra"] and "positive_error" in checked[SOURCE]["psfFluxErr"]
    assert {"unique", "reference"} <= checked[SOURCE]["sourceId"] | checked[SOURCE]["visit"] | \
        checked[SOURCE].get("visit,detector", set())


def test_verdicts_are_stored_as_metric_values_the_qa_readers_use(defect_report, tmp_path, capsys):
    repo, _ = defect_report
    truth = json.loads(truth_path(repo).read_text())["defects"]["nan_column"]
    values = QARepository(repo, f"{DEMO_INPUT}/validate").metric_values("validate.goodRowFraction")
    failing = values[values["status"] == "fail"]
    assert len(failing) == 1
    row = failing.iloc[0]
    assert (row["level"], row["visit"], row["column"], row["selection"]) == ("visit", truth["visit"], "Source.psfFlux", SOURCE)
    assert row["band"] == truth["band"] and 97.9 <= row["value"] < 99.0 and row["unit"] == "%"
    assert set(values["level"]) == {"visit", "tract", "dataset"}
    assert (values.loc[values["status"] == "pass", "value"] == 100.0).all()
    # Object columns carry their band in `band`, as the QA's own per-column values do.
    assert set(values.loc[values["selection"] == "objectTable_tract", "band"].dropna()) >= {"g", "r", "i"}
    # The tracking service takes them like any QA run's values.
    db = f"sqlite:///{tmp_path / 'track.db'}"
    assert main(["track", "init", "--db", db]) == 0
    assert main(["track", "submit", str(repo), "--collection", f"{DEMO_INPUT}/validate", "--db", db]) == 0
    capsys.readouterr()
    assert main(["track", "series", "validate.goodRowFraction", "--db", db, "--json"]) == 0
    series = json.loads(capsys.readouterr().out)["series"]
    assert len(series) == len(values)  # one series per dataset, data ID and column
    mine = [s for s in series if s["data_id"].get("visit") == truth["visit"]
            and s["data_id"].get("column") == "Source.psfFlux"]
    assert len(mine) == 1 and 97.9 <= mine[0]["points"][0]["value"] < 99.0


def test_each_validation_is_a_new_run_and_the_inputs_are_untouched(defect_report):
    repo, _ = defect_report
    from surveyqa.butler.repo import open_repo

    before = {p: pq.read_metadata(p).num_rows for p in _files(repo, SOURCE)}
    assert main(["validate", str(repo), "--collection", DEMO_INPUT, "-q"]) == 0
    butler = open_repo(repo)
    chain = list(butler.collections.get_info(f"{DEMO_INPUT}/validate").children)
    assert len(chain) == 2 and chain[0] > chain[1]  # the newest first
    assert {p: pq.read_metadata(p).num_rows for p in _files(repo, SOURCE)} == before


def test_rules_tighten_add_and_loosen_checks(defect_report, tmp_path, capsys):
    repo, _ = defect_report
    rules = tmp_path / "rules.yaml"
    rules.write_text("tables:\n  Source:\n    columns:\n      psfFlux: {max_bad_fraction: 0.05}\n"
                     "      calibFlux: {range: {min: 0}}\n    unknown_columns: error\n")
    code, report = _validate(capsys, repo, "--collection", DEMO_INPUT, "--rules", rules, "--no-store", "--gate")
    assert code == 1
    got = {(f["column"], f["check"]) for f in report["failures"]}
    assert ("psfFlux", "nan") not in got  # loosened: 2 % is within 5 %
    assert ("calibFlux", "rules_range") in got  # sky sources' fluxes scatter about zero: a tightened rule catches them
    assert ("ccdVisitId", "unknown") in got  # unknown columns made failures
    assert all(f["dataset_type"] == SOURCE for f in report["failures"])


def test_real_comcam_dia_sources_against_dp1(shared_data, tmp_path):
    """Real LSSTComCam difference-image sources: clean against DP1 DiaSource; an unflagged NaN put
    into them is found, the same NaN with psfFlux_flag set is not."""
    import numpy as np
    from astropy.table import Table
    from lsst.daf.butler.formatters.parquet import astropy_to_arrow

    from surveyqa.validate import validate_files

    t = Table.read(shared_data / "comcam_dia" / "diaSourceTable_tract_test.ecsv")
    t["time_processed"] = np.array([np.datetime64(str(x)) for x in t["time_processed"]], dtype="datetime64[us]")

    def run(table, name):
        path = tmp_path / f"{name}.parq"
        pq.write_table(astropy_to_arrow(table), path)
        return validate_files({"diaSourceTable_tract": [({}, str(path))]}, "dp1")

    clean = run(t, "clean")
    assert clean.failures == []
    assert clean.missing_columns["diaSourceTable_tract"] == ["diaSourceId"]  # the real file lacks it
    assert clean.columns_checked == len(t.colnames) + 1  # all 86 are DP1 DiaSource columns, plus the missing one
    unflagged = ~(np.asarray(t["psfFlux_flag"]) | np.asarray(t["pixelFlags_nodata"]) | np.asarray(t["pixelFlags_nodataCenter"]))
    rows = np.flatnonzero(np.isfinite(np.ma.filled(t["psfFlux"], np.nan)) & unflagged)[:40]
    t["psfFlux"][rows] = np.nan
    bad = run(t, "nan")
    assert [(f.column, f.check, f.n_bad) for f in bad.failures] == [("psfFlux", "nan", 40)]
    t["psfFlux_flag"][rows] = True
    assert run(t, "flagged").failures == []


def test_bad_input_is_one_line_and_changes_nothing(defect_report, tmp_path, capsys):
    repo, _ = defect_report
    from surveyqa.butler.repo import open_repo

    before = sorted(open_repo(repo).collections.query("*"))
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("tables: {Source: {columns: {psfFlux: {max_bad_fraction: 3}}}}\n")
    cases = [
        ([str(tmp_path / "nowhere"), "--collection", DEMO_INPUT], "not a Butler repository"),
        ([str(repo), "--collection", "nope"], "collection 'nope' does not exist"),
        ([str(repo), "--collection", DEMO_INPUT, "--schema", "dp9"], "unknown schema 'dp9'"),
        ([str(repo), "--collection", DEMO_INPUT, "--rules", str(bad_yaml)], "max_bad_fraction"),
        ([str(repo), "--collection", DEMO_INPUT, "--rules", str(tmp_path / "none.yaml")], "does not exist"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["validate", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("Error: ") and message in err and len(err.splitlines()) == 1, err
    assert sorted(open_repo(repo).collections.query("*")) == before


def test_wrong_type_and_unit_fail_and_make_the_column_all_bad(clean_rubin_demo_repo, tmp_path):
    """One real source file of the clean twin, with ``visit`` stored as text and ``psfFlux`` in Jy."""
    import pyarrow as pa

    from surveyqa.validate import validate_files
    from surveyqa.validate.store import metric_values

    path = _files(clean_rubin_demo_repo[0], SOURCE)[0]
    table = pq.read_table(path)
    visit = int(table.column("visit")[0].as_py())
    i, j = table.schema.get_field_index("visit"), table.schema.get_field_index("psfFlux")
    table = table.set_column(i, "visit", table.column("visit").cast(pa.string()))
    table = table.set_column(j, pa.field("psfFlux", pa.float64(), metadata={"unit": "Jy"}), table.column("psfFlux"))
    pq.write_table(table, tmp_path / "src.parq")
    report = validate_files({SOURCE: [({"instrument": "HSC", "visit": visit}, str(tmp_path / "src.parq"))]})
    got = {(f.column, f.check) for f in report.failures}
    assert {("visit", "type"), ("psfFlux", "unit")} <= got
    values = metric_values(report).to_pandas().set_index("column")
    assert values.loc["Source.psfFlux", "value"] == 0.0 and values.loc["Source.psfFlux", "status"] == "fail"
    assert values.loc["Source.psfFluxErr", "value"] == 100.0


def test_keys_references_and_data_ids_across_tables(clean_rubin_demo_repo, tmp_path):
    """A source file whose rows name a detector its visit did not process, repeat another file's
    sourceIds and carry another visit: each is found at its data ID, and only there."""
    import numpy as np
    import pyarrow as pa

    from surveyqa.validate import validate_files

    repo = clean_rubin_demo_repo[0]
    qa = QARepository(repo, DEMO_INPUT)
    (id_a, a), (id_b, b) = qa.datasets(SOURCE)[:2]
    t = pq.read_table(b)
    n = t.num_rows
    detector = np.asarray(t.column("detector")).copy()
    detector[:7] = 999  # not a processed CCD of this visit
    source_id = np.asarray(t.column("sourceId")).copy()
    source_id[10:15] = np.asarray(pq.read_table(a, columns=["sourceId"]).column(0))[:5]  # another visit's ids
    visit = np.asarray(t.column("visit")).copy()
    visit[20:23] = id_a["visit"]
    for name, values in (("detector", detector), ("sourceId", source_id), ("visit", visit)):
        i = t.schema.get_field_index(name)
        t = t.set_column(i, t.schema.field(i), pa.array(values, t.schema.field(i).type))
    pq.write_table(t, tmp_path / "b.parq")
    files = {SOURCE: [(id_a, a), (id_b, str(tmp_path / "b.parq"))],
             "visitTable": qa.datasets("visitTable"), "ccdVisitTable": qa.datasets("ccdVisitTable")}
    report = validate_files(files)
    got = sorted((f.data_id["visit"], f.column, f.check, f.n_bad) for f in report.failures)
    # The 3 rows given visit A keep their detector of visit B: dangling too unless A processed that detector.
    moved_dangling = len({int(d) for d in detector[20:23]} - {int(r["detector"]) for r in pq.read_table(
        qa.datasets("ccdVisitTable")[0][1]).to_pylist() if r["visitId"] == id_a["visit"]})
    assert (id_b["visit"], "visit", "data_id", 3) in got
    assert (id_b["visit"], "sourceId", "unique", 5) in got and (id_a["visit"], "sourceId", "unique", 5) in got
    dangling = [x for x in got if x[1] == "visit,detector"]
    assert dangling and dangling[0][0] == id_b["visit"] and 7 <= dangling[0][3] <= 7 + 3 * bool(moved_dangling)
    assert {x[0] for x in got} <= {id_a["visit"], id_b["visit"]} and n > 30
