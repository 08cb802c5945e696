"""Seeded torch predictors behind the variational estimators.

The cross-entropy probe (``probe.py``) and the critic bounds (``neural.py``) need small
trainable models that are exact, fast and reproducible:

- :func:`fit_logistic`: multinomial logistic regression, full batch, L-BFGS with analytic
  gradients, L2 penalty on the weights (McCullagh & Nelder; the convex problem scikit-learn's
  ``LogisticRegression(solver="lbfgs")`` solves, which the tests compare against).
- :func:`fit_mlp_classifier`: a small MLP classifier trained with Adam, early-stopped on a
  validation split (the best epoch is kept).
- :func:`fit_temperature`: temperature scaling of logits on validation data (Guo et al. 2017,
  "On calibration of modern neural networks").
- :func:`mlp`: an MLP whose layers are initialised from an explicit ``torch.Generator``; the
  global torch RNG is never touched (``nn.Linear`` would draw from it).
- :func:`torch_threads`: a scoped limit on torch's CPU threads (see there why).

Shapes: ``X`` (n, d) float tensors, ``y`` (n,) int64 class indices in 0..K-1. Losses in nats.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


# ---------------------------------------------------------------- CPU threads
@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run torch's CPU ops on ``n`` intra-op threads inside the block, then restore the
    previous setting (``None``: leave it alone).

    The estimators' problems are small and latency-bound (GEMMs of ~10^7 flops, thousands
    of optimiser steps): one thread is about as fast as two on an idle 2-core machine, and
    10-50x faster on a busy one, where OpenMP threads wait on each other at every op
    (measured: the d=128, N=10,000 probe took 1.2-2.8 s on 1 thread and 6-28 s on 2 while
    other jobs ran). Results are bit-identical for a given thread count.
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"threads must be a positive integer or None, got {n!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------- seeded layers
def seeded_linear(n_in: int, n_out: int, generator: torch.Generator, *,
                  device: str | torch.device = "cpu", dtype=torch.float32) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default initialisation (Kaiming-uniform weights, uniform
    bias in +-1/sqrt(fan_in)) drawn from ``generator`` instead of the global RNG."""
    layer = torch.nn.utils.skip_init(nn.Linear, n_in, n_out, device="cpu", dtype=dtype)
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(n_in) if n_in > 0 else 0.0
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer.to(device)


