"""Backbones and heads of the bundled E-SSL trainer (DESIGN §2, §8).

Backbones come from a registry (``BACKBONES``) and use torchvision's parameter names
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ...; ``fc`` removed), so
that state dicts from the papers' code (E-SSL's ``cifar10/resnet.py`` is torchvision's ResNet
with a 3×3 stem and no max-pool) load key for key.

Heads are data: each is a plain dict ``{"dims": [in, hidden..., out], "norm": "batch" |
"layer", "out_norm": None | "batch" | "batch_noaffine", "grad": "normal" | "reverse"}``
built by ``build_mlp``. The default shapes follow Dangovski et al. (ICLR 2022, E-SSL,
``cifar10/main.py``): projector 512-2048-2048 with BatchNorm (last one without affine),
transformation head 512-2048-2048-K with LayerNorm, SimSiam predictor 2048-512-2048; the
small CPU backbone gets the same shapes, narrower.

``ESSLModel`` is rebuilt from its spec alone (the checkpoint's ``"model"`` dict,
``model_spec``). It never computes a loss: ``forward`` returns named outputs and
``essl_info.training.losses`` turns them into loss terms.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

# ============================================================================= backbones


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (He et al. 2016), torchvision names."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride here, "ResNet v1.5" as in torchvision) → 1×1 ×4, torchvision names."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(_conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


# conv1 (kernel, stride, padding), ReLU after bn1, 3×3 stride-2 max-pool: the stems in use
STEMS: dict[str, tuple[int, int, int, bool, bool]] = {
    "cifar": (3, 1, 1, True, False),      # E-SSL / SimCLR on 32×32
    "imagenet": (7, 2, 3, True, True),    # torchvision
    "cifar_pad2": (3, 1, 2, True, False),    # solo-learn's CIFAR stem (methods/base.py)
    "cifar_norelu": (3, 1, 1, False, False),  # lightly's ResNetGenerator in nn.Sequential
}                                             # (its ReLU is functional, so it drops out)


class ResNet(nn.Module):
    """A torchvision-layout ResNet trunk without ``fc``: (n, C, H, W) → (n, feature_dim).

    ``stem="cifar"``: 3×3 stride-1 ``conv1`` and no max-pool (E-SSL / SimCLR on 32×32);
    ``stem="imagenet"``: 7×7 stride-2 ``conv1`` then a 3×3 stride-2 max-pool; the other
    entries of ``STEMS`` reproduce SSL libraries' CIFAR stems exactly.
    ``widths[i]`` is the number of planes of stage ``layer{i+1}`` (torchvision: 64·2^i);
    stages after the first halve the resolution.
    """

    def __init__(self, block: type, blocks: Sequence[int], widths: Sequence[int],
                 in_channels: int = 3, stem: str = "cifar"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {sorted(STEMS)}, got {stem!r}")
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(f"blocks {list(blocks)} and widths {list(widths)} must have "
                             f"the same non-zero length")
        c = widths[0]
        kernel, stride, padding, act, pool = STEMS[stem]
        self.conv1 = nn.Conv2d(in_channels, c, kernel_size=kernel, stride=stride,
                               padding=padding, bias=False)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if pool else \
            nn.Identity()
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True) if act else nn.Identity()
        self.stages = len(blocks)
        for i, (n_blocks, planes) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(c, planes, stride))
                c = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.feature_dim = c
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)


@dataclass(frozen=True)
class BackboneInfo:
    """A registered backbone: ``build(in_channels, width) -> module`` with ``feature_dim``."""

    name: str
    build: Callable[[int, int], ResNet]
    default_width: int
    head_width: int          # hidden width of projector / transformation heads by default
    summary: str


BACKBONES: dict[str, BackboneInfo] = {}


def register_backbone(name: str, *, default_width: int, head_width: int, summary: str):
    """Decorator: add ``build(in_channels, width)`` to ``BACKBONES``."""

    def deco(build: Callable[[int, int], ResNet]) -> Callable[[int, int], ResNet]:
        if name in BACKBONES:
            raise RuntimeError(f"backbone {name!r} registered twice")
        BACKBONES[name] = BackboneInfo(name, build, default_width, head_width, summary)
        return build

    return deco


@register_backbone("small_cnn", default_width=32, head_width=512,
                   summary="3-stage ResNet (1 BasicBlock per stage, widths w,2w,4w) for "
                           "8x8-32x32 inputs on CPU; 128-d features at w=32")
def _small_cnn(in_channels: int, width: int) -> ResNet:
    return ResNet(BasicBlock, (1, 1, 1), (width, 2 * width, 4 * width), in_channels, "cifar")


@register_backbone("resnet18_cifar", default_width=64, head_width=2048,
                   summary="ResNet-18 with a 3x3 stem and no max-pool (E-SSL/SimCLR CIFAR); "
                           "512-d features")
def _resnet18_cifar(in_channels: int, width: int) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), [width * 2**i for i in range(4)], in_channels,
                  "cifar")


@register_backbone("resnet18", default_width=64, head_width=2048,
                   summary="torchvision ResNet-18 (7x7 stem + max-pool); 512-d features")
def _resnet18(in_channels: int, width: int) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), [width * 2**i for i in range(4)], in_channels,
                  "imagenet")


@register_backbone("resnet50", default_width=64, head_width=2048,
                   summary="torchvision ResNet-50 (7x7 stem + max-pool); 2048-d features")
def _resnet50(in_channels: int, width: int) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), [width * 2**i for i in range(4)], in_channels,
                  "imagenet")


def _library_variant(depth: str, stem: str, library: str) -> None:
    """Register ``{depth}_{stem}``: ResNet-18/50 with a stem an SSL library uses (the
    weights alone cannot tell these stems apart; ``models.library_importers`` picks them)."""
    block, blocks = {"resnet18": (BasicBlock, (2, 2, 2, 2)),
                     "resnet50": (Bottleneck, (3, 4, 6, 3))}[depth]
    kernel, _, padding, act, _ = STEMS[stem]
    register_backbone(f"{depth}_{stem}", default_width=64, head_width=2048,
                      summary=f"{depth} with {library}'s CIFAR stem ({kernel}x{kernel} conv, "
                              f"padding {padding}, {'' if act else 'no ReLU, '}no max-pool); "
                              f"{512 * block.expansion}-d features")(
        lambda in_channels, width: ResNet(block, blocks, [width * 2**i for i in range(4)],
                                          in_channels, stem))


for _depth in ("resnet18", "resnet50"):
    _library_variant(_depth, "cifar_pad2", "solo-learn")
    _library_variant(_depth, "cifar_norelu", "lightly (ResNetGenerator)")


@register_backbone("resnet50_cifar", default_width=64, head_width=2048,
                   summary="ResNet-50 with a 3x3 stem and no max-pool (Understanding-ESSL "
                           "CIFAR_Network with resnet50); 2048-d features")
def _resnet50_cifar(in_channels: int, width: int) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), [width * 2**i for i in range(4)], in_channels,
                  "cifar")


def build_backbone(name: str, in_channels: int = 3, width: int | None = None) -> ResNet:
    """The registered backbone ``name``; ``width`` defaults to the backbone's own."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    info = BACKBONES[name]
    width = info.default_width if width is None else int(width)
    if width < 1 or in_channels < 1:
        raise ValueError(f"backbone {name!r}: width ({width}) and in_channels "
                         f"({in_channels}) must be >= 1")
    return info.build(int(in_channels), width)


