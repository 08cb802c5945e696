"""Exact neighbour statistics for the kNN estimators, behind one interface.

Every kNN estimator in ``knn.py`` needs, for each point i, a radius from its k nearest
neighbours in a *joint* space and, for one or more *subspaces*, the number of other points
within that radius. :func:`neighbor_stats` computes exactly that, for points described by
:class:`Block`\\ s:

- a continuous block: (n, d) float64 columns with a norm, ``"max"`` (Chebyshev, the KSG /
  NPEET convention) or ``"euclidean"``;
- a discrete block: integer codes with the 0/inf metric (distance 0 between equal codes,
  infinity otherwise), which turns Frenzel-Pompe into Ross's estimator and its conditional
  forms (Mesner & Shalizi 2020).

A space (the joint or a subspace) is a set of blocks; its distance is the max over its
blocks (so the joint is the max-norm over the marginals, as KSG requires).

Conventions (shared by all backends, so they give identical counts):
- the radius ``eps[i]`` is the distance to the k-th nearest other point (self excluded)
  among points whose codes in the joint's discrete blocks equal point i's; ties broken by
  row index where identities matter (``kmax``);
- counts exclude the point itself; ``count="strict"`` counts d < eps (KSG, Frenzel-Pompe,
  NPEET), ``"closed"`` d <= eps (Ross, KSG estimator 2), ``"gao"`` d < eps when eps > 0 and
  d == 0 when eps == 0 (Gao et al. 2017);
- distances are float64 (max-norm distances are exact; Euclidean ones use one canonical
  sequential sum, ``neighbors_numba.exact_block_distance``);
- a subspace made of discrete blocks only is counted without a search (all points with the
  same codes, at distance 0).

Backends (``backend=``): ``"kdtree"`` (compiled kd-tree and sorted marginals, threads,
brute force within small strata; max-norm blocks only; best in low dimension, see
``neighbors_kdtree``), ``"numba"`` (compiled brute force, float32 filter + exact float64
recheck, see ``neighbors_numba``), ``"torch"`` (chunked brute force in float64 on CPU or
CUDA, memory bounded), ``"auto"`` (kdtree for <= ``KDTREE_MAX_DIM`` joint dimensions, else
torch on CUDA when available, else numba).

Ties: the estimators add seeded noise before calling this module (see ``knn.jitter``);
this module itself is deterministic and has no randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .inputs import joint_codes

KDTREE_MAX_DIM = 4  # joint dims where cKDTree wins (N=1e4: equal at 4, 4x slower at 8)
COUNT_MODES = {"strict": 0, "closed": 1, "gao": 2}
NORMS = ("max", "euclidean")


@dataclass(frozen=True, eq=False)
class Block:
    """One group of columns. ``values``: (n, d) float64 (continuous) or (n,) int64 codes
    (discrete). ``norm``: "max" or "euclidean" (continuous only)."""

    values: np.ndarray
    discrete: bool = False
    norm: str = "max"

    def take(self, rows: np.ndarray) -> "Block":
        """The block on ``rows``; a computed ``column_order`` is carried over (restricted
        in O(n) when first asked for) when the rows are increasing."""
        out = Block(self.values[rows], self.discrete, self.norm)
        parent = self.__dict__.get("_column_order")
        if parent is None:
            parent = self.__dict__.get("_order_of_parent")
        rows = np.asarray(rows)
        if parent is not None and rows.dtype.kind in "iu" and rows.ndim == 1 and (
                len(rows) < 2 or bool((np.diff(rows) > 0).all())):
            out.__dict__["_order_of_parent"] = (parent, rows)
        return out

    @property
    def column_order(self) -> np.ndarray:
        """(d, n) int64: the rows in ascending order of each column (ties by row index,
        ``np.argsort(kind="stable")``), computed once per block (continuous blocks); for a
        block made by ``take`` from one whose order was known, that order restricted.
        Cached without a lock (``functools.cached_property`` in Python 3.11 takes one
        lock for all instances, which would serialise the marginals' sorts, run on
        separate threads); two threads asking at once both compute the same array."""
        order = self.__dict__.get("_column_order")
        if order is None:
            parent = self.__dict__.get("_order_of_parent")
            if parent is not None:
                order = _restrict(parent)
            elif len(self.values):
                order = np.stack([stable_argsort(c) for c in self.values.T])
            else:
                order = np.zeros((self.values.shape[1], 0), np.int64)
            self.__dict__["_column_order"] = order
        return order


def _restrict(source) -> np.ndarray:
    """(d, len(rows)) from ``source`` = (order, rows): ``order`` (d, n) the rows in
    ascending order of each column (or itself such a pair, for a chain of takes),
    kept to the increasing ``rows`` and renumbered 0..len(rows)-1."""
    order, rows = source
    if isinstance(order, tuple):
        order = _restrict(order)
    pos = np.full(order.shape[1], -1, np.int64)
    pos[rows] = np.arange(len(rows))
    o = pos[order]
    return o[o >= 0].reshape(len(order), len(rows))


def stable_argsort(col: np.ndarray) -> np.ndarray:
    """(n,) int64 ``np.argsort(col, kind="stable")`` (ties by row index), about 5x
    faster on tie-free float64 data: a faster sort (``_packed_argsort``, else numpy's
    unstable argsort) is kept when the values it orders strictly increase (then it is
    the only ascending order, hence the stable one), else the stable sort."""
    if col.dtype == np.float64 and col.ndim == 1:
        order = _packed_argsort(col)
    else:
        order = np.argsort(col, kind="quicksort")
    s = col[order]
    if not (s[1:] > s[:-1]).all():  # ties, signed zeros or nan: the stable sort
        order = np.argsort(col, kind="stable")
    return order.astype(np.int64, copy=False)


_MAGNITUDE = np.int64(0x7FFFFFFFFFFFFFFF)


def _packed_argsort(col: np.ndarray) -> np.ndarray:
    """(n,) int64 rows of the float64 ``col`` in ascending order of the values' leading
    bits, by one ``np.sort`` of int64 keys (numpy's vectorised sort of plain numbers, 2x
    faster than its argsort): the float's bits mapped to an int64 of the same order
    (negative values' magnitude bits flipped), its lowest b bits replaced by the row
    (2^b >= n). Values that differ only in those bits may come out of order; the caller
    checks the values along the order."""
    n = len(col)
    b = max(1, (n - 1).bit_length())
    bits = col.view(np.int64)
    key = bits ^ ((bits >> 63) & _MAGNITUDE)
    key >>= b
    key <<= b
    key |= np.arange(n, dtype=np.int64)
    key.sort()
    key &= (1 << b) - 1
    return key


@dataclass(frozen=True, eq=False)
class NeighborStats:
    """eps (n,) joint radius; counts (n_subspaces, n) int64; kmax (n_blocks, n) max block
    distance over the k nearest joint neighbours (zeros for discrete blocks or unless
    requested); nzero (n,) points at joint distance exactly 0 (self excluded)."""

    eps: np.ndarray
    counts: np.ndarray
    kmax: np.ndarray
    nzero: np.ndarray
    backend: str


# ====================================================================== validation
def _check_spec(blocks: Sequence[Block], k, joint, subspaces, radius_from):
    n = len(blocks[0].values)
    for b, blk in enumerate(blocks):
        if len(blk.values) != n:
            raise ValueError(f"block {b} has {len(blk.values)} rows, block 0 has {n}")
        if not blk.discrete:
            if blk.values.ndim != 2:
                raise ValueError(f"continuous block {b} must be (n, d), got {blk.values.shape}")
            if blk.norm not in NORMS:
                raise ValueError(f"block {b}: norm must be one of {NORMS}, got {blk.norm!r}")
        elif blk.values.ndim != 1:
            raise ValueError(f"discrete block {b} must hold (n,) codes, got {blk.values.shape}")
    nb = len(blocks)
    for s in [joint, *subspaces]:
        if any(not 0 <= b < nb for b in s):
            raise ValueError(f"space {tuple(s)} names a block outside 0..{nb - 1}")
    if not any(not blocks[b].discrete for b in joint):
        raise ValueError("the joint space needs at least one continuous block")
    kvec = np.broadcast_to(np.asarray(k, dtype=np.int64), (n,)).copy()
    if (kvec < 1).any():
        raise ValueError(f"k must be >= 1, got min {int(kvec.min())}")
    stratum = joint_strata(blocks, joint)
    sizes = np.bincount(stratum)[stratum]
    if (kvec > sizes - 1).any():
        i = int(np.flatnonzero(kvec > sizes - 1)[0])
        raise ValueError(f"point {i} has only {sizes[i] - 1} other points with its discrete "
                         f"codes but k={kvec[i]}")
    radius_from = list(radius_from) if radius_from is not None else [None] * len(subspaces)
    if len(radius_from) != len(subspaces):
        raise ValueError("radius_from must name one source per subspace")
    return n, kvec, radius_from


def joint_strata(blocks: Sequence[Block], space: Sequence[int]) -> np.ndarray:
    """(n,) int64 codes 0..S-1 of the combination of a space's discrete blocks (0 when
    none), numbered in increasing (first block, second block, ...) order, as
    ``inputs.joint_codes`` numbers them."""
    disc = [blocks[b].values for b in space if blocks[b].discrete]
    n = len(blocks[0].values)
    if not disc:
        return np.zeros(n, np.int64)
    if any(d.ndim != 1 or d.dtype.kind not in "iub" for d in disc):
        return joint_codes(*(d.reshape(n, -1) if d.ndim > 1 else d for d in disc))
    out = np.zeros(n, np.int64)
    for d in disc:
        c = _dense(d.astype(np.int64, copy=False))
        out = _dense(out * (int(c.max(initial=0)) + 1) + c)
    return out


def _dense(codes: np.ndarray) -> np.ndarray:
    """(n,) int64 codes renumbered 0..S-1 in increasing order (``np.unique``'s inverse),
    by a bincount when the codes are small non-negative integers (no sort)."""
    n = len(codes)
    if n and codes.min() >= 0 and codes.max() < 4 * n + 64:
        present = np.bincount(codes) > 0
        return (np.cumsum(present) - 1)[codes]
    return np.unique(codes, return_inverse=True)[1].reshape(-1).astype(np.int64)


def float32_error_bound(values: np.ndarray, norm: str) -> float:
    """Upper bound on |float32 distance - float64 distance| for the centred block.

    Rounding each centred coordinate to float32 moves it by <= M 2^-24 (M = max |value|),
    the float32 difference adds <= 2M 2^-24, so one coordinate difference is off by
    <= 4M 2^-24 = M 2^-22 (abs and max are exact). A Euclidean distance is off by at most
    sqrt(d) times that plus the float32 summation error, <= (d + 2) 2^-24 of the largest
    possible distance 2M sqrt(d). A factor 4 of safety on top.
    """
    m = float(np.abs(values).max()) if values.size else 0.0
    d = values.shape[1]
    if norm == "max":
        bound = m * 2.0**-22
    else:
        bound = math.sqrt(d) * m * 2.0**-22 + (d + 2) * 2.0**-24 * 2.0 * m * math.sqrt(d)
    return 4.0 * bound + 1e-300


# ======================================================================== dispatch
def neighbor_stats(
    blocks: Sequence[Block],
    k,
    *,
    joint: Sequence[int],
    subspaces: Sequence[Sequence[int]] = (),
    radius_from: Sequence[int | None] | None = None,
    count: str = "strict",
    want_kmax: bool = False,
    backend: str = "auto",
    device: str | None = None,
    progress=None,
) -> NeighborStats:
    """Radii and radius counts for every point (see the module docstring).

    blocks      : the variables, each a :class:`Block` with n rows
    k           : int or (n,) ints, neighbours per point (>= 1, < its stratum size)
    joint       : indices of the blocks forming the joint space (>= 1 continuous)
    subspaces   : for each, the blocks whose distance is counted against the radius
    radius_from : per subspace, None (the joint radius) or a block index b: the largest
                  block-b distance among the k nearest joint neighbours (KSG estimator 2)
    count       : "strict", "closed" or "gao" (see module docstring)
    want_kmax   : also return ``kmax`` (implied by a block in ``radius_from``)
    backend     : "auto", "kdtree", "numba" or "torch"; ``device`` for torch ("cpu", "cuda")
    progress    : optional ``progress(done, n)``, called as query rows finish on the
                  brute-force backends (numba, torch), whose calls can last minutes
    """
    if count not in COUNT_MODES:
        raise ValueError(f"count must be one of {sorted(COUNT_MODES)}, got {count!r}")
    n, kvec, radius_from = _check_spec(blocks, k, joint, subspaces, radius_from)
    want_kmax = want_kmax or any(r is not None for r in radius_from)
    for r in radius_from:
        if r is not None and (blocks[r].discrete or r not in joint):
            raise ValueError(f"radius_from={r}: must be a continuous block of the joint")
    if backend == "auto":
        backend = choose_backend(blocks, joint, n)
    if backend not in ("kdtree", "numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'kdtree', 'numba' or 'torch', "
                         f"got {backend!r}")
    # a subspace of discrete blocks only needs no search: every point with the same codes
    # is at distance 0, inside any radius > 0 (and any closed radius)
    searched = [s for s, sp in enumerate(subspaces) if any(not blocks[b].discrete for b in sp)]
    args = (blocks, kvec, joint, [subspaces[s] for s in searched],
            [radius_from[s] for s in searched], count, want_kmax)
    if backend == "kdtree":
        from .neighbors_kdtree import kdtree_stats

        st = kdtree_stats(*args)
    elif backend == "numba":
        st = _numba_stats(*args, progress=progress)
    else:
        from .neighbors_torch import torch_stats

        st = torch_stats(*args, device=device, progress=progress)
    if len(searched) == len(subspaces):
        return st
    counts = np.zeros((len(subspaces), n), np.int64)
    counts[searched] = st.counts
    for s, sp in enumerate(subspaces):
        if s not in searched:
            strata = joint_strata(blocks, sp)
            inside = np.bincount(strata)[strata] - 1
            counts[s] = inside if count != "strict" else np.where(st.eps > 0, inside, 0)
    return NeighborStats(st.eps, counts, st.kmax, st.nzero, st.backend)


def choose_backend(blocks: Sequence[Block], joint: Sequence[int], n: int) -> str:
    """cKDTree in low dimension (max-norm only); brute force above (CUDA if present)."""
    all_max = all(b.discrete or b.norm == "max" for b in blocks)
    dim = sum(blocks[b].values.shape[1] for b in joint if not blocks[b].discrete)
    if all_max and dim <= KDTREE_MAX_DIM:
        return "kdtree"
    if n >= 2000 and _cuda_available():
        return "torch"
    return "numba"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def _flags(space: Sequence[int], idx: dict[int, int], size: int) -> np.ndarray:
    f = np.zeros(size, np.bool_)
    for b in space:
        if b in idx:
            f[idx[b]] = True
    return f


def _numba_stats(blocks, kvec, joint, subspaces, radius_from, count, want_kmax,
                 progress=None):
    from . import neighbors_numba as nk

    n = len(blocks[0].values)
    cont = [b for b, blk in enumerate(blocks) if not blk.discrete]
    disc = [b for b, blk in enumerate(blocks) if blk.discrete]
    cidx = {b: t for t, b in enumerate(cont)}
    didx = {b: t for t, b in enumerate(disc)}
    x64 = np.ascontiguousarray(np.concatenate([blocks[b].values for b in cont], axis=1),
                               dtype=np.float64)
    starts = np.cumsum([0] + [blocks[b].values.shape[1] for b in cont]).astype(np.int64)
    centred = x64 - x64.mean(axis=0)
    xt32 = np.ascontiguousarray(centred.T, dtype=np.float32)
    euclid = np.array([blocks[b].norm == "euclidean" for b in cont], np.bool_)
    delta = np.array([float32_error_bound(centred[:, starts[t]:starts[t + 1]],
                                          blocks[b].norm) for t, b in enumerate(cont)])
    codes = (np.stack([blocks[b].values for b in disc]).astype(np.int64)
             if disc else np.zeros((0, n), np.int64))
    sub_c = np.stack([_flags(s, cidx, len(cont)) for s in subspaces]) if subspaces else \
        np.zeros((0, len(cont)), np.bool_)
    sub_d = np.stack([_flags(s, didx, len(disc)) for s in subspaces]) if subspaces else \
        np.zeros((0, len(disc)), np.bool_)
    rsrc = np.array([-1 if r is None else cidx[r] for r in radius_from], np.int64)
    eps, counts, kmax_c, nzero = nk.brute_stats(
        xt32, x64, starts, euclid, delta, codes, _flags(joint, cidx, len(cont)),
        _flags(joint, didx, len(disc)), sub_c, sub_d, rsrc, kvec, COUNT_MODES[count],
        want_kmax, progress=progress)
    kmax = np.zeros((len(blocks), n))
    for b, t in cidx.items():
        kmax[b] = kmax_c[t]
    return NeighborStats(eps, counts, kmax, nzero, "numba")
