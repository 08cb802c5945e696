"""Both sides of Wang et al.'s Theorem 4 (NeurIPS 2024), measured, with intervals.

Theorem 4 as printed: for a representation Z = F(X),

    I(Z;A)  ≤  I(Z;C) − I(X;A|C).

A is drawn uniformly from K labels independently of the class C, so H(A|C) = H(A) =
log K and

    I(X;A|C) = H(A) − H(A|X,C) = log K − H(A|X,C) = I(X;A) + I(A;C|X),

while the paper's text writes the subtracted term as H(A|X,C), which is not the same
number. Both readings are computed here (``rhs`` with the identity above, ``rhs_text``
with H(A|X,C)); neither is assumed to hold. At Z = X the printed form reads
2·I(X;A) + I(A;C|X) ≤ I(X;C) ≤ H(C), i.e. 2·log K − H(A|X) − H(A|X,C) ≤ H(C), which
fails whenever A is nearly readable from X (``at_z_equals_x``).

What is measured (nats): I(Z;A), I(Z;C) by ``measure`` (probe: plug-in entropy minus a
held-out cross-entropy, a lower bound on Shannon's in expectation); H(A|X), H(A|X,C) by
``rank_transforms`` (held-out cross-entropies of CNNs: upper bounds on Shannon's). The
inequality is therefore checked for these usable-information (V-information) analogues,
the reading Wang et al.'s Appendix C extends the theorem to.

Errors: the terms come from fits on overlapping images whose correlations are not
estimated, so the standard error of a sum or difference is bounded by the sum of the
terms' standard errors (|a|·se_a + |b|·se_b + …, valid whatever the correlation; it is
conservative). A verdict is taken only on a whole 95 % interval: ``holds`` (gap =
rhs − lhs above 0), ``fails`` (below 0), ``undetermined`` (straddles 0).
"""

from __future__ import annotations

from dataclasses import dataclass

Z_95 = 1.959963984540054
VERDICTS = ("holds", "fails", "undetermined")


@dataclass(frozen=True)
class Value:
    """A number with its standard error (nats)."""

    value: float
    stderr: float

    def __post_init__(self) -> None:
        import math

        if not (math.isfinite(self.value) and math.isfinite(self.stderr)) or self.stderr < 0:
            raise ValueError(f"need a finite value and a finite stderr >= 0, got "
                             f"{self.value!r} ± {self.stderr!r}")


def linear(terms: list[tuple[float, Value]], constant: float = 0.0) -> Value:
    """constant + Σ coef·term, its stderr bounded by Σ |coef|·stderr (any correlation)."""
    return Value(constant + sum(c * t.value for c, t in terms),
                 sum(abs(c) * t.stderr for c, t in terms))


def verdict(gap: Value, z: float = Z_95) -> str:
    """``holds`` when gap − z·se > 0, ``fails`` when gap + z·se < 0, else
    ``undetermined`` (the gap is rhs − lhs of an inequality lhs ≤ rhs)."""
    if gap.value - z * gap.stderr > 0:
        return "holds"
    if gap.value + z * gap.stderr < 0:
        return "fails"
    return "undetermined"


def theorem4_sides(i_za: Value, i_zc: Value, h_axc: Value, log_k: float, *,
                   z: float = Z_95) -> dict:
    """Both sides of I(Z;A) ≤ I(Z;C) − I(X;A|C) for one representation.

    i_za, i_zc: I(Z;A), I(Z;C) of the representation; h_axc: H(A|X,C) of the data;
    log_k: log K of the transformation (nats). Returns a JSON-safe dict: ``lhs``,
    ``i_xa_given_c`` (= log K − H(A|X,C)), ``rhs``, ``gap`` (rhs − lhs) and ``verdict``;
    the same for the text's reading (``rhs_text``, ``gap_text``, ``verdict_text``) with
    H(A|X,C) in place of I(X;A|C); each as ``{"value", "stderr"}``."""
    i_xac = linear([(-1.0, h_axc)], constant=log_k)
    rhs = linear([(1.0, i_zc), (1.0, h_axc)], constant=-log_k)     # I(Z;C) − I(X;A|C)
    gap = linear([(1.0, i_zc), (1.0, h_axc), (-1.0, i_za)], constant=-log_k)
    rhs_text = linear([(1.0, i_zc), (-1.0, h_axc)])
    gap_text = linear([(1.0, i_zc), (-1.0, h_axc), (-1.0, i_za)])
    d = lambda v: {"value": v.value, "stderr": v.stderr}   # noqa: E731
    return {"lhs": d(i_za), "i_zc": d(i_zc), "h_axc": d(h_axc), "log_k": log_k,
            "i_xa_given_c": d(i_xac), "rhs": d(rhs), "gap": d(gap),
            "verdict": verdict(gap, z), "rhs_text": d(rhs_text), "gap_text": d(gap_text),
            "verdict_text": verdict(gap_text, z)}


def at_z_equals_x(h_ax: Value, h_axc: Value, log_k: float, h_c: float, *,
                  z: float = Z_95) -> dict:
    """The printed inequality at Z = X: 2·I(X;A) + I(A;C|X) ≤ I(X;C), with the left side
    2·log K − H(A|X) − H(A|X,C) and I(X;C) bounded above by H(C) (``h_c``, nats). The
    measured H's are upper bounds (cross-entropies), so the measured left side is a lower
    bound on the true one: ``fails`` here means the printed inequality fails for Z = X
    (up to sampling); ``holds`` only says lhs < H(C), not lhs ≤ I(X;C)."""
    lhs = linear([(-1.0, h_ax), (-1.0, h_axc)], constant=2 * log_k)
    gap = Value(h_c - lhs.value, lhs.stderr)
    v = verdict(gap, z)
    return {"lhs": {"value": lhs.value, "stderr": lhs.stderr}, "h_c": h_c,
            "gap": {"value": gap.value, "stderr": gap.stderr},
            "verdict": "not shown to fail" if v == "holds" else v}


__all__ = ["VERDICTS", "Value", "at_z_equals_x", "linear", "theorem4_sides", "verdict"]
