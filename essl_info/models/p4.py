"""A p4 (C4 rotation-group) equivariant ResNet-18 in plain torch (DESIGN §11).

Wang et al. (NeurIPS 2024, Tables 2 and 4, "EqResNet18") train a ResNet-18 whose layers
are group convolutions over C4 = {0°, 90°, 180°, 270°} (Cohen & Welling 2016, "Group
Equivariant Convolutional Networks"). Their code (kaotty/Understanding-ESSL, "Equivariant
Network", ``C4resnet18``, built on the group layers of He et al. 2021, E4-Net) is the
layout reproduced here, parameter name for parameter name, so that its checkpoints load
key for key (``essl_info.models.importers``, format ``wang-c4resnet18``).

A feature map of ``c`` group channels is a tensor (n, 4c, H, W) whose channel ``4·o + g``
holds orientation ``g`` of channel ``o``. Rotating the input by k quarter turns
(``torch.rot90(x, k, dims=(-2, -1))``, the ``rotation4`` label convention) rotates every
map by k quarter turns *and* shifts its group axis cyclically by k:
``f(R^k x)[:, o, g] = R^k f(x)[:, o, (g − k) mod 4]`` (``rotate_group_map``). Exact, to
float rounding, when the side length is divisible by 8: 3×3 convolutions with padding 1 and
2×2 max-pooling (the downsampling here, instead of strided convolutions) commute with
quarter turns of even-sided maps.

Layers (weights; foreign names):
- ``LiftingConv`` (``C_4_Conv``): weight (out, in, 3, 3), applied rotated by g·90° to give
  orientation g.
- ``GroupConv`` (``C_4_3x3`` / ``C_4_1x1``): weight (out, in, 4, 3, 3) / (out, in, 4); the
  filter of output orientation g is the weight rotated by g·90° with its input-orientation
  axis rolled by g; stride 2 is a 2×2 max-pool after the convolution.
- ``GroupBatchNorm`` (``C_4_BN``): ``bn`` = BatchNorm3d over (n, c, 4, H, W): one mean and
  variance per group channel, shared by the four orientations.
- ``GroupMaxPool`` (``C_4_Pool``): max over the four orientations → (n, c, H, W).

``P4ResNet`` = lifting stem (``conv1`` = conv, BN, ReLU) → stages ``conv2_x`` … ``conv5_x``
of ``P4BasicBlock`` (``residual_function`` = conv, dropout, BN, ReLU, conv, BN;
``shortcut`` = 1×1 group conv + BN where the shape changes) → group max-pool → flatten.
There is no global average pool: the features are the group-pooled last map, 8w channels on
a 4×4 grid for 32-px inputs (w = 32: 256·16 = 4096 values, as in Understanding-ESSL), so a
quarter turn of the input permutes the feature coordinates (``rotate_features``) and
rotation stays linearly readable. Other input sizes are average-pooled to the same 4×4 grid
(the identity at 32 px), which keeps the feature size and the equivariance.

Parameters: halving the widths of ResNet-18 (64…512 → 32…256) and adding the group axis
gives every group convolution exactly the weight count of its ResNet-18 counterpart
(out·in·4·9 = (2·out)(2·in)·9); the lifting stem and the BatchNorms have half theirs:
11,163,168 parameters against ResNet-18's 11,168,832 (CIFAR stem, no fc).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .networks import register_backbone

GROUP = 4            # |C4|
GRID = 4             # side of the feature grid


def _rotations(w: torch.Tensor, group_axis: int | None) -> torch.Tensor:
    """The four transformed copies of a filter bank, stacked on a new axis 1.

    w: (out, in, [4,] k, k). Copy g is w rotated by g quarter turns in its last two axes,
    with the input-orientation axis (``group_axis``; None for the lifting layer) rolled by
    g, so that copy[g][..., h, :, :] = rot^g(w[..., (h − g) mod 4, :, :]).
    """
    copies = []
    for g in range(GROUP):
        wg = w if group_axis is None else torch.roll(w, shifts=g, dims=group_axis)
        copies.append(torch.rot90(wg, g, dims=(-2, -1)))
    return torch.stack(copies, dim=1)


class LiftingConv(nn.Module):
    """Image (n, in, H, W) → group map (n, 4·out, H, W); 3×3, padding 1, no bias."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.in_channels, self.out_channels = c_in, c_out
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3) * math.sqrt(2 / (9 * c_in)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _rotations(self.weight, None)                        # (out, 4, in, 3, 3)
        return F.conv2d(x, w.reshape(self.out_channels * GROUP, self.in_channels, 3, 3),
                        padding=1)


class GroupConv(nn.Module):
    """Group map (n, 4·in, H, W) → (n, 4·out, H/stride, W/stride), kernel 1 or 3, no bias.

    The 1×1 weight is stored as (out, in, 4) and the 3×3 one as (out, in, 4, 3, 3), as in
    the Understanding-ESSL code. ``stride`` 2 max-pools 2×2 after the convolution.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        if kernel not in (1, 3) or stride not in (1, 2):
            raise ValueError(f"GroupConv: kernel must be 1 or 3 and stride 1 or 2, got "
                             f"{kernel}, {stride}")
        self.in_channels, self.out_channels = c_in, c_out
        self.kernel, self.stride = kernel, stride
        shape = (c_out, c_in, GROUP) + ((3, 3) if kernel == 3 else ())
        fan_in = GROUP * c_in * kernel * kernel
        self.weight = nn.Parameter(torch.randn(shape) * math.sqrt(2 / fan_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight if self.kernel == 3 else self.weight[..., None, None]
        w = _rotations(w, group_axis=2)                          # (out, 4, in, 4, k, k)
        w = w.reshape(self.out_channels * GROUP, self.in_channels * GROUP, self.kernel,
                      self.kernel)
        y = F.conv2d(x, w, padding=self.kernel // 2)
        return F.max_pool2d(y, 2, 2) if self.stride == 2 else y


class GroupBatchNorm(nn.Module):
    """BatchNorm3d over (n, c, 4, H, W): statistics shared by the four orientations."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.bn(x.reshape(n, c // GROUP, GROUP, h, w)).reshape(n, c, h, w)


class GroupMaxPool(nn.Module):
    """(n, 4·c, H, W) → (n, c, H, W): the maximum over orientations (rotation-invariant
    per position)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, c // GROUP, GROUP, h, w).amax(dim=2)


class P4BasicBlock(nn.Module):
    """Two 3×3 group convolutions with a residual connection (Understanding-ESSL
    ``C4Basic``). ``dropout`` sits after the first convolution, as there (0 by default)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.residual_function = nn.Sequential(
            GroupConv(c_in, c_out, 3, stride), nn.Dropout(dropout), GroupBatchNorm(c_out),
            nn.ReLU(inplace=True), GroupConv(c_out, c_out, 3), GroupBatchNorm(c_out))
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(GroupConv(c_in, c_out, 1, stride),
                                          GroupBatchNorm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.residual_function(x) + self.shortcut(x))


class P4ResNet(nn.Module):
    """p4-equivariant ResNet trunk: (n, C, H, W) → (n, 8w · 4 · 4) features (see module
    doc); ``widths`` = planes of ``conv2_x`` … ``conv5_x`` (group channels)."""

    def __init__(self, blocks=(2, 2, 2, 2), widths=(32, 64, 128, 256), in_channels: int = 3,
                 dropout: float = 0.0):
        super().__init__()
        c = widths[0]
        self.conv1 = nn.Sequential(LiftingConv(in_channels, c), GroupBatchNorm(c),
                                   nn.ReLU(inplace=True))
        for i, (n_blocks, planes) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n_blocks):
                layers.append(P4BasicBlock(c, planes, 2 if (i > 0 and j == 0) else 1,
                                           dropout))
                c = planes
            setattr(self, f"conv{i + 2}_x", nn.Sequential(*layers))
        self.stages = len(blocks)
        self.group_pool = GroupMaxPool()
        self.grid = nn.AdaptiveAvgPool2d(GRID)   # the identity for 32-px inputs
        self.channels = c
        self.feature_dim = c * GRID * GRID

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last group map before pooling over orientations: (n, 4·8w, H/8, W/8)."""
        x = self.conv1(x)
        for i in range(self.stages):
            x = getattr(self, f"conv{i + 2}_x")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.grid(self.group_pool(self.feature_map(x))), 1)


def rotate_group_map(y: torch.Tensor, k: int) -> torch.Tensor:
    """The action of a k-quarter-turn on a group map (n, 4c, H, W): rotate each map by k
    quarter turns and shift the orientation axis by k (``f(R^k x) = rotate_group_map(f(x),
    k)`` for every layer of ``P4ResNet``)."""
    n, c, h, w = y.shape
    y = torch.roll(y.reshape(n, c // GROUP, GROUP, h, w), shifts=k, dims=2)
    return torch.rot90(y, k, dims=(-2, -1)).reshape(n, c, h, w)


def rotate_features(z: torch.Tensor, k: int, grid: int = GRID) -> torch.Tensor:
    """The action of a k-quarter-turn on ``P4ResNet`` features (n, c·grid·grid): the grid
    of each channel rotates (a permutation of the coordinates)."""
    n, d = z.shape
    return torch.rot90(z.reshape(n, d // (grid * grid), grid, grid), k,
                       dims=(-2, -1)).reshape(n, d)


@register_backbone("p4_resnet18", default_width=32, head_width=2048,
                   summary="p4 (C4 rotation) equivariant ResNet-18, Understanding-ESSL "
                           "C4resnet18 layout (group convs, max-pool downsampling, group "
                           "max-pool, 4x4 grid); 4096-d features at w=32")
def _p4_resnet18(in_channels: int, width: int) -> P4ResNet:
    return P4ResNet((2, 2, 2, 2), [width * 2**i for i in range(4)], in_channels)


__all__ = ["GroupBatchNorm", "GroupConv", "GroupMaxPool", "LiftingConv", "P4BasicBlock",
           "P4ResNet", "rotate_features", "rotate_group_map"]
