"""Metric definitions: Rubin's real verify_metrics files, our §4.11.1 fields, the overlay, bad files."""

from __future__ import annotations

import filecmp
import textwrap
from collections import Counter
from pathlib import Path

import astropy.units as u
import pytest

from surveyqa.errors import DefinitionError, SurveyQAError
from surveyqa.metrics.definitions import GRANULARITIES, load_metrics_dir, load_metrics_file
from surveyqa.metrics.registry import MetricRegistry, default_roots, load_default_registry, load_registry

VERIFY = default_roots()[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_copy_is_rubins_files(shared_data: Path) -> None:
    """The package data is the shared real data, unchanged (so citing the shared README holds)."""
    for sub in ("metrics", "specs"):
        shipped = sorted(p.relative_to(VERIFY) for p in (VERIFY / sub).rglob("*.yaml"))
        real = sorted(p.relative_to(shared_data / "verify_metrics") for p in (shared_data / "verify_metrics" / sub).rglob("*.yaml"))
        assert shipped == real
        _, mismatch, errors = filecmp.cmpfiles(VERIFY, shared_data / "verify_metrics", [str(p) for p in shipped], shallow=False)
        assert mismatch == [] and errors == []


def test_every_real_metric_loads_with_a_unit() -> None:
    metrics = load_metrics_dir(VERIFY / "metrics")
    assert len(list((VERIFY / "metrics").glob("*.yaml"))) == 12
    assert len(metrics) == 1032
    assert len({m.full_name for m in metrics}) == 1032
    assert all(isinstance(m.unit, u.UnitBase) for m in metrics)
    per_package = Counter(m.package for m in metrics)
    assert len(per_package) == 12
    assert all(m.description.strip() for m in metrics)
    # Each spelling Rubin uses resolves to the astropy unit it means.
    by_name = {m.full_name: m for m in metrics}
    assert by_name["validate_drp.PA1"].unit == u.mmag
    assert by_name["validate_drp.AM1"].unit == u.milliarcsecond  # written 'marcsec'
    assert {m.unit for m in metrics if m.package == "validate_drp" and m.name.startswith("PF1_")} == {u.percent}
    units = {m.unit for m in metrics}
    assert {u.nJy, u.dimensionless_unscaled, u.pix, u.s, u.count, u.byte, u.mag} <= units


def test_real_pa1_reference_and_string_tag() -> None:
    pa1 = load_default_registry().get("validate_drp.PA1")
    assert pa1.package == "validate_drp" and pa1.name == "PA1"
    assert pa1.tags == ("photometry",)  # 'tags: photometry' in the file
    assert (pa1.reference.doc, pa1.reference.page, pa1.reference.url) == ("LPM-17", "21", "http://ls.st/lpm-17")
    assert pa1.summary.startswith("The maximum rms of the unresolved source magnitude")


def test_yaml_sets_and_merge_keys_in_real_files() -> None:
    """ap_association.yaml uses `!!set` tags and `<<: *anchor` merges; both must mean what they say."""
    by_name = {m.name: m for m in load_metrics_file(VERIFY / "metrics" / "ap_association.yaml")}
    new = by_name["numNewDiaObjects"]
    assert new.tags == ("CCD", "ap_verify", "assoc", "diffim") and new.unit == u.count
    merged = by_name["numUnassociatedDiaObjects"]
    assert merged.unit == u.count and merged.tags == new.tags
    assert merged.description != new.description


def test_own_metric_with_dmtn085_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path / "metrics" / "surveyqa_test.yaml",
        textwrap.dedent(
            """
        PsfSizeMedian:
          description: Median PSF determinant radius of the detectors of a visit.
          unit: arcsec
          tags: [psf, health]
          granularity: detector
          selection: all_detectors
          aggregation: median
          higher_is_better: false
        """
        ),
    )
    (metric,) = load_metrics_file(path)
    assert metric.full_name == "surveyqa_test.PsfSizeMedian"
    assert (metric.granularity, metric.selection, metric.aggregation, metric.higher_is_better) == (
        "detector",
        "all_detectors",
        "median",
        False,
    )
    assert metric.unit == u.arcsec and metric.tags == ("psf", "health")
    assert metric.to_dict()["unit"] == "arcsec"
    assert "detector" in GRANULARITIES


