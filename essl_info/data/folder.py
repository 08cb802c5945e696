"""``folder``: a directory of images with one sub-folder per class (Fruits-360, blood
cells, CUB-200 and the like), read with Pillow.

Layout: ``data_dir/<class>/<image>``; classes are the sub-folder names in sorted order
(label i = i-th name). Every image is converted to RGB and resized to ``image_size`` x
``image_size`` (default 32) with Pillow's bilinear filter (which antialiases when
shrinking), ignoring the aspect ratio. The train/test split is stratified and a fixed
function of ``seed`` (``test_fraction`` of each class). If ``data_dir`` holds exactly a
train and a test folder (``train``/``test`` or Fruits-360's ``Training``/``Test``) with the
class folders inside, that split is used instead. ``max_per_class`` keeps the first files
of each class in sorted order (for quick runs on large folders).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .datasets import ImageDataset, base_params, channel_stats, register_dataset, stratified_split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
SPLIT_FOLDERS = (("train", "test"), ("Training", "Test"))


def _visible_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(root: Path, max_per_class: int | None) -> tuple[list[str], list[Path], np.ndarray]:
    """``(class names, image paths, labels (n,) int64)`` of a class-per-folder directory."""
    classes = [d.name for d in _visible_dirs(root)]
    if not classes:
        raise DataError(f"folder: no class sub-folders in {root}")
    paths: list[Path] = []
    labels: list[int] = []
    for i, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if max_per_class is not None:
            files = files[:max_per_class]
        if not files:
            raise DataError(f"folder: class folder {root / cls} has no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        paths += files
        labels += [i] * len(files)
    return classes, paths, np.asarray(labels, dtype=np.int64)


def read_images(paths: list[Path], image_size: int) -> torch.Tensor:
    """``(n, 3, S, S)`` float32 in [0, 1]: each file as RGB, resized bilinearly."""
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                out[i] = np.asarray(rgb)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"folder: cannot read image {path}: {e}") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()


def _split_folders(root: Path) -> tuple[Path, Path] | None:
    names = {d.name: d for d in _visible_dirs(root)}
    for train, test in SPLIT_FOLDERS:
        if set(names) == {train, test}:
            return names[train], names[test]
    return None


@register_dataset("folder", description="one sub-folder of images per class (Pillow), RGB",
                  default_image_size=32, needs_data_dir=True)
def load_folder(*, split: str, data_dir: str, image_size: int, seed: int, download: bool,
                test_fraction: float = 0.2, max_per_class: int | None = None) -> ImageDataset:
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"folder: data_dir {root} is not a directory")
    if max_per_class is not None and (isinstance(max_per_class, bool) or
                                      not isinstance(max_per_class, (int, np.integer)) or max_per_class < 1):
        raise DataError(f"folder: max_per_class must be a positive integer or None, got {max_per_class!r}")
    presplit = _split_folders(root)
    if presplit is not None:
        classes, train_paths, train_y = list_images(presplit[0], max_per_class)
        test_classes, test_paths, test_y = list_images(presplit[1], max_per_class)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise DataError(f"folder: test classes missing from {presplit[0]}: {', '.join(unknown)}")
        test_y = np.asarray([classes.index(test_classes[j]) for j in test_y], dtype=np.int64)
    else:
        classes, paths, labels = list_images(root, max_per_class)
        train_idx, test_idx = stratified_split(labels, float(test_fraction), seed)
        train_paths, train_y = [paths[i] for i in train_idx], labels[train_idx]
        test_paths, test_y = [paths[i] for i in test_idx], labels[test_idx]
    if not train_paths or (split == "test" and not test_paths):
        raise DataError(f"folder: the {split} split of {root} is empty")
    train_x = read_images(train_paths, image_size)
    mean, std = channel_stats(train_x)
    x, y = (train_x, train_y) if split == "train" else (read_images(test_paths, image_size), test_y)
    params = base_params("folder", split=split, image_size=image_size, seed=seed,
                         data_dir=str(data_dir), test_fraction=float(test_fraction),
                         max_per_class=max_per_class)
    return ImageDataset("folder", x, torch.from_numpy(y), len(classes), split, mean, std,
                        params, class_names=tuple(classes))
