"""The torch backend of ``neighbors.neighbor_stats``: chunked brute force in float64, on CPU
or CUDA, memory bounded.

Distances are built one coordinate at a time with the same float64 operations, in the same
order, as ``neighbors_numba.exact_block_distance`` (max of |a - b|; or a running sum of
squares, one rounding per operation, then a correctly rounded sqrt), so they are
bit-identical to the canonical
distances and no recheck is needed. Query rows are processed in chunks sized so that the
(chunk, n) working tensors stay under ``memory_mb``. ``torch_stats_batched`` runs many
independent problems of one shape (sweeps: checkpoints, transformations) in one pass,
along a leading batch dimension; one problem is a batch of one.
"""

from __future__ import annotations

import numpy as np
import torch

from .neighbors import NeighborStats


def _block_dist(q: torch.Tensor, x: torch.Tensor, euclid: bool) -> torch.Tensor:
    """(B, m, n) float64 distances between rows of q (B, m, d) and x (B, n, d)."""
    acc = torch.zeros(q.shape[0], q.shape[1], x.shape[1], dtype=torch.float64,
                      device=x.device)
    for c in range(x.shape[2]):
        t = x[:, None, :, c] - q[:, :, c, None]
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
    """One problem: :func:`torch_stats_batched` with a batch of one."""
    return torch_stats_batched([blocks], np.asarray(kvec)[None], joint, subspaces,
                               radius_from, count, want_kmax, device=device,
                               memory_mb=memory_mb, progress=progress)[0]


def torch_stats_batched(items, kvecs, joint, subspaces, radius_from, count, want_kmax, *,
                        device: str | None = None, memory_mb: float = 512.0,
                        progress=None) -> list[NeighborStats]:
    """Neighbour statistics of B independent problems of the same shape in one pass:
    ``items`` a list of B block lists (same kinds, norms and shapes), ``kvecs`` (B, n).
    The same elementwise float64 operations as for one problem, along a leading batch
    dimension, so each result equals the problem computed alone, bit for bit. Query rows
    go in chunks so that the (B, chunk, n) working tensors stay under ``memory_mb``."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    blocks = items[0]
    nbatch, n = len(items), len(blocks[0].values)
    cont = [b for b, blk in enumerate(blocks) if not blk.discrete]

    def stack(b, dtype):
        return torch.as_tensor(np.ascontiguousarray(
            np.stack([it[b].values for it in items]), dtype=dtype), device=dev)

    xs = {b: stack(b, np.float64) for b in cont}                      # (B, n, d)
    codes = {b: stack(b, np.int64) for b, blk in enumerate(blocks) if blk.discrete}
    kv = torch.as_tensor(np.asarray(kvecs, dtype=np.int64), device=dev)  # (B, n)
    kq = int(kv.max())
    # working set per query row: one (n,) float64 row per continuous block + ~4 more
    chunk = max(1, int(memory_mb * 2**20 / (8 * nbatch * n * (len(cont) + 4))))
    eps = torch.empty(nbatch, n, dtype=torch.float64, device=dev)
    nzero = torch.zeros(nbatch, n, dtype=torch.int64, device=dev)
    kmax = torch.zeros(nbatch, len(blocks), n, dtype=torch.float64, device=dev)
    counts = torch.zeros(nbatch, len(subspaces), n, dtype=torch.int64, device=dev)
    cols = torch.arange(n, device=dev)
    for i0 in range(0, n, chunk):
        rows = torch.arange(i0, min(i0 + chunk, n), device=dev)
        dist = {b: _block_dist(xs[b][:, rows], xs[b], blocks[b].norm == "euclidean")
                for b in cont}
        not_self = (rows[:, None] != cols[None, :])[None].expand(nbatch, -1, -1)

        def space(sp):
            """distance over the space's continuous blocks and its discrete-code mask"""
            d = torch.zeros(nbatch, len(rows), n, dtype=torch.float64, device=dev)
            ok = not_self.clone()
            for b in sp:
                if b in dist:
                    d = torch.maximum(d, dist[b])
                else:
                    ok &= codes[b][:, rows, None] == codes[b][:, None, :]
            return d, ok

        dj, okj = space(joint)
        dj_masked = torch.where(okj, dj, torch.full_like(dj, float("inf")))
        nzero[:, rows] = ((dj == 0) & okj).sum(2)
        if want_kmax:  # neighbour identities matter: ties broken by index (stable sort)
            vals, idx = torch.sort(dj_masked, dim=2, stable=True)
            vals, idx = vals[:, :, :kq], idx[:, :, :kq]
        else:  # only the k-th value matters
            vals = torch.topk(dj_masked, kq, dim=2, largest=False, sorted=True).values
        kr = kv[:, rows] - 1                                          # (B, m)
        e = vals.gather(2, kr[:, :, None])[:, :, 0]
        eps[:, rows] = e
        if want_kmax:
            within = torch.arange(kq, device=dev)[None, None, :] <= kr[:, :, None]
            for b in cont:
                db = dist[b].gather(2, idx)
                kmax[:, b, rows] = torch.where(within, db, torch.zeros_like(db)).max(2).values
        for s, sp in enumerate(subspaces):
            r = e if radius_from[s] is None else kmax[:, radius_from[s], rows]
            d, ok = space(sp)
            lt, le = d < r[:, :, None], d <= r[:, :, None]
            if count == "strict":
                inside = lt
            elif count == "closed":
                inside = le
            else:  # gao
                inside = torch.where((r > 0)[:, :, None], lt, le)
            counts[:, s, rows] = (inside & ok).sum(2)
        if progress is not None:
            progress(int(rows[-1]) + 1, n)
    eps, counts, kmax, nzero = (t.cpu().numpy() for t in (eps, counts, kmax, nzero))
    return [NeighborStats(eps[b], counts[b], kmax[b], nzero[b], f"torch-{dev.type}")
            for b in range(nbatch)]