@pytest.mark.parametrize(
    "body,expected",
    [
        ("M1:\n  description: x\n  unit: furlongs_per_fortnight\n", ["M1", "unknown unit 'furlongs_per_fortnight'"]),
        ("M1:\n  description: x\n", ["M1", "no unit"]),
        ("M1:\n  description: x\n  unti: mmag\n  unit: mmag\n", ["M1", "unknown field(s) unti"]),
        ("M1:\n  unit: mmag\n", ["M1", "no description"]),
        ("M1:\n  description: x\n  unit: mmag\n  granularity: pixel\n", ["M1", "unknown granularity 'pixel'"]),
        ("M1:\n  description: x\n  unit: mmag\n  higher_is_better: maybe\n", ["M1", "higher_is_better"]),
        ("M1:\n  description: x\n  unit: mmag\n  tags: {a: 1}\n", ["M1", "tags must be"]),
        ("M1:\n  description: x\n  unit: mmag\nM1:\n  description: y\n  unit: mag\n", ["line 4", "'M1' is defined twice"]),
        ("M1:\n  description: x\n   unit: mmag\n", ["line 3", "not valid YAML"]),
        ("- just\n- a list\n", ["one mapping"]),
    ],
)
def test_malformed_metric_file_names_file_metric_and_problem(tmp_path: Path, body: str, expected: list[str]) -> None:
    path = write(tmp_path / "metrics" / "broken_pkg.yaml", body)
    with pytest.raises(DefinitionError) as info:
        load_metrics_file(path)
    message = str(info.value)
    assert str(path) in message
    for text in expected:
        assert text in message


def test_metric_defined_in_two_roots_is_refused(tmp_path: Path) -> None:
    for root in ("a", "b"):
        write(tmp_path / root / "metrics" / "pkg.yaml", "M1:\n  description: x\n  unit: mmag\n")
    with pytest.raises(DefinitionError, match="pkg.M1 is defined twice"):
        load_registry(tmp_path / "a", tmp_path / "b")


def test_overlay_adds_fields_to_rubins_metrics_without_editing_them(tmp_path: Path) -> None:
    write(
        tmp_path / "own" / "implementations.yaml",
        "validate_drp.PA1:\n  granularity: tract\n  selection: bright_unresolved_stars\n"
        "  aggregation: rms_of_repeat_rms\n  higher_is_better: false\n",
    )
    registry = load_registry(VERIFY, tmp_path / "own")
    pa1 = registry.get("validate_drp.PA1")
    assert (pa1.granularity, pa1.selection, pa1.higher_is_better) == ("tract", "bright_unresolved_stars", False)
    assert pa1.unit == u.mmag and pa1.reference.doc == "LPM-17"  # the rest is Rubin's
    assert registry.get("validate_drp.AM1").granularity is None


@pytest.mark.parametrize(
    "body,expected",
    [
        ("validate_drp.NOPE:\n  granularity: tract\n", "validate_drp.NOPE: no such metric"),
        ("validate_drp.PA1:\n  unit: mag\n", "unknown field(s) unit"),
        ("validate_drp.PA1:\n  granularity: galaxy\n", "unknown granularity 'galaxy'"),
    ],
)
def test_bad_overlay_names_file_and_problem(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path / "own" / "implementations.yaml", body)
    with pytest.raises(DefinitionError) as info:
        load_registry(VERIFY, tmp_path / "own")
    assert str(path) in str(info.value) and expected in str(info.value)


def test_get_by_full_and_short_name_and_ambiguity(tmp_path: Path) -> None:
    registry = load_default_registry()
    assert registry.get("PA1") is registry.get("validate_drp.PA1")
    with pytest.raises(SurveyQAError) as info:
        registry.get("pa1")
    assert "unknown metric 'pa1'" in str(info.value) and "validate_drp.PA1" in str(info.value)
    write(tmp_path / "metrics" / "pkg_a.yaml", "X1:\n  description: a\n  unit: mmag\n")
    write(tmp_path / "metrics" / "pkg_b.yaml", "X1:\n  description: b\n  unit: mmag\n")
    two = load_registry(tmp_path)
    with pytest.raises(SurveyQAError) as info:
        two.get("X1")
    assert "ambiguous" in str(info.value) and "pkg_a.X1, pkg_b.X1" in str(info.value)
    assert two.get("pkg_b.X1").description == "b"


def test_filter_by_package_and_tag() -> None:
    registry = load_default_registry()
    validate = registry.filter(package="validate_drp")
    assert validate and all(m.package == "validate_drp" for m in validate)
    photometry = registry.filter(package="validate_drp", tag="photometry")
    assert registry.get("validate_drp.PA1") in photometry
    assert registry.get("validate_drp.AM1") not in photometry  # tagged astrometry
    assert len(registry.filter()) == len(registry) >= 1032
    assert registry.filter(package="no_such_package") == []


def test_registry_is_read_only() -> None:
    registry = load_default_registry()
    with pytest.raises(TypeError):
        registry.metrics["x"] = None  # type: ignore[index]
    assert isinstance(registry, MetricRegistry)