# ================================================================================= heads


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):  # noqa: D401 - autograd signature
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward, gradient multiplied by ``-scale`` backward (Ganin & Lempitsky 2015).

    Put in front of a class head, it makes the backbone *remove* class information while the
    head tries to read it (``--class-info eliminate``, Wang et al. 2024's experiment).
    """
    return _GradReverse.apply(x, float(scale))


class GradReverse(nn.Module):
    """``grad_reverse`` as a layer (no parameters, so it changes no state-dict key)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x)


_NORMS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}
_OUT_NORMS = {None: None, "batch": lambda d: nn.BatchNorm1d(d),
              "batch_noaffine": lambda d: nn.BatchNorm1d(d, affine=False)}


def mlp_spec(dims: Sequence[int], norm: str = "batch", out_norm: str | None = None,
             grad: str = "normal") -> dict:
    """A head as data (see the module docstring); validated here, built by ``build_mlp``."""
    dims = [int(d) for d in dims]
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(f"head dims must be >= 2 positive sizes, got {dims}")
    if norm not in _NORMS:
        raise ValueError(f"head norm must be one of {sorted(_NORMS)}, got {norm!r}")
    if out_norm not in _OUT_NORMS:
        raise ValueError(f"head out_norm must be one of {list(_OUT_NORMS)}, got {out_norm!r}")
    if grad not in ("normal", "reverse"):
        raise ValueError(f"head grad must be 'normal' or 'reverse', got {grad!r}")
    return {"dims": dims, "norm": norm, "out_norm": out_norm, "grad": grad}


