"""k-nearest-neighbour estimators of mutual information, conditional MI and entropy (nats).

One construction covers MI and CMI for every mix of variable kinds: Frenzel & Pompe (2007)
with the max-norm joint space of Kraskov, Stoegbauer & Grassberger (2004), where a discrete
variable gets the 0/inf metric (0 between equal labels, infinity otherwise; Mesner &
Shalizi 2020, "Conditional MI estimation for mixed, discrete and continuous data"):

    I(X;Y|Z) = < psi(k_i) - psi(n_xz,i + 1) - psi(n_yz,i + 1) + psi(n_z,i + 1) >_i

eps_i is the distance to the k-th nearest other point in the joint (x, y, z) space (for
discrete parts: among points with the same labels), and n_s,i counts the other points
strictly within eps_i in subspace s. Without Z, psi(n_z + 1) = psi(N) and this is KSG
estimator 1. Special cases:

- ``ksg``: continuous x, y (Kraskov et al. 2004, eq. 8); continuous cond: Frenzel-Pompe;
  discrete cond: the same formula, which equals KSG averaged over the strata of cond.
- ``ross``: a discrete label against a continuous vector (Ross 2014): with the 0/inf metric
  the formula reduces to psi(N) - <psi(N_x)> + psi(k) - <psi(m)>, m the number of points
  within the k-th same-label neighbour's distance (joint over all dimensions of y).
  Discrete x and y given a continuous z, I(A;C|Z) (our users' explaining-away term), is
  the same estimator: eps_i is the distance in z to the k-th point sharing both labels,
  n_xz / n_yz count points sharing one label within eps_i, n_z all points within eps_i.
  Its bias: like Frenzel-Pompe, the kNN bias of the three local density ratios is shared
  and largely cancels, but for a smooth high-dimensional z the same-(a,c) neighbourhood is
  wide, the label proportions are averaged over it, and the estimate shrinks towards 0
  (biased low in high dimension). Measured on A, C ~ Bern(1/2), Z = 2 (A xor C) + noise
  (truth 0.337 nats, tests/test_knn.py), n = 4000: +0.004 with a 1-D z, -0.008 with 7
  extra noise dimensions, -0.06 with 15; with no signal (truth 0) |estimate| < 0.01.
  When a label combination has <= k points, those points use k_i = (size - 1) and
  singletons are dropped (as scikit-learn's ``mutual_info_classif`` does), with a warning.
- ``ksg2``: Kraskov estimator 2 (eq. 9): psi(k) - 1/k + psi(N) - <psi(n_x) + psi(n_y)>, with
  closed counts against each marginal's own radius.

Conventions (the same as NPEET / npeet-plus, so values agree to 1e-6 on tie-free data):
max-norm in every space by default (``norm="euclidean"`` for the marginals; the joint stays
the max over marginals), strict radius counts, psi(n + 1) with the point itself counted as
the +1, psi(N) for N samples.

Units (``standardize``, default True): KSG is invariant to a common rescaling of all
variables but not to per-variable scales (the max-norm joint neighbourhoods change), so a
feature given in other units would change the estimate (Gaussian d=4, truth 0.893: 0.841 on
x, 0.188 on 10·x, 0.000 on 100·x without rescaling). Every continuous column is therefore
divided by its standard deviation (ddof=0, as scikit-learn's kNN MI estimators do; a
constant column is left as is) before the search, which makes every estimate unit-free:
the same for x, 10·x and any per-column rescaling. ``standardize=False`` skips it and then
reproduces npeet-plus bit for bit (which does not rescale).

Ties (``jitter``): before the search every continuous column gets seeded Gaussian noise of
standard deviation ``jitter * std(column)`` (1e-10 by default, as Kraskov et al. and
scikit-learn do; NPEET adds uniform 1e-10), which breaks exact ties without moving any
other distance; ``jitter=0`` disables it. The noise is drawn from (seed, hash of the
variable's values), so it does not depend on argument order. Same inputs and seed, same
value bit for bit.

Standard errors: subsampling without replacement (``essl_info.estimators.resampling``), parameters
``subsamples`` (0 disables), ``groups`` (rows that must stay together). On the kd-tree path
above N = 5,000 the subsamples are disjoint blocks of max(500, N/160) rows instead of N/10
(``STDERR_BUDGET``, ``STDERR_MIN_BLOCK``): the standard error costs one more pass over the
rows at N = 10,000, a quarter of one at 40,000 and an eighth from 80,000 up (two passes
before).
"""

