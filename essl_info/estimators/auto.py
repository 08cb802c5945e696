"""``method="auto"`` for two continuous variables: kNN (KSG), or the larger of two copula
lower bounds (GCMI and InfoNCE), by evidence.

KSG (Kraskov et al. 2004) is fast and nearly unbiased for smooth data in a few dimensions,
but its bias towards 0 grows with the dimension and with heavy tails: measured at
N = 10,000 on ``essl_info.tasks.continuous_suite()`` (benchmarks/README.md, table
``auto``), KSG kept 0.90-1.02 of the truth in 1+1 and 2+2 dims (also for Student-t, cube
and spiral data), 0.79-0.85 in 3+3 and 5+5, 0.55 for a dense Gaussian in 10+10, 0.07-0.21
for sparse and dense Gaussians in 25+25 and 50+50, and 0.70-0.79 for Student-t tails in 5+5
to 10+10. Two estimators on Gaussian-copula inputs (invariant to monotone maps of each
column: heavy tails and units disappear) keep the information in high dimension:

* GCMI (``gcmi.py``, Ince et al. 2017): the bias-corrected Gaussian MI of the normal scores;
  exact for a Gaussian copula (0.96-1.01 of the truth on every Gaussian-copula task of the
  suite, up to 50+50 dims, including the dense weak 50+50 Gaussian that every other method
  lost), in 15-700 ms; blind to non-linear dependence (0.17-0.82 on spirals and
  mixtures). A lower bound when one side is 1-D or has a Gaussian copula; not guaranteed
  otherwise (see ``gcmi.py``), though below the truth on every task of the suite.
* InfoNCE with a separable MLP critic (``neural.py``): a lower bound that learns non-linear
  dependence (0.88-0.91 on 5+5 spirals and mixtures) but loses weak dense dependence in
  high dimension (0.10 of the truth in 50+50), at 10-100x KSG's cost.

Where a critic is chosen, method ``gcmi-infonce`` runs both and reports the larger (both
estimate I from below, so the larger is the closer; the choice, both values and the reason
are in ``diagnostics["bounds"]``), with KSG as the second opinion.

The rule (recorded in ``diagnostics["auto_evidence"]``):

* dx + dy <= 2: KSG (every 1+1 task of the suite within 0.93-1.02 of the truth);
* a scale shared by the columns of x or of y (``shared_scale`` above ``SHARED_SCALE``, the
  signature of elliptical heavy tails such as the multivariate Student-t): KSG. The
  copula makes every column Gaussian but leaves the dependence in the common radius, which
  the separable critic learned poorly (InfoNCE kept 0.35-0.55 of the truth on Student-t
  tasks in 10+10 and 25+25 dims where KSG kept 0.79 and 1.24) and GCMI cannot see (0.02 of
  the truth for the Student-t with rho = 0 in 25+25);
* no cond, and dx + dy > ``KSG_MAX_DIMS`` or a heavy-tailed column (``tail_ratio`` above
  ``HEAVY_TAIL``): ``gcmi-infonce``, with KSG's value beside it as a second opinion
  (``diagnostics["second_opinion"]``);
* otherwise KSG (the rule of ``knn.py``).

``shared_scale`` is the mean correlation between the squared normal scores (copula) of
pairs of columns of one variable: 0 when the columns are independent or Gaussian after
monotone maps, 0.22-0.36 for multivariate Student-t with 3-5 degrees of freedom, <= 0.04 on
every other task of the suite (mixtures with unequal cluster scales give a little).

``tail_ratio`` of a column is its 0.5 %-99.5 % quantile range over its interquartile range,
divided by the same ratio for a normal distribution (3.819): 1.0 for Gaussian data, ~1.6
for Student-t with 5 degrees of freedom, ~2.1 with 3, 2.5 for exp(Gaussian), 14+ for a
cubed Gaussian; a cheap (O(n d log n)) and outlier-robust stand-in for kurtosis.

Both diagnostics are computed on at most ``EVIDENCE_ROWS`` rows (a fixed-seed subsample
above that; all rows of the N = 10,000 suite), so that the evidence costs a few ms at any n
(it was 0.1 s per call at n = 100,000 in 2+2 dims, paid twice by ``estimate_mi``); the
evidence of one ``Variables`` is computed once and cached.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..types import Estimate
from .copula import gaussian_copula
from .gcmi import gcmi
from .inputs import Variables
from .neural import critic_mi
from .registry import add_auto_rule, register_mi

SHARED_SCALE = 0.1  # shared_scale above which KSG is kept (elliptical heavy tails)
KSG_MAX_DIMS = 6  # dx + dy above which the critic is chosen (KSG: 0.79-0.83 at 5+5)
HEAVY_TAIL = 1.5  # tail_ratio above which the critic is chosen (in > 1+1 dims)
NORMAL_TAIL = 3.8186  # (q_0.995 - q_0.005) / (q_0.75 - q_0.25) for a normal distribution
CRITIC = "gcmi-infonce"
EVIDENCE_ROWS = 10_000  # rows the diagnostics look at (a fixed-seed subsample above)
EVIDENCE_SEED = 0
_EVIDENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Variables -> dict


def tail_ratio(values: np.ndarray) -> float:
    """max over the columns of ``values`` (n, d) of the quantile-range ratio above, relative
    to a normal distribution (1.0 for Gaussian columns; 0 for a constant column)."""
    q = np.quantile(values, [0.005, 0.25, 0.75, 0.995], axis=0)  # (4, d)
    iqr = q[2] - q[1]
    ratio = np.where(iqr > 0, (q[3] - q[0]) / np.where(iqr > 0, iqr, 1.0), 0.0)
    return float(ratio.max() / NORMAL_TAIL)


def shared_scale(values: np.ndarray) -> float:
    """Mean over the column pairs of ``values`` (n, d) of corr(z_i^2, z_j^2), z the
    Gaussian-copula normal scores; 0 for d = 1."""
    if values.shape[1] < 2:
        return 0.0
    sq = gaussian_copula(values) ** 2
    sq = sq - sq.mean(0)
    norm = np.sqrt((sq * sq).sum(0))
    corr = (sq.T @ sq) / np.outer(norm, norm).clip(1e-300)
    return float(corr[np.triu_indices(values.shape[1], 1)].mean())


def evidence_rows(n: int) -> np.ndarray | slice:
    """The rows the diagnostics use: all of them up to ``EVIDENCE_ROWS``, else a sorted
    subsample of that size drawn with ``EVIDENCE_SEED`` (deterministic)."""
    if n <= EVIDENCE_ROWS:
        return slice(None)
    rng = np.random.default_rng(EVIDENCE_SEED)
    return np.sort(rng.choice(n, EVIDENCE_ROWS, replace=False))


def continuous_evidence(v: Variables) -> dict:
    """The numbers behind the choice for continuous x and y without cond (cached per
    ``Variables``)."""
    cached = _EVIDENCE.get(v)
    if cached is None:
        cached = _EVIDENCE[v] = _evidence(v)
    return dict(cached)


def _evidence(v: Variables) -> dict:
    dims = v.x.dim + v.y.dim
    rows = evidence_rows(v.n)
    xs, ys = v.x.values[rows], v.y.values[rows]
    tails = max(tail_ratio(xs), tail_ratio(ys))
    shared = 0.0 if dims <= 2 else max(shared_scale(xs), shared_scale(ys))
    if dims <= 2:
        criterion = f"dx + dy = {dims} <= 2: KSG"
    elif shared > SHARED_SCALE:
        criterion = (f"a scale shared by the columns (shared_scale {shared:.2f} > "
                     f"{SHARED_SCALE}; elliptical heavy tails): KSG")
    elif dims > KSG_MAX_DIMS:
        criterion = f"dx + dy = {dims} > {KSG_MAX_DIMS}: critic"
    elif tails > HEAVY_TAIL:
        criterion = f"heavy tails (tail_ratio {tails:.2f} > {HEAVY_TAIL}): critic"
    else:
        criterion = (f"dx + dy = {dims} <= {KSG_MAX_DIMS}, light tails (tail_ratio "
                     f"{tails:.2f} <= {HEAVY_TAIL}): KSG")
    return {"dims": dims, "tail_ratio": tails, "shared_scale": shared,
            "ksg_max_dims": KSG_MAX_DIMS, "heavy_tail": HEAVY_TAIL,
            "shared_scale_limit": SHARED_SCALE, "criterion": criterion,
            "evidence_rows": min(v.n, EVIDENCE_ROWS)}


def needs_critic(v: Variables) -> bool:
    """Continuous x and y, no cond, more than 1+1 dims, and many dims or heavy tails."""
    if v.x.discrete or v.y.discrete or v.cond is not None:
        return False
    return continuous_evidence(v)["criterion"].endswith("critic")


def is_ksg_pair(v: Variables) -> bool:
    return not v.x.discrete and not v.y.discrete and v.cond is None


def _gcmi_or_infonce(v: Variables, *, k: int, seed: int, **critic_options) -> Estimate:
    """The larger of two lower bounds on Gaussian-copula inputs, GCMI and InfoNCE."""
    nce = critic_mi(v, bound="infonce", seed=seed, **critic_options)
    try:
        g_value, g_se, g_diag = gcmi(v.x.values, v.y.values, seed=seed)
    except ValueError as err:  # a singular normal-score covariance (duplicated columns)
        bounds = {"picked": "infonce", "reason": f"GCMI impossible here: {err}",
                  "gcmi": None, "infonce": {"value": nce.value, "stderr": nce.stderr}}
        return nce.with_(params={**nce.params, "picked": "infonce"},
                         diagnostics={**nce.diagnostics, "bounds": bounds})
    g_wins = g_value >= nce.value
    bounds = {"picked": "gcmi" if g_wins else "infonce",
              "reason": ("GCMI >= InfoNCE: the linear (Gaussian-copula) dependence holds at "
                         "least what the critic learned" if g_wins else
                         "InfoNCE > GCMI: the critic found dependence beyond the "
                         "Gaussian copula"),
              "gcmi": {"value": g_value, "stderr": g_se},
              "infonce": {"value": nce.value, "stderr": nce.stderr}}
    if g_wins:
        return Estimate(g_value, g_se, n=v.n,
                        params={"copula": True, "picked": "gcmi", "infonce": nce.params,
                                "stderr_method": "GCMI: delete-a-block jackknife"},
                        diagnostics={"bounds": bounds, "gcmi": g_diag,
                                     "infonce": nce.diagnostics})
    return nce.with_(params={**nce.params, "picked": "infonce"},
                     diagnostics={**nce.diagnostics, "bounds": bounds, "gcmi": g_diag})


register_mi(CRITIC, supports=lambda v: (not v.x.discrete and not v.y.discrete
                                        and v.cond is None),
            symmetric=False, uses_k=False,
            reference="max of GCMI (Ince et al. 2017) and InfoNCE (van den Oord et al. "
                      "2018) on Gaussian-copula inputs")(_gcmi_or_infonce)

add_auto_rule(needs_critic, CRITIC,
              f"continuous x and y in more than {KSG_MAX_DIMS} dims or with heavy tails: "
              "kNN is biased low there; the larger of two lower bounds on Gaussian-copula "
              "inputs, GCMI and InfoNCE (KSG as second opinion)", before="ksg",
              evidence=continuous_evidence, second="ksg")
add_auto_rule(is_ksg_pair, "ksg",
              f"continuous x and y in 1+1 dims, in <= {KSG_MAX_DIMS} dims with light tails, "
              "or with elliptical heavy tails (a scale shared by the columns): KSG",
              before="ksg", evidence=continuous_evidence)
