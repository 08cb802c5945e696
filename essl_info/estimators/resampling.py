"""Uncertainty for information estimates: subsampling standard errors and permutation nulls.

Standard errors (:func:`subsample_stderr`). kNN estimators must not be bootstrapped with
replacement: duplicated rows sit at distance 0 from each other and inflate the neighbour
counts. We subsample *without* replacement instead: the rows (or, with ``groups=``, whole
groups of rows, e.g. all transformed copies of one image) are split at random into B
disjoint blocks of size m ~ n/B, the statistic is computed on each block, and the variance
of the full-sample statistic is estimated by the delete-d jackknife (Shao & Wu 1989, with
d = n - m; subsampling in the sense of Politis, Romano & Wolf 1999):

    Var(theta_n) ~ m / (n - m) * Var_blocks(theta_m)

(for m = n/2 this is the variance of half-sample estimates). It assumes the estimator's
variance falls as 1/n, true for the kNN and plug-in estimators away from degenerate cases.
B is at most 10 and each block holds at least ``min_size`` rows; ``subsamples`` replicates
are obtained from ceil(subsamples / B) independent random partitions. With the defaults
(20 replicates of n/10 rows) the cost is 20 * (1/10)^2 = 0.2 of the full estimate for an
estimator whose cost grows as n^2 (the brute-force kNN backends); for the kd-tree backend
(cost ~ n log n) each partition costs about one pass over all rows, so the default adds
about two passes; ``budget`` caps that (the kNN estimators on the kd-tree path: 0.125 n
rows in all, i.e. 20 blocks of max(500, n/160) rows, calibration in benchmarks/README.md
"Coverage"). Measured calibration of KSG (mean stderr / spread over 60 independent
samples, y = 0.6x + 0.8e, k = 3; the ratios are uncertain by ~10 %): 0.86 (1+1 dims,
n = 2,000), 0.99 (1+1, n = 10,000), 0.93 (2+2, 2,000), 0.97 (2+2, 10,000), 0.89 (4+4,
2,000); the variance of a kNN estimate falls a little more slowly than 1/m at small m, so
at n = 2,000 the extrapolation from n/10 rows errs slightly low.

Permutation tests (:func:`permutation_test`): the null distribution of ``estimate_mi`` under
independence, by permuting the rows of y (within the strata of a discrete ``cond``).
"""

from __future__ import annotations

import inspect
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..types import Estimate


@dataclass(frozen=True, eq=False)
class Subsampling:
    """Result of :func:`subsample_stderr`.

    stderr   : standard error in the statistic's units, or None (``reason`` says why)
    values   : (R * B,) replicate values of the statistic on the subsamples
    size     : mean number of rows per subsample
    n_blocks : B, blocks per partition
    """

    stderr: float | None
    values: np.ndarray
    size: float
    n_blocks: int
    reason: str = ""

    def params(self) -> dict:
        """What to record in ``Estimate.params`` about how the stderr was obtained."""
        return {"stderr_method": "subsampling (delete-d jackknife, disjoint blocks)",
                "subsample_size": round(self.size, 1), "subsamples": int(len(self.values))}


def _units(n: int, groups) -> tuple[np.ndarray, list[np.ndarray]]:
    """Resampling units: each row, or each group of rows sharing a ``groups`` value."""
    if groups is None:
        return np.arange(n), []
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise ValueError(f"groups must be a 1-D array with one id per row (n={n}), "
                         f"got shape {g.shape}")
    _, inv = np.unique(g, return_inverse=True)
    members = _members(inv.reshape(-1))
    return np.arange(len(members)), members