from __future__ import annotations

import hashlib
import warnings
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from scipy.special import digamma

from .resampling import subsample_stderr
from ..types import Estimate
from .inputs import DataWarning, Variable, Variables, warn_ties
from .neighbors import (KDTREE_MAX_DIM, NORMS, Block, choose_backend, joint_strata,
                        neighbor_stats)
from .registry import (HIGH_DIM, add_auto_rule, continuous_pair, register_entropy,
                       register_mi)

REF_KSG = "Kraskov, Stoegbauer, Grassberger, Phys. Rev. E 69, 066138 (2004), estimator 1"
REF_KSG2 = "Kraskov, Stoegbauer, Grassberger, Phys. Rev. E 69, 066138 (2004), estimator 2"
REF_FP = "Frenzel & Pompe, Phys. Rev. Lett. 99, 204101 (2007)"
REF_ROSS = ("Ross, PLoS ONE 9(2): e87357 (2014); conditional forms: Mesner & Shalizi, "
            "IEEE Trans. Inf. Theory 67 (2021)")
REF_KL = "Kozachenko & Leonenko, Probl. Inf. Transm. 23 (1987); Kraskov et al. 2004 eq. 20"
TIE_THRESHOLD = 0.05  # fraction of duplicated rows above which ties are "heavy"
# on the kd-tree path (cost ~ rows searched) the subsampled standard error holds at most
# STDERR_BUDGET * n rows in all, in blocks of at least STDERR_MIN_BLOCK rows (N > 5,000:
# 20 blocks of max(500, N/160) rows instead of N/10; calibration measured in
# benchmarks/README.md "Coverage"); the brute-force paths (cost ~ rows^2, where blocks of
# N/10 already cost 0.2 of the estimate) keep N/10
STDERR_BUDGET = 0.125
STDERR_MIN_BLOCK = 500


# ============================================================================ inputs
def jitter(values: np.ndarray, draws: np.ndarray, scale: float) -> np.ndarray:
    """values + scale * std(column) * draws, ``draws`` standard normal of values.shape
    (``_noise_draws``; std 0 -> max(|value|, 1)); (n, d) float64."""
    s = _column_std(values)
    for c in np.flatnonzero(~(s > 0)):
        s[c] = max(float(np.abs(values[:, c]).max()), 1.0)
    return values + scale * s * draws


def _column_std(values: np.ndarray) -> np.ndarray:
    """(d,) std (ddof=0) of each column of (n, d) ``values``, one column at a time: numpy's
    axis-0 reduction of a narrow array is ~10x slower (24 ms against 2 ms at 100,000 x 2)."""
    return np.array([col.std() for col in values.T], dtype=np.float64).reshape(
        values.shape[1])


def unit_scale(values: np.ndarray, sorted_cols: list[np.ndarray] | None = None
               ) -> np.ndarray:
    """(n, d) values with each column divided by its standard deviation (ddof=0); constant
    columns unchanged. The standard deviation is taken over the sorted column so that it
    does not depend on the order of the rows (permuting rows permutes the estimate's inputs
    exactly). Inputs large enough to overflow it are refused by ``inputs.py``.
    ``sorted_cols``: the columns sorted, if the caller has them."""
    if sorted_cols is None:
        sorted_cols = [np.sort(col) for col in values.T]
    s = np.array([col.std() for col in sorted_cols], dtype=np.float64).reshape(
        values.shape[1])
    return values / np.where(s > 0, s, 1.0)


PARALLEL_NOISE_MIN = 20_000  # values of a variable from which its noise is drawn on a thread
PRESORT_MIN_ROWS = 10_000  # rows from which the marginals' columns are sorted on the threads


