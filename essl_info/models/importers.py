"""Checkpoints written by the papers' public code, turned into essl_info checkpoints.

``import_foreign(path, arch=..., dataset=...)`` reads a foreign file without running code
(``torch.load(weights_only=True)``; a pickle that needs code is refused with the reason),
recognises its layout from ``FORMATS`` and returns a checkpoint dict of this library's schema
(DESIGN §5) that ``model_from_checkpoint`` rebuilds. Every tensor in the file must be
accounted for: the backbone (and, where the layout has one, the projector) is loaded key
for key, known extra parts (heads, duplicate copies, optimizer state) are named in the
format and skipped, and anything else is an error that lists the keys; a missing or
misshapen backbone key is an error too. Nothing is loaded with ``strict=False``.

Layouts (``FORMATS``; DDP ``module.`` prefixes are removed first):

- ``essl-cifar``: Dangovski et al. (ICLR 2022), rdangovs/essl ``cifar10/main.py``:
  ``{'epoch', 'state_dict'}`` of the ``Branch`` module, i.e. ``encoder.*`` (ResNet-18
  with a 3×3 stem), ``projector.net.*`` (512-2048-2048 BN MLP), the same two again under
  ``net.0.*`` / ``net.1.*`` (checked equal) and the rotation head ``predictor2.*``. Inputs
  normalised with the code's CIFAR-10 constants.
- ``essl-imagenet``: rdangovs/essl ``imagenet/simclr/main.py``: the final
  ``{'backbone', 'projector', 'head'}`` (torchvision ResNet-50 without ``fc``, the
  2048-2048-2048-128 BN projector, the online linear head) or the training
  ``{'epoch', 'model', 'optimizer'}`` with DDP prefixes. ImageNet normalisation.
- ``wang-essl``: Wang et al. (NeurIPS 2024), kaotty/Understanding-ESSL ``ESSL/models.py``:
  a bare state dict with ``enc.*`` (torchvision ResNet, 3×3 stem on CIFAR),
  ``projector.*`` (there the transformation-prediction head, K logits: not a projector,
  not imported) and ``linear.*`` (online classifier). Inputs in [0, 1], unnormalised
  (``transforms.ToTensor()`` only).

- ``wang-resnet18``: Wang et al., Understanding-ESSL ``Equivariant Network/train.py`` with
  ``--model resnet18``: ``torch.save(cnn.state_dict())`` of a DataParallel module, keys
  ``conv1.{0,1}`` (3×3 stem conv, BN), ``conv{2..5}_x.i.residual_function.{0,2,4,5}``
  (conv, [dropout], BN, [ReLU], conv, BN), ``shortcut.{0,1}``, the class head ``fc`` and the
  rotation head ``projector``. The trunk is ``resnet18_cifar`` under other names (renamed
  here). Inputs normalised with that code's constants (``WANG_EQUIVARIANT_NORMALISATION``).
- ``wang-c4resnet18``: the same script with ``--model C4resnet18``: group convolutions,
  ``BatchNorm3d`` under ``.bn``; held key for key by ``p4_resnet18``
  (``essl_info.models.p4``). That code's D4 and E4 variants (``D4resnet18``,
  ``E4C4resnet18``, ``E4D4resnet18``) have no backbone here and are refused as such.

rdangovs/essl's ImageNet training file names one function, ``__main__.exclude_bias_and_norm``
(its LARS optimizer keeps the parameter filter in ``param_groups``). That one name is
allowed, mapped to an inert stand-in (``INERT_GLOBALS``) that refuses to run; nothing from
the file is executed, and every other global is refused as before.

``--arch`` names the backbone to build (``essl_info.models.networks.BACKBONES``) and ``--dataset``
the data to measure on (class count, image size). ``--arch FORMAT:ARCH`` (e.g.
``torchvision:resnet50``) forces a layout instead of recognising it.

The SSL libraries' layouts (solo-learn, lightly, plain torchvision / timm state dicts) live
in :mod:`.library_importers` and register here, in ``FORMATS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..errors import CheckpointError

CIFAR10_NORMALISATION = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
IMAGENET_NORMALISATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Understanding-ESSL "Equivariant Network/train.py": mean (125.3, 123.0, 113.9)/255,
# std (63.0, 62.1, 66.7)/255
WANG_EQUIVARIANT_NORMALISATION = (tuple(v / 255 for v in (125.3, 123.0, 113.9)),
                                  tuple(v / 255 for v in (63.0, 62.1, 66.7)))


@dataclass(frozen=True)
class ForeignFormat:
    """One foreign layout. Prefixes refer to keys after flattening and prefix removal."""

    name: str
    source: str                       # the code that writes it
    signature: str                    # a key whose presence identifies the layout
    backbone: str                     # prefix of the backbone's torchvision-named keys
    projector: str | None = None      # prefix of a projector in essl_info's MLP layout
    projector_out_norm: str | None = None   # its last BatchNorm: "batch" | "batch_noaffine"
    duplicates: dict = field(default_factory=dict)   # prefix -> prefix it must equal
    skipped: dict = field(default_factory=dict)      # prefix -> what it is (not imported)
    normalisation: tuple | None = None               # (mean, std) of that code's inputs
    also: tuple = ()          # further keys that must be present (a more specific layout)
    # library layouts: (backbone keys, --arch, source) -> (backbone to build, keys renamed
    # to torchvision's, normalisation or None); see library_importers
    adapt: Callable[[dict, str, str], tuple[str, dict, tuple | None]] | None = None
    rename: Callable | None = None    # backbone keys of the file -> essl_info's names
    stem_key: str = "conv1.weight"    # (after renaming) the first conv: width, channels
    archs: tuple[str, ...] = ()       # the backbones that can hold it (empty: any)
    refuse: Callable | None = None    # flat -> a reason this file cannot be imported


def _rename_wang_resnet18(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Understanding-ESSL ``Equivariant Network`` ResNet names -> torchvision names
    (``conv1.0`` -> ``conv1``, ``conv1.1`` -> ``bn1``, ``conv{s}_x.i.residual_function.
    {0,2,4,5}`` -> ``layer{s-1}.i.{conv1,bn1,conv2,bn2}``, ``shortcut`` -> ``downsample``).
    A key of no known form is kept as it is, so that the strict match reports it."""
    parts = {"0": "conv1", "2": "bn1", "4": "conv2", "5": "bn2"}
    out = {}
    for k, v in sd.items():
        m = re.fullmatch(r"conv(\d)_x\.(\d+)\.(residual_function|shortcut)\.(\d)\.(.+)", k)
        if k.startswith(("conv1.0.", "conv1.1.")):
            k = ("conv1." if k[6] == "0" else "bn1.") + k[8:]
        elif m and m[3] == "residual_function" and m[4] in parts:
            k = f"layer{int(m[1]) - 1}.{m[2]}.{parts[m[4]]}.{m[5]}"
        elif m and m[3] == "shortcut":
            k = f"layer{int(m[1]) - 1}.{m[2]}.downsample.{m[4]}.{m[5]}"
        out[k] = v
    return out


