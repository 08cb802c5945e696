"""Compiled brute-force neighbour statistics (numba), exact in float64.

One pass per block of ``_QB`` query rows (blocks shared out to threads, so results do not
depend on the number of threads):

1. distances from the query rows to all n points, per continuous block of columns, in
   float32, with the data transposed to (D, n) so the innermost loop runs over contiguous
   candidates and vectorises (max-norm: ``max |a - b|``; Euclidean: sum of squares, then
   sqrt); candidates are tiled by ``_JC`` so the (query, candidate) tile stays in L1;
2. the k-th smallest joint distance (joint = max over the joint's blocks; points whose
   discrete codes differ from the query's are not candidates) from a small sorted buffer;
3. exactness: every candidate whose float32 joint distance lies within ``2 * delta`` of the
   float32 radius is re-measured in float64 by :func:`exact_block_distance`, and the k-th
   smallest of those is the radius (so the radius is what a float64 implementation gets);
4. radius counts per subspace, from the float32 rows, re-measuring in float64 only the
   points within ``delta`` of the radius.

``delta[b]`` bounds |float32 distance - float64 distance| for block b (computed by the
caller, see ``neighbors.float32_error_bound``); with it the counts equal those of an
all-float64 computation. DESIGN §9 has the measurements behind this design.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor, as_completed

import numba
import numpy as np
from numba import njit

_QB = 16  # query rows per parallel task (their float32 rows stay in L2)
_JC = 512  # candidate tile: _QB x _JC float32 accumulators fit in L1
_BIG = np.float32(3.0e38)
_SCAN = 128  # candidates per vectorised summary in the count scans
_SCAN_TOPK = 32  # smaller for the k-nearest scan: chunks with a hit are scanned serially

COUNT_STRICT, COUNT_CLOSED, COUNT_GAO = 0, 1, 2  # d < r; d <= r; strict if r > 0 else d == 0


@njit(cache=True)
def exact_block_distance(x64, i, j, c0, c1, euclid):
    """Canonical float64 distance between rows i and j of ``x64`` (n, D) over columns
    c0..c1-1; every backend's final decisions use exactly this arithmetic (sequential
    sum for Euclidean, so results are reproducible bit for bit)."""
    if euclid:
        s = 0.0
        for c in range(c0, c1):
            t = x64[i, c] - x64[j, c]
            s += t * t
        return math.sqrt(s)
    m = 0.0
    for c in range(c0, c1):
        t = abs(x64[i, c] - x64[j, c])
        if t > m:
            m = t
    return m


@njit(cache=True)
def _exact_space(x64, starts, euclid, flags, i, j):
    """max over the flagged continuous blocks of the exact block distances."""
    m = 0.0
    for b in range(len(flags)):
        if flags[b]:
            v = exact_block_distance(x64, i, j, starts[b], starts[b + 1], euclid[b])
            if v > m:
                m = v
    return m


@njit(cache=True)
def _codes_match(codes, flags, i, j):
    for b in range(len(flags)):
        if flags[b] and codes[b, i] != codes[b, j]:
            return False
    return True


@njit(cache=True, fastmath=True)
def _block_rows(xt32, c0, c1, euclid, i0, nq, out):
    """out[q, j] = float32 distance between points i0+q and j over columns c0..c1-1.
    ``out`` (_QB, n) must be zero on entry. Four columns per pass over the accumulators
    (one load and one store of out[q, j] per four coordinates). fastmath only here: it
    lets max/abs vectorise; the error bound ``delta`` covers any reassociation."""
    n = xt32.shape[1]
    c4 = c0 + (c1 - c0) // 4 * 4
    for jc in range((n + _JC - 1) // _JC):
        j0 = np.uint64(jc * _JC)  # unsigned: no negative-index wraparound, so it vectorises
        j1 = np.uint64(min(jc * _JC + _JC, n))
        for c in range(c0, c4, 4):
            r0, r1, r2, r3 = xt32[c], xt32[c + 1], xt32[c + 2], xt32[c + 3]
            for q in range(nq):
                i = i0 + q
                a0, a1, a2, a3 = r0[i], r1[i], r2[i], r3[i]
                dq = out[q]
                if euclid:
                    for j in range(j0, j1):
                        t0, t1, t2, t3 = r0[j] - a0, r1[j] - a1, r2[j] - a2, r3[j] - a3
                        dq[j] += (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)
                else:
                    for j in range(j0, j1):
                        m01 = max(abs(r0[j] - a0), abs(r1[j] - a1))
                        m23 = max(abs(r2[j] - a2), abs(r3[j] - a3))
                        dq[j] = max(dq[j], max(m01, m23))
        for c in range(c4, c1):
            row = xt32[c]
            for q in range(nq):
                xi = row[i0 + q]
                dq = out[q]
                if euclid:
                    for j in range(j0, j1):
                        t = row[j] - xi
                        dq[j] += t * t
                else:
                    for j in range(j0, j1):
                        dq[j] = max(dq[j], abs(row[j] - xi))
    if euclid:
        for q in range(nq):
            dq = out[q]
            for j in range(n):
                dq[j] = math.sqrt(dq[j])


@njit(cache=True, fastmath=True)
def _space_row(dist, q, flags, buf):
    """max over flagged blocks b of dist[b, q] (zeros when none): the block's own row when
    only one block is flagged, else ``buf`` filled with the elementwise max."""
    nflag = 0
    last = 0
    for b in range(len(flags)):
        if flags[b]:
            nflag += 1
            last = b
    if nflag == 1:
        return dist[last, q]
    n = buf.shape[0]
    for j in range(n):
        buf[j] = 0.0
    for b in range(len(flags)):
        if flags[b]:
            d = dist[b, q]
            for j in range(n):
                buf[j] = max(buf[j], d[j])
    return buf


@njit(cache=True)
def _lt_threshold(r):
    """smallest float32 t with float64(t) >= r: for float32 v, v < t  <=>  v < r."""
    t = np.float32(r)
    if np.float64(t) < r:
        t = np.nextafter(t, np.float32(np.inf))
    return t


@njit(cache=True)
def _le_threshold(r):
    """smallest float32 t with float64(t) > r: for float32 v, v < t  <=>  v <= r."""
    t = np.float32(r)
    if np.float64(t) <= r:
        t = np.nextafter(t, np.float32(np.inf))
    return t


@njit(cache=True, fastmath=True)
def _chunk_count(row, j0, j1, t):
    """#{j in [j0, j1) : row[j] < t}, vectorised (t float32)."""
    c = 0
    for j in range(np.uint64(j0), np.uint64(j1)):
        c += row[j] < t
    return c