def _blocks(v: Variables, *, norm: str, jitter_scale: float, seed: int,
            warn: bool = True, standardize: bool = True) -> list[Block]:
    """[x, y(, cond)] as neighbour-search blocks; continuous ones rescaled per column
    (``standardize``) and jittered (seeded). From ``PARALLEL_NOISE_MIN`` values a
    variable's noise (hash of its values, generator, normal draws: ~0.5 ms at 10,000 x 2,
    all GIL-free) is drawn on the kNN threads while this thread sorts and rescales; the
    same draws either way."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not jitter_scale >= 0:
        raise ValueError(f"jitter must be >= 0, got {jitter_scale!r}")
    noise = {}  # position in (x, y, cond) -> future of the variable's normal draws
    workers = numba.config.NUMBA_NUM_THREADS
    pool = None
    if workers > 1:
        from .neighbors_numba import _executor

        pool = _executor(workers)
    if jitter_scale != 0 and pool is not None:
        for i, var in enumerate((v.x, v.y, v.cond)):
            if var is not None and not var.discrete and var.values.size >= PARALLEL_NOISE_MIN:
                noise[i] = pool.submit(_noise_draws, var, seed)
    conts = [var for var in (v.x, v.y, v.cond) if var is not None and not var.discrete]
    # the kd-tree backend counts 1-D and 2-D marginals on sorted columns: sort them on the
    # threads as soon as each block is made (they idle until the search starts)
    presort = (pool is not None and norm == "max" and v.n >= PRESORT_MIN_ROWS
               and sum(var.values.shape[1] for var in conts) <= KDTREE_MAX_DIM)
    out = []
    for i, var in enumerate((v.x, v.y, v.cond)):
        if var is None:
            continue
        if var.discrete:
            out.append(Block(var.codes, True))
            continue
        cols = [np.sort(col) for col in var.values.T] if standardize else None
        if warn:
            warn_ties(var, threshold=TIE_THRESHOLD,
                      sorted_first=None if cols is None else cols[0])
        values = unit_scale(var.values, cols) if standardize else var.values
        if jitter_scale != 0:
            draws = noise[i].result() if i in noise else _noise_draws(var, seed)
            values = jitter(values, draws, jitter_scale)
        out.append(Block(values, False, norm))
        if presort and values.shape[1] <= 2:
            pool.submit(lambda b: b.column_order, out[-1])
    return out


def _noise_draws(var: Variable, seed: int) -> np.ndarray:
    """The standard normal draws of a variable's jitter, values.shape."""
    return _noise_rng(var, seed).standard_normal(var.values.shape)


def _noise_rng(var: Variable, seed: int) -> np.random.Generator:
    """The jitter of a variable depends on the seed and on its values, not on its role:
    swapping x and y gives each the same noise, so symmetric estimators stay symmetric
    even on tied data."""
    digest = hashlib.blake2b(np.ascontiguousarray(var.values).tobytes(), digest_size=8)
    return np.random.default_rng([seed, int.from_bytes(digest.digest(), "little")])


def _drop_singletons(blocks: list[Block], k: int) -> tuple[list[Block], np.ndarray, int]:
    """Points whose label combination (joint discrete blocks) occurs once have no
    neighbour to measure: drop them. Returns blocks, per-point k, number dropped."""
    strata = joint_strata(blocks, range(len(blocks)))
    sizes = np.bincount(strata)[strata]
    keep = sizes >= 2
    if not keep.all():
        rows = np.flatnonzero(keep)
        if len(rows) <= 1:
            raise ValueError("every label combination occurs once: no kNN estimate possible")
        blocks = [b.take(rows) for b in blocks]
        sizes = sizes[rows]
    return blocks, np.minimum(k, sizes - 1), int((~keep).sum())


# ====================================================================== estimators
def fp_value(blocks: list[Block], k: int, *, backend: str = "auto",
             device: str | None = None, progress=None) -> tuple[float, dict]:
    """Frenzel-Pompe / KSG-1 (0/inf metric for discrete blocks) on [x, y(, z)] blocks.
    ``progress(done, n)``: see ``neighbors.neighbor_stats``."""
    blocks, kvec, dropped = _drop_singletons(blocks, k)
    n = len(blocks[0].values)
    cond = len(blocks) == 3
    subs = [[0, 2], [1, 2], [2]] if cond else [[0], [1]]
    st = neighbor_stats(blocks, kvec, joint=list(range(len(blocks))), subspaces=subs,
                        count="strict", backend=backend, device=device, progress=progress)
    terms = [psi_int(kvec)] + [psi_int(c + 1) for c in st.counts]
    value = _fp_part_values(terms, np.array([0, n]), cond)[0]
    return float(value), {"backend": st.backend, "dropped": dropped,
                          "k_reduced": int((kvec < k).sum())}


