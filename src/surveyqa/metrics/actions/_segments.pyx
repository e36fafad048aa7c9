# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused per-object statistics over rows sorted by object, compiled (the GIL is released).

A matched catalog comes sorted by object: each object is a segment of consecutive rows. The
numpy version of the per-object statistics makes every column contiguous, materializes each
derived per-row column (magnitude, S/N) and runs a few reductions, each a pass over 10^7 rows
in fresh memory. Here the rows are taken in batches of whole objects (a few thousand rows) read
from the Arrow chunks where they lie (zero-copy); a batch's per-row values (the magnitude of a
flux, a S/N) go to a small buffer that stays in cache, and each object's count, mean, sample std
and percentile of its finite values follow, with the formulas of
`surveyqa.metrics.actions.groups`. Magnitudes use numpy's own float64 log10 loop (its SIMD
code, called without the GIL), so they are the numpy code's magnitudes bit for bit. The callers
split the objects among threads (`surveyqa.metrics.actions.segments`).
"""

from libc.math cimport NAN, floor, isfinite, log10, sqrt
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport free, malloc, qsort

import numpy as np

cimport numpy as cnp

cnp.import_array()

#: per-row value of a stream: a column, a*log10(column)+b (magnitude of a flux), a*A/B (S/N).
DEF OP_IDENT = 0
DEF OP_LOGMAG = 1
DEF OP_RATIO = 2

#: statistics a stream asks for (bit mask).
DEF S_COUNT = 1
DEF S_MEAN = 2
DEF S_STD = 4
DEF S_PCT = 8

DEF MAX_STREAMS = 8
DEF INSERTION_MAX = 32
#: rows per batch of whole objects (a batch's per-row values stay in the L1/L2 cache).
DEF BATCH_ROWS = 4096

ctypedef void (*loop_fn)(char**, cnp.npy_intp*, cnp.npy_intp*, void*) noexcept nogil

#: numpy's float64 -> float64 log10 inner loop (the CPU-dispatched one numpy itself runs).
cdef loop_fn _LOG10_LOOP = NULL
cdef void* _LOG10_DATA = NULL


cdef void _find_log10_loop():
    global _LOG10_LOOP, _LOG10_DATA
    cdef cnp.ufunc uf = np.log10
    cdef int i
    if uf.nin != 1 or uf.nout != 1 or uf.functions == NULL:
        return
    for i in range(uf.ntypes):
        if uf.types[2 * i] == cnp.NPY_DOUBLE and uf.types[2 * i + 1] == cnp.NPY_DOUBLE:
            _LOG10_LOOP = <loop_fn> uf.functions[i]
            _LOG10_DATA = uf.data[i] if uf.data != NULL else NULL
            return


_find_log10_loop()


def numpy_log10_loop() -> bool:
    """True when magnitudes use numpy's log10 loop (else the C library's log10: same to 1 ulp)."""
    return _LOG10_LOOP != NULL


cdef inline void _log10(const double* x, double* out, Py_ssize_t n) noexcept nogil:
    cdef char* args[2]
    cdef cnp.npy_intp dims[1]
    cdef cnp.npy_intp steps[2]
    cdef Py_ssize_t i
    if _LOG10_LOOP != NULL:
        args[0] = <char*> x
        args[1] = <char*> out
        dims[0] = n
        steps[0] = sizeof(double)
        steps[1] = sizeof(double)
        _LOG10_LOOP(args, dims, steps, _LOG10_DATA)
    else:
        for i in range(n):
            out[i] = log10(x[i])


cdef struct Chunked:
    int n_chunks
    const void** data
    const int64_t* offsets  # n_chunks + 1 row offsets


cdef struct Stream:
    int op
    Chunked a
    Chunked b
    double sa
    double sb
    int stats
    double q  # percentile, 0-100
    int64_t* count
    double* mean
    double* std
    double* pct


cdef inline Py_ssize_t _chunk_of(const Chunked* c, int64_t row, Py_ssize_t k) noexcept nogil:
    while c.offsets[k + 1] <= row:
        k += 1
    return k


cdef inline const double* _rows(const Chunked* c, int64_t s, int64_t e, Py_ssize_t* cursor,
                                double* tmp) noexcept nogil:
    """Pointer to rows [s, e) of a float64 column: into its chunk, or gathered into tmp."""
    cdef Py_ssize_t k = _chunk_of(c, s, cursor[0])
    cdef int64_t i
    cursor[0] = k
    if e <= c.offsets[k + 1]:
        return (<const double*> c.data[k]) + (s - c.offsets[k])
    for i in range(s, e):
        k = _chunk_of(c, i, k)
        tmp[i - s] = (<const double*> c.data[k])[i - c.offsets[k]]
    return tmp


cdef int _cmp(const void* x, const void* y) noexcept nogil:
    cdef double a = (<const double*> x)[0], b = (<const double*> y)[0]
    return (a > b) - (a < b)


cdef extern from "_sortnet.h" nogil:
    int sq_sort_small(double* v, long n)


cdef inline void _sort(double* v, Py_ssize_t m) noexcept nogil:
    """Sort finite values: a branch-free network up to 16, insertion sort to 32, else qsort."""
    cdef Py_ssize_t i, j
    cdef double x
    if sq_sort_small(v, m):
        return
    if m > INSERTION_MAX:
        qsort(v, m, sizeof(double), _cmp)
        return
    for i in range(1, m):
        x = v[i]
        j = i - 1
        while j >= 0 and v[j] > x:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = x


cdef inline void _moments(Stream* st, Py_ssize_t g, const double* v, Py_ssize_t n, bint compact,
                          double* out) noexcept nogil:
    """Count, mean and sample std of the finite values of v[0:n]; with ``compact`` the finite
    values are also copied, in order, to out[0:count] and their percentile taken there."""
    cdef Py_ssize_t i, m = 0
    cdef double x, total = 0.0, mean, dev
    for i in range(n):
        x = v[i]
        if isfinite(x):
            if compact:
                out[m] = x
            total = total + x
            m += 1
    if st.stats & S_COUNT:
        st.count[g] = m
    mean = total / m if m > 0 else NAN
    if st.stats & S_MEAN:
        st.mean[g] = mean
    if st.stats & S_STD:
        if m < 2:
            st.std[g] = NAN
        else:
            total = 0.0
            for i in range(n):
                x = v[i]
                if isfinite(x):
                    dev = x - mean
                    total = total + dev * dev
            st.std[g] = sqrt(total / (m - 1))
    if st.stats & S_PCT:
        _percentile(st, g, out, m)


cdef inline void _percentile(Stream* st, Py_ssize_t g, double* v, Py_ssize_t m) noexcept nogil:
    """The q-th percentile of v[0:m] (reordered), numpy's linear interpolation."""
    cdef Py_ssize_t lo_r, hi_r
    cdef double pos, frac
    if m == 0:
        st.pct[g] = NAN
        return
    _sort(v, m)
    pos = (m - 1) * (st.q / 100.0)
    lo_r = <Py_ssize_t> floor(pos)
    hi_r = lo_r + 1 if lo_r + 1 < m - 1 else m - 1
    frac = pos - lo_r
    st.pct[g] = v[lo_r] + (v[hi_r] - v[lo_r]) * frac


