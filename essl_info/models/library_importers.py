"""Checkpoints of the SSL libraries people train with, registered in ``importers.FORMATS``.

Each layout is read key for key under the rules of :mod:`.importers` (every tensor
accounted for, nothing loaded with ``strict=False``, an error listing what does not fit).
What distinguishes these from the papers' layouts is that the library's own module names
must be mapped onto torchvision's, and that some libraries use a CIFAR stem which the
weights alone do not reveal (padding, a missing ReLU): ``adapt`` below picks the backbone
(``networks.STEMS``) from the library and the shape of ``conv1``. ``--arch`` gives the
depth (``resnet18`` or ``resnet50``); ``--arch FORMAT:ARCH`` forces a layout.

Layouts (studied in the libraries' public code):

- ``solo-learn``: vturrisi/solo-learn ``solo/methods/base.py`` (``BaseMethod``): a
  PyTorch Lightning checkpoint whose ``state_dict`` holds ``backbone.*`` (torchvision's
  ``resnet18``/``resnet50`` with ``fc = Identity``; on CIFAR ``conv1 = Conv2d(3, 64, 3,
  stride=1, padding=2)`` and ``maxpool = Identity``) and ``classifier.*`` (online linear
  probe), plus the method's parts (projector, momentum copies, predictor, queue,
  prototypes). ``solo-learn-legacy``: the same with ``encoder.*`` (versions before 2022).
  Inputs normalised as solo-learn's pipelines do: CIFAR (0.4914, 0.4822, 0.4465) /
  (0.247, 0.243, 0.261), else ImageNet.
- ``lightly``: lightly-ai/lightly's examples and tutorials: ``backbone =
  nn.Sequential(*list(torchvision_resnet.children())[:-1])`` (keys ``backbone.0`` conv1,
  ``backbone.1`` bn1, ``backbone.4``-``backbone.7`` layer1-4), beside
  ``projection_head.*`` / ``prediction_head.*`` / momentum copies; also saved as the
  tutorial's ``{"resnet18_parameters": backbone.state_dict()}``. ImageNet normalisation
  (lightly's default transforms).
- ``lightly-cifar``: lightly's CIFAR-10 benchmark: ``lightly.models.ResNetGenerator``
  wrapped as ``nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1))``:
  3×3 stem, ``backbone.2``-``backbone.5`` = layer1-4, shortcuts named ``shortcut``, and no
  ReLU after ``bn1`` (ResNetGenerator applies it functionally, so the Sequential drops it).
  ``SplitBatchNorm`` running statistics (``num_splits`` copies) are averaged as lightly
  does when the module enters eval mode. ImageNet normalisation (as that benchmark).
- ``lightly-benchmark``: lightly's ImageNet benchmarks (``benchmarks/imagenet/resnet50``):
  ``backbone.*`` = torchvision ResNet with ``fc = Identity``, ``projection_head.*``,
  ``online_classifier.*``.
- ``torchvision`` / ``timm``: a plain ResNet state dict (``conv1``, ``bn1``,
  ``layer1``-``layer4`` with ``downsample``, ``fc``); timm's ResNets use torchvision's
  names. ``fc`` (the ImageNet classifier) is skipped. ImageNet normalisation.

Lightning's training state (``optimizer_states``, ``lr_schedulers``, ``callbacks``,
``loops``, mixed-precision scaler) is named and skipped in every layout.
"""

from __future__ import annotations

import re


from ..errors import CheckpointError
from .importers import FORMATS, IMAGENET_NORMALISATION, ForeignFormat

SOLO_CIFAR_NORMALISATION = ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
DEPTHS = ("resnet18", "resnet50")

LIGHTNING_STATE = {
    "optimizer_states.": "optimizer state (Lightning)",
    "lr_schedulers.": "learning-rate scheduler state (Lightning)",
    "callbacks.": "callback state (Lightning)",
    "loops.": "training-loop state (Lightning)",
    "MixedPrecision": "mixed-precision loss-scaler state (Lightning)",
    "native_amp_scaling_state.": "mixed-precision loss-scaler state (Lightning)",
}


