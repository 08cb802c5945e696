"""The transformations whose label A an E-SSL head predicts (DESIGN §7).

Each `Transformation` has K = ``n_classes`` labels and a deterministic, batched
``apply(x, a)``: ``x`` is ``(n, C, H, W)`` float in [0, 1] on any device, ``a`` is ``(n,)``
int64 in ``0..K-1`` (rows may carry different labels), the result has the shape, dtype and
device of ``x``. No ``apply`` synchronises with the GPU except for the input check, and
none draws random numbers: the randomness of E-SSL is the uniform label A, drawn by the
caller (Dangovski et al., ICLR 2022; Wang et al., NeurIPS 2024).

Label conventions (label 0 is the identity unless said otherwise):

=============== ==== ===================================================================
name            K    label k
=============== ==== ===================================================================
rotation4       4    ``torch.rot90(x, k, dims=(-2, -1))``: k quarter turns
                     counter-clockwise (the top row moves to the left column). Square only.
hflip           2    1: mirror left-right (``flip(-1)``)
vflip           2    1: mirror top-bottom (``flip(-2)``)
invert          2    1: ``1 - x`` (colour inversion of [0, 1] images)
grayscale       2    1: luminance, ITU-R BT.601 weights (0.299, 0.587, 0.114) copied to the 3
                     channels; the channel mean for C not in (1, 3). On one channel the
                     image already is gray: label 1 is the identity, A is invisible.
jigsaw4         24   cut into 2x2 patches, numbered row-major (0 TL, 1 TR, 2 BL, 3 BR);
                     label k is the k-th permutation of (0, 1, 2, 3) in lexicographic order
                     (``itertools.permutations``); output patch j is input patch perm[j].
                     H and W must be even.
blur4           4    Gaussian blur, sigma = (0, 1, 2, 3)[k] pixels, replicate padding,
                     taps out to 3 * (largest sigma) pixels
rotate_angle    7    scale-valued: rotation by (0, 15, ..., 90)[k] degrees counter-clockwise
                     about the centre, bilinear, zeros outside
blur_sigma      7    scale-valued: Gaussian blur, sigma = (0, 0.5, ..., 3)[k] pixels
brightness      5    scale-valued: ``clamp(x * f, 0, 1)``, f = (0.5, 0.75, 1, 1.25, 1.5)[k]
=============== ==== ===================================================================

Scale-valued transformations carry ``strengths`` (label -> strength, increasing in the
label) for the order-preserving loss (our reading of Xie et al., CVPR-W 2022).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass(frozen=True)
class Transformation:
    """A family of K deterministic image transformations indexed by a label."""

    name: str
    n_classes: int  # K
    apply: Callable[[Tensor, Tensor], Tensor]  # (n,C,H,W), (n,) int64 -> (n,C,H,W)
    description: str
    label_convention: str
    scale_valued: bool = False
    strengths: tuple[float, ...] | None = None  # label -> strength (scale-valued only)
    # ``apply`` without the input checks, for callers whose labels are in range by
    # construction (``all_transformed``): the label-range check costs a GPU sync per call
    unchecked: Callable[[Tensor, Tensor], Tensor] | None = field(default=None, repr=False,
                                                                 compare=False)

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError(f"transformation {self.name!r}: n_classes must be >= 2")
        if self.scale_valued:
            s = self.strengths
            if s is None or len(s) != self.n_classes or list(s) != sorted(s):
                raise ValueError(f"transformation {self.name!r}: scale-valued needs "
                                 f"{self.n_classes} increasing strengths, got {s!r}")

    def __call__(self, x: Tensor, a: Tensor) -> Tensor:
        return self.apply(x, a)


TRANSFORMATIONS: dict[str, Transformation] = {}


def _checked(name: str, k: int, fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """Wrap ``fn`` with the input checks every transformation shares."""

    def apply(x: Tensor, a: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"{name}: x must be a floating (n, C, H, W) tensor, got "
                             f"{getattr(x, 'dtype', type(x).__name__)} of shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
        if not isinstance(a, Tensor) or a.shape != (x.shape[0],) or a.dtype.is_floating_point \
                or a.dtype == torch.bool:
            raise ValueError(f"{name}: a must be an integer tensor of shape ({x.shape[0]},), "
                             f"got {getattr(a, 'dtype', type(a).__name__)} of shape "
                             f"{tuple(getattr(a, 'shape', ()))}")
        if a.numel():
            lo, hi = (int(v) for v in torch.aminmax(a))  # one host sync, not two
            if lo < 0 or hi >= k:
                raise ValueError(f"{name}: labels must lie in 0..{k - 1}, got range "
                                 f"{lo}..{hi}")
        return fn(x, a.to(device=x.device, dtype=torch.int64))

    apply.__name__ = f"apply_{name}"
    apply.__doc__ = fn.__doc__
    return apply


def register_transformation(name: str, n_classes: int, description: str, label_convention: str,
                            *, strengths: Sequence[float] | None = None):
    """Decorator: register ``fn(x, a) -> x'`` as transformation ``name``."""

    def wrap(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        if name in TRANSFORMATIONS:
            raise ValueError(f"transformation {name!r} is already registered")
        TRANSFORMATIONS[name] = Transformation(
            name, n_classes, _checked(name, n_classes, fn), description, label_convention,
            scale_valued=strengths is not None,
            strengths=None if strengths is None else tuple(float(s) for s in strengths),
            unchecked=fn)
        return fn

    return wrap


def _select(a: Tensor, k: int, when: Tensor, otherwise: Tensor) -> Tensor:
    """Rows with label ``k`` from ``when``, the others from ``otherwise`` (no GPU sync)."""
    return torch.where((a == k).view(-1, 1, 1, 1), when, otherwise)


# ---------------------------------------------------------------------------------------
# Group-valued transformations
# ---------------------------------------------------------------------------------------


@register_transformation("rotation4", 4, "rotation by multiples of 90 degrees",
                         "k -> torch.rot90(x, k, dims=(-2, -1)) (k quarter turns "
                         "counter-clockwise)")
def rotation4(x: Tensor, a: Tensor) -> Tensor:
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation4: images must be square, got H, W = {tuple(x.shape[-2:])}")
    out = x
    for k in range(1, 4):
        out = _select(a, k, torch.rot90(x, k, dims=(-2, -1)), out)
    return out.contiguous()


@register_transformation("hflip", 2, "horizontal flip", "0 identity, 1 -> x.flip(-1)")
def hflip(x: Tensor, a: Tensor) -> Tensor:
    return _select(a, 1, x.flip(-1), x)


@register_transformation("vflip", 2, "vertical flip", "0 identity, 1 -> x.flip(-2)")
def vflip(x: Tensor, a: Tensor) -> Tensor:
    return _select(a, 1, x.flip(-2), x)


@register_transformation("invert", 2, "colour inversion", "0 identity, 1 -> 1 - x")
def invert(x: Tensor, a: Tensor) -> Tensor:
    return _select(a, 1, 1.0 - x, x)


def to_grayscale(x: Tensor) -> Tensor:
    """Luminance of ``(n, C, H, W)`` images copied to every channel: BT.601 weights for
    C = 3, the channel mean otherwise (the identity for C = 1)."""
    c = x.shape[1]
    if c == 1:
        return x
    if c == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
        lum = (x * w.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    else:
        lum = x.mean(dim=1, keepdim=True)
    return lum.expand_as(x)


@register_transformation("grayscale", 2, "conversion to gray (identity on 1 channel)",
                         "0 identity, 1 -> BT.601 luminance on every channel")
def grayscale(x: Tensor, a: Tensor) -> Tensor:
    return _select(a, 1, to_grayscale(x), x)


JIGSAW_PERMUTATIONS: tuple[tuple[int, ...], ...] = tuple(itertools.permutations(range(4)))


@register_transformation("jigsaw4", 24, "permutation of the 2x2 image quadrants",
                         "k -> k-th lexicographic permutation p of (0,1,2,3); output "
                         "quadrant j (row-major) = input quadrant p[j]")
def jigsaw4(x: Tensor, a: Tensor) -> Tensor:
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"jigsaw4: H and W must be even, got {h}, {w}")
    # (n, C, 2, h/2, 2, w/2) -> (n, 4, C, h/2, w/2), quadrants row-major
    patches = x.reshape(n, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(n, 4, c, h // 2, w // 2)
    perm = torch.tensor(JIGSAW_PERMUTATIONS, device=x.device)[a]  # (n, 4)
    rows = torch.arange(n, device=x.device).view(-1, 1)
    out = patches[rows, perm]  # (n, 4, C, h/2, w/2)
    out = out.reshape(n, 2, 2, c, h // 2, w // 2).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(n, c, h, w).contiguous()


# ---------------------------------------------------------------------------------------
# Blur (exact per row: shifted weighted sums, so batched == one row at a time, bit for bit)
# ---------------------------------------------------------------------------------------


def gaussian_taps(sigmas: Tensor, radius: int) -> Tensor:
    """``(n, 2*radius+1)`` normalised Gaussian taps per row; sigma 0 gives the delta."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=sigmas.device)
    s = sigmas.to(torch.float64).view(-1, 1)
    logits = -0.5 * (offsets.view(1, -1) / s.clamp_min(1e-12)) ** 2
    taps = torch.softmax(logits, dim=1)
    delta = (offsets == 0).to(torch.float64).expand_as(taps)
    return torch.where(s > 0, taps, delta)


def blur_radius(max_sigma: float) -> int:
    """Kernel radius ceil(3 * max_sigma) pixels (at least 1)."""
    return max(1, math.ceil(3.0 * float(max_sigma)))


def gaussian_blur(x: Tensor, sigmas: Tensor, radius: int) -> Tensor:
    """Separable Gaussian blur of ``(n, C, H, W)`` with per-row ``sigmas`` ``(n,)`` in pixels,
    taps ``-radius..radius``, replicate padding. ``radius`` is fixed by the caller (not by
    the batch), so a row's result does not depend on the other rows."""
    taps = gaussian_taps(sigmas, radius).to(x.dtype)  # (n, 2r+1)
    out = x
    for dim in (-1, -2):
        pad = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
        padded = F.pad(out, pad, mode="replicate")
        size = out.shape[dim]
        acc = torch.zeros_like(out)
        for j in range(2 * radius + 1):
            acc.addcmul_(taps[:, j].view(-1, 1, 1, 1), padded.narrow(dim, j, size))
        out = acc
    return out


BLUR4_SIGMAS = (0.0, 1.0, 2.0, 3.0)


@register_transformation("blur4", 4, "Gaussian blur at 4 fixed strengths",
                         f"k -> Gaussian blur with sigma {BLUR4_SIGMAS}[k] pixels")
def blur4(x: Tensor, a: Tensor) -> Tensor:
    table = torch.tensor(BLUR4_SIGMAS, device=x.device)
    return _select(a, 0, x, gaussian_blur(x, table[a], blur_radius(max(BLUR4_SIGMAS))))


# ---------------------------------------------------------------------------------------
# Scale-valued transformations (for the order-preserving loss)
# ---------------------------------------------------------------------------------------

ROTATE_DEGREES = (0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0)


def rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate ``(n, C, H, W)`` by per-row ``degrees`` ``(n,)`` counter-clockwise (the sense
    of ``torch.rot90``) about the image centre; bilinear, zeros outside."""
    t = torch.deg2rad(degrees.to(torch.float64))
    cos, sin = torch.cos(t), torch.sin(t)
    # affine_grid maps output (x right, y down) to input coordinates: a counter-clockwise
    # turn of the picture samples the input at the clockwise-turned output position.
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(t)], -1),
                         torch.stack([sin, cos, torch.zeros_like(t)], -1)], 1)  # (n, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@register_transformation("rotate_angle", len(ROTATE_DEGREES), "rotation by a continuous angle",
                         f"k -> rotation by {ROTATE_DEGREES}[k] degrees counter-clockwise",
                         strengths=ROTATE_DEGREES)
def rotate_angle(x: Tensor, a: Tensor) -> Tensor:
    table = torch.tensor(ROTATE_DEGREES, device=x.device)
    return _select(a, 0, x, rotate(x, table[a]))


BLUR_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


@register_transformation("blur_sigma", len(BLUR_SIGMAS), "Gaussian blur of increasing sigma",
                         f"k -> Gaussian blur with sigma {BLUR_SIGMAS}[k] pixels",
                         strengths=BLUR_SIGMAS)
def blur_sigma(x: Tensor, a: Tensor) -> Tensor:
    table = torch.tensor(BLUR_SIGMAS, device=x.device)
    return _select(a, 0, x, gaussian_blur(x, table[a], blur_radius(max(BLUR_SIGMAS))))


BRIGHTNESS_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5)


@register_transformation("brightness", len(BRIGHTNESS_FACTORS), "brightness scaling",
                         f"k -> clamp(x * {BRIGHTNESS_FACTORS}[k], 0, 1) (label 2 is the "
                         "identity)", strengths=BRIGHTNESS_FACTORS)
def brightness(x: Tensor, a: Tensor) -> Tensor:
    table = torch.tensor(BRIGHTNESS_FACTORS, dtype=x.dtype, device=x.device)
    return (x * table[a].view(-1, 1, 1, 1)).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------
# Look-up and expansion
# ---------------------------------------------------------------------------------------


def get_transformation(name: str) -> Transformation:
    """The registered transformation ``name``; ValueError listing the known names."""
    try:
        return TRANSFORMATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown transformation {name!r}; known: "
                         f"{', '.join(TRANSFORMATIONS)}") from None


def parse_transformations(spec: str | Iterable[str | Transformation]) -> list[Transformation]:
    """``"rotation4,hflip"`` (or a list of names and/or ``Transformation`` objects, which
    pass through) -> the transformations, in order; empty or repeated entries are errors."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    given = {t.name: t for t in items if isinstance(t, Transformation)}
    names = [t.name if isinstance(t, Transformation) else str(t).strip() for t in items]
    if not names or any(not n for n in names):
        raise ValueError(f"transformations must be a comma-separated list of names, got {spec!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"transformation(s) listed twice: {', '.join(dup)}")
    return [given[n] if n in given else get_transformation(n) for n in names]


def all_transformed(x: Tensor, t: Transformation) -> tuple[Tensor, Tensor, Tensor]:
    """Every image of ``x`` ``(n, C, H, W)`` under every label of ``t``, label-major.

    Returns ``(x_all (n*K, C, H, W), a (n*K,) int64, image_index (n*K,) int64)`` with row
    ``j = a * n + i`` holding ``t.apply`` of image ``i`` under label ``a``.
    """
    n, k = x.shape[0], t.n_classes
    a = torch.arange(k, device=x.device).repeat_interleave(n)
    image_index = torch.arange(n, device=x.device).repeat(k)
    x_all = (t.unchecked or t.apply)(x.repeat(k, 1, 1, 1), a)  # labels in range by construction
    return x_all, a, image_index


def sampled_transformed(x: Tensor, t: Transformation, m: int,
                        generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Every image of ``x`` ``(n, C, H, W)`` under ``m`` of the K labels of ``t``, drawn
    without replacement per image from ``generator`` (on x's device), slot-major: row
    ``j = s * n + i`` holds image ``i`` under its s-th label. ``m >= K`` is
    :func:`all_transformed` (no draw). For label sets too large to carry whole in a
    training batch (jigsaw4: K = 24), as the rank predictors do per epoch.

    Returns ``(x_sel (n*m, C, H, W), a (n*m,) int64, image_index (n*m,) int64)``.
    """
    n, k = x.shape[0], t.n_classes
    if m >= k:
        return all_transformed(x, t)
    keys = torch.rand(n, k, generator=generator, device=x.device)
    labels = keys.argsort(dim=1)[:, :m]                      # (n, m) distinct labels
    a = labels.t().reshape(-1)                               # slot-major
    image_index = torch.arange(n, device=x.device).repeat(m)
    x_sel = (t.unchecked or t.apply)(x.repeat(m, 1, 1, 1), a)  # labels in range
    return x_sel, a, image_index
