"""``cifar10`` / ``cifar100``: the standard python-version archives (Krizhevsky 2009).

Files looked for in ``data_dir``: the tarball (``cifar-10-python.tar.gz`` /
``cifar-100-python.tar.gz``, read in place, never extracted) or its extracted folder
(``cifar-10-batches-py`` / ``cifar-100-python``), or ``data_dir`` being that folder.
CIFAR-10: ``data_batch_1..5`` (train), ``test_batch``, ``batches.meta``; CIFAR-100:
``train``, ``test``, ``meta``. Each is a pickled dict with ``data`` (uint8 ``(n, 3072)``,
channel-major 32x32 RGB) and ``labels`` (CIFAR-10) or ``fine_labels`` / ``coarse_labels``
(CIFAR-100; the ``labels`` knob picks one, fine by default).

SECURITY: these files are pickles, and a pickle can run code. They are read with
`RestrictedUnpickler`, which resolves only the globals a CIFAR file needs (numpy's array
reconstructor, ``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode`` for byte strings);
any other global is refused with a `DataError`.

``download=True`` fetches the official archive over HTTPS with urllib (and checks its MD5)
when the files are missing; the tests never do.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .datasets import ImageDataset, base_params, channel_stats, register_dataset, resize

# ---------------------------------------------------------------------------------------
# Safe unpickling
# ---------------------------------------------------------------------------------------


def _np_reconstruct():
    core = getattr(np, "_core", None) or np.core  # numpy >= 2 renamed numpy.core
    return core.multiarray._reconstruct


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that builds only plain containers, strings, numbers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise DataError(f"refusing to unpickle {module}.{name}: a CIFAR file holds only "
                            "dicts, lists, strings and numpy arrays")
        return factory()


def safe_load(data: bytes, what: str) -> dict:
    """Unpickle one CIFAR batch; keys normalised to ``str``."""
    try:
        # latin1: the files come from Python 2, whose str holds raw bytes (numpy's advice)
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DataError as e:
        raise DataError(f"{what}: {e}") from None
    except Exception as e:  # truncated or not a pickle
        raise DataError(f"{what}: not a readable CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{what}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


# ---------------------------------------------------------------------------------------
# Archive layout
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CifarSpec:
    name: str
    tarball: str
    folder: str
    url: str
    md5: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    n_classes: dict  # label key -> number of classes


CIFAR = {
    "cifar10": CifarSpec("cifar10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
                         "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                         "c58f30108f718f92721af3b95e74349a",
                         tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                         "batches.meta", {"labels": 10}),
    "cifar100": CifarSpec("cifar100", "cifar-100-python.tar.gz", "cifar-100-python",
                          "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                          "eb9058c3a382ffc7106e4002c42a8d85", ("train",), ("test",), "meta",
                          {"fine_labels": 100, "coarse_labels": 20}),
}


META_NAMES = {"labels": "label_names", "fine_labels": "fine_label_names",
              "coarse_labels": "coarse_label_names"}


def _locate(spec: CifarSpec, data_dir: Path) -> Path | None:
    """The tarball or folder holding ``spec``'s files, or None."""
    for candidate in (data_dir / spec.tarball, data_dir / spec.folder, data_dir):
        if candidate.is_file() and candidate.name == spec.tarball:
            return candidate
        if candidate.is_dir() and (candidate / spec.train[0]).is_file():
            return candidate
    return None


