"""The torch backend of ``neighbors.neighbor_stats``: chunked brute force in float64, on CPU
or CUDA, memory bounded.

Distances are built one coordinate at a time with the same float64 operations, in the same
order, as ``neighbors_numba.exact_block_distance`` (max of |a - b|; or a running sum of
squares, one rounding per operation, then a correctly rounded sqrt), so they are
bit-identical to the canonical
distances and no recheck is needed. Query rows are processed in chunks sized so that the
(B, chunk, n) working tensors stay under ``memory_mb``, and every elementwise step writes
into those tensors in place. The default bound depends on the device (``MEMORY_MB``): on
a GPU large chunks fill the device; on a CPU each step streams the whole working set
through memory, so it should stay near the caches. 16 problems of 2,000 rows, 16+16 dims,
2 CPU threads: 32.3 s batched with 512 MB chunks and a new tensor at each step, 7.4-8.6 s
one problem at a time; in place with 16 MB chunks, 3.5 s batched and 3.1 s one at a time
(``benchmarks/bench_knn_batch.py``; numba's brute force: 0.9 s, so on a CPU the batch is
no gain). ``torch_stats_batched`` runs many independent
problems of one shape (sweeps: checkpoints, transformations) in one pass, along a leading
batch dimension; one problem is a batch of one.
"""

from __future__ import annotations

import numpy as np
import torch

from .neighbors import NeighborStats


MEMORY_MB = {"cpu": 16.0, "cuda": 512.0}  # default bound on the working tensors per device


def _block_dist(q: torch.Tensor, x: torch.Tensor, euclid: bool, out: torch.Tensor,
                tmp: torch.Tensor) -> torch.Tensor:
    """out (B, m, n) float64 = distances between rows of q (B, m, d) and x (B, n, d),
    computed in place (``tmp`` a scratch tensor of out's shape)."""
    out.zero_()
    for c in range(x.shape[2]):
        torch.sub(x[:, None, :, c], q[:, :, c, None], out=tmp)
        if euclid:
            tmp.mul_(tmp)
            out.add_(tmp)  # two roundings, as in the canonical sequential sum
        else:
            tmp.abs_()
            torch.maximum(out, tmp, out=out)
    if not euclid:
        return out
    if out.device.type == "cpu":
        # torch's vectorised CPU sqrt is not correctly rounded (1 ulp); numpy's is (IEEE),
        # as is CUDA's double sqrt, which keeps the result bit-identical to the canonical one
        np.sqrt(out.numpy(), out=out.numpy())
        return out
    return out.sqrt_()


def torch_stats(blocks, kvec, joint, subspaces, radius_from, count, want_kmax, *,
                device: str | None = None, memory_mb: float | None = None, progress=None):
    """One problem: :func:`torch_stats_batched` with a batch of one."""
    return torch_stats_batched([blocks], np.asarray(kvec)[None], joint, subspaces,
                               radius_from, count, want_kmax, device=device,
                               memory_mb=memory_mb, progress=progress)[0]


def torch_stats_batched(items, kvecs, joint, subspaces, radius_from, count, want_kmax, *,
                        device: str | None = None, memory_mb: float | None = None,
                        progress=None) -> list[NeighborStats]:
    """Neighbour statistics of B independent problems of the same shape in one pass:
    ``items`` a list of B block lists (same kinds, norms and shapes), ``kvecs`` (B, n).
    The same elementwise float64 operations as for one problem, along a leading batch
    dimension, so each result equals the problem computed alone, bit for bit. Query rows
    go in chunks so that the (B, chunk, n) working tensors stay under ``memory_mb``
    (default ``MEMORY_MB`` of the device)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if memory_mb is None:
        memory_mb = MEMORY_MB.get(dev.type, MEMORY_MB["cuda"])
    if not (isinstance(memory_mb, (int, float)) and 0 < memory_mb < float("inf")):
        raise ValueError(f"memory_mb must be a positive number of MB, got {memory_mb!r}")
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
    full = (nbatch, min(chunk, n), n)
    bufs = {b: torch.empty(full, dtype=torch.float64, device=dev) for b in cont}
    tmp = torch.empty(full, dtype=torch.float64, device=dev)
    sp_buf = torch.empty(full, dtype=torch.float64, device=dev)
    for i0 in range(0, n, chunk):
        rows = torch.arange(i0, min(i0 + chunk, n), device=dev)
        m = len(rows)
        dist = {b: _block_dist(xs[b][:, rows], xs[b], blocks[b].norm == "euclidean",
                               bufs[b][:, :m], tmp[:, :m]) for b in cont}
        not_self = (rows[:, None] != cols[None, :])[None].expand(nbatch, -1, -1)

        def space(sp):
            """distance over the space's continuous blocks (in ``sp_buf``, or a block's
            own distances when it is the only one) and its discrete-code mask"""
            conts = [b for b in sp if b in dist]
            if len(conts) == 1:
                d = dist[conts[0]]
            else:
                d = sp_buf[:, :m].zero_()
                for b in conts:
                    torch.maximum(d, dist[b], out=d)
            ok = not_self  # a copy only when codes narrow it (the mask is never written)
            for b in sp:
                if b not in dist:
                    ok = ok & (codes[b][:, rows, None] == codes[b][:, None, :])
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
            rr = r[:, :, None]
            if count == "strict":
                inside = d < rr
            elif count == "closed":
                inside = d <= rr
            else:  # gao: strict where the radius is positive, closed (exact zeros) where 0
                inside = torch.where(rr > 0, d < rr, d <= rr)
            counts[:, s, rows] = (inside & ok).sum(2)
        if progress is not None:
            progress(int(rows[-1]) + 1, n)
    eps, counts, kmax, nzero = (t.cpu().numpy() for t in (eps, counts, kmax, nzero))
    return [NeighborStats(eps[b], counts[b], kmax[b], nzero[b], f"torch-{dev.type}")
            for b in range(nbatch)]
