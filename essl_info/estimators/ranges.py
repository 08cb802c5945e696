"""Range checks: what an information estimate can possibly be, and a flag when it is not.

Every reported estimate is checked against the bounds the quantity obeys (DESIGN §3):

- I ≥ 0 for every (conditional) mutual information;
- I(T;Z) ≤ H(T) for a discrete T (and I(T;Z|C) ≤ H(T|C)), so I(C;Z) ≤ H(C);
- a held-out cross-entropy of a K-way predictor should not exceed log K (a uniform guess
  scores log K): a CE above log K means the predictor learned nothing, *not* that the
  target is invisible.

A value is out of range only when its whole 95 % interval lies outside the bounds (an
estimate a little below 0 within its error is what an unbiased estimator of a zero quantity
gives, and must not be flagged). A value with no interval is out of range when it is
outside the bounds at all. Violations become flags (``{"kind": "out_of_range", ...}``, the
shape of ``Report.extra["flags"]``) and, from the API, a :class:`DataWarning`.
"""

from __future__ import annotations

import math
import warnings

from ..types import Estimate
from .inputs import DataWarning

ROUNDING = 1e-9   # nats: differences of digamma sums that should cancel leave ~1e-15


def interval(est: Estimate) -> tuple[float, float]:
    """The estimate's 95 % interval, or (value, value) when it has none."""
    return est.ci if est.ci is not None else (est.value, est.value)


def range_flags(est: Estimate, *, lower: float | None = 0.0, upper: float | None = None,
                upper_name: str = "", context: str = "") -> list[dict]:
    """Flags for ``est`` (nats) lying outside [lower, upper] beyond its 95 % interval.

    upper_name : how to name the upper bound in the message, e.g. ``"H(C) = 2.303"``
    context    : prefix of the message (e.g. the transformation), may be empty
    """
    lo, hi = interval(est)
    flags = []
    where = f"{context}: " if context else ""
    shown = f"{est.value:.3f}" + (f" ± {est.stderr:.3f}" if est.stderr is not None else "")
    if lower is not None and hi < lower - ROUNDING:
        flags.append({
            "kind": "out_of_range", "quantity": est.quantity, "bound": "lower",
            "value": est.value, "limit": lower,
            "message": f"{where}{est.quantity} = {shown} is below {lower:g} beyond its error: "
                       "impossible for an information; the estimator is biased here (too few "
                       "samples for its dimension, or a misspecified probe); do not read it"})
    if upper is not None and lo > upper + ROUNDING:
        name = upper_name or f"{upper:.3f}"
        flags.append({
            "kind": "out_of_range", "quantity": est.quantity, "bound": "upper",
            "value": est.value, "limit": upper,
            "message": f"{where}{est.quantity} = {shown} exceeds its ceiling {name} beyond its "
                       "error: impossible; the estimator is biased here; do not read it"})
    return flags


def ce_flags(ce: float, ce_se: float | None, n_classes: int, *, name: str = "CE",
             context: str = "") -> list[dict]:
    """A flag when a held-out cross-entropy (nats) of a ``n_classes``-way predictor is not
    below log K beyond its error (ce + 1.96·se ≥ log K): the predictor cannot be told apart
    from a uniform guess, so it learned nothing we can show."""
    log_k = math.log(n_classes)
    hi = ce + 1.959963984540054 * ce_se if ce_se is not None else ce
    if hi < log_k:
        return []
    where = f"{context}: " if context else ""
    return [{"kind": "learned_nothing", "quantity": name, "value": ce, "limit": log_k,
             "message": f"{where}{name} = {ce:.3f} is not below log K = {log_k:.3f}: the "
                        "predictor learned nothing (too few images or too short a fit); this "
                        "is no evidence about the target"}]


def warn_flags(flags: list[dict], *, stacklevel: int = 3) -> None:
    """Issue each flag's message as a :class:`DataWarning` (the API's form of a flag)."""
    for f in flags:
        warnings.warn(f["message"], DataWarning, stacklevel=stacklevel)


__all__ = ["ce_flags", "interval", "range_flags", "warn_flags"]