@njit(cache=True, fastmath=True)
def _chunk_count2(row, j0, j1, t_lo, t_hi):
    """(#{row[j] < t_lo}, #{row[j] < t_hi}) over [j0, j1) in one vectorised pass."""
    a = 0
    b = 0
    for j in range(np.uint64(j0), np.uint64(j1)):
        v = row[j]
        a += v < t_lo
        b += v < t_hi
    return a, b


@njit(cache=True)
def _count_space(row, r, lo, hi, strict, i, x64, starts, euclid, flags_c, codes, flags_d):
    """#{j != i : codes match, d(i, j) < r (strict) or <= r}, from the float32 row: points
    below ``lo`` are in, above ``hi`` out (|float32 - float64| <= hi - r), the others are
    re-measured in float64. Chunks of _SCAN candidates are summarised by vectorised
    counts; only chunks holding a point in [lo, hi] or a code to check are scanned."""
    n = row.shape[0]
    nd = 0
    for b in range(len(flags_d)):
        if flags_d[b]:
            nd += 1
    t_lo, t_hi = _lt_threshold(lo), _le_threshold(hi)
    cnt = 0
    for j0 in range(0, n, _SCAN):
        j1 = min(j0 + _SCAN, n)
        n_lo, n_hi = _chunk_count2(row, j0, j1, t_lo, t_hi)
        if nd == 0 and n_lo == n_hi:
            # the point itself is at float32 distance 0: counted in n_lo when 0 < t_lo
            cnt += n_lo - (1 if (j0 <= i < j1 and row[i] < t_lo) else 0)
            continue
        if n_hi == 0:
            continue
        for j in range(j0, j1):
            v = np.float64(row[j])
            if v <= hi and j != i and _codes_match(codes, flags_d, i, j):
                if v < lo:
                    cnt += 1
                else:
                    ex = _exact_space(x64, starts, euclid, flags_c, i, j)
                    if (ex < r) if strict else (ex <= r):
                        cnt += 1
    return cnt


