"""essl_info: information-theoretic diagnostics for equivariant self-supervised learning.

    >>> from essl_info import estimate_mi
    >>> est = estimate_mi(x, y)                 # doctest: +SKIP
    >>> print(est)                              # doctest: +SKIP
    I(X;Y) = 0.412 ± 0.006 nats  [ksg k=3, n=10000]

Values are in nats and signed. See DESIGN §3 for the API contract.
"""

from __future__ import annotations

from importlib import import_module

from .estimators import estimate_entropy, estimate_mi
from .types import Estimate, Report

__version__ = "0.1.0"

# Heavier entry points (they import torch) load on first use.
_LAZY = {
    "measure": "essl_info.measure",
    "rank_transforms": "essl_info.measure",
    "permutation_test": "essl_info.resampling",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'essl_info' has no attribute {name!r}")


__all__ = [
    "Estimate",
    "Report",
    "__version__",
    "estimate_entropy",
    "estimate_mi",
    "measure",
    "permutation_test",
    "rank_transforms",
]
