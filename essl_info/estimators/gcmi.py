"""Gaussian-copula mutual information (GCMI; Ince et al. 2017, Hum. Brain Mapp. 38:1541).

Each continuous column is replaced by its normal scores (``copula.gaussian_copula``: rank ->
Phi^-1(r / (n + 1))), which leaves I(X;Y) unchanged, and the MI is that of a Gaussian with
the covariance of the normal scores::

    I_G = 1/2 [log det C_x + log det C_y - log det C_xy]            (nats)
    I_G(x; y | z) = 1/2 [log det C_xz + log det C_yz - log det C_xyz - log det C_z]

Each log det gets the analytic small-sample bias correction of Ince et al. (2017, eq. in
"Bias correction" / ``ent_g`` of the gcmi toolbox): with S = (n - 1) C ~ Wishart(Sigma, n - 1)
for Gaussian data, E log det C = log det Sigma + d log(2 / (n - 1)) + sum_{i=1}^{d}
psi((n - i) / 2) (Anderson 2003, Thm 7.5.3), so subtracting the last two terms makes each
Gaussian entropy, and hence I_G, unbiased for Gaussian data at any n > d + 1 (tested at
50+50 dims, n = 2,000: ``tests/test_gcmi.py``).

What it measures. For a Gaussian copula (any Gaussian after strictly monotone maps of each
column: the Gaussian, exp, cube tasks of ``essl_info.tasks``) I_G is the MI itself, found
at the cost of a covariance matrix: O(n d^2), milliseconds at n = 10,000 in 50+50 dims,
where kNN keeps < 10 % of the information and a critic needs minutes. Otherwise it is the
MI of the Gaussian copula with the same normal-score covariance, and

* it is a LOWER BOUND on I(X;Y) whenever the normal scores w of one side (say y) are
  jointly Gaussian, in particular whenever dx = 1 or dy = 1: with A the linear regression
  of w on the normal scores v of x, I = h(w) - h(w | v) and h(w | v) = h(w - A v | v) <=
  h(w - A v) <= h_G(Cov(w - A v)) (conditioning reduces entropy; the Gaussian maximises
  entropy for a given covariance, Cover & Thomas 2006, Thm 8.6.5), while h(w) = h_G(Cov w)
  because w is Gaussian; the difference is I_G. (The same argument gives the "Gaussian
  noise is the worst case" bound, Diggavi & Cover 2001, IEEE Trans. Inf. Theory 47:3072.)
* it is NOT a bound when both sides are multivariate with non-Gaussian copulas: h(w) can
  sit far below h_G(Cov w). Example (``tests/test_gcmi.py``): w = (g, r g) with r = +-1 a
  fair coin and v = w + 0.1 * noise: I <= 3.35 nats (a two-component mixture), I_G = 4.62.
  On the continuous task suite (spirals, mixtures, multivariate Student-t) it stayed below
  the truth (benchmarks/README.md, table ``auto``), but it is an approximation there, and
  blind to dependence that leaves the normal scores uncorrelated (e.g. the shared radius of
  a Student-t with rho = 0: I_G ~ 0).

Standard error: delete-a-block jackknife (Efron & Stein 1981) over ``n_blocks`` seeded
random blocks of rows, with the normal scores fixed (for Gaussian data the normal-score
correlation has the asymptotic variance of Pearson's, Klaassen & Wellner 1997, so fixing
the ranks loses little); calibration measured on Gaussian tasks in ``tests/test_gcmi.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from ..types import Estimate
from .copula import gaussian_copula
from .inputs import Variables
from .registry import register_mi

N_BLOCKS = 20  # jackknife blocks: 19 degrees of freedom for the stderr


def logdet_bias(d: int, n: int) -> float:
    """E[log det C] - log det Sigma for the (n - 1)-normalised sample covariance C of n
    Gaussian rows in d dims: d log(2 / (n - 1)) + sum_{i=1}^{d} psi((n - i) / 2)."""
    if n <= d + 1:
        raise ValueError(f"GCMI needs more rows than dimensions + 1: n={n}, d={d}")
    return float(d * np.log(2.0 / (n - 1)) + digamma((n - np.arange(1, d + 1)) / 2.0).sum())


def _logdet(c: np.ndarray) -> float:
    """log det of a symmetric positive-definite matrix (Cholesky); ValueError if singular."""
    try:
        chol = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise ValueError("GCMI: the normal-score covariance is singular (a column is a "
                         "monotone function of others, or n is too small)") from None
    return float(2.0 * np.log(np.diag(chol)).sum())


def gaussian_mi(cov: np.ndarray, blocks: list[np.ndarray], n: int, bias_correct: bool = True
                ) -> float:
    """Bias-corrected Gaussian (C)MI in nats from the (D, D) covariance ``cov`` of n rows.

    ``blocks`` = [ix, iy] for I(x;y) or [ix, iy, iz] for I(x;y|z): column indices into
    ``cov``. I = 1/2 [H'(xz) + H'(yz) - H'(xyz) - H'(z)] with H'(s) = log det C_s minus its
    bias (``logdet_bias``) when ``bias_correct``.
    """
    iz = blocks[2] if len(blocks) > 2 else np.arange(0)
    terms = [(np.concatenate([blocks[0], iz]), 1.0), (np.concatenate([blocks[1], iz]), 1.0),
             (np.concatenate([blocks[0], blocks[1], iz]), -1.0), (iz, -1.0)]
    total = 0.0
    for idx, sign in terms:
        if len(idx) == 0:
            continue
        ld = _logdet(cov[np.ix_(idx, idx)])
        if bias_correct:
            ld -= logdet_bias(len(idx), n)
        total += sign * ld
    return 0.5 * total


def gcmi(x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None, *, seed: int = 0,
         n_blocks: int = N_BLOCKS, bias_correct: bool = True) -> tuple[float, float, dict]:
    """(value, jackknife stderr, diagnostics): GCMI of x (n, dx) and y (n, dy) [given z
    (n, dz)] in nats. The value uses all rows; the stderr comes from ``n_blocks``
    leave-one-block-out values (rows assigned to blocks by a permutation seeded with
    ``seed``), each with its own bias correction at its own row count. Constant columns are
    dropped (counted in ``diagnostics["constant_columns"]``); a column that is a monotone
    function of others (a singular normal-score covariance) is a ValueError."""
    # one BLAS thread: the products are small (n / n_blocks rows), and threaded OpenBLAS
    # took 36 ms instead of 0.25 ms per 500 x 100 block on a loaded 2-core machine
    with threadpool_limits(1, user_api="blas"):
        return _gcmi_arrays(x, y, z, seed=seed, n_blocks=n_blocks, bias_correct=bias_correct)


def _gcmi_arrays(x: np.ndarray, y: np.ndarray, z: np.ndarray | None, *, seed: int,
                 n_blocks: int, bias_correct: bool) -> tuple[float, float, dict]:
    parts = [x, y] if z is None else [x, y, z]
    # a constant column carries no information and makes the covariance singular: drop it
    # (dead units are common in learned features); x or y with nothing left: I = 0 exactly
    keep = [np.ptp(p, axis=0) > 0 for p in parts]
    dropped = [int((~k).sum()) for k in keep]
    parts = [p[:, k] for p, k in zip(parts, keep)]
    if parts[0].shape[1] == 0 or parts[1].shape[1] == 0:
        return 0.0, 0.0, {"uncorrected": 0.0, "bias_correction": 0.0, "n_blocks": n_blocks,
                          "dims": [p.shape[1] for p in parts], "constant_columns": dropped}
    if len(parts) == 3 and parts[2].shape[1] == 0:
        parts = parts[:2]
    scores = np.concatenate([gaussian_copula(p) for p in parts], axis=1)  # (n, D)
    n, dim = scores.shape
    sizes = [p.shape[1] for p in parts]
    edges = np.cumsum([0] + sizes)
    blocks = [np.arange(edges[i], edges[i + 1]) for i in range(len(parts))]
    if n <= dim + 1 + max(n // max(n_blocks, 1), 1):
        raise ValueError(f"GCMI needs more rows than dimensions: n={n} for {dim} columns")
    # per-block sums and cross products; leave-one-block-out covariances from the totals
    block_of = np.random.default_rng(seed).permutation(n) % n_blocks  # (n,)
    counts = np.bincount(block_of, minlength=n_blocks)  # (B,)
    grouped = np.split(scores[np.argsort(block_of, kind="stable")], np.cumsum(counts)[:-1])
    sums = np.stack([g.sum(0) for g in grouped])  # (B, D)
    prods = np.stack([g.T @ g for g in grouped])  # (B, D, D)

    def cov(s: np.ndarray, p: np.ndarray, m: int) -> np.ndarray:
        mean = s / m
        return (p - m * np.outer(mean, mean)) / (m - 1)

    tot_s, tot_p = sums.sum(0), prods.sum(0)
    value = gaussian_mi(cov(tot_s, tot_p, n), blocks, n, bias_correct)
    loo = np.array([gaussian_mi(cov(tot_s - sums[b], tot_p - prods[b], n - counts[b]),
                                blocks, n - int(counts[b]), bias_correct)
                    for b in range(n_blocks)])
    stderr = float(np.sqrt((n_blocks - 1) / n_blocks * ((loo - loo.mean()) ** 2).sum()))
    uncorrected = gaussian_mi(cov(tot_s, tot_p, n), blocks, n, bias_correct=False)
    return value, stderr, {"uncorrected": uncorrected, "bias_correction": value - uncorrected,
                           "n_blocks": n_blocks, "dims": sizes, "constant_columns": dropped}


def gcmi_supports(v: Variables) -> bool:
    """Continuous x and y, with no cond or a continuous one."""
    return (not v.x.discrete and not v.y.discrete
            and (v.cond is None or not v.cond.discrete))


@register_mi("gcmi", supports=gcmi_supports, symmetric=True, uses_k=False,
             reference="Ince et al. 2017, Hum. Brain Mapp. 38:1541 (Gaussian-copula MI)")
def _gcmi(v: Variables, *, k: int, seed: int, n_blocks: int = N_BLOCKS,
          bias_correct: bool = True) -> Estimate:
    """Gaussian-copula MI: normal scores per column, Gaussian MI of their covariance,
    bias-corrected (exact for Gaussian copulas; a lower bound when one side is 1-D)."""
    if n_blocks < 2:
        raise ValueError(f"n_blocks must be >= 2 for a jackknife stderr, got {n_blocks}")
    value, stderr, diag = gcmi(v.x.values, v.y.values,
                               None if v.cond is None else v.cond.values,
                               seed=seed, n_blocks=n_blocks, bias_correct=bias_correct)
    return Estimate(value, stderr, n=v.n, diagnostics=diag,
                    params={"n_blocks": n_blocks, "bias_correct": bias_correct,
                            "copula": True,
                            "stderr_method": f"delete-a-block jackknife, {n_blocks} seeded "
                                             "blocks, normal scores fixed"})
