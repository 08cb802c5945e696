"""Radius counts in a 1-D or 2-D max-norm subspace by sorting (the kd-tree backend's
marginal counts; see ``neighbors_kdtree``).

For each point i (row), count the other points j of its segment (stratum of the
subspace's discrete codes) with ``max_c fl(|x_jc - x_ic|) < r_i`` (strict) or ``<= r_i``:

- 1-D: the column sorted within segments; the points within the radius are one interval
  of positions, whose ends are found by binary search on that exact predicate (monotone
  in the value on each side of the query), never on a shifted bound ``x_i - r_i``;
- 2-D: the intersection of two such intervals, one per column, is a rectangle in (position
  in column 1, position in column 2), counted offline by a sweep over column-1 positions
  with a Fenwick tree over column-2 positions: O(n log n), independent of the count
  (KSG's marginal counts are hundreds of points at N = 100,000, where a tree range count
  costs their boundary).

Kernels run on GIL-free ranges of queries (``run_ranges``); results do not depend on the
number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

PARALLEL_MIN = 4000  # queries below which one thread does all (callers batch small work)


def run_ranges(kernel, n, threads, *args, chunks=4):
    """kernel(p0, p1, *args) over 0..n-1, in GIL-free ranges (``chunks`` per thread) on
    ``threads`` threads."""
    from .neighbors_numba import _executor

    threads = min(threads or numba.config.NUMBA_NUM_THREADS, n)
    if threads <= 1 or n < PARALLEL_MIN:
        kernel(0, n, *args)
        return
    bounds = np.linspace(0, n, chunks * threads + 1).astype(np.int64)
    list(_executor(threads).map(lambda t: kernel(bounds[t], bounds[t + 1], *args),
                                range(len(bounds) - 1)))


@njit(cache=True, inline="always")
def _inside(vals, u, v, r, st):
    """the exact predicate fl(|vals[u] - v|) < r (st) or <= r"""
    d = abs(vals[u] - v)
    return (d < r) if st else (d <= r)


@njit(cache=True, nogil=True)
def _intervals(p0, p1, perm, vals, seg_lo, seg_hi, radius, strict, first, last):
    """For sorted positions p0..p1-1 (row i = perm[p], value vals[p] in ascending order
    within i's segment [seg_lo[i], seg_hi[i])): the positions first[i]..last[i] of the
    values with fl(|v - vals[p]|) < radius[i] (strict[i]) or <= (else). Each end is found
    by a galloping search from p (steps doubling from the previous query's width, then
    bisection) on that exact predicate, which is monotone on each side of p; memory stays
    near p. Empty: first = p + 1, last = p."""
    wl, wr = 1, 1
    for p in range(p0, p1):
        i = perm[p]
        v = vals[p]
        r = radius[i]
        st = strict[i]
        if st and not r > 0.0:
            first[i], last[i] = p + 1, p
            continue
        lo, hi = seg_lo[i], seg_hi[i] - 1
        # left end: the smallest a in [lo, p] inside (p itself is inside)
        a_in, g = p, wl
        a_out = lo - 1
        while True:
            c = p - g
            if c < lo:
                break
            if _inside(vals, c, v, r, st):
                a_in = c
                g *= 2
            else:
                a_out = c
                break
        a, b = a_out + 1, a_in
        while a < b:
            mid = (a + b) // 2
            if _inside(vals, mid, v, r, st):
                b = mid
            else:
                a = mid + 1
        first[i] = a
        wl = max(p - a, 1)
        # right end: the largest b in [p, hi] inside
        b_in, g = p, wr
        b_out = hi + 1
        while True:
            c = p + g
            if c > hi:
                break
            if _inside(vals, c, v, r, st):
                b_in = c
                g *= 2
            else:
                b_out = c
                break
        a, b = b_in, b_out - 1
        while a < b:
            mid = (a + b + 1) // 2
            if _inside(vals, mid, v, r, st):
                a = mid
            else:
                b = mid - 1
        last[i] = a
        wr = max(a - p, 1)


@njit(cache=True, nogil=True)
def _events(a1, b1):
    """Events of the rectangle sweep, grouped by sweep position 0..n by a counting sort:
    ev[nev[p]:nev[p+1]] holds -(i + 1) for a rectangle starting at column-1 position p
    (subtract the prefix count before p) and i for one ending at p - 1 (add it)."""
    n = len(a1)
    nev = np.zeros(n + 2, np.int64)
    for i in range(n):
        if a1[i] <= b1[i]:
            nev[a1[i] + 1] += 1
            nev[b1[i] + 2] += 1
    for p in range(1, n + 2):
        nev[p] += nev[p - 1]
    ev = np.empty(nev[n + 1], np.int64)
    fill = nev[:n + 1].copy()
    for i in range(n):
        if a1[i] <= b1[i]:
            ev[fill[a1[i]]] = -(i + 1)
            fill[a1[i]] += 1
            ev[fill[b1[i] + 1]] = i
            fill[b1[i] + 1] += 1
    return nev, ev


@njit(cache=True, nogil=True)
def _sweep_range(c0, c1, order1, pos2, a2, b2, nev, ev, plus, minus):
    """The sweep over positions c0..c1-1 of column 1, on a Fenwick tree over column-2
    positions started from the points before c0 (built in O(n)): for each event, the
    number of swept points with a2 <= pos2 <= b2, into plus[i] (rectangle end) or
    minus[i] (start). Ranges are independent, so they run on separate threads."""
    n = len(order1)
    fen = np.zeros(n + 1, np.int32)
    for q in range(c0):
        fen[pos2[order1[q]] + 1] += 1
    for x in range(1, n + 1):
        y = x + (x & -x)
        if y <= n:
            fen[y] += fen[x]
    for p in range(c0, c1):
        for e in range(nev[p], nev[p + 1]):
            code = ev[e]
            i = code if code >= 0 else -code - 1
            c = 0
            x = b2[i] + 1
            y = a2[i]
            while x != y:  # prefix(b2 + 1) - prefix(a2): the chains meet and cancel
                if x > y:
                    c += fen[x]
                    x -= x & -x
                else:
                    c -= fen[y]
                    y -= y & -y
            if code >= 0:
                plus[i] = c
            else:
                minus[i] = c
        if p < n:
            x = pos2[order1[p]] + 1
            while x <= n:
                fen[x] += 1
                x += x & -x


def rectangle_counts(order1, pos2, a1, b1, a2, b2, out, threads=None):
    """out[i] = #{j != i : a1[i] <= pos1[j] <= b1[i] and a2[i] <= pos2[j] <= b2[i]} (pos1
    the inverse of order1), offline: a sweep over pos1 with a Fenwick tree over pos2, each
    rectangle the difference of two prefix counts. O(n log n). Empty rectangles (a1 > b1)
    give 0; every non-empty one holds i itself."""
    n = len(order1)
    nev, ev = _events(a1, b1)
    plus = np.zeros(n, np.int64)
    minus = np.zeros(n, np.int64)
    run_ranges(_sweep_range, n + 1, threads, order1, pos2, a2, b2, nev, ev, plus, minus,
               chunks=1)
    out[:] = np.where(a1 <= b1, plus - minus - 1, 0)


def sorted_order(col: np.ndarray, seg: np.ndarray, nseg: int) -> np.ndarray:
    """(n,) int64 rows ordered by segment, then value (ties by row): ``np.lexsort((col,
    seg))``, by two stable sorts (the second a radix sort of small integers)."""
    order = np.argsort(col, kind="stable")
    if nseg > 1:
        order = order[np.argsort(seg[order], kind="stable")]
    return order.astype(np.int64, copy=False)


def sorted_counts(xs: np.ndarray, seg: np.ndarray, bounds: np.ndarray, radius: np.ndarray,
                  strict: np.ndarray, out: np.ndarray, threads=None) -> None:
    """out (n,) = radius counts (self excluded) in the 1-D or 2-D subspace ``xs`` (n, 1|2)
    float64, within segments (``seg`` (n,) segment of each row, ``bounds`` (S+1,) their
    offsets in segment order); ``radius`` (n,), ``strict`` (n,) bool per point."""
    n = len(xs)
    ivs = []
    for c in range(xs.shape[1]):
        perm = sorted_order(xs[:, c], seg, len(bounds) - 1)
        first, last = np.empty(n, np.int64), np.empty(n, np.int64)
        run_ranges(_intervals, n, threads, perm, np.ascontiguousarray(xs[perm, c]),
                   bounds[seg], bounds[seg + 1], radius, strict, first, last)
        ivs.append((perm, first, last))
    if len(ivs) == 1:
        out[:] = np.maximum(ivs[0][2] - ivs[0][1], 0)
        return
    (order1, a1, b1), (order2, a2, b2) = ivs
    pos2 = np.empty(n, np.int64)
    pos2[order2] = np.arange(n)
    rectangle_counts(order1, pos2, a1, b1, a2, b2, out, threads)
