"""The kd-tree backend of ``neighbors.neighbor_stats`` (low dimension, max-norm only).

A compiled kd-tree (numba; sliding-midpoint splits, leaves of ``LEAF`` points, bounding
boxes per node) per space and per stratum of the space's discrete codes:

- the joint radius: a k-nearest query per point, bottom-up from the point's own leaf
  (ties at the k-th distance broken by row index, which only matters for ``kmax``); in
  up to 4 dimensions a leaf's distances are taken in one vectorised pass over its
  columns (``_leaf_distances``), so the joint tree has larger leaves (``KNN_LEAF``):
  fewer nodes to visit for ~the same cost per point (2+2 dims, one thread, the least of
  25 interleaved runs against leaves of 16 scanned point by point: 11.9 -> 9.4 ms per
  query pass at N = 10,000, 146 -> 118 ms at N = 100,000);
- radius counts in a subspace of 3+ dimensions: a range count per point; a node whose
  whole box is inside the radius adds its size without visiting its points, so a count
  costs about the boundary of the ball, not its content; 1-D and 2-D subspaces (KSG's
  marginals at low dimension) are counted by sorting instead, ``neighbors_sorted``; below
  40,000 points the subspaces are counted side by side on the threads;
- when every stratum is small (<= ``neighbors_strata.BRUTE_MAX_STRATUM`` rows: the blocks
  of a subsampled standard error), no tree: each point is compared with every point of
  its stratum (``neighbors_strata``), which is faster there and gives the same numbers.

The points are stored in tree order (rows of ``tp`` contiguous) and every kernel reads
and writes by tree or sorted position, scattering to rows once at the end: at N = 100,000
random row access costs more than the arithmetic.

Exactness: max-norm distances ``max |a - b|`` are computed in float64 exactly as
``neighbors_numba.exact_block_distance`` does (an abs and a max are exact), so radii and
counts equal those of the brute-force backends bit for bit. Box tests are conservative
because rounded subtraction is monotone: for lo <= p <= hi, fl(lo - q) <= fl(p - q) <=
fl(hi - q), so the box's computed lower (upper) distance bounds every point's computed
distance from below (above); a node is pruned or taken whole only on those bounds. The
1-D binary search uses the same predicate ``fl(|v - q|) < r`` (monotone in v on each side
of q), never a shifted bound ``q - r``.

Queries are processed in the tree's order (nearby points together, for the cache), by
``threads`` GIL-free ranges (``neighbors_sorted.run_ranges``); results do not depend on
the number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

from . import neighbors_strata
from .neighbors import COUNT_MODES, Block, NeighborStats, joint_strata
from .neighbors_sorted import CHEAP_PARALLEL_MIN, run_ranges, sorted_counts

LEAF = 16  # points per leaf (range-count trees; the joint tree in more than 4 dimensions)
KNN_LEAF = 64  # points per leaf of the joint tree in <= 4 dimensions (vectorised leaf scans)


# ============================================================================ build
@njit(cache=True, nogil=True)
def _build(pts, order, bounds, leaf):
    """Trees over ``pts`` (n, D), one per segment ``order[bounds[s]:bounds[s+1]]``.

    The points are copied in tree order and partitioned in place (rows of ``tp``
    contiguous, no indirection). Returns perm (n,) row at each tree position, tp (n, D) =
    pts[perm], node arrays start, end, left (-1 for a leaf), right, parent (-1 for a
    root), box lo/hi (m, D), roots (S,) and leaf_of (n,) the leaf holding each position."""
    n, dim = pts.shape
    nseg = len(bounds) - 1
    cap = 2 * n + 2 * nseg + 2
    perm = order.copy()
    tp = np.empty((n, dim))
    for p in range(n):
        for c in range(dim):
            tp[p, c] = pts[perm[p], c]
    start = np.empty(cap, np.int64)
    end = np.empty(cap, np.int64)
    left = np.full(cap, -1, np.int64)
    right = np.full(cap, -1, np.int64)
    parent = np.full(cap, -1, np.int64)
    lo = np.empty((cap, dim))
    hi = np.empty((cap, dim))
    roots = np.empty(nseg, np.int64)
    leaf_of = np.empty(n, np.int64)
    m = 0
    for s in range(nseg):
        roots[s] = m
        start[m] = bounds[s]
        end[m] = bounds[s + 1]
        m += 1
    t = 0
    while t < m:  # nodes are processed in creation order (a queue)
        s0, s1 = start[t], end[t]
        for c in range(dim):  # the box: a column at a time (branch-free min / max)
            a_, b_ = np.inf, -np.inf
            for p in range(s0, s1):
                v = tp[p, c]
                a_ = min(a_, v)
                b_ = max(b_, v)
            lo[t, c] = a_
            hi[t, c] = b_
        split = False
        if s1 - s0 > leaf:
            best = 0
            for c in range(1, dim):
                if hi[t, c] - lo[t, c] > hi[t, best] - lo[t, best]:
                    best = c
            width = hi[t, best] - lo[t, best]
            if width > 0.0:  # else: all points identical, a big leaf
                mid = lo[t, best] + 0.5 * width
                if not mid > lo[t, best]:
                    mid = hi[t, best]
                a, b = s0, s1 - 1
                while a <= b:  # partition: values < mid first
                    if tp[a, best] < mid:
                        a += 1
                    else:
                        perm[a], perm[b] = perm[b], perm[a]
                        for c in range(dim):
                            tp[a, c], tp[b, c] = tp[b, c], tp[a, c]
                        b -= 1
                left[t], right[t] = m, m + 1
                parent[m], parent[m + 1] = t, t
                start[m], end[m] = s0, a
                start[m + 1], end[m + 1] = a, s1
                m += 2
                split = True
        if not split:
            for p in range(s0, s1):
                leaf_of[p] = t
        t += 1
    return (perm, tp, start[:m], end[:m], left[:m], right[:m], parent[:m], lo[:m], hi[:m],
            roots, leaf_of)


# ========================================================================== queries
@njit(cache=True, inline="always")
def _box_lower(lo, hi, node, q):
    # branch-free: fl(lo - q) > 0 only below the box, fl(q - hi) > 0 only above it
    # (rounded subtraction keeps the sign), so this is the same value as the case split
    m = 0.0
    for c in range(q.shape[0]):
        m = max(m, lo[node, c] - q[c], q[c] - hi[node, c])
    return m


@njit(cache=True, inline="always")
def _box_upper(lo, hi, node, q):
    m = 0.0
    for c in range(q.shape[0]):
        t = max(hi[node, c] - q[c], q[c] - lo[node, c])
        if t > m:
            m = t
    return m


@njit(cache=True, inline="always")
def _dist(tp, p, q):
    m = 0.0
    for c in range(q.shape[0]):
        m = max(m, abs(tp[p, c] - q[c]))  # branch-free (20 % faster queries than an if)
    return m


@njit(cache=True, inline="always")
def _ball_inside(lo, hi, node, q, r):
    """every point outside ``node`` (hence outside its box, which holds q) is at computed
    distance > r from q: fl(q - lo) > r and fl(hi - q) > r in every coordinate"""
    for c in range(q.shape[0]):
        if not (q[c] - lo[node, c] > r and hi[node, c] - q[c] > r):
            return False
    return True


@njit(cache=True, inline="always")
def _leaf_distances(tc, u0, m, q4, buf):
    """buf[:m] = max-norm distances from q4 to the points at positions u0..u0+m-1, read
    from ``tc`` (4, n): the columns in tree order, a space of fewer than 4 dimensions with
    its last column repeated (max(|a - q|, |a - q|) = |a - q|, so the distances are the
    same bit for bit); one vectorised pass."""
    a0, a1 = tc[0, u0:u0 + m], tc[1, u0:u0 + m]
    a2, a3 = tc[2, u0:u0 + m], tc[3, u0:u0 + m]
    q0, q1, q2, q3 = q4[0], q4[1], q4[2], q4[3]
    for t in range(m):
        buf[t] = max(max(abs(a0[t] - q0), abs(a1[t] - q1)),
                     max(abs(a2[t] - q2), abs(a3[t] - q3)))


@njit(cache=True, inline="always")
def _offer_leaf(buf, perm, u0, m, skip, k, topd, topj):
    """offer the points at positions u0..u0+m-1 (but ``skip``), at distances buf[:m], to
    the top-k list (ascending distance, then row). The whole loop is one inlined function:
    an insertion helper called per point made the query pass ~10 % slower."""
    lim = topd[k - 1]
    for t in range(m):
        d = buf[t]
        if d <= lim:
            u = u0 + t
            if u == skip:
                continue
            j = perm[u]
            if d < lim or j < topj[k - 1]:
                s = k - 1
                while s > 0 and (topd[s - 1] > d or (topd[s - 1] == d and topj[s - 1] > j)):
                    topd[s] = topd[s - 1]
                    topj[s] = topj[s - 1]
                    s -= 1
                topd[s] = d
                topj[s] = j
                lim = topd[k - 1]


@njit(cache=True, inline="always")
def _scan_points(tp, tc, perm, u0, u1, skip, q, q4, k, topd, topj, buf):
    """a leaf's distances point by point (any dimension), then ``_offer_leaf``"""
    for u in range(u0, u1):
        buf[u - u0] = _dist(tp, u, q)
    _offer_leaf(buf, perm, u0, u1 - u0, skip, k, topd, topj)


