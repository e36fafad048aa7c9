"""Astrometric repeatability, LPM-17 AM1/AM2/AM3 and AD1/AF1 (AD2/AF2, AD3/AF3), on matched catalogs.

As lsst/faro computes them (``AMxTask``, ``ADxTask``, ``AFxTask`` and faro's
``utils/separations.py``, vectorized; faro's tests reproduce: `tests/test_srd_faro.py`):

1. Objects (``obj_id``, per band) that pass ``astrometry_stars``, faro's ``filterMatches`` with
   its defaults: at least 2 measurements, every PSF magnitude finite, median of the finite S/N
   >= 50, extendedness < 0.9 in every visit, no source flagged (the ``flag`` column: faro's
   saturated / cosmic-ray / bad / edge pixel flags) and every source primary
   (``detect_isPrimary``), each where the table has the column; then median of the finite
   magnitudes in [17, 21.5) mag (``bright_mag_cut``, ``faint_mag_cut``). Each object's position
   is the normalized mean of its sources' unit vectors (``lsst.geom.averageSpherePoint``).
2. Pairs of such objects whose mean positions are D - 1 <= d < D + 1 arcmin apart (``width``
   = 2 arcmin), D = 5, 20, 200 arcmin for AM1, AM2, AM3, each pair once, within each group of
   the group_by keys.
3. For each pair, the angular distance between the two objects in every visit both were
   measured in. AMx: per pair the sample standard deviation (ddof=1) of those distances (pairs
   with 2 or more), in mas; the median over pairs.
4. ADx / AFx (per (pair, visit) rows): pairs with 3 or more distances, zero distances dropped;
   each distance's |distance - the pair's median distance|. With x those residuals and m their
   median, ADx_<level> = the (100 - AFx spec)th percentile of x - m, AFx_<level> = the
   percentage of |x - m| above the ADx spec of the level (faro's ``calcSepOutliers``; 20 mas and
   10 % for design AD1/AF1).

Bounded cost: the number of pairs grows as N² for large annuli. At most ``MAX_OBJECTS`` objects
per group take part (a seeded random sample of the selected objects), and at most ``MAX_PAIRS``
pairs (a seeded random sample of the pairs found); faro has no cap, so values differ from its
only where a cap applies, by their statistical error. Both caps are reported in the per-pair
table (``n_objects_used`` of ``n_objects_selected``).
"""

from __future__ import annotations

from collections.abc import Mapping

import astropy.units as u
import numpy as np
from scipy.spatial import cKDTree

from surveyqa.metrics.actions import select as sel
from surveyqa.metrics.actions.aggregate import Aggregation, median
from surveyqa.metrics.actions.compute import object_stats
from surveyqa.metrics.actions.groups import (
    broadcast,
    factorize_keys,
    group_count,
    group_percentile,
    is_sorted,
)
from surveyqa.metrics.actions.select import Selection
from surveyqa.metrics.columns import Frame
from surveyqa.metrics.engine import Metric
from surveyqa.metrics.library.photometry import MAX_EXTENDEDNESS, object_context

__all__ = ["METRICS", "astrometry_stars", "pair_rms_compute", "unit_vectors", "MAX_OBJECTS", "MAX_PAIRS"]

MAG_BRIGHT, MAG_FAINT = 17.0, 21.5
#: faro ``filterMatches``' default ``snrMin``.
SNR_MIN = 50.0
ANNULUS_WIDTH_ARCMIN = 2.0
MAX_OBJECTS = 20_000
MAX_PAIRS = 1_000_000
MIN_PAIRS = 10
SEED = 12345
#: largest (objects x visits) cube of positions the pair join builds (entries of 3 float64)
#: before it falls back to a sorted merge.
_DENSE_LOOKUP_MAX = 5_000_000
#: pairs per block of the dense join (~8 MB of temporaries, reused from block to block instead of
#: ~400 MB of fresh memory for 4 x 10^5 pairs x 10 visits at once).
_PAIR_BLOCK = 32_768

