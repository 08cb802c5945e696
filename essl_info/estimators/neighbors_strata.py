"""Neighbour statistics within small strata, by brute force (part of the kd-tree backend).

When every stratum of the joint space's discrete codes is small (the blocks of a
subsampled standard error, ``knn.fp_values_by_part``: 20 blocks of 500-625 rows), a
tree per stratum costs more than comparing each point with every other point of its
stratum: m - 1 distances per point in one vectorised pass over contiguous columns,
against a tree walk of ~1 us per point plus sorted marginal counts. The standard error's
pass on one core, 2+2 dims, 20 strata (``python benchmarks/knn_stages.py --strata``, load
0.7, 2026-11-30 13:05): 4.3 ms against 9.6 ms for the trees at 250 rows per stratum, 9.8
against 20.0 at 500, 27 against 40 at 1,000, 94 against 94 at 2,000, 226 against 169 at
3,000 (hence ``BRUTE_MAX_STRATUM``).

For each point i (positions in stratum order; stratum [lo, hi)):

- block distances d_b(j) = max over the block's columns of fl(|x_jc - x_ic|), for every j
  of the stratum (the max-norm, exactly as ``neighbors_kdtree._dist``: an abs and a max
  are exact, so every distance equals the other backends' bit for bit);
- joint distance = max over the joint's continuous blocks (2 or 3 of them, of 1-2 columns
  each); eps_i its k-th smallest value over j != i (``_kth_smallest``);
- nzero_i = #{j != i : joint distance 0};
- for each subspace (one or two of the joint's continuous blocks; its discrete blocks
  must be the joint's, so its strata are the joint's): #{j != i : d_s(j) < eps_i}
  (strict) or <= eps_i (closed); "gao": strict where eps_i > 0, closed (= exact zeros)
  where 0.

Only radius counts against the joint radius (no ``kmax``, no ``radius_from``); the caller
(``neighbors_kdtree.kdtree_stats``) checks all of this before choosing this path.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BRUTE_MAX_STRATUM = 2000  # largest stratum searched by brute force (crossover ~2,000)
MAX_BLOCKS, MAX_COLS = 3, 2  # continuous blocks of the joint, columns per block


@njit(cache=True, nogil=True)
def strata_range(p0, p1, xt, nblk, sub_a, sub_b, seg_lo, seg_hi, kvec, mode, eps, counts,
                 nzero):
    """Positions p0..p1-1: eps[p], counts[:, p], nzero[p] (see the module docstring).

    xt (2 * nblk, n) float64 in stratum order: block b in rows 2b, 2b + 1 (a 1-column
    block twice: max(|a - q|, |a - q|) is |a - q|); nblk 2 or 3 continuous blocks, all in
    the joint; subspace s = blocks sub_a[s] and sub_b[s] (-1: none); seg_lo, seg_hi (n,)
    the stratum of each position; kvec (n,) k per position (< stratum size); mode 0
    strict, 1 closed, 2 gao."""
    maxm = 1
    for p in range(p0, p1):
        maxm = max(maxm, seg_hi[p] - seg_lo[p])
    dd = np.zeros((MAX_BLOCKS, maxm))  # block distances to each point of the stratum
    dj = np.empty(LANES * _lanes(maxm))  # joint distances, padded with inf
    cand = np.empty(maxm)
    cmin = np.empty(_lanes(maxm))
    cmin2 = np.empty(max(LANES, _lanes(maxm) // LANES))
    for p in range(p0, p1):
        s0 = seg_lo[p]
        m = seg_hi[p] - s0
        if nblk == 2:
            z = _two_blocks(xt, p, s0, m, dd[0], dd[1], dj)
        else:
            z = _three_blocks(xt, p, s0, m, dd[0], dd[1], dd[2], dj)
        nzero[p] = z - 1  # the point itself
        dj[p - s0] = np.inf  # never its own neighbour
        w = _lanes(m)
        for j in range(m, LANES * w):
            dj[j] = np.inf
        r = _kth_smallest(dj, w, kvec[p], cmin[:w], cmin2, cand)
        eps[p] = r
        strict = mode == 0 or (mode == 2 and r > 0.0)
        for s in range(len(sub_a)):
            if strict and not r > 0.0:  # nothing (not even the point itself) is below 0
                counts[s, p] = 0
                continue
            da = dd[sub_a[s]]
            cnt = 0
            if sub_b[s] < 0:
                if strict:
                    for j in range(m):
                        cnt += np.int64(da[j] < r)
                else:
                    for j in range(m):
                        cnt += np.int64(da[j] <= r)
            else:
                db = dd[sub_b[s]]
                if strict:
                    for j in range(m):
                        cnt += np.int64(max(da[j], db[j]) < r)
                else:
                    for j in range(m):
                        cnt += np.int64(max(da[j], db[j]) <= r)
            counts[s, p] = cnt - 1  # the point itself (distance 0) is inside


@njit(cache=True, inline="always")
def _two_blocks(xt, p, s0, m, u, v, dj):
    """block distances u, v and joint dj to the m points from s0; returns #(dj == 0)"""
    a0, a1, a2, a3 = xt[0, s0:s0 + m], xt[1, s0:s0 + m], xt[2, s0:s0 + m], xt[3, s0:s0 + m]
    q0, q1, q2, q3 = xt[0, p], xt[1, p], xt[2, p], xt[3, p]
    z = 0
    for j in range(m):  # one vectorised pass over the stratum's columns
        x = max(abs(a0[j] - q0), abs(a1[j] - q1))
        y = max(abs(a2[j] - q2), abs(a3[j] - q3))
        u[j], v[j] = x, y
        t = max(x, y)
        dj[j] = t
        z += np.int64(t == 0.0)
    return z