cdef inline const double* _values(Stream* st, int64_t s, int64_t e, Py_ssize_t* cur_a, Py_ssize_t* cur_b,
                                  double* out, double* tmp_a, double* tmp_b) noexcept nogil:
    """Per-row values of a stream for rows [s, e): into the column (zero-copy) or ``out``."""
    cdef Py_ssize_t i, n = e - s
    cdef const double* pa = _rows(&st.a, s, e, cur_a, tmp_a)
    cdef const double* pb
    cdef double x
    if st.op == OP_IDENT:
        return pa
    if st.op == OP_LOGMAG:  # numpy's mag = log10(flux); mag *= a; mag += b, rounded alike
        _log10(pa, out, n)
        for i in range(n):
            x = out[i] * st.sa
            out[i] = x + st.sb
        return out
    pb = _rows(&st.b, s, e, cur_b, tmp_b)
    for i in range(n):
        out[i] = pa[i] / pb[i]
    return out


cdef int _stats_range(Stream* streams, int n_streams, const int64_t* starts, Py_ssize_t n_groups,
                      Py_ssize_t lo, Py_ssize_t hi, int64_t n_rows) noexcept nogil:
    """Statistics of objects lo..hi-1 (rows starts[g] .. starts[g+1]-1) for every stream, in
    batches of whole objects of about BATCH_ROWS rows. Returns -1 when out of memory."""
    cdef Py_ssize_t g, g0, g1, i, m, cap = 0
    cdef Py_ssize_t cur_a[MAX_STREAMS]
    cdef Py_ssize_t cur_b[MAX_STREAMS]
    cdef int si
    cdef int64_t s, e, bs, be
    cdef const double* v
    cdef double* vals = NULL
    cdef double* work = NULL
    cdef double* tmp_a = NULL
    cdef double* tmp_b = NULL
    cdef Stream* st
    for si in range(n_streams):
        cur_a[si] = 0
        cur_b[si] = 0
    g0 = lo
    while g0 < hi:
        # the batch: objects g0..g1-1, at least one, about BATCH_ROWS rows
        bs = starts[g0]
        g1 = g0 + 1
        be = starts[g1] if g1 < n_groups else n_rows
        while g1 < hi and (starts[g1 + 1] if g1 + 1 < n_groups else n_rows) - bs <= BATCH_ROWS:
            g1 += 1
            be = starts[g1] if g1 < n_groups else n_rows
        if be - bs > cap:  # buffers for the largest batch so far
            cap = be - bs if be - bs > BATCH_ROWS else BATCH_ROWS
            free(vals)
            free(work)
            free(tmp_a)
            free(tmp_b)
            vals = <double*> malloc(cap * sizeof(double))
            work = <double*> malloc(cap * sizeof(double))
            tmp_a = <double*> malloc(cap * sizeof(double))
            tmp_b = <double*> malloc(cap * sizeof(double))
            if vals == NULL or work == NULL or tmp_a == NULL or tmp_b == NULL:
                free(vals)
                free(work)
                free(tmp_a)
                free(tmp_b)
                return -1
        for si in range(n_streams):
            st = &streams[si]
            v = _values(st, bs, be, &cur_a[si], &cur_b[si], vals, tmp_a, tmp_b)
            for g in range(g0, g1):
                s = starts[g]
                e = starts[g + 1] if g + 1 < n_groups else n_rows
                if st.stats & (S_COUNT | S_MEAN | S_STD):
                    _moments(st, g, v + (s - bs), e - s, (st.stats & S_PCT) != 0, work)
                else:
                    m = 0
                    for i in range(s - bs, e - bs):
                        if isfinite(v[i]):
                            work[m] = v[i]
                            m += 1
                    _percentile(st, g, work, m)
        g0 = g1
    free(vals)
    free(work)
    free(tmp_a)
    free(tmp_b)
    return 0