def _members(codes: np.ndarray) -> list[np.ndarray]:
    """Row indices of each value of the (n,) integer ``codes``, in increasing code order."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)


def subsample_stderr(
    stat: Callable[[np.ndarray], float],
    n: int,
    *,
    groups=None,
    subsamples: int = 20,
    min_size: int = 100,
    min_rows: int = 2,
    max_blocks: int = 10,
    seed: int = 0,
    workers: int = 1,
    batch_stat: Callable[[list[np.ndarray]], list[float | None]] | None = None,
    budget: float | None = None,
    min_block: int = 500,
) -> Subsampling:
    """Standard error of ``stat(all rows)`` by subsampling without replacement.

    stat       : rows (sorted int64 array) -> value of the statistic on those rows; a
                 ValueError (degenerate subsample) skips that replicate
    n          : number of rows
    groups     : optional (n,) ids; rows with the same id always stay together
    subsamples : number of replicates (0 disables: stderr None)
    min_size   : preferred smallest block (B = n // min_size, clipped to 2..max_blocks)
    min_rows   : the statistic needs at least this many rows (else stderr None)
    seed       : seeds the random partitions
    workers    : evaluate the subsamples (or the partitions, with ``batch_stat``) in this
                 many threads (``stat`` / ``batch_stat`` must be thread-safe and should
                 release the GIL, as the compiled kNN kernels do)
    batch_stat : optional; the disjoint subsets of one partition -> their values (None for
                 a degenerate one), equal to ``stat`` on each: lets an estimator share the
                 work of a partition (one pass over all rows instead of B small calls)
    budget     : optional cap on the rows all subsamples hold together, as a multiple of
                 n (for a statistic whose cost grows about linearly in its rows): when
                 ``subsamples`` blocks of n/B rows would exceed it, the blocks shrink to
                 m = max(budget * n / subsamples, min_block) rows (never more than n/B):
                 each random permutation of the units is cut into n // m blocks, the
                 first ones are used (disjoint blocks of a random part of the rows), and
                 exactly ``subsamples`` replicates are taken. The variance rule (delete-d
                 jackknife, m / (n - m)) is the same.
    """
    if isinstance(subsamples, bool) or not isinstance(subsamples, (int, np.integer)) \
            or subsamples < 0:
        raise ValueError(f"subsamples must be an integer >= 0, got {subsamples!r}")
    units, members = _units(n, groups)
    if subsamples == 0:
        return Subsampling(None, np.zeros(0), 0.0, 0, "disabled (subsamples=0)")
    n_blocks = int(np.clip(n // max(min_size, 1), 2, max_blocks))
    n_blocks = min(n_blocks, len(units))
    if n_blocks < 2 or n / n_blocks < min_rows:
        return Subsampling(None, np.zeros(0), 0.0, 0,
                           f"too few rows ({n}) or groups ({len(units)}) to subsample")
    split, per_perm, total = n_blocks, n_blocks, None  # the default: whole partitions
    if budget is not None and subsamples * n / n_blocks > budget * n:
        m = max(budget * n / subsamples, min_block)
        split = min(len(units), max(n_blocks, int(n // m)))
        if split > n_blocks:
            total, per_perm = subsamples, min(split, subsamples)
    rng = np.random.default_rng(seed)
    partitions = []
    for _ in range(math.ceil(subsamples / per_perm)):
        perm = rng.permutation(len(units))
        partitions.append([])
        for part in np.array_split(perm, split)[:per_perm]:
            rows = part if groups is None else np.concatenate([members[u] for u in part])
            if len(rows) >= min_rows:
                partitions[-1].append(np.sort(rows))
    if total is not None:  # exactly ``subsamples`` blocks
        left = total
        for part in partitions:
            del part[left:]
            left = max(left - len(part), 0)
    subsets = [rows for part in partitions for rows in part]

    def safe(rows: np.ndarray) -> float | None:
        try:
            return float(stat(rows))
        except ValueError:  # a degenerate subsample (e.g. one class only): skip it
            return None

    if batch_stat is not None:  # one call per partition; partitions run side by side
        parts = [part for part in partitions if part]
        if workers > 1 and len(parts) > 1:
            with ThreadPoolExecutor(min(workers, len(parts)),
                                    thread_name_prefix="essl-subsample") as pool:
                per_part = list(pool.map(batch_stat, parts))
        else:
            per_part = [batch_stat(part) for part in parts]
        results = [v for vals in per_part for v in vals]
    elif workers > 1:  # results in subset order, so the same for any number of workers
        with ThreadPoolExecutor(workers, thread_name_prefix="essl-subsample") as pool:
            results = list(pool.map(safe, subsets))
    else:
        results = [safe(rows) for rows in subsets]
    values = [v for v in results if v is not None]
    sizes = [len(rows) for rows, v in zip(subsets, results) if v is not None]
    values_arr = np.asarray(values)
    if len(values_arr) < 2:
        return Subsampling(None, values_arr, 0.0, split, "fewer than 2 usable subsamples")
    m = float(np.mean(sizes))
    var = m / (n - m) * float(np.var(values_arr, ddof=1))
    return Subsampling(math.sqrt(var), values_arr, m, split)


# ================================================================== permutation test
@dataclass(frozen=True, eq=False)
class PermutationResult:
    """observed: the estimate on the data; null (n_permutations,) estimates with y permuted;
    p_value = (1 + #{null >= observed}) / (1 + n_permutations) (Phipson & Smyth 2010)."""

    observed: Estimate
    null: np.ndarray
    p_value: float

    def to_dict(self) -> dict:
        return {"observed": self.observed.to_dict(), "null": self.null.tolist(),
                "p_value": self.p_value}


def permutation_test(x, y, cond=None, *, n_permutations: int = 200, seed: int = 0,
                     **estimate_mi_kwargs) -> PermutationResult:
    """Test I(x; y) = 0 (or I(x; y | cond) = 0 for a discrete ``cond``) by permutation.

    The rows of y are permuted (within each stratum of a discrete cond, which keeps the
    y-cond relation and breaks only the x-y one); each permuted data set is estimated with
    the same method and seed as the observed one (subsampled stderrs are skipped for the
    null replicates). ``estimate_mi_kwargs`` go to ``estimate_mi`` (x_discrete, method, k,
    ...). A continuous cond needs a local permutation scheme (Runge 2018) and is refused.
    """
    from . import MI_METHODS, estimate_mi, prepare_variables

    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) \
            or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    flags = {f: estimate_mi_kwargs.get(f, False)
             for f in ("x_discrete", "y_discrete", "cond_discrete")}
    v = prepare_variables(x, y, cond, **flags)
    if v.cond is not None and not v.cond.discrete:
        raise ValueError("permutation_test permutes y within strata of a discrete cond; "
                         "cond is continuous (pass cond_discrete=True for labels, or "
                         "discretise it)")
    observed = estimate_mi(x, y, cond, seed=seed, **estimate_mi_kwargs)
    seed = observed.params["seed"]   # seed=None: the one drawn for the observed estimate
    # the null replicates call the method directly on permuted copies of the validated
    # y: the inputs were checked once above and do not change
    spec = MI_METHODS[observed.method]
    k = estimate_mi_kwargs.get("k", 3)
    params = {key: val for key, val in estimate_mi_kwargs.items()
              if key not in (*flags, "method", "k", "quantity")}
    if "subsamples" in inspect.signature(spec.fn).parameters:
        params["subsamples"] = 0
    strata = v.cond.codes if v.cond is not None else np.zeros(v.n, np.int64)
    groups = _members(strata)
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for b in range(n_permutations):
        perm = np.arange(v.n)
        for g in groups:
            perm[g] = g[rng.permutation(len(g))]
        y_perm = replace(v.y, values=v.y.values[perm],
                         codes=None if v.y.codes is None else v.y.codes[perm])
        null[b] = spec.fn(replace(v, y=y_perm), k=k, seed=seed, **params).value
    p = (1.0 + float(np.sum(null >= observed.value))) / (1.0 + n_permutations)
    return PermutationResult(observed, null, p)


# ============================================================ fits repeated over seeds
@dataclass(frozen=True, eq=False)
class SeedEnsemble:
    """A fitted estimator repeated over S seeds, summarised (:func:`combine_seeds`).

    value        : mean of the S fits' values (the reported estimate), in the values' units
    stderr       : total standard error, sqrt(sampling_se² + seed_se_adj²)
    sampling_se  : row-sampling error of one fit, root-mean-square over the fits
    seed_sd      : between-fit standard deviation (ddof=1); 0 for S = 1
    seed_se      : seed_sd / sqrt(S), the seed error of the mean
    seed_se_adj  : seed_se inflated by t_{0.975, S-1} / z_{0.975}, see :func:`combine_seeds`
    values       : (S,) the individual fits' values
    """

    value: float
    stderr: float
    sampling_se: float
    seed_sd: float
    seed_se: float
    seed_se_adj: float
    values: np.ndarray

    def diagnostics(self) -> dict:
        """What to record in ``Estimate.diagnostics`` (both components, every fit)."""
        return {"stderr_sampling": self.sampling_se, "stderr_seeds": self.seed_se_adj,
                "seed_sd": self.seed_sd, "n_seeds": int(len(self.values)),
                "seed_values": [float(v) for v in self.values]}


def combine_seeds(values, sampling_se) -> SeedEnsemble:
    """Combine S fits of one estimator (same rows, different seeds) into one number.

    Parameters
    ----------
    values : (S,) array-like
        Each fit's estimate (seeds differ in initialisation, data order, fold split).
    sampling_se : (S,) array-like or float
        Each fit's row-sampling standard error (e.g. cluster-robust over images).

    The value is the mean of the fits. Its error has two parts that add in quadrature:

    * **sampling**: the fits share the rows, so averaging them does not shrink the
      row-sampling error; the root-mean-square of the fits' standard errors is used;
    * **seeds**: the mean of S fits varies between runs with other seeds by
      seed_sd / sqrt(S). With S = 3, seed_sd has two degrees of freedom and is often far
      below the truth (its 5 % quantile is 0.23 σ), so the seed part is inflated by
      t_{0.975,S-1} / z_{0.975} (2.19 for S = 3), which makes value ± 1.96·stderr a 95 %
      interval when the seed part dominates (the t interval for a mean of S draws).

    Two runs that differ only in their seeds should then agree within
    sqrt(stderr₁² + stderr₂²) · 1.96 in 95 % of cases: ``benchmarks/bench_coverage.py``
    measures that.
    """
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"combine_seeds needs finite fit values, got {values!r}")
    se = np.broadcast_to(np.asarray(sampling_se, dtype=np.float64), v.shape)
    if not np.all(np.isfinite(se)) or np.any(se < 0):
        raise ValueError(f"sampling standard errors must be finite and >= 0, got {sampling_se!r}")
    s = v.size
    sampling = float(np.sqrt(np.mean(se ** 2)))
    sd = float(np.std(v, ddof=1)) if s > 1 else 0.0
    seed_se = sd / math.sqrt(s)
    factor = float(student_t.ppf(0.975, s - 1) / 1.959963984540054) if s > 1 else 1.0
    adj = seed_se * factor
    return SeedEnsemble(value=float(v.mean()), stderr=math.hypot(sampling, adj),
                        sampling_se=sampling, seed_sd=sd, seed_se=seed_se, seed_se_adj=adj,
                        values=v)


def fit_seeds(seed: int, n: int) -> list[int]:
    """``n`` seeds for repeated fits: ``seed`` itself first (so one fit reproduces the
    single-seed estimate), then seeds derived from (seed, i) by ``np.random.SeedSequence``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of seeds must be a positive integer, got {n!r}")
    return [int(seed)] + [int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])
                          for i in range(1, int(n))]
