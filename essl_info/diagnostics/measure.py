"""``measure``: the information quantities of a trained representation, with error bars.

    >>> from essl_info import measure
    >>> report = measure("runs/digits/checkpoint.pt")        # doctest: +SKIP
    >>> report.get("I(A;C|Z)", method="probe")               # doctest: +SKIP

For each transformation of the checkpoint, every held-out image (test split by default) is
shown to the model under all K labels (``features.extract_features``); the quantities of
DESIGN §1 (``quantities.QUANTITIES``) are estimated from those features by the probe
(primary) and by kNN on principal components (second opinion), and the report flags where
the two disagree beyond their errors. All values in nats, signed.

``rank_transforms`` lives in ``essl_info.diagnostics.rank`` and is re-exported here; the
command-line glue of ``essl-info measure`` and ``rank-transforms`` is in
``essl_info.diagnostics.commands``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..data import parse_transformations
from ..errors import CheckpointError, DataError
from .any_model import measure_features, user_model_and_dataset
from .equivariance import QUANTITIES as EQUIVARIANCE, equivariance_estimates
from .features import check_layer, evaluating, extract_features
from .quantities import (METHODS, PROBE_SEEDS, QUANTITIES, Context, disagreements,
                         estimate_quantities, range_checks)
from ..estimators.probe_families import resolve_device
from ..estimators.ranges import warn_flags
from .rank import rank_transforms
from ..types import Report

METHOD_CHOICES = {"auto": METHODS, "probe": ("probe",), "knn": ("ross",)}
CHECKPOINT_SUFFIXES = (".pt", ".pth")
RESUME_NAME = "resume.pt"   # the trainer's resume copy of checkpoint.pt: not measured twice
# exit code of `measure` over several checkpoints when some, not all, could be measured
# (their reasons on stderr, the others reported as usual); 0: all measured, 2: none
EXIT_SOME_FAILED = 3


# ======================================================================= the pieces
def load_for_measure(checkpoint, *, arch: str | None = None, dataset=None,
                     data_dir: str | None = None, seed: int = 0,
                     dataset_params: Mapping[str, Any] | None = None) -> tuple[dict, str]:
    """(checkpoint dict, its name) from a path, a loaded dict, or None (the bundled
    checkpoint). With ``arch``, the file is a foreign checkpoint (``importers``)."""
    from ..models.checkpoint import bundled_checkpoint_path, load_checkpoint, validate_checkpoint

    if isinstance(checkpoint, Mapping):
        return validate_checkpoint(dict(checkpoint), "checkpoint"), "<in memory>"
    path = Path(bundled_checkpoint_path() if checkpoint is None else checkpoint)
    if arch is not None:
        from ..models.importers import import_foreign

        if dataset is None or not isinstance(dataset, str):
            raise ValueError("--arch needs --dataset: the data to measure an imported "
                             "checkpoint on")
        return import_foreign(path, arch=arch, dataset=dataset, data_dir=data_dir,
                              seed=seed, **dict(dataset_params or {})), str(path)
    return load_checkpoint(path), str(path)


def measurement_dataset(ckpt: Mapping[str, Any], dataset=None, *, split: str = "test",
                        data_dir: str | None = None,
                        dataset_params: Mapping[str, Any] | None = None):
    """The images to measure on: ``dataset`` (an ImageDataset, or a registry name) or the
    checkpoint's own dataset with its knobs, at the model's image size; ``dataset_params``
    override the knobs."""
    from ..data import ImageDataset, load_dataset

    if isinstance(dataset, ImageDataset):
        return dataset
    data = ckpt.get("data", {})
    own = data.get("dataset")
    name = dataset or own
    if not name:
        raise ValueError("the checkpoint records no dataset; pass --dataset")
    kw: dict[str, Any] = {"image_size": ckpt["model"].get("image_size")}
    if name == own:
        params = dict(data.get("params") or {})
        kw.update({k: v for k, v in params.items()
                   if k not in ("name", "split", "image_size", "data_dir")})
        kw["data_dir"] = data_dir or params.get("data_dir") or data.get("data_dir")
    else:
        kw["data_dir"] = data_dir
    kw.update(dataset_params or {})
    try:
        return load_dataset(name, split=split, **kw)
    except DataError as e:
        hint = "" if kw.get("data_dir") or "--data-dir" in str(e) else " (pass --data-dir)"
        raise DataError(f"cannot load dataset {name!r} to measure on: {e}{hint}") from None


def _transformations(ckpt: Mapping[str, Any], requested) -> list[str]:
    """Names of the transformations to measure, checked before any work is done."""
    if requested is None or (isinstance(requested, str) and not requested.strip()):
        requested = [t["name"] for t in ckpt.get("transformations", [])]
        if not requested:
            raise ValueError("the checkpoint records no transformation; pass --transforms")
    return [t.name for t in parse_transformations(requested)]


# Fewest images measure accepts, measured on the bundled digits checkpoint (probe, 3 fit
# seeds, random subsets with seeds 0 and 1; all 359 test images give I(A;Z) 1.086 ± 0.026,
# I(C;Z) 1.663 ± 0.053, I(A;C|Z) 0.123 ± 0.023): with 10-40 images a per-class probe has
# one image per class and fold or fewer, fits blow up and the estimates are meaningless
# (n=20: I(A;Z) = -1.23 ± 6.05, I(A;C|Z) = 2.15 ± 5.93; n=40: I(A;Z|C) = -0.20 ± 3.19);
# from 80 images on every interval is sane (n=80: I(A;Z) 0.95 ± 0.12 and 0.91 ± 0.22,
# I(A;C|Z) 0.10 ± 0.10 and 0.27 ± 0.29; n=160: I(A;Z) 1.05 ± 0.05).
MIN_IMAGES = 80
MIN_IMAGES_WHY = ("the probes are cross-fitted over 5 folds of images, with one head per "
                  "class; with fewer images their estimates fall outside the possible range")


# ============================================================================ measure
def measure(checkpoint=None, *, dataset=None, quantities: Sequence[str] | None = None,
            layer: str = "backbone", method: str = "auto", n_images: int | None = None,
            seed: int = 0, split: str = "test", data_dir: str | None = None,
            equivariance: bool = False,
            transformations=None, arch: str | None = None, device: str = "cpu",
            batch_size: int = 256, folds: int = 5, k: int = 3, progress: bool = False,
            dataset_params: Mapping[str, Any] | None = None,
            seeds: int = PROBE_SEEDS, model=None, normalize=None,
            image_size: int | None = None, preprocess=None) -> Report:
    """Information quantities of a checkpoint's representation (or any model's), in nats.

    Parameters
    ----------
    checkpoint : path, loaded checkpoint dict, or None for the bundled digits checkpoint.
    model : instead of a checkpoint, any ``torch.nn.Module`` or callable mapping images
        (B, C, H, W), float in [0, 1], to features (B, d) (any shape, flattened); needs
        ``dataset`` and ``transformations``. It runs in eval mode without gradients; its
        training flags and device are restored afterwards and the global torch RNG is
        left untouched.
    normalize, image_size, preprocess : what ``model`` expects: ``(mean, std)`` applied
        after ``preprocess(x)`` (a callable on the transformed batch in [0, 1]); images are
        loaded (or resized) at ``image_size`` before the transformation. All three are
        recorded in ``provenance["model"]``.
    dataset : registry name or ``ImageDataset`` (default: the checkpoint's own dataset).
    quantities : names from ``QUANTITIES`` (default: all of them), and the geometric
        equivariance metrics ``"Wahba"``, ``"gamma_f"`` (``diagnostics.equivariance``).
    equivariance : add both geometric metrics (Wahba error, γ_f; n counts images).
    layer : ``"backbone"`` (default) or ``"projector"``.
    method : ``"auto"`` (probe and kNN, flagged where they disagree), ``"probe"``, ``"knn"``.
    n_images : measure on a seeded random subset of this many images (default: all).
    split : ``"test"`` (held-out images, default) or ``"train"``.
    transformations : names (default: the checkpoint's transformations).
    arch : backbone of a foreign checkpoint (``essl_info.models.importers``); needs ``dataset``.
    dataset_params : dataset knobs (e.g. rotation-world's ``m``), over the checkpoint's.
    folds, k : cross-fitting folds of the probes; neighbours of the kNN estimators.
    seeds : fits per probe (folds, inner split, start); the error bars include their spread.

    Returns
    -------
    Report
        ``estimates``: per transformation and quantity, the probe estimate, the kNN one
        (method ``"ross"``) and the plug-in I(A;C); each carries ``params["transformation"]``
        and ``params["layer"]``. ``extra["flags"]``: disagreements, values outside what the
        quantity can be (``kind="out_of_range"``) and collapsed features.
    """
    from .. import __version__
    from ..models.checkpoint import model_from_checkpoint

    t0 = time.perf_counter()
    names = quantity_names(quantities, method, equivariance)
    check_layer(layer)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    device = str(resolve_device(device))
    user_model = model
    if user_model is not None:   # any model: DESIGN §3, "models that did not come from..."
        model, ds = user_model_and_dataset(
            user_model, checkpoint=checkpoint, arch=arch, layer=layer, dataset=dataset,
            transformations=transformations, split=split, data_dir=data_dir,
            normalize=normalize, image_size=image_size, preprocess=preprocess,
            dataset_params=dataset_params)
        ckpt, name = {}, f"<model {model.label}>"
        running = evaluating(model, device, seed)
    else:
        if normalize is not None or image_size is not None or preprocess is not None:
            raise ValueError("normalize, image_size and preprocess describe a model passed "
                             "as model=; a checkpoint records its own")
        ckpt, name = load_for_measure(checkpoint, arch=arch, dataset=dataset,
                                      data_dir=data_dir, seed=seed,
                                      dataset_params=dataset_params)
        parts = ckpt.get("train", {}).get("imported_parts")
        if layer == "projector" and parts is not None and "projector" not in parts:
            raise ValueError(f"{name} was imported without a projector (its layout has "
                             f"none); measure --layer backbone")
        with torch.random.fork_rng(devices=[]):   # building the network draws weights
            model = model_from_checkpoint(ckpt, device=device)
        ds = measurement_dataset(ckpt, dataset, split=split, data_dir=data_dir,
                                 dataset_params=dataset_params)
        running = contextlib.nullcontext()
    if n_images is not None:
        if not MIN_IMAGES <= int(n_images):
            raise ValueError(f"n_images={n_images} is too few: measure needs at least "
                             f"{MIN_IMAGES} images ({MIN_IMAGES_WHY}); pass --n-images "
                             f"{MIN_IMAGES} or more")
        if n_images < len(ds):
            rng = np.random.default_rng(seed)
            ds = ds.subset(np.sort(rng.choice(len(ds), size=int(n_images), replace=False)))
    if len(ds) < MIN_IMAGES:
        raise ValueError(f"the {ds.split} split of {ds.name} has {len(ds)} images; measure "
                         f"needs at least {MIN_IMAGES} ({MIN_IMAGES_WHY}): measure on a "
                         "larger split (--split train) or add images")

    ts = _transformations(ckpt, transformations)
    with running:
        estimates, flags, rows = estimate_from_features(
            (extract_features(model, ds, t, layer=layer, batch_size=batch_size,
                              device=device, progress=progress) for t in ts),
            names, method, seed=seed, folds=folds, k=k, device=device,
            seeds=seeds, progress=progress, n_sets=len(ts))
    progress_info = ckpt.get("progress", {})
    provenance = {
        "library_version": __version__, "seed": seed, "layer": layer, "split": ds.split,
        "method": method, "n_images": len(ds), "rows": rows,
        "transformations": list(rows), "epoch": progress_info.get("epoch"),
        "step": progress_info.get("step"), "dataset_params": dict(ds.params),
        "imported": bool(ckpt.get("train", {}).get("imported")), "device": str(device),
        "probe": {"family": "logistic", "folds": folds, "seeds": seeds}, "knn": {"k": k},
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }
    if user_model is not None:
        provenance.update(source="model", model={"name": model.label,
                                                 **model.prep.describe()})
    return Report(estimates, checkpoint=name, dataset=ds.name, provenance=provenance,
                  extra={"flags": flags} if flags else {})


def quantity_names(quantities, method: str, equivariance: bool = False) -> list[str]:
    """The requested quantities (default: every information quantity, plus the geometric
    equivariance metrics with ``equivariance``), checked with the method before any work."""
    names = list(QUANTITIES) if quantities is None else list(quantities)
    names += [q for q in EQUIVARIANCE if equivariance and q not in names]
    unknown = [q for q in names if q not in QUANTITIES and q not in EQUIVARIANCE]
    if unknown:
        raise ValueError(f"unknown quantity {unknown[0]!r}; choose from "
                         f"{list(QUANTITIES) + list(EQUIVARIANCE)}")
    if method not in METHOD_CHOICES:
        raise ValueError(f"method must be one of {sorted(METHOD_CHOICES)}, got {method!r}")
    return names


def estimate_from_features(feature_sets: Iterable, names: Sequence[str], method: str, *,
                           seed: int, folds: int, k: int, device: str,
                           seeds: int = PROBE_SEEDS, progress: bool = False, n_sets: int = 1
                           ) -> tuple[list, list[dict], dict[str, int]]:
    """The one pipeline behind ``measure`` and ``measure_features``: for each ``Features``
    (one per transformation; an iterable, so each is extracted only when needed), the
    quantities ``names`` by the methods of ``method``, with the collapsed-features and
    probe/kNN disagreement flags. Returns (estimates, flags, rows per transformation).
    ``progress``: a bar over the ``n_sets`` feature sets' estimates on stderr."""
    from .quantities import planned_estimates

    geometric = [q for q in names if q in EQUIVARIANCE]   # Wahba error, gamma_f
    names = [q for q in names if q in QUANTITIES]
    estimates, flags, rows = [], [], {}
    fits = _fit_progress(progress, n_sets * len(planned_estimates(names,
                                                                   METHOD_CHOICES[method])))
    for feats in feature_sets:
        t, layer = feats.transformation, feats.layer
        rows[t] = len(feats)
        if geometric and not feats.collapsed:
            try:
                estimates += [e for e in equivariance_estimates(feats, seed=seed)
                              if e.quantity in geometric]
            except ValueError as err:
                flags.append({"kind": "equivariance", "transformation": t,
                              "message": f"[{t}] no equivariance metrics: {err}"})
        if feats.collapsed:
            flags.append({"kind": "collapsed", "transformation": t,
                          "message": f"[{t}] the {layer} features are collapsed (all "
                                     f"{len(feats)} rows identical): Z carries no "
                                     f"information, every I(.;Z) is ~0"})
        ctx = Context(feats, seed=seed, folds=folds, device=device, k=k, seeds=seeds)
        found = estimate_quantities(ctx, names, METHOD_CHOICES[method],
                                    progress=fits and (lambda q, t=t: fits(f"{t} {q}")))
        out_of_range = range_checks(ctx, found)
        warn_flags(out_of_range)
        flags += out_of_range
        estimates += found
    if fits:
        fits(None)
    flags += disagreements(estimates)
    return estimates, flags, rows


def _fit_progress(progress: bool, total: int):
    """A callback ``step(label)`` for the estimates after feature extraction (the probe
    fits take seconds each): a tqdm bar on stderr counting each estimate as it starts;
    ``step(None)`` closes it. None when ``progress`` is off."""
    if not progress:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="estimates", unit="fit", leave=False)

    def step(label: str | None) -> None:
        if label is None:
            bar.close()
            return
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    return step


def checkpoint_paths(paths: Sequence[str]) -> list[Path]:
    """Files to measure: each path given, or every ``*.pt``/``*.pth`` in a directory (a
    run folder), leaving out the trainer's ``resume.pt`` copy of ``checkpoint.pt`` (and
    ``checkpoint.pt`` itself where an ``epoch_NNNN.pt`` of ``--save-every`` holds it)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in CHECKPOINT_SUFFIXES
                           and f.is_file() and not (f.name == RESUME_NAME and
                                                    (p / "checkpoint.pt").exists()))
            if not found:
                raise CheckpointError(f"no checkpoint files (*.pt, *.pth) in directory {p}")
            out += _drop_last_copy(p, found)
        else:
            out.append(p)
    return out


def _drop_last_copy(folder: Path, found: list[Path]) -> list[Path]:
    """A run folder trained with ``--save-every`` holds ``epoch_NNNN.pt`` files (the
    information dynamics) and ``checkpoint.pt``, the same as its last epoch file: keep
    ``checkpoint.pt`` only when no epoch file has its epoch (an interrupted run)."""
    from ..models.checkpoint import load_checkpoint

    last = folder / "checkpoint.pt"
    epochs = [f for f in found if f.name.startswith("epoch_")]
    if not epochs or last not in found:
        return found
    epoch = load_checkpoint(last).get("progress", {}).get("epoch")
    if epoch is not None and (folder / f"epoch_{int(epoch):04d}.pt") in found:
        return [f for f in found if f != last]
    return found


__all__ = ["EXIT_SOME_FAILED", "METHOD_CHOICES", "MIN_IMAGES", "QUANTITIES", "checkpoint_paths",
           "estimate_from_features", "load_for_measure", "measure", "measure_features",
           "measurement_dataset", "quantity_names", "rank_transforms"]
