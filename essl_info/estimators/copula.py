"""The Gaussian copula (rank -> normal scores) transform of continuous variables.

Each column is replaced by Phi^-1(r / (n + 1)), r its rank among the n rows (ties get their
average rank; a constant column becomes all zeros). The map is strictly increasing in each
column, so mutual information is unchanged (I(X;Y) is invariant under invertible maps of
each variable, Cover & Thomas §8.6 / Kraskov et al. 2004, §II), while heavy tails,
outliers and monotone distortions disappear: every column becomes standard normal up to
the discreteness of ranks. Critic networks need this: on Student-t data an MLP critic
extrapolates to the rare huge inputs of held-out rows and the NWJ/DV partition terms run
away (values of -1e6 nats were seen without it). Also called the "normal scores" or
nonparanormal transform (Liu, Lafferty, Wasserman 2009).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata


def gaussian_copula(values: np.ndarray) -> np.ndarray:
    """(n, d) float64 normal scores of the columns of ``values`` (n, d); average ranks for
    ties, Phi^-1(rank / (n + 1)) in (-Phi^-1(1/(n+1)), Phi^-1(1/(n+1)))."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or len(arr) == 0:
        raise ValueError(f"gaussian_copula needs a non-empty (n, d) array, got shape "
                         f"{arr.shape}")
    ranks = rankdata(arr, method="average", axis=0)  # (n, d), 1..n
    return ndtri(ranks / (len(arr) + 1.0))