#: (ADx spec in mas, AFx spec in %) by x and level (LPM-17, verify_metrics specs).
AD_SPEC = {(1, "design"): 20.0, (1, "minimum"): 40.0, (1, "stretch"): 10.0,
           (2, "design"): 20.0, (2, "minimum"): 40.0, (2, "stretch"): 10.0,
           (3, "design"): 30.0, (3, "minimum"): 50.0, (3, "stretch"): 20.0}
AF_SPEC = {(x, lv): {"design": 10.0, "minimum": 20.0, "stretch": 5.0}[lv] for x, lv in AD_SPEC}
ANNULUS_ARCMIN = {1: 5.0, 2: 20.0, 3: 200.0}


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """(N, 3) unit vectors on the sphere for positions in degrees."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cd = np.cos(dec)
    return np.column_stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)])


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in radians between rows of unit vectors, accurate at small and large angles.

    atan2(|a x b|, a.b); the cross product is written out per component (the same arithmetic as
    `numpy.cross`, without its temporaries), the dot product is `numpy.einsum`'s.
    """
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    c0 = a1 * b2
    c0 -= a2 * b1
    c0 *= c0
    c1 = a2 * b0
    c1 -= a0 * b2
    c1 *= c1
    c2 = a0 * b1
    c2 -= a1 * b0
    c2 *= c2
    c0 += c1
    c0 += c2
    np.sqrt(c0, out=c0)
    return np.arctan2(c0, np.einsum("ij,ij->i", a, b), out=c0)


def _chord(theta_rad: float) -> float:
    return 2.0 * np.sin(theta_rad / 2.0)


def astrometry_stars(bright: float = MAG_BRIGHT, faint: float = MAG_FAINT, snr: float = SNR_MIN) -> Selection:
    """faro's ``filterMatches`` with its defaults, then median magnitude in [bright, faint)."""
    s = (sel.min_count(2, column="n_visits")
         & sel.equal(0.0, column="obj_nonfinite_mag", what="every magnitude finite")
         & sel.snr_min(snr, column="obj_snr")
         & sel.equal(0.0, column="obj_extended", what=f"extendedness < {MAX_EXTENDEDNESS:g} in every visit")
         & sel.equal(0.0, column="obj_flagged", what="no source flagged", optional=True)
         & sel.equal(0.0, column="obj_not_primary", what="every source primary", optional=True)
         & sel.mag_range(bright, faint, column="obj_mag"))
    return s.named("astrometry_stars", f"astrometric reference stars (faro's filterMatches): {s.description}")


def _object_context(frame: Frame) -> dict[str, tuple[object, str]]:
    """The per-object statistics `astrometry_stars` reads: faro's filterMatches context, with flags,
    and the median magnitude."""
    return {"obj_mag": ("mag", "median"), **object_context(frame, flags=True)}


class _View:
    def __init__(self, cols: Mapping[str, np.ndarray], n: int):
        self.cols, self.n_rows = cols, n

    def can_resolve(self, name: str) -> bool:
        return name in self.cols

    def get(self, name: str) -> np.ndarray:
        return self.cols[name]


def _annulus(annulus_arcmin: float, width_arcmin: float) -> tuple[float, float]:
    return (np.radians((annulus_arcmin - width_arcmin / 2) / 60.0),
            np.radians((annulus_arcmin + width_arcmin / 2) / 60.0))