# ============================================================================ helpers
def _depth(arch: str, library: str, source: str) -> str:
    """``resnet18`` / ``resnet50`` from --arch (``resnet18``, ``resnet18_cifar``, ...)."""
    for depth in DEPTHS:
        if arch == depth or arch.startswith(depth + "_"):
            return depth
    raise CheckpointError(f"{source}: {library} checkpoints are read as ResNet-18 or "
                          f"ResNet-50; pass --arch resnet18 or --arch resnet50, not {arch!r}")


def _kernel(sd: dict, source: str) -> int:
    w = sd.get("conv1.weight")
    if w is None or w.ndim != 4:
        raise CheckpointError(f"{source}: no 4-d conv1 weight in the backbone (keys: "
                              f"{', '.join(sorted(sd)[:6])}, ...)")
    return int(w.shape[-1])


def _renamed(sd: dict, stages: dict[str, str]) -> dict:
    """Keys ``<index>.rest`` -> ``<name>.rest`` by ``stages`` ({"0": "conv1", ...});
    indices not listed are kept (and then reported as unexpected by the strict match)."""
    out = {}
    for k, v in sd.items():
        head, dot, rest = k.partition(".")
        out[(stages[head] + dot + rest) if head in stages else k] = v
    return out


# ========================================================================= solo-learn
def _solo(sd: dict, arch: str, source: str):
    depth, kernel = _depth(arch, "solo-learn", source), _kernel(sd, source)
    if kernel == 3:     # cfg.data.dataset in ["cifar10", "cifar100"]: 3x3, padding 2
        return f"{depth}_cifar_pad2", sd, SOLO_CIFAR_NORMALISATION
    return depth, sd, IMAGENET_NORMALISATION


_SOLO_PARTS = {
    "classifier.": "online linear classifier",
    "momentum_classifier.": "online linear classifier on the momentum backbone",
    "projector.": "the method's projector (not imported)",
    "momentum_projector.": "momentum copy of the projector",
    "predictor.": "the method's predictor head",
    "queue": "feature queue (MoCo, NNCLR)",
    "prototypes.": "prototypes (SwAV, DeepClusterV2)",
    "head.": "DINO head",
    "momentum_head.": "momentum copy of the DINO head",
}


def _solo_format(name: str, prefix: str, source: str) -> ForeignFormat:
    momentum = prefix.replace("backbone", "momentum_backbone").replace(
        "encoder", "momentum_encoder")
    return ForeignFormat(
        name, source, signature=f"{prefix}conv1.weight", also=("classifier.weight",),
        backbone=prefix,
        skipped={momentum: "momentum (EMA) copy of the backbone", **_SOLO_PARTS,
                 **LIGHTNING_STATE},
        normalisation=IMAGENET_NORMALISATION, adapt=_solo)


# ============================================================================ lightly
_TORCHVISION_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2",
                         "6": "layer3", "7": "layer4"}   # 2 relu, 3 maxpool, 8 avgpool
_GENERATOR_CHILDREN = {"0": "conv1", "1": "bn1", "2": "layer1", "3": "layer2",
                       "4": "layer3", "5": "layer4"}    # 6 AdaptiveAvgPool2d


def _lightly_torchvision(sd: dict, arch: str, source: str):
    depth, kernel = _depth(arch, "lightly", source), _kernel(
        _renamed(sd, _TORCHVISION_CHILDREN), source)
    if kernel != 7 and arch == depth:
        raise CheckpointError(
            f"{source}: conv1 is {kernel}x{kernel}, not torchvision's 7x7: the file does not "
            f"record the replaced stem's padding or max-pool; pass the backbone it had, "
            f"e.g. --arch lightly:{depth}_cifar (3x3, padding 1, no max-pool)")
    return arch, _renamed(sd, _TORCHVISION_CHILDREN), IMAGENET_NORMALISATION


def _average_split_batchnorm(sd: dict) -> dict:
    """lightly's ``SplitBatchNorm`` keeps ``num_splits`` copies of the running statistics
    (length splits·C); in eval mode it uses their mean over splits. Reduce to length C."""
    out = dict(sd)
    for k, v in sd.items():
        if k.endswith(("running_mean", "running_var")):
            w = sd.get(k.rsplit(".", 1)[0] + ".weight")
            if w is not None and v.ndim == 1 and v.numel() > w.numel() and \
                    v.numel() % w.numel() == 0:
                out[k] = v.view(-1, w.numel()).mean(0)
    return out