cdef Chunked _chunked(list chunks, list refs):
    cdef Chunked c
    cdef cnp.ndarray ptrs = np.array([arr.ctypes.data for arr in chunks], dtype=np.uintp)
    cdef cnp.ndarray offs = np.zeros(len(chunks) + 1, dtype=np.int64)
    offs[1:] = np.cumsum([len(arr) for arr in chunks])
    refs.extend([ptrs, offs])
    c.n_chunks = len(chunks)
    c.data = <const void**> cnp.PyArray_DATA(ptrs)
    c.offsets = <const int64_t*> cnp.PyArray_DATA(offs)
    return c


def segment_stats(cnp.int64_t[::1] starts, int64_t n_rows, list streams, Py_ssize_t lo, Py_ssize_t hi):
    """Fill the output arrays of ``streams`` for objects lo..hi-1 (releases the GIL).

    Parameters
    ----------
    starts : int64 array
        First row of each object (sorted, no empty object).
    n_rows : int
        Rows in all.
    streams : list of tuple
        ``(op, chunks_a, chunks_b, sa, sb, q, count, mean, std, pct)``: the per-row value (op over
        float64 chunks a, b), the percentile q and the output arrays (None for a statistic not wanted).
    lo, hi : int
        The objects to compute.
    """
    cdef Stream cs[MAX_STREAMS]
    cdef int n_streams = len(streams)
    cdef list refs = []
    cdef int si, status
    cdef cnp.ndarray out
    cdef const int64_t* sp
    if n_streams > MAX_STREAMS:
        raise ValueError(f"at most {MAX_STREAMS} streams")
    if hi <= lo:
        return
    for si, spec in enumerate(streams):
        op, chunks_a, chunks_b, sa, sb, q, count, mean, std, pct = spec
        cs[si].op = op
        cs[si].a = _chunked(chunks_a, refs)
        cs[si].b = _chunked(chunks_b if chunks_b is not None else chunks_a, refs)
        cs[si].sa = sa
        cs[si].sb = sb
        cs[si].q = q
        cs[si].stats = 0
        cs[si].count = NULL
        cs[si].mean = NULL
        cs[si].std = NULL
        cs[si].pct = NULL
        if count is not None:
            out = count
            cs[si].count = <int64_t*> cnp.PyArray_DATA(out)
            cs[si].stats |= S_COUNT
        if mean is not None:
            out = mean
            cs[si].mean = <double*> cnp.PyArray_DATA(out)
            cs[si].stats |= S_MEAN
        if std is not None:
            out = std
            cs[si].std = <double*> cnp.PyArray_DATA(out)
            cs[si].stats |= S_STD
        if pct is not None:
            out = pct
            cs[si].pct = <double*> cnp.PyArray_DATA(out)
            cs[si].stats |= S_PCT
    sp = <const int64_t*> &starts[0]
    with nogil:
        status = _stats_range(cs, n_streams, sp, starts.shape[0], lo, hi, n_rows)
    if status < 0:
        raise MemoryError()


