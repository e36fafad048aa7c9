"""The compiled per-object kernel gives the numpy code's values, on every path it can take.

`surveyqa.metrics.actions.segments` computes the per-object statistics of the repeatability
metrics from the Arrow chunks of a table sorted by object, in threads. These tests compare it
with the numpy code it replaces (the same functions with the kernel switched off) on what a
matched catalog can hold: objects of 1 to 40 sources, NaN and non-positive fluxes, zero flux
errors, chunks that split objects, flagged sources, several bands, unsorted rows, int32 ids.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from surveyqa.metrics.actions import segments
from surveyqa.metrics.actions.compute import object_stats
from surveyqa.metrics.actions.groups import Grouping
from surveyqa.metrics.columns import to_frame
from surveyqa.metrics.engine import measure
from surveyqa.metrics.library import get_metric
from surveyqa.metrics.synthetic import matched_catalog

HEADER = Path(segments.__file__).with_name("_sortnet.h")


def batcher(n: int) -> list[tuple[int, int]]:
    """Comparators of Batcher's odd-even merge sort on the next power of two >= n, pruned to n inputs."""
    p2 = 1
    while p2 < n:
        p2 *= 2
    out, p = [], 1
    while p < p2:
        k = p
        while k >= 1:
            for j in range(k % p, p2 - k, 2 * k):
                for i in range(min(k, p2 - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        out.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return out


@pytest.fixture
def no_kernel(monkeypatch):
    """Run the numpy code instead of the kernel."""
    monkeypatch.setenv("SURVEYQA_NO_KERNEL", "1")


def test_the_kernel_is_built_by_the_install():
    # without it everything still works (numpy), but PA1 is 3x slower: a failed build must show
    assert segments.available(), "surveyqa.metrics.actions._segments is not built: pip install -e . builds it"


def test_sorting_networks_are_batchers_and_sort_every_input():
    text = HEADER.read_text()
    for n in range(2, 17):
        body = re.search(rf"sq_sort{n}\(double\* v\) {{(.*?)\n}}", text, re.S).group(1)
        net = [(int(a), int(b)) for a, b in re.findall(r"SQ_CE\(x(\d+), x(\d+)\)", body)]
        assert net == batcher(n)
        for bits in itertools.product((0, 1), repeat=n):  # the 0-1 principle: then it sorts anything
            v = list(bits)
            for a, b in net:
                v[a], v[b] = min(v[a], v[b]), max(v[a], v[b])
            assert v == sorted(v)


def _chunked(values: np.ndarray, rng, n_cuts: int = 9) -> pa.ChunkedArray:
    cuts = np.sort(rng.choice(np.arange(1, len(values)), n_cuts, replace=False))
    return pa.chunked_array([pa.array(part) for part in np.split(values, cuts)])


@pytest.fixture(scope="module")
def awkward() -> pa.Table:
    """Objects of 1-40 sources (0-1 ids apart), bad fluxes, zero errors, NaN extendedness, ragged chunks."""
    rng = np.random.default_rng(7)
    sizes = np.concatenate([np.arange(1, 41), rng.integers(1, 25, 3000)])
    n = int(sizes.sum())
    obj = np.repeat(np.cumsum(rng.integers(1, 3, len(sizes))), sizes).astype(np.int64)
    flux = 10 ** rng.uniform(2, 6, n)
    flux[rng.random(n) < 0.03] = np.nan
    flux[rng.random(n) < 0.02] = -5.0
    err = flux / rng.uniform(1, 300, n)
    err[rng.random(n) < 0.01] = 0.0
    ext = rng.choice([0.0, 1.0], n, p=[0.8, 0.2])
    ext[rng.random(n) < 0.02] = np.nan
    nj = {"unit": "nJy"}
    schema = pa.schema([pa.field("obj_index", pa.int64()), pa.field("psfFlux", pa.float64(), metadata=nj),
                        pa.field("psfFluxErr", pa.float64(), metadata=nj), pa.field("extendedness", pa.float64())])
    return pa.table([_chunked(obj, rng), _chunked(flux, rng), _chunked(err, rng), _chunked(ext, rng)], schema=schema)


def _stats(table, monkeypatch=None, **kw):
    frame = to_frame(table)
    return object_stats(frame, {}, moments="mag",
                        stats={"snr": ("snr", "median"), "ext": ("extendedness", "mean")}, **kw)[0]


def _assert_same(fused: dict, ref: dict):
    assert fused.keys() == ref.keys()
    for k in ref:
        a, b = np.asarray(fused[k]), np.asarray(ref[k])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, equal_nan=True, err_msg=k)
        else:
            assert np.array_equal(a, b), k


@pytest.mark.parametrize("threads", ["1", "3"])
def test_kernel_matches_numpy_on_awkward_objects(awkward, monkeypatch, threads):
    monkeypatch.setattr(segments, "MIN_ROWS_PER_THREAD", 1)
    monkeypatch.setenv("SURVEYQA_THREADS", threads)
    fused = _stats(awkward)
    monkeypatch.setenv("SURVEYQA_NO_KERNEL", "1")
    ref = _stats(awkward)
    _assert_same(fused, ref)
    assert len(ref["n_visits"]) == 3040 and ref["n_visits"].min() == 0  # an object may have no finite magnitude
    assert np.isnan(ref["std"][ref["n_visits"] < 2]).all()


def test_segments_follow_chunks_and_threads(monkeypatch):
    monkeypatch.setattr(segments, "MIN_ROWS_PER_THREAD", 1)
    rng = np.random.default_rng(3)
    keys = np.repeat(np.arange(500) * 7, rng.integers(1, 9, 500)).astype(np.int64)
    parts = np.split(keys, np.sort(rng.choice(np.arange(1, len(keys)), 20, replace=False)))
    starts, first = segments.segment_starts(parts, len(keys), threads=4)
    expected = np.flatnonzero(np.diff(keys, prepend=-1))
    assert np.array_equal(starts, expected) and np.array_equal(first, keys[expected])
    assert segments.segment_starts([keys[::-1].copy()], len(keys)) is None  # not sorted
    values = rng.normal(size=len(keys))
    out = segments.segment_stats(starts, len(keys), [segments.Stream(
        segments.IDENT, np.split(values, [5, 6, 300]), count=True, mean=True, std=True, percentile=90.0)], threads=4)[0]
    g = Grouping(None, len(starts), starts, n_rows=len(keys))
    n, mean, std = g.moments(values)
    np.testing.assert_array_equal(out["count"], n)
    np.testing.assert_allclose(out["mean"], mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out["std"], std, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(out["percentile"], g.percentile(values, 90.0)[0], rtol=0)


@pytest.fixture(scope="module")
def catalog() -> pa.Table:
    t = matched_catalog(n_objects=3000, n_visits=6, galaxy_fraction=0.2, seed=11)
    return pa.Table.from_batches(t.to_batches(max_chunksize=1777))  # chunks that split objects


@pytest.mark.parametrize("name", ["PA1", "AM1"])
def test_metric_values_and_per_object_rows_match_numpy(catalog, monkeypatch, name):
    fused = measure(get_metric(name), catalog)
    monkeypatch.setenv("SURVEYQA_NO_KERNEL", "1")
    ref = measure(get_metric(name), catalog)
    assert fused.values["value"][0].as_py() == pytest.approx(ref.values["value"][0].as_py(), rel=1e-12)
    assert fused.values["n"].to_pylist() == ref.values["n"].to_pylist()
    assert sorted(fused.per_row.column_names) == sorted(ref.per_row.column_names)
    assert fused.per_row.num_rows == ref.per_row.num_rows  # every object / pair, selected or not
    for col in ref.per_row.column_names:
        a, b = fused.per_row[col].to_numpy(zero_copy_only=False), ref.per_row[col].to_numpy(zero_copy_only=False)
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-12, equal_nan=True, err_msg=col)
        else:
            assert np.array_equal(a, b), col


def test_flagged_sources_several_bands_unsorted_rows_and_int32_ids(catalog, monkeypatch):
    """Where the kernel does not apply as is (or applies to a materialized column), same answer."""
    rng = np.random.default_rng(5)
    flagged = catalog.append_column("psfFlux_flag", pa.array(rng.random(catalog.num_rows) < 0.1))
    two_bands = pa.concat_tables([catalog, catalog.set_column(
        catalog.schema.get_field_index("band"), "band", pa.array(["i"] * catalog.num_rows))])
    shuffled = catalog.take(rng.permutation(catalog.num_rows))
    int32 = catalog.set_column(0, "obj_index", catalog["obj_index"].cast(pa.int32()))
    for table in (flagged, two_bands, shuffled, int32):
        fused = measure(get_metric("PA1"), table)
        with monkeypatch.context() as m:
            m.setenv("SURVEYQA_NO_KERNEL", "1")
            ref = measure(get_metric("PA1"), table)
        assert fused.values["value"][0].as_py() == pytest.approx(ref.values["value"][0].as_py(), rel=1e-12)
        assert fused.per_row.num_rows == ref.per_row.num_rows


@pytest.fixture(scope="module")
def parquet_catalog(catalog, tmp_path_factory) -> tuple[pa.Table, str]:
    """The catalog as Parquet in row groups of 1000 rows: objects of 6 sources span two of them."""
    import pyarrow.parquet as pq

    path = str(tmp_path_factory.mktemp("pq") / "matched.parquet")
    pq.write_table(catalog, path, row_group_size=1000)
    return catalog, path


def _parquet(path):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, read_dictionary=["band"])