def _refuse_other_groups(flat: Mapping[str, torch.Tensor]) -> str | None:
    """The D4 and E4 networks of Understanding-ESSL share the C4 network's names."""
    w = flat.get("conv2_x.0.residual_function.0.weight")
    if any(".v.0.weight" in k for k in flat):
        return ("an Understanding-ESSL E4C4resnet18/E4D4resnet18 (E4-Net dynamic "
                "convolutions) checkpoint")
    if w is not None and w.ndim == 5 and w.shape[2] == 8:
        return "an Understanding-ESSL D4resnet18 (rotations and flips) checkpoint"
    return None


FORMATS: dict[str, ForeignFormat] = {f.name: f for f in [
    ForeignFormat(
        "essl-cifar", "Dangovski et al. 2022, rdangovs/essl cifar10/main.py (Branch)",
        signature="encoder.conv1.weight", backbone="encoder.", projector="projector.net.",
        projector_out_norm="batch_noaffine",
        duplicates={"net.0.": "encoder.", "net.1.net.": "projector.net."},
        skipped={"predictor2.": "rotation-prediction head"},
        normalisation=CIFAR10_NORMALISATION),
    ForeignFormat(
        "essl-imagenet", "Dangovski et al. 2022, rdangovs/essl imagenet/simclr/main.py",
        signature="backbone.conv1.weight", backbone="backbone.", projector="projector.",
        projector_out_norm="batch",
        skipped={"head.": "online linear classifier", "online_head.": "online linear "
                 "classifier", "rotation_projector.": "rotation-prediction head",
                 "optimizer.": "optimizer state"},
        normalisation=IMAGENET_NORMALISATION),
    ForeignFormat(
        "wang-essl", "Wang et al. 2024, kaotty/Understanding-ESSL ESSL/models.py",
        signature="enc.conv1.weight", backbone="enc.",
        skipped={"projector.": "transformation-prediction head (K logits, not a "
                 "projector)", "linear.": "online linear classifier"},
        normalisation=((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))),
    ForeignFormat(
        "wang-resnet18", "Wang et al. 2024, kaotty/Understanding-ESSL Equivariant "
        "Network/train.py --model resnet18",
        signature="conv1.1.running_mean", backbone="",
        skipped={"fc.": "class head", "projector.": "rotation-prediction head"},
        normalisation=WANG_EQUIVARIANT_NORMALISATION, rename=_rename_wang_resnet18,
        archs=("resnet18_cifar",)),
    ForeignFormat(
        "wang-c4resnet18", "Wang et al. 2024, kaotty/Understanding-ESSL Equivariant "
        "Network/train.py --model C4resnet18",
        signature="conv1.1.bn.running_mean", backbone="",
        skipped={"fc.": "class head", "projector.": "rotation-prediction head"},
        normalisation=WANG_EQUIVARIANT_NORMALISATION, stem_key="conv1.0.weight",
        archs=("p4_resnet18",), refuse=_refuse_other_groups),
]}