@njit(cache=True, inline="always")
def _scan_columns(tp, tc, perm, u0, u1, skip, q, q4, k, topd, topj, buf):
    """a leaf's distances from the columns ``tc`` in one pass (<= 4 dims,
    ``_leaf_distances``), then ``_offer_leaf``"""
    _leaf_distances(tc, u0, u1 - u0, q4, buf)
    _offer_leaf(buf, perm, u0, u1 - u0, skip, k, topd, topj)


@njit(cache=True, nogil=True)
def _knn_range(p0, p1, tree, tc, kvec, bd, bj, eps, nzero):
    """The k-nearest query pass (``_knn_pass``), leaves scanned point by point (any
    dimension; ``tc`` unused, any (0, n) array)."""
    _knn_pass(p0, p1, tree, tc, kvec, bd, bj, eps, nzero, _scan_points)


@njit(cache=True, nogil=True)
def _knn_range4(p0, p1, tree, tc, kvec, bd, bj, eps, nzero):
    """The k-nearest query pass (``_knn_pass``), each leaf's distances in one vectorised
    pass over the columns ``tc`` = ``_columns4(tree[1])`` (<= 4 dims)."""
    _knn_pass(p0, p1, tree, tc, kvec, bd, bj, eps, nzero, _scan_columns)


