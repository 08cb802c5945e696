"""Small CNN predictors of a transformation label, q(a|x) and q(a|x,c), scored by
cross-fitting and refitted over seeds: the V-information estimators behind
``rank_transforms`` (Xu et al. 2020, "A theory of usable information under computational
constraints").

``cross_fitted_losses`` returns, for every fit (seed) and every row (an image under one
label), the held-out losses −log q(a|x) and −log q(a|x,c) in nats from predictors that
never saw the row's image. Per fit, their means are Ĥ_V(A|X) and Ĥ_V(A|X,C) and their
paired difference is Î_V(A;C|X); ``rank_transforms`` combines the fits with
``resampling.combine_seeds``. The predictors are near Bayes-calibrated (early stopping and
temperature scaling on a validation split of the training images, Guo et al. 2017): on
rotation-world, whose information is known exactly, the held-out cross-entropies come
within ~0.03 nats of it.

All ``fits × folds`` predictors of one transformation train together as one ensemble
(:func:`fit_ensemble`): their parameters are stacked and one ``torch.func.vmap`` call runs
every member's forward pass (the convolutions become one grouped convolution), so the
Python and dispatch overhead of a step is paid once for all members. Each member keeps its
own initialisation, training images, label draws, minibatch order, early stopping and
temperature; Adam is elementwise, so one Adam on the stacked parameters is the members'
independent Adams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from ..estimators.classifiers import fit_temperature, nll_from_logits, seeded_linear


@dataclass(frozen=True)
class PredictorConfig:
    """Capacity and training schedule of the CNN predictors (defaults: seconds on a CPU
    for a few thousand 16-32 px images)."""

    width: int = 16            # channels of the first conv layer (then 2x)
    hidden: int = 64           # hidden units of each head
    max_epochs: int = 100
    patience: int = 6          # epochs without validation improvement (both heads)
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    folds: int = 3             # cross-fitting folds (over images)
    val_fraction: float = 0.2  # of each fold's training images, for stopping + temperature
    fits: int = 3              # independent fits (seeds), combined by combine_seeds


def _seeded_conv(c_in: int, c_out: int, generator: torch.Generator) -> nn.Conv2d:
    """3x3 same-padding conv with PyTorch's default init drawn from ``generator``."""
    conv = torch.nn.utils.skip_init(nn.Conv2d, c_in, c_out, 3, padding=1)
    with torch.no_grad():
        nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(c_in * 9)
        conv.bias.uniform_(-bound, bound, generator=generator)
    return conv


# The class enters q(a|x,c)'s head as CLASS_INPUT_SCALE * onehot(c). Adam moves every
# weight at about the same rate, so this scale sets how fast the class can steer the head:
# at 1.0 the head needed twice the epochs to reach the same held-out loss on rotation-world.
CLASS_INPUT_SCALE = 4.0


class ClassConditionalHead(nn.Module):
    """q(a|x,c) from features h: hidden = ReLU(W1 [h, s·onehot(c)] + b1), then a shared
    output layer plus one per class: logits = (W2 + U_c) hidden + b2 + B_c.

    The per-class layer is what the task asks for (a class-specific map from what the image
    shows to the label, e.g. a = o − φ(c) on rotation-world); through the hidden layer alone
    the head learnt it slowly: on rotation-world with m = 4 classes its held-out CE stayed
    0.09 nats above the Bayes CE (I(A;C|X) 0.19 for 0.25) against 0.05 (0.24) with it.
    ``forward(h (n, d), c (n,) int64) -> (n, K)``.
    """

    def __init__(self, d: int, n_classes: int, n_labels: int, hidden: int,
                 generator: torch.Generator):
        super().__init__()
        self.n_classes = n_classes
        self.hidden = nn.Sequential(seeded_linear(d + n_classes, hidden, generator), nn.ReLU())
        self.out = seeded_linear(hidden, n_labels, generator)
        bound = 1.0 / math.sqrt(hidden)   # nn.Linear's default scale, per class
        self.class_weight = nn.Parameter(
            torch.empty(n_classes, n_labels, hidden).uniform_(-bound, bound,
                                                              generator=generator))
        self.class_bias = nn.Parameter(torch.zeros(n_classes, n_labels))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(c, self.n_classes).to(h.dtype) * CLASS_INPUT_SCALE
        z = self.hidden(torch.cat([h, onehot], dim=1))                         # (n, hidden)
        per_class = torch.bmm(self.class_weight[c], z.unsqueeze(2)).squeeze(2)  # (n, K)
        return self.out(z) + per_class + self.class_bias[c]