def _download(spec: CifarSpec, data_dir: Path) -> Path:
    """Fetch ``spec.url`` into ``data_dir`` atomically, checking its MD5."""
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / spec.tarball
    fd, tmp = tempfile.mkstemp(dir=data_dir, suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
        if digest.hexdigest() != spec.md5:
            raise DataError(f"{spec.name}: downloaded {spec.url} has MD5 {digest.hexdigest()}, "
                            f"expected {spec.md5}")
        os.replace(tmp, target)
    except OSError as e:
        raise DataError(f"{spec.name}: download of {spec.url} failed: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def _read_members(source: Path, names: tuple[str, ...], spec: CifarSpec) -> list[dict]:
    """Unpickle the batches ``names`` from a tarball or a folder."""
    if source.is_dir():
        out = []
        for n in names:
            path = source / n
            if not path.is_file():
                raise DataError(f"{spec.name}: {path} is missing")
            out.append(safe_load(path.read_bytes(), str(path)))
        return out
    try:
        with tarfile.open(source, "r:*") as tar:
            out = []
            for n in names:
                try:
                    member = tar.getmember(f"{spec.folder}/{n}")
                except KeyError:
                    raise DataError(f"{spec.name}: {source} has no member {spec.folder}/{n}") from None
                f = tar.extractfile(member)
                if f is None:
                    raise DataError(f"{spec.name}: {source}: {spec.folder}/{n} is not a file")
                out.append(safe_load(f.read(), f"{source}:{spec.folder}/{n}"))
            return out
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{spec.name}: cannot read {source}: {e}") from None


def _batches_to_arrays(batches: list[dict], label_key: str, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 (n, 3, 32, 32), int64 (n,))`` from unpickled batches."""
    xs, ys = [], []
    for b in batches:
        if "data" not in b or label_key not in b:
            raise DataError(f"{spec.name}: batch lacks 'data' or {label_key!r} (keys: {sorted(b)})")
        data = np.asarray(b["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{spec.name}: 'data' must be uint8 (n, 3072), got {data.dtype} "
                            f"{data.shape}")
        labels = np.asarray(b[label_key], dtype=np.int64)
        if labels.shape != (len(data),):
            raise DataError(f"{spec.name}: {len(labels)} labels for {len(data)} images")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar(name: str, *, split: str, data_dir: str, image_size: int, seed: int,
               download: bool, labels: str) -> ImageDataset:
    spec = CIFAR[name]
    if labels not in spec.n_classes:
        raise DataError(f"{name}: labels must be one of {sorted(spec.n_classes)}, got {labels!r}")
    root = Path(data_dir).expanduser()
    source = _locate(spec, root)
    if source is None and download:
        source = _download(spec, root)
    if source is None:
        raise DataError(f"{name}: no {spec.tarball} or {spec.folder} in {root}"
                        + ("" if download else f"; download {spec.url} into that folder "
                           f"(or, from Python, load_dataset({name!r}, data_dir=..., "
                           f"download=True))"))
    train_x, train_y = _batches_to_arrays(_read_members(source, spec.train, spec), labels, spec)
    mean, std = channel_stats(torch.from_numpy(train_x), scale=1 / 255)  # at 32x32
    if split == "train":
        x, y = train_x, train_y
    else:
        x, y = _batches_to_arrays(_read_members(source, spec.test, spec), labels, spec)
    k = spec.n_classes[labels]
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise DataError(f"{name}: labels outside 0..{k - 1} in {source}")
    images = resize(torch.from_numpy(x).to(torch.float32).div_(255.0), image_size).contiguous()
    knobs = {"labels": labels} if name == "cifar100" else {}
    params = base_params(name, split=split, image_size=image_size, seed=seed,
                         data_dir=str(data_dir), **knobs)
    try:  # class names are a courtesy: a folder without the meta file still loads
        names = _read_members(source, (spec.meta,), spec)[0].get(META_NAMES[labels])
    except DataError:
        names = None
    names = None if names is None or len(names) != k else tuple(
        n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return ImageDataset(name, images, torch.from_numpy(y), k, split, mean, std, params,
                        class_names=names)


@register_dataset("cifar10", description="CIFAR-10 python tarball in data_dir, 10 classes",
                  default_image_size=32, needs_data_dir=True)
def load_cifar10(*, split: str, data_dir: str, image_size: int, seed: int,
                 download: bool) -> ImageDataset:
    return load_cifar("cifar10", split=split, data_dir=data_dir, image_size=image_size,
                      seed=seed, download=download, labels="labels")


@register_dataset("cifar100", description="CIFAR-100 python tarball in data_dir, 100 fine "
                  "or 20 coarse classes", default_image_size=32, needs_data_dir=True)
def load_cifar100(*, split: str, data_dir: str, image_size: int, seed: int, download: bool,
                  labels: str = "fine_labels") -> ImageDataset:
    return load_cifar("cifar100", split=split, data_dir=data_dir, image_size=image_size,
                      seed=seed, download=download, labels=labels)