@njit(cache=True, inline="always")
def _knn_pass(p0, p1, tree, tc, kvec, bd, bj, eps, nzero, scan):
    """For tree positions p0..p1-1 (query point i = perm[p]; kvec, bd, bj indexed by
    position): bd[p, :k], bj[p, :k] the k nearest other points of its segment, ascending
    (distance, row), when bd has n rows (0 rows: not kept); eps[i] the k-th distance and
    nzero[i] how many of the k are at distance 0, by row.

    Bottom-up from the query's own leaf: its points give a first radius; then at each
    ancestor the sibling subtree is searched (nearer child first) when its box is within
    the radius, until the ball around q lies inside the current node's box or the root is
    reached (ties at the radius are kept, so the order of the visits does not change the
    result). ``scan`` (``_scan_points`` or ``_scan_columns``) is a compile-time argument:
    each of the two kernels above inlines its own pass (a run-time choice of scan made the
    pass ~30 % slower; one test on whether ``tc`` is None, pruned at compile time, ~14 %),
    and both are cached on disk (numba compiles a kernel made by a factory function, a
    closure, again in every process: ~4 s on the first call)."""
    perm, tp, start, end, left, right, parent, lo, hi, roots, leaf_of = tree
    stack = np.empty(len(start) + 2, np.int64)
    bound = np.empty(len(start) + 2)  # box lower bound of each stacked node
    kmax_ = bd.shape[1]
    topd = np.empty(kmax_)
    topj = np.empty(kmax_, np.int64)
    big = 1
    for nd in range(len(start)):
        if left[nd] < 0:
            big = max(big, end[nd] - start[nd])
    buf = np.empty(big)
    q4 = np.empty(4)
    for p in range(p0, p1):
        q = tp[p]
        for c in range(tc.shape[0]):
            q4[c] = tc[c, p]
        k = kvec[p]
        for t in range(k):
            topd[t] = np.inf
            topj[t] = -1
        node = leaf_of[p]
        scan(tp, tc, perm, start[node], end[node], p, q, q4, k, topd, topj, buf)
        while True:
            par = parent[node]
            if par < 0 or _ball_inside(lo, hi, node, q, topd[k - 1]):
                break
            sib = right[par] if left[par] == node else left[par]
            node = par
            lb = _box_lower(lo, hi, sib, q)
            if lb > topd[k - 1]:
                continue
            top = 0
            stack[0] = sib
            bound[0] = lb
            while top >= 0:
                nd = stack[top]
                lbn = bound[top]
                top -= 1
                if lbn > topd[k - 1]:
                    continue
                a = left[nd]
                if a < 0:
                    scan(tp, tc, perm, start[nd], end[nd], -1, q, q4, k, topd, topj, buf)
                    continue
                b = right[nd]
                la = _box_lower(lo, hi, a, q)
                lb_ = _box_lower(lo, hi, b, q)
                if la <= lb_:  # the nearer child on top of the stack
                    a, b, la, lb_ = b, a, lb_, la
                if la <= topd[k - 1]:
                    top += 1
                    stack[top] = a
                    bound[top] = la
                if lb_ <= topd[k - 1]:
                    top += 1
                    stack[top] = b
                    bound[top] = lb_
        i = perm[p]
        eps[i] = topd[k - 1]
        z = 0
        for t in range(k):
            z += np.int64(topd[t] == 0.0)
        nzero[i] = z
        if bd.shape[0] > 0:
            for t in range(k):
                bd[p, t] = topd[t]
                bj[p, t] = topj[t]


