"""The information quantities of DESIGN §1, each by a primary and a second-opinion method.

``QUANTITIES`` maps a canonical name (``"I(A;Z)"``, ...) to a :class:`Quantity`: its
meaning and one function per method. A function takes a :class:`Context` (the features of
one transformation plus the fits shared between quantities) and returns an ``Estimate``.

Methods (``METHODS``):

- ``probe`` (primary): cross-fitted classifiers on the full features (McAllester & Stratos
  2020; Xu et al. 2020), from three fits shared by every quantity: q(a|z), q(c|z) and
  q(a|z,c) (per-class heads), with the plug-in surprisals -log p̂(a), -log p̂(c),
  -log p̂(a|c). Each fit is repeated over ``seeds`` seeds (folds, inner validation split);
  the reported value is the mean over seeds and its error adds the row-sampling error and
  the between-seed spread (``estimators.resampling.combine_seeds``; both parts in
  ``diagnostics``). Per row i, with nll the held-out losses and s the surprisals (nats):

      I(A;Z)   = < s_a − nll_a|z >          I(C;Z)   = < s_c − nll_c|z >
      I(A;C|Z) = < nll_a|z − nll_a|z,c >    I(A;Z|C) = < s_a|c − nll_a|z,c >
      I(A;C)   = < s_a − s_a|c >            synergy  = I(A;C|Z) − I(A;C)

  so I(A;Z|C) = I(A;Z) + I(A;C|Z) − I(A;C) holds exactly, and every error is a
  cluster-robust CLT error over images of the paired per-row terms (per seed).
- ``ross`` (second opinion): kNN estimators (Ross 2014 and its conditional forms, as in
  ``estimate_mi(method="ross")``) on the top principal components of Z, whitened, with
  grouped subsampling errors. kNN loses information spread over many dimensions (biased
  low), which is why it is the second opinion; ``measure`` flags where the two disagree
  beyond their errors.
- ``plugin``: I(A;C) from the labels alone (0 by construction: A is drawn independently of
  the image), reported with either method.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from ..estimators.probe import clustered_mean, cross_fit, plugin_surprisal
from ..estimators.ranges import range_flags
from ..estimators.resampling import combine_seeds, fit_seeds
from .features import Features
from ..types import Estimate

METHODS = ("probe", "ross")   # primary, second opinion
KNN_PCA_DIMS = 10             # principal components kept for the kNN second opinion
DISAGREE_Z = 2.0              # |probe − kNN| > DISAGREE_Z · combined stderr: flag it
PROBE_SEEDS = 3               # fits per probe (see PROBE_SEEDS_NOTE)
PROBE_SEEDS_NOTE = ("bundled digits checkpoint: the between-seed spread of the probe "
                    "quantities is of the order of their sampling error")


# ============================================================================== context
@dataclass
class Context:
    """The features of one transformation and everything the estimators share, computed
    on first use (so asking for one quantity fits only what it needs)."""

    f: Features
    seed: int = 0
    folds: int = 5
    family: str = "logistic"
    device: str = "cpu"
    k: int = 3
    pca_dims: int = KNN_PCA_DIMS
    subsamples: int = 20
    seeds: int = PROBE_SEEDS

    # ------------------------------------------------------------------ probe fits
    def _fit(self, target: np.ndarray, cond: np.ndarray | None) -> list:
        """One cross-fit per seed (the seed sets the folds, the inner split and the
        optimiser's start); fits of different targets with the same seed share folds, so
        their per-row losses pair."""
        return [cross_fit(self.f.z, target, c=cond, groups=self.f.image_id,
                          folds=self.folds, family=self.family, seed=s, device=self.device)
                for s in fit_seeds(self.seed, self.seeds)]

    @cached_property
    def fit_a_z(self):
        return self._fit(self.f.a, None)

    @cached_property
    def fit_c_z(self):
        return self._fit(self.f.c, None)

    @cached_property
    def fit_a_zc(self):
        return self._fit(self.f.a, self.f.c)

    @cached_property
    def knn_acz(self) -> Estimate:
        """kNN I(A;C|Z) on the principal components (used by I(A;C|Z) and synergy)."""
        return self.knn(self.f.a, self.f.c, self.z_pca, x_discrete=True, y_discrete=True)

    @cached_property
    def s_a(self) -> np.ndarray:
        return plugin_surprisal(self.f.a)

    @cached_property
    def s_c(self) -> np.ndarray:
        return plugin_surprisal(self.f.c)

    @cached_property
    def s_a_c(self) -> np.ndarray:
        return plugin_surprisal(self.f.a, self.f.c)

    def paired(self, terms: list[np.ndarray], method: str, estimator: str,
               fits: dict | None = None) -> Estimate:
        """An Estimate of mean(terms) from per-seed (n,) term arrays: per seed the mean and
        its cluster-robust error over images, combined over seeds by ``combine_seeds``;
        ``fits`` ({"CE(q(a|z))": [CrossFit per seed], ...}) go to params/diagnostics."""
        per_seed = [clustered_mean(t, self.f.image_id) for t in terms]
        ens = combine_seeds([v for v, _ in per_seed], [s for _, s in per_seed])
        stderr_method = "CLT on paired per-row terms, clustered by image"
        if len(terms) > 1:
            stderr_method += f", ⊕ spread over {len(terms)} fit seeds (t-inflated)"
        params = {"estimator": estimator, "stderr_method": stderr_method, "seed": self.seed}
        fits = fits or {}
        for fit in list(fits.values())[:1]:
            params.update({k: fit[0].params[k] for k in ("family", "folds", "split",
                                                         "calibrate")})
            params["seeds"] = len(fit)
        diag = {name: float(np.mean([f.nll.mean() for f in fit]))
                for name, fit in fits.items()}
        if len(terms) > 1:
            diag.update(ens.diagnostics())
        return Estimate(ens.value, ens.stderr, method=method, n=len(terms[0]), params=params,
                        diagnostics=diag)

    # ------------------------------------------------------------------ kNN inputs
    @cached_property
    def z_pca(self) -> np.ndarray:
        """(N, d') top principal components of z, each scaled to unit variance (d' ≤
        pca_dims; components with no variance are dropped; a collapsed z gives one
        zero column, for which every kNN estimate is ≈ 0)."""
        z = self.f.z.astype(np.float64)
        zc = z - z.mean(axis=0)
        var, vecs = np.linalg.eigh(zc.T @ zc / max(len(z) - 1, 1))   # (d,), (d, d)
        var, vecs = var[::-1], vecs[:, ::-1]                          # largest first
        keep = var > 1e-12 * max(var.sum(), np.finfo(float).tiny)
        keep[self.pca_dims:] = False
        if not keep.any():
            return np.zeros((len(z), 1))
        return (zc @ vecs[:, keep]) / np.sqrt(var[keep])

    def knn(self, x, y, cond=None, **kinds) -> Estimate:
        from ..estimators import estimate_mi

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = estimate_mi(x, y, cond, method="ross", k=self.k, seed=self.seed,
                              groups=self.f.image_id, subsamples=self.subsamples, **kinds)
        notes = sorted({str(w.message).split(":")[0] for w in caught})
        params = {**est.params, "pca_dims": int(self.z_pca.shape[1]), "whitened": True}
        return est.with_(params=params,
                         diagnostics={**est.diagnostics, **({"warnings": notes} if notes
                                                            else {})})


# =========================================================================== registry
@dataclass(frozen=True)
class Quantity:
    """A quantity of DESIGN §1: its meaning and one estimator per method."""

    name: str
    meaning: str
    estimators: dict[str, Callable[[Context], Estimate]]


def _plugin_ac(ctx: Context) -> Estimate:
    return ctx.paired([ctx.s_a - ctx.s_a_c], "plugin", "plug-in I(A;C) on the labels")


def _probe_az(ctx: Context) -> Estimate:
    return ctx.paired([ctx.s_a - f.nll for f in ctx.fit_a_z], "probe",
                      "plug-in H(A) - CE(q(a|z))", {"CE(q(a|z))": ctx.fit_a_z})


def _probe_cz(ctx: Context) -> Estimate:
    return ctx.paired([ctx.s_c - f.nll for f in ctx.fit_c_z], "probe",
                      "plug-in H(C) - CE(q(c|z))", {"CE(q(c|z))": ctx.fit_c_z})


def _probe_acz(ctx: Context) -> Estimate:
    return ctx.paired([f.nll - g.nll for f, g in zip(ctx.fit_a_z, ctx.fit_a_zc)], "probe",
                      "CE(q(a|z)) - CE(q(a|z,c))",
                      {"CE(q(a|z))": ctx.fit_a_z, "CE(q(a|z,c))": ctx.fit_a_zc})


def _probe_azc(ctx: Context) -> Estimate:
    return ctx.paired([ctx.s_a_c - f.nll for f in ctx.fit_a_zc], "probe",
                      "plug-in H(A|C) - CE(q(a|z,c))", {"CE(q(a|z,c))": ctx.fit_a_zc})


def _probe_synergy(ctx: Context) -> Estimate:
    terms = [(f.nll - g.nll) - (ctx.s_a - ctx.s_a_c)
             for f, g in zip(ctx.fit_a_z, ctx.fit_a_zc)]
    return ctx.paired(terms, "probe", "I(A;C|Z) - I(A;C), paired per row",
                      {"CE(q(a|z))": ctx.fit_a_z, "CE(q(a|z,c))": ctx.fit_a_zc})


def _ross_az(ctx: Context) -> Estimate:
    return ctx.knn(ctx.f.a, ctx.z_pca, x_discrete=True)


def _ross_cz(ctx: Context) -> Estimate:
    return ctx.knn(ctx.f.c, ctx.z_pca, x_discrete=True)


def _ross_acz(ctx: Context) -> Estimate:
    return ctx.knn_acz


def _ross_azc(ctx: Context) -> Estimate:
    return ctx.knn(ctx.f.a, ctx.z_pca, ctx.f.c, x_discrete=True, cond_discrete=True)


def _ross_synergy(ctx: Context) -> Estimate:
    acz, ac = _ross_acz(ctx), _plugin_ac(ctx)
    se = None if acz.stderr is None else math.hypot(acz.stderr, ac.stderr or 0.0)
    return Estimate(acz.value - ac.value, se, method="ross", n=acz.n,
                    params={**acz.params, "estimator": "kNN I(A;C|Z) - plug-in I(A;C)",
                            "stderr_method": "kNN and plug-in errors added in quadrature"},
                    diagnostics=acz.diagnostics)


QUANTITIES: dict[str, Quantity] = {q.name: q for q in [
    Quantity("I(A;C)", "sanity check: 0 by construction (A drawn independently)",
             {"plugin": _plugin_ac}),
    Quantity("I(A;Z)", "transformation information kept by Z (equivariance)",
             {"probe": _probe_az, "ross": _ross_az}),
    Quantity("I(C;Z)", "class information in Z",
             {"probe": _probe_cz, "ross": _ross_cz}),
    Quantity("I(A;C|Z)", "explaining-away term at the feature level",
             {"probe": _probe_acz, "ross": _ross_acz}),
    Quantity("I(A;Z|C)", "transformation information given the class "
             "(= I(A;Z) + I(A;C|Z) - I(A;C))", {"probe": _probe_azc, "ross": _ross_azc}),
    Quantity("synergy", "I(A;C|Z) - I(A;C) = minus the co-information",
             {"probe": _probe_synergy, "ross": _ross_synergy}),
]}


# ============================================================================ running
def estimate_quantities(ctx: Context, quantities, methods) -> list[Estimate]:
    """Every requested quantity by every requested method it has (plus the plug-in
    I(A;C), whatever the methods); each Estimate carries the transformation and layer."""
    out = []
    for name in quantities:
        for method, fn in QUANTITIES[name].estimators.items():
            if method in methods or method == "plugin":
                est = fn(ctx)
                out.append(est.with_(quantity=name, params={
                    **est.params, "transformation": ctx.f.transformation,
                    "layer": ctx.f.layer}))
    return out


# ======================================================================= range checks
def _entropy(ctx: Context, surprisal: np.ndarray, labels: np.ndarray) -> float:
    """Plug-in entropy (nats) from per-row surprisals, with Miller-Madow's (K-1)/(2n)."""
    return float(surprisal.mean() + (len(np.unique(labels)) - 1) / (2 * len(labels)))


# quantity -> (lower bound or None, names of the entropies whose minimum is the ceiling)
BOUNDS: dict[str, tuple[float | None, tuple[str, ...]]] = {
    "I(A;C)": (0.0, ("H(A)", "H(C)")),
    "I(A;Z)": (0.0, ("H(A)",)),
    "I(C;Z)": (0.0, ("H(C)",)),
    "I(A;C|Z)": (0.0, ("H(A)", "H(C)")),
    "I(A;Z|C)": (0.0, ("H(A|C)",)),
    "synergy": (None, ("H(A)", "H(C)")),   # minus a co-information: may be negative
}


def range_checks(ctx: Context, estimates: list[Estimate]) -> list[dict]:
    """Flags for estimates of ``ctx``'s transformation that lie outside what the quantity
    can be (below 0 or above the entropy that bounds it) beyond their 95 % interval."""
    h = {"H(A)": _entropy(ctx, ctx.s_a, ctx.f.a), "H(C)": _entropy(ctx, ctx.s_c, ctx.f.c),
         "H(A|C)": _entropy(ctx, ctx.s_a_c, ctx.f.a)}
    flags = []
    for e in estimates:
        if e.quantity not in BOUNDS:
            continue
        lower, names = BOUNDS[e.quantity]
        name = min(names, key=h.get)
        for f in range_flags(e, lower=lower, upper=h[name], upper_name=f"{name} = {h[name]:.3f}",
                             context=f"{e.quantity} [{ctx.f.transformation}, {e.method}]"):
            f["transformation"] = ctx.f.transformation
            f["method"] = e.method
            f["message"] = f["message"].replace(f"{e.quantity} [{ctx.f.transformation}, "
                                                f"{e.method}]: {e.quantity} =",
                                                f"{e.quantity} [{ctx.f.transformation}, "
                                                f"{e.method}] =")
            flags.append(f)
    return flags


# Quantities estimated as a difference of two held-out cross-entropies.
DIFFERENCE_QUANTITIES = frozenset({"I(A;C|Z)", "synergy"})


def disagreements(estimates: list[Estimate], z: float = DISAGREE_Z) -> list[dict]:
    """Quantities whose probe and kNN estimates differ by more than ``z`` combined
    standard errors (a flag for the reader, not a correction)."""
    flags = []
    by_key: dict[tuple, dict[str, Estimate]] = {}
    for e in estimates:
        by_key.setdefault((e.params.get("transformation"), e.quantity), {})[e.method] = e
    for (t, q), ests in by_key.items():
        p, k = ests.get("probe"), ests.get("ross")
        if p is None or k is None or p.stderr is None or k.stderr is None:
            continue
        se = math.hypot(p.stderr, k.stderr)
        score = abs(p.value - k.value) / se if se > 0 else math.inf
        if score > z and abs(p.value - k.value) > 1e-9:
            if q in DIFFERENCE_QUANTITIES:
                # A difference of two cross-entropy bounds is not itself a bound: a probe
                # family that fits q(a|z) worse than q(a|z,c) overstates it, and kNN on a
                # few principal components understates it. Say both; decide neither.
                why = ("a difference of two probe bounds is not a bound (a misspecified "
                       "q(a|z) inflates it), and kNN on "
                       f"{k.params.get('pca_dims')} principal components can miss "
                       "information spread over more dimensions")
            elif k.value < p.value:
                why = (f"kNN on {k.params.get('pca_dims')} principal components misses "
                       "information spread over more dimensions")
            else:
                why = (f"the {p.params.get('family', 'probe')} probe (a lower bound) misses "
                       "structure that kNN sees")
            flags.append({
                "kind": "disagreement", "quantity": q, "transformation": t,
                "probe": p.value, "ross": k.value, "z": score,
                "message": f"{q} [{t}]: probe {p.value:.3f} ± {p.stderr:.3f} and kNN "
                           f"{k.value:.3f} ± {k.stderr:.3f} disagree (z = {score:.1f}); "
                           f"{why}"})
    return flags


__all__ = ["BOUNDS", "Context", "DISAGREE_Z", "KNN_PCA_DIMS", "METHODS", "PROBE_SEEDS",
           "QUANTITIES", "Quantity", "disagreements", "estimate_quantities", "range_checks"]