def fp_values_by_part(blocks: list[Block], parts: list[np.ndarray], k: int, *,
                      backend: str = "auto", device: str | None = None
                      ) -> list[float | None]:
    """``fp_value`` on each of the disjoint row sets ``parts`` (sorted rows), bit for bit,
    in one neighbour search: the part is one more discrete block of the joint and of
    every subspace, so no neighbour crosses parts. None where ``fp_value`` would raise
    (a part whose label combinations all occur once)."""
    joint = list(range(len(blocks)))
    fast = None
    if backend == "kdtree" or (backend == "auto" and choose_backend(
            blocks, joint, len(blocks[0].values)) == "kdtree"):
        fast = _fp_parts_small_strata(blocks, parts, k)
    if fast is not None:
        return fast
    n_all = len(blocks[0].values)
    label = np.full(n_all, -1, np.int64)
    for p, rows in enumerate(parts):
        label[rows] = p
    rows_all = np.flatnonzero(label >= 0)
    pb = len(blocks)
    if len(rows_all) == n_all:  # the parts cover every row (N <= 160 * 500 by default)
        full = [*blocks, Block(label, True)]
    else:
        full = [b.take(rows_all) for b in blocks] + [Block(label[rows_all], True)]
    strata = joint_strata(full, range(len(full)))
    sizes = np.bincount(strata)[strata]
    part = full[pb].values
    kept = np.bincount(part[sizes >= 2], minlength=len(parts))
    good = kept[part] >= 2
    keep = (sizes >= 2) & good
    if not keep.all():
        full = [b.take(np.flatnonzero(keep)) for b in full]
        sizes, part = sizes[keep], part[keep]
    kvec = np.minimum(k, sizes - 1)
    cond = pb == 3
    subs = [[0, 2, pb], [1, 2, pb], [2, pb]] if cond else [[0, pb], [1, pb]]
    st = neighbor_stats(full, kvec, joint=list(range(len(full))), subspaces=subs,
                        count="strict", backend=backend, device=device)
    members = np.argsort(part, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(part, minlength=len(parts)))])
    # digamma elementwise once; each part's means over its own elements, in row order,
    # as fp_value takes them (so the values are the same bit for bit)
    terms = [psi_int(kvec[members])] + [psi_int(c[members] + 1) for c in st.counts]
    values = _fp_part_values(terms, bounds, cond)
    return [None if kept[p] < 2 else float(values[p]) for p in range(len(parts))]


def _fp_part_values(terms: list[np.ndarray], bounds: np.ndarray, cond: bool) -> np.ndarray:
    """(P,) the Frenzel-Pompe value <psi(k_i) - psi(n_x,i + 1) - psi(n_y,i + 1) +
    psi(n_z,i + 1)>_i (psi(N) without z) of the points at positions bounds[p]..bounds[p+1]-1
    of ``terms`` = [psi(k_i), psi(n_x,i + 1), psi(n_y,i + 1)(, psi(n_z,i + 1))]: the one
    place the formula is written (``fp_value`` is the single part [0, n]); each mean as
    ``np.mean`` of that run (``_run_means``)."""
    means = [_run_means(t, bounds) for t in terms]
    z_term = means[3] if cond else psi_int(np.diff(bounds))
    return means[0] - means[1] - means[2] + z_term