@njit(cache=True)
def _topk_scan(jrow, i, k, codes, joint_d, topv):
    """topv[:k] = the k smallest jrow[j] (j != i, joint codes equal to i's), ascending;
    chunks with no value below the current k-th are skipped after a vectorised count
    (numba does not vectorise min reductions, it does vectorise counts)."""
    n = jrow.shape[0]
    for t in range(k):
        topv[t] = _BIG
    for j0 in range(0, n, _SCAN_TOPK):
        j1 = min(j0 + _SCAN_TOPK, n)
        if _chunk_count(jrow, j0, j1, topv[k - 1]) == 0:
            continue
        for j in range(j0, j1):
            v = jrow[j]
            if v < topv[k - 1] and j != i and _codes_match(codes, joint_d, i, j):
                t = k - 1
                while t > 0 and topv[t - 1] > v:
                    topv[t] = topv[t - 1]
                    t -= 1
                topv[t] = v


@njit(cache=True)
def _candidates(jrow, thr, i, codes, joint_d, x64, starts, euclid, joint_c, cand, candv):
    """Indices (ascending) and exact joint distances of the points with jrow[j] <= thr."""
    n = jrow.shape[0]
    t_hi = _le_threshold(thr)
    m = 0
    for j0 in range(0, n, _SCAN_TOPK):
        j1 = min(j0 + _SCAN_TOPK, n)
        if _chunk_count(jrow, j0, j1, t_hi) == 0:
            continue
        for j in range(j0, j1):
            if jrow[j] <= thr and j != i and _codes_match(codes, joint_d, i, j):
                cand[m] = j
                candv[m] = _exact_space(x64, starts, euclid, joint_c, i, j)
                m += 1
    return m


@njit(cache=True)
def _stable_order(v, m, buf):
    """argsort of v[:m], stable (equal values keep index order); insertion sort into
    ``buf`` for the usual handful of candidates, mergesort for many (heavy ties)."""
    if m > buf.shape[0]:
        return np.argsort(v[:m], kind="mergesort")
    for t in range(m):
        u = t
        while u > 0 and v[buf[u - 1]] > v[t]:
            buf[u] = buf[u - 1]
            u -= 1
        buf[u] = t
    return buf[:m]


@njit(cache=True, nogil=True)
def _stats_blocks(qb0, qb1, xt32, x64, starts, euclid, dj, ds, codes, joint_c, joint_d,
                  sub_c, sub_d, radius_src, kvec, kbuf, count_mode, want_kmax,
                  eps, counts, kmax, nzero):
    """Fill the outputs for query blocks qb0..qb1-1 (rows qb * _QB ...); releases the GIL
    so that :func:`brute_stats` can run disjoint ranges in parallel threads."""
    n = x64.shape[0]
    nb = len(starts) - 1
    ns = sub_c.shape[0]
    for qb in range(qb0, qb1):
        i0 = qb * _QB
        nq = min(_QB, n - i0)
        dist = np.zeros((nb, _QB, n), np.float32)
        for b in range(nb):
            _block_rows(xt32, starts[b], starts[b + 1], euclid[b], i0, nq, dist[b])
        jbuf = np.empty(n, np.float32)
        srow = np.empty(n, np.float32)
        topv = np.empty(kbuf, np.float32)
        cand = np.empty(n, np.int64)
        candv = np.empty(n)
        order_buf = np.empty(64, np.int64)
        for q in range(nq):
            i = i0 + q
            k = kvec[i]
            # ---- k-th smallest joint distance, float32
            jrow = _space_row(dist, q, joint_c, jbuf)
            _topk_scan(jrow, i, k, codes, joint_d, topv)
            # ---- exact radius: re-measure every candidate that may be among the k nearest
            thr = np.float64(topv[k - 1]) + 2.0 * dj
            m = _candidates(jrow, thr, i, codes, joint_d, x64, starts, euclid, joint_c,
                            cand, candv)
            order = _stable_order(candv, m, order_buf)  # ties broken by index
            e = candv[order[k - 1]]
            eps[i] = e
            nz = 0
            for t in range(m):
                if candv[t] == 0.0:
                    nz += 1
            nzero[i] = nz
            if want_kmax:
                for b in range(nb):
                    mx = 0.0
                    for t in range(k):
                        j = cand[order[t]]
                        v = exact_block_distance(x64, i, j, starts[b], starts[b + 1], euclid[b])
                        mx = max(mx, v)
                    kmax[b, i] = mx
            # ---- radius counts per subspace
            for s in range(ns):
                r = e if radius_src[s] < 0 else kmax[radius_src[s], i]
                strict = count_mode == COUNT_STRICT or (count_mode == COUNT_GAO and r > 0.0)
                row = _space_row(dist, q, sub_c[s], srow)
                counts[s, i] = _count_space(row, r, r - ds[s], r + ds[s], strict, i, x64,
                                            starts, euclid, sub_c[s], codes, sub_d[s])