def _columns4(tp: np.ndarray) -> np.ndarray:
    """(4, n) the columns of the tree-ordered points ``tp`` (n, D <= 4), the last
    repeated up to 4 (``_leaf_distances``)"""
    dim = tp.shape[1]
    return np.ascontiguousarray(tp.T[[min(c, dim - 1) for c in range(4)]])


@njit(cache=True, nogil=True)
def _count_range(p0, p1, tree, seg_of, radius, strict, out):
    """out[i] = #{j != i in i's segment : d(i, j) < radius[i]} (strict[i]) or <= (else)."""
    perm, tp, start, end, left, right, parent, lo, hi, roots, leaf_of = tree
    stack = np.empty(len(start) + 1, np.int64)
    for p in range(p0, p1):
        i = perm[p]
        q = tp[p]
        r = radius[i]
        st = strict[i]
        if st and not r > 0.0:
            out[i] = 0
            continue
        cnt = 0
        top = 0
        stack[0] = roots[seg_of[i]]
        while top >= 0:
            node = stack[top]
            top -= 1
            low = _box_lower(lo, hi, node, q)
            if (low >= r) if st else (low > r):
                continue
            up = _box_upper(lo, hi, node, q)
            if (up < r) if st else (up <= r):
                cnt += end[node] - start[node]
                continue
            if left[node] < 0:
                for u in range(start[node], end[node]):
                    d = _dist(tp, u, q)
                    if (d < r) if st else (d <= r):
                        cnt += 1
                continue
            stack[top + 1] = left[node]
            stack[top + 2] = right[node]
            top += 2
        out[i] = cnt - 1  # the point itself (distance 0, inside every radius here)


# =========================================================================== driver
def _columns(blocks: list[Block], space) -> np.ndarray | None:
    cols = [blocks[b].values for b in space if not blocks[b].discrete]
    if not cols:
        return None
    return np.ascontiguousarray(np.concatenate(cols, axis=1), dtype=np.float64)


