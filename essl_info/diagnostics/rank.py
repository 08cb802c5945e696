"""``rank_transforms``: which candidate transformations the theory predicts will help,
measured on the data before any training.

For each transformation T with K labels, every image X̄ is shown under (all or a few of)
its labels A, giving X = T_A(X̄). Two small CNN predictors are trained on X:
q(a|x) and q(a|x,c) (one trunk, two heads; the second also sees the class).
With held-out cross-entropies (cross-fitted over images: all copies of an image sit in one
fold, and the predictors never saw the image whose loss they score)

    Ĥ_V(A|X)    = CE(q(a|x))                         (an upper bound on H(A|X))
    Î_V(A;C|X)  = CE(q(a|x)) − CE(q(a|x,c))          (usable information, Xu et al. 2020)

in nats. The predictors are refitted ``PredictorConfig.fits`` times (default 3: new folds,
initialisations, label draws and minibatch order, all trained as one batched ensemble); each
fit's numbers carry a cluster-robust standard error over images (the difference is paired:
both losses are scored on the same rows), and ``resampling.combine_seeds`` reports their
mean with a total error, sampling ⊕ t-inflated spread between fits (both parts in
``diagnostics``). The plug-in Î(A;C) on the labels checks the design
(A is drawn independently of C, so it is ≈ 0). Wang et al. (NeurIPS 2024) predict that a
transformation helps E-SSL when predicting A needs the class (I(A;C|X) > 0, the
explaining-away synergy); since I(A;C|X) ≤ H(A|X), a transformation readable from the
image alone (H(A|X) ≈ 0: lossless, or a shortcut) cannot create synergy. ``VERDICTS``
turns the two numbers into that reading, deciding only on whole 95 % intervals of the total
error (*undetermined* otherwise, or when the fits disagree; *learned nothing* when even
q(a|x,c) is no better than a uniform guess); values outside their possible range are
flagged in ``Report.extra["flags"]`` (``estimators.ranges``). Transformations are ranked by
Î_V(A;C|X).

The predictors and their cross-fitting live in ``transform_predictors``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..estimators.classifiers import torch_threads
from ..estimators.probe import clustered_mean
from ..estimators.probe_families import resolve_device
from ..estimators.ranges import range_flags, warn_flags
from ..estimators.resampling import combine_seeds
from .transform_predictors import PredictorConfig, cross_fitted_losses
from ..types import Estimate, Report

# ========================================================================== verdicts

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Verdict:
    """One reading of the theory: ``applies(r)`` on the measured numbers ``r`` (a dict
    with h, h_se, h_xc, h_xc_se, i, i_se: the fits' means and total standard errors, log_k,
    tol, z (the 95 % normal quantile) and fits (the per-fit values); nats); ``reason`` is
    formatted with ``r``. The first verdict of ``VERDICTS`` that applies is the verdict.

    A number decides a reading only when its whole 95 % interval (value ± z·stderr, the
    total error: sampling ⊕ seeds) lies on one side of the threshold; an interval that
    straddles it, or fits whose own values fall on different sides, give *undetermined*.
    """

    name: str
    applies: Callable[[dict], bool]
    reason: str


def _learned_nothing(r: dict) -> bool:   # CE(q(a|x,c)) not below log K beyond tol + error
    return r["log_k"] - r["h_xc"] <= r["tol"] + r["z"] * r["h_xc_se"]


VERDICTS: list[Verdict] = [
    Verdict("learned nothing", _learned_nothing,
            "the predictors learned nothing: CE of q(a|x,c) {h_xc:.3f} ± {h_xc_se:.3f} is not "
            "below log K = {log_k:.3f}, no better than a uniform guess; this is no evidence "
            "about the transformation (too few images or too small a predictor look the same)"),
    Verdict("undetermined", lambda r: r["fits_disagree"],
            "the {n_fits} fits disagree ({fit_verdicts}; I(A;C|X) per fit {fit_i}): more "
            "images or fits are needed to tell"),
    Verdict("lossless/shortcut", lambda r: r["h"] + r["z"] * r["h_se"] <= r["tol"],
            "A is readable from X alone (H(A|X) = {h:.3f} ± {h_se:.3f}, below {tol} nats): "
            "since I(A;C|X) <= H(A|X) there is no synergy, predicting A needs no class "
            "features"),
    Verdict("undetermined", lambda r: r["h"] - r["z"] * r["h_se"] <= r["tol"],
            "H(A|X) = {h:.3f} ± {h_se:.3f} straddles the shortcut threshold {tol} nats: "
            "cannot tell a shortcut from an ambiguous transformation"),
    Verdict("synergistic", lambda r: r["i"] - r["z"] * r["i_se"] > r["tol"],
            "knowing the class helps predict A (I(A;C|X) = {i:.3f} ± {i_se:.3f}, above {tol} "
            "nats): explaining-away, E-SSL with it should learn class features"),
    Verdict("class-irrelevant", lambda r: r["i"] + r["z"] * r["i_se"] <= r["tol"],
            "A is partly ambiguous (H(A|X) = {h:.3f}) but the class hardly resolves it "
            "(I(A;C|X) = {i:.3f} ± {i_se:.3f}, below {tol} nats): little synergy expected"),
    Verdict("undetermined", lambda r: True,
            "I(A;C|X) = {i:.3f} ± {i_se:.3f} straddles the synergy threshold {tol} nats: "
            "cannot tell synergistic from class-irrelevant"),
]


def verdict(r: dict) -> tuple[str, str]:
    """The first verdict of ``VERDICTS`` that applies to the reading ``r`` and its reason.
    ``r["fits"]`` (optional): the per-fit readings (dicts with h, h_xc, i); when their own
    point verdicts (each number read without error) differ, the fits disagree."""
    r = {"z": Z_95, **r}
    fits = r.get("fits") or []
    point = [_first({**r, **f, "h_se": 0.0, "h_xc_se": 0.0, "i_se": 0.0,
                     "fits_disagree": False}).name for f in fits]
    r.update(fits_disagree=len(set(point)) > 1, n_fits=len(fits),
             fit_verdicts=", ".join(point),
             fit_i=", ".join(f"{f['i']:.3f}" for f in fits))
    v = _first(r)
    return v.name, v.reason.format(**r)


def _first(r: dict) -> Verdict:
    for v in VERDICTS:
        if v.applies(r):
            return v
    raise AssertionError("the last verdict always applies")  # pragma: no cover


# ====================================================================== the pipeline

DEFAULT_CANDIDATES = ("rotation4", "hflip", "vflip", "invert", "grayscale", "jigsaw4", "blur4")
ALL_LABELS_UP_TO = 8      # K above this: sample labels per image instead of all K copies
SAMPLED_LABELS = 4        # labels per image when sampling
MAX_IMAGES = 5000         # default cap on the images used (seeded subset)
# Fewest images per class rank_transforms accepts. Measured on digits (10 classes, 3 fits,
# candidates rotation4, invert, hflip; seeds 0 and 1; 20, 40, 80, 160 images): up to 80
# images the visible hflip "learned nothing" in all six runs, its I(A;C|X) carrying total
# errors up to 13 nats, and rotation4's H(A|X) stayed at 0.71-0.90 nats (0.19 with all
# 1,438 images); at 160 images hflip was learned in one run of two and rotation4 in both,
# with total errors <= 0.74 nats, which the verdicts then read as undetermined. Below ~15
# per class the output is noise; at and above it the intervals say how much is known.
MIN_IMAGES_PER_CLASS = 15
NUMERICAL_FLOOR = 1e-6    # nats: float32 round-off of a held-out CE difference


def min_images(n_classes: int, cfg: PredictorConfig) -> int:
    """The fewest images ``rank_transforms`` accepts: ``MIN_IMAGES_PER_CLASS`` per class,
    and two per cross-fitting fold."""
    return max(MIN_IMAGES_PER_CLASS * n_classes, 2 * cfg.folds)


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
    from ..data import ImageDataset, load_dataset

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


def _workers(workers: int | None, dev: torch.device, n_tasks: int) -> int:
    if workers is None:
        workers = 1 if dev.type != "cpu" else min(2, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return max(1, min(int(workers), n_tasks))


def rank_transforms(dataset, transforms: str | Sequence = DEFAULT_CANDIDATES, *,
                    seed: int = 0, n_images: int | None = None,
                    labels_per_image: int | None = None, split: str = "train",
                    image_size: int | None = None, data_dir: str | None = None,
                    config: PredictorConfig | None = None, device: str = "cpu",
                    tol: float = 0.02, threads: int | None = 1, workers: int | None = None,
                    progress: bool = False, **dataset_params) -> Report:
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
        Use a seeded random subset of this many images (default: all, at most 5,000);
        at least ``min_images`` (``MIN_IMAGES_PER_CLASS`` per class), else ValueError.
    labels_per_image : int, optional
        Labels shown per image (default: all K for K ≤ 8, else 4 sampled: jigsaw4).
    config : PredictorConfig
        CNN capacity, schedule, cross-fitting folds and the number of fits.
    tol : float
        Nats below which a quantity counts as ≈ 0 in the verdicts (on top of 2 stderr).
    threads : int | None
        CPU threads while training (``classifiers.torch_threads``; None: torch's setting).
        One is the default: on a busy 2-core machine an epoch of these small CNNs took
        0.3 s on one thread and 1.4-2.3 s on two (OpenMP threads waiting on each other).
    workers : int | None
        Transformations whose predictors train at the same time, in Python threads (torch
        releases the GIL inside its ops; each op runs on ``threads`` threads). Default
        (None): min(2, CPU count) on CPU, 1 on a GPU. Results do not depend on it: each
        transformation's rows are drawn in order before any fit starts, and every fit is
        seeded by (seed, transformation, fit).

    Returns
    -------
    Report
        Per transformation: ``I(A;C)`` (plug-in), ``H(A|X)`` and ``I(A;C|X)`` (method
        ``"cnn"``), each with ``params["transformation"]``; ``extra["ranking"]`` lists
        the transformations by decreasing Î_V(A;C|X) with their verdicts;
        ``extra["flags"]`` (when any) the out-of-range values, also issued as
        ``DataWarning``. H(A|X) and I(A;C|X) are means over the fits; their
        ``diagnostics`` hold the sampling and seed parts of the error and every fit's value.
    """
    from .. import __version__
    from ..data import parse_transformations
    from ..estimators import estimate_mi

    t0 = time.perf_counter()
    cfg = config or PredictorConfig()
    dev = resolve_device(device)
    ts = parse_transformations(transforms)
    n_workers = _workers(workers, dev, len(ts))   # bad input refused before any work
    ds = _resolve_dataset(dataset, split=split, image_size=image_size, data_dir=data_dir,
                          seed=seed, dataset_params=dataset_params)
    rng = np.random.default_rng(seed)
    cap = MAX_IMAGES if n_images is None else int(n_images)
    need = min_images(ds.n_classes, cfg)
    if min(cap, len(ds)) < need:
        raise ValueError(
            f"rank-transforms needs at least {need} images for {ds.n_classes} classes "
            f"({MIN_IMAGES_PER_CLASS} per class), got {min(cap, len(ds))}: with fewer the "
            "predictors learn too little for their errors to tell any verdict apart")
    if len(ds) > cap:
        ds = ds.subset(np.sort(rng.choice(len(ds), size=cap, replace=False)))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ts), desc="rank-transforms", unit="transformation", leave=False)
    # rows first, in order (they share ``rng``), then the fits, ``workers`` at a time
    rows = [transformed_rows(ds.images, ds.labels, t, mean=ds.mean, std=ds.std,
                             labels_per_image=labels_per_image, rng=rng) for t in ts]

    def fit(k: int):
        x, a, c, image = rows[k]
        t_start = time.perf_counter()
        out = cross_fitted_losses(
            x.to(dev), a.to(dev), c.to(dev), image, n_labels=ts[k].n_classes,
            n_classes=ds.n_classes, cfg=cfg, seed=seed,
            progress=(lambda msg: bar.set_postfix_str(f"{ts[k].name}: {msg}"))
            if bar is not None and n_workers == 1 else None)
        if bar is not None:
            bar.update(1)
        return (*out, time.perf_counter() - t_start)

    with torch_threads(threads if dev.type == "cpu" else None):
        if n_workers == 1:
            fitted = [fit(k) for k in range(len(ts))]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n_workers, thread_name_prefix="essl-rank") as pool:
                fitted = list(pool.map(fit, range(len(ts))))
    estimates, readings, flags = [], [], []
    for t, (x, a, c, image), (nll_x, nll_xc, info, seconds) in zip(ts, rows, fitted):
        per_fit = [{"h": clustered_mean(nll_x[s], image), "h_xc": clustered_mean(nll_xc[s], image),
                    "i": clustered_mean(nll_x[s] - nll_xc[s], image)} for s in range(cfg.fits)]
        comb = {q: combine_seeds([f[q][0] for f in per_fit], [f[q][1] for f in per_fit])
                for q in ("h", "h_xc", "i")}
        log_k = math.log(t.n_classes)
        common = {"transformation": t.name, "n_labels": t.n_classes,
                  "labels_per_image": int(len(image) // len(ds)), "n_images": len(ds),
                  "folds": cfg.folds, "fits": cfg.fits, "seed": seed,
                  "stderr_method": "cluster-robust over images (sampling) + between-fit "
                                   "spread, t-inflated (resampling.combine_seeds)"}
        diag = {**info, "H(A|X,C)": comb["h_xc"].value, "H(A|X,C)_stderr": comb["h_xc"].stderr,
                "log_K": log_k, "seconds": seconds}
        n = nll_x.shape[1]
        ac = estimate_mi(a.numpy(), c.numpy(), x_discrete=True, y_discrete=True,
                         method="plugin", quantity="I(A;C)")
        h_est = Estimate(comb["h"].value, comb["h"].stderr, method="cnn", n=n,
                         quantity="H(A|X)",
                         params={**common, "estimator": "held-out CE of q(a|x), small CNN, "
                                                        "mean over fits"},
                         diagnostics={**diag, **comb["h"].diagnostics()})
        i_est = Estimate(comb["i"].value, comb["i"].stderr, method="cnn", n=n,
                         quantity="I(A;C|X)",
                         params={**common, "estimator": "CE(q(a|x)) - CE(q(a|x,c)), paired, "
                                                        "mean over fits"},
                         diagnostics={**diag, **comb["i"].diagnostics()})
        estimates += [ac.with_(params={**ac.params, **common}), h_est, i_est]
        # float32 logits: two predictors that both output the uniform guess differ by
        # ~1e-7 nats with a ~0 stderr, which is no evidence of a negative information
        flags += range_flags(i_est, lower=-NUMERICAL_FLOOR, context=t.name)
        flags += range_flags(h_est, lower=0.0, upper=log_k + tol,
                             upper_name=f"log K + tol = {log_k + tol:.3f}", context=t.name)
        r = {"h": comb["h"].value, "h_se": comb["h"].stderr, "h_xc": comb["h_xc"].value,
             "h_xc_se": comb["h_xc"].stderr, "i": comb["i"].value, "i_se": comb["i"].stderr,
             "log_k": log_k, "tol": tol,
             "fits": [{q: f[q][0] for q in f} for f in per_fit]}
        name, reason = verdict(r)
        readings.append({"transformation": t.name, "n_classes": t.n_classes,
                         "verdict": name, "reason": reason, "I(A;C|X)": comb["i"].value})
    if bar is not None:
        bar.close()
    warn_flags(flags)
    readings.sort(key=lambda r: -r["I(A;C|X)"])
    ranking = [{"rank": k + 1, **{key: r[key] for key in
                                  ("transformation", "n_classes", "verdict", "reason")}}
               for k, r in enumerate(readings)]
    provenance = {"library_version": __version__, "dataset_params": dict(ds.params),
                  "split": ds.split, "n_images": len(ds), "seed": seed,
                  "transformations": [t.name for t in ts], "predictor": asdict(cfg),
                  "device": str(dev), "threads": threads, "workers": n_workers, "tol": tol,
                  "elapsed_s": time.perf_counter() - t0}
    extra = {"ranking": ranking, **({"flags": flags} if flags else {})}
    return Report(estimates, checkpoint=None, dataset=ds.name, provenance=provenance,
                  extra=extra)


__all__ = [
    "DEFAULT_CANDIDATES",
    "MIN_IMAGES_PER_CLASS",
    "PredictorConfig",
    "RANK_IMAGE_SIZE",
    "VERDICTS",
    "Z_95",
    "Verdict",
    "min_images",
    "rank_transforms",
    "transformed_rows",
    "verdict",
]
