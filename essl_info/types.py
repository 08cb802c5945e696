"""Plain result types shared by the whole package.

This module imports nothing from ``essl_info``: every other module may import it.
All information values are in **nats** and **signed**: an estimator's negative value is
reported as is (a clipped view, where shown, is shown beside it, never instead of it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


def _json_safe(obj: Any) -> Any:
    """Convert numpy / torch scalars, tuples and nested containers to JSON types."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    # numpy / torch scalars and small arrays, without importing either here
    if hasattr(obj, "tolist"):
        return _json_safe(obj.tolist())
    if hasattr(obj, "item"):
        return _json_safe(obj.item())
    return str(obj)


@dataclass(frozen=True, eq=False)
class Estimate:
    """One estimated information quantity, with its uncertainty and provenance.

    Attributes
    ----------
    value : float
        The estimate in nats, signed (never clipped at 0).
    stderr : float | None
        Standard error in nats (how it was obtained is in ``params["stderr_method"]``).
    ci : (float, float) | None
        95 % confidence interval in nats.
    method : str
        The estimator that produced ``value`` (for ``method="auto"`` the method chosen).
    params : dict
        Everything needed to reproduce the value (k, seed, backend, split scheme, ...).
    n : int
        Number of samples (rows) the estimate used.
    quantity : str
        Canonical name, e.g. ``"I(X;Y)"``, ``"I(A;C|Z)"``, ``"H(X)"``.
    diagnostics : dict
        Extra information for the careful reader (ties, ceilings, timings, warnings).
    """

    value: float
    stderr: float | None = None
    ci: tuple[float, float] | None = None
    method: str = ""
    params: dict = field(default_factory=dict)
    n: int = 0
    quantity: str = "I(X;Y)"
    diagnostics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.value, (int, float)) or not math.isfinite(float(self.value)):
            raise ValueError(f"Estimate.value must be a finite number, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))
        if self.stderr is not None:
            se = float(self.stderr)
            if not math.isfinite(se) or se < 0:
                raise ValueError(f"Estimate.stderr must be finite and >= 0, got {self.stderr!r}")
            object.__setattr__(self, "stderr", se)
            if self.ci is None:
                object.__setattr__(self, "ci", (self.value - Z_95 * se, self.value + Z_95 * se))
        if self.ci is not None:
            lo, hi = (float(self.ci[0]), float(self.ci[1]))
            object.__setattr__(self, "ci", (lo, hi))

    # ------------------------------------------------------------------ helpers
    def with_(self, **changes: Any) -> "Estimate":
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return replace(self, **changes)

    @property
    def clipped(self) -> float:
        """max(value, 0): a view for plots; the estimate itself stays signed."""
        return max(self.value, 0.0)

    def to_dict(self) -> dict:
        """JSON-safe dict (numbers as floats/ints, tuples as lists)."""
        d = asdict(self)
        return _json_safe(d)

    def __str__(self) -> str:
        err = f" ± {self.stderr:.3f}" if self.stderr is not None else ""
        tag = self.method
        if "k" in self.params:
            tag += f" k={self.params['k']}"
        return f"{self.quantity} = {self.value:.3f}{err} nats  [{tag}, n={self.n}]"


@dataclass(frozen=True, eq=False)
class Report:
    """A set of estimates about one checkpoint (``measure``) or one dataset
    (``rank_transforms``), with the provenance needed to reproduce them."""

    estimates: Sequence[Estimate]
    checkpoint: str | None = None
    dataset: str | None = None
    provenance: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The object ``essl-info ... --json`` prints (DESIGN §4)."""
        return _json_safe(
            {
                "checkpoint": self.checkpoint,
                "dataset": self.dataset,
                "estimates": [e.to_dict() for e in self.estimates],
                "provenance": dict(self.provenance),
                **({"extra": dict(self.extra)} if self.extra else {}),
            }
        )

    def get(self, quantity: str, method: str | None = None) -> Estimate:
        """The first estimate of ``quantity`` (optionally produced by ``method``)."""
        for e in self.estimates:
            if e.quantity == quantity and (method is None or e.method == method):
                return e
        raise KeyError(f"no estimate of {quantity!r}" + (f" by {method!r}" if method else ""))