def _segments(blocks, space, n):
    """strata of the space's discrete blocks: (seg_of (n,) segment of each point,
    order (n,) rows grouped by segment, bounds (S+1,))."""
    seg_of = joint_strata(blocks, space)
    if not seg_of.any():
        return seg_of, np.arange(n, dtype=np.int64), np.array([0, n], np.int64)
    sizes = np.bincount(seg_of)
    key = seg_of.astype(np.int16) if len(sizes) < 2**15 else seg_of  # radix sort
    order = np.argsort(key, kind="stable").astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return seg_of, order, bounds


def kdtree_stats(blocks, kvec, joint, subspaces, radius_from, count, want_kmax,
                 threads=None):
    if any(not b.discrete and b.norm != "max" for b in blocks):
        raise ValueError("backend='kdtree' supports the max-norm only; use 'numba' or "
                         "'torch' for Euclidean blocks")
    n = len(blocks[0].values)
    kvec = np.ascontiguousarray(kvec, dtype=np.int64)
    kq = int(kvec.max())
    seg_of, order, bounds = _segments(blocks, joint, n)
    if _small_strata(blocks, joint, subspaces, radius_from, want_kmax, bounds):
        return _strata_stats(blocks, kvec, joint, subspaces, count, order, bounds, threads)
    xj = _columns(blocks, joint)
    tree = _build(xj, order, bounds, KNN_LEAF if xj.shape[1] <= 4 else LEAF)
    perm = tree[0]
    kept = (n, kq) if want_kmax else (0, kq)  # the k nearest themselves: only for kmax
    bdp = np.empty(kept)
    bjp = np.empty(kept, np.int64)
    eps = np.empty(n)
    nzero = np.empty(n, np.int64)
    kp = kvec[perm]
    if xj.shape[1] <= 4:
        run_ranges(_knn_range4, n, threads, tree, _columns4(tree[1]), kp, bdp, bjp, eps,
                   nzero)
    else:
        run_ranges(_knn_range, n, threads, tree, np.empty((0, n)), kp, bdp, bjp, eps, nzero)
    if want_kmax:
        bj = np.empty((n, kq), np.int64)
        bj[perm] = bjp
    atoms = np.flatnonzero(eps == 0)  # k or more points at distance 0: count them all
    if len(atoms):
        z = np.zeros(n, np.int64)
        run_ranges(_count_range, n, threads, tree, seg_of, np.zeros(n),
                   np.zeros(n, np.bool_), z)
        nzero[atoms] = z[atoms]
    kmax = np.zeros((len(blocks), n))
    if want_kmax:  # max block distance over the k nearest (ties broken by row index)
        valid = np.arange(kq)[None, :] < kvec[:, None]
        nbr = np.where(valid, bj, np.arange(n)[:, None])
        for b, blk in enumerate(blocks):
            if not blk.discrete:
                v = blk.values
                kmax[b] = np.abs(v[nbr] - v[:, None, :]).max(axis=(1, 2))
    counts = np.zeros((len(subspaces), n), np.int64)

    def count_space(s, t):  # subspace s on t threads
        space = subspaces[s]
        r = np.ascontiguousarray(eps if radius_from[s] is None else kmax[radius_from[s]])
        strict = (r > 0) if count == "gao" else np.full(n, count == "strict")
        xs = _columns(blocks, space)
        sseg, sorder, sbounds = _segments(blocks, space, n)
        if xs.shape[1] <= 2:  # sorted columns: binary search (+ a rectangle sweep in 2-D)
            orders = [o for b in space if not blocks[b].discrete
                      for o in blocks[b].column_order]
            sorted_counts(xs, sseg, sbounds, r, strict, counts[s], t, orders)
        else:
            stree = _build(xs, sorder, sbounds, LEAF)
            run_ranges(_count_range, n, t, stree, sseg, r, strict, counts[s])

    workers = min(threads or numba.config.NUMBA_NUM_THREADS, n)
    if workers > 1 and len(subspaces) > 1 and n < CHEAP_PARALLEL_MIN:
        # below this size each subspace's kernels run on one thread: the subspaces side by
        # side instead (their kernels release the GIL)
        from .neighbors_numba import _executor

        list(_executor(workers).map(lambda s: count_space(s, 1), range(len(subspaces))))
    else:
        for s in range(len(subspaces)):
            count_space(s, threads)
    return NeighborStats(eps, counts, kmax, nzero, "kdtree")


