"""Neural critic estimators of I(X;Y): InfoNCE, NWJ, MINE, SMILE (bounds in ``bounds.py``).

A critic f(x, y) is trained on one split to maximise a variational lower bound; the bound is
then *reported on held-out rows* (a bound evaluated on its own training data is biased
upwards). The fit is repeated for ``n_seeds`` seeds (default 3) and the estimate is the
mean of the fits, with a total standard error = held-out sampling error ⊕ between-fit
spread (``resampling.combine_seeds``; both parts in ``diagnostics``). Protocol (recorded in
``Estimate.params``):

0. Continuous inputs get the Gaussian copula transform (``copula.py``: per-column ranks ->
   normal scores; MI is unchanged) by default, ``copula=False`` standardises them instead;
   discrete ones are one-hot. This preparation is shared by all fits.
1. Fit s (s = 0..n_seeds-1) splits the rows, whole groups at a time (``groups=``), into
   test (``holdout``, default 30 %) and the rest into train and validation (``val_frac``
   of it), with its own seeded split, initialisation and minibatch order.
2. The S critics are trained together as one batched ensemble (``critics.py``; member s is
   trained exactly as it would be alone) with Adam on random minibatches of ``batch_size``
   training rows; after 10, 25, 50 and every ``eval_every`` steps each member's bound is
   computed on its validation rows and its best critic kept; a member stops after
   ``patience`` evaluations without improvement (early stopping) or at ``max_steps``.
3. Each member's test rows, in a seeded random order, are cut into disjoint batches of
   ``eval_batch`` rows, five times (``EVAL_PARTITIONS``); its value is the mean of the bound
   over all those batches, its sampling stderr the standard deviation of the bound over
   the batches / sqrt(#batches in one partition) (the variance of a mean over disjoint,
   independent batches, with the batch variance pooled over the partitions).

Divergence is never reported as a number: a member whose training bound becomes non-finite,
or whose held-out bound is non-finite, below ``-runaway`` nats (a constant critic scores 0,
so this critic is far worse than none: its scores ran away on held-out rows) or above
log(n) nats (no estimator can certify more from n rows, McAllester & Stratos 2020, AISTATS,
"Formal limitations on the measurement of mutual information"; SMILE's clip bounds only
the partition term, so its value runs away upwards when the positive scores do), is refitted
with the learning rate divided by 4, at most ``max_retries`` times; then a ``ValueError``
names what happened. Retries are in ``diagnostics["retries"]``.

InfoNCE can never exceed log(eval_batch): that ceiling is in ``diagnostics``, with a flag
(``at_ceiling``) when the estimate comes within log 2 of it (then the true MI may be much
larger). Randomness: per fit one ``torch.Generator`` (initialisation) and numpy Generators
(splits, minibatches) from (seed, s); bit-identical on CPU for a given thread count.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import EsslInfoError
from ..types import Estimate
from .bounds import BOUNDS, infonce_ceiling
from .classifiers import torch_threads
from .copula import gaussian_copula
from .critics import CRITICS
from .inputs import Variable, Variables
from .probe_families import holdout_mask, resolve_device
from .registry import register_mi
from .resampling import combine_seeds

# validation steps before the first multiple of eval_every: with few rows in many dimensions
# a critic can overfit within the first epochs, and its held-out bound then turns negative
EARLY_EVALS = frozenset({10, 25, 50})
LR_SHRINK = 4.0  # a diverged fit is refitted with lr / LR_SHRINK
EVAL_PARTITIONS = 5  # random partitions of the test rows into batches (value: their mean)


@dataclass(frozen=True)
class CriticConfig:
    """Training options of the critic estimators (all recorded in ``Estimate.params``)."""

    critic: str = "separable"
    hidden: int = 256
    layers: int = 2
    embed: int = 32
    batch_size: int = 128
    lr: float = 5e-4
    max_steps: int = 3000
    eval_every: int = 100
    patience: int = 5
    holdout: float = 0.3
    val_frac: float = 0.2
    eval_batch: int = 512
    tau: float = 5.0  # SMILE clip (Song & Ermon 2020)
    momentum: float = 0.9  # MINE moving average
    n_seeds: int = 3  # fits combined by resampling.combine_seeds
    copula: bool = True  # rank -> normal scores for continuous inputs
    max_retries: int = 2  # refits of a diverged fit, each with lr / LR_SHRINK
    runaway: float = 1.0  # nats: a held-out bound below -runaway counts as divergence

    def __post_init__(self):
        if self.critic not in CRITICS:
            raise ValueError(f"critic must be one of {sorted(CRITICS)}, got {self.critic!r}")
        for name in ("hidden", "layers", "embed", "batch_size", "max_steps", "eval_every",
                     "patience", "eval_batch", "n_seeds"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"{name} must be a positive integer, got {val!r}")
        if isinstance(self.max_retries, bool) or not isinstance(
                self.max_retries, (int, np.integer)) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        for name in ("holdout", "val_frac"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.runaway > 0:
            raise ValueError(f"runaway must be > 0 nats, got {self.runaway!r}")
        if not isinstance(self.copula, (bool, np.bool_)):
            raise ValueError(f"copula must be True or False, got {self.copula!r}")


# ---------------------------------------------------------------- data
def encode(var: Variable, *, copula: bool) -> np.ndarray:
    """(n, d') float32 critic input: one-hot codes for a discrete variable; for a continuous
    one, Gaussian-copula normal scores (``copula=True``) or columns standardised to zero
    mean and unit variance over all rows. Marginal transforms only: MI is unchanged."""
    if var.discrete:
        return np.eye(var.n_categories, dtype=np.float32)[var.codes]
    if copula:
        return gaussian_copula(var.values).astype(np.float32)
    vals = var.values
    mu, sd = vals.mean(0), vals.std(0)
    return ((vals - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def _batches(rows: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint batches of exactly ``size`` rows in a seeded random order (remainder dropped)."""
    perm = rng.permutation(rows)
    return [perm[i:i + size] for i in range(0, len(perm) - size + 1, size)]


@dataclass(frozen=True)
class _Split:
    """One fit's rows: train / val / test index arrays and its seed tuple."""

    seed: tuple
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _split(gid: np.ndarray, cfg: CriticConfig, seed: tuple) -> _Split:
    is_test = holdout_mask(gid, cfg.holdout, (*seed, 11))
    rest = np.flatnonzero(~is_test)
    is_val = holdout_mask(gid[rest], cfg.val_frac, (*seed, 12))
    return _Split(seed, rest[~is_val], rest[is_val], np.flatnonzero(is_test))


@torch.no_grad()
def _bound_on(critic, x: torch.Tensor, y: torch.Tensor, batches: list[list[np.ndarray]],
              bound, opts: dict, dev) -> np.ndarray:
    """(S, #batches) held-out bound of each member on its own batches (nats, float64)."""
    critic.eval()
    out = []
    for j in range(len(batches[0])):
        idx = torch.as_tensor(np.stack([b[j] for b in batches]), device=dev)  # (S, e)
        scores = critic(x[idx], y[idx]).double()  # (S, e, e)
        out.append([float(bound.value(s, **opts)) for s in scores])
    critic.train()
    return np.array(out).T


# ---------------------------------------------------------------- one ensemble fit
@dataclass
class _Fit:
    """Result of one member: held-out per-batch values, or the reason it diverged."""

    per_batch: np.ndarray | None
    steps: int
    best_step: int
    val_bound: float
    failure: str = ""


def _fit_ensemble(x: torch.Tensor, y: torch.Tensor, splits: list[_Split], cfg: CriticConfig,
                  spec, bopts: dict, lr: float, batch: int, eval_batch: int,
                  dev: torch.device) -> list[_Fit]:
    """Train len(splits) critics together (one batched model) and evaluate them held out."""
    s_count = len(splits)
    gens = [torch.Generator().manual_seed(
        int(np.random.default_rng([*sp.seed, 13]).integers(2**62))) for sp in splits]
    critic = CRITICS[cfg.critic](x.shape[1], y.shape[1], hidden=cfg.hidden,
                                 layers=cfg.layers, embed=cfg.embed, generators=gens).to(dev)
    params = list(critic.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    rngs = [np.random.default_rng([*sp.seed, 14]) for sp in splits]
    val_b = [_batches(sp.val, eval_batch, np.random.default_rng([*sp.seed, 15]))
             for sp in splits]
    n_val = min(len(b) for b in val_b)
    val_b = [b[:n_val] for b in val_b]

    best_val = [-math.inf] * s_count
    best_step = [0] * s_count
    best_state = [[p[s].detach().clone() for p in params] for s in range(s_count)]
    since_best = [0] * s_count
    active = [True] * s_count  # still training (not early-stopped, not diverged)
    failure = [""] * s_count
    stop_step = [0] * s_count
    states: list = [None] * s_count
    queues: list[list[np.ndarray]] = [[] for _ in range(s_count)]
    step = 0
    for step in range(1, cfg.max_steps + 1):
        for s, sp in enumerate(splits):
            if not queues[s]:  # epochs of disjoint random minibatches
                queues[s] = _batches(sp.train, batch, rngs[s])[::-1]
        idx = torch.as_tensor(np.stack([q.pop() for q in queues]), device=dev)  # (S, b)
        scores = critic(x[idx], y[idx])  # (S, b, b)
        total = scores.new_zeros(())
        for s in range(s_count):
            if not active[s]:
                continue
            value, states[s] = spec.train(scores[s], states[s], **bopts)
            if not torch.isfinite(value):
                active[s], stop_step[s] = False, step
                failure[s] = f"the training bound became non-finite at step {step}"
                continue
            total = total - value
        if not any(active):
            break
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step in EARLY_EVALS:
            val_values = _bound_on(critic, x, y, val_b, spec, bopts, dev).mean(1)
            for s in range(s_count):
                if not active[s]:
                    continue
                if val_values[s] > best_val[s]:
                    best_val[s], best_step[s], since_best[s] = float(val_values[s]), step, 0
                    best_state[s] = [p[s].detach().clone() for p in params]
                else:
                    since_best[s] += 1
                    if since_best[s] >= cfg.patience:
                        active[s], stop_step[s] = False, step
            if not any(active):
                break
    with torch.no_grad():
        for s in range(s_count):
            for p, saved in zip(params, best_state[s]):
                p[s] = saved
    per_batch = []  # EVAL_PARTITIONS random partitions of each member's test rows
    for r in range(EVAL_PARTITIONS):
        test_b = [_batches(sp.test, eval_batch, np.random.default_rng([*sp.seed, 16, r]))
                  for sp in splits]
        n_test = min(len(b) for b in test_b)
        per_batch.append(_bound_on(critic, x, y, [b[:n_test] for b in test_b], spec, bopts,
                                   dev))
    per_batch = np.stack(per_batch, axis=1)  # (S, EVAL_PARTITIONS, #batches)
    ceiling = math.log(len(x))
    fits = []
    for s in range(s_count):
        steps = stop_step[s] or step
        if failure[s]:
            fits.append(_Fit(None, steps, best_step[s], best_val[s], failure[s]))
            continue
        pb = per_batch[s]  # (EVAL_PARTITIONS, #batches)
        value = float(pb.mean()) if np.all(np.isfinite(pb)) else math.nan
        if not math.isfinite(value):
            why = "its held-out bound is not finite"
        elif value < -cfg.runaway:
            why = (f"its held-out bound is {value:.3g} nats, below -{cfg.runaway:g} (a "
                   "constant critic scores 0): the critic's scores run away on held-out rows")
        elif value > ceiling:
            why = (f"its held-out bound is {value:.3g} nats, above log(n) = {ceiling:.3g}, "
                   "more than n rows can certify (McAllester & Stratos 2020): the critic's "
                   "scores on the positive pairs run away")
        else:
            fits.append(_Fit(pb, steps, best_step[s], best_val[s]))
            continue
        fits.append(_Fit(None, steps, best_step[s], best_val[s], why))
    return fits


# ---------------------------------------------------------------- estimator
def critic_mi(v: Variables, *, bound: str, seed: int = 0, groups=None,
              device: str = "cpu", threads: int | None = 1, **options) -> Estimate:
    """Train critics for ``bound`` on training splits and report the bound (nats) on
    held-out rows, averaged over ``n_seeds`` fits. ``options``: fields of
    :class:`CriticConfig`; ``threads``: torch CPU threads while training
    (``classifiers.torch_threads``; None: as set)."""
    dev = resolve_device(device)
    with torch_threads(threads if dev.type == "cpu" else None):
        est = _critic_mi(v, bound=bound, seed=seed, groups=groups, dev=dev, **options)
    return est.with_(params={**est.params, "threads": threads})


def _critic_mi(v: Variables, *, bound: str, seed: int, groups, dev: torch.device,
               **options) -> Estimate:
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; choose one of {sorted(BOUNDS)}")
    if v.cond is not None:
        raise ValueError(f"the critic bound {bound!r} does not support cond")
    spec = BOUNDS[bound]
    unknown = set(options) - set(CriticConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for method {bound!r}; "
                         f"valid: {sorted(CriticConfig.__dataclass_fields__)}")
    cfg = CriticConfig(**options)
    bopts = {k: getattr(cfg, k) for k in spec.options}
    n = v.n
    gid = np.arange(n) if groups is None else np.asarray(groups)
    if gid.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got shape {gid.shape}")
    splits = [_split(gid, cfg, (seed, s)) for s in range(cfg.n_seeds)]
    batch = min([cfg.batch_size] + [len(sp.train) for sp in splits])
    eval_batch = min([cfg.eval_batch] + [min(len(sp.test) // 2, len(sp.val))
                                         for sp in splits])
    if batch < 2 or eval_batch < 2:
        raise ValueError(f"too few rows (n={n}) for a critic: need at least 2 rows per batch "
                         "in each of the train, validation and test splits")

    t0 = time.perf_counter()
    x = torch.as_tensor(encode(v.x, copula=cfg.copula), device=dev)
    y = torch.as_tensor(encode(v.y, copula=cfg.copula), device=dev)
    fits: list[_Fit | None] = [None] * cfg.n_seeds
    lrs = [cfg.lr] * cfg.n_seeds
    retries: list[dict] = []
    todo = list(range(cfg.n_seeds))
    for attempt in range(cfg.max_retries + 1):
        lr = cfg.lr / LR_SHRINK ** attempt
        new = _fit_ensemble(x, y, [splits[s] for s in todo], cfg, spec, bopts, lr, batch,
                            eval_batch, dev)
        failed = []
        for s, fit in zip(todo, new):
            fits[s], lrs[s] = fit, lr
            if fit.failure:
                failed.append(s)
                retries.append({"fit": s, "lr": lr, "failure": fit.failure})
        todo = failed
        if not todo:
            break
    if todo:
        s = todo[0]
        raise EsslInfoError(
            f"{bound}: the critic of fit {s} (seed {seed}) diverged at every learning rate "
            f"tried ({', '.join(f'{r:g}' for r in sorted({r['lr'] for r in retries}))}): "
            f"{fits[s].failure}; try copula=True, method='infonce' or a smaller lr")

    values = [float(f.per_batch.mean()) for f in fits]
    # the value of a fixed critic is the mean of the bound over its test rows cut into
    # disjoint batches: Var = Var(batch) / #batches; Var(batch) is pooled over the
    # partitions (with 2-5 batches per partition one partition alone gives 1-4 df)
    ses = [float(f.per_batch.std(ddof=1) / math.sqrt(f.per_batch.shape[1]))
           if f.per_batch.size > 1 else 0.0 for f in fits]
    ens = combine_seeds(values, ses)
    value = ens.value
    sp0 = splits[0]
    diagnostics = {**ens.diagnostics(),
                   "steps": [f.steps for f in fits], "best_step": [f.best_step for f in fits],
                   "val_bound": [f.val_bound for f in fits], "lr_used": lrs,
                   "retries": retries, "n_train": len(sp0.train), "n_val": len(sp0.val),
                   "n_test": len(sp0.test), "n_test_batches": int(fits[0].per_batch.shape[1]),
                   "train_seconds": time.perf_counter() - t0}
    if bound == "infonce":
        ceiling = infonce_ceiling(eval_batch)
        diagnostics["log_batch_ceiling"] = ceiling
        # with a near-optimal critic InfoNCE ~ log b - log(1 + (b-1) e^-I): within log 2 of
        # the ceiling means I >~ log b, where the bound cannot tell values apart
        diagnostics["at_ceiling"] = bool(value > ceiling - math.log(2.0))
    params = {**asdict(cfg), "batch_size": batch, "eval_batch": eval_batch, "bound": bound,
              "seed": seed, "device": str(dev), "grouped": groups is not None,
              "split": f"per fit, train/val/test by {'group' if groups is not None else 'row'}"
                       f": {len(sp0.train)}/{len(sp0.val)}/{len(sp0.test)} rows",
              "value_method": f"mean of {cfg.n_seeds} fits (seeds differ in split, "
                              "initialisation and minibatch order)",
              "stderr_method": "held-out sampling (std over test batches / sqrt(# per partition), "
                               "rms over fits) ⊕ between-fit (t-inflated), combine_seeds"}
    for name in ("tau", "momentum"):
        if name not in spec.options:
            params.pop(name)
    return Estimate(value, ens.stderr, n=n, params=params, diagnostics=diagnostics)


def _register(name: str) -> None:
    def fn(v: Variables, *, k: int, seed: int, **params) -> Estimate:
        return critic_mi(v, bound=name, seed=seed, **params)

    fn.__doc__ = f"{name} lower bound with a trained critic, reported on held-out rows"
    register_mi(name, supports=lambda v: v.cond is None, symmetric=False, uses_k=False,
                reference=BOUNDS[name].reference)(fn)


for _name in ("infonce", "nwj", "mine", "smile"):
    _register(_name)