def _find_pairs(frame: Frame, keys: Mapping[str, np.ndarray], selection: Selection, annulus_arcmin: float,
                width_arcmin: float, max_objects: int, max_pairs: int, seed: int) -> dict:
    """The selected objects and their pairs in the annulus: the first steps of AMx and ADx / AFx.

    Returns a dict: ``objs`` (per-object rows), ``a``, ``b`` (object indices of each pair),
    ``rows``, ``row_obj``, ``visit``, ``xyz`` (the sampled objects' sources with a finite position:
    row, object, visit, unit vector), ``centre`` (object mean positions), ``n_selected``,
    ``n_used`` and ``note`` (why there are no pairs, or None).
    """
    lo, hi = _annulus(annulus_arcmin, width_arcmin)
    rng = np.random.default_rng(seed)
    good = frame.finite("ra") & frame.finite("dec")  # positions are read for sampled objects only
    objs, groups = object_stats(frame, keys, stats=_object_context(frame))
    n_obj = groups.n_groups
    chosen = selection(_View(objs, n_obj))
    n_selected = int(chosen.sum())
    # the seeded sample of objects per group (tract, band), drawn before any position is computed
    if keys:
        gcodes, _ = factorize_keys([objs[k] for k in keys], n_obj)
        members = [chosen & (gcodes == g) for g in np.unique(gcodes[chosen])]  # loop over groups, not rows
    else:
        members = [chosen] if n_selected else []
    samples = []
    for member in members:
        idx = np.flatnonzero(member)
        if len(idx) > max_objects:
            idx = np.sort(rng.choice(idx, max_objects, replace=False))
        samples.append(idx)
    # only the sources of sampled objects: their unit vectors and the objects' mean positions
    sampled = np.unique(np.concatenate(samples)) if samples else np.zeros(0, np.int64)
    rows = groups.rows_of(sampled)
    rows = rows[good[rows]]
    row_obj = groups.codes_at(rows)
    xyz = unit_vectors(frame.take("ra", rows), frame.take("dec", rows))
    centre = np.column_stack([group_count(row_obj, n_obj, weights=xyz[:, i]) for i in range(3)]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    pair_a, pair_b = [], []
    for idx in samples:
        tree = cKDTree(centre[idx])
        pairs = tree.query_pairs(_chord(hi), output_type="ndarray")
        if len(pairs):
            chord = np.linalg.norm(centre[idx[pairs[:, 0]]] - centre[idx[pairs[:, 1]]], axis=1)
            pairs = pairs[(chord >= _chord(lo)) & (chord < _chord(hi))]  # faro's half-open annulus, in chords
            pair_a.append(idx[pairs[:, 0]])
            pair_b.append(idx[pairs[:, 1]])
    a = np.concatenate(pair_a) if pair_a else np.zeros(0, np.int64)
    b = np.concatenate(pair_b) if pair_b else np.zeros(0, np.int64)
    if len(a) > max_pairs:
        keep = np.sort(rng.choice(len(a), max_pairs, replace=False))
        a, b = a[keep], b[keep]
    note = None
    if len(a) == 0:
        note = (f"no pairs of selected objects {annulus_arcmin - width_arcmin / 2:g}-"
                f"{annulus_arcmin + width_arcmin / 2:g} arcmin apart among {n_selected} objects "
                f"({selection.explain(_View(objs, n_obj))})")
    return {"objs": objs, "n_obj": n_obj, "a": a, "b": b, "rows": rows, "row_obj": row_obj,
            "visit": frame.take("visit", rows), "xyz": xyz, "centre": centre, "n_selected": n_selected,
            "n_used": int(sum(len(idx) for idx in samples)), "note": note}


def _pair_columns(found: dict, keys: Mapping[str, np.ndarray], a: np.ndarray, b: np.ndarray) -> dict:
    """The columns naming each row's pair: object ids, mean separation (arcmin), group keys, caps."""
    objs, centre = found["objs"], found["centre"]
    out = {"obj_id_1": objs["obj_id"][a], "obj_id_2": objs["obj_id"][b],
           "separation": np.degrees(_angle(centre[a], centre[b])) * 60.0,
           "n_objects_selected": np.full(len(a), found["n_selected"]),
           "n_objects_used": np.full(len(a), found["n_used"])}
    for k in keys:
        out[k] = objs[k][a]
    return out


def pair_rms_compute(annulus_arcmin: float, width_arcmin: float = ANNULUS_WIDTH_ARCMIN,
                     max_objects: int = MAX_OBJECTS, max_pairs: int = MAX_PAIRS, seed: int = SEED):
    """Compute step of AMx: one row per object pair in the annulus, value = rms distance (mas)."""

    def compute(frame: Frame, keys: Mapping[str, np.ndarray], selection: Selection) -> dict[str, np.ndarray]:
        found = _find_pairs(frame, keys, selection, annulus_arcmin, width_arcmin, max_objects, max_pairs, seed)
        a, b = found["a"], found["b"]
        rms, n_common = _pair_distance_rms(a, b, found["row_obj"], found["n_obj"], found["visit"], found["xyz"])
        out = {**_pair_columns(found, keys, a, b), "n_common_visits": n_common,
               "value": (rms * u.rad).to_value(u.mas), "selected": n_common >= 2}
        if found["note"]:
            out["_note"] = found["note"]
        return out

    return compute


def pair_residual_compute(annulus_arcmin: float, width_arcmin: float = ANNULUS_WIDTH_ARCMIN,
                          max_objects: int = MAX_OBJECTS, max_pairs: int = MAX_PAIRS, seed: int = SEED):
    """Compute step of ADx / AFx: one row per (pair, common visit), value = |distance - the pair's
    median distance| (mas); selected where the pair has 3 or more distances and this one is not zero."""

    def compute(frame: Frame, keys: Mapping[str, np.ndarray], selection: Selection) -> dict[str, np.ndarray]:
        found = _find_pairs(frame, keys, selection, annulus_arcmin, width_arcmin, max_objects, max_pairs, seed)
        a, b, n_obj = found["a"], found["b"], found["n_obj"]
        pair, dist, visit = _pair_distances(a, b, found["row_obj"], n_obj, found["visit"], found["xyz"])
        finite = np.isfinite(dist)
        n_common = np.bincount(pair[finite], minlength=len(a))
        real = finite & (dist > 0.0) & (n_common[pair] >= 3)  # faro: > 2 separations, zero ones dropped
        median_dist, _ = group_percentile(pair[real], dist[real], len(a), 50.0)
        residual = np.abs(dist - median_dist[pair])
        out = {**_pair_columns(found, keys, a[pair], b[pair]), "visit": visit,
               "distance": (dist * u.rad).to_value(u.mas), "n_common_visits": n_common[pair],
               "value": (residual * u.rad).to_value(u.mas), "selected": real}
        if found["note"]:
            out["_note"] = found["note"]
        return out

    return compute


def _pair_distance_rms(a: np.ndarray, b: np.ndarray, codes: np.ndarray, n_obj: int, visit: np.ndarray,
                       xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample std (radians) over common visits of the distance between objects a[i] and b[i].

    ``codes``, ``visit`` and ``xyz`` are the object code, visit and unit vector of the good
    sources of (at least) the objects in the pairs. The join on (object, visit) is a lookup in a
    dense (objects x visits) cube of positions when the objects are seen in most visits (matched
    catalogs of one tract), else a sorted merge; the two agree to rounding (the order of the
    additions differs).
    """
    if len(a) == 0:
        return np.zeros(0), np.zeros(0, np.int64)
    vcode, _ = factorize_keys([np.asarray(visit)])
    n_v = int(vcode.max()) + 1
    rows = np.arange(len(codes))
    key = codes * n_v + vcode
    if not is_sorted(key):
        order = np.argsort(key)
        rows, key = rows[order], key[order]
    unique_keys = not bool(np.any(key[1:] == key[:-1]))  # one source per (object, visit)
    objects = np.unique(np.concatenate([a, b]))
    obj_sorted = key // n_v
    count = np.bincount(obj_sorted, minlength=n_obj)
    n_expanded = int(count[a].sum())  # (pair, visit) rows the merge would look at
    if unique_keys and len(objects) * n_v <= _DENSE_LOOKUP_MAX and len(a) * n_v <= 2 * n_expanded:
        cube, seen, local = _position_cube(objects, n_obj, obj_sorted, key % n_v, rows, n_v, xyz)
        n = np.empty(len(a), dtype=np.int64)
        var = np.empty(len(a))
        for p0 in range(0, len(a), _PAIR_BLOCK):  # blocks of pairs: their temporaries are reused memory
            block = slice(p0, p0 + _PAIR_BLOCK)
            n[block], var[block] = _dense_variance(cube, seen, local[a[block]], local[b[block]], n_v)
    else:
        pair, dist = _join_sorted(a, b, n_obj, obj_sorted, count, key, rows, n_v, xyz)
        n = np.bincount(pair, minlength=len(a))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(pair, weights=dist, minlength=len(a)) / n
            var = np.bincount(pair, weights=(dist - mean[pair]) ** 2, minlength=len(a)) / (n - 1)
    var[n < 2] = np.nan
    return np.sqrt(var), n


def _pair_distances(a: np.ndarray, b: np.ndarray, codes: np.ndarray, n_obj: int, visit: np.ndarray,
                    xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pair index, angular distance in radians, visit) for every visit both objects of a pair
    were measured in, ordered by pair."""
    if len(a) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.asarray(visit)[:0]
    vcode, _ = factorize_keys([np.asarray(visit)])
    n_v = int(vcode.max()) + 1
    rows = np.arange(len(codes))
    key = codes * n_v + vcode
    order = np.argsort(key, kind="stable")
    rows, key = rows[order], key[order]
    obj_sorted = key // n_v
    count = np.bincount(obj_sorted, minlength=n_obj)
    pair, dist, rows_a = _join_sorted(a, b, n_obj, obj_sorted, count, key, rows, n_v, xyz, with_rows=True)
    order = np.argsort(pair, kind="stable")
    return pair[order], dist[order], np.asarray(visit)[rows_a[order]]


def _position_cube(objects, n_obj, obj_sorted, visit_sorted, rows, n_v, xyz):
    """A dense (objects x visits) cube of unit vectors, where each object was seen, and the row of
    each object in the cube (-1: not in it)."""
    local = np.full(n_obj, -1, dtype=np.int64)
    local[objects] = np.arange(len(objects))
    mine = local[obj_sorted] >= 0
    cube = np.zeros((len(objects), n_v, 3))
    seen = np.zeros((len(objects), n_v), dtype=bool)
    where = (local[obj_sorted[mine]], visit_sorted[mine])
    cube[where] = xyz[rows[mine]]
    seen[where] = True
    return cube, seen, local


def _dense_variance(cube, seen, la, lb, n_v):
    """Common visits and sample variance over them of the distance of pairs (la[i], lb[i]) of cube rows."""
    both = seen[la] & seen[lb]
    dist = _angle(cube[la].reshape(-1, 3), cube[lb].reshape(-1, 3)).reshape(len(la), n_v)
    with np.errstate(invalid="ignore", divide="ignore"):
        if both.all():  # every pair in every visit: a (pairs x visits) matrix
            n = np.full(len(la), n_v, dtype=np.int64)
            mean = dist.sum(axis=1) / n
            dist -= mean[:, None]
        else:  # elsewhere the distance is meaningless
            n = both.sum(axis=1)
            mean = np.where(both, dist, 0.0).sum(axis=1) / n
            dist = np.where(both, dist - mean[:, None], 0.0)
        dist *= dist
        return n, dist.sum(axis=1) / (n - 1)


def _join_sorted(a, b, n_obj, obj_sorted, count, key, rows, n_v, xyz, with_rows=False):
    """(pair, distance) for every visit both objects of a pair have: expand a's sources, search b's."""
    start = np.searchsorted(obj_sorted, np.arange(n_obj))
    reps = count[a]
    pair = np.repeat(np.arange(len(a)), reps)
    offset = np.arange(len(pair)) - np.repeat(np.cumsum(reps) - reps, reps)
    src_a = start[a][pair] + offset
    want = b[pair] * n_v + (key[src_a] % n_v)
    pos = np.minimum(np.searchsorted(key, want), len(key) - 1)
    hit = key[pos] == want
    pair, ra_rows, rb_rows = pair[hit], rows[src_a[hit]], rows[pos[hit]]
    dist = _angle(xyz[ra_rows], xyz[rb_rows])
    return (pair, dist, ra_rows) if with_rows else (pair, dist)


def _ad_aggregation(percent: float) -> Aggregation:
    def fn(v, c, g, rows):
        med, n = group_percentile(c, v, g, 50.0)
        return group_percentile(c, v - broadcast(med, c), g, 100.0 - percent)[0], n
    return Aggregation(f"p{100 - percent:g}(x-median)",
                       f"{100 - percent:g}th percentile of x - median(x), x = |distance - pair median|", fn)


def _af_aggregation(threshold_mas: float) -> Aggregation:
    def fn(v, c, g, rows):
        med, n = group_percentile(c, v, g, 50.0)
        hit = (np.abs(v - broadcast(med, c)) > threshold_mas).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * group_count(c, g, weights=hit) / n, n
    return Aggregation(f"percent(|x-median|>{threshold_mas:g}mas)",
                       f"percentage of x = |distance - pair median| with |x - median(x)| > {threshold_mas:g} mas", fn)


_REQUIRED = ("obj_id", "ra", "dec", "mag", "snr", "extendedness", "visit")


def _am(x: int) -> Metric:
    d = ANNULUS_ARCMIN[x]
    return Metric(
        name=f"validate_drp.AM{x}", unit=u.mas, granularity="tract", required_columns=_REQUIRED,
        compute=pair_rms_compute(d), selection=astrometry_stars(), aggregation=median(),
        description=f"median over star pairs {d:g} ± 1 arcmin apart of the rms of their distance across visits",
        min_n=MIN_PAIRS, row_kind="pair", optional_columns=("band", "flag", "primary"),
    )


def _ad(x: int, level: str) -> Metric:
    af = AF_SPEC[(x, level)]
    return Metric(
        name=f"validate_drp.AD{x}_{level}", unit=u.mas, granularity="tract", required_columns=_REQUIRED,
        compute=pair_residual_compute(ANNULUS_ARCMIN[x]), selection=astrometry_stars(),
        aggregation=_ad_aggregation(af),
        description=f"separation residual (about each AM{x} pair's median) exceeded by {af:g}% of separations, "
                    "relative to the median residual",
        min_n=MIN_PAIRS, row_kind="pair_visit", optional_columns=("band", "flag", "primary"),
        aliases=(f"AD{x}",) if level == "design" else (),
    )


def _af(x: int, level: str) -> Metric:
    ad = AD_SPEC[(x, level)]
    return Metric(
        name=f"validate_drp.AF{x}_{level}", unit=u.percent, granularity="tract", required_columns=_REQUIRED,
        compute=pair_residual_compute(ANNULUS_ARCMIN[x]), selection=astrometry_stars(),
        aggregation=_af_aggregation(ad),
        description=f"percentage of AM{x} pair separations whose residual deviates from the median residual "
                    f"by more than {ad:g} mas",
        min_n=MIN_PAIRS, row_kind="pair_visit", optional_columns=("band", "flag", "primary"),
        aliases=(f"AF{x}",) if level == "design" else (),
    )


METRICS = ([_am(x) for x in (1, 2, 3)] + [_ad(x, lv) for x, lv in AD_SPEC] + [_af(x, lv) for x, lv in AD_SPEC])