def brute_stats(xt32, x64, starts, euclid, delta, codes, joint_c, joint_d, sub_c, sub_d,
                radius_src, kvec, count_mode, want_kmax, threads=None, progress=None):
    """Neighbour statistics of every point; see ``neighbors.neighbor_stats`` for the meaning.

    xt32 (D, n) float32 centred data, transposed; x64 (n, D) float64 (exact recheck);
    starts (nb+1,) column offsets of the continuous blocks; euclid, delta (nb,);
    codes (nd, n) int64 discrete blocks; joint_c (nb,), joint_d (nd,) joint membership;
    sub_c (ns, nb), sub_d (ns, nd) subspaces; radius_src (ns,) -1: joint radius, b >= 0:
    kmax of block b; kvec (n,) neighbours per point; count_mode one of COUNT_*.

    Returns eps (n,) float64 joint radius; counts (ns, n) int64 (self excluded);
    kmax (nb, n) float64 max block distance over the k nearest (zeros unless want_kmax);
    nzero (n,) int64 exact joint ties at distance 0 (self excluded).

    Parallelism: ranges of query blocks shared out to ``threads`` Python threads (default
    ``numba.config.NUMBA_NUM_THREADS``), each running the GIL-free compiled kernel. (numba's
    own ``prange`` under the OpenMP layer spin-waits between calls, which cost ~35 ms of
    CPU per call on a shared 2-core machine and dominated the many small calls of
    subsampling.) Results do not depend on the number of threads.

    ``progress(done, n)``: optional, called from the calling thread as ranges of query
    rows finish (done = rows finished so far), for calls that run for minutes.

    Memory: besides the inputs (x64 8 n D bytes, xt32 4 n D), each thread holds one
    query block's float32 distance rows and scan buffers, n (64 nb + 24) bytes (15 MB per
    thread at n = 100,000 and two blocks): linear in n, never n^2.
    """
    n = x64.shape[0]
    nb, ns = len(starts) - 1, sub_c.shape[0]
    dj = max([delta[b] for b in range(nb) if joint_c[b]], default=0.0)
    ds = np.array([max([delta[b] for b in range(nb) if sub_c[s, b]], default=0.0)
                   for s in range(ns)])
    kbuf = max(int(kvec.max()), 1)
    eps = np.empty(n)
    counts = np.zeros((ns, n), np.int64)
    kmax = np.zeros((nb, n))
    nzero = np.zeros(n, np.int64)
    args = (xt32, x64, starts, euclid, dj, ds, codes, joint_c, joint_d, sub_c, sub_d,
            radius_src, kvec, kbuf, count_mode, want_kmax, eps, counts, kmax, nzero)
    nqb = (n + _QB - 1) // _QB
    threads = min(threads or numba.config.NUMBA_NUM_THREADS, nqb)
    if threads <= 1 or n * xt32.shape[0] < 200_000:  # small: one thread (callers such as
        # subsampling run several small problems in parallel instead)
        _stats_blocks(0, nqb, *args)
    else:
        # 8 ranges per thread, handed out as threads free up: balanced even when another
        # process takes one of the cores for a while
        parts = min(nqb, max(8 * threads, n // 2048))
        bounds = np.linspace(0, nqb, parts + 1).astype(np.int64)
        pool = _executor(threads)
        futures = {pool.submit(_stats_blocks, bounds[t], bounds[t + 1], *args): t
                   for t in range(parts)}
        done = 0
        for f in as_completed(futures):
            f.result()
            t = futures[f]
            done += min(bounds[t + 1] * _QB, n) - bounds[t] * _QB
            if progress is not None:
                progress(int(done), n)
        return eps, counts, kmax, nzero
    if progress is not None:
        progress(n, n)
    return eps, counts, kmax, nzero


_EXECUTORS: dict[int, ThreadPoolExecutor] = {}


def _executor(threads: int) -> ThreadPoolExecutor:
    if threads not in _EXECUTORS:
        _EXECUTORS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="essl-knn")
    return _EXECUTORS[threads]
