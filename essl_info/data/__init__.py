"""Data for E-SSL experiments: datasets, transformations, augmentations.

    >>> from essl_info.data import load_dataset, get_transformation, all_transformed
    >>> ds = load_dataset("digits", split="train")          # (1438, 1, 32, 32) in [0, 1]
    >>> t = get_transformation("rotation4")
    >>> x_all, a, idx = all_transformed(ds.images[:8], t)    # (32, 1, 32, 32)

Importing this package registers every bundled dataset loader.
"""

from __future__ import annotations

from . import cifar, digits, folder, rotation_world, transform_world  # noqa: F401  (register)
from .augment import (AUGMENT_PRESETS, AugmentPreset, augment, color_jitter, random_blur,
                      random_grayscale, random_hflip, random_resized_crop)
from .datasets import DATASETS, DatasetSpec, ImageDataset, load_dataset, register_dataset
from .rotation_world import exact_information
from .transformations import (TRANSFORMATIONS, Transformation, all_transformed,
                              get_transformation, parse_transformations,
                              register_transformation, sampled_transformed)

__all__ = [
    "AUGMENT_PRESETS",
    "AugmentPreset",
    "DATASETS",
    "DatasetSpec",
    "ImageDataset",
    "TRANSFORMATIONS",
    "Transformation",
    "all_transformed",
    "sampled_transformed",
    "augment",
    "color_jitter",
    "exact_information",
    "get_transformation",
    "load_dataset",
    "parse_transformations",
    "random_blur",
    "random_grayscale",
    "random_hflip",
    "random_resized_crop",
    "register_dataset",
    "register_transformation",
]