cdef int64_t _scan(const int64_t* x, int64_t r0, int64_t r1, int64_t before, bint has_before,
                   int64_t* out_rows, int64_t* out_keys, int64_t offset) noexcept nogil:
    """Rows in [r0, r1) where the key changes (row r0 counts when it differs from ``before``);
    written from out[0] when out_rows is not NULL. Returns their number, or -1 if the keys decrease."""
    cdef int64_t i, k = 0, prev = before
    cdef bint have = has_before
    for i in range(r0, r1):
        if not have or x[i - offset] != prev:
            if have and x[i - offset] < prev:
                return -1
            if out_rows != NULL:
                out_rows[k] = i
                out_keys[k] = x[i - offset]
            k += 1
            prev = x[i - offset]
            have = True
    return k


def key_changes(list chunks, int64_t r0, int64_t r1, object out_rows=None, object out_keys=None):
    """Rows in [r0, r1) of an int64 chunked column where the key differs from the previous row
    (row 0 always counts), and the key there; the number of them, or -1 if the keys decrease.

    With ``out_rows`` and ``out_keys`` (int64 arrays) the rows and keys are written into them.
    Releases the GIL.
    """
    cdef list refs = []
    cdef Chunked c = _chunked(chunks, refs)
    cdef int64_t* rows_p = NULL
    cdef int64_t* keys_p = NULL
    cdef cnp.ndarray arr
    cdef int64_t total = 0, n, lo, hi, before = 0
    cdef bint has_before = False
    cdef Py_ssize_t k = 0
    cdef const int64_t* x
    if out_rows is not None:
        arr = out_rows
        rows_p = <int64_t*> cnp.PyArray_DATA(arr)
        arr = out_keys
        keys_p = <int64_t*> cnp.PyArray_DATA(arr)
    if r1 <= r0:
        return 0
    with nogil:
        if r0 > 0:
            k = _chunk_of(&c, r0 - 1, 0)
            before = (<const int64_t*> c.data[k])[r0 - 1 - c.offsets[k]]
            has_before = True
        k = _chunk_of(&c, r0, 0)
        while k < c.n_chunks and c.offsets[k] < r1:
            lo = r0 if r0 > c.offsets[k] else c.offsets[k]
            hi = r1 if r1 < c.offsets[k + 1] else c.offsets[k + 1]
            if hi > lo:
                x = <const int64_t*> c.data[k]
                n = _scan(x, lo, hi, before, has_before,
                          rows_p + total if rows_p != NULL else NULL,
                          keys_p + total if keys_p != NULL else NULL, c.offsets[k])
                if n < 0:
                    total = -1
                    break
                total += n
                before = x[hi - 1 - c.offsets[k]]
                has_before = True
            k += 1
    return total
