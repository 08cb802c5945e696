"""``rank_transforms``: which candidate transformations the theory predicts will help,
measured on the data before any training.

For each transformation T with K labels, every image X̄ is shown under (all or a few of)
its labels A, giving X = T_A(X̄). Two small CNN predictors are trained on X:
q(a|x) and q(a|x,c) (the same network with the one-hot class appended before its head).
With held-out cross-entropies (cross-fitted over images: all copies of an image sit in one
fold, and the predictors never saw the image whose loss they score)

    Ĥ_V(A|X)    = CE(q(a|x))                         (an upper bound on H(A|X))
    Î_V(A;C|X)  = CE(q(a|x)) − CE(q(a|x,c))          (usable information, Xu et al. 2020)

in nats, with a cluster-robust standard error over images (the difference is paired: both
losses are scored on the same rows). The plug-in Î(A;C) on the labels checks the design
(A is drawn independently of C, so it is ≈ 0). Wang et al. (NeurIPS 2024) predict that a
transformation helps E-SSL when predicting A needs the class (I(A;C|X) > 0, the
explaining-away synergy); since I(A;C|X) ≤ H(A|X), a transformation readable from the
image alone (H(A|X) ≈ 0: lossless, or a shortcut) cannot create synergy. ``VERDICTS``
turns the two numbers into that reading; transformations are ranked by Î_V(A;C|X).

Predictors are near Bayes-calibrated: early stopping on a validation split of the training
images and temperature scaling of each head on it (Guo et al. 2017), so that the
cross-entropy approaches the conditional entropy (checked on rotation-world, whose
I(A;C|X) and H(A|X) are known exactly).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .estimators.classifiers import (fit_temperature, nll_from_logits, seeded_linear,
                                     torch_threads)
from .estimators.probe import clustered_mean
from .types import Estimate, Report

# ======================================================================== predictors


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


class TransformationPredictor(nn.Module):
    """A small CNN trunk h(x) with two MLP heads: logits of q(a|x) and of q(a|x,c).

    The trunk halves the resolution (3x3 conv-ReLU-maxpool) until it is at most 4 px and
    ends with a conv-ReLU; h(x) concatenates that map flattened (the spatial layout that
    reveals rotations and patch permutations) and its global max (the same evidence
    wherever the object sits). The q(a|x,c) head sees [h(x), scaled onehot(c)].
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
        self.n_classes = n_classes
        self.head_x = nn.Sequential(seeded_linear(feat, cfg.hidden, generator), nn.ReLU(),
                                    seeded_linear(cfg.hidden, n_labels, generator))
        self.head_xc = nn.Sequential(seeded_linear(feat + n_classes, cfg.hidden, generator),
                                     nn.ReLU(), seeded_linear(cfg.hidden, n_labels, generator))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(x)  # (n, w, s, s)
        h = torch.cat([f.flatten(1), f.amax(dim=(2, 3))], dim=1)
        onehot = F.one_hot(c, self.n_classes).to(h.dtype) * CLASS_INPUT_SCALE
        return self.head_x(h), self.head_xc(torch.cat([h, onehot], dim=1))