# Globals that a foreign file may name, each mapped to an inert stand-in (never run).
INERT_GLOBALS = {
    "__main__.exclude_bias_and_norm": "rdangovs/essl imagenet/simclr/main.py: the LARS "
                                      "parameter filter kept in the optimizer's param_groups",
}


def _inert(name: str) -> Callable:
    def stand_in(*args, **kwargs):
        raise CheckpointError(f"{name} is an inert stand-in for a function named in a "
                              f"foreign checkpoint; essl_info never runs it")
    stand_in.__qualname__ = stand_in.__name__ = name.rsplit(".", 1)[-1]
    return stand_in

_CONTAINERS = ("state_dict.", "model.")   # top-level wrappers around a state dict


# =========================================================================== reading
def flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested dicts/lists of tensors -> {dotted key: tensor}, DDP ``module.`` parts removed
    (``{"model": {"module.backbone.conv1.weight": t}}`` -> ``model.backbone.conv1.weight``).
    Non-tensor leaves (epoch numbers, hyper-parameters) are left out."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[re.sub(r"(^|\.)module\.", r"\1", prefix[:-1])] = obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten_tensors(v, f"{prefix}{k}."))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten_tensors(v, f"{prefix}{i}."))
    return out


def _strip_container(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a ``state_dict.`` / ``model.`` wrapper (keeping ``optimizer.`` keys)."""
    for c in _CONTAINERS:
        if any(k.startswith(c) for k in flat):
            return {(k[len(c):] if k.startswith(c) else k): v for k, v in flat.items()}
    return flat


def detect_format(flat: Mapping[str, torch.Tensor], source: str = "file",
                  forced: str | None = None) -> ForeignFormat:
    """The layout of ``flat``: ``forced`` (a FORMATS name) if given, else the matching
    layout with the most identifying keys (signature + ``also``)."""
    if forced is not None:
        if forced not in FORMATS:
            raise CheckpointError(f"unknown layout {forced!r} in --arch {forced}:...; known: "
                                  f"{', '.join(FORMATS)}")
        fmt = FORMATS[forced]
        absent = [k for k in (fmt.signature, *fmt.also) if k not in flat]
        if absent:
            raise CheckpointError(f"{source} is not a {fmt.name} file ({fmt.source}): no "
                                  f"{', '.join(absent)}")
        return fmt
    found = [f for f in FORMATS.values()
             if f.signature in flat and all(k in flat for k in f.also)]
    if found:
        return max(found, key=lambda f: len(f.also))   # first registered among equals
    heads = sorted({k.split(".")[0] for k in flat})[:10]
    raise CheckpointError(
        f"{source}: unrecognised checkpoint layout (top-level key prefixes: {heads}); it "
        f"cannot be imported: essl_info reads only the known foreign layouts "
        + ", ".join(f.name for f in FORMATS.values()) + " (see essl_info.models.importers)")


def _list(keys, n: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def _take(flat: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}


def _match(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor],
           what: str, source: str, hint: str) -> None:
    """Strict key-for-key comparison; an error lists missing / unexpected / misshapen /
    wrongly typed tensors (``checkpoint.weight_mismatches``)."""
    from .checkpoint import weight_mismatches

    parts = weight_mismatches(expected, got)
    if parts:
        raise CheckpointError(f"{source}: {what} does not match ({'; '.join(parts)}); {hint}")


def _projector_dims(weights: Mapping[str, torch.Tensor], source: str) -> list[int]:
    """Layer sizes of an essl_info-layout MLP (Linear at 0, 3, 6, ...) from its weights."""
    dims, i = [], 0
    while f"{i}.weight" in weights and weights[f"{i}.weight"].ndim == 2:
        w = weights[f"{i}.weight"]
        dims = dims or [int(w.shape[1])]
        dims.append(int(w.shape[0]))
        i += 3
    if len(dims) < 2:
        raise CheckpointError(f"{source}: no projector Linear layers found "
                              f"(keys: {_list(weights)})")
    return dims


# =========================================================================== import
def import_foreign(path: str | Path, *, arch: str, dataset: str, data_dir: str | None = None,
                   transformations: tuple[str, ...] = ("rotation4",), seed: int = 0,
                   **dataset_params) -> dict:
    """An essl_info checkpoint dict around the weights of a foreign file (see module doc).

    ``arch``: backbone name (``resnet18_cifar``, ``resnet18``, ``resnet50``, ...),
    optionally ``FORMAT:ARCH`` to force a layout of ``FORMATS`` (``torchvision:resnet50``);
    ``dataset``: the registry name of the data it will be measured on (its class count and
    image size go into the model spec). Heads other than the backbone and projector are
    freshly initialised (seeded) and marked untrained in ``train["imported_parts"]``.
    Raises ``CheckpointError`` naming the problem.
    """
    from .checkpoint import SCHEMA_VERSION, _raw_load, load_weights, utc_now
    from ..data import load_dataset, parse_transformations
    from .networks import BACKBONES, ESSLModel, mlp_spec, model_spec
    from .. import __version__

    forced, _, arch = str(arch).rpartition(":")
    if arch not in BACKBONES:
        raise CheckpointError(f"--arch {arch!r} is not a known backbone; choose one of "
                              f"{sorted(BACKBONES)}")
    path = Path(path)
    source = str(path)
    with torch.serialization.safe_globals([(_inert(n), n) for n in INERT_GLOBALS]):
        raw = _raw_load(path)
    if isinstance(raw, dict) and "schema_version" in raw:
        raise CheckpointError(f"{source} is an essl_info checkpoint: measure it without "
                              f"--arch")
    flat = _strip_container(flatten_tensors(raw))
    fmt = detect_format(flat, source, forced or None)
    reason = fmt.refuse(flat) if fmt.refuse else None
    if reason:
        raise CheckpointError(f"{source} is {reason}; essl_info has no backbone for it, so "
                              f"it cannot be imported")
    if fmt.archs and arch not in fmt.archs:
        raise CheckpointError(f"{source} is a {fmt.name} checkpoint ({fmt.source}); import "
                              f"it with --arch {' or '.join(fmt.archs)}, not {arch!r}")

    # account for every tensor: backbone, projector, duplicates, skipped parts
    claimed = [fmt.backbone, *fmt.duplicates, *fmt.skipped] + (
        [fmt.projector] if fmt.projector else [])
    stray = [k for k in flat if not any(k.startswith(p) for p in claimed)]
    if stray:
        raise CheckpointError(f"{source}: unexpected keys for the {fmt.name} layout "
                              f"({fmt.source}): {_list(stray)}")
    for dup, twin in fmt.duplicates.items():
        for k, v in _take(flat, dup).items():
            other = flat.get(twin + k)
            if other is None or other.shape != v.shape or not torch.equal(other, v):
                raise CheckpointError(f"{source}: {dup}{k} should duplicate {twin}{k} in "
                                      f"the {fmt.name} layout but differs or is missing")

    backbone_sd = _take(flat, fmt.backbone)
    normalisation = fmt.normalisation
    if not fmt.backbone:   # the whole file is the backbone, but for the named heads
        backbone_sd = {k: v for k, v in backbone_sd.items()
                       if not k.startswith(tuple(fmt.skipped))}
    if fmt.rename is not None:
        backbone_sd = fmt.rename(backbone_sd)
    if fmt.adapt is not None:    # a library's layout: its names -> torchvision's, its stem
        arch, backbone_sd, normalisation = fmt.adapt(backbone_sd, arch, source)
    conv1 = backbone_sd.get(fmt.stem_key)
    if conv1 is None or conv1.ndim != 4:
        raise CheckpointError(f"{source}: no {fmt.backbone}{fmt.stem_key} in the file")
    width, in_channels = int(conv1.shape[0]), int(conv1.shape[1])
    try:
        ds = load_dataset(dataset, split="test", data_dir=data_dir, seed=seed,
                          **dataset_params)
    except ValueError as e:
        raise type(e)(f"{e} (the data to measure the imported model on)") from None
    if ds.channels != in_channels:
        raise CheckpointError(f"{source}: the backbone takes {in_channels}-channel images "
                              f"but dataset {dataset!r} has {ds.channels}")
    mean, std = normalisation or (ds.mean, ds.std)
    ts = parse_transformations(list(transformations))
    spec = model_spec(backbone=arch, width=width, in_channels=in_channels,
                      image_size=ds.image_size, n_classes=ds.n_classes,
                      transformations=[(t.name, t.n_classes) for t in ts], mean=mean, std=std)
    parts = ["backbone"]
    proj_sd = _take(flat, fmt.projector) if fmt.projector else {}
    if proj_sd:
        spec["projector"] = mlp_spec(_projector_dims(proj_sd, source), "batch",
                                     fmt.projector_out_norm)
        parts.append("projector")
    with torch.random.fork_rng(devices=[]):   # building a network draws initial weights
        torch.manual_seed(seed)
        model = ESSLModel(spec)
    _match(model.backbone.state_dict(), backbone_sd,
           f"the backbone under {fmt.backbone!r} as {arch}", source, "check --arch")
    load_weights(model.backbone, backbone_sd, f"{source}: the backbone")
    if proj_sd:
        _match(model.projector.state_dict(), proj_sd, f"the projector under "
               f"{fmt.projector!r}", source, "the layout's projector is not an essl_info MLP")
        load_weights(model.projector, proj_sd, f"{source}: the projector")
    epoch = raw.get("epoch") if isinstance(raw, dict) else None
    return {
        "schema_version": SCHEMA_VERSION,
        "library_version": __version__,
        "created_utc": utc_now(),
        "model": spec,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "train": {"imported": True, "source": source, "format": fmt.name,
                  "format_source": fmt.source, "arch": arch, "imported_parts": parts,
                  "skipped": {p: what for p, what in fmt.skipped.items()
                              if any(k.startswith(p) for k in flat)},
                  "transforms": [t.name for t in ts]},
        "data": {"dataset": dataset, "params": dict(ds.params), "data_dir": data_dir,
                 "image_size": ds.image_size, "channels": ds.channels,
                 "n_classes": ds.n_classes, "mean": list(mean), "std": list(std)},
        "transformations": [{"name": t.name, "n_classes": t.n_classes} for t in ts],
        "seed": int(seed),
        "progress": {"epoch": int(epoch) if isinstance(epoch, int) else None, "step": None,
                     "finished": True},
        "metrics": {"imported_from": source},
    }


__all__ = ["FORMATS", "INERT_GLOBALS", "ForeignFormat", "detect_format", "flatten_tensors",
           "import_foreign"]

from . import library_importers  # noqa: E402,F401  (registers its layouts in FORMATS)