# ======================================================== small strata: brute force
def _small_strata(blocks, joint, subspaces, radius_from, want_kmax, bounds) -> bool:
    """whether ``neighbors_strata`` applies: every joint stratum has at most
    ``BRUTE_MAX_STRATUM`` rows, only counts against the joint radius are asked for, the
    joint has at most ``MAX_BLOCKS`` continuous blocks of at most ``MAX_COLS`` columns, and
    each subspace is some of them with all of the joint's discrete blocks (so that its
    strata are the joint's)."""
    ns = neighbors_strata
    if want_kmax or any(r is not None for r in radius_from):
        return False
    if int(np.diff(bounds).max(initial=0)) > ns.BRUTE_MAX_STRATUM:
        return False
    jd = {b for b in joint if blocks[b].discrete}
    jc = [b for b in joint if not blocks[b].discrete]
    if not 2 <= len(jc) <= ns.MAX_BLOCKS or any(blocks[b].values.shape[1] > ns.MAX_COLS
                                                 for b in jc):
        return False
    return all({b for b in sp if blocks[b].discrete} == jd
               and {b for b in sp if not blocks[b].discrete} <= set(jc)
               and sum(not blocks[b].discrete for b in sp) <= 2 for sp in subspaces)


def _strata_stats(blocks, kvec, joint, subspaces, count, order, bounds, threads):
    """``kdtree_stats`` by ``neighbors_strata.strata_range`` (``_small_strata`` holds):
    ``strata_positions``, the results scattered back to rows."""
    n = len(order)
    eps_p, counts_p, nz_p = strata_positions(blocks, kvec[order], joint, subspaces, count,
                                             order, bounds, threads)
    eps, nzero = np.empty(n), np.empty(n, np.int64)
    counts = np.empty_like(counts_p)
    eps[order], nzero[order] = eps_p, nz_p
    counts[:, order] = counts_p
    return NeighborStats(eps, counts, np.zeros((len(blocks), n)), nzero, "kdtree")


def strata_positions(blocks, kpos, joint, subspaces, count, order, bounds, threads=None):
    """The statistics of ``kdtree_stats`` when ``_small_strata`` holds, by position: the
    point at position p is row ``order[p]``; strata are the runs ``bounds[s]:bounds[s+1]``
    of positions (the joint's discrete blocks are not read: ``order`` and ``bounds`` must
    group the rows by them); ``kpos`` (n,) k per position. The joint's continuous columns
    are gathered in that order and searched by ``neighbors_strata.strata_range`` on
    ``threads``. Returns eps (n,), counts (len(subspaces), n) int64, nzero (n,) int64,
    all by position."""
    ns = neighbors_strata
    n = len(order)
    cont = [b for b in joint if not blocks[b].discrete]
    xt = np.empty((2 * len(cont), n))
    for t, b in enumerate(cont):  # block t in rows 2t, 2t + 1 (a 1-column block twice)
        v = blocks[b].values
        xt[2 * t] = v[order, 0]
        xt[2 * t + 1] = v[order, v.shape[1] - 1]
    pairs = [[t for t, b in enumerate(cont) if b in sp] + [-1] for sp in subspaces]
    sub_a = np.array([p[0] for p in pairs], np.int64)
    sub_b = np.array([p[1] for p in pairs], np.int64)
    sizes = np.diff(bounds)
    seg_lo = np.repeat(bounds[:-1], sizes)
    seg_hi = np.repeat(bounds[1:], sizes)
    eps_p, nz_p = np.empty(n), np.empty(n, np.int64)
    counts_p = np.empty((len(subspaces), n), np.int64)
    run_ranges(ns.strata_range, n, threads, xt, len(cont), sub_a, sub_b, seg_lo, seg_hi,
               np.ascontiguousarray(kpos, dtype=np.int64), COUNT_MODES[count], eps_p,
               counts_p, nz_p)
    return eps_p, counts_p, nz_p
