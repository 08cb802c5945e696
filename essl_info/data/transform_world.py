"""``transform-world``: a procedural testbed in which each of the seven transformations
of ``rank_transforms`` plays a different role, with its information known exactly where
the construction allows (the CPU testbed of the theory test, issue 9).

The generative story (the explaining-away setting of Wang et al., NeurIPS 2024):

- class C ~ uniform on ``m`` classes (2 ≤ m ≤ 8);
- shape Q = C with probability 1 - delta, else one of the other m - 1 shapes uniformly:
  the class is seen through the glyph's *shape*; every shape is mirror-symmetric
  (left-right) and its four quarter turns differ from each other and from every turn of
  every other shape;
- orientation Abar ∈ {0 (up), 2 (down)}: the class's canonical one phi(c) = 2·(c mod 2)
  with probability 1 - eps, else the other;
- colour K ~ uniform on ``COLOURS`` (saturated, never gray), independent of the rest;
- corner marks present with probability ``j``: a white block in each image corner.

Rendering (S = ``image_size`` ≥ 16, even; k = S // 16): background level ~ U[0, 0.1]
per image, pixel noise ~ U[-0.02, 0.02] per pixel and channel, the 6k-pixel glyph in its
colour at a uniform position inside a 2k-pixel frame that it never enters, and the k×k
marks in the corners (inside the frame).

The roles (what ``rank_transforms`` should read, what E-SSL should learn):

=========== =================== ======================================================
rotation4   synergistic         the turn is ambiguous between o and o + 2 from the image
                                alone; the class (canonical orientation) resolves it
vflip       synergistic         the same for the half turn (a mirror-symmetric glyph
                                flipped top-bottom is the glyph turned by 180°)
hflip       uninformative       mirror-symmetric shapes, positions, noise and marks:
                                the flipped image is distributed as the original
invert      lossless/shortcut   a dark background turns light
grayscale   lossless/shortcut   the glyph's colour (and the per-channel noise) turn gray
jigsaw4     lossless/shortcut   the corner marks end up inside the image, where each
                                shows which quadrant moved where (exact when j = 1)
blur4       shortcut (inexact)  the pixel noise and the sharp marks are smoothed by a
                                known amount; not enumerable, so no exact values
=========== =================== ======================================================

``exact_information(transform, m, eps, delta, j)`` enumerates (A, C, visible content) for
the first six (jigsaw4 only when j = 1, where its label is read from the marks) and
returns the quantities in nats. ``ImageDataset.latents``: ``"shape"``, ``"orientation"``,
``"colour"``, ``"marks"`` (1 present, 0 absent), each ``(n,)`` int64; ``labels`` are C.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import torch

from ..errors import DataError
from .datasets import ImageDataset, base_params, channel_stats, register_dataset
from .rotation_world import information_from_joint

# 6x6 glyphs, each mirror-symmetric left-right (column j equals column 5 - j)
SHAPES: tuple[tuple[str, ...], ...] = (
    ("..##..", ".####.", "######", "..##..", "..##..", "..##.."),   # arrow
    ("######", "######", "..##..", "..##..", "..##..", "..##.."),   # T
    ("..##..", ".####.", "######", "######", "######", "######"),   # house
    ("#....#", "#....#", "#....#", "##..##", ".####.", "..##.."),   # cup
    ("#....#", "##..##", ".####.", "..##..", "..##..", "..##.."),   # Y
    ("..##..", ".#..#.", "#....#", "######", "#....#", "#....#"),   # A
    ("######", ".#..#.", ".#..#.", ".#..#.", ".#..#.", ".#..#."),   # table
    ("..##..", "######", "######", "..##..", "..##..", "..##.."),   # Latin cross
)
MAX_CLASSES = len(SHAPES)
COLOURS: tuple[tuple[float, float, float], ...] = (
    (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1),
    (1, .5, 0), (.5, 1, 0), (0, 1, .5), (0, .5, 1), (.5, 0, 1), (1, 0, .5),
)
GLYPH = 6          # glyph side in units of k = S // 16
FRAME = 2          # frame width (units of k) the glyph never enters
NOISE = 0.02
MIN_IMAGE_SIZE = 16  # the glyph, frame and corner marks in units of k = S // 16
BACKGROUND_MAX = 0.1
EXACT = ("rotation4", "vflip", "hflip", "invert", "grayscale", "jigsaw4")


def shape_mask(q: int, scale: int = 1) -> np.ndarray:
    """``(6·scale, 6·scale)`` bool mask of shape ``q`` pointing up."""
    base = np.array([[ch == "#" for ch in row] for row in SHAPES[q]])
    return np.kron(base, np.ones((scale, scale), dtype=bool)).astype(bool)


def _check_knobs(m, eps, delta, j) -> None:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 2 <= m <= MAX_CLASSES:
        raise DataError(f"transform-world: m must be an integer in 2..{MAX_CLASSES}, got {m!r}")
    for name, v in (("eps", eps), ("delta", delta), ("j", j)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                or not 0.0 <= float(v) <= 1.0:
            raise DataError(f"transform-world: {name} must be a probability in [0, 1], "
                            f"got {v!r}")


# ---------------------------------------------------------------------------------------
# Exact information by enumeration
# ---------------------------------------------------------------------------------------

def _visible(transform: str, q: int, o: int, mark: int, a: int) -> tuple:
    """What the image shows after ``transform`` with label ``a`` (colour, position and
    noise are independent of A and C and distributed symmetrically, so they drop out)."""
    if transform == "rotation4":
        return (q, (o + a) % 4, mark)
    if transform == "vflip":      # LR-symmetric glyph flipped top-bottom = turned 180°
        return (q, (o + 2 * a) % 4, mark)
    if transform == "hflip":      # everything mirror-symmetric: nothing changes
        return (q, o, mark)
    if transform in ("invert", "grayscale"):
        return (q, o, mark, a)    # light background / equal channels show a
    if transform == "jigsaw4":
        return (q, o, mark, a)    # marks present (j = 1): the permutation is read off
    raise AssertionError(transform)  # pragma: no cover


def joint_distribution(transform: str, m: int, eps: float, delta: float,
                       j: float = 1.0) -> dict[tuple, float]:
    """P(A, C, X) with A uniform on the transformation's labels, independent of the image,
    and X the visible content of the transformed image (``_visible``)."""
    _check_knobs(m, eps, delta, j)
    if transform not in EXACT or (transform == "jigsaw4" and j < 1):
        raise ValueError(f"transform-world: the information of {transform!r} is not known "
                         f"exactly" + (" unless j = 1" if transform == "jigsaw4" else "")
                         + f"; exact for {', '.join(EXACT)}")
    k = {"rotation4": 4, "jigsaw4": 24}.get(transform, 2)
    joint: dict[tuple, float] = defaultdict(float)
    for c, q, o, mark, a in itertools.product(range(m), range(m), (0, 2), (0, 1), range(k)):
        p_q = 1 - delta if q == c else delta / (m - 1)
        p_o = 1 - eps if o == 2 * (c % 2) else eps
        p_mark = j if mark else 1 - j
        p = p_q * p_o * p_mark / (m * k)
        if p > 0:
            joint[(a, c, _visible(transform, q, o, mark, a))] += p
    return dict(joint)


def exact_information(transform: str, m: int = 8, eps: float = 0.1, delta: float = 0.2,
                      j: float = 1.0) -> dict[str, float]:
    """Information quantities of ``transform`` on transform-world, in nats, by exact
    enumeration: ``"I(A;C)"`` (0), ``"I(A;X)"``, ``"I(A;X|C)"``, ``"I(A;C|X)"``,
    ``"H(A|X)"``, ``"H(C|X)"``, ``"H(A)"``, ``"H(C)"``, ``"I(C;X)"``. ValueError for a
    transformation whose values are not known exactly (blur4; jigsaw4 with j < 1)."""
    return information_from_joint(joint_distribution(transform, m, eps, delta, j))


# ---------------------------------------------------------------------------------------
# Sampling and rendering
# ---------------------------------------------------------------------------------------

def sample_latents(n: int, m: int, eps: float, delta: float, j: float,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` draws of (class, shape, orientation, colour, marks) as int64 arrays."""
    c = rng.integers(0, m, n)
    other = rng.random(n) < delta
    q = np.where(other, (c + rng.integers(1, m, n)) % m, c)   # uniform over the other m-1
    wrong = rng.random(n) < eps
    o = np.where(wrong, 2 - 2 * (c % 2), 2 * (c % 2))
    colour = rng.integers(0, len(COLOURS), n)
    marks = (rng.random(n) < j).astype(np.int64)
    return {"class": c.astype(np.int64), "shape": q.astype(np.int64),
            "orientation": o.astype(np.int64), "colour": colour.astype(np.int64),
            "marks": marks}


