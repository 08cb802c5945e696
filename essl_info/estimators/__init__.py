"""Mutual-information and entropy estimators behind one entry point.

``estimate_mi(x, y, cond=None, ...)`` validates the inputs (``inputs.py``), picks the method
(``registry.py``; ``method="auto"`` records its choice in ``Estimate.method``), and calls the
registered implementation. All values are in nats and signed.

Methods (see ``MI_METHODS`` for the live list, each with its paper):
``plugin`` (discrete.py), ``ksg``/``ksg2``/``ross``/``mixed`` and conditional forms (knn.py),
``npeet`` (reference.py), ``probe`` (probe.py), ``infonce``/``nwj``/``mine``/``smile``
(neural.py, bounds as pure functions in bounds.py), ``gcmi`` (gcmi.py, Gaussian-copula MI)
and ``gcmi-infonce`` (auto.py: the larger of GCMI and InfoNCE, where ``auto`` picks a
critic).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import warnings

import numpy as np

from ..types import Estimate
from .inputs import (DataWarning, Variable, Variables, check_k, prepare_variable,
                     prepare_variables)
from .ranges import range_flags, warn_flags
from .registry import (
    AUTO_RULES,
    ENTROPY_METHODS,
    MI_METHODS,
    choose_method,
    methods_supporting,
    register_entropy,
    register_mi,
)

# Modules that register methods on import, in the order their auto rules should apply.
_METHOD_MODULES = ("discrete", "knn", "reference", "probe", "neural", "auto")
for _mod in _METHOD_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:  # pragma: no cover - only while a module is missing
        if _e.name != f"{__name__}.{_mod}":
            raise


def _check_params(spec, params: dict) -> None:
    """Unknown keyword arguments are a user mistake: a ValueError naming them and the
    options the method takes (not a TypeError from deep inside)."""
    known = _keyword_options(spec.fn)
    if known is None:
        return
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"method {spec.name!r} does not take {unknown}; its options are "
                         f"{sorted(known) or 'none'}")


@functools.lru_cache(maxsize=None)
def _keyword_options(fn) -> frozenset | None:
    """The keyword-only options of an estimator function (None: it takes ``**kwargs``),
    read once per function (``inspect.signature`` costs ~0.1 ms a call)."""
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return frozenset(n for n, p in sig.parameters.items()
                     if p.kind is p.KEYWORD_ONLY and n not in ("k", "seed", "progress"))


def _constant(var: Variable) -> bool:
    """All rows identical: the variable carries no information."""
    if var.discrete:
        return var.n_categories == 1
    if len(var.values) > 1 and (var.values[-1] != var.values[0]).any():
        return False  # the usual case, without a pass over every row
    return bool(np.all(var.values == var.values[:1]))


def _ceiling(v: Variables) -> tuple[float | None, str]:
    """Upper bound of I(x;y[|cond]) when x or y is discrete: its entropy (plug-in with the
    Miller-Madow correction, the smaller of the two), in nats."""
    best, name = None, ""
    for var in (v.x, v.y):
        if var.discrete:
            counts = np.bincount(var.codes)
            counts = counts[counts > 0]
            p = counts / counts.sum()
            h = float(-(p * np.log(p)).sum() + (len(counts) - 1) / (2 * v.n))
            if best is None or h < best:
                best, name = h, f"H({var.name}) = {h:.3f}"
    return best, name


def _default_quantity(v: Variables, entropy: bool = False) -> str:
    if entropy:
        return "H(X)"
    return "I(X;Y|Z)" if v.cond is not None else "I(X;Y)"


def estimate_mi(
    x,
    y,
    cond=None,
    *,
    x_discrete: bool = False,
    y_discrete: bool = False,
    cond_discrete: bool = False,
    method: str = "auto",
    k: int = 3,
    seed: int | None = 0,
    quantity: str | None = None,
    progress=None,
    **params,
) -> Estimate:
    """Estimate I(x; y) or, with ``cond``, I(x; y | cond), in nats (signed).

    Parameters
    ----------
    x, y : array-like, shape (n,) or (n, d)
        Samples, one row per observation. Discrete variables are integer labels (a
        multi-column discrete array is one joint label per row).
    cond : array-like, shape (n,) or (n, d), optional
        Conditioning variable.
    x_discrete, y_discrete, cond_discrete : bool
        Declare which variables are discrete; never inferred.
    method : str
        A key of ``MI_METHODS`` or ``"auto"`` (chosen by the kinds and dimensions of the
        variables; the choice is recorded in ``est.method`` and ``est.diagnostics``).
    k : int
        Number of neighbours for kNN methods (ignored by the others).
    seed : int or None
        Seeds every random choice (tie-breaking noise, subsamples, splits, initialisation).
        ``None`` draws a fresh seed, recorded in ``est.params["seed"]`` (and
        ``est.diagnostics["seed_drawn"]``), so that the value can be reproduced.
    quantity : str, optional
        Name to put in ``est.quantity`` (e.g. ``"I(A;Z)"``); default ``"I(X;Y)"``.
    progress : None, bool or callable, optional
        Signs of life on long estimates: ``True`` shows a line on stderr (elapsed time,
        and the method's steps where it reports them), a callable receives
        ``(done, total, stage)``; see ``essl_info.estimators.progress``.
    **params
        Method-specific options (documented with each method).

    Returns
    -------
    Estimate
    """
    v = prepare_variables(x, y, cond, x_discrete=x_discrete, y_discrete=y_discrete,
                          cond_discrete=cond_discrete)
    diagnostics_extra = {}
    rule = None
    if method == "auto":
        rule = choose_method(v)
        method = rule.method
        diagnostics_extra = {"auto": True, "auto_reason": rule.reason}
        if rule.evidence is not None:
            diagnostics_extra["auto_evidence"] = rule.evidence(v)
    if method not in MI_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(MI_METHODS)} "
                         "or 'auto'")
    spec = MI_METHODS[method]
    if not spec.supports(v):
        able = methods_supporting(v)
        raise ValueError(
            f"method {method!r} cannot estimate MI for {v.describe()}; "
            + (f"methods that can: {able}" if able else "no registered method can")
        )
    if spec.uses_k:
        check_k(v.n, k)
    seed, spec = _prepared(spec, seed, progress, f"estimate_mi {method} n={v.n}")
    _check_params(spec, params)
    name = quantity or _default_quantity(v)
    for var in (v.x, v.y):
        if _constant(var):
            # I(X;Y|Z) = 0 exactly when X or Y is constant; kNN and probe estimators would
            # return their small-sample bias (Gao's gives log n - psi(n) ~ 1/(2n) on
            # identical rows) with a zero-width interval that excludes the truth
            warnings.warn(f"{var.name} is constant (all {v.n} rows identical): it carries no "
                          f"information, so {name} = 0 exactly", DataWarning, stacklevel=2)
            return Estimate(0.0, 0.0, method=method, n=v.n, quantity=name,
                            params={"seed": seed, "stderr_method": "exact (constant input)"},
                            diagnostics={**diagnostics_extra,
                                         "degenerate": f"{var.name} is constant"})
    est = spec.fn(v, k=k, seed=seed, **params)
    if rule is not None and rule.second is not None:
        other = MI_METHODS[rule.second].fn(v, k=k, seed=seed)
        diagnostics_extra["second_opinion"] = {"method": rule.second, "value": other.value,
                                               "stderr": other.stderr}
    est = est.with_(method=method, quantity=name,
                    diagnostics={**est.diagnostics, **diagnostics_extra})
    upper, upper_name = _ceiling(v)
    flags = range_flags(est, lower=0.0, upper=upper, upper_name=upper_name)
    if flags:
        warn_flags(flags)
        est = est.with_(diagnostics={**est.diagnostics,
                                     "flags": [f["message"] for f in flags]})
    return est


def estimate_entropy(
    x,
    *,
    discrete: bool = False,
    method: str = "auto",
    k: int = 3,
    seed: int | None = 0,
    quantity: str | None = None,
    progress=None,
    **params,
) -> Estimate:
    """Estimate the entropy H(x) in nats: plug-in (optionally Miller-Madow) for discrete x,
    Kozachenko-Leonenko (``"kl"``) for continuous x (a differential entropy, may be < 0)."""
    xv = prepare_variable("x", x, discrete=discrete)
    v = Variables(xv, xv, None, len(xv.values))
    if method == "auto":
        method = "plugin" if discrete else "kl"
    if method not in ENTROPY_METHODS:
        raise ValueError(f"unknown entropy method {method!r}; choose one of "
                         f"{sorted(ENTROPY_METHODS)} or 'auto'")
    spec = ENTROPY_METHODS[method]
    if not spec.supports(v):
        able = [m for m, s in ENTROPY_METHODS.items() if s.supports(v)]
        raise ValueError(f"entropy method {method!r} cannot handle {xv.kind} x; use {able}")
    if spec.uses_k:
        check_k(v.n, k)
    seed, spec = _prepared(spec, seed, progress, f"estimate_entropy {method} n={v.n}")
    _check_params(spec, params)
    est = spec.fn(v, k=k, seed=seed, **params)
    return est.with_(method=method, quantity=quantity or "H(X)")


def _prepared(spec, seed, progress, desc: str):
    """(the seed to use, a spec whose ``fn`` runs the method with ``progress`` and records
    the seed). ``seed=None`` draws a fresh seed (``inputs.resolve_seed``), recorded in
    ``est.params["seed"]`` with ``est.diagnostics["seed_drawn"]``; ``progress`` is passed
    down where the method takes a keyword-only ``progress`` argument, otherwise reported
    around the call (``progress.py``)."""
    import dataclasses
    import functools

    from .inputs import resolve_seed
    from .progress import accepts_progress, progress_callback

    seed, drawn = resolve_seed(seed)
    fn = spec.fn

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with progress_callback(progress, desc) as report:
            if report is not None and accepts_progress(fn):
                kwargs["progress"] = report
            est = fn(*args, **kwargs)
        return est.with_(params={**est.params, "seed": kwargs.get("seed", seed)},
                         diagnostics={**est.diagnostics,
                                      **({"seed_drawn": True} if drawn else {})})

    return seed, dataclasses.replace(spec, fn=run)


__all__ = [
    "AUTO_RULES",
    "DataWarning",
    "ENTROPY_METHODS",
    "MI_METHODS",
    "estimate_entropy",
    "estimate_mi",
    "register_entropy",
    "register_mi",
]
