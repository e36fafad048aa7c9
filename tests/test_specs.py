"""Specifications: every real Rubin spec document, inheritance and merge order, evaluation, bad files."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from pathlib import Path

import astropy.units as u
import pytest

from surveyqa.errors import DefinitionError, SurveyQAError
from surveyqa.metrics.registry import default_roots, load_default_registry, load_registry
from surveyqa.metrics.specs import OPERATORS, Specification, load_specs_dir, read_spec_dir

VERIFY = default_roots()[0]
SPECS = VERIFY / "specs"

#: The metadata a validate_drp job on Rubin's HSC validation dataset in r band carries
#: (the keys hsc_gri/base.yaml queries).
HSC_R = {
    "instrument": "HSC",
    "filter_name": "HSC-R",
    "dataset_repo_url": "https://github.com/lsst/validation_data_hsc.git",
    "dataset_name": "validation_data_hsc",
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def metrics_root(root: Path, package: str = "pkg", names: tuple[str, ...] = ("M1", "M2")) -> Path:
    body = "".join(f"{n}:\n  description: test metric {n}\n  unit: mmag\n" for n in names)
    write(root / "metrics" / f"{package}.yaml", body)
    return root


def test_every_real_spec_document_loads() -> None:
    files = sorted(SPECS.rglob("*.yaml"))
    assert len(files) == 67
    documents = [d for package_dir in sorted(p for p in SPECS.iterdir() if p.is_dir()) for d in read_spec_dir(package_dir)]
    assert len(documents) == 1831
    kinds = Counter("partial" if d.is_partial else "spec" for d in documents)
    assert kinds == {"partial": 126, "spec": 1705}
    specs = load_specs_dir(SPECS)
    assert len(specs) == 1705 == len({s.name for s in specs})  # every spec document is one uniquely named spec
    assert Counter(s.package for s in specs).keys() == {"validate_drp", "jointcal", "pipe_analysis"}
    assert all(s.operator in OPERATORS and s.threshold.isscalar for s in specs)


def test_every_real_spec_constrains_a_real_metric_in_a_compatible_unit() -> None:
    registry = load_default_registry()
    assert len(registry.specs) >= 1705
    for spec in registry.specs:
        assert spec.metric in registry
        assert spec.threshold.unit.is_equivalent(registry.get(spec.metric).unit), spec.name


def test_real_pa1_design_threshold() -> None:
    """LPM-17: PA1 design is 5 mmag in g, r, i (LPM-17-PA1.yaml, partial '#PA1-base' gives unit and operator)."""
    spec = load_default_registry().spec("validate_drp.PA1.design_gri")
    assert spec.operator == "<="
    assert spec.threshold == 5.0 * u.mmag
    assert spec.metadata_query == {}
    assert spec.tags == ("PA1", "chromatic", "design")  # partial's tags first, then its own
    assert spec.check(4.9 * u.mmag) and spec.check(5.0 * u.mmag) and not spec.check(5.1 * u.mmag)
    assert spec.check(0.0049 * u.mag) and not spec.check(0.0051 * u.mag)  # converted to mmag first
    assert not spec.check(math.nan * u.mmag)
    with pytest.raises(SurveyQAError, match="cannot be compared"):
        spec.check(4.0 * u.mas)


def test_hsc_r_band_specs_inherit_across_files() -> None:
    """hsc_gri/PA1.yaml: hsc_design_r = base 'PA1.design_gri' (other file) + 'hsc_gri/base#hsc-r'
    (a partial whose own base '#hsc' sets the instrument and dataset)."""
    registry = load_default_registry()
    spec = registry.spec("validate_drp.PA1.hsc_design_r")
    assert spec.threshold == 5.0 * u.mmag and spec.operator == "<="
    assert spec.metadata_query == HSC_R
    assert spec.source.name == "PA1.yaml" and spec.source.parent.name == "hsc_gri"

    applying = {s.name for s in registry.specs_for("validate_drp.PA1", HSC_R)}
    assert {"validate_drp.PA1.hsc_design_r", "validate_drp.PA1.hsc_minimum_r", "validate_drp.PA1.hsc_stretch_r"} <= applying
    assert "validate_drp.PA1.hsc_design_g" not in applying
    assert "validate_drp.PA1.cfht_design_r" not in applying
    assert "validate_drp.PA1.design_gri" in applying  # no query: applies to every measurement
    # lsst.verify semantics: every query key must be present; instrument and filter alone are not enough.
    partial_metadata = {"instrument": "HSC", "filter_name": "HSC-R"}
    assert not spec.applies_to(partial_metadata)
    assert registry.spec("validate_drp.PA1.FY17_hsc_r").applies_to({**partial_metadata, "dataset_repo_url": HSC_R["dataset_repo_url"]})


def test_evaluate_real_pa1_on_an_hsc_r_measurement() -> None:
    registry = load_default_registry()
    results = {r.spec: r for r in registry.evaluate("validate_drp.PA1", 6.0 * u.mmag, HSC_R)}
    assert results["validate_drp.PA1.hsc_minimum_r"].passed  # 6 <= 8
    assert not results["validate_drp.PA1.hsc_design_r"].passed  # 6 > 5
    assert results["validate_drp.PA1.hsc_design_r"].threshold == 5.0 * u.mmag
    assert results["validate_drp.PA1.hsc_design_r"].operator == "<="
    assert "validate_drp.PA1.hsc_design_i" not in results
    without_metadata = registry.evaluate("PA1", 6.0 * u.mmag)
    assert {r.spec for r in without_metadata} == {s.name for s in registry.specs_for("PA1") if not s.metadata_query}
    with pytest.raises(SurveyQAError, match="cannot be checked"):
        registry.evaluate("validate_drp.PA1", 6.0 * u.arcsec, HSC_R)


def test_real_oddities_load_as_meant() -> None:
    registry = load_default_registry()
    # rhoStatistics.yaml writes 1e-6, which YAML 1.1 reads as a string.
    rho = registry.spec("pipe_analysis.rhoStatistics0_HSM_smallScale_calibPsfUsed.HSM_smallScale_calibPsfUsed")
    assert rho.threshold == 1e-6 * u.dimensionless_unscaled
    assert rho.metadata_query == {"shapeAlgorithm": "HSM", "catalog": "calibPsfUsed"}
    assert rho.reference is not None and rho.reference.page == "2245"  # reference inside the partial's threshold
    # jointcal/hsc_r.yaml: a partial in another file of the package ('astrometry_ndof#astrometry_ndof-base').
    ndof = registry.spec("jointcal.astrometry_final_ndof.hsc_11_visits")
    assert (ndof.operator, ndof.threshold) == ("==", 14262 * u.dimensionless_unscaled)
    assert ndof.provenance_query["visits"][0] == 903334
    # compound_release.yaml: equal spec names under different metrics are different specs.
    assert registry.spec("validate_drp.AD1_stretch.hsc_FY17").name != registry.spec("validate_drp.AD1_design.hsc_FY17").name


def test_merge_order_and_inheritance_across_files_and_packages(tmp_path: Path) -> None:
    metrics_root(tmp_path, "pkg")
    metrics_root(tmp_path, "other", ("M9",))
    write(
        tmp_path / "specs" / "pkg" / "base.yaml",
        """
        ---
        id: unit-op
        metric: M1
        tags: [one]
        threshold: {unit: mmag, operator: "<="}
        ---
        id: hsc
        metadata_query: {instrument: HSC}
        ---
        id: hsc-r
        base: "#hsc"
        metadata_query: {filter_name: HSC-R}
        tags: r
        ---
        name: design
        base: "#unit-op"
        threshold: {value: 5}
        tags: [design]
        """,
    )
    write(
        tmp_path / "specs" / "pkg" / "sub" / "child.yaml",
        """
        ---
        name: hsc_design_r
        base: [M1.design, "base#hsc-r"]
        ---
        name: tighter
        base: pkg.M1.design
        threshold: {value: 3.0, operator: "<"}
        tags: [tight]
        ---
        name: moved
        base: ["pkg:base#unit-op"]
        metric: M2
        threshold: {value: 1}
        """,
    )
    write(tmp_path / "specs" / "other" / "x.yaml", "name: copy\nbase: pkg.M1.tighter\nmetric: M9\n")
    registry = load_registry(tmp_path)
    child = registry.spec("pkg.M1.hsc_design_r")
    assert child.threshold == 5 * u.mmag and child.operator == "<="
    assert child.metadata_query == {"instrument": "HSC", "filter_name": "HSC-R"}
    assert child.tags == ("one", "design", "r")  # lists concatenate in base order
    tighter = registry.spec("pkg.M1.tighter")
    assert (tighter.operator, tighter.threshold) == ("<", 3 * u.mmag)  # the document overrides its base
    assert not tighter.check(3 * u.mmag)
    assert registry.spec("pkg.M2.moved").metric == "pkg.M2"  # own metric: wins over the partial's
    copy = registry.spec("other.M9.copy")  # base spec in another package
    assert (copy.metric, copy.operator, copy.threshold) == ("other.M9", "<", 3 * u.mmag)
    assert [s.name for s in registry.specs_for("pkg.M1", {"instrument": "HSC"})] == ["pkg.M1.design", "pkg.M1.tighter"]


@pytest.mark.parametrize(
    "body,expected",
    [
        ('name: s1\nmetric: M1\nthreshold: {value: 1, unit: mmag, operator: "=<"}\n', ["spec 's1'", "unknown operator '=<'"]),
        ("name: s1\nmetric: M1\nthreshold: {unit: mmag, operator: '<'}\n", ["spec pkg.M1.s1", "threshold has no value"]),
        ("name: s1\nmetric: M1\nthreshold: {value: 1, operator: '<'}\n", ["spec pkg.M1.s1", "threshold has no unit"]),
        ("name: s1\nmetric: M1\n", ["spec pkg.M1.s1", "no threshold"]),
        ("name: s1\nmetric: M1\nthreshold: {value: 1, unit: parsecs_of_doom, operator: '<'}\n", ["spec 's1'", "unknown unit"]),
        ("name: s1\nmetric: M1\nthreshold: {value: five, unit: mmag, operator: '<'}\n", ["spec pkg.M1.s1", "'five' is not a number"]),
        ("name: s1\nbase: '#nowhere'\n", ["spec 's1'", "base pkg:broken#nowhere does not resolve"]),
        ("name: s1\nbase: M1.nothing\n", ["spec 's1'", "base pkg.M1.nothing does not resolve"]),
        ("name: s1\nbase: design\n", ["spec 's1'", "neither a partial"]),
        ("id: a\nbase: '#b'\n---\nid: b\nbase: '#a'\n---\nname: s1\nbase: '#a'\n", ["does not resolve", "cycle"]),
        ("name: s1\nthreshold: {value: 1, unit: mmag, operator: '<'}\n", ["spec 's1'", "no metric"]),
        ("name: s1\nmetric: M1\ntreshold: {value: 1}\n", ["spec 's1'", "unknown field(s) treshold"]),
        ("metric: M1\nthreshold: {value: 1, unit: mmag, operator: '<'}\n", ["no name"]),
        (
            "name: s1\nmetric: M1\nthreshold: {value: 1, unit: mmag, operator: '<'}\n---\n"
            "name: s1\nmetric: M1\nthreshold: {value: 2, unit: mmag, operator: '<'}\n",
            ["pkg.M1.s1 is defined twice"],
        ),
        ("name: s1\nmetric: M1\nmetadata_query: HSC\n", ["metadata_query must be a mapping"]),
    ],
)
def test_malformed_spec_file_names_file_spec_and_problem(tmp_path: Path, body: str, expected: list[str]) -> None:
    metrics_root(tmp_path)
    path = write(tmp_path / "specs" / "pkg" / "broken.yaml", body)
    with pytest.raises(DefinitionError) as info:
        load_registry(tmp_path)
    message = str(info.value)
    assert str(path) in message, message
    for text in expected:
        assert text in message, message


def test_spec_for_undefined_metric_or_wrong_unit_is_refused(tmp_path: Path) -> None:
    metrics_root(tmp_path)
    path = write(tmp_path / "specs" / "pkg" / "s.yaml", "name: s1\nmetric: NOPE\nthreshold: {value: 1, unit: mmag, operator: '<'}\n")
    with pytest.raises(DefinitionError, match="metric pkg.NOPE is not defined") as info:
        load_registry(tmp_path)
    assert str(path) in str(info.value)
    write(path, "name: s1\nmetric: M1\nthreshold: {value: 1, unit: arcsec, operator: '<'}\n")
    with pytest.raises(DefinitionError, match="'arcsec' cannot be converted to pkg.M1's unit 'mmag'"):
        load_registry(tmp_path)


def test_specification_validates_its_operator() -> None:
    with pytest.raises(DefinitionError, match="unknown operator '~'"):
        Specification("p.m.s", "p.m", "~", 1 * u.mmag)
    ne = Specification("p.m.s", "p.m", "!=", 0 * u.dimensionless_unscaled)
    assert ne.check(1) and not ne.check(0)  # a bare number against a dimensionless threshold


def test_list_valued_query_matches_a_list_or_array_of_visits() -> None:
    spec = load_default_registry().spec("validate_drp.PA1.cfht_design_g")
    assert spec.metadata_query["visits"] == [849375, 850587]
    metadata = dict(spec.metadata_query)
    assert spec.applies_to(metadata)
    assert spec.applies_to({**metadata, "visits": (849375, 850587)})
    assert not spec.applies_to({**metadata, "visits": [849375]})
    assert not spec.applies_to({**metadata, "filter_name": "r"})
