"""Which transformations to make invariant and which equivariant, decided from data
measurements (Xie et al., CVPR-W 2022, ask for "a handy mechanism" to make this choice;
this is one, read from Wang et al.'s theory, not Xie et al.'s own procedure).

The rule, applied to each candidate's ``rank_transforms`` verdict (measured before any
training, from Ĥ_V(A|X) and Î_V(A;C|X) with their standard errors):

- ``synergistic`` (I(A;C|X) above the tolerance by 2 standard errors: predicting A needs
  the class) → **equivariant**: predict it (``--transforms``); a scale-valued
  transformation (``rotate_angle``, ``blur_sigma``, ``brightness``) also gets the
  order-preserving loss (``--order-weight``), our reading of Xie et al.
- ``lossless/shortcut`` (A readable from X alone: no synergy possible since I(A;C|X) ≤
  H(A|X)), ``class-irrelevant`` (the class does not resolve A) and ``uninformative`` (A
  invisible) → **invariant**: predicting it teaches no class features, so it serves as an
  augmentation of the SSL views (``--invariant``), where it can only remove nuisance.
- ``undetermined`` (an interval straddles a threshold, or the fits disagree) and ``learned
  nothing`` (the predictors beat no uniform guess) → **invariant** as well: no evidence of
  synergy, and the rule calls equivariant only what the evidence shows.

The decision is no better than its evidence: it inherits the estimates' error bars (a
transformation whose Î_V(A;C|X) is not clearly positive is called invariant), and the
predictor family of ``rank_transforms`` (small CNNs) defines what "readable" means.
"""

from __future__ import annotations

from ..data import get_transformation
from ..types import Report

ROLES = {"synergistic": "equivariant", "lossless/shortcut": "invariant",
         "class-irrelevant": "invariant", "uninformative": "invariant",
         "undetermined": "invariant", "learned nothing": "invariant"}


def choose_roles(report: Report) -> list[dict]:
    """One dict per candidate of a ``rank_transforms`` report: transformation, verdict,
    role (``"equivariant"`` | ``"invariant"``), loss (``"ce"``, ``"ce+order"`` or None)
    and the reason (the verdict's)."""
    ranking = (report.extra or {}).get("ranking")
    if not ranking:
        raise ValueError("choose_roles needs a rank_transforms report (extra['ranking'])")
    out = []
    for r in ranking:
        role = ROLES[r["verdict"]]
        scale = get_transformation(r["transformation"]).scale_valued
        loss = None if role == "invariant" else ("ce+order" if scale else "ce")
        out.append({"transformation": r["transformation"], "verdict": r["verdict"],
                    "role": role, "loss": loss, "reason": r["reason"]})
    return out


def train_flags(choices: list[dict]) -> list[str]:
    """The ``essl-info train`` options that realise ``choices``."""
    eq = [c["transformation"] for c in choices if c["role"] == "equivariant"]
    inv = [c["transformation"] for c in choices if c["role"] == "invariant"]
    flags = ["--transforms", ",".join(eq)] if eq else ["--lambda", "0"]
    if inv:
        flags += ["--invariant", ",".join(inv)]
    if any(c["loss"] == "ce+order" for c in choices):
        flags += ["--order-weight", "1"]
    return flags


def format_choices(choices: list[dict]) -> str:
    lines = [f"{c['transformation']:<14} {c['role']:<12} {c['loss'] or '-':<9} "
             f"({c['verdict']}) {c['reason']}" for c in choices]
    return "\n".join(["choice (rule: synergistic -> equivariant, otherwise invariant; "
                      "essl_info.diagnostics.choice)", *lines,
                      "train with: " + " ".join(train_flags(choices))])


__all__ = ["ROLES", "choose_roles", "format_choices", "train_flags"]
