"""``npeet``: delegate to npeet-plus (Ver Steeg's NPEET), for cross-checks.

npeet-plus works in bits by default; we pass ``base=e`` so values are in nats. It breaks
ties by adding 1e-10 uniform noise drawn from numpy's *global* RNG; we seed that RNG with
``seed`` for the call and restore its previous state afterwards, so the caller's global
random state is untouched and results are reproducible.

Dispatch: continuous x, y -> ``mi`` (KSG 1, max-norm; a continuous cond -> its
Frenzel-Pompe form); all discrete -> ``midd``; one label and one continuous vector ->
``micd`` (entropy differences; note that npeet-plus returns |value| there, so that estimate
is clipped at 0 -- recorded in the diagnostics). No standard error (npeet has none).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..types import Estimate
from .inputs import Variables
from .registry import register_mi

REF_NPEET = "npeet-plus (Ver Steeg, NPEET), https://github.com/gregversteeg/NPEET"


@contextlib.contextmanager
def seeded_global_numpy_rng(seed: int):
    """Seed numpy's global RNG for the duration of the block, then restore its state."""
    state = np.random.get_state()
    np.random.seed(int(seed) % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def _supported(v: Variables) -> bool:
    kinds = {v.x.discrete, v.y.discrete}
    if kinds == {False}:
        return v.cond is None or not v.cond.discrete
    if kinds == {True}:
        return v.cond is None or v.cond.discrete
    return v.cond is None or v.cond.discrete


@register_mi("npeet", supports=_supported, symmetric=True, reference=REF_NPEET)
def _npeet(v: Variables, *, k: int, seed: int) -> Estimate:
    """npeet-plus ``mi`` / ``midd`` / ``micd`` in nats (cross-check; no stderr)."""
    import npeet_plus

    z = None if v.cond is None else (v.cond.codes[:, None] if v.cond.discrete
                                      else v.cond.values)
    diag = {}
    with seeded_global_numpy_rng(seed):
        if not v.x.discrete and not v.y.discrete:
            fn = "mi"
            value = npeet_plus.mi(v.x.values, v.y.values, z=z, k=k, base=np.e)
        elif v.x.discrete and v.y.discrete:
            fn = "midd"
            value = npeet_plus.midd(v.x.codes[:, None], v.y.codes[:, None], z=z, base=np.e)
        else:
            fn = "micd"
            cont, lab = (v.y, v.x) if v.x.discrete else (v.x, v.y)
            value = npeet_plus.micd(cont.values, lab.codes[:, None], z=z, k=k, base=np.e,
                                    warning=False)
            diag["clipped"] = "npeet_plus.micd returns |I|"
    return Estimate(float(value), None, n=v.n, params={"k": k, "seed": seed, "function": fn},
                    diagnostics=diag)