@njit(cache=True, inline="always")
def _three_blocks(xt, p, s0, m, u, v, w, dj):
    """``_two_blocks`` with a third block w (rows 4, 5)"""
    a0, a1, a2, a3 = xt[0, s0:s0 + m], xt[1, s0:s0 + m], xt[2, s0:s0 + m], xt[3, s0:s0 + m]
    a4, a5 = xt[4, s0:s0 + m], xt[5, s0:s0 + m]
    q0, q1, q2, q3, q4, q5 = xt[0, p], xt[1, p], xt[2, p], xt[3, p], xt[4, p], xt[5, p]
    z = 0
    for j in range(m):
        x = max(abs(a0[j] - q0), abs(a1[j] - q1))
        y = max(abs(a2[j] - q2), abs(a3[j] - q3))
        c = max(abs(a4[j] - q4), abs(a5[j] - q5))
        u[j], v[j], w[j] = x, y, c
        t = max(x, max(y, c))
        dj[j] = t
        z += np.int64(t == 0.0)
    return z


LANES = 8  # rows of the k-th smallest search's minima (see ``_kth_smallest``)


@njit(cache=True, inline="always")
def _lanes(m):
    """lanes w for m values: 8 * w >= m, w a multiple of 8 (so that the minima of the
    lanes fold once more, 8 rows of w / 8)"""
    return ((m + LANES - 1) // LANES + LANES - 1) // LANES * LANES


@njit(cache=True, inline="always")
def _min8(a, b, c, d, e, f, g, h, out):
    """out[i] = min of the 8 rows' i-th values: elementwise into a separate array, which
    LLVM vectorises (an in-place running minimum, or a minimum over contiguous values, it
    leaves scalar: 0.7 ns a value against ~0.05)"""
    for i in range(out.shape[0]):
        out[i] = _mn(_mn(_mn(a[i], b[i]), _mn(c[i], d[i])),
                     _mn(_mn(e[i], f[i]), _mn(g[i], h[i])))


@njit(cache=True, inline="always")
def _mn(a, b):
    return a if a < b else b


@njit(cache=True, inline="always")
def _kth_smallest(d, w, k, cmin, cmin2, cand):
    """The k-th smallest of d[:8w] (d padded with inf; 1 <= k; w a multiple of 8).

    Lane i holds d[i], d[w + i], ..., d[7w + i]; cmin[i] is its minimum, and eight
    minima of those (``_eight_minima``) are sorted by a network: T = the k-th smallest
    of the eight bounds the answer from above (k distinct values are <= T; inf when
    k > 8). If exactly k values are <= T (a vectorised count), T is the answer (it is one
    of them); else the k smallest values lie in lanes whose minimum is <= T, about k of
    the w, searched value by value. ``cmin`` (w,), ``cmin2`` (max(8, w / 8),), ``cand``
    (>= k) scratch."""
    _min8(d[0:w], d[w:2 * w], d[2 * w:3 * w], d[3 * w:4 * w], d[4 * w:5 * w],
          d[5 * w:6 * w], d[6 * w:7 * w], d[7 * w:8 * w], cmin)
    g = _eight_minima(cmin, w, cmin2)
    _sort8(g)
    top = g[k - 1] if k <= 8 else np.inf
    c = 0
    for j in range(LANES * w):
        c += np.int64(d[j] <= top)
    if c == k:  # the k values <= top, top among them: top is the k-th smallest
        return top
    for t in range(k):
        cand[t] = np.inf
    for i in range(w):
        if cmin[i] <= top:
            for j in range(i, LANES * w, w):
                _offer(cand, k, d[j])
    return cand[k - 1]


@njit(cache=True, inline="always")
def _eight_minima(cmin, w, out):
    """8 values, each the minimum of a distinct set of lanes (of the w lane minima
    ``cmin``; inf where w = 8 leaves none): cmin itself for w = 8, else the minima of
    its 8 rows of w / 8 (vectorised), folded to 8 when w / 8 > 8 or padded with inf
    when < 8; in ``out`` (>= max(8, w / 8)), returns out[:8]."""
    if w == LANES:
        for i in range(LANES):
            out[i] = cmin[i]
        return out[:LANES]
    v = w // LANES
    _min8(cmin[0:v], cmin[v:2 * v], cmin[2 * v:3 * v], cmin[3 * v:4 * v],
          cmin[4 * v:5 * v], cmin[5 * v:6 * v], cmin[6 * v:7 * v], cmin[7 * v:8 * v],
          out[:v])
    for i in range(v, LANES):
        out[i] = np.inf
    for i in range(LANES, v):
        out[i % LANES] = _mn(out[i % LANES], out[i])
    return out[:LANES]


@njit(cache=True, inline="always")
def _sort8(a):
    """a[:8] sorted ascending in place by a 19-comparator network (branch-free)."""
    _cx(a, 0, 2)
    _cx(a, 1, 3)
    _cx(a, 4, 6)
    _cx(a, 5, 7)
    _cx(a, 0, 4)
    _cx(a, 1, 5)
    _cx(a, 2, 6)
    _cx(a, 3, 7)
    _cx(a, 0, 1)
    _cx(a, 2, 3)
    _cx(a, 4, 5)
    _cx(a, 6, 7)
    _cx(a, 2, 4)
    _cx(a, 3, 5)
    _cx(a, 1, 4)
    _cx(a, 3, 6)
    _cx(a, 1, 2)
    _cx(a, 3, 4)
    _cx(a, 5, 6)


@njit(cache=True, inline="always")
def _cx(a, i, j):
    """compare-exchange: a[i] <= a[j] afterwards"""
    x, y = a[i], a[j]
    a[i] = x if x < y else y
    a[j] = y if x < y else x


@njit(cache=True, inline="always")
def _offer(cand, k, v):
    """insert v into the ascending k smallest cand[:k] (if it is smaller than the last)"""
    if v < cand[k - 1]:
        t = k - 1
        while t > 0 and cand[t - 1] > v:
            cand[t] = cand[t - 1]
            t -= 1
        cand[t] = v
