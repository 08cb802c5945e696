"""Input validation at the estimator boundary (DESIGN §3).

Every public estimator goes through :func:`prepare_variables`: it turns user arrays into a
:class:`Variables` bundle of checked 2-D float64 arrays plus integer codes for discrete
variables, or raises a ``ValueError`` that names the offending argument, shape or value.
Estimators never see NaN, inf, empty or mismatched inputs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np


class DataWarning(UserWarning):
    """Inputs that are legal but may bias an estimator (ties, many categories)."""


@dataclass(frozen=True, eq=False)
class Variable:
    """One validated variable.

    values : (n, d) float64, the numbers as given (discrete labels cast to float).
    codes  : (n,) int64 in 0..n_categories-1 for a discrete variable (rows of a
             multi-column discrete array are coded jointly), else None.
    """

    name: str
    values: np.ndarray
    discrete: bool
    codes: np.ndarray | None = None
    n_categories: int = 0

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    @property
    def kind(self) -> str:
        return "discrete" if self.discrete else "continuous"


@dataclass(frozen=True, eq=False)
class Variables:
    """The validated inputs of ``estimate_mi``: x, y and an optional conditioning z."""

    x: Variable
    y: Variable
    cond: Variable | None
    n: int

    def describe(self) -> str:
        s = f"{self.x.kind} x (d={self.x.dim}) and {self.y.kind} y (d={self.y.dim})"
        if self.cond is not None:
            s += f" given {self.cond.kind} cond (d={self.cond.dim})"
        return s

    @property
    def continuous_dims(self) -> int:
        """Total number of continuous columns over x, y and cond."""
        return sum(var.dim for var in (self.x, self.y, self.cond)
                   if var is not None and not var.discrete)

    def kinds(self) -> tuple[str, str, str | None]:
        return (self.x.kind, self.y.kind, None if self.cond is None else self.cond.kind)


def _as_2d(name: str, a) -> np.ndarray:
    if a is None:
        raise ValueError(f"{name} is None")
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n,) or (n, d), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no columns (shape {arr.shape})")
    return arr


def _check_finite(name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind in "fc":
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise ValueError(
                f"{name} contains {int(bad.sum())} NaN/inf value(s) (first in row {int(rows[0])})"
            )


def _discrete_codes(name: str, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes of the rows of a discrete array; rejects non-integer numbers."""
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} was declared discrete but is complex (dtype {arr.dtype})")
    if arr.dtype.kind == "f":
        _check_finite(name, arr)
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            bad = arr[np.mod(arr, 1) != 0].ravel()
            raise ValueError(
                f"{name} was declared discrete but holds non-integer values "
                f"(e.g. {bad[0]!r}); pass integer labels or declare it continuous"
            )
    if arr.dtype.kind in "iuf":
        values = arr.astype(np.float64)
        _, codes = np.unique(arr, axis=0, return_inverse=True)
    else:  # strings / objects: codes only; numbers are the codes
        _, codes = np.unique(arr.astype(str), axis=0, return_inverse=True)
        values = None
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    n_cat = int(codes.max()) + 1
    if values is None:
        values = codes[:, None].astype(np.float64)
    return values, codes, n_cat


def joint_codes(*codes: np.ndarray) -> np.ndarray:
    """(n,) int64 code of the combination of several (n,) label arrays (mixed radix,
    re-coded after each column so that it cannot overflow)."""
    out = np.zeros(len(codes[0]), np.int64)
    for c in codes:
        _, c = np.unique(c, return_inverse=True)
        out = out * (int(c.max()) + 1) + c.reshape(-1)
        _, out = np.unique(out, return_inverse=True)
        out = out.reshape(-1).astype(np.int64)
    return out


def prepare_variable(name: str, a, *, discrete: bool, warn: bool = True) -> Variable:
    """Validate one array; see :class:`Variable`."""
    arr = _as_2d(name, a)
    if discrete:
        values, codes, n_cat = _discrete_codes(name, arr)
        if warn and n_cat > max(len(codes) / 4, 20):
            warnings.warn(
                f"{name} is declared discrete but has {n_cat} distinct values for "
                f"{len(codes)} samples (> n/4): plug-in and kNN estimates will be biased; "
                f"is it really discrete?",
                DataWarning,
                stacklevel=3,
            )
        return Variable(name, values, True, codes, n_cat)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    values = arr.astype(np.float64)
    _check_finite(name, values)
    _check_magnitude(name, values)
    return Variable(name, values, False)