def _lightly_generator(sd: dict, arch: str, source: str):
    depth = _depth(arch, "lightly", source)
    sd = {re.sub(r"\.shortcut\.", ".downsample.", k): v
          for k, v in _renamed(sd, _GENERATOR_CHILDREN).items()}
    return f"{depth}_cifar_norelu", _average_split_batchnorm(sd), IMAGENET_NORMALISATION


_LIGHTLY_PARTS = {
    "projection_head.": "projection head (lightly.models.modules.heads)",
    "prediction_head.": "prediction head",
    "backbone_momentum.": "momentum (EMA) copy of the backbone",
    "projection_head_momentum.": "momentum copy of the projection head",
    "online_classifier.": "online linear classifier",
    "prototypes.": "SwAV prototypes",
    "criterion.": "loss state (memory bank)",
}


# ======================================================================= torchvision
def _torchvision(sd: dict, arch: str, source: str):
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}   # skipped: see format
    kernel = _kernel(sd, source)
    if kernel != 7 and "cifar" not in arch:
        raise CheckpointError(f"{source}: conv1 is {kernel}x{kernel}, not torchvision's "
                              f"7x7; pass the backbone the model had, e.g. --arch "
                              f"torchvision:resnet18_cifar (3x3, padding 1, no max-pool)")
    return arch, sd, IMAGENET_NORMALISATION


def _register(fmt: ForeignFormat) -> None:
    if fmt.name in FORMATS:
        raise RuntimeError(f"checkpoint layout {fmt.name!r} registered twice")
    FORMATS[fmt.name] = fmt


SOLO = "vturrisi/solo-learn solo/methods/base.py (BaseMethod)"
LIGHTLY = "lightly-ai/lightly examples: nn.Sequential(*list(torchvision resnet.children())[:-1])"
for _fmt in [
    _solo_format("solo-learn", "backbone.", SOLO),
    _solo_format("solo-learn-legacy", "encoder.", SOLO + ", before 2022 (encoder)"),
    ForeignFormat("lightly", LIGHTLY, signature="backbone.0.weight",
                  also=("backbone.7.0.conv1.weight",), backbone="backbone.",
                  skipped={**_LIGHTLY_PARTS, **LIGHTNING_STATE}, adapt=_lightly_torchvision),
    ForeignFormat("lightly-tutorial", LIGHTLY + ", saved as {'resnet18_parameters': ...}",
                  signature="resnet18_parameters.0.weight",
                  also=("resnet18_parameters.7.0.conv1.weight",),
                  backbone="resnet18_parameters.", adapt=_lightly_torchvision),
    ForeignFormat("lightly-cifar", "lightly-ai/lightly CIFAR-10 benchmark: nn.Sequential("
                  "*list(ResNetGenerator(...).children())[:-1], AdaptiveAvgPool2d(1))",
                  signature="backbone.0.weight", also=("backbone.2.0.conv1.weight",),
                  backbone="backbone.", skipped={**_LIGHTLY_PARTS, **LIGHTNING_STATE},
                  adapt=_lightly_generator),
    ForeignFormat("lightly-benchmark", "lightly-ai/lightly benchmarks/imagenet/resnet50 "
                  "(backbone = torchvision ResNet, fc = Identity)",
                  signature="backbone.conv1.weight", also=("projection_head.layers.0.weight",),
                  backbone="backbone.", skipped={**_LIGHTLY_PARTS, **LIGHTNING_STATE},
                  adapt=_torchvision),
    ForeignFormat("torchvision", "torchvision.models.resnet state dict", signature="conv1.weight",
                  also=("layer1.0.conv1.weight",), backbone="",
                  skipped={"fc.": "ImageNet classifier (fc)"}, adapt=_torchvision),
    ForeignFormat("timm", "timm.models.resnet state dict (torchvision's key names)",
                  signature="conv1.weight", also=("layer1.0.conv1.weight",), backbone="",
                  skipped={"fc.": "ImageNet classifier (fc)"}, adapt=_torchvision),
]:
    _register(_fmt)


__all__ = ["DEPTHS", "LIGHTNING_STATE", "SOLO_CIFAR_NORMALISATION"]