class TransformationPredictor(nn.Module):
    """A small CNN trunk h(x) with two MLP heads: logits of q(a|x) and of q(a|x,c).

    The trunk halves the resolution (3x3 conv-ReLU-maxpool) until it is at most 4 px and
    ends with a conv-ReLU; h(x) concatenates that map flattened (the spatial layout that
    reveals rotations and patch permutations) and its global max (the same evidence
    wherever the object sits). The q(a|x,c) head is a :class:`ClassConditionalHead`.
    ``forward(x (n,C,H,W), c (n,) int64) -> (logits_x (n,K), logits_xc (n,K))``.
    """

    def __init__(self, channels: int, image_size: int, n_labels: int, n_classes: int,
                 cfg: PredictorConfig, generator: torch.Generator):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size, w = channels, image_size, cfg.width
        while size > 4:
            layers += [_seeded_conv(c_in, w, generator), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, size, w = w, size // 2, 2 * cfg.width
        layers += [_seeded_conv(c_in, w, generator), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        feat = w * size * size + w
        self.head_x = nn.Sequential(seeded_linear(feat, cfg.hidden, generator), nn.ReLU(),
                                    seeded_linear(cfg.hidden, n_labels, generator))
        self.head_xc = ClassConditionalHead(feat, n_classes, n_labels, cfg.hidden, generator)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(x)  # (n, w, s, s)
        h = torch.cat([f.flatten(1), f.amax(dim=(2, 3))], dim=1)
        return self.head_x(h), self.head_xc(h, c)


# ====================================================================== the ensemble


@dataclass(frozen=True)
class Member:
    """One predictor of the ensemble: fold ``fold`` of fit ``fit``. Row ids (into the
    transformed rows): ``train`` (n_train_images, L) and ``val`` (n_val, L) hold the rows of
    each training / validation image (its L labels); ``held`` (n_held,) the rows it scores."""

    fit: int
    fold: int
    train: np.ndarray
    val: np.ndarray
    held: np.ndarray


def stratified_folds(image_class: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """(n_images,) fold of each image: a seeded permutation within each class dealt
    round-robin, so every fold holds about the same share of every class (fold sizes
    differ by at most one image and do not depend on ``rng``)."""
    fold = np.empty(len(image_class), dtype=np.int64)
    offset = 0
    for cls in np.unique(image_class):
        members = rng.permutation(np.flatnonzero(image_class == cls))
        fold[members] = (np.arange(len(members)) + offset) % n_folds
        offset += len(members)
    return fold


def _fit_seed(seed: int, fit: int, *extra: int) -> np.random.SeedSequence:
    """The seed sequence of fit ``fit`` (and of one of its folds) in a run with ``seed``:
    runs with different seeds share no stream."""
    return np.random.SeedSequence([int(seed), int(fit), *extra])


def plan_members(image: np.ndarray, image_class: np.ndarray, cfg: "PredictorConfig",
                 seed: int) -> list[Member]:
    """The ``cfg.fits × cfg.folds`` members: each fit deals its own stratified folds over
    images and draws its own validation images (``cfg.val_fraction`` of the smallest
    training set, the same count for every member). ``image`` (N,) image id of each row,
    every image with the same number L of rows; ``image_class`` (n_images,) class of each
    image, indexed like ``np.unique(image)``."""
    ids, counts = np.unique(image, return_counts=True)
    if np.any(counts != counts[0]):
        raise ValueError("every image needs the same number of rows (labels)")
    if len(ids) < 2 * cfg.folds:
        raise ValueError(f"need at least {2 * cfg.folds} images for {cfg.folds}-fold "
                         f"cross-fitting, got {len(ids)}")
    table = np.argsort(image, kind="stable").reshape(len(ids), counts[0])  # rows per image
    row_image = np.searchsorted(ids, image)                                  # (N,) index
    smallest_train = len(ids) - math.ceil(len(ids) / cfg.folds)
    n_val = max(1, int(cfg.val_fraction * smallest_train))
    members = []
    for s in range(cfg.fits):
        rng = np.random.default_rng(_fit_seed(seed, s))
        img_fold = stratified_folds(image_class, cfg.folds, rng)
        for f in range(cfg.folds):
            train_imgs = np.flatnonzero(img_fold != f)
            val_imgs = np.sort(rng.choice(train_imgs, size=n_val, replace=False))
            train_imgs = np.setdiff1d(train_imgs, val_imgs)
            members.append(Member(s, f, table[train_imgs], table[val_imgs],
                                  np.flatnonzero(img_fold[row_image] == f)))
    return members


def _epoch_rows(members: list[Member], gens: list[torch.Generator]) -> torch.Tensor:
    """(M, n_max) training rows of one epoch: every training image of a member once, under
    one of its labels drawn afresh, in a random order; members with fewer images than the
    largest are topped up with repeats of their own rows (at most a few per epoch)."""
    n_max = max(len(m.train) for m in members)
    out = []
    for m, g in zip(members, gens):
        table = torch.as_tensor(m.train)
        pick = torch.randint(0, table.shape[1], (len(table),), generator=g)
        rows = table[torch.arange(len(table)), pick]
        rows = rows[torch.randperm(len(rows), generator=g)]
        if len(rows) < n_max:
            rows = torch.cat([rows, rows[torch.randint(0, len(rows), (n_max - len(rows),),
                                                       generator=g)]])
        out.append(rows)
    return torch.stack(out)


class _Stacked:
    """The members' parameters stacked along a leading axis (M, ...) and one Adam on them;
    ``forward`` runs the template module's forward for every member at once (vmap).
    ``keep(mask)`` drops finished members, parameters and Adam moments alike."""

    def __init__(self, modules: list[nn.Module], cfg: "PredictorConfig"):
        self.template = modules[0]
        params, _ = stack_module_state(modules)
        self.params = params
        self.cfg = cfg
        self.opt = torch.optim.Adam(list(params.values()), lr=cfg.lr,
                                    weight_decay=cfg.weight_decay)
        self._vf = vmap(lambda p, x, c: functional_call(self.template, p, (x, c)))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (M, n, C, H, W), c (M, n) -> logits (M, n, K) of q(a|x) and of q(a|x,c)."""
        return self._vf(self.params, x, c)

    def keep(self, mask: torch.Tensor) -> None:
        new = {k: p.detach()[mask].clone().requires_grad_(True) for k, p in self.params.items()}
        opt = torch.optim.Adam(list(new.values()), lr=self.cfg.lr,
                               weight_decay=self.cfg.weight_decay)
        for k, p in self.params.items():
            state = self.opt.state.get(p)
            if state:
                opt.state[new[k]] = {key: (v[mask].clone() if torch.is_tensor(v) and v.dim()
                                           else v) for key, v in state.items()}
        self.params, self.opt = new, opt


def _batched_logits(stacked: _Stacked, x, c, rows: torch.Tensor, batch: int = 512):
    """Logits (M, n, K) of both heads for the (M, n) ``rows`` of each member."""
    with torch.no_grad():
        outs = [stacked.forward(x[rows[:, i:i + batch]], c[rows[:, i:i + batch]])
                for i in range(0, rows.shape[1], batch)]
    return torch.cat([o[0] for o in outs], 1), torch.cat([o[1] for o in outs], 1)


def fit_ensemble(x: torch.Tensor, a: torch.Tensor, c: torch.Tensor, members: list[Member],
                 *, n_labels: int, n_classes: int, cfg: "PredictorConfig", seed: int = 0,
                 progress: Callable[[str], None] | None = None
                 ) -> tuple[dict[str, dict[str, torch.Tensor]], list[dict]]:
    """Train one :class:`TransformationPredictor` per member (loss CE_x + CE_xc, Adam), all
    at once. Returns ``(best, info)``: ``best[head][name]`` (M, ...) the parameters of each
    member at the epoch of its lowest validation loss for that head ("x", "xc": the two
    losses need not bottom out together), and one info dict per member (epochs run, best
    epochs, validation CEs).

    An epoch shows every training image once, under one of its labels drawn afresh: the
    copies of an image share its nuisance (position, background), and training on all of
    them at once lets the network memorise image identity -> label offset instead of
    learning P(a|x) (measured on rotation-world: held-out CE 0.77 vs 0.65 nats at the
    truth). Early stopping scores one fixed label per validation image (the comparison
    between epochs is paired, and it costs 1/L of scoring them all); a member stops when
    neither head improved for ``cfg.patience`` epochs and then leaves the ensemble.

    ``x`` (N, C, H, W) normalised inputs, ``a`` (N,) labels, ``c`` (N,) classes, all on one
    device. Member m's initialisation, label draws and minibatch order come from its own
    CPU generator (seeded by ``seed``, fit and fold), so CPU runs are bit-identical.
    """
    gens = [torch.Generator().manual_seed(int(_fit_seed(seed, m.fit, m.fold, 1)
                                              .generate_state(1, np.uint64)[0] >> 1))
            for m in members]
    modules = [TransformationPredictor(x.shape[1], x.shape[-1], n_labels, n_classes, cfg,
                                       g).to(x.device) for g in gens]
    stacked = _Stacked(modules, cfg)
    n_m = len(members)
    best = {h: {k: p.detach().clone() for k, p in stacked.params.items()} for h in ("x", "xc")}
    best_loss = {h: np.full(n_m, np.inf) for h in best}
    best_epoch = {h: np.full(n_m, -1) for h in best}
    epochs_run = np.zeros(n_m, dtype=np.int64)
    val_rows = []   # one fixed label per validation image, (n_val,) per member
    for m, g in zip(members, gens):
        table = torch.as_tensor(m.val)
        val_rows.append(table[torch.arange(len(table)),
                              torch.randint(0, table.shape[1], (len(table),), generator=g)])
    val_rows = torch.stack(val_rows).to(x.device)      # (M, n_val)
    active = np.arange(n_m)                            # members still training
    for epoch in range(cfg.max_epochs):
        order = _epoch_rows([members[j] for j in active], [gens[j] for j in active]
                            ).to(x.device)            # (M_active, n_max)
        for start in range(0, order.shape[1], cfg.batch_size):
            b = order[:, start:start + cfg.batch_size]
            lx, lxc = stacked.forward(x[b], c[b])                     # (M_active, B, K)
            ab = a[b].reshape(-1)
            loss = (F.cross_entropy(lx.reshape(-1, n_labels), ab, reduction="sum")
                    + F.cross_entropy(lxc.reshape(-1, n_labels), ab, reduction="sum")
                    ) / b.shape[1]              # the sum over members of each member's mean
            stacked.opt.zero_grad(set_to_none=True)
            loss.backward()
            stacked.opt.step()
        epochs_run[active] = epoch + 1
        vr = val_rows[active]
        logits = dict(zip(("x", "xc"), _batched_logits(stacked, x, c, vr)))
        for head, lg in logits.items():
            val_loss = F.cross_entropy(lg.double().reshape(-1, n_labels),
                                       a[vr].reshape(-1), reduction="none"
                                       ).reshape(vr.shape).mean(1).cpu().numpy()
            better = val_loss < best_loss[head][active] - 1e-5
            if better.any():
                idx = torch.as_tensor(active[better])
                sel = torch.as_tensor(np.flatnonzero(better))
                for k, p in stacked.params.items():
                    best[head][k][idx] = p.detach()[sel.to(p.device)]
                best_loss[head][active[better]] = val_loss[better]
                best_epoch[head][active[better]] = epoch
        last = np.maximum(best_epoch["x"][active], best_epoch["xc"][active])
        going = epoch - last < cfg.patience
        if progress:
            progress(f"epoch {epoch + 1}, {int(going.sum())}/{n_m} predictors training")
        if not going.any():
            break
        if not going.all():
            stacked.keep(torch.as_tensor(going, device=x.device))
            active = active[going]
    info = [{"fit": m.fit, "fold": m.fold, "epochs_run": int(epochs_run[j]),
             **{f"best_epoch_{h}": int(best_epoch[h][j]) for h in best},
             **{f"val_ce_{h}": float(best_loss[h][j]) for h in best}}
            for j, m in enumerate(members)]
    return best, info


def cross_fitted_losses(x: torch.Tensor, a: torch.Tensor, c: torch.Tensor,
                        image: np.ndarray, *, n_labels: int, n_classes: int,
                        cfg: PredictorConfig = PredictorConfig(), seed: int = 0,
                        progress: Callable[[str], None] | None = None
                        ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Held-out per-row losses ``(nll_x, nll_xc)``, each (fits, N) float64 in nats:
    −log q(a_i|x_i) and −log q(a_i|x_i,c_i) for every fit, every row scored by that fit's
    predictors trained on the other folds of images (``image`` (N,) image id of each row;
    rows of one image share a fold). Temperature-calibrated per member and head on its
    validation images (all their labels). ``info["members"]``: one dict per member."""
    if cfg.folds < 2:
        raise ValueError(f"folds must be >= 2, got {cfg.folds}")
    if cfg.fits < 1:
        raise ValueError(f"fits must be >= 1, got {cfg.fits}")
    ids, first = np.unique(image, return_index=True)
    members = plan_members(image, c[torch.as_tensor(first)].cpu().numpy(), cfg, seed)
    best, info = fit_ensemble(x, a, c, members, n_labels=n_labels, n_classes=n_classes,
                              cfg=cfg, seed=seed, progress=progress)
    nll_x = np.full((cfg.fits, len(image)), np.nan)
    nll_xc = np.full((cfg.fits, len(image)), np.nan)
    model = TransformationPredictor(x.shape[1], x.shape[-1], n_labels, n_classes, cfg,
                                    torch.Generator().manual_seed(0)).to(x.device)
    with torch.no_grad():
        for j, m in enumerate(members):
            va = torch.as_tensor(m.val.reshape(-1), device=x.device)
            held = torch.as_tensor(m.held, device=x.device)
            for i, head in enumerate(("x", "xc")):
                params = {k: v[j] for k, v in best[head].items()}
                temp = fit_temperature(functional_call(model, params, (x[va], c[va]))[i],
                                       a[va])
                logits = torch.cat([functional_call(model, params, (x[h], c[h]))[i]
                                    for h in held.split(1024)])
                out = nll_x if head == "x" else nll_xc
                out[m.fit, m.held] = nll_from_logits(logits, a[held], temp)
                info[j][f"temperature_{head}"] = temp
    return nll_x, nll_xc, {"members": info}


__all__ = ["CLASS_INPUT_SCALE", "ClassConditionalHead", "Member", "PredictorConfig",
           "TransformationPredictor", "cross_fitted_losses", "fit_ensemble", "plan_members",
           "stratified_folds"]
