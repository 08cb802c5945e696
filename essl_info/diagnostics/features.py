"""Representations of every image under every label of a transformation.

``extract_features(model, dataset, transformation)`` shows each image X̄ of the dataset to
the model under all K labels A (X = T_A(X̄)) and returns Z = f(X) with, per row, the label
``a``, the class ``c`` and the ``image_id`` (rows of one image are not independent: splits
and resampling group by it). Rows are label-major, as ``essl_info.data.all_transformed``:
row ``j = a * n + i`` is image ``i`` under label ``a``.

Layers (``LAYERS``): ``"backbone"`` (``model.features``, the representation a downstream
probe would use) and ``"projector"`` (``model.project`` of those features).

Models that did not come from the bundled trainer (DESIGN §3): ``ModelEncoder`` wraps any
``torch.nn.Module`` or callable mapping images (B, C, H, W) to features (B, ...) with the
preprocessing it expects (``Preprocessing``), and ``features_from_arrays`` /
``read_features_npz`` turn features computed anywhere into a checked ``Features``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

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

    z : (N, d) float32 (float64 where given so to ``features_from_arrays``), N = n_images * K
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


# ================================================================ any model's features
@dataclass(frozen=True)
class Preprocessing:
    """What a user's model expects, applied to each transformed batch in [0, 1]:
    ``preprocess(x)`` first (any callable: channel replication, resizing, ...), then
    ``(x - mean) / std`` per channel. ``image_size`` is the side the images are loaded
    (or resized) at before the transformation acts; None keeps the dataset's."""

    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    preprocess: Callable | None = None

    @classmethod
    def make(cls, *, normalize=None, image_size=None, preprocess=None) -> "Preprocessing":
        """Checked constructor: ``normalize=(mean, std)`` (per-channel sequences or
        scalars), ``image_size`` a positive int, ``preprocess`` a callable."""
        mean = std = None
        if normalize is not None:
            try:
                mean_, std_ = normalize
                mean = tuple(float(m) for m in np.atleast_1d(np.asarray(mean_, float)))
                std = tuple(float(s) for s in np.atleast_1d(np.asarray(std_, float)))
            except (TypeError, ValueError):
                raise ValueError(f"normalize must be (mean, std), each a number or one per "
                                 f"channel, got {normalize!r}") from None
            if len(mean) != len(std) or not all(np.isfinite(mean + std)) or min(std) <= 0:
                raise ValueError(f"normalize: mean {list(mean)} and std {list(std)} must "
                                 f"have the same length, be finite, and std > 0")
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(
                image_size, (int, np.integer)) or image_size < 1):
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        if preprocess is not None and not callable(preprocess):
            raise ValueError(f"preprocess must be a callable, got {type(preprocess).__name__}")
        return cls(None if image_size is None else int(image_size), mean, std, preprocess)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"preprocess returned a {type(x).__name__}, not a tensor")
        if self.mean is not None:
            if x.ndim != 4 or x.shape[1] != len(self.mean) and len(self.mean) != 1:
                raise ValueError(f"normalize has {len(self.mean)} channel(s) but the model "
                                 f"input has shape {tuple(x.shape)}")
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    def describe(self) -> dict:
        """JSON-safe account for the report's provenance."""
        fn = self.preprocess
        return {"order": "transformation on images in [0, 1] -> preprocess -> "
                         "(x - mean) / std -> model -> flatten",
                "image_size": self.image_size,
                "preprocess": None if fn is None else getattr(
                    fn, "__qualname__", type(fn).__name__),
                "normalize": None if self.mean is None else {"mean": list(self.mean),
                                                             "std": list(self.std)}}


class ModelEncoder(torch.nn.Module):
    """Any ``nn.Module`` or callable as the ``features`` of ``extract_features``:
    images (B, C, H, W) in [0, 1] -> ``model(prep(x))`` flattened to (B, d) float.

    A module is registered as a child (so ``.to`` and ``.eval`` reach it); use
    ``evaluating`` to put it back as it was afterwards. It has one layer: ``project``
    raises.
    """

    def __init__(self, model, prep: Preprocessing):
        super().__init__()
        if not callable(model):
            raise ValueError(f"model must be a torch.nn.Module or a callable, got "
                             f"{type(model).__name__}")
        self.prep = prep
        if isinstance(model, torch.nn.Module):
            self.net = model
        else:
            self._fn = model
        self.label = type(model).__name__ if isinstance(model, torch.nn.Module) else \
            getattr(model, "__qualname__", type(model).__name__)

    def _call(self, x: torch.Tensor):
        return self.net(x) if "net" in self._modules else self._fn(x)

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        x = self.prep(x01)
        try:
            out = self._call(x)
        except (RuntimeError, TypeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"the model failed on input of shape {tuple(x.shape)} "
                             f"({type(e).__name__}: {first}); check image_size, "
                             f"preprocess and normalize") from e
        if not isinstance(out, torch.Tensor):
            if isinstance(out, (tuple, list, dict)):
                raise ValueError(f"the model returned a {type(out).__name__}; pass a "
                                 f"callable that returns one array of features")
            out = torch.as_tensor(np.asarray(out))
        if out.ndim < 1 or out.shape[0] != x01.shape[0]:
            raise ValueError(f"the model returned shape {tuple(out.shape)} for a batch of "
                             f"{x01.shape[0]} images; expected ({x01.shape[0]}, ...)")
        if out.is_complex():
            raise ValueError(f"the model returned {out.dtype} features; expected real ones")
        return out.reshape(out.shape[0], -1).float()

    def project(self, h: torch.Tensor) -> torch.Tensor:
        raise ValueError("a model passed to measure(model=...) has one layer: its output")