def _run_means(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(P,) ``np.mean(values[bounds[p]:bounds[p+1]])`` for each p, equal bit for bit: a
    run of consecutive parts of one length is one 2-D array whose rows numpy sums with the
    same pairwise summation as each 1-D slice (the subsample blocks come in at most two
    lengths); 20 parts of 500: 106 -> 7 us. Empty parts give nan (as np.mean)."""
    lens = np.diff(bounds)
    out = np.empty(len(lens))
    p = 0
    while p < len(lens):
        q = p + 1
        while q < len(lens) and lens[q] == lens[p]:
            q += 1
        if lens[p] == 0:
            out[p:q] = np.nan
        else:
            out[p:q] = values[bounds[p]:bounds[q]].reshape(q - p, lens[p]).mean(axis=1)
        p = q
    return out


def _fp_parts_small_strata(blocks: list[Block], parts: list[np.ndarray], k: int
                           ) -> list[float] | None:
    """``fp_values_by_part`` on continuous blocks whose parts are all small enough for the
    kd-tree backend's brute force within strata (``neighbors_kdtree._small_strata``):
    the parts are the strata, laid out one after the other (``strata_positions``), and
    each part's means are taken over its own run of positions, the same elements in the
    same (row) order as ``fp_value``'s. None where that does not apply (a discrete block,
    a part of fewer than 2 rows, a large part, wide blocks): the general path then."""
    from . import neighbors_kdtree as kd

    if any(b.discrete for b in blocks) or not parts:
        return None
    lens = np.array([len(rows) for rows in parts], np.int64)
    if lens.min() < 2:
        return None
    bounds = np.concatenate([[0], np.cumsum(lens)])
    joint = list(range(len(blocks)))
    cond = len(blocks) == 3
    subs = [[0, 2], [1, 2], [2]] if cond else [[0], [1]]
    if not kd._small_strata(blocks, joint, subs, [None] * len(subs), False, bounds):
        return None
    order = np.concatenate(parts).astype(np.int64, copy=False)
    kpos = np.minimum(k, np.repeat(lens - 1, lens))
    _, counts, _ = kd.strata_positions(blocks, kpos, joint, subs, "strict", order, bounds)
    terms = [psi_int(kpos)] + [psi_int(c + 1) for c in counts]
    return [float(v) for v in _fp_part_values(terms, bounds, cond)]


_PSI = np.zeros(0)  # digamma(0), digamma(1), ...: scipy's values, grown on demand


def psi_int(values: np.ndarray) -> np.ndarray:
    """``scipy.special.digamma`` of an array of non-negative integers (counts, k), by
    lookup in a table of scipy's own values (equal bit for bit; ~10x faster than the
    call). The table grows to the largest value asked for; threads may grow it at once
    (each builds its own and one wins)."""
    global _PSI
    table = _PSI
    values = np.asarray(values)
    if values.size and int(values.min()) < 0:
        raise ValueError(f"psi_int takes non-negative integers, got {int(values.min())}")
    top = int(values.max(initial=0))
    if top >= len(table):
        table = digamma(np.arange(max(top + 1, 2 * len(table), 1024), dtype=np.float64))
        _PSI = table
    return table[values]


def _fp_fn(k: int, backend: str, device: str | None, progress, n: int):
    """fp_value for ``_estimate``; ``progress`` only for the call on all n rows."""
    return lambda b: fp_value(b, k, backend=backend, device=device,
                              progress=progress if len(b[0].values) == n else None)


def _fp_batch(k: int, backend: str, device: str | None):
    """Subsample batches for ``_estimate`` when the search runs on the kd-tree (whose
    cost is ~ n log n, so one pass over a partition beats B separate calls)."""
    def batch(blocks: list[Block]):
        n = len(blocks[0].values)
        joint = list(range(len(blocks)))
        if backend == "kdtree" or (backend == "auto"
                                   and choose_backend(blocks, joint, n) == "kdtree"):
            return lambda parts: fp_values_by_part(blocks, parts, k, backend="kdtree")
        return None
    return batch


def ksg2_value(blocks: list[Block], k: int, *, backend: str = "auto",
               device: str | None = None) -> tuple[float, dict]:
    """Kraskov estimator 2 on continuous [x, y] blocks."""
    n = len(blocks[0].values)
    st = neighbor_stats(blocks, k, joint=[0, 1], subspaces=[[0], [1]], radius_from=[0, 1],
                        count="closed", backend=backend, device=device)
    value = (digamma(k) - 1.0 / k + digamma(n)
             - np.mean(digamma(st.counts[0]) + digamma(st.counts[1])))
    return float(value), {"backend": st.backend}


def kl_value(block: Block, k: int, *, backend: str = "auto",
             device: str | None = None) -> tuple[float, dict]:
    """Kozachenko-Leonenko differential entropy (nats) of one continuous block:
    H = psi(N) - psi(k) + log V_d + d <log eps_i>, V_d the unit-ball volume of the norm
    (2^d for the max-norm, pi^(d/2) / Gamma(d/2 + 1) for the Euclidean norm)."""
    from scipy.special import gammaln

    n, d = block.values.shape
    st = neighbor_stats([block], k, joint=[0], backend=backend, device=device)
    if (st.eps == 0).any():
        raise ValueError(f"x has {int((st.eps == 0).sum())} points with {k} or more exact "
                         "duplicates: the entropy of a variable with atoms is -inf "
                         "(use jitter > 0 or declare it discrete)")
    log_vol = d * np.log(2.0) if block.norm == "max" else (
        d / 2 * np.log(np.pi) - gammaln(d / 2 + 1))
    value = digamma(n) - digamma(k) + log_vol + d * np.mean(np.log(st.eps))
    return float(value), {"backend": st.backend}


def _estimate(value_fn, blocks: list[Block], v_n: int, *, k: int, seed: int, subsamples: int,
              groups, params: dict, batch=None) -> Estimate:
    """Run ``value_fn`` on all rows and on subsamples (stderr); package an Estimate.
    ``batch(blocks)``: optional, a ``batch_stat`` for ``subsample_stderr`` or None."""
    workers = numba.config.NUMBA_NUM_THREADS
    batch_stat = batch(blocks) if batch is not None and subsamples else None

    def stderr():
        # small subsamples run the kernel on one thread each, several subsamples at a time
        return subsample_stderr(
            lambda rows: value_fn([b.take(rows) for b in blocks])[0], v_n, groups=groups,
            subsamples=subsamples, min_rows=2 * k + 2,
            seed=int(np.random.SeedSequence([seed, 0x5EB]).generate_state(1)[0]),
            workers=workers, batch_stat=batch_stat, min_block=STDERR_MIN_BLOCK,
            budget=STDERR_BUDGET if batch_stat is not None else None)

    if batch_stat is not None and workers > 1:
        # the passes over all rows and over the partitions side by side: their serial
        # parts (tree builds, sorts) overlap; the values do not depend on it
        with ThreadPoolExecutor(1, thread_name_prefix="essl-stderr") as pool:
            future = pool.submit(stderr)
            value, info = value_fn(blocks)
            sub = future.result()
    else:
        value, info = value_fn(blocks)
        sub = stderr()
    if info.get("dropped"):
        warnings.warn(f"{info['dropped']} point(s) left out: their label combination (or "
                      "stratum of cond) has too few rows to find neighbours in",
                      DataWarning, stacklevel=4)
    diag = {**info, **({"stderr_unavailable": sub.reason} if sub.reason else {})}
    return Estimate(value, sub.stderr, n=v_n, params={
        "k": k, "seed": seed, "backend": info["backend"], **params, **sub.params()},
        diagnostics=diag)


# ==================================================================== registrations
def _ross_supported(v: Variables) -> bool:
    """a label against a continuous vector (any cond), or two labels given a continuous z"""
    if v.x.discrete != v.y.discrete:
        return True
    return v.x.discrete and v.y.discrete and v.cond is not None and not v.cond.discrete


def _no_or_discrete_cond(v: Variables) -> bool:
    return v.cond is None or v.cond.discrete


@register_mi("ksg", supports=continuous_pair, symmetric=True, reference=f"{REF_KSG}; {REF_FP}")
def _ksg(v: Variables, *, k: int, seed: int, norm: str = "max", jitter: float = 1e-10,
         backend: str = "auto", device: str | None = None, subsamples: int = 20,
         groups=None, standardize: bool = True, progress=None) -> Estimate:
    """KSG estimator 1 for continuous x, y; Frenzel-Pompe CMI for a cond.
    ``progress(done, n)`` hears about the search on all rows (not the subsamples)."""
    blocks = _blocks(v, norm=norm, jitter_scale=jitter, seed=seed, standardize=standardize)
    fn = _fp_fn(k, backend, device, progress, v.n)
    return _estimate(fn, blocks, v.n, k=k, seed=seed, subsamples=subsamples, groups=groups,
                     params={"norm": norm, "jitter": jitter, "standardize": standardize},
                     batch=_fp_batch(k, backend, device))


@register_mi("ross", supports=_ross_supported, symmetric=True, reference=REF_ROSS)
def _ross(v: Variables, *, k: int, seed: int, norm: str = "max", jitter: float = 1e-10,
          backend: str = "auto", device: str | None = None, subsamples: int = 20,
          groups=None, standardize: bool = True, progress=None) -> Estimate:
    """Ross (2014) kNN MI between labels and a continuous vector; conditional forms."""
    blocks = _blocks(v, norm=norm, jitter_scale=jitter, seed=seed, standardize=standardize)
    fn = _fp_fn(k, backend, device, progress, v.n)
    est = _estimate(fn, blocks, v.n, k=k, seed=seed, subsamples=subsamples, groups=groups,
                    params={"norm": norm, "jitter": jitter, "standardize": standardize},
                    batch=_fp_batch(k, backend, device))
    if v.cond is None:  # the estimate cannot exceed psi(N) - <psi(N_label)> ~ H(label)
        lab = v.x if v.x.discrete else v.y
        counts = np.bincount(lab.codes)
        counts = counts[counts > 1]
        ceiling = digamma(counts.sum()) - np.sum(counts * digamma(counts)) / counts.sum()
        est = est.with_(diagnostics={**est.diagnostics, "ceiling": float(ceiling)})
    return est


@register_mi("ksg2", supports=lambda v: continuous_pair(v) and _no_or_discrete_cond(v),
             symmetric=True, reference=REF_KSG2)
def _ksg2(v: Variables, *, k: int, seed: int, norm: str = "max", jitter: float = 1e-10,
          backend: str = "auto", device: str | None = None, subsamples: int = 20,
          groups=None, standardize: bool = True) -> Estimate:
    """KSG estimator 2 for continuous x, y (discrete cond: average over its strata)."""
    from .knn_mixed import by_strata

    blocks = _blocks(v, norm=norm, jitter_scale=jitter, seed=seed, standardize=standardize)
    fn = by_strata(lambda b: ksg2_value(b, k, backend=backend, device=device), k)
    return _estimate(fn, blocks, v.n, k=k, seed=seed, subsamples=subsamples, groups=groups,
                     params={"norm": norm, "jitter": jitter, "standardize": standardize})


@register_entropy("kl", discrete=False, reference=REF_KL)
def _kl(v: Variables, *, k: int, seed: int, norm: str = "max", jitter: float = 1e-10,
        backend: str = "auto", device: str | None = None, subsamples: int = 20,
        groups=None) -> Estimate:
    """Kozachenko-Leonenko differential entropy (nats; may be negative)."""
    block = _blocks(Variables(v.x, v.y, None, v.n), norm=norm, jitter_scale=jitter,
                    seed=seed, standardize=False)[0]  # H is in x's units
    fn = lambda b: kl_value(b[0], k, backend=backend, device=device)  # noqa: E731
    est = _estimate(fn, [block], v.n, k=k, seed=seed, subsamples=subsamples, groups=groups,
                    params={"norm": norm, "jitter": jitter})
    return est.with_(quantity="H(X)")


# ======================================================================= auto rules
def heavy_ties(v: Variables) -> bool:
    """a continuous x or y with > TIE_THRESHOLD duplicated rows, cond absent or discrete"""
    from .inputs import tie_fraction

    if not _no_or_discrete_cond(v):
        return False
    return any(not var.discrete and tie_fraction(var.values) > TIE_THRESHOLD
               for var in (v.x, v.y))


add_auto_rule(heavy_ties, "mixed",
              "continuous variable with many exact ties: Gao et al. 2017 mixed estimator")
add_auto_rule(continuous_pair, "ksg", "continuous x and y: KSG (Frenzel-Pompe with a cond)")
add_auto_rule(lambda v: _ross_supported(v) and v.continuous_dims <= HIGH_DIM, "ross",
              f"labels against <= {HIGH_DIM} continuous dims: Ross kNN")


from . import knn_mixed  # noqa: E402,F401  (registers "mixed")