def build_mlp(spec: dict) -> nn.Sequential:
    """Linear → norm → ReLU for each hidden layer, then Linear (→ out_norm).

    A Linear followed by BatchNorm has no bias (BatchNorm cancels it), as in E-SSL. With
    ``grad="reverse"`` the first module is a gradient-reversal layer, so the parameter
    names stay ``0.weight``-style offsets of one.
    """
    spec = mlp_spec(**spec)
    dims, norm = spec["dims"], spec["norm"]
    layers: list[nn.Module] = [GradReverse()] if spec["grad"] == "reverse" else []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(d_in, d_out, bias=norm != "batch"), _NORMS[norm](d_out),
                   nn.ReLU(inplace=True)]
    out_norm = _OUT_NORMS[spec["out_norm"]]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=out_norm is None))
    if out_norm is not None:
        layers.append(out_norm(dims[-1]))
    return nn.Sequential(*layers)


# ================================================================================= model


def default_head_width(backbone: str, width: int | None = None,
                       head_width: int | None = None) -> int:
    """Hidden width of the heads: ``head_width`` if given, else the backbone's default
    scaled with its width (at least 64)."""
    info = BACKBONES[backbone]
    width = info.default_width if width is None else int(width)
    return int(head_width or max(64, info.head_width * width // info.default_width))


def model_spec(*, backbone: str, in_channels: int, image_size: int, n_classes: int,
               transformations: Sequence[tuple[str, int]], mean: Sequence[float],
               std: Sequence[float], width: int | None = None,
               proj_dims: Sequence[int] | None = None, pred_dim: int | None = None,
               head_width: int | None = None, class_info: str = "normal") -> dict:
    """The checkpoint's ``"model"`` dict: everything ``ESSLModel`` needs to rebuild itself.

    ``transformations``: (name, n_classes) pairs, one transformation head each.
    ``proj_dims``: (hidden, out) of the projector; ``pred_dim``: hidden width of a SimSiam
    predictor (None: no predictor); ``class_info``: ``"normal"`` (no class head), ``"add"``
    (a class head trained through the backbone) or ``"eliminate"`` (the same head behind
    gradient reversal).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    info = BACKBONES[backbone]
    width = info.default_width if width is None else int(width)
    with torch.random.fork_rng(devices=[]):   # building initialises weights: keep the
        feature_dim = build_backbone(backbone, in_channels, width).feature_dim  # RNG as is
    hw = default_head_width(backbone, width, head_width)
    proj = [int(d) for d in (proj_dims or (hw, hw))]
    if len(mean) != in_channels or len(std) != in_channels or min(std) <= 0:
        raise ValueError(f"mean {list(mean)} / std {list(std)} must have in_channels="
                         f"{in_channels} entries and std > 0")
    if class_info not in ("normal", "add", "eliminate"):
        raise ValueError(f"class_info must be normal|add|eliminate, got {class_info!r}")
    return {
        "backbone": backbone,
        "width": width,
        "in_channels": int(in_channels),
        "image_size": int(image_size),
        "feature_dim": feature_dim,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "n_classes": int(n_classes),
        "projector": mlp_spec([feature_dim, *proj], "batch", "batch_noaffine"),
        "predictor": (None if pred_dim is None
                      else mlp_spec([proj[-1], int(pred_dim), proj[-1]], "batch")),
        "heads": [{"name": str(name), "n_classes": int(k),
                   "mlp": mlp_spec([feature_dim, hw, hw, int(k)], "layer")}
                  for name, k in transformations],
        "class_head": (None if class_info == "normal" else mlp_spec(
            [feature_dim, hw, int(n_classes)], "layer",
            grad="reverse" if class_info == "eliminate" else "normal")),
        "class_info": class_info,
    }


class ESSLModel(nn.Module):
    """Backbone + projector (+ SimSiam predictor) + one head per transformation (+ class
    head) + an online linear probe, rebuilt from ``spec`` (see ``model_spec``).

    Inputs are images in [0, 1], (n, C, H, W); the model normalises them with the spec's
    per-channel mean/std (kept out of the state dict: the spec is their source).
    """

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = copy.deepcopy(spec)
        self.backbone = build_backbone(spec["backbone"], spec["in_channels"], spec["width"])
        if self.backbone.feature_dim != spec["feature_dim"]:
            raise ValueError(f"spec feature_dim {spec['feature_dim']} != backbone "
                             f"{spec['backbone']!r} output {self.backbone.feature_dim}")
        self.projector = build_mlp(spec["projector"])
        self.predictor = build_mlp(spec["predictor"]) if spec["predictor"] else None
        self.heads = nn.ModuleDict({h["name"]: build_mlp(h["mlp"]) for h in spec["heads"]})
        self.class_head = build_mlp(spec["class_head"]) if spec["class_head"] else None
        self._n_classes = {h["name"]: h["n_classes"] for h in spec["heads"]}
        self.probe = nn.Linear(spec["feature_dim"], spec["n_classes"])
        c = spec["in_channels"]
        self.register_buffer("mean", torch.tensor(spec["mean"]).view(1, c, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(spec["std"]).view(1, c, 1, 1),
                             persistent=False)

    @property
    def transformation_names(self) -> list[str]:
        return [h["name"] for h in self.spec["heads"]]

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        """Backbone features (n, feature_dim) of images (n, C, H, W) in [0, 1]."""
        if x01.ndim != 4 or x01.shape[1] != self.spec["in_channels"]:
            raise ValueError(f"expected images (n, {self.spec['in_channels']}, H, W), got "
                             f"shape {tuple(x01.shape)}")
        return self.backbone((x01 - self.mean) / self.std)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Projector output (n, proj_dim) from backbone features (n, feature_dim)."""
        return self.projector(h)

    def transformation_logits(self, h: torch.Tensor, name: str) -> torch.Tensor:
        """Logits (n, K) of transformation ``name``'s head on backbone features."""
        if name not in self.heads:
            raise ValueError(f"no head for transformation {name!r}; this model has "
                             f"{self.transformation_names}")
        return self.heads[name](h)

    def forward(self, views: Sequence[torch.Tensor], trans_inputs: dict[str, torch.Tensor],
                probe_from: str = "view", trans_grad: bool = True,
                head_grad: bool = True, n_images: int | None = None) -> dict[str, Any]:
        """One training forward pass, all branches (so DDP sees a single ``forward``).

        views: SSL views, each (B, C, H, W) in [0, 1] (empty for ``--ssl none``).
        trans_inputs: transformation name → all K transformed copies (B·K, C, h, w),
            label-major (rows [a·B, (a+1)·B) carry label a).
        probe_from: ``"view"`` (first SSL view) or ``"trans"`` (the first slot of the first
            transformation's copies: rows [0, B), one copy per image) for the online probe,
            which sees detached features.
        n_images: B, the images of the batch; needed with ``probe_from="trans"`` when a
            transformation carries a sample of its labels (B·m rows, m < K); default
            rows / K.
        trans_grad: False runs the transformation branch's backbone frozen (no gradients, no
            BatchNorm statistics; its heads then train on fixed features, as monitors: the
            ``lambda = 0`` baseline).
        head_grad: False feeds the transformation heads detached features (they train as
            monitors while another objective, e.g. CARE, shapes the backbone).
        Returns h / z / p (lists over views), trans_h and trans_logits (dicts),
        class_logits (on the concatenated transformation features, or None) and
        probe_logits (B, n_classes).
        """
        h = [self.features(v) for v in views]
        z = [self.project(hi) for hi in h]
        p = [self.predictor(zi) for zi in z] if self.predictor is not None else None
        if trans_grad:
            trans_h = {name: self.features(x) for name, x in trans_inputs.items()}
        else:  # frozen: no gradient and no BatchNorm statistics from this branch
            was_training = self.backbone.training
            self.backbone.eval()
            with torch.no_grad():
                trans_h = {name: self.features(x) for name, x in trans_inputs.items()}
            self.backbone.train(was_training)
        trans_logits = {name: self.heads[name](hi if head_grad else hi.detach())
                        for name, hi in trans_h.items()}
        class_logits = None
        if self.class_head is not None and trans_h:
            class_logits = self.class_head(torch.cat(list(trans_h.values())))
        if probe_from == "view":
            anchor = h[0]
        elif probe_from == "trans":
            name, first = next(iter(trans_h.items()))
            rows = first.shape[0] // self._n_classes[name] if n_images is None else n_images
            anchor = first[:rows]
        else:
            raise ValueError(f"probe_from must be 'view' or 'trans', got {probe_from!r}")
        return {"h": h, "z": z, "p": p, "trans_h": trans_h, "trans_logits": trans_logits,
                "class_logits": class_logits, "probe_logits": self.probe(anchor.detach())}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
