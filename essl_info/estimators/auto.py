"""``method="auto"`` for two continuous variables: kNN (KSG) or a critic bound, by evidence.

KSG (Kraskov et al. 2004) is fast and nearly unbiased for smooth data in a few dimensions,
but its bias towards 0 grows with the dimension and with heavy tails: measured at
N = 10,000 on ``essl_info.tasks.continuous_suite()`` (benchmarks/README.md, table
``auto``), KSG kept 0.90-1.02 of the truth in 1+1 and 2+2 dims (also for Student-t, cube
and spiral data), 0.79-0.85 in 3+3 and 5+5, 0.55 for a dense Gaussian in 10+10, 0.07-0.21
for sparse and dense Gaussians in 25+25 and 50+50, and 0.70-0.79 for Student-t tails in 5+5
to 10+10. InfoNCE with a separable critic on Gaussian-copula inputs (``neural.py``) is
invariant to monotone maps of each column (heavy tails and units disappear) and keeps
most of the information in high dimension, at 10-100x KSG's cost.

The rule (recorded in ``diagnostics["auto_evidence"]``):

* dx + dy <= 2: KSG (every 1+1 task of the suite within 0.93-1.02 of the truth);
* no cond, and dx + dy > ``KSG_MAX_DIMS`` or a heavy-tailed column (``tail_ratio`` above
  ``HEAVY_TAIL``): InfoNCE on copula inputs, with KSG's value beside it as a second opinion
  (``diagnostics["second_opinion"]``);
* otherwise KSG (the rule of ``knn.py``).

``tail_ratio`` of a column is its 0.5 %-99.5 % quantile range over its interquartile range,
divided by the same ratio for a normal distribution (3.819): 1.0 for Gaussian data, ~1.6
for Student-t with 5 degrees of freedom, ~2.1 with 3, 2.5 for exp(Gaussian), 14+ for a
cubed Gaussian; a cheap (O(n d log n)) and outlier-robust stand-in for kurtosis.
"""

from __future__ import annotations

import numpy as np

from .inputs import Variables
from .registry import add_auto_rule

KSG_MAX_DIMS = 6  # dx + dy above which the critic is chosen (KSG: 0.79-0.83 at 5+5)
HEAVY_TAIL = 1.5  # tail_ratio above which the critic is chosen (in > 1+1 dims)
NORMAL_TAIL = 3.8186  # (q_0.995 - q_0.005) / (q_0.75 - q_0.25) for a normal distribution
CRITIC = "infonce"


def tail_ratio(values: np.ndarray) -> float:
    """max over the columns of ``values`` (n, d) of the quantile-range ratio above, relative
    to a normal distribution (1.0 for Gaussian columns; 0 for a constant column)."""
    q = np.quantile(values, [0.005, 0.25, 0.75, 0.995], axis=0)  # (4, d)
    iqr = q[2] - q[1]
    ratio = np.where(iqr > 0, (q[3] - q[0]) / np.where(iqr > 0, iqr, 1.0), 0.0)
    return float(ratio.max() / NORMAL_TAIL)


def continuous_evidence(v: Variables) -> dict:
    """The numbers behind the choice for continuous x and y without cond."""
    dims = v.x.dim + v.y.dim
    tails = max(tail_ratio(v.x.values), tail_ratio(v.y.values))
    if dims <= 2:
        criterion = f"dx + dy = {dims} <= 2: KSG"
    elif dims > KSG_MAX_DIMS:
        criterion = f"dx + dy = {dims} > {KSG_MAX_DIMS}: critic"
    elif tails > HEAVY_TAIL:
        criterion = f"heavy tails (tail_ratio {tails:.2f} > {HEAVY_TAIL}): critic"
    else:
        criterion = (f"dx + dy = {dims} <= {KSG_MAX_DIMS}, light tails (tail_ratio "
                     f"{tails:.2f} <= {HEAVY_TAIL}): KSG")
    return {"dims": dims, "tail_ratio": tails, "ksg_max_dims": KSG_MAX_DIMS,
            "heavy_tail": HEAVY_TAIL, "criterion": criterion}


def needs_critic(v: Variables) -> bool:
    """Continuous x and y, no cond, more than 1+1 dims, and many dims or heavy tails."""
    if v.x.discrete or v.y.discrete or v.cond is not None:
        return False
    return continuous_evidence(v)["criterion"].endswith("critic")


def is_ksg_pair(v: Variables) -> bool:
    return not v.x.discrete and not v.y.discrete and v.cond is None


add_auto_rule(needs_critic, CRITIC,
              f"continuous x and y in more than {KSG_MAX_DIMS} dims or with heavy tails: "
              "kNN is biased low there; InfoNCE on Gaussian-copula inputs (KSG as second "
              "opinion)", before="ksg", evidence=continuous_evidence, second="ksg")
add_auto_rule(is_ksg_pair, "ksg",
              f"continuous x and y in <= {KSG_MAX_DIMS} dims with light tails (or 1+1): "
              "KSG", before="ksg", evidence=continuous_evidence)
