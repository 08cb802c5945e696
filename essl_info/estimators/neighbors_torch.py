"""The torch backend of ``neighbors.neighbor_stats``: chunked brute force in float64, on CPU
or CUDA, memory bounded.

Distances are built one coordinate at a time with the same float64 operations, in the same
order, as ``neighbors_numba.exact_block_distance`` (max of |a - b|; or a running sum of
squares, one rounding per operation, then a correctly rounded sqrt), so they are
bit-identical to the canonical
distances and no recheck is needed. Query rows are processed in chunks sized so that the
(chunk, n) working tensors stay under ``memory_mb``.
"""

from __future__ import annotations

import numpy as np
import torch

from .neighbors import NeighborStats


def _block_dist(q: torch.Tensor, x: torch.Tensor, euclid: bool) -> torch.Tensor:
    """(m, n) float64 distances between rows of q (m, d) and x (n, d)."""
    acc = torch.zeros(q.shape[0], x.shape[0], dtype=torch.float64, device=x.device)
    for c in range(x.shape[1]):
        t = x[None, :, c] - q[:, c, None]
        if euclid:
            acc = acc + t * t  # two roundings, as in the canonical sequential sum
        else:
            acc = torch.maximum(acc, t.abs())
    if not euclid:
        return acc
    if acc.device.type == "cpu":
        # torch's vectorised CPU sqrt is not correctly rounded (1 ulp); numpy's is (IEEE),
        # as is CUDA's double sqrt, which keeps the result bit-identical to the canonical one
        return torch.from_numpy(np.sqrt(acc.numpy()))
    return acc.sqrt()


def torch_stats(blocks, kvec, joint, subspaces, radius_from, count, want_kmax, *,
                device: str | None = None, memory_mb: float = 512.0, progress=None):
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n = len(blocks[0].values)
    cont = [b for b, blk in enumerate(blocks) if not blk.discrete]
    xs = {b: torch.as_tensor(np.ascontiguousarray(blocks[b].values, dtype=np.float64),
                             device=dev) for b in cont}
    codes = {b: torch.as_tensor(blocks[b].values.astype(np.int64), device=dev)
             for b, blk in enumerate(blocks) if blk.discrete}
    kv = torch.as_tensor(kvec, device=dev)
    kq = int(kvec.max())
    # working set per query row: one (n,) float64 row per continuous block + ~4 more
    chunk = max(1, int(memory_mb * 2**20 / (8 * n * (len(cont) + 4))))
    eps = torch.empty(n, dtype=torch.float64, device=dev)
    nzero = torch.zeros(n, dtype=torch.int64, device=dev)
    kmax = torch.zeros(len(blocks), n, dtype=torch.float64, device=dev)
    counts = torch.zeros(len(subspaces), n, dtype=torch.int64, device=dev)
    cols = torch.arange(n, device=dev)
    for i0 in range(0, n, chunk):
        rows = torch.arange(i0, min(i0 + chunk, n), device=dev)
        dist = {b: _block_dist(xs[b][rows], xs[b], blocks[b].norm == "euclidean")
                for b in cont}
        not_self = rows[:, None] != cols[None, :]

        def space(sp):
            """distance over the space's continuous blocks and its discrete-code mask"""
            d = torch.zeros(len(rows), n, dtype=torch.float64, device=dev)
            ok = not_self.clone()
            for b in sp:
                if b in dist:
                    d = torch.maximum(d, dist[b])
                else:
                    ok &= codes[b][rows][:, None] == codes[b][None, :]
            return d, ok

        dj, okj = space(joint)
        dj_masked = torch.where(okj, dj, torch.full_like(dj, float("inf")))
        nzero[rows] = ((dj == 0) & okj).sum(1)
        if want_kmax:  # neighbour identities matter: ties broken by index (stable sort)
            vals, idx = torch.sort(dj_masked, dim=1, stable=True)
            vals, idx = vals[:, :kq], idx[:, :kq]
        else:  # only the k-th value matters
            vals = torch.topk(dj_masked, kq, dim=1, largest=False, sorted=True).values
        kr = kv[rows] - 1
        e = vals.gather(1, kr[:, None])[:, 0]
        eps[rows] = e
        if want_kmax:
            within = torch.arange(kq, device=dev)[None, :] <= kr[:, None]  # the k nearest
            for b in cont:
                db = dist[b].gather(1, idx)
                kmax[b, rows] = torch.where(within, db, torch.zeros_like(db)).max(1).values
        for s, sp in enumerate(subspaces):
            r = e if radius_from[s] is None else kmax[radius_from[s], rows]
            d, ok = space(sp)
            lt, le = d < r[:, None], d <= r[:, None]
            if count == "strict":
                inside = lt
            elif count == "closed":
                inside = le
            else:  # gao
                inside = torch.where((r > 0)[:, None], lt, le)
            counts[s, rows] = (inside & ok).sum(1)
        if progress is not None:
            progress(int(rows[-1]) + 1, n)
    return NeighborStats(eps.cpu().numpy(), counts.cpu().numpy(), kmax.cpu().numpy(),
                         nzero.cpu().numpy(), f"torch-{dev.type}")
