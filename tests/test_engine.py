"""The compute -> select -> aggregate contract: per-row values for all rows, tidy values, units, errors."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pyarrow as pa
import pytest
import yaml
from astropy.table import Table

from surveyqa.errors import MissingColumnError, SurveyQAError
from surveyqa.metrics.engine import GRANULARITIES, measure
from surveyqa.metrics.library import available_metrics, get_metric
from surveyqa.metrics.matching import match_sources
from surveyqa.metrics.synthetic import matched_catalog


@pytest.fixture(scope="module")
def catalog() -> pa.Table:
    two_bands = [matched_catalog(n_objects=400, n_visits=4, band=b, seed=i) for i, b in enumerate("gr")]
    table = pa.concat_tables(two_bands)
    tract = np.where(np.asarray(table["coord_ra"]) < 150.0, 1, 2)
    return table.append_column("tract", pa.array(tract))


def test_get_metric_full_and_short_names_and_unknown():
    assert get_metric("PA1") is get_metric("validate_drp.PA1")
    m = get_metric("validate_drp.PA1")
    assert m.unit == u.mmag and m.granularity in GRANULARITIES
    assert m.selection.name == "bright_stars" and m.aggregation.name == "median"
    assert set(m.required_columns) >= {"obj_id", "mag"}
    with pytest.raises(SurveyQAError, match="validate_drp.AM1"):
        get_metric("PA9")
    assert {"validate_drp.AM1", "validate_drp.TE2", "validate_drp.PF1_design_gri"} <= set(available_metrics())


def test_per_row_keeps_all_rows_and_values_are_tidy(catalog):
    res = measure(get_metric("PA2"), catalog, group_by=("tract", "band"))
    assert res.per_row.num_rows == catalog.num_rows  # every source, selected or not
    assert res.per_row.schema.field("selected").type == pa.bool_()
    assert res.per_row.schema.field("value").metadata[b"unit"] == b"mmag"
    v = res.values
    assert v.column_names[:7] == ["metric", "value", "unit", "n", "selection", "aggregation", "note"]
    assert v.schema.field("value").type == pa.float64() and v.schema.field("n").type == pa.int64()
    assert sorted(zip(v["tract"].to_pylist(), v["band"].to_pylist())) == [(1, "g"), (1, "r"), (2, "g"), (2, "r")]
    # the n of each group is the number of selected per-row values in that group
    pr = res.per_row.to_pandas()
    for row in v.to_pylist():
        grp = pr[(pr.tract == row["tract"]) & (pr.band == row["band"]) & pr.selected & np.isfinite(pr.value)]
        assert row["n"] == len(grp)
        assert row["value"] == pytest.approx(np.percentile(np.abs(grp.value), 90))


def test_same_answer_from_arrow_pandas_astropy_and_in_radians(catalog):
    ref = measure(get_metric("AM1"), catalog).values["value"][0].as_py()
    assert measure(get_metric("AM1"), catalog.to_pandas()).values["value"][0].as_py() == pytest.approx(ref)
    t = Table(catalog.to_pandas().to_dict("list"))
    t["coord_ra"] = np.radians(t["coord_ra"]) * u.rad  # a table in radians, like HSC's
    t["coord_dec"] = np.radians(t["coord_dec"]) * u.rad
    assert measure(get_metric("AM1"), t).values["value"][0].as_py() == pytest.approx(ref, rel=1e-9)
    arrow = catalog
    for name in ("coord_ra", "coord_dec"):  # Arrow columns in radians, the unit in field metadata
        i = arrow.schema.get_field_index(name)
        arrow = arrow.set_column(i, pa.field(name, pa.float64(), metadata={"unit": "rad"}),
                                 pa.array(np.radians(np.asarray(arrow[name]))))
    assert measure(get_metric("AM1"), arrow).values["value"][0].as_py() == pytest.approx(ref, rel=1e-9)


def test_magnitudes_derived_from_njy_fluxes_match_a_mag_column(catalog):
    flux = np.asarray(catalog["psfFlux"])
    with_mag = catalog.append_column("my_mag", pa.array((flux * u.nJy).to_value(u.ABmag)))
    derived = measure(get_metric("PA1"), catalog).values["value"][0].as_py()
    mapped = measure(get_metric("PA1"), with_mag, columns="mag=my_mag").values["value"][0].as_py()
    assert mapped == pytest.approx(derived, rel=1e-9)
    assert 5.0 < derived < 15.0  # 10 mmag injected


def test_missing_column_error_names_metric_column_and_option(catalog):
    with pytest.raises(MissingColumnError) as err:
        measure(get_metric("PA1"), catalog.drop(["obj_index"]))
    text = str(err.value)
    assert "validate_drp.PA1" in text and "'obj_id'" in text and "coord_ra" in text and "--columns obj_id=" in text
    with pytest.raises(MissingColumnError, match="'patch'"):
        measure(get_metric("PA1"), catalog, group_by=("patch",))
    with pytest.raises(SurveyQAError, match="unknown logical column"):
        measure(get_metric("PA1"), catalog, columns="magnitude=x")


def test_group_without_usable_rows_gets_nan_and_a_reason(catalog):
    one_visit = catalog.filter(pa.compute.equal(catalog["visit"], 1000))
    res = measure(get_metric("PA1"), one_visit)
    row = res.values.to_pylist()[0]
    assert np.isnan(row["value"]) and row["n"] == 0
    assert "n_visits >= 3: 0 of" in row["note"]


def test_yaml_implementation_fields_match_the_code():
    from importlib import resources

    path = resources.files("surveyqa.metrics") / "data" / "surveyqa" / "implementations.yaml"
    fields = yaml.safe_load(path.read_text())
    for name in available_metrics():
        if not name.startswith("validate_drp."):
            continue
        m = get_metric(name)
        assert fields[name] == {"granularity": m.granularity, "selection": m.selection.name,
                                "aggregation": m.aggregation.name, "higher_is_better": m.higher_is_better}, name


def test_positional_matcher_recovers_objects():
    cat = matched_catalog(n_objects=300, n_visits=4, sigma_mas=20, field_deg=0.3, seed=3)
    ids = match_sources(np.asarray(cat["coord_ra"]), np.asarray(cat["coord_dec"]), radius_arcsec=0.5,
                        band=np.asarray(cat["band"]))
    truth = np.asarray(cat["obj_index"])
    # same truth object <=> same matched id, for (almost) every pair of sources
    assert len(np.unique(ids)) == pytest.approx(300, abs=3)
    agree = np.mean([len(np.unique(ids[truth == k])) == 1 for k in range(300)])
    assert agree > 0.98


@pytest.mark.parametrize("name", ["PA1", "PA2", "AM1", "TE1"])
def test_input_columns_are_all_measure_reads(catalog, name):
    """A reader that loads only input_columns() gets the same per-row values and value as from the whole table."""
    from surveyqa.metrics.engine import input_columns

    m = get_metric(name)
    cols = input_columns(m, catalog.column_names, group_by=("tract",))
    assert "tract" in cols and len(cols) < len(catalog.column_names)
    full, part = measure(m, catalog, group_by=("tract",)), measure(m, catalog.select(cols), group_by=("tract",))
    assert full.values.equals(part.values) and full.per_row.equals(part.per_row)


def test_input_columns_follow_a_column_mapping():
    from surveyqa.metrics.engine import input_columns

    names = ["object", "base_PsfFlux_mag", "base_PsfFlux_snr", "ext", "coord_ra", "other"]
    mapping = "mag=base_PsfFlux_mag,obj_id=object,extendedness=ext,snr=base_PsfFlux_snr"
    assert input_columns(get_metric("PA1"), names, columns=mapping) == ["object", "base_PsfFlux_mag",
                                                                        "base_PsfFlux_snr", "ext"]


@pytest.mark.parametrize("name", ["PA1", "AM1", "PA2", "TE1"])
def test_a_parquet_file_read_lazily_gives_the_tables_values(catalog, tmp_path, name):
    """`measure(metric, pq.ParquetFile(...))` reads columns on demand; the values are the table's."""
    import pyarrow.parquet as pq

    path = tmp_path / "matched.parquet"
    pq.write_table(catalog, path, row_group_size=1000)  # objects span row groups
    ref = measure(get_metric(name), catalog, group_by=("band",))
    res = measure(get_metric(name), pq.ParquetFile(path, read_dictionary=["band"]), group_by=("band",))
    np.testing.assert_allclose(res.values["value"].to_numpy(), ref.values["value"].to_numpy(), rtol=1e-12)
    assert res.values["n"].to_pylist() == ref.values["n"].to_pylist()
    assert res.per_row.num_rows == ref.per_row.num_rows


def test_row_order_and_id_width_do_not_change_the_values(catalog):
    """Rows sorted by object take numpy's segment reductions, others its code-based group-bys."""
    rng = np.random.default_rng(9)
    ref = measure(get_metric("PA1"), catalog, group_by=("band",))
    shuffled = catalog.take(pa.array(rng.permutation(catalog.num_rows)))
    i = catalog.schema.get_field_index("obj_index")
    int32 = catalog.set_column(i, "obj_index", catalog["obj_index"].cast(pa.int32()))
    for table in (shuffled, int32):
        res = measure(get_metric("PA1"), table, group_by=("band",))
        np.testing.assert_allclose(res.values["value"].to_numpy(), ref.values["value"].to_numpy(), rtol=1e-12)
        assert res.values["n"].to_pylist() == ref.values["n"].to_pylist()
