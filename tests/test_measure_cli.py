"""`surveyqa measure` on real HSC catalogs and on a Parquet file; clear errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from surveyqa.cli import main
from surveyqa.metrics.synthetic import matched_catalog

HSC = ("mag=base_PsfFlux_mag,obj_id=object,extendedness=base_ClassificationExtendedness_value,"
       "snr=base_PsfFlux_snr")


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("band", ["r", "i"])
def test_measure_pa1_json_on_hsc(shared_data, capsys, band):
    path = shared_data / "hsc_ci_matched" / f"matchedCatalogTract_0_{band}.fits.gz"
    code, out, err = _run(["measure", "PA1", str(path), "--band", band, "--columns", HSC, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["metric"] == "validate_drp.PA1" and doc["unit"] == "mmag" and 5 < doc["value"] < 25
    design = [s for s in doc["specs"] if s["spec"] == "validate_drp.PA1.design_gri"]
    assert design and design[0]["threshold"] == 5.0 and design[0]["passed"] is False


def test_measure_am1_plain_line_with_flags_unpacked(shared_data, capsys):
    path = shared_data / "hsc_ci_matched" / "matchedCatalogTract_0_r.fits.gz"
    cols = HSC + ",flag=base_PixelFlags_flag_saturatedCenter|base_PsfFlux_flag"
    code, out, err = _run(["measure", "AM1", str(path), "--columns", cols], capsys)
    assert code == 0, err
    assert out.startswith("validate_drp.AM1 = ") and " mas " in out


def test_measure_parquet_with_dp1_names_needs_no_mapping(tmp_path, capsys):
    path = tmp_path / "matched.parquet"
    pq.write_table(matched_catalog(n_objects=300, n_visits=4, sigma_mmag=20, seed=1), path)
    code, out, err = _run(["measure", "validate_drp.PA1", str(path), "--json"], capsys)
    assert code == 0, err
    assert 12 < json.loads(out)["value"] < 28


def test_errors_exit_2_with_the_reason(shared_data, tmp_path, capsys):
    path = shared_data / "hsc_ci_matched" / "matchedCatalogTract_0_r.fits.gz"
    code, _, err = _run(["measure", "PA1", str(path)], capsys)
    assert code == 2 and "needs column 'mag'" in err and "--columns mag=" in err
    code, _, err = _run(["measure", "AM2", str(path), "--columns", HSC], capsys)
    assert code == 2 and "no pairs of selected objects" in err
    single = tmp_path / "single.parquet"
    pq.write_table(matched_catalog(n_objects=300, n_visits=1, seed=1), single)
    code, _, err = _run(["measure", "PA1", str(single)], capsys)
    assert code == 2 and "n_visits >= 3: 0 of 300" in err  # too few repeat visits
    faint = tmp_path / "faint.parquet"
    pq.write_table(matched_catalog(n_objects=300, n_visits=4, mag_range=(24, 25), seed=1), faint)
    code, _, err = _run(["measure", "PA1", str(faint)], capsys)
    assert code == 2 and "obj_snr >= 200: 0 of 300" in err  # no bright stars
    code, _, err = _run(["measure", "PA1", str(tmp_path / "nope.fits")], capsys)
    assert code == 2 and "no such file" in err
    code, _, err = _run(["measure", "PA1", str(single), "--band", "z"], capsys)
    assert code == 2 and "no rows with band 'z'" in err


def test_help_has_an_example():
    out = subprocess.run([sys.executable, "-m", "surveyqa.cli", "measure", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "Example" in out.stdout and "surveyqa measure PA1" in out.stdout


def _hsc_table(shared_data):
    """The catalog as `surveyqa measure` reads the FITS file (packed flags unpacked into columns)."""
    from surveyqa.metrics.measure_cli import read_table

    return read_table(shared_data / "hsc_ci_matched" / "matchedCatalogTract_0_r.fits.gz")


def test_parquet_units_read_in_astropy_and_rubin_conventions(shared_data, tmp_path, capsys):
    import numpy as np
    import pyarrow as pa

    fits = shared_data / "hsc_ci_matched" / "matchedCatalogTract_0_r.fits.gz"
    table = _hsc_table(shared_data)
    astropy_style = tmp_path / "astropy.parquet"  # units in the astropy YAML header, coordinates in radians
    table.write(astropy_style, format="parquet")
    assert not pq.read_schema(astropy_style).field("coord_ra").metadata
    native = {c: np.asarray(table[c]).astype(table[c].dtype.newbyteorder("=")) for c in table.colnames}
    arrow = pa.table(native)  # per-field unit metadata, coordinates in degrees
    fields = [f.with_metadata({"unit": "deg"}) if f.name in ("coord_ra", "coord_dec") else f for f in arrow.schema]
    rubin_style = tmp_path / "rubin.parquet"
    degrees = {c: np.degrees(arrow[c].to_numpy()) for c in ("coord_ra", "coord_dec")}
    pq.write_table(pa.table({**{c: arrow[c] for c in arrow.column_names}, **degrees}, schema=pa.schema(fields)),
                   rubin_style)
    values = {}
    for path in (fits, astropy_style, rubin_style):
        for metric in ("AM1", "PA1"):
            code, out, err = _run(["measure", metric, str(path), "--band", "r", "--columns", HSC, "--json"], capsys)
            assert code == 0, err
            values.setdefault(metric, []).append(json.loads(out)["value"])
    for metric, (from_fits, *from_parquet) in values.items():
        assert from_parquet == pytest.approx([from_fits] * 2, rel=1e-9), metric
