"""Registries of estimators and the dispatch behind ``estimate_mi`` / ``estimate_entropy``.

An estimator module registers each method once::

    @register_mi("ksg", supports=continuous_pair, symmetric=True,
                 reference="Kraskov, Stoegbauer, Grassberger 2004, estimator 1")
    def _ksg(v: Variables, *, k: int, seed: int, **params) -> Estimate: ...

``supports(v) -> bool`` says which mixes of discrete/continuous x, y, cond a method can do;
``estimate_mi`` uses it to reject impossible requests with a message naming a method that
can. ``method="auto"`` walks the declarative ``AUTO_RULES`` list (first match wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..types import Estimate
from .inputs import Variables

MIFunction = Callable[..., Estimate]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: MIFunction
    supports: Callable[[Variables], bool]
    symmetric: bool
    uses_k: bool
    reference: str
    summary: str


MI_METHODS: dict[str, MethodSpec] = {}
ENTROPY_METHODS: dict[str, MethodSpec] = {}


def register_mi(
    name: str,
    *,
    supports: Callable[[Variables], bool],
    symmetric: bool = False,
    uses_k: bool = True,
    reference: str = "",
    summary: str = "",
):
    """Decorator: add an MI / CMI estimator to ``MI_METHODS``."""

    def deco(fn: MIFunction) -> MIFunction:
        if name in MI_METHODS:
            raise RuntimeError(f"MI method {name!r} registered twice")
        MI_METHODS[name] = MethodSpec(name, fn, supports, symmetric, uses_k, reference,
                                      summary or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def register_entropy(name: str, *, discrete: bool | None, uses_k: bool = True,
                     reference: str = "", summary: str = ""):
    """Decorator: add an entropy estimator. ``discrete``: True / False / None (both)."""

    def supports(v: Variables) -> bool:
        return discrete is None or v.x.discrete == discrete

    def deco(fn: MIFunction) -> MIFunction:
        if name in ENTROPY_METHODS:
            raise RuntimeError(f"entropy method {name!r} registered twice")
        ENTROPY_METHODS[name] = MethodSpec(name, fn, supports, False, uses_k, reference,
                                           summary or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


# ----------------------------------------------------------------- support predicates
def all_discrete(v: Variables) -> bool:
    return v.x.discrete and v.y.discrete and (v.cond is None or v.cond.discrete)


def continuous_pair(v: Variables) -> bool:
    """x, y continuous; cond absent, continuous, or discrete (handled by strata)."""
    return not v.x.discrete and not v.y.discrete


def one_discrete_one_continuous(v: Variables) -> bool:
    return v.x.discrete != v.y.discrete


# ----------------------------------------------------------------- auto selection
@dataclass(frozen=True)
class AutoRule:
    """``when(v)`` selects ``method``; ``evidence(v)`` (optional) returns the numbers behind
    the choice for ``diagnostics["auto_evidence"]``; ``second`` (optional) names a method
    that ``estimate_mi`` also runs, with its defaults, as a second opinion."""

    when: Callable[[Variables], bool]
    method: str
    reason: str
    evidence: Callable[[Variables], dict] | None = None
    second: str | None = None


HIGH_DIM = 20  # above this many continuous dimensions kNN loses most of the information

AUTO_RULES: list[AutoRule] = []  # filled by the estimator modules, in priority order


def add_auto_rule(when: Callable[[Variables], bool], method: str, reason: str, *,
                  priority: int | None = None, before: str | None = None,
                  evidence: Callable[[Variables], dict] | None = None,
                  second: str | None = None) -> None:
    """Append a rule, or insert it at index ``priority``, or before the first rule that
    selects the method ``before``."""
    rule = AutoRule(when, method, reason, evidence, second)
    if before is not None:
        priority = next((i for i, r in enumerate(AUTO_RULES) if r.method == before), None)
    if priority is None:
        AUTO_RULES.append(rule)
    else:
        AUTO_RULES.insert(priority, rule)


def choose_method(v: Variables) -> AutoRule:
    for rule in AUTO_RULES:
        if rule.method in MI_METHODS and rule.when(v):
            return rule
    raise ValueError(f"no estimator can handle {v.describe()}; "
                     f"available methods: {sorted(MI_METHODS)}")


def methods_supporting(v: Variables) -> list[str]:
    return [name for name, spec in MI_METHODS.items() if spec.supports(v)]
