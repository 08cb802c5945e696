"""Many independent kNN estimates of the same shape in one call (sweeps), on torch.

A sweep (every checkpoint of a run, every transformation, every layer) asks for B
estimates whose inputs have the same shape. :func:`estimate_mi_batch` prepares each one
exactly as ``estimate_mi`` does (validation, seeded tie-breaking noise), runs the
neighbour search of all B problems together along a leading batch dimension
(``neighbors_torch.torch_stats_batched``: one chunked float64 brute force on CPU or
CUDA), and applies the Frenzel-Pompe / KSG formula per problem. Each value equals
``estimate_mi(x_b, y_b, cond_b, method=method, backend="torch", subsamples=0, ...)`` bit
for bit (tested); the batch only amortises the per-call work and fills the device. It is
for a GPU: on a CPU it takes about as long as one torch call per estimate, and a loop of
``estimate_mi`` on the default backend is 4-7x faster (``benchmarks/bench_knn_batch.py``).

No standard errors here (``stderr`` is None): a subsampled stderr multiplies the work by
~1.2 and is better asked of ``estimate_mi`` for the estimates a sweep singles out.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import digamma

from ..types import Estimate
from .inputs import prepare_variables
from .knn import _blocks, _drop_singletons
from .registry import MI_METHODS

BATCH_METHODS = ("ksg", "ross")  # the Frenzel-Pompe family (fp_value)


def estimate_mi_batch(xs: Sequence, ys: Sequence, conds: Sequence | None = None, *,
                      x_discrete: bool = False, y_discrete: bool = False,
                      cond_discrete: bool = False, method: str = "ksg", k: int = 3,
                      seed: int = 0, norm: str = "max", jitter: float = 1e-10,
                      standardize: bool = True, device: str | None = None,
                      memory_mb: float | None = None) -> list[Estimate]:
    """B estimates of I(x_b; y_b) (or I(x_b; y_b | cond_b)) in nats, in one torch pass.

    xs, ys, conds : sequences of B arrays (or (B, n, d) arrays), each item as
                    ``estimate_mi`` takes it; all items of one argument the same shape
    method        : "ksg" or "ross"; k, seed, norm, jitter, standardize as for
                    ``estimate_mi``
    device        : "cpu", "cuda" or None (CUDA when available)
    memory_mb     : bound on the working tensors (chunked over query rows); default
                    ``neighbors_torch.MEMORY_MB`` of the device
    """
    from .neighbors_torch import torch_stats_batched

    if method not in BATCH_METHODS:
        raise ValueError(f"method must be one of {BATCH_METHODS}, got {method!r}")
    if len(xs) != len(ys) or (conds is not None and len(conds) != len(xs)):
        raise ValueError(f"xs, ys (and conds) need one item per estimate, got {len(xs)}, "
                         f"{len(ys)}" + ("" if conds is None else f", {len(conds)}"))
    if len(xs) == 0:
        return []
    spec = MI_METHODS[method]
    prepared = []
    for b in range(len(xs)):
        v = prepare_variables(xs[b], ys[b], None if conds is None else conds[b],
                              x_discrete=x_discrete, y_discrete=y_discrete,
                              cond_discrete=cond_discrete)
        if not spec.supports(v):
            raise ValueError(f"item {b}: method {method!r} does not support {v.describe()}")
        blocks, kvec, dropped = _drop_singletons(
            _blocks(v, norm=norm, jitter_scale=jitter, seed=seed, warn=b == 0,
                    standardize=standardize), k)
        prepared.append((v, blocks, kvec, dropped))
    # one batch per row count (items that lost singleton rows may differ)
    groups: dict[int, list[int]] = {}
    for b, (_, blocks, _, _) in enumerate(prepared):
        groups.setdefault(len(blocks[0].values), []).append(b)
    out: list[Estimate | None] = [None] * len(prepared)
    for n, members in groups.items():
        items = [prepared[b][1] for b in members]
        cond = len(items[0]) == 3
        subs = [[0, 2], [1, 2], [2]] if cond else [[0], [1]]
        stats = torch_stats_batched(items, np.stack([prepared[b][2] for b in members]),
                                    list(range(len(items[0]))), _searched(items[0], subs),
                                    [None] * len(subs), "strict", False, device=device,
                                    memory_mb=memory_mb)
        for b, st in zip(members, stats):
            v, blocks, kvec, dropped = prepared[b]
            c = _all_counts(blocks, subs, st)
            z_term = np.mean(digamma(c[2] + 1)) if cond else digamma(n)
            value = np.mean(digamma(kvec)) - np.mean(digamma(c[0] + 1)) - np.mean(
                digamma(c[1] + 1)) + z_term
            out[b] = Estimate(float(value), None, n=v.n, method=method,
                              quantity="I(X;Y|Z)" if v.cond is not None else "I(X;Y)",
                              params={"k": k, "seed": seed, "backend": st.backend,
                                      "norm": norm, "jitter": jitter,
                                      "standardize": standardize, "batch": len(xs)},
                              diagnostics={"dropped": dropped})
    return out


def _searched(blocks, subs):
    """the subspaces that need a search (>= 1 continuous block), as neighbor_stats does"""
    return [sp for sp in subs if any(not blocks[b].discrete for b in sp)]


def _all_counts(blocks, subs, st) -> np.ndarray:
    """counts of every subspace: searched ones from ``st``, discrete-only ones by strata
    (every point with the same codes, strict: only when eps > 0), as neighbor_stats."""
    from .neighbors import joint_strata

    counts, t = [], 0
    for sp in subs:
        if any(not blocks[b].discrete for b in sp):
            counts.append(st.counts[t])
            t += 1
        else:
            strata = joint_strata(blocks, sp)
            inside = np.bincount(strata)[strata] - 1
            counts.append(np.where(st.eps > 0, inside, 0))
    return np.stack(counts)