def _check_magnitude(name: str, values: np.ndarray) -> None:
    """Finite values so large that the estimators' own arithmetic (means, variances,
    squared distances over n rows, in float64) would overflow to inf: a message saying so,
    not a later "data must be finite" about data that is finite."""
    top = float(np.abs(values).max())
    limit = math.sqrt(np.finfo(np.float64).max / (4.0 * len(values))) / 16
    if top > limit:
        raise ValueError(f"{name} is finite but reaches {top:.3g} in magnitude: squares and "
                         f"sums of such values overflow float64 (above about {limit:.1e} "
                         f"for n={len(values)}); divide {name} by a constant first (e.g. "
                         f"{name} / {top:.0e})")


def tie_fraction(values: np.ndarray, sorted_first: np.ndarray | None = None) -> float:
    """Fraction of rows that duplicate another row exactly. ``sorted_first``: the first
    column sorted, if the caller has it."""
    n = len(values)
    # duplicated rows share their first column: sort on it, compare whole rows only there
    # (a full row-wise np.unique took 86 ms for 10,000 x 128)
    first = values[:, 0]
    s = np.sort(first) if sorted_first is None else sorted_first
    if not (s[1:] == s[:-1]).any():  # no tie in the first column: none in the rows
        return 0.0
    order = np.argsort(first)  # only groups equal values: any sort will do
    same = first[order][1:] == first[order][:-1]
    in_run = np.zeros(n, dtype=bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    cand = values[order[in_run]]
    return (len(cand) - len(np.unique(cand, axis=0))) / n


def prepare_variables(
    x,
    y,
    cond=None,
    *,
    x_discrete: bool = False,
    y_discrete: bool = False,
    cond_discrete: bool = False,
) -> Variables:
    """Validate ``x``, ``y`` and ``cond`` together (shapes, lengths, finiteness, labels)."""
    xv = prepare_variable("x", x, discrete=x_discrete)
    yv = prepare_variable("y", y, discrete=y_discrete)
    cv = None if cond is None else prepare_variable("cond", cond, discrete=cond_discrete)
    n = len(xv.values)
    for v in (yv, cv):
        if v is not None and len(v.values) != n:
            raise ValueError(
                f"x has {n} rows but {v.name} has {len(v.values)}: "
                "all variables must have the same number of samples"
            )
    return Variables(xv, yv, cv, n)


def resolve_seed(seed) -> tuple[int, bool]:
    """(the seed to use, whether it was drawn). ``None`` draws a fresh 63-bit seed from
    the operating system's entropy (numpy's SeedSequence), as numpy's ``default_rng(None)``
    and scikit-learn's ``random_state=None`` do; it is recorded in ``est.params["seed"]``,
    so the estimate can still be reproduced bit for bit."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % (1 << 63)), True
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, or None for a fresh one "
                         f"(recorded in est.params['seed']), got {seed!r}")
    return int(seed), False


def check_k(n: int, k: int, *, what: str = "samples") -> None:
    """kNN estimators need 1 <= k < n."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n <= k:
        raise ValueError(f"need more {what} than neighbours: n={n} <= k={k}")


def warn_ties(var: Variable, *, threshold: float = 0.05,
              sorted_first: np.ndarray | None = None) -> float:
    """Warn when a continuous variable has many exactly tied rows; returns the fraction.
    ``sorted_first``: see ``tie_fraction``."""
    frac = tie_fraction(var.values, sorted_first)
    if frac > threshold:
        warnings.warn(
            f"{var.name} is treated as continuous but {frac:.0%} of its rows are exact "
            "duplicates: kNN estimators assume a density; use method='mixed' (Gao et al. "
            f"2017) or declare {var.name}_discrete=True",
            DataWarning,
            stacklevel=4,
        )
    return frac
