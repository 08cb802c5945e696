"""Neural critic estimators of I(X;Y): InfoNCE, NWJ, MINE, SMILE (bounds in ``bounds.py``).

A critic f(x, y) is trained on one split to maximise a variational lower bound; the bound is
then *reported on held-out rows* (a bound evaluated on its own training data is biased
upwards). Protocol (recorded in ``Estimate.params``):

1. Rows are split, whole groups at a time (``groups=``), into test (``holdout``, default 30 %),
   and the rest into train and validation (``val_frac`` of it).
2. The critic is trained with Adam on random minibatches of ``batch_size`` training rows; after
   10, 25, 50 and every ``eval_every`` steps the bound is computed on the validation rows and
   the best critic is kept; training stops after ``patience`` evaluations without improvement (early stopping) or
   at ``max_steps``.
3. The test rows, in a seeded random order, are cut into batches of ``eval_batch`` rows; the
   estimate is the mean of the bound over those batches, its stderr their standard deviation
   / sqrt(#batches) (the batches are disjoint, hence independent).
InfoNCE can never exceed log(eval_batch): that ceiling is in ``diagnostics``, with a flag
(``at_ceiling``) when the estimate comes within log 2 of it (then the true MI may be much
larger).

Critics (Poole et al. 2019, §4): ``separable`` f(x)^T g(y) with two MLPs (b^2 scores from 2b
network passes) and ``concat`` h([x, y]) on all b^2 pairs (more flexible, b times dearer).
Continuous inputs are standardised with training statistics; discrete ones are one-hot.
Randomness: one ``torch.Generator`` (initialisation) and one numpy Generator (splits,
minibatches) from ``seed``; bit-identical on CPU.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..errors import EsslInfoError
from ..types import Estimate
from .bounds import BOUNDS, infonce_ceiling
from .classifiers import mlp, torch_threads
from .inputs import Variable, Variables
from .probe_families import holdout_mask, resolve_device
from .registry import register_mi


# ---------------------------------------------------------------- critics
class SeparableCritic(nn.Module):
    """scores[i, j] = f(x_i) . g(y_j), f and g MLPs to ``embed`` dims."""

    def __init__(self, dx: int, dy: int, *, hidden: int, layers: int, embed: int,
                 generator: torch.Generator):
        super().__init__()
        self.f = mlp([dx, *[hidden] * layers, embed], generator)
        self.g = mlp([dy, *[hidden] * layers, embed], generator)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # (b, b)
        return self.f(x) @ self.g(y).T


class ConcatCritic(nn.Module):
    """scores[i, j] = h([x_i, y_j]), one MLP evaluated on all b^2 pairs."""

    def __init__(self, dx: int, dy: int, *, hidden: int, layers: int, embed: int,
                 generator: torch.Generator):
        super().__init__()
        self.h = mlp([dx + dy, *[hidden] * layers, 1], generator)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # (b, b)
        b = len(x)
        pairs = torch.cat([x.unsqueeze(1).expand(b, len(y), -1),
                           y.unsqueeze(0).expand(b, len(y), -1)], dim=-1)
        return self.h(pairs).squeeze(-1)


CRITICS: dict[str, type[nn.Module]] = {"separable": SeparableCritic, "concat": ConcatCritic}

# validation steps before the first multiple of eval_every: with few rows in many dimensions
# a critic can overfit within the first epochs, and its held-out bound then turns negative
EARLY_EVALS = frozenset({10, 25, 50})


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
    tau: float = 5.0  # SMILE clip
    momentum: float = 0.9  # MINE moving average

    def __post_init__(self):
        if self.critic not in CRITICS:
            raise ValueError(f"critic must be one of {sorted(CRITICS)}, got {self.critic!r}")
        for name in ("hidden", "layers", "embed", "batch_size", "max_steps", "eval_every",
                     "patience", "eval_batch"):
            val = getattr(self, name)
            if not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"{name} must be a positive integer, got {val!r}")
        for name in ("holdout", "val_frac"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


# ---------------------------------------------------------------- data
def _encode(var: Variable, rows_fit: np.ndarray) -> np.ndarray:
    """(n, d') float32 critic input: one-hot codes, or columns standardised on ``rows_fit``."""
    if var.discrete:
        return np.eye(var.n_categories, dtype=np.float32)[var.codes]
    vals = var.values
    mu, sd = vals[rows_fit].mean(0), vals[rows_fit].std(0)
    return ((vals - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def _batches(rows: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint batches of exactly ``size`` rows in a seeded random order (remainder dropped)."""
    perm = rng.permutation(rows)
    return [perm[i:i + size] for i in range(0, len(perm) - size + 1, size)]


@torch.no_grad()
def _bound_on(critic: nn.Module, x: torch.Tensor, y: torch.Tensor,
              batches: list[np.ndarray], bound, opts: dict) -> np.ndarray:
    critic.eval()
    out = [float(bound.value(critic(x[b], y[b]).double(), **opts)) for b in batches]
    critic.train()
    return np.array(out)


# ---------------------------------------------------------------- estimator
def critic_mi(v: Variables, *, bound: str, seed: int = 0, groups=None,
              device: str = "cpu", threads: int | None = 1, **options) -> Estimate:
    """Train a critic for ``bound`` on a training split and report the bound (nats) on a
    held-out split. ``options``: fields of :class:`CriticConfig`; ``threads``: torch CPU
    threads while training (``classifiers.torch_threads``; None: as set)."""
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
    is_test = holdout_mask(gid, cfg.holdout, (seed, 11))
    rest = np.flatnonzero(~is_test)
    is_val = holdout_mask(gid[rest], cfg.val_frac, (seed, 12))
    train, val, test = rest[~is_val], rest[is_val], np.flatnonzero(is_test)
    batch = min(cfg.batch_size, len(train))
    eval_batch = min(cfg.eval_batch, len(test) // 2, len(val))
    if batch < 2 or eval_batch < 2:
        raise ValueError(f"too few rows (n={n}) for a critic: need at least 2 rows per batch "
                         "in each of the train, validation and test splits")

    x = torch.as_tensor(_encode(v.x, train), device=dev)
    y = torch.as_tensor(_encode(v.y, train), device=dev)
    gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, 13]).integers(2**62)))
    critic = CRITICS[cfg.critic](x.shape[1], y.shape[1], hidden=cfg.hidden, layers=cfg.layers,
                                 embed=cfg.embed, generator=gen).to(dev)
    opt = torch.optim.Adam(critic.parameters(), lr=cfg.lr)
    rng = np.random.default_rng([seed, 14])
    val_batches = _batches(val, eval_batch, np.random.default_rng([seed, 15]))

    t0 = time.perf_counter()
    best = (-math.inf, 0, copy.deepcopy(critic.state_dict()))
    state, since_best, step, diverged = None, 0, 0, None
    queue: list[np.ndarray] = []
    for step in range(1, cfg.max_steps + 1):
        if not queue:  # epochs of disjoint random minibatches
            queue = _batches(train, batch, rng)[::-1]
        idx = torch.as_tensor(queue.pop(), device=dev)
        value, state = spec.train(critic(x[idx], y[idx]), state, **bopts)
        if not torch.isfinite(value):
            diverged = step
            break
        opt.zero_grad(set_to_none=True)
        (-value).backward()
        opt.step()
        if step % cfg.eval_every == 0 or step in EARLY_EVALS:
            val_value = float(np.mean(_bound_on(critic, x, y, val_batches, spec, bopts)))
            if val_value > best[0]:
                best, since_best = (val_value, step, copy.deepcopy(critic.state_dict())), 0
            else:
                since_best += 1
                if since_best >= cfg.patience:
                    break
    critic.load_state_dict(best[2])
    test_batches = _batches(test, eval_batch, np.random.default_rng([seed, 16]))
    per_batch = _bound_on(critic, x, y, test_batches, spec, bopts)
    if not np.all(np.isfinite(per_batch)):
        raise EsslInfoError(f"{bound}: the critic's held-out bound is not finite "
                            f"(diverged at step {diverged}); lower lr or use infonce/smile")
    value = float(per_batch.mean())
    se = float(per_batch.std(ddof=1) / math.sqrt(len(per_batch)))

    diagnostics = {"steps": step, "best_step": best[1], "val_bound": best[0],
                   "n_train": len(train), "n_val": len(val), "n_test": len(test),
                   "n_test_batches": len(per_batch), "train_seconds": time.perf_counter() - t0}
    if diverged is not None:
        diagnostics["diverged_at_step"] = diverged
    if bound == "infonce":
        ceiling = infonce_ceiling(eval_batch)
        diagnostics["log_batch_ceiling"] = ceiling
        # with a near-optimal critic InfoNCE ~ log b - log(1 + (b-1) e^-I): within log 2 of
        # the ceiling means I >~ log b, where the bound cannot tell values apart
        diagnostics["at_ceiling"] = bool(value > ceiling - math.log(2.0))
    params = {**asdict(cfg), "batch_size": batch, "eval_batch": eval_batch, "bound": bound,
              "seed": seed, "device": str(dev), "grouped": groups is not None,
              "split": f"train/val/test by {'group' if groups is not None else 'row'}: "
                       f"{len(train)}/{len(val)}/{len(test)} rows",
              "stderr_method": "std of the bound over disjoint held-out batches / sqrt(#)"}
    for name in ("tau", "momentum"):
        if name not in spec.options:
            params.pop(name)
    return Estimate(value, se, n=n, params=params, diagnostics=diagnostics)


def _register(name: str) -> None:
    def fn(v: Variables, *, k: int, seed: int, **params) -> Estimate:
        return critic_mi(v, bound=name, seed=seed, **params)

    fn.__doc__ = f"{name} lower bound with a trained critic, reported on held-out rows"
    register_mi(name, supports=lambda v: v.cond is None, symmetric=False, uses_k=False,
                reference=BOUNDS[name].reference)(fn)


for _name in ("infonce", "nwj", "mine", "smile"):
    _register(_name)