@pytest.mark.parametrize("name", ["PA1", "AM1", "PA2", "TE1"])
def test_a_parquet_file_streamed_by_row_groups_gives_the_tables_values(parquet_catalog, name):
    table, path = parquet_catalog
    ref = measure(get_metric(name), table)
    res = measure(get_metric(name), _parquet(path))
    assert res.values["value"][0].as_py() == pytest.approx(ref.values["value"][0].as_py(), rel=1e-12)
    assert res.values["n"].to_pylist() == ref.values["n"].to_pylist()
    assert res.per_row.num_rows == ref.per_row.num_rows
    for col in ref.per_row.column_names:
        a, b = res.per_row[col].to_numpy(zero_copy_only=False), ref.per_row[col].to_numpy(zero_copy_only=False)
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-12, equal_nan=True, err_msg=col)
        else:
            assert np.array_equal(a, b), col


def test_parquet_files_the_stream_cannot_take_fall_back(catalog, tmp_path, monkeypatch):
    """Several bands, unsorted ids, flagged sources: the same values as from the table."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(9)
    two_bands = pa.concat_tables([catalog, catalog.set_column(
        catalog.schema.get_field_index("band"), "band", pa.array(["i"] * catalog.num_rows))])
    shuffled = catalog.take(rng.permutation(catalog.num_rows))
    flagged = catalog.append_column("psfFlux_flag", pa.array(rng.random(catalog.num_rows) < 0.1))
    for i, table in enumerate((two_bands, shuffled, flagged)):
        path = str(tmp_path / f"t{i}.parquet")
        pq.write_table(table, path, row_group_size=2500)
        ref = measure(get_metric("PA1"), table)
        res = measure(get_metric("PA1"), _parquet(path))
        assert res.values["value"][0].as_py() == pytest.approx(ref.values["value"][0].as_py(), rel=1e-12)
        assert res.per_row.num_rows == ref.per_row.num_rows


def test_a_forked_child_uses_threads_of_its_own(catalog, monkeypatch):
    """A pipeline that forks after a measurement must not wait on the parent's pool threads."""
    import multiprocessing

    monkeypatch.setattr(segments, "MIN_ROWS_PER_THREAD", 1)
    monkeypatch.setenv("SURVEYQA_THREADS", "2")
    expected = measure(get_metric("PA1"), catalog).values["value"][0].as_py()  # the pool exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_pa1_value, (catalog,)).get(timeout=60)
    assert got == expected


def _pa1_value(table) -> float:
    segments.MIN_ROWS_PER_THREAD = 1
    return measure(get_metric("PA1"), table).values["value"][0].as_py()
