"""Radius counts in a 1-D or 2-D max-norm subspace by sorting (the kd-tree backend's
marginal counts; see ``neighbors_kdtree``).

For each point i (row), count the other points j of its segment (stratum of the
subspace's discrete codes) with ``max_c fl(|x_jc - x_ic|) < r_i`` (strict) or ``<= r_i``:

- 1-D: the column sorted within segments; the points within the radius are one interval
  of positions, whose ends are found by a search on that exact predicate (monotone in
  the value on each side of the query), never on a shifted bound ``x_i - r_i``;
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
CHEAP_PARALLEL_MIN = 40_000  # the same for kernels of ~0.2 us per query (dispatch costs more)


def run_ranges(kernel, n, threads, *args, chunks=4, parallel_min=PARALLEL_MIN):
    """kernel(p0, p1, *args) over 0..n-1, in GIL-free ranges (``chunks`` per thread) on
    ``threads`` threads; on one thread below ``parallel_min`` queries."""
    from .neighbors_numba import _executor

    threads = min(threads or numba.config.NUMBA_NUM_THREADS, n)
    if threads <= 1 or n < parallel_min:
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
def _intervals(p0, p1, vals, radius, strict, seg, bounds, table, first, last):
    """For sorted positions p0..p1-1 (value vals[p] in ascending order within its
    segment seg[p], positions bounds[s]..bounds[s+1]-1; every array indexed by position,
    so that memory is read in order): the positions first[p]..last[p] of the values with
    fl(|v - vals[p]|) < radius[p] (strict[p]) or <= (else). Each end is found by a search
    on that exact predicate, which is monotone on each side of p: from a guess (where
    vals[p] -+ radius[p] falls in the segment's ``_guess_tables`` ``table``), steps
    doubling away from it until the predicate changes, then bisection; the guess only
    decides where the search starts, never the result. Empty: first = p + 1, last = p."""
    v0s, iws, toff, start = table
    for p in range(p0, p1):
        v = vals[p]
        r = radius[p]
        st = strict[p]
        if st and not r > 0.0:
            first[p], last[p] = p + 1, p
            continue
        s = seg[p]
        lo, hi = bounds[s], bounds[s + 1] - 1
        t0, cells = toff[s], toff[s + 1] - toff[s] - 2
        gl = p - _position_guess(v - r, v0s[s], iws[s], start, t0, cells)
        gr = _position_guess(v + r, v0s[s], iws[s], start, t0, cells) - 1.0 - p
        a = p - _reach(vals, p, -1, p - lo, v, r, st, _offset(gl, p - lo))
        b = p + _reach(vals, p, 1, hi - p, v, r, st, _offset(gr, hi - p))
        first[p], last[p] = a, b


@njit(cache=True, nogil=True)
def _guess_tables(vals, bounds):
    """Tables for guessing where a value falls among the ascending values of each
    segment s (positions L = bounds[s] .. H - 1 = bounds[s+1] - 1): its range cut into
    c = H - L cells of width h = (vals[H-1] - vals[L]) / c, start[toff[s] + g] = L + the
    number of its values in cells below g (cell of v: floor((v - vals[L]) / h), g =
    0..c + 1), by a histogram. A position is then interpolated within a cell: about
    right where the density varies slowly over a cell, which holds at one value per
    cell for any smooth distribution (2+2 dims, N = 10,000: 7.7 -> ~3 predicate
    evaluations per interval end, searches 2x faster than from the previous query's
    density). Returns (v0 (S,) first values, iw (S,) 1 / h, 0 where h or 1 / h is not a
    positive finite number (then every start is L), toff (S + 1,), start)."""
    nseg = len(bounds) - 1
    v0s = np.zeros(nseg)
    iws = np.zeros(nseg)
    toff = np.empty(nseg + 1, np.int64)
    toff[0] = 0
    for s in range(nseg):
        toff[s + 1] = toff[s] + (bounds[s + 1] - bounds[s]) + 2
    start = np.zeros(toff[nseg], np.int64)
    for s in range(nseg):
        lo, hi = bounds[s], bounds[s + 1]
        cells = hi - lo
        t0 = toff[s]
        if cells == 0:
            continue
        v0 = vals[lo]
        h = (vals[hi - 1] - v0) / cells
        v0s[s] = v0
        if h > 0.0 and h < np.inf and 1.0 / h < np.inf:
            iw = 1.0 / h
            iws[s] = iw
            for q in range(lo, hi):  # a value's cell (clipped: rounding at the top)
                start[t0 + 1 + min(int((vals[q] - v0) * iw), cells)] += 1
        acc = lo
        for g in range(cells + 2):  # slot g held the values of cell g - 1
            acc += start[t0 + g]
            start[t0 + g] = acc
    return v0s, iws, toff, start


@njit(cache=True, inline="always")
def _position_guess(w, v0, iw, start, t0, cells):
    """about where the value w falls in a segment (an absolute position, float): linear
    within its cell of ``_guess_tables``; the segment's first position below its range
    (or for nan), its end above it"""
    x = (w - v0) * iw
    if not x > 0.0:
        return float(start[t0])
    if not x < cells:
        return float(start[t0 + cells])
    g = int(x)
    return start[t0 + g] + (x - g) * (start[t0 + g + 1] - start[t0 + g])


@njit(cache=True, inline="always")
def _offset(guess, most):
    """int(guess) clipped to 0..most (guess may be negative, huge, inf or nan)"""
    if guess < most:
        return int(guess) if guess > 0.0 else 0
    return most


@njit(cache=True, inline="always")
def _reach(vals, p, s, limit, v, r, st, i0):
    """The largest i in 0..limit with _inside(p + s * i) (s = -1: leftwards, +1:
    rightwards; i = 0, the query itself, is inside and the predicate is monotone in i),
    searched from the offset i0: steps doubling away from i0 until the predicate changes,
    then bisection between the last offset inside and the first outside."""
    if _inside(vals, p + s * i0, v, r, st):  # the end is at i0 or beyond
        i_in, step = i0, 1
        while True:
            c = i_in + step
            if c > limit:
                i_out = limit + 1
                break
            if _inside(vals, p + s * c, v, r, st):
                i_in = c
                step *= 2
            else:
                i_out = c
                break
    else:  # before i0
        i_out, step = i0, 1
        while True:
            c = i_out - step
            if c <= 0:
                i_in = 0
                break
            if _inside(vals, p + s * c, v, r, st):
                i_in = c
                break
            i_out = c
            step *= 2
    lo, hi = i_in, i_out - 1  # inside at i_in, outside at i_out
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _inside(vals, p + s * mid, v, r, st):
            lo = mid
        else:
            hi = mid - 1
    return lo


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
def _sweep_range(c0, c1, key, a2, b2, nev, ev, plus, minus):
    """The sweep over positions c0..c1-1 of column 1, on a Fenwick tree over column-2
    positions started from the points before c0 (built in O(n)): for each event, the
    number of swept points with a2 <= pos2 <= b2, into plus[i] (rectangle end) or
    minus[i] (start). Ranges are independent, so they run on separate threads."""
    n = len(key)
    fen = np.zeros(n + 1, np.int32)
    for q in range(c0):
        fen[key[q] + 1] += 1
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
            x = key[p] + 1
            while x <= n:
                fen[x] += 1
                x += x & -x


def rectangle_counts(key, a1, b1, a2, b2, out, threads=None):
    """out[p] = #{q != p : a1[p] <= q <= b1[p] and a2[p] <= key[q] <= b2[p]} for points
    at positions p of column 1 with column-2 positions ``key`` (a permutation of 0..n-1),
    offline: a sweep over q with a Fenwick tree over key, each rectangle the difference
    of two prefix counts. O(n log n). Empty rectangles (a1 > b1) give 0; every non-empty
    one holds p itself."""
    n = len(key)
    nev, ev = _events(a1, b1)
    plus = np.zeros(n, np.int64)
    minus = np.zeros(n, np.int64)
    run_ranges(_sweep_range, n + 1, threads, key, a2, b2, nev, ev, plus, minus, chunks=1,
               parallel_min=CHEAP_PARALLEL_MIN)
    out[:] = np.where(a1 <= b1, plus - minus - 1, 0)


def sorted_order(col: np.ndarray, seg: np.ndarray, nseg: int,
                 order: np.ndarray | None = None) -> np.ndarray:
    """(n,) int64 rows ordered by segment, then value (ties by row): ``np.lexsort((col,
    seg))``, as two stable sorts (the second a radix sort of small integers); ``order``:
    the rows already sorted by value (``Block.column_order``), if known."""
    if order is None:
        from .neighbors import stable_argsort

        order = stable_argsort(col)
    if nseg > 1:
        s = seg[order]
        order = order[np.argsort(s.astype(np.int16) if nseg < 2**15 else s, kind="stable")]
    return order.astype(np.int64, copy=False)


def sorted_counts(xs: np.ndarray, seg: np.ndarray, bounds: np.ndarray, radius: np.ndarray,
                  strict: np.ndarray, out: np.ndarray, threads=None, orders=None) -> None:
    """out (n,) = radius counts (self excluded) in the 1-D or 2-D subspace ``xs`` (n, 1|2)
    float64, within segments (``seg`` (n,) segment of each row, ``bounds`` (S+1,) their
    offsets in segment order); ``radius`` (n,), ``strict`` (n,) bool per point;
    ``orders``: optional, per column the rows in ascending order of its values."""
    n = len(xs)
    ivs = []
    for c in range(xs.shape[1]):
        perm = sorted_order(xs[:, c], seg, len(bounds) - 1,
                            None if orders is None else orders[c])
        sp = seg[perm]
        vals = np.ascontiguousarray(xs[perm, c])
        first, last = np.empty(n, np.int64), np.empty(n, np.int64)
        run_ranges(_intervals, n, threads, vals, radius[perm], strict[perm], sp, bounds,
                   _guess_tables(vals, bounds), first, last, parallel_min=CHEAP_PARALLEL_MIN)
        ivs.append((perm, first, last))  # by position in column c's order
    if len(ivs) == 1:
        perm, first, last = ivs[0]
        out[perm] = np.maximum(last - first, 0)
        return
    # the sweep in column-1 positions: a rectangle's events lie near its own position
    (order1, a1, b1), (order2, first2, last2) = ivs
    pos2 = np.empty(n, np.int64)
    pos2[order2] = np.arange(n)
    key = pos2[order1]  # column-2 position of the point at each column-1 position
    res = np.empty(n, np.int64)
    rectangle_counts(key, a1, b1, first2[key], last2[key], res, threads)
    out[order1] = res
