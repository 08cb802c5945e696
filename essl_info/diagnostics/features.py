"""Representations of every image under every label of a transformation.

``extract_features(model, dataset, transformation)`` shows each image X̄ of the dataset to
the model under all K labels A (X = T_A(X̄)) and returns Z = f(X) with, per row, the label
``a``, the class ``c`` and the ``image_id`` (rows of one image are not independent: splits
and resampling group by it). Rows are label-major, as ``essl_info.data.all_transformed``:
row ``j = a * n + i`` is image ``i`` under label ``a``.

Layers (``LAYERS``): ``"backbone"`` (``model.features``, the representation a downstream
probe would use) and ``"projector"`` (``model.project`` of those features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import DataError

LAYERS: dict[str, Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]] = {
    "backbone": lambda model, x01: model.features(x01),
    "projector": lambda model, x01: model.project(model.features(x01)),
}


@dataclass(frozen=True, eq=False)
class Features:
    """Representations Z of all transformed copies of a set of images.

    z : (N, d) float32, N = n_images * K
    a : (N,) int64 transformation label in 0..K-1
    c : (N,) int64 class label
    image_id : (N,) int64 index of the source image in the dataset
    layer : "backbone" | "projector"
    transformation : the transformation's name
    n_labels : K;  n_classes : number of classes of the dataset
    """

    z: np.ndarray
    a: np.ndarray
    c: np.ndarray
    image_id: np.ndarray
    layer: str
    transformation: str
    n_labels: int
    n_classes: int

    def __len__(self) -> int:
        return len(self.a)

    @property
    def n_images(self) -> int:
        return len(np.unique(self.image_id))

    @property
    def collapsed(self) -> bool:
        """True when every row of z is the same vector (a collapsed representation)."""
        return bool(np.all(self.z == self.z[:1]))


def check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {sorted(LAYERS)}, got {layer!r}")


@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset, transformation, *,
                     layer: str = "backbone", batch_size: int = 256,
                     device: str | torch.device = "cpu", progress: bool = True) -> Features:
    """Z for every image of ``dataset`` under every label of ``transformation``.

    Parameters
    ----------
    model : an ``ESSLModel`` (anything with ``features(x01)`` and ``project(h)``), put in
        eval mode here; inputs are images in [0, 1], the model normalises them itself.
    dataset : ``essl_info.data.ImageDataset``.
    transformation : a name (``"rotation4"``) or a ``Transformation``.
    layer : ``"backbone"`` or ``"projector"``.
    batch_size : images per forward pass (each pass holds ``batch_size`` rows).
    progress : a tqdm bar on stderr.

    Raises ``DataError`` when the features contain NaN or inf (a diverged model).
    """
    from ..data import Transformation, get_transformation

    check_layer(layer)
    t = transformation if isinstance(transformation, Transformation) else \
        get_transformation(transformation)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n, k = len(dataset), t.n_classes
    if n == 0:
        raise DataError(f"{dataset.name}: no images to extract features from")
    dev = torch.device(device)
    model = model.eval().to(dev)
    forward = LAYERS[layer]
    a = np.repeat(np.arange(k, dtype=np.int64), n)          # label-major rows
    image_id = np.tile(np.arange(n, dtype=np.int64), k)
    blocks = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n * k, desc=f"features {t.name}/{layer}", unit="img", leave=False)
    for label in range(k):
        for start in range(0, n, batch_size):
            x01 = dataset.images[start:start + batch_size].to(dev)
            labels = torch.full((len(x01),), label, dtype=torch.int64, device=dev)
            z = forward(model, t.apply(x01, labels))
            blocks.append(z.float().cpu())
            if bar is not None:
                bar.update(len(x01))
    if bar is not None:
        bar.close()
    z = torch.cat(blocks).numpy()
    if z.ndim != 2:
        raise DataError(f"layer {layer!r} returned shape {z.shape}, expected (n, d)")
    bad = ~np.isfinite(z)
    if bad.any():
        rows = f"{int(bad.any(1).sum())} of {len(z)} rows of the {layer} features"
        if _weights_finite(model):
            raise DataError(f"features contain NaN or inf although the model's weights are "
                            f"finite ({rows} are not finite): the network overflows on "
                            f"these images; check the weights' scale and the images' range "
                            f"(expected in [0, 1])")
        raise DataError(f"features contain NaN: the model diverged (its weights hold NaN "
                        f"or inf; {rows} are not finite); measure an earlier checkpoint")
    c = dataset.labels.numpy()[image_id].astype(np.int64)
    return Features(z, a, c, image_id, layer, t.name, k, int(dataset.n_classes))


def _weights_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()
               if t.is_floating_point())


__all__ = ["Features", "LAYERS", "extract_features"]
