"""Cross-entropy ("probe") estimates of mutual information with a discrete target.

For a discrete target T and inputs Z, any predictor q(t|z) fitted without the evaluation
rows gives the difference-of-entropies bound (McAllester & Stratos 2020, "Formal limitations
on the measurement of mutual information", §5; Xu et al. 2020, "A theory of usable
information"):

    I(T;Z) = H(T) - H(T|Z)  >=  H(T) - CE_heldout(q(t|z))          (nats)

because CE(q) = H(T|Z) + KL(p(t|z) || q(t|z)). Unlike InfoNCE it is not capped at log N, and it
is what E-SSL training optimises for the transformation (I(A;Z) >= log K - CE).

Estimation scheme (recorded in ``Estimate.params``):
- k-fold **cross-fitting** (Chernozhukov et al. 2018): every row's loss -log q(t_i|z_i) comes
  from a probe that never saw the row, nor any row of its group (``groups=``: all transformed
  copies of one image stay on one side of every split).
- inside each training fold an inner, grouped validation split chooses the L2 penalty and
  (``calibrate=True``) a softmax temperature (Guo et al. 2017); the logistic probe is then
  refitted on the whole training fold.
- Î = mean_i psi_i with psi_i = -log p̂(t_i) - nll_i (so the plug-in Ĥ(T) and the CE are
  paired), stderr from the CLT on psi, clustered by group (rows of one image are correlated).

Conditional forms: with discrete C, I(T;Z|C) = Ĥ(T|C) - CE(q(t|z,c)); with continuous C,
I(T;Z|C) = CE(q(t|c)) - CE(q(t|z,c)), both losses on the same held-out rows (paired
stderr). I(A;C|Z) for discrete A, C and features Z is the second form with the roles
(T, Z, C) = (A, C, Z). A discrete input enters the logistic probe as per-category intercepts
and (``cond_mode="interact"``, default) per-category weights, i.e. one head per category
sharing an L2-shrunk common part.

Public helpers for paired quantities (``measure``): :func:`assign_folds`, :func:`cross_fit`,
:func:`cross_fitted_nll`, :func:`probe_mi`, :func:`paired_difference`, :func:`clustered_mean`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np

from ..types import Estimate
from .classifiers import torch_threads
from .inputs import Variable, Variables, prepare_variable
from .probe_families import PROBE_FAMILIES, FoldData, resolve_device
from .registry import HIGH_DIM, add_auto_rule, register_mi

STDERR_METHOD = "CLT on per-row held-out terms"


# ---------------------------------------------------------------- splits and errors
def _group_ids(groups, n: int) -> np.ndarray:
    """(n,) int64 group codes 0..G-1; each row its own group when ``groups`` is None."""
    if groups is None:
        return np.arange(n, dtype=np.int64)
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise ValueError(f"groups must have shape ({n},), got shape {g.shape}")
    if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
        raise ValueError("groups contains NaN/inf ids")
    return np.unique(g, return_inverse=True)[1].astype(np.int64).reshape(-1)


def assign_folds(n: int, folds: int = 5, *, groups=None, seed: int = 0) -> np.ndarray:
    """(n,) fold id in 0..folds-1 for each row; all rows of a group share a fold.

    Groups are put in a seeded random order and cut into ``folds`` runs of about n/folds rows
    (balanced to within one group's size).
    """
    if not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    gid = _group_ids(groups, n)
    n_groups = int(gid.max()) + 1
    if n_groups < folds:
        raise ValueError(f"need at least folds={folds} groups, got {n_groups}")
    order = np.random.default_rng(seed).permutation(n_groups)
    sizes = np.bincount(gid, minlength=n_groups)[order]
    before = np.cumsum(sizes) - sizes  # rows ahead of each group in the random order
    fold_of = np.empty(n_groups, dtype=np.int64)
    fold_of[order] = (before * folds) // n
    fold = fold_of[gid]
    counts = np.bincount(fold, minlength=folds)
    if (counts == 0).any():
        raise ValueError(f"groups too unequal for folds={folds}: fold sizes {counts.tolist()}")
    return fold


def clustered_mean(values, groups=None) -> tuple[float, float]:
    """Mean of ``values`` (n,) and its CLT standard error, cluster-robust when ``groups``
    (n,) is given: residuals are summed per group before squaring, since rows of one group
    (the transformed copies of one image) are correlated. SE^2 = G/(G-1) sum_g S_g^2 / n^2."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = len(v)
    if n < 2:
        raise ValueError(f"need at least 2 values for a standard error, got {n}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values contain NaN/inf")
    mean = float(v.mean())
    gid = _group_ids(groups, n)
    n_groups = int(gid.max()) + 1
    if n_groups < 2:
        raise ValueError("need at least 2 groups for a clustered standard error")
    s = np.bincount(gid, weights=v - mean, minlength=n_groups)
    var = n_groups / (n_groups - 1) * float(np.sum(s * s)) / n**2
    return mean, float(np.sqrt(var))


def paired_difference(nll_a, nll_b, *, groups=None) -> tuple[float, float]:
    """mean(nll_a - nll_b) and its grouped CLT stderr: e.g. I(A;C|Z) = CE(q(a|z)) -
    CE(q(a|z,c)) with both losses evaluated on the same held-out rows (nats)."""
    a = np.asarray(nll_a, dtype=np.float64).reshape(-1)
    b = np.asarray(nll_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"nll_a and nll_b must have the same shape, got {a.shape} and {b.shape}")
    return clustered_mean(a - b, groups)


# ---------------------------------------------------------------- cross-fitting
@dataclass(frozen=True)
class CrossFit:
    """Held-out losses of a cross-fitted probe q(t | z, c)."""

    nll: np.ndarray  # (n,) -log q(t_i | z_i, c_i), nats, each from a probe blind to row i
    fold: np.ndarray  # (n,) fold of each row
    n_classes: int
    params: dict = field(default_factory=dict)  # the scheme (what reproduces it)
    per_fold: list = field(default_factory=list)  # choices made in each fold


def _codes(name: str, a) -> tuple[np.ndarray, int]:
    var = prepare_variable(name, a, discrete=True, warn=False)
    return var.codes, var.n_categories


def cross_fit(z, t, *, c=None, groups=None, folds: int = 5, family: str = "logistic",
              seed: int = 0, device: str = "cpu", pca: int | None = None,
              standardize: bool = True, calibrate: bool = True, cond_mode: str = "interact",
              val_frac: float = 0.2, n_classes: int | None = None, threads: int | None = 1,
              **family_opts) -> CrossFit:
    """Cross-fit a probe q(t | z, c) and return every row's held-out loss.

    z : (n, d) continuous inputs, or None
    t : (n,) discrete target labels
    c : (n,) or (n, m) discrete inputs (jointly coded), or None; at least one of z, c
    groups : (n,) ids kept together in every split; folds : k of the k-fold cross-fitting
    family : a key of ``PROBE_FAMILIES`` ("logistic", "mlp")
    pca : keep this many principal components of standardised z (fitted per training fold)
    calibrate : fit a softmax temperature on the inner validation split
    cond_mode : "interact" (per-category heads) or "concat" (per-category intercepts)
    n_classes : number of target classes if some are absent from ``t``
    threads : torch CPU threads while fitting (``classifiers.torch_threads``; None: as set)
    family_opts : passed to the family (e.g. ``l2_grid``, ``hidden``, ``max_epochs``)
    """
    if family not in PROBE_FAMILIES:
        raise ValueError(f"unknown probe family {family!r}; choose one of "
                         f"{sorted(PROBE_FAMILIES)}")
    fit = PROBE_FAMILIES[family]
    known = [p for p in inspect.signature(fit).parameters if p not in
             ("data", "calibrate", "interact", "seed")]
    unknown = sorted(set(family_opts) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for the {family!r} probe; "
                         f"valid: {known} and those of cross_fit")
    if cond_mode not in ("interact", "concat"):
        raise ValueError(f"cond_mode must be 'interact' or 'concat', got {cond_mode!r}")
    if not 0.0 < val_frac < 0.5:
        raise ValueError(f"val_frac must lie in (0, 0.5), got {val_frac!r}")
    y, k_obs = _codes("t", t)
    n = len(y)
    K = k_obs if n_classes is None else int(n_classes)
    if K < k_obs:
        raise ValueError(f"n_classes={n_classes} but t has {k_obs} distinct labels")
    if K < 2:
        raise ValueError("t has a single label: a probe needs at least 2 classes")
    if z is None and c is None:
        raise ValueError("a probe needs inputs: z, c or both")
    zv = None
    if z is not None:
        zv = prepare_variable("z", z, discrete=False).values
        if len(zv) != n:
            raise ValueError(f"z has {len(zv)} rows but t has {n}")
    cc, n_c = (None, 0)
    if c is not None:
        cc, n_c = _codes("c", c)
        if len(cc) != n:
            raise ValueError(f"c has {len(cc)} rows but t has {n}")
    if pca is not None and (zv is None or not 1 <= int(pca) <= zv.shape[1]):
        raise ValueError(f"pca must be an integer in 1..{0 if zv is None else zv.shape[1]}, "
                         f"got {pca!r}")
    gid = _group_ids(groups, n)
    fold = assign_folds(n, folds, groups=gid, seed=seed)
    dev = resolve_device(device)
    nll = np.empty(n, dtype=np.float64)
    per_fold = []
    with torch_threads(threads if dev.type == "cpu" else None):
        for f in range(folds):
            test = np.flatnonzero(fold == f)
            train = np.flatnonzero(fold != f)
            data = FoldData.build(zv, cc, n_c, y, K, gid, train, test, pca=pca,
                                  standardize=standardize, val_frac=val_frac,
                                  seed=(seed, f), device=dev)
            nll[test], info = fit(data, calibrate=calibrate, interact=cond_mode == "interact",
                                  seed=(seed, f), **family_opts)
            per_fold.append(info)
    params = {
        "family": family,
        "folds": folds,
        "split": ("grouped " if groups is not None else "") + f"{folds}-fold cross-fitting, "
                 f"inner {'grouped ' if groups is not None else ''}validation "
                 f"{val_frac:.0%} of each training fold",
        "calibrate": calibrate,
        "standardize": standardize,
        "pca": pca,
        "cond_mode": cond_mode if cc is not None else None,
        "seed": seed,
        "device": str(dev),
        "threads": threads,
        **{k: v for k, v in family_opts.items()},
    }
    return CrossFit(nll, fold, K, params, per_fold)


def cross_fitted_nll(z, t, *, c=None, groups=None, folds: int = 5, family: str = "logistic",
                     seed: int = 0, device: str = "cpu", **probe_opts) -> np.ndarray:
    """(n,) held-out negative log-likelihood -log q(t_i | z_i[, c_i]) in nats, each row
    predicted by a probe that never saw its group (see :func:`cross_fit`). The folds depend
    only on (n, groups, folds, seed), so two calls with the same of these are paired row by
    row (e.g. q(a|z) and q(a|z,c) for I(A;C|Z))."""
    return cross_fit(z, t, c=c, groups=groups, folds=folds, family=family, seed=seed,
                     device=device, **probe_opts).nll


def plugin_surprisal(t, c=None) -> np.ndarray:
    """(n,) -log p̂(t_i) or, with discrete ``c``, -log p̂(t_i | c_i) from the counts of all
    rows; its mean is the plug-in Ĥ(T) or Ĥ(T|C) in nats (biased low by about
    (K-1)/(2n), Miller 1955)."""
    y, K = _codes("t", t)
    if c is None:
        return -np.log(np.bincount(y, minlength=K)[y] / len(y))
    cc, n_c = _codes("c", c)
    joint = np.bincount(cc * K + y, minlength=n_c * K)
    return -np.log(joint[cc * K + y] / np.bincount(cc, minlength=n_c)[cc])


def heldout_surprisal(t, fold, c=None, *, n_classes: int | None = None) -> np.ndarray:
    """(n,) -log q(t_i [| c_i]) with q the label frequencies of the *other* folds
    (add-1/2 smoothing, Krichevsky-Trofimov): the held-out cross-entropy of the null model.
    Used as the entropy term, Î = CE(null) - CE(probe) is a difference of two held-out
    losses: a probe that learned nothing scores 0 on any data, and the O(K/n) biases of the
    plug-in entropy (low) and of held-out losses (high) cancel."""
    y, k_obs = _codes("t", t)
    K = k_obs if n_classes is None else int(n_classes)
    fold = np.asarray(fold).reshape(-1)
    cc, n_c = (np.zeros(len(y), dtype=np.int64), 1) if c is None else _codes("c", c)
    out = np.empty(len(y))
    for f in np.unique(fold):
        test, train = fold == f, fold != f
        counts = np.bincount(cc[train] * K + y[train], minlength=n_c * K).reshape(n_c, K) + 0.5
        q = counts / counts.sum(1, keepdims=True)
        out[test] = -np.log(q[cc[test], y[test]])
    return out


ENTROPY_TERMS = ("plugin", "uniform", "heldout")


def probe_mi(nll, t, *, c=None, groups=None, entropy: str = "plugin", fold=None,
             n_classes: int | None = None) -> Estimate:
    """Î(T;Z) = Ĥ(T) - mean(nll), or Î(T;Z|C) = Ĥ(T|C) - mean(nll) for discrete ``c``,
    in nats (signed), with a grouped CLT stderr of the paired per-row terms.

    nll : (n,) held-out -log q(t_i | z_i[, c_i]) (from :func:`cross_fitted_nll`)
    entropy : "plugin" (counts of all rows), "uniform" (log K: T uniform and independent of
        C), or "heldout" (:func:`heldout_surprisal`; needs the ``fold`` of each row)
    """
    loss = np.asarray(nll, dtype=np.float64).reshape(-1)
    y, k_obs = _codes("t", t)
    if len(loss) != len(y):
        raise ValueError(f"nll has {len(loss)} rows but t has {len(y)}")
    if entropy == "plugin":
        h = plugin_surprisal(t, c)
    elif entropy == "uniform":
        h = np.full(len(y), np.log(k_obs if n_classes is None else int(n_classes)))
    elif entropy == "heldout":
        if fold is None:
            raise ValueError("entropy='heldout' needs the fold of each row (fold=)")
        h = heldout_surprisal(t, fold, c, n_classes=n_classes)
    else:
        raise ValueError(f"entropy must be one of {ENTROPY_TERMS}, got {entropy!r}")
    value, se = clustered_mean(h - loss, groups)
    return Estimate(
        value, se, n=len(y),
        params={"stderr_method": STDERR_METHOD + (", clustered by group" if groups is not None
                                                  else ""),
                "entropy": entropy},
        diagnostics={"h_target": float(h.mean()), "ce_heldout": float(loss.mean())},
    )


# ---------------------------------------------------------------- registered method
def _inputs(parts: list[Variable]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Continuous parts concatenated as z (n, d); discrete parts jointly coded as c (n,)."""
    cont = [p.values for p in parts if not p.discrete]
    disc = [p.codes for p in parts if p.discrete]
    z = np.hstack(cont) if cont else None
    c = np.stack(disc, axis=1) if disc else None
    return z, c


def _supports(v: Variables) -> bool:
    return v.x.discrete or v.y.discrete


PROBE_SEEDS = 3   # fits per estimate: the fold split alone moves the estimate by ~its stderr


@register_mi("probe", supports=_supports, symmetric=False, uses_k=False,
             reference="McAllester & Stratos 2020; Xu et al. 2020 (usable information)",
             summary="H(T) - held-out cross-entropy of a cross-fitted classifier, discrete T")
def _probe(v: Variables, *, k: int, seed: int, target: str | None = None, groups=None,
           folds: int = 5, family: str = "logistic", entropy: str = "plugin",
           uniform_target: bool = False, n_classes: int | None = None,
           seeds: int = PROBE_SEEDS, **opts) -> Estimate:
    """Cross-entropy bound for a discrete target (x, or y if only y is discrete; ``target=``
    chooses when both are). ``entropy``: see :func:`probe_mi` (``uniform_target=True`` is
    ``entropy="uniform"``); ``seeds``: the fit is repeated with this many seeds (folds,
    inner split, optimiser start) and the value is their mean, its stderr the row-sampling
    error ⊕ the between-seed spread (:func:`~essl_info.estimators.resampling.combine_seeds`);
    other options: see :func:`cross_fit`."""
    from .resampling import combine_seeds, fit_seeds

    if target is None:
        target = "x" if v.x.discrete else "y"
    if target not in ("x", "y"):
        raise ValueError(f"target must be 'x' or 'y', got {target!r}")
    tv, uv = (v.x, v.y) if target == "x" else (v.y, v.x)
    if not tv.discrete:
        raise ValueError(f"target={target!r} but {target} is continuous: the probe needs a "
                         "discrete target")
    if uniform_target:
        entropy = "uniform"
    if entropy not in ENTROPY_TERMS:
        raise ValueError(f"entropy must be one of {ENTROPY_TERMS}, got {entropy!r}")
    cond = v.cond
    if cond is not None and not cond.discrete and entropy != "plugin":
        raise ValueError(f"entropy={entropy!r} needs no or a discrete cond: with a "
                         "continuous cond the probe estimates H(T|cond) by CE(q(t|cond))")
    fits = [_probe_once(v, tv, uv, s, groups=groups, folds=folds, family=family,
                        entropy=entropy, n_classes=n_classes, **opts)
            for s in fit_seeds(seed, seeds)]
    first, params, diagnostics = fits[0]
    ens = combine_seeds([e.value for e, _, _ in fits], [e.stderr for e, _, _ in fits])
    stderr_method = STDERR_METHOD + (", clustered by group" if groups is not None else "")
    if seeds > 1:
        stderr_method += f", ⊕ spread over {seeds} fit seeds (t-inflated)"
        diagnostics = {**diagnostics, **ens.diagnostics()}
        for key in ("h_target", "ce_heldout", "ce_reduced", "ce_full"):
            if key in first.diagnostics:
                diagnostics[key] = float(np.mean([e.diagnostics[key] for e, _, _ in fits]))
    return Estimate(ens.value, ens.stderr, n=v.n,
                    params={**params, "seed": seed, "seeds": seeds,
                            "stderr_method": stderr_method},
                    diagnostics={**first.diagnostics, **diagnostics})


def _probe_once(v: Variables, tv: Variable, uv: Variable, seed: int, *, groups, folds: int,
                family: str, entropy: str, n_classes: int | None,
                **opts) -> tuple[Estimate, dict, dict]:
    """One cross-fitted probe estimate (value, clustered stderr), its params, diagnostics."""
    kw = dict(groups=groups, folds=folds, family=family, seed=seed, n_classes=n_classes, **opts)
    cond = v.cond
    z, c = _inputs([uv] if cond is None else [uv, cond])
    full = cross_fit(z, tv.codes, c=c, **kw)
    diagnostics = {"per_fold": full.per_fold}
    if cond is not None and not cond.discrete:
        zr, cr = _inputs([cond])
        reduced = cross_fit(zr, tv.codes, c=cr, **kw)
        value, se = paired_difference(reduced.nll, full.nll, groups=groups)
        est = Estimate(value, se, n=v.n, diagnostics={"ce_reduced": float(reduced.nll.mean()),
                                                      "ce_full": float(full.nll.mean())})
        scheme = "CE(q(t|cond)) - CE(q(t|other,cond)), paired on held-out rows"
        diagnostics["per_fold_reduced"] = reduced.per_fold
    else:
        c_for_h = cond.codes if cond is not None else None
        est = probe_mi(full.nll, tv.codes, c=c_for_h, groups=groups, entropy=entropy,
                       fold=full.fold, n_classes=full.n_classes)
        given = "|cond" if cond is not None else ""
        scheme = {"plugin": f"plug-in H(T{given})", "uniform": "log K",
                  "heldout": f"held-out CE(q(t{given}))"}[entropy] \
            + f" - CE(q(t|other{',cond' if cond is not None else ''}))"
    target = "x" if tv is v.x else "y"
    params = {**full.params, "target": target, "estimator": scheme, "entropy": entropy}
    return est, params, diagnostics


# ---------------------------------------------------------------- auto rules
def _high_dim_target(v: Variables) -> bool:
    if v.x.discrete == v.y.discrete:
        return False
    return v.continuous_dims > HIGH_DIM


def _high_dim_cond(v: Variables) -> bool:
    return (v.x.discrete and v.y.discrete and v.cond is not None and not v.cond.discrete
            and v.cond.dim > HIGH_DIM)


add_auto_rule(_high_dim_cond, "probe",
              f"discrete x and y given a continuous cond with > {HIGH_DIM} dims: "
              "kNN CMI loses most information there; probe estimates "
              "CE(q(x|cond)) - CE(q(x|y,cond)) on held-out rows", priority=0)
add_auto_rule(_high_dim_target, "probe",
              f"discrete target with > {HIGH_DIM} continuous dims: kNN loses most "
              "information there; probe estimates H(T) - held-out CE(q(t|z))", priority=0)
