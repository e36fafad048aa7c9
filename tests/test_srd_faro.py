"""The SRD metrics on the real HSC ci_hsc matched catalogs give the values lsst/faro's own tests record.

faro @aff3cf7, tests/test_photKPM.py (PA1Task, PF1Task with ``nMinPhotRepeat = 10``) and
tests/test_astromKPM.py (AMxTask, ADxTask, AFxTask with ``annulus_r = 5``), on the same files
(faro's tests/data, copied to ../shared/data/hsc_ci_matched). faro's tests compare with
astropy's allclose (rtol 1e-5); we ask for the same. Run through `surveyqa measure` with the one
column mapping the README gives, from the FITS file and from the same catalog as Parquet.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from surveyqa.cli import main

ROOT = Path(__file__).resolve().parents[1]

#: faro's recorded values (tests/data/{metric}_expected_0_{band}.yaml @aff3cf7).
FARO = {
    ("PA1", "r"): 7.55641658, ("PA1", "i"): 6.8097958,
    ("PF1", "r"): 13.54166667, ("PF1", "i"): 11.11111111,
    ("AM1", "r"): 5.199871610804589, ("AM1", "i"): 7.142131192256279,
    ("AD1", "r"): 9.874264326729769, ("AD1", "i"): 15.608887687111043,
    ("AF1", "r"): 0.3284072249589491, ("AF1", "i"): 6.211180124223603,
}


def readme_mapping() -> str:
    """The ``--columns`` mapping of the README's HSC example."""
    match = re.search(r"surveyqa measure PA1 data/hsc_ci_matched/\S+ --band r --columns '([^']+)'",
                      (ROOT / "README.md").read_text())
    assert match, "the README's HSC example is gone"
    return match.group(1)


def _measure(metric: str, path: Path, band: str, capsys) -> dict:
    code = main(["measure", metric, str(path), "--band", band, "--columns", readme_mapping(), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


@pytest.fixture(scope="module")
def as_parquet(shared_data, tmp_path_factory):
    """The two tract catalogs as `surveyqa measure` reads them, written to Parquet by astropy
    (units in astropy's header, coordinates in radians)."""
    from surveyqa.metrics.measure_cli import read_table

    out = {}
    for band in "ri":
        path = tmp_path_factory.mktemp("parquet") / f"matchedCatalogTract_0_{band}.parquet"
        read_table(shared_data / "hsc_ci_matched" / f"matchedCatalogTract_0_{band}.fits.gz").write(path)
        out[band] = path
    return out


@pytest.mark.parametrize("metric,band", sorted(FARO))
def test_faro_recorded_value_from_fits_and_parquet(metric, band, shared_data, as_parquet, capsys):
    fits = shared_data / "hsc_ci_matched" / f"matchedCatalogTract_0_{band}.fits.gz"
    from_fits = _measure(metric, fits, band, capsys)
    assert from_fits["value"] == pytest.approx(FARO[(metric, band)], rel=1e-5)
    assert _measure(metric, as_parquet[band], band, capsys)["value"] == pytest.approx(from_fits["value"], rel=1e-12)


def test_te1_is_faros_on_the_single_visit_source_catalog(shared_data):
    """faro's tests/test_ellipKPM.py: TExTask (minSep 0.25, maxSep 1 arcmin, brute) on one HSC
    i-band source catalog records TE1 = 4.407316609e-4 (checked there to 5 decimal places)."""
    import numpy as np

    from surveyqa.metrics.engine import measure
    from surveyqa.metrics.library import get_metric
    from surveyqa.metrics.measure_cli import read_table

    table = read_table(shared_data / "hsc_ci_matched" / "src_HSC_i_HSC-I_903986_0_31_HSC_runs_ci_hsc_20210407T021858Z.fits")
    table["snr"] = np.asarray(table["base_PsfFlux_instFlux"]) / np.asarray(table["base_PsfFlux_instFluxErr"])
    moments = {"ixx": "xx", "iyy": "yy", "ixy": "xy"}
    columns = ",".join(["extendedness=base_ClassificationExtendedness_value"]
                       + [f"{k}=ext_shapeHSM_HsmSourceMoments_{v}" for k, v in moments.items()]
                       + [f"{k}_psf=ext_shapeHSM_HsmPsfMoments_{v}" for k, v in moments.items()])
    value = measure(get_metric("TE1"), table, columns=columns).values.to_pylist()[0]["value"]
    assert value == pytest.approx(4.407316609029412e-4, rel=1e-5)
