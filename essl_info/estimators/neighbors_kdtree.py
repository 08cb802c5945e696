"""The cKDTree backend of ``neighbors.neighbor_stats`` (low dimension, max-norm only).

Max-norm distances ``max |a - b|`` are exact in float64 whatever the implementation, so the
tree's radii equal the brute-force backends' bit for bit; strict counts ``d < eps`` are
``d <= nextafter(eps, 0)``. Discrete blocks are handled by building one tree per stratum
(points sharing the codes of the space's discrete blocks).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .neighbors import Block, NeighborStats, joint_strata


def _columns(blocks: list[Block], space) -> np.ndarray | None:
    cols = [blocks[b].values for b in space if not blocks[b].discrete]
    return np.concatenate(cols, axis=1) if cols else None


def kdtree_stats(blocks, kvec, joint, subspaces, radius_from, count, want_kmax):
    if any(not b.discrete and b.norm != "max" for b in blocks):
        raise ValueError("backend='kdtree' supports the max-norm only; use 'numba' or "
                         "'torch' for Euclidean blocks")
    n = len(blocks[0].values)
    eps = np.empty(n)
    nzero = np.zeros(n, np.int64)
    kmax = np.zeros((len(blocks), n))
    xj = _columns(blocks, joint)
    strata = joint_strata(blocks, joint)
    for g in np.unique(strata):
        rows = np.flatnonzero(strata == g)
        tree = cKDTree(xj[rows])
        kq = int(kvec[rows].max())
        # the k+1 nearest include the point itself (distance 0 is the smallest), so the
        # (k+1)-th distance is the k-th distance to another point, even with duplicates
        dist, _ = tree.query(xj[rows], k=kq + 1, p=np.inf, workers=-1)
        dist = dist.reshape(len(rows), -1)
        eps[rows] = dist[np.arange(len(rows)), kvec[rows]]
        nzero[rows] = tree.query_ball_point(xj[rows], r=0.0, p=np.inf,
                                            return_length=True, workers=-1) - 1
        if want_kmax:  # the k nearest, ties at the k-th distance broken by row index
            balls = tree.query_ball_point(xj[rows], r=eps[rows], p=np.inf, workers=-1)
            for t, i in enumerate(rows):
                cand = rows[np.asarray(balls[t], dtype=np.int64)]
                cand = cand[cand != i]
                d = np.abs(xj[cand] - xj[i]).max(axis=1)
                near = cand[np.lexsort((cand, d))[: kvec[i]]]
                for b, blk in enumerate(blocks):
                    if not blk.discrete:
                        kmax[b, i] = np.abs(blk.values[near] - blk.values[i]).max()
    counts = np.zeros((len(subspaces), n), np.int64)
    for s, space in enumerate(subspaces):
        r = eps if radius_from[s] is None else kmax[radius_from[s]]
        strict = (r > 0) if count == "gao" else np.full(n, count == "strict")
        radius = np.where(strict, np.nextafter(r, 0.0), r)  # d < r  <=>  d <= nextafter
        empty = radius < 0  # strict count at r == 0: nobody
        xs = _columns(blocks, space)
        sstrata = joint_strata(blocks, space)
        for g in np.unique(sstrata):
            rows = np.flatnonzero(sstrata == g)
            if xs is None:
                c = np.full(len(rows), len(rows) - 1)
            else:
                tree = cKDTree(xs[rows])
                c = tree.query_ball_point(xs[rows], r=np.maximum(radius[rows], 0.0),
                                          p=np.inf, return_length=True, workers=-1) - 1
            counts[s, rows] = np.where(empty[rows], 0, c)
    return NeighborStats(eps, counts, kmax, nzero, "kdtree")
