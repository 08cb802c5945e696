"""Batched random augmentations in plain torch (no torchvision), on the images' device.

Each augmentation is a function ``f(x, *, generator, **options) -> x'`` of ``(n, C, H, W)``
float images in [0, 1]; every row draws its own parameters from ``generator`` (a
``torch.Generator`` on ``x.device``), so one call augments a whole batch without leaving
the GPU, and the same generator state gives the same output. The global RNG is never used.

Presets (`AUGMENT_PRESETS`) compose them as data; ``"simclr"`` follows the CIFAR recipe of
SimCLR (Chen et al., ICML 2020) as used by E-SSL (Dangovski et al., ICLR 2022): random
resized crop (scale 0.08-1, ratio 3/4-4/3), horizontal flip (p 0.5), colour jitter
(0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale with p 0.2. Differences from torchvision: crop
boxes are continuous (not rounded to whole pixels) and resampled bilinearly without
antialiasing; the jitter ops run in a fixed order (brightness, contrast, saturation, hue)
instead of a random one. On one channel, saturation, hue and grayscale are the identity,
and brightness and contrast act on the intensity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .datasets import resize
from .transformations import blur_radius, gaussian_blur, to_grayscale

Tensor = torch.Tensor


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator, device) -> Tensor:
    """``(n,)`` float32 draws from U[lo, hi)."""
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)


def _coin(n: int, p: float, generator: torch.Generator, device) -> Tensor:
    """``(n,)`` bool, each True with probability ``p``."""
    return torch.rand(n, generator=generator, device=device) < p


def _check(x: Tensor, generator: torch.Generator, who: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"{who}: x must be a floating (n, C, H, W) tensor, got "
                         f"{getattr(x, 'dtype', type(x).__name__)} of shape "
                         f"{tuple(getattr(x, 'shape', ()))}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"{who}: generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(f"{who}: generator is on {generator.device}, images on {x.device}")


# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------


def crop_boxes(n: int, height: int, width: int, *, scale: tuple[float, float],
               ratio: tuple[float, float], generator: torch.Generator, device,
               attempts: int = 10) -> Tensor:
    """``(n, 4)`` crop boxes ``(x0, y0, w, h)`` in pixels, sampled as torchvision's
    RandomResizedCrop: area fraction ~ U(scale), log aspect ratio ~ U(log ratio); the first
    of ``attempts`` draws that fits wins, else a centre crop with the ratio clamped."""
    area = float(height * width)
    s = _uniform(n * attempts, scale[0], scale[1], generator, device).view(n, attempts)
    logr = _uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), generator,
                    device).view(n, attempts)
    r = torch.exp(logr)
    w = torch.sqrt(s * area * r)
    h = torch.sqrt(s * area / r)
    ok = (w <= width) & (h <= height) & (w > 0) & (h > 0)
    first = torch.argmax(ok.to(torch.int8), dim=1)  # first fitting attempt (0 if none)
    rows = torch.arange(n, device=device)
    w, h, found = w[rows, first], h[rows, first], ok.any(dim=1)
    # fallback: the whole image, cropped to the nearest allowed aspect ratio
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], float(height)
    else:
        fw, fh = float(width), float(height)
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    u = torch.rand(n, 2, generator=generator, device=device)
    x0 = torch.where(found, u[:, 0] * (width - w), (width - w) / 2)
    y0 = torch.where(found, u[:, 1] * (height - h), (height - h) / 2)
    return torch.stack([x0, y0, w, h], dim=1)


def crop_resize(x: Tensor, boxes: Tensor, out_size: int) -> Tensor:
    """Resample the boxes ``(n, 4)`` = ``(x0, y0, w, h)`` pixels of ``x`` to
    ``(n, C, out_size, out_size)``, bilinear (edges replicated)."""
    n, _, height, width = x.shape
    x0, y0, w, h = boxes.to(torch.float32).unbind(1)
    # affine_grid's normalised coordinates: -1 .. 1 spans the full image edges
    theta = torch.zeros(n, 2, 3, dtype=torch.float32, device=x.device)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    grid = F.affine_grid(theta.to(x.dtype), [n, x.shape[1], out_size, out_size],
                         align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop(x: Tensor, out_size: int, *, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        generator: torch.Generator) -> Tensor:
    """Random crop of area fraction ``scale`` and aspect ``ratio`` per row, resized to
    ``out_size`` (Szegedy et al. 2015's "Inception crop", as in SimCLR)."""
    _check(x, generator, "random_resized_crop")
    if not (0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"random_resized_crop: scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"random_resized_crop: ratio must satisfy 0 < lo <= hi, got {ratio}")
    if int(out_size) < 1:
        raise ValueError(f"random_resized_crop: out_size must be positive, got {out_size}")
    boxes = crop_boxes(x.shape[0], x.shape[2], x.shape[3], scale=scale, ratio=ratio,
                       generator=generator, device=x.device)
    return crop_resize(x, boxes, int(out_size))


def random_hflip(x: Tensor, *, p: float = 0.5, generator: torch.Generator) -> Tensor:
    """Mirror each row left-right with probability ``p``."""
    flip = _coin(x.shape[0], p, generator, x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


# ---------------------------------------------------------------------------------------
# Colour
# ---------------------------------------------------------------------------------------


def rgb_to_hsv(x: Tensor) -> Tensor:
    """``(n, 3, H, W)`` RGB in [0, 1] -> HSV, hue in turns [0, 1) (as ``colorsys``)."""
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), 0.0)
    d = torch.where(delta > 0, delta, torch.ones_like(delta))  # gray: every branch gives 0
    h = torch.where(maxc == r, (g - b) / d, torch.where(maxc == g, 2.0 + (b - r) / d,
                                                          4.0 + (r - g) / d))
    return torch.stack([(h / 6.0) % 1.0, s, maxc], dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """Inverse of `rgb_to_hsv`: channel j = v - v s clamp(min(k, 4 - k), 0, 1) with
    k = (n_j + 6 h) mod 6, n = (5, 3, 1) for (R, G, B)."""
    h, s, v = x[:, :1], x[:, 1:2], x[:, 2:]
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = (offsets + 6.0 * h) % 6.0
    t = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return v - v * s * t


def _per_row(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def color_jitter(x: Tensor, *, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.1, p: float = 0.8,
                 generator: torch.Generator) -> Tensor:
    """With probability ``p`` per row: brightness factor ~ U[1-b, 1+b], contrast factor
    ~ U[1-c, 1+c] (blend with the mean gray level), saturation factor ~ U[1-s, 1+s] (blend
    with the gray image), hue shift ~ U[-hue, hue] turns; clamped to [0, 1]. Saturation and
    hue only act on 3 channels."""
    n, c = x.shape[:2]
    dev = x.device
    apply = _per_row(_coin(n, p, generator, dev))
    fb = _per_row(_uniform(n, 1 - brightness, 1 + brightness, generator, dev)).to(x.dtype)
    fc = _per_row(_uniform(n, 1 - contrast, 1 + contrast, generator, dev)).to(x.dtype)
    fs = _per_row(_uniform(n, 1 - saturation, 1 + saturation, generator, dev)).to(x.dtype)
    dh = _per_row(_uniform(n, -hue, hue, generator, dev)).to(x.dtype)
    y = (x * fb).clamp(0, 1)
    mean = to_grayscale(y)[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * fc + mean).clamp(0, 1)
    if c == 3:
        gray = to_grayscale(y)
        y = ((y - gray) * fs + gray).clamp(0, 1)
        if hue > 0:
            hsv = rgb_to_hsv(y)
            hsv = torch.cat([(hsv[:, :1] + dh) % 1.0, hsv[:, 1:]], dim=1)
            y = hsv_to_rgb(hsv).clamp(0, 1)
    return torch.where(apply, y, x)


def random_grayscale(x: Tensor, *, p: float = 0.2, generator: torch.Generator) -> Tensor:
    """Convert each row to gray with probability ``p`` (identity on one channel)."""
    gray = _per_row(_coin(x.shape[0], p, generator, x.device))
    return torch.where(gray, to_grayscale(x), x)


def random_blur(x: Tensor, *, p: float = 0.5, sigma: tuple[float, float] = (0.1, 2.0),
                generator: torch.Generator) -> Tensor:
    """Gaussian blur with sigma ~ U(sigma) pixels, with probability ``p`` per row."""
    n = x.shape[0]
    on = _coin(n, p, generator, x.device)
    s = _uniform(n, sigma[0], sigma[1], generator, x.device)
    return gaussian_blur(x, torch.where(on, s, torch.zeros_like(s)), blur_radius(sigma[1]))


# ---------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentPreset:
    """An ordered pipeline: ``steps`` are ``(function, options)``; ``crops`` says whether
    the first step is a crop that takes ``out_size``."""

    name: str
    steps: tuple[tuple[Callable[..., Tensor], dict], ...] = field(default_factory=tuple)
    crops: bool = False
    description: str = ""


SIMCLR_JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8)

AUGMENT_PRESETS: dict[str, AugmentPreset] = {
    p.name: p for p in (
        AugmentPreset("none", (), False, "no augmentation (resize only, if out_size differs)"),
        AugmentPreset("crop", ((random_resized_crop, {"scale": (0.08, 1.0)}),), True,
                      "random resized crop only (Wang et al. 2024, Fig. 1: crops alone, so "
                      "no augmentation overlaps a predicted transformation)"),
        AugmentPreset("crop_flip", ((random_resized_crop, {"scale": (0.08, 1.0)}),
                                    (random_hflip, {"p": 0.5})), True,
                      "random resized crop + horizontal flip"),
        AugmentPreset("simclr", ((random_resized_crop, {"scale": (0.08, 1.0)}),
                                 (random_hflip, {"p": 0.5}),
                                 (color_jitter, SIMCLR_JITTER),
                                 (random_grayscale, {"p": 0.2})), True,
                      "SimCLR CIFAR recipe: crop, flip, colour jitter 0.8, grayscale 0.2"),
        AugmentPreset("simclr_blur", ((random_resized_crop, {"scale": (0.08, 1.0)}),
                                      (random_hflip, {"p": 0.5}),
                                      (color_jitter, SIMCLR_JITTER),
                                      (random_grayscale, {"p": 0.2}),
                                      (random_blur, {"p": 0.5})), True,
                      "SimCLR ImageNet recipe: simclr + Gaussian blur 0.5"),
        # The digits recipe: on 8x8 digits an 8 % crop keeps a stroke or two, and digits are
        # not mirror-symmetric. With this preset a 15-epoch run reached kNN 0.89 / linear
        # probe 0.98 / rotation 0.84 against 0.86 / 0.97 / 0.55 after 30 epochs of "simclr"
        # (seed 0, small_cnn).
        AugmentPreset("crop_jitter", ((random_resized_crop, {"scale": (0.25, 1.0)}),
                                      (color_jitter, SIMCLR_JITTER),
                                      (random_grayscale, {"p": 0.2})), True,
                      "random resized crop (scale 0.25-1) + colour jitter 0.8 + grayscale "
                      "0.2, no flip: small images of classes that are not mirror-symmetric "
                      "(digits, glyphs)"),
    )
}


def augment(x: Tensor, preset: str, *, generator: torch.Generator,
            out_size: int | None = None) -> Tensor:
    """Augment the batch ``x`` ``(n, C, H, W)`` with preset ``preset``; the result is
    ``(n, C, out_size, out_size)`` (``out_size`` defaults to ``W``) on ``x.device``."""
    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; known: "
                         f"{', '.join(AUGMENT_PRESETS)}")
    _check(x, generator, "augment")
    size = int(x.shape[-1] if out_size is None else out_size)
    if size < 1:
        raise ValueError(f"augment: out_size must be positive, got {out_size}")
    spec = AUGMENT_PRESETS[preset]
    for i, (fn, opts) in enumerate(spec.steps):
        if i == 0 and spec.crops:
            x = fn(x, size, generator=generator, **opts)
        else:
            x = fn(x, generator=generator, **opts)
    return resize(x, size)
