"""``digits``: scikit-learn's bundled handwritten digits (no download).

1,797 grayscale 8x8 images of the digits 0-9 with integer intensities 0..16 (Alpaydin &
Kaynak, UCI "Optical Recognition of Handwritten Digits"), scaled to [0, 1] and upsampled
bilinearly to ``image_size`` (default 32). One channel: models take ``in_channels`` from
the dataset. The train/test split is stratified and a fixed function of ``seed``
(``test_fraction`` of each class, 20 % by default: 1,438 train / 359 test).
"""

from __future__ import annotations

import numpy as np
import torch

from .datasets import (ImageDataset, base_params, channel_stats, register_dataset, resize,
                       stratified_split)

N_CLASSES = 10


def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int64)``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    return images, bunch.target.astype(np.int64)


@register_dataset("digits", description="scikit-learn 8x8 handwritten digits, 10 classes, "
                  "1 channel, upsampled (bundled)", default_image_size=32)
def load_digits_dataset(*, split: str, data_dir: str | None, image_size: int, seed: int,
                        download: bool, test_fraction: float = 0.2) -> ImageDataset:
    images, labels = _raw_digits()
    train_idx, test_idx = stratified_split(labels, float(test_fraction), seed)

    def prepare(idx: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images[idx]).unsqueeze(1)  # (n, 1, 8, 8)
        return resize(x, image_size).contiguous()

    train = prepare(train_idx)
    mean, std = channel_stats(train)
    idx = train_idx if split == "train" else test_idx
    x = train if split == "train" else prepare(test_idx)
    params = base_params("digits", split=split, image_size=image_size, seed=seed,
                         data_dir=data_dir, test_fraction=float(test_fraction))
    return ImageDataset("digits", x, torch.from_numpy(labels[idx]), N_CLASSES, split,
                        mean, std, params, class_names=tuple(str(d) for d in range(10)))