@torch.no_grad()
def _logits(model: nn.Module, x, c, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    outs = [model(x[i:i + batch], c[i:i + batch]) for i in range(0, len(x), batch)]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def fit_predictor(x: torch.Tensor, a: torch.Tensor, c: torch.Tensor, train: np.ndarray,
                  val: np.ndarray, *, n_labels: int, n_classes: int, cfg: PredictorConfig,
                  generator: torch.Generator) -> tuple[dict, dict, dict]:
    """Train a :class:`TransformationPredictor` (loss CE_x + CE_xc, Adam); keep, for each
    head, the epoch with the lowest validation loss, then fit that head's temperature on
    all validation rows (Guo et al. 2017). Returns ``(models, temperatures, info)``, the
    first two keyed by head ("x", "xc").

    ``train`` and ``val`` are (n_images, L): the rows of each image (its L labels). An
    epoch shows every training image once, under one of its labels drawn afresh: the copies
    of an image share its nuisance (position, background), and training on all of them at
    once lets the network memorise image identity -> label offset instead of learning
    P(a|x) (measured on rotation-world: held-out CE 0.77 vs 0.65 nats at the truth). Early
    stopping scores one fixed label per validation image (the comparison between epochs
    is paired, and it costs 1/L of scoring them all).

    ``x`` (N, C, H, W) normalised inputs, ``a`` (N,) labels, ``c`` (N,) classes, all on
    one device; label draws and minibatch order come from ``generator`` (CPU), so CPU runs
    are bit-identical.
    """
    model = TransformationPredictor(x.shape[1], x.shape[-1], n_labels, n_classes, cfg,
                                    generator).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    table = torch.as_tensor(train)  # (n_images, L) row ids
    val_t = torch.as_tensor(val)
    pick = torch.randint(0, val_t.shape[1], (len(val_t),), generator=generator)
    vs = val_t[torch.arange(len(val_t)), pick].to(x.device)   # one row per image
    va = val_t.reshape(-1).to(x.device)                        # all rows
    # each head keeps its own best epoch: the two losses need not bottom out together
    best = {"x": (math.inf, -1, None), "xc": (math.inf, -1, None)}
    for epoch in range(cfg.max_epochs):
        model.train()
        pick = torch.randint(0, table.shape[1], (len(table),), generator=generator)
        rows = table[torch.arange(len(table)), pick]
        order = rows[torch.randperm(len(rows), generator=generator)].to(x.device)
        for start in range(0, len(order), cfg.batch_size):
            b = order[start:start + cfg.batch_size]
            lx, lxc = model(x[b], c[b])
            loss = F.cross_entropy(lx, a[b]) + F.cross_entropy(lxc, a[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        logits = dict(zip(("x", "xc"), _logits(model, x[vs], c[vs])))
        for head, lg in logits.items():
            val_loss = float(F.cross_entropy(lg.double(), a[vs]))
            if val_loss < best[head][0] - 1e-5:
                best[head] = (val_loss, epoch, {k: v.clone() for k, v in
                                                model.state_dict().items()})
        if epoch - max(best["x"][1], best["xc"][1]) >= cfg.patience:
            break
    models, temps = {}, {}
    for i, head in enumerate(("x", "xc")):
        m = TransformationPredictor(x.shape[1], x.shape[-1], n_labels, n_classes, cfg,
                                    torch.Generator()).to(x.device)
        m.load_state_dict(best[head][2])
        models[head] = m
        temps[head] = fit_temperature(_logits(m, x[va], c[va])[i], a[va])
    info = {"epochs_run": epoch + 1, **{f"best_epoch_{h}": best[h][1] for h in best},
            **{f"val_ce_{h}": best[h][0] for h in best}}
    return models, temps, info


def _folds(image_class: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """(n_images,) fold of each image: a seeded permutation within each class dealt
    round-robin, so every fold holds about the same share of every class."""
    fold = np.empty(len(image_class), dtype=np.int64)
    offset = 0
    for cls in np.unique(image_class):
        members = rng.permutation(np.flatnonzero(image_class == cls))
        fold[members] = (np.arange(len(members)) + offset) % n_folds
        offset += len(members)
    return fold


def cross_fitted_losses(x: torch.Tensor, a: torch.Tensor, c: torch.Tensor,
                        image: np.ndarray, *, n_labels: int, n_classes: int,
                        cfg: PredictorConfig = PredictorConfig(), seed: int = 0,
                        progress: Callable[[str], None] | None = None
                        ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Held-out per-row losses ``(nll_x, nll_xc)``, each (N,) float64 in nats:
    −log q(a_i|x_i) and −log q(a_i|x_i,c_i), every row scored by predictors trained on the
    other folds of images (``image`` (N,) image id of each row; rows of one image share a
    fold). Temperature-calibrated on a validation split of the training images."""
    if cfg.folds < 2:
        raise ValueError(f"folds must be >= 2, got {cfg.folds}")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(seed))
    ids, first, counts = np.unique(image, return_index=True, return_counts=True)
    if np.any(counts != counts[0]):
        raise ValueError("every image needs the same number of rows (labels)")
    table = np.argsort(image, kind="stable").reshape(len(ids), counts[0])  # rows per image
    if len(ids) < 2 * cfg.folds:
        raise ValueError(f"need at least {2 * cfg.folds} images for {cfg.folds}-fold "
                         f"cross-fitting, got {len(ids)}")
    img_fold = _folds(c[first].cpu().numpy(), cfg.folds, rng)
    row_fold = img_fold[np.searchsorted(ids, image)]
    nll_x = np.empty(len(image))
    nll_xc = np.empty(len(image))
    info = []
    for f in range(cfg.folds):
        held = np.flatnonzero(row_fold == f)
        train_imgs = ids[img_fold != f]
        val_imgs = rng.choice(train_imgs, size=max(1, int(cfg.val_fraction * len(train_imgs))),
                              replace=False)
        is_val = np.isin(image, val_imgs)
        train = table[((row_fold != f) & ~is_val)[table[:, 0]]]  # (n_train_images, L)
        val = table[is_val[table[:, 0]]]                           # (n_val_images, L)
        models, temps, fit_info = fit_predictor(x, a, c, train, val, n_labels=n_labels,
                                                n_classes=n_classes, cfg=cfg,
                                                generator=generator)
        hx = torch.as_tensor(held, device=x.device)
        nll_x[held] = nll_from_logits(_logits(models["x"], x[hx], c[hx])[0], a[hx], temps["x"])
        nll_xc[held] = nll_from_logits(_logits(models["xc"], x[hx], c[hx])[1], a[hx],
                                       temps["xc"])
        info.append({**fit_info, "temperature_x": temps["x"], "temperature_xc": temps["xc"]})
        if progress:
            progress(f"fold {f + 1}/{cfg.folds}")
    return nll_x, nll_xc, {"folds": info}


# ========================================================================== verdicts


@dataclass(frozen=True)
class Verdict:
    """One reading of the theory: ``applies(r)`` on the measured numbers ``r`` (a dict
    with h, h_se, h_xc, h_xc_se, i, i_se, log_k, tol; nats); ``reason`` is formatted
    with ``r``. The first verdict of ``VERDICTS`` that applies is the verdict."""

    name: str
    applies: Callable[[dict], bool]
    reason: str


VERDICTS: list[Verdict] = [
    Verdict("uninformative",
            lambda r: r["log_k"] - r["h_xc"] <= r["tol"] + 2 * r["h_xc_se"],
            "A cannot be predicted from X even knowing the class (CE {h_xc:.3f} ≈ log K = "
            "{log_k:.3f}): the transformation is invisible, E-SSL has nothing to learn"),
    Verdict("lossless/shortcut",
            lambda r: r["h"] <= r["tol"] + 2 * r["h_se"],
            "A is readable from X alone (H(A|X) ≈ {h:.3f}): since I(A;C|X) ≤ H(A|X) there is "
            "no synergy, predicting A needs no class features"),
    Verdict("synergistic",
            lambda r: r["i"] - 2 * r["i_se"] > r["tol"],
            "knowing the class helps predict A (I(A;C|X) = {i:.3f} ± {i_se:.3f}): "
            "explaining-away, E-SSL with it should learn class features"),
    Verdict("class-irrelevant",
            lambda r: True,
            "A is partly ambiguous (H(A|X) = {h:.3f}) but the class hardly resolves it "
            "(I(A;C|X) = {i:.3f} ± {i_se:.3f}, not above {tol} nats by 2 stderr): little "
            "synergy expected"),
]


def verdict(r: dict) -> tuple[str, str]:
    for v in VERDICTS:
        if v.applies(r):
            return v.name, v.reason.format(**r)
    raise AssertionError("the last verdict always applies")  # pragma: no cover


# ====================================================================== the pipeline

DEFAULT_CANDIDATES = ("rotation4", "hflip", "vflip", "invert", "grayscale", "jigsaw4", "blur4")
ALL_LABELS_UP_TO = 8      # K above this: sample labels per image instead of all K copies
SAMPLED_LABELS = 4        # labels per image when sampling
MAX_IMAGES = 5000         # default cap on the images used (seeded subset)
# Images are shown to the predictors at 16 px unless asked otherwise: V-information is
# relative to a predictor family, here small CNNs on 16 px inputs (digits are 8 px at
# source, rotation-world's glyphs stay exact at 16 px), and time grows with the pixels.
RANK_IMAGE_SIZE = 16


def transformed_rows(images: torch.Tensor, labels: torch.Tensor, t, *, mean, std,
                     labels_per_image: int | None, rng: np.random.Generator,
                     chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 np.ndarray]:
    """Every image under ``labels_per_image`` distinct labels of ``t`` (all K when None
    and K ≤ ALL_LABELS_UP_TO, else SAMPLED_LABELS drawn uniformly without replacement),
    normalised per channel after the transformation.

    Returns ``x (N, C, H, W)`` float32, ``a (N,)``, ``c (N,)`` int64 tensors and
    ``image (N,)`` int64 numpy ids (index into ``images``).
    """
    n, k = len(images), t.n_classes
    per = labels_per_image or (k if k <= ALL_LABELS_UP_TO else SAMPLED_LABELS)
    if not 1 <= per <= k:
        raise ValueError(f"labels_per_image must lie in 1..{k} for {t.name}, got {per}")
    if per == k:
        a = np.tile(np.arange(k), n)
    else:
        a = np.concatenate([rng.permutation(k)[:per] for _ in range(n)])
    image = np.repeat(np.arange(n), per)
    a_t = torch.from_numpy(a).to(torch.int64)
    img_t = torch.from_numpy(image)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    x = torch.cat([(t.apply(images[img_t[i:i + chunk]], a_t[i:i + chunk]) - m) / s
                   for i in range(0, len(a), chunk)])
    return x, a_t, labels[img_t], image


def _resolve_dataset(dataset, *, split, image_size, data_dir, seed, dataset_params):
    from .data import ImageDataset, load_dataset

    if isinstance(dataset, ImageDataset):
        if dataset_params or image_size is not None:
            raise ValueError("dataset is already loaded: pass image_size and dataset "
                             "parameters to load_dataset instead")
        return dataset
    if not isinstance(dataset, str):
        raise ValueError(f"dataset must be a name or an ImageDataset, got "
                         f"{type(dataset).__name__}")
    size = RANK_IMAGE_SIZE if image_size is None else image_size
    return load_dataset(dataset, split=split, data_dir=data_dir, image_size=size,
                        seed=seed, **dataset_params)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def rank_transforms(dataset, transforms: str | Sequence = DEFAULT_CANDIDATES, *,
                    seed: int = 0, n_images: int | None = None,
                    labels_per_image: int | None = None, split: str = "train",
                    image_size: int | None = None, data_dir: str | None = None,
                    config: PredictorConfig | None = None, device: str = "cpu",
                    tol: float = 0.02, threads: int | None = 1, progress: bool = False,
                    **dataset_params) -> Report:
    """Rank candidate transformations by the data-level synergy Î_V(A;C|X) (nats).

    Parameters
    ----------
    dataset : str | ImageDataset
        A registry name (loaded with ``split``, ``image_size`` (default 16 px, see
        ``RANK_IMAGE_SIZE``), ``data_dir``, ``seed`` and ``dataset_params``, e.g.
        rotation-world's ``m, eps, delta, s``) or an ``ImageDataset`` used as is.
    transforms : str | sequence
        ``"rotation4,hflip"``, names or ``Transformation`` objects.
    n_images : int, optional
        Use a seeded random subset of this many images (default: all, at most 5,000).
    labels_per_image : int, optional
        Labels shown per image (default: all K for K ≤ 8, else 4 sampled: jigsaw4).
    config : PredictorConfig
        CNN capacity, schedule and cross-fitting folds.
    tol : float
        Nats below which a quantity counts as ≈ 0 in the verdicts (on top of 2 stderr).
    threads : int | None
        CPU threads while training (``classifiers.torch_threads``; None: torch's setting).
        One is the default: on a busy 2-core machine an epoch of these small CNNs took
        0.3 s on one thread and 1.4-2.3 s on two (OpenMP threads waiting on each other).

    Returns
    -------
    Report
        Per transformation: ``I(A;C)`` (plug-in), ``H(A|X)`` and ``I(A;C|X)`` (method
        ``"cnn"``), each with ``params["transformation"]``; ``extra["ranking"]`` lists
        the transformations by decreasing Î_V(A;C|X) with their verdicts.
    """
    from . import __version__
    from .data import Transformation, parse_transformations
    from .estimators import estimate_mi

    t0 = time.perf_counter()
    cfg = config or PredictorConfig()
    dev = _resolve_device(device)
    ts = [t if isinstance(t, Transformation) else None for t in
          (transforms if not isinstance(transforms, str) else [])]
    if isinstance(transforms, str) or None in ts:
        names = transforms if isinstance(transforms, str) else [str(t) for t in transforms]
        ts = parse_transformations(names)
    ds = _resolve_dataset(dataset, split=split, image_size=image_size, data_dir=data_dir,
                          seed=seed, dataset_params=dataset_params)
    rng = np.random.default_rng(seed)
    cap = MAX_IMAGES if n_images is None else int(n_images)
    if cap < 2 * cfg.folds:
        raise ValueError(f"n_images must be at least {2 * cfg.folds}, got {n_images}")
    if len(ds) > cap:
        ds = ds.subset(np.sort(rng.choice(len(ds), size=cap, replace=False)))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ts) * cfg.folds, desc="rank-transforms", unit="fit",
                   leave=False)
    estimates, readings = [], []
    for t in ts:
        t_start = time.perf_counter()
        x, a, c, image = transformed_rows(ds.images, ds.labels, t, mean=ds.mean, std=ds.std,
                                          labels_per_image=labels_per_image, rng=rng)
        if bar is not None:
            bar.set_postfix_str(t.name)
        with torch_threads(threads if dev.type == "cpu" else None):
            nll_x, nll_xc, info = cross_fitted_losses(
                x.to(dev), a.to(dev), c.to(dev), image, n_labels=t.n_classes,
                n_classes=ds.n_classes, cfg=cfg, seed=seed,
                progress=(lambda _msg: bar.update(1)) if bar is not None else None)
        h, h_se = clustered_mean(nll_x, image)
        h_xc, h_xc_se = clustered_mean(nll_xc, image)
        i, i_se = clustered_mean(nll_x - nll_xc, image)
        common = {"transformation": t.name, "n_labels": t.n_classes,
                  "labels_per_image": int(len(image) // len(ds)), "n_images": len(ds),
                  "folds": cfg.folds, "stderr_method": "cluster-robust over images",
                  "seed": seed}
        diag = {**info, "H(A|X,C)": h_xc, "H(A|X,C)_stderr": h_xc_se,
                "log_K": math.log(t.n_classes), "seconds": time.perf_counter() - t_start}
        n = len(image)
        ac = estimate_mi(a.numpy(), c.numpy(), x_discrete=True, y_discrete=True,
                         method="plugin", quantity="I(A;C)")
        estimates += [
            ac.with_(params={**ac.params, **common}),
            Estimate(h, h_se, method="cnn", n=n, quantity="H(A|X)",
                     params={**common, "estimator": "held-out CE of q(a|x), small CNN"},
                     diagnostics=diag),
            Estimate(i, i_se, method="cnn", n=n, quantity="I(A;C|X)",
                     params={**common, "estimator": "CE(q(a|x)) - CE(q(a|x,c)), paired"},
                     diagnostics=diag),
        ]
        r = {"h": h, "h_se": h_se, "h_xc": h_xc, "h_xc_se": h_xc_se, "i": i, "i_se": i_se,
             "log_k": math.log(t.n_classes), "tol": tol}
        name, reason = verdict(r)
        readings.append({"transformation": t.name, "n_classes": t.n_classes,
                         "verdict": name, "reason": reason, "I(A;C|X)": i})
    if bar is not None:
        bar.close()
    readings.sort(key=lambda r: -r["I(A;C|X)"])
    ranking = [{"rank": k + 1, **{key: r[key] for key in
                                  ("transformation", "n_classes", "verdict", "reason")}}
               for k, r in enumerate(readings)]
    provenance = {"library_version": __version__, "dataset_params": dict(ds.params),
                  "split": ds.split, "n_images": len(ds), "seed": seed,
                  "transformations": [t.name for t in ts], "predictor": asdict(cfg),
                  "device": str(dev), "threads": threads, "tol": tol,
                  "elapsed_s": time.perf_counter() - t0}
    return Report(estimates, checkpoint=None, dataset=ds.name, provenance=provenance,
                  extra={"ranking": ranking})


__all__ = [
    "DEFAULT_CANDIDATES",
    "PredictorConfig",
    "TransformationPredictor",
    "VERDICTS",
    "cross_fitted_losses",
    "fit_predictor",
    "rank_transforms",
    "transformed_rows",
    "verdict",
]
