"""essl_info: information-theoretic diagnostics for equivariant self-supervised learning.

    >>> from essl_info import estimate_mi
    >>> est = estimate_mi(x, y)                 # doctest: +SKIP
    >>> print(est)                              # doctest: +SKIP
    I(X;Y) = 0.412 ± 0.006 nats  [ksg k=3, n=10000]

Values are in nats and signed. See DESIGN §3 for the API contract.
"""

from __future__ import annotations

__version__ = "0.1.0"  # before the imports: submodules record it in checkpoints

from .estimators import estimate_entropy, estimate_mi
from .types import Estimate, Report

# torch is already imported by the estimators, so these cost little more. Imported eagerly
# so that the package attribute ``measure`` is the function (as ``tqdm.tqdm``), not the
# submodule of the same name; ``from essl_info.diagnostics.measure import ...`` reaches the module.
from .diagnostics.measure import measure, measure_features, rank_transforms  # noqa: E402
from .estimators.resampling import permutation_test  # noqa: E402


__all__ = [
    "Estimate",
    "Report",
    "__version__",
    "estimate_entropy",
    "estimate_mi",
    "measure",
    "measure_features",
    "permutation_test",
    "rank_transforms",
]