def render(latents: dict[str, np.ndarray], image_size: int, rng: np.random.Generator, *,
           noise: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """``(n, 3, S, S)`` float32 images of ``latents`` and the glyphs' top-left corners
    ``(n, 2)``; ``noise=False`` draws neither background level nor pixel noise (tests)."""
    size = int(image_size)
    k = size // 16
    n = len(latents["shape"])
    p, f = GLYPH * k, FRAME * k
    if noise:
        img = rng.uniform(0.0, BACKGROUND_MAX, (n, 1, 1, 1)) + rng.uniform(
            -NOISE, NOISE, (n, 3, size, size))
    else:
        img = np.zeros((n, 3, size, size))
    corners = rng.integers(f, size - f - p + 1, (n, 2))
    masks = {(q, o): np.rot90(shape_mask(q, k), o // 1).copy() for q in range(MAX_CLASSES)
             for o in (0, 2)}
    colours = np.asarray(COLOURS)
    for i in range(n):
        r, c = corners[i]
        mask = masks[(int(latents["shape"][i]), int(latents["orientation"][i]))]
        region = img[i, :, r:r + p, c:c + p]
        colour = colours[latents["colour"][i]][:, None, None]
        if noise:
            colour = colour + rng.uniform(-NOISE, NOISE, region.shape)
        img[i, :, r:r + p, c:c + p] = np.where(mask[None], colour, region)
        if latents["marks"][i]:
            for rr, cc in ((0, 0), (0, size - k), (size - k, 0), (size - k, size - k)):
                img[i, :, rr:rr + k, cc:cc + k] = 1.0
    return torch.from_numpy(np.clip(img, 0.0, 1.0).astype(np.float32)), corners


@register_dataset("transform-world", description="procedural glyphs in which each of the "
                  "seven transformations plays a different role (synergy, symmetry, "
                  "shortcuts); information known exactly", default_image_size=16,
                  min_image_size=MIN_IMAGE_SIZE)
def load_transform_world(*, split: str, data_dir: str | None, image_size: int, seed: int,
                         download: bool, m: int = 8, eps: float = 0.1, delta: float = 0.2,
                         j: float = 1.0, n_images: int = 2048,
                         n_test: int = 512) -> ImageDataset:
    """Train split: ``n_images`` images; test split: ``n_test``; each a fixed function of
    ``seed`` (independent streams)."""
    _check_knobs(m, eps, delta, j)
    if image_size < MIN_IMAGE_SIZE or image_size % 2:
        raise DataError(f"transform-world: image_size must be even and >= {MIN_IMAGE_SIZE}, "
                        f"got {image_size}")
    for name, v in (("n_images", n_images), ("n_test", n_test)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DataError(f"transform-world: {name} must be a positive integer, got {v!r}")

    def make(which: str, n: int):
        rng = np.random.default_rng([seed, 0 if which == "train" else 1, 7])
        lat = sample_latents(int(n), int(m), float(eps), float(delta), float(j), rng)
        return render(lat, image_size, rng)[0], lat

    train_x, train_lat = make("train", n_images)
    mean, std = channel_stats(train_x)
    x, lat = (train_x, train_lat) if split == "train" else make("test", n_test)
    params = base_params("transform-world", split=split, image_size=image_size, seed=seed,
                         data_dir=data_dir, m=int(m), eps=float(eps), delta=float(delta),
                         j=float(j), n_images=int(n_images), n_test=int(n_test))
    latents = {key: torch.from_numpy(lat[key]) for key in
               ("shape", "orientation", "colour", "marks")}
    return ImageDataset("transform-world", x, torch.from_numpy(lat["class"]), int(m), split,
                        mean, std, params, latents)
