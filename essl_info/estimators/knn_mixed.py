"""Gao, Kannan, Oh & Viswanath (NeurIPS 2017) mixed estimator, and discrete conditioning
by strata for the kNN estimators that have no conditional form of their own.

``mixed`` treats every variable as numbers in R^d (discrete labels by their values) with
the max-norm, so it handles atoms, ties and discrete-continuous mixtures (Gao et al. 2017,
Algorithm 1, as in the authors' code):

    I = < psi(k~_i) + log N - psi(n_x,i + 1) - psi(n_y,i + 1) >_i

rho_i = distance to the k-th nearest other point in the joint space; if rho_i > 0:
k~_i = k and n counts the other points strictly within rho_i in each marginal; if rho_i = 0
(point i sits on an atom): k~_i = 1 + the number of other points at joint distance 0 and
n counts the other points at marginal distance 0. No noise is added (ties are the point).
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from ..types import Estimate
from .inputs import Variables
from .knn import _estimate, _no_or_discrete_cond, unit_scale
from .neighbors import Block, neighbor_stats
from .registry import register_mi

REF_GAO = ("Gao, Kannan, Oh, Viswanath, 'Estimating mutual information for discrete-"
           "continuous mixtures', NeurIPS 2017")


def mixed_value(blocks: list[Block], k: int, *, backend: str = "auto",
                device: str | None = None) -> tuple[float, dict]:
    """Gao et al. 2017 on continuous-valued [x, y] blocks (atoms allowed)."""
    n = len(blocks[0].values)
    st = neighbor_stats(blocks, k, joint=[0, 1], subspaces=[[0], [1]], count="gao",
                        backend=backend, device=device)
    atom = st.eps == 0
    kt = np.where(atom, st.nzero + 1, k)
    value = np.mean(digamma(kt) + np.log(n) - digamma(st.counts[0] + 1)
                    - digamma(st.counts[1] + 1))
    return float(value), {"backend": st.backend, "atoms": int(atom.sum())}


def by_strata(value_fn, k: int):
    """Wrap ``value_fn([x, y]) -> (value, info)`` so that a third, discrete block (cond) is
    handled by strata: I(X;Y|C) = sum_c p(c) I(X;Y|C=c). Strata with <= k rows are left
    out (their rows are counted in ``info['dropped']``)."""

    def fn(blocks: list[Block]) -> tuple[float, dict]:
        if len(blocks) == 2:
            return value_fn(blocks)
        codes = blocks[2].values
        total, used, dropped, info = 0.0, 0, 0, {}
        for c in np.unique(codes):
            rows = np.flatnonzero(codes == c)
            if len(rows) <= k:
                dropped += len(rows)
                continue
            val, info = value_fn([blocks[0].take(rows), blocks[1].take(rows)])
            total += len(rows) * val
            used += len(rows)
        if used == 0:
            raise ValueError(f"every stratum of cond has <= k={k} rows")
        return total / used, {**info, "dropped": dropped}

    return fn


def _mixed_blocks(v: Variables, standardize: bool = True) -> list[Block]:
    """x and y as numbers (each column divided by its standard deviation when
    ``standardize``: atoms stay atoms, the estimate becomes unit-free), cond as strata."""
    out = [Block(unit_scale(var.values) if standardize else var.values, False, "max")
           for var in (v.x, v.y)]
    if v.cond is not None:
        out.append(Block(v.cond.codes, True))
    return out


@register_mi("mixed", supports=_no_or_discrete_cond, symmetric=True, reference=REF_GAO)
def _mixed(v: Variables, *, k: int, seed: int, backend: str = "auto",
           device: str | None = None, subsamples: int = 20, groups=None,
           standardize: bool = True) -> Estimate:
    """Gao et al. 2017 estimator for variables with atoms / ties (discrete cond by strata)."""
    blocks = _mixed_blocks(v, standardize)
    fn = by_strata(lambda b: mixed_value(b, k, backend=backend, device=device), k)
    return _estimate(fn, blocks, v.n, k=k, seed=seed, subsamples=subsamples, groups=groups,
                     params={"norm": "max", "jitter": 0.0, "standardize": standardize})