def mlp(sizes: list[int], generator: torch.Generator, *, device="cpu", dtype=torch.float32,
        activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """MLP ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between linear layers."""
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {sizes}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(seeded_linear(a, b, generator, device=device, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def nll_from_logits(logits: torch.Tensor, y: torch.Tensor,
                    temperature: float = 1.0) -> np.ndarray:
    """Per-row negative log-likelihood -log softmax(logits / T)[y], (n,) float64, nats."""
    lp = torch.log_softmax(logits.double() / temperature, dim=1)
    return (-lp.gather(1, y.view(-1, 1)).squeeze(1)).cpu().numpy()


# ---------------------------------------------------------------- logistic regression
@dataclass
class LogisticFit:
    """A multinomial logistic regression with optional per-group terms:

        logits_i = X_i W + b + [X_i U_{g_i}] + B_{g_i}

    ``W`` (d, K), ``b`` (K,); with groups ``B`` (G, K) per-group intercepts (the same as
    one-hot group columns) and, when fitted with ``group_weights``, ``U`` (G, d, K) per-group
    weight deviations (the same as the interaction features X (x) onehot(g), without building
    them: the cost stays one GEMM over all rows)."""

    W: torch.Tensor
    b: torch.Tensor
    U: torch.Tensor | None
    B: torch.Tensor | None
    l2: float
    n_eval: int

    def logits(self, X: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.addmm(self.b, X, self.W)  # (n, K)
        if self.B is not None:
            out = out + self.B[g]
        if self.U is not None:
            out = out + torch.bmm(X.unsqueeze(1), self.U[g]).squeeze(1)
        return out


def _group_slices(g: torch.Tensor, n_groups: int) -> list[slice]:
    counts = torch.bincount(g, minlength=n_groups).tolist()
    ends = np.cumsum(counts)
    return [slice(int(e - c), int(e)) for c, e in zip(counts, ends)]


def _null_model(X, y, n_classes, g, n_groups, group_weights) -> LogisticFit:
    d, K = X.shape[1], n_classes
    kw = dict(dtype=X.dtype, device=X.device)
    cell = torch.zeros(max(n_groups, 1) if g is not None else 1, K, **kw)
    cell.index_put_((torch.zeros_like(y) if g is None else g, y),
                    torch.ones(len(y), **kw), accumulate=True)
    logq = torch.log((cell + 0.5) / (cell.sum(1, keepdim=True) + 0.5 * K))  # (G or 1, K)
    U = torch.zeros(n_groups, d, K, **kw) if (g is not None and group_weights and d) else None
    if g is None:
        return LogisticFit(torch.zeros(d, K, **kw), logq[0], None, None, math.inf, 0)
    return LogisticFit(torch.zeros(d, K, **kw), torch.zeros(K, **kw), U, logq, math.inf, 0)


def fit_logistic(X: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float, *,
                 g: torch.Tensor | None = None, n_groups: int = 0,
                 group_weights: bool = True, init: LogisticFit | None = None,
                 max_iter: int = 500, tol: float = 1e-5,
                 bias_l2: float = 1e-4) -> LogisticFit:
    """Minimise  mean_i CE(softmax(logits_i), y_i) + l2/2 (||W||^2 + ||U||^2)
                 + bias_l2/2 (||b||^2 + ||B||^2)   (see :class:`LogisticFit`).

    ``l2=inf`` gives the null model q(t | g): W = U = 0 and intercepts equal to the log
    add-1/2 (Krichevsky-Trofimov) label frequencies of the training rows, per group, in
    closed form (the same as ``probe.heldout_surprisal``, so a probe that selects it scores
    exactly 0 against the held-out entropy).

    Full-batch L-BFGS with strong-Wolfe line search and analytic gradients. ``init``
    warm-starts from another fit (a path over l2). The tiny ``bias_l2`` keeps the intercept
    of a class absent from the training rows finite. ``X`` (n, d) standardised features
    (d may be 0), ``y`` (n,) int64, ``g`` (n,) int64 group codes in 0..n_groups-1 or None.
    Dtype and device follow ``X``. Deterministic for given inputs on CPU.
    """
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    n, d = X.shape
    if math.isinf(l2):  # the null model q(t | g), W = U = 0
        return _null_model(X, y, n_classes, g, n_groups, group_weights)
    K = n_classes
    if g is not None:  # rows sorted by group so that each group is a contiguous view
        order = torch.argsort(g, stable=True)
        X, y, g = X[order], y[order], g[order]
        slices = _group_slices(g, n_groups)
    onehot = F.one_hot(y, K).to(X.dtype)  # (n, K)
    yy = y.view(-1, 1)
    G = n_groups if g is not None else 0
    use_U = g is not None and group_weights and d > 0
    shapes = [(d, K), (K,), (G, d, K) if use_U else (0,), (G, K) if G else (0,)]
    sizes = [int(np.prod(s)) for s in shapes]
    if init is None:
        freq = onehot.mean(0)
        b0 = torch.log((freq * n + 0.5) / (n + 0.5 * K))
        parts = [torch.zeros(shapes[0], dtype=X.dtype, device=X.device), b0 - b0.mean(),
                 torch.zeros(sizes[2], dtype=X.dtype, device=X.device),
                 torch.zeros(sizes[3], dtype=X.dtype, device=X.device)]
    else:
        parts = [init.W, init.b,
                 init.U if (use_U and init.U is not None) else torch.zeros(sizes[2]),
                 init.B if (G and init.B is not None) else torch.zeros(sizes[3])]
    theta = nn.Parameter(torch.cat([p.reshape(-1).to(X) for p in parts]))

    def unpack(th: torch.Tensor):
        out, o = [], 0
        for shape, size in zip(shapes, sizes):
            out.append(th[o:o + size].view(shape))
            o += size
        return out

    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=1e-10, history_size=20,
                            line_search_fn="strong_wolfe")
    n_eval = [0]

    def closure():
        W, b, U, B = unpack(theta.detach())
        logits = torch.addmm(b, X, W)
        if G:
            for j, sl in enumerate(slices):
                logits[sl] += B[j]
                if use_U:
                    logits[sl] += X[sl] @ U[j]
        lse = torch.logsumexp(logits, dim=1, keepdim=True)  # (n, 1)
        loss = lse.mean() - logits.gather(1, yy).mean()
        loss = loss + 0.5 * l2 * ((W * W).sum() + (U * U).sum())
        loss = loss + 0.5 * bias_l2 * ((b * b).sum() + (B * B).sum())
        R = (torch.exp(logits - lse) - onehot) / n  # (n, K) d loss / d logits
        grads = [X.T @ R + l2 * W, R.sum(0) + bias_l2 * b, None, None]
        if G:
            gB = torch.stack([R[sl].sum(0) for sl in slices]) + bias_l2 * B
            grads[3] = gB
            if use_U:
                grads[2] = torch.stack([X[sl].T @ R[sl] for sl in slices]) + l2 * U
        grads = [gr if gr is not None else torch.zeros(s, dtype=X.dtype, device=X.device)
                 for gr, s in zip(grads, shapes)]
        theta.grad = torch.cat([gr.reshape(-1) for gr in grads])
        n_eval[0] += 1
        return loss

    opt.step(closure)
    W, b, U, B = (p.clone() for p in unpack(theta.detach()))
    return LogisticFit(W, b, U if use_U else None, B if G else None, float(l2), n_eval[0])


# ---------------------------------------------------------------- temperature scaling
def fit_temperature(logits: torch.Tensor, y: torch.Tensor, *,
                    bounds: tuple[float, float] = (0.05, 20.0), max_iter: int = 50) -> float:
    """The T in ``bounds`` minimising mean CE(softmax(logits / T), y) (Guo et al. 2017).

    The CE is convex in beta = 1/T, with derivative mean_i(E_p[l_i] - l_iy) and second
    derivative mean_i Var_p[l_i] (p = softmax(beta l_i)): damped Newton steps on beta from
    beta = 1 reach machine precision in a handful of iterations. ``logits`` (n, K), ``y`` (n,).
    """
    lg = logits.detach().double()
    ly = lg.gather(1, y.view(-1, 1)).squeeze(1)  # (n,)
    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]

    def ce(beta: float) -> float:
        return float((torch.logsumexp(beta * lg, dim=1) - beta * ly).mean())

    beta, f = 1.0, ce(1.0)
    for _ in range(max_iter):
        p = torch.softmax(beta * lg, dim=1)
        mean_l = (p * lg).sum(1)
        grad = float((mean_l - ly).mean())
        hess = float(((p * lg * lg).sum(1) - mean_l**2).mean())
        if abs(grad) < 1e-12 or hess <= 1e-15:
            break
        step = -grad / hess
        while True:  # backtrack until the CE decreases (convex: a step that is short enough does)
            new = min(max(beta + step, lo), hi)
            f_new = ce(new)
            if f_new <= f or abs(step) < 1e-12:
                break
            step /= 2
        if f_new > f or abs(new - beta) < 1e-10 * beta:
            beta, f = (new, f_new) if f_new <= f else (beta, f)
            break
        beta, f = new, f_new
    return float(1.0 / beta)


# ---------------------------------------------------------------- MLP classifier
@dataclass
class MLPFit:
    model: nn.Module
    best_epoch: int
    val_ce: float

    @torch.no_grad()
    def logits(self, X: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model(X)


def fit_mlp_classifier(X: torch.Tensor, y: torch.Tensor, Xval: torch.Tensor,
                       yval: torch.Tensor, n_classes: int, *, generator: torch.Generator,
                       hidden: tuple[int, ...] = (256,), weight_decay: float = 1e-4,
                       lr: float = 1e-3, batch_size: int = 256, max_epochs: int = 200,
                       patience: int = 10) -> MLPFit:
    """Train an MLP classifier with AdamW on (X, y); keep the epoch with the lowest
    validation cross-entropy; stop after ``patience`` epochs without improvement.

    Minibatch order comes from ``generator`` (CPU), so a seed gives bit-identical weights on
    CPU. ``X`` (n, d), ``Xval`` (m, d) on the same device and dtype.
    """
    model = mlp([X.shape[1], *hidden, n_classes], generator, device=X.device, dtype=X.dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(X)
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    for epoch in range(max_epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(X.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float(F.cross_entropy(model(Xval).double(), yval))
        if val < best[0] - 1e-6:
            best = (val, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= patience:
            break
    model.load_state_dict(best[2])
    return MLPFit(model, best[1], best[0])
