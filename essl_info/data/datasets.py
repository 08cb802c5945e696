"""Image datasets: the `ImageDataset` container and the dataset registry.

Every dataset, whatever its source, arrives as one `ImageDataset`: all images of one split
as a CPU float32 tensor ``(n, C, H, W)`` in [0, 1], int64 class labels, per-channel
normalisation statistics and the parameters that rebuild it with
``load_dataset(**ds.params)``. Loaders register themselves with `register_dataset`; the
modules that define them (digits, rotation_world, cifar, folder) are imported by
``essl_info.data``.

Conventions shared by every loader:
- ``split`` is ``"train"`` or ``"test"``; a split drawn from one pool of files is a fixed
  function of ``seed``.
- ``mean`` / ``std`` are the per-channel statistics of the *train* split's pixels (so the
  two splits of one dataset normalise identically).
- Bad names, missing files and bad parameters raise `essl_info.errors.DataError` naming
  the problem.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError

SPLITS = ("train", "test")


# ---------------------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """All images of one split of one dataset, in memory.

    Attributes
    ----------
    name : str
        Registry name (``"digits"``, ``"rotation-world"``, ...).
    images : torch.Tensor
        ``(n, C, H, W)`` float32 in [0, 1], on the CPU (move it yourself).
    labels : torch.Tensor
        ``(n,)`` int64 class labels in ``0 .. n_classes - 1``.
    n_classes : int
        Number of classes.
    split : str
        ``"train"`` or ``"test"``.
    mean, std : tuple[float, ...]
        Per-channel normalisation statistics (length C) of the train split.
    params : dict
        JSON-safe; ``load_dataset(**params)`` rebuilds the full split.
    latents : dict[str, torch.Tensor] | None
        Per-image generative latents, each ``(n,)`` int64 (rotation-world only).
    class_names : tuple[str, ...] | None
        Human-readable name of each label, where the source has them.
    """

    name: str
    images: torch.Tensor  # (n, C, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (n,) int64
    n_classes: int
    split: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    params: dict = field(default_factory=dict)
    latents: dict[str, torch.Tensor] | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise DataError(f"{self.name}: images must be a (n, C, H, W) tensor, got "
                            f"{type(x).__name__} with shape {tuple(getattr(x, 'shape', ()))}")
        if x.dtype != torch.float32:
            raise DataError(f"{self.name}: images must be float32, got {x.dtype}")
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
            raise DataError(f"{self.name}: labels must be int64 of shape ({x.shape[0]},), got "
                            f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
        if self.split not in SPLITS:
            raise DataError(f"{self.name}: split must be one of {SPLITS}, got {self.split!r}")
        if len(self.mean) != x.shape[1] or len(self.std) != x.shape[1]:
            raise DataError(f"{self.name}: mean/std need one value per channel ({x.shape[1]}), "
                            f"got {len(self.mean)} and {len(self.std)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise DataError(f"{self.name}: labels must lie in 0..{self.n_classes - 1}, got "
                            f"range {int(y.min())}..{int(y.max())}")
        for key, lat in (self.latents or {}).items():
            if not isinstance(lat, torch.Tensor) or lat.shape[:1] != (x.shape[0],):
                raise DataError(f"{self.name}: latent {key!r} must have {x.shape[0]} rows")
        if self.class_names is not None and len(self.class_names) != self.n_classes:
            raise DataError(f"{self.name}: {len(self.class_names)} class names for "
                            f"{self.n_classes} classes")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side length H (= W) in pixels."""
        return int(self.images.shape[-1])

    def subset(self, idx: Any) -> "ImageDataset":
        """The rows ``idx`` (index tensor/array/list, boolean mask or slice), latents
        included. ``params`` stay those of the full split (they rebuild the parent)."""
        if isinstance(idx, slice):
            sel: Any = idx
        else:
            sel = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
            if sel.dtype == torch.bool:
                if sel.shape != (len(self),):
                    raise DataError(f"{self.name}: boolean subset mask must have shape "
                                    f"({len(self)},), got {tuple(sel.shape)}")
            elif sel.dtype.is_floating_point or sel.dtype.is_complex:
                raise DataError(f"{self.name}: subset indices must be integers, got {sel.dtype}")
            else:
                sel = sel.to(torch.int64).reshape(-1)
                if len(sel) and (int(sel.min()) < -len(self) or int(sel.max()) >= len(self)):
                    raise DataError(f"{self.name}: subset index out of range for {len(self)} "
                                    f"images: {int(sel.min())}..{int(sel.max())}")
        latents = None if self.latents is None else {k: v[sel] for k, v in self.latents.items()}
        return ImageDataset(self.name, self.images[sel], self.labels[sel], self.n_classes,
                            self.split, self.mean, self.std, dict(self.params), latents,
                            self.class_names)

    def normalized(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """``(images - mean) / std`` per channel, on the images' device."""
        x = self.images if images is None else images
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={tuple(self.images.shape[1:])}, n_classes={self.n_classes})")


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    ``loader(*, split, data_dir, image_size, seed, download, **knobs) -> ImageDataset``;
    ``knobs`` maps each dataset-specific parameter to its default.
    """

    name: str
    loader: Callable[..., ImageDataset]
    description: str
    default_image_size: int
    needs_data_dir: bool
    knobs: dict = field(default_factory=dict)
    #: the smallest side the loader can draw (procedural datasets need room for their cues)
    min_image_size: int = 1


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, description: str, default_image_size: int,
                     needs_data_dir: bool = False, min_image_size: int = 1):
    """Decorator: register ``loader`` under ``name``. Its keyword-only parameters beyond the
    common ones (split, data_dir, image_size, seed, download) are the dataset's knobs."""
    common = {"split", "data_dir", "image_size", "seed", "download"}

    def wrap(loader: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        sig = inspect.signature(loader)
        missing = common - set(sig.parameters)
        if missing:
            raise TypeError(f"loader for {name!r} lacks parameters {sorted(missing)}")
        knobs = {p.name: p.default for p in sig.parameters.values()
                 if p.name not in common and p.kind is p.KEYWORD_ONLY}
        DATASETS[name] = DatasetSpec(name, loader, description, default_image_size,
                                     needs_data_dir, knobs, min_image_size)
        return loader

    return wrap


def load_dataset(name: str, *, split: str = "train", data_dir: str | Path | None = None,
                 image_size: int | None = None, seed: int = 0, download: bool = False,
                 **params: Any) -> ImageDataset:
    """Load split ``split`` of dataset ``name`` from the registry.

    ``image_size`` defaults to the dataset's own (32 for all bundled ones); ``params`` are
    the dataset's knobs (e.g. rotation-world's ``m, eps, delta, s``). Raises `DataError`
    for an unknown name, split or knob, a bad size, or missing files.
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    if split not in SPLITS:
        raise DataError(f"{name}: split must be one of {SPLITS}, got {split!r}")
    unknown = sorted(set(params) - set(spec.knobs))
    if unknown:
        known = ", ".join(sorted(spec.knobs)) or "none"
        raise DataError(f"{name}: unknown parameter(s) {', '.join(unknown)} (known: {known})")
    size = spec.default_image_size if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise DataError(f"{name}: image_size must be a positive integer, got {image_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"{name}: seed must be a non-negative integer, got {seed!r}")
    if spec.needs_data_dir and data_dir is None:
        raise DataError(f"{name}: needs data_dir, the folder holding its files (--data-dir "
                        f"at the command line)")
    data_dir = None if data_dir is None else str(data_dir)
    return spec.loader(split=split, data_dir=data_dir, image_size=int(size), seed=int(seed),
                       download=bool(download), **params)


# ---------------------------------------------------------------------------------------
# Helpers for loaders
# ---------------------------------------------------------------------------------------


def base_params(name: str, *, split: str, image_size: int, seed: int, data_dir: str | None,
                **knobs: Any) -> dict:
    """The JSON-safe ``params`` dict of a dataset (what `load_dataset` needs to rebuild it)."""
    out = {"name": name, "split": split, "image_size": int(image_size), "seed": int(seed),
           "data_dir": data_dir}
    for k, v in knobs.items():
        out[k] = v.item() if hasattr(v, "item") else v
    return out


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``(n, C, h, w)`` float images to ``(n, C, size, size)``, clamped to
    [0, 1]; antialiased when shrinking. A no-op when the size already matches."""
    if images.shape[-2:] == (size, size):
        return images
    shrink = size < max(images.shape[-2:])
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                        antialias=shrink)
    return out.clamp_(0.0, 1.0)


def channel_stats(images: torch.Tensor, chunk: int = 4096, *, scale: float = 1.0
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``(n, C, H, W)`` images times ``scale``
    (e.g. 1/255 for uint8 pixels), accumulated in float64 over chunks of ``chunk`` images."""
    c = images.shape[1]
    s1 = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].to(torch.float64) * scale
        s1 += block.sum(dim=(0, 2, 3))
        s2 += (block * block).sum(dim=(0, 2, 3))
        count += block.shape[0] * block.shape[2] * block.shape[3]
    if count == 0:
        raise DataError("cannot compute normalisation statistics of an empty split")
    mean = s1 / count
    var = (s2 / count - mean * mean).clamp_min(0.0)
    std = var.sqrt().clamp_min(1e-6)  # a constant channel must not divide by zero
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` (sorted int64) of a stratified split: in each class,
    ``round(test_fraction * n_c)`` images chosen by ``np.random.default_rng(seed)`` go to test.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(round(test_fraction * len(members)))
        test.append(rng.permutation(members)[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    mask = np.ones(len(labels), bool)
    mask[test_idx] = False
    return np.flatnonzero(mask).astype(np.int64), test_idx.astype(np.int64)