@contextlib.contextmanager
def evaluating(encoder: ModelEncoder, device, seed: int = 0) -> Iterator[None]:
    """Measure a user's model without side effects: the global torch RNG is forked (and
    seeded with ``seed`` inside, so a stochastic model is reproducible), the module is in
    eval mode, and afterwards every submodule's training flag and the module's device are
    restored."""
    net = encoder._modules.get("net")
    modes = [(m, m.training) for m in net.modules()] if net is not None else []
    tensors = list(net.parameters()) + list(net.buffers()) if net is not None else []
    home = tensors[0].device if tensors else None
    dev = torch.device(device)
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            yield
    finally:
        for m, was in modes:
            m.training = was
        if home is not None and home != dev:
            net.to(home)


def _array(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - any conversion failure is bad input
        raise ValueError(f"{name} is not an array ({type(x).__name__}: {e})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _labels(x, name: str, n: int) -> np.ndarray:
    arr = _array(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries but z has {n} rows")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold integer labels, got non-integer values")
    out = arr.astype(np.int64)
    if len(out) and out.min() < 0:
        raise ValueError(f"{name} must be non-negative integer labels, got {int(out.min())}")
    return out


def features_from_arrays(z, a, c, image_id, *, transformation: str = "custom",
                         layer: str = "features", n_labels: int | None = None,
                         n_classes: int | None = None) -> Features:
    """A checked ``Features`` from arrays computed anywhere (numpy, torch, JAX via
    ``np.asarray``).

    z : (N, ...) features, flattened to (N, d); a : (N,) transformation label of each row;
    c : (N,) class of each row; image_id : (N,) source image of each row (rows of one image
    share a class and are kept together by the cross-fitting and the error bars).
    Raises ``ValueError`` naming the first problem (shapes, lengths, NaN, labels).
    """
    zz = _array(z, "z")
    if zz.ndim == 0 or len(zz) < 2:
        raise ValueError(f"z must have at least 2 rows, got shape {zz.shape}")
    zz = zz.reshape(len(zz), -1)
    if zz.shape[1] == 0:
        raise ValueError(f"z has no feature columns (shape {zz.shape})")
    if zz.dtype.kind != "f":
        zz = zz.astype(np.float64)
    bad = ~np.isfinite(zz)
    if bad.any():
        raise ValueError(f"z contains NaN or inf in {int(bad.any(1).sum())} of {len(zz)} rows")
    n = len(zz)
    aa, cc, ids = (_labels(a, "a", n), _labels(c, "c", n), _labels(image_id, "image_id", n))
    for name, arr in (("a", aa), ("c", cc)):
        if len(np.unique(arr)) < 2:
            raise ValueError(f"{name} takes a single value ({int(arr[0])}): the quantities "
                             f"need at least 2 labels and 2 classes")
    order = np.lexsort((cc, ids))
    split = np.flatnonzero(np.diff(ids[order]) == 0)
    clash = split[cc[order][split] != cc[order][split + 1]]
    if len(clash):
        img = int(ids[order][clash[0]])
        raise ValueError(f"image_id {img} has rows of different classes c: an image has one "
                         f"class")
    k = int(aa.max()) + 1 if n_labels is None else int(n_labels)
    m = int(cc.max()) + 1 if n_classes is None else int(n_classes)
    if k <= aa.max() or m <= cc.max():
        raise ValueError(f"n_labels={n_labels} / n_classes={n_classes} are smaller than the "
                         f"largest label ({int(aa.max())}) / class ({int(cc.max())})")
    return Features(zz, aa, cc, ids, str(layer), str(transformation), k, m)


NPZ_ARRAYS = ("z", "a", "c", "image_id")   # required; optional: "transformation" (a string)


def read_features_npz(path: str | Path) -> dict[str, Any]:
    """The arrays of a features file (``np.load(allow_pickle=False)``): ``z`` (N, d) float,
    ``a``, ``c``, ``image_id`` (N,) int, and optionally ``transformation`` (a string)."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ValueError("it holds a single array, not named arrays")
            out = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path} is not a readable .npz of features ({first})") from None
    missing = [k for k in NPZ_ARRAYS if k not in out]
    if missing:
        raise ValueError(f"{path} lacks array(s) {', '.join(missing)}: a features file holds "
                         f"z, a, c, image_id (found: {', '.join(sorted(out)) or 'none'})")
    extra = sorted(set(out) - set(NPZ_ARRAYS) - {"transformation"})
    if extra:
        raise ValueError(f"{path} has unknown array(s) {', '.join(extra)}; a features file "
                         f"holds z, a, c, image_id and optionally transformation")
    if "transformation" in out:
        t = out["transformation"]
        if t.dtype.kind != "U" or t.size != 1:
            raise ValueError(f"{path}: 'transformation' must be one string, got dtype "
                             f"{t.dtype} and shape {t.shape}")
        out["transformation"] = str(t.reshape(()))
    return out


def _weights_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()
               if t.is_floating_point())


__all__ = ["Features", "LAYERS", "ModelEncoder", "NPZ_ARRAYS", "Preprocessing", "evaluating",
           "extract_features", "features_from_arrays", "read_features_npz"]
