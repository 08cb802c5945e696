"""Measuring models that did not come from the bundled trainer (DESIGN §3).

``measure(model=...)`` (in :mod:`.measure`) takes any ``torch.nn.Module`` or callable; the
module and the images it is shown are prepared here (``user_model_and_dataset``).
``measure_features(z, a=..., c=..., image_id=...)`` takes features computed anywhere.
Both go through the pipeline of ``measure`` (``measure.estimate_from_features``): the same
quantities, error bars and flags as for a checkpoint.
"""

from __future__ import annotations

import time
from typing import Sequence

from ..data import ImageDataset, load_dataset
from ..data.datasets import resize
from ..errors import DataError
from ..estimators.probe_families import resolve_device
from ..types import Report
from .features import ModelEncoder, Preprocessing, features_from_arrays


def user_model_and_dataset(model, *, checkpoint, arch, layer, dataset, transformations,
                           split, data_dir, normalize, image_size, preprocess,
                           dataset_params):
    """(ModelEncoder, dataset) for ``measure(model=...)``, every argument checked first."""
    if checkpoint is not None or arch is not None:
        raise ValueError("pass a checkpoint or model=, not both (arch= is for checkpoints)")
    if layer != "backbone":
        raise ValueError(f"layer={layer!r} applies to checkpoints; a model passed as "
                         f"model= is measured at its output")
    if dataset is None:
        raise ValueError("measure(model=...) needs dataset= (a registry name or an "
                         "ImageDataset): the images to show the model")
    if transformations is None or (isinstance(transformations, str)
                                   and not transformations.strip()):
        raise ValueError("measure(model=...) needs transformations= (e.g. ['rotation4'])")
    encoder = ModelEncoder(model, Preprocessing.make(normalize=normalize,
                                                     image_size=image_size,
                                                     preprocess=preprocess))
    size = encoder.prep.image_size
    if isinstance(dataset, ImageDataset):
        if size is not None and size != dataset.image_size:
            dataset = ImageDataset(dataset.name, resize(dataset.images, size), dataset.labels,
                                   dataset.n_classes, dataset.split, dataset.mean, dataset.std,
                                   {**dataset.params, "image_size": size}, dataset.latents,
                                   dataset.class_names)
        return encoder, dataset
    try:
        ds = load_dataset(dataset, split=split, data_dir=data_dir, image_size=size,
                          **dict(dataset_params or {}))
    except DataError as e:
        hint = "" if data_dir else " (pass data_dir)"
        raise DataError(f"cannot load dataset {dataset!r} to measure on: {e}{hint}") from None
    return encoder, ds


def measure_features(z, *, a, c, image_id, quantities: Sequence[str] | None = None,
                     method: str = "auto", seed: int = 0, folds: int = 5, k: int = 3,
                     device: str = "cpu", transformation: str = "custom",
                     n_labels: int | None = None, n_classes: int | None = None,
                     name: str = "<features>", seeds: int | None = None) -> Report:
    """The quantities of ``measure`` from features computed anywhere, in nats.

    Parameters
    ----------
    z : (N, d) features (numpy, torch, or anything ``np.asarray`` reads; extra axes are
        flattened), one row per (image, transformation label).
    a : (N,) int transformation label of each row (0..K-1);  c : (N,) int class of the
        row's image;  image_id : (N,) int the row's source image (rows of one image are
        kept on one side of every cross-fitting split and clustered in the error bars).
    quantities, method, seed, folds, k, device, seeds : as in ``measure``.
    transformation : a name for A in the report;  name : what the report calls the source.
    n_labels, n_classes : K and the class count when some labels are absent from a / c.

    Returns the same ``Report`` as ``measure``: per quantity the probe and kNN estimates
    with errors, and ``extra["flags"]``. Raises ``ValueError`` naming bad input.
    """
    from .. import __version__
    from .measure import MIN_IMAGES, MIN_IMAGES_WHY, estimate_from_features, quantity_names

    t0 = time.perf_counter()
    names = quantity_names(quantities, method)
    feats = features_from_arrays(z, a, c, image_id, transformation=transformation,
                                 n_labels=n_labels, n_classes=n_classes)
    if feats.n_images < MIN_IMAGES:
        raise ValueError(f"the features come from {feats.n_images} images; measure_features "
                         f"needs at least {MIN_IMAGES} ({MIN_IMAGES_WHY})")
    device = str(resolve_device(device))
    from .quantities import PROBE_SEEDS

    seeds = PROBE_SEEDS if seeds is None else seeds
    estimates, flags, rows = estimate_from_features([feats], names, method, seed=seed,
                                                    folds=folds, k=k, device=device,
                                                    seeds=seeds)
    provenance = {
        "library_version": __version__, "source": "features", "seed": seed,
        "layer": feats.layer, "method": method, "n_images": feats.n_images, "rows": rows,
        "transformations": list(rows), "n_labels": feats.n_labels,
        "n_classes": feats.n_classes, "feature_dim": int(feats.z.shape[1]),
        "device": device, "probe": {"family": "logistic", "folds": folds}, "knn": {"k": k},
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }
    return Report(estimates, checkpoint=name, dataset=None, provenance=provenance,
                  extra={"flags": flags} if flags else {})


__all__ = ["measure_features", "user_model_and_dataset"]
