"""``rotation-world``: procedural images whose transformation information is known exactly.

The generative story (issue 4; the explaining-away setting of Wang et al., NeurIPS 2024):

- class C ~ uniform on ``m`` classes; its canonical orientation is phi(c) = c mod 4;
- intrinsic orientation Abar = phi(C) with probability 1 - eps, each of the 3 others with
  probability eps / 3;
- class cue Q = C with probability 1 - delta, else one of the other m - 1 classes uniformly;
- lighting shortcut L present with probability s: a brightness ramp that points up
  (brighter at the top) in the raw image.

Rendering (``image_size`` S >= 16, 3 channels, float32 in [0, 1]):

- an arrow glyph of side p = 2 * round(3S / 16) pixels (12 at S = 32), pointing "up" at
  Abar = 0 and drawn as ``torch.rot90(arrow, Abar)`` otherwise; its 4 quarter turns are
  distinct masks, so its orientation is unambiguous;
- the glyph's colour is the cue: ``PALETTE[Q]``, colours with channel levels {0, 0.5, 1}
  and at least one channel at 1 (19 colours, so m <= 19); colour survives ``rot90``;
- the ramp ``0.3 * (S - 1 - row) / (S - 1)`` on the background when L is present;
- nuisance that never hides them: a per-image background level ~ U[0, 0.1], pixel noise
  ~ U[-0.02, 0.02] everywhere, and the glyph's position uniform inside the image minus a
  3-pixel frame. The frame is never covered, so the ramp is read there.

Directions follow ``torch.rot90`` (counter-clockwise): 0 up, 1 left, 2 down, 3 right.
After ``rotation4`` with label A (``torch.rot90(x, A, dims=(-2, -1))``) the image shows
exactly (orientation (Abar + A) mod 4, cue Q, shortcut direction A or none): the arrow
mask turns with the image, the colour does not change and the ramp turns to point A.
`decode` reads these three back from pixels by exact template matching and bounded-noise
margins (ramp difference >= 0.24 against noise <= 0.04; glyph channels within 0.02 of
their level); the tests check it on rendered and rotated images, which is what makes
`exact_information`, an enumeration over the visible content, the truth for the images.

``ImageDataset.latents``: ``"orientation"`` (Abar), ``"cue"`` (Q) and ``"shortcut"``
(0 = ramp pointing up, -1 = none), each ``(n,)`` int64; ``labels`` are C.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import torch

from ..errors import DataError
from .datasets import ImageDataset, base_params, channel_stats, register_dataset

FRAME = 3  # border (pixels) the glyph never enters; the ramp is read there
RAMP = 0.3  # brightness added at the top row by the shortcut
NOISE = 0.02  # pixel noise amplitude (uniform)
BACKGROUND_MAX = 0.1  # per-image background level ~ U[0, BACKGROUND_MAX]
GLYPH_THRESHOLD = 0.6  # background <= 0.1 + 0.3 + 0.02 < 0.6 < 0.98 <= a glyph's top channel

PALETTE: tuple[tuple[float, float, float], ...] = (
    (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1), (1, 1, 1),
    (1, .5, 0), (.5, 1, 0), (0, 1, .5), (0, .5, 1), (.5, 0, 1), (1, 0, .5), (1, .5, .5),
    (.5, 1, .5), (.5, .5, 1), (1, 1, .5), (.5, 1, 1), (1, .5, 1),
)
MAX_CLASSES = len(PALETTE)
DIRECTIONS = ("up", "left", "down", "right")  # index = rot90 quarter turns of "up"


# ---------------------------------------------------------------------------------------
# Exact information by enumeration
# ---------------------------------------------------------------------------------------


def _check_knobs(m: int, eps: float, delta: float, s: float) -> None:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 2 <= m <= MAX_CLASSES:
        raise DataError(f"rotation-world: m must be an integer in 2..{MAX_CLASSES}, got {m!r}")
    for name, v in (("eps", eps), ("delta", delta), ("s", s)):
        if not isinstance(v, (int, float, np.floating, np.integer)) or isinstance(v, bool) \
                or not 0.0 <= float(v) <= 1.0:
            raise DataError(f"rotation-world: {name} must be a probability in [0, 1], got {v!r}")


def joint_distribution(m: int, eps: float, delta: float, s: float) -> dict[tuple, float]:
    """P(A, C, X) over A uniform on 4 (independent of everything), the class C and the
    visible content X = (orientation (Abar + A) mod 4, cue, shortcut direction A or -1)."""
    _check_knobs(m, eps, delta, s)
    joint: dict[tuple, float] = defaultdict(float)
    for c, abar, q, lit, a in itertools.product(range(m), range(4), range(m), (0, 1), range(4)):
        p_abar = 1 - eps if abar == c % 4 else eps / 3
        p_q = 1 - delta if q == c else delta / (m - 1)
        p_l = s if lit else 1 - s
        p = p_abar * p_q * p_l / (4 * m)
        if p > 0:
            joint[(a, c, ((abar + a) % 4, q, a if lit else -1))] += p
    return dict(joint)


def _entropy(joint: dict[tuple, float], keep: tuple[int, ...]) -> float:
    """Entropy in nats of the marginal of ``joint`` on the coordinates ``keep``."""
    marginal: dict[tuple, float] = defaultdict(float)
    for key, p in joint.items():
        marginal[tuple(key[i] for i in keep)] += p
    return -sum(p * math.log(p) for p in marginal.values() if p > 0)


def exact_information(m: int, eps: float, delta: float, s: float) -> dict[str, float]:
    """Information quantities of rotation-world in nats, by exact enumeration.

    X is the transformed image's visible content (orientation, cue, shortcut direction or
    none); A the rotation4 label, uniform and independent of the image. Keys:
    ``"I(A;C)"`` (0), ``"I(A;X)"``, ``"I(A;X|C)"``, ``"I(A;C|X)"``, ``"H(A|X)"``,
    ``"H(C|X)"``, plus ``"H(A)"``, ``"H(C)"``, ``"I(C;X)"``.

    Reference values (issue 4), reproduced by this reading of the story:
    (m=2, eps=0.1, delta=0.1, s=0) -> I(A;C|X) = 0.2143, H(A|X) = 0.6492;
    (m=2, eps=0.1, delta=0.5, s=0) -> I(A;C|X) = 0.5031.
    """
    return information_from_joint(joint_distribution(m, eps, delta, s))



def information_from_joint(joint: dict[tuple, float]) -> dict[str, float]:
    """The quantities of ``exact_information`` (nats) from a joint distribution
    ``{(a, c, x): p}`` of the transformation label, the class and the visible content."""
    A, C, X = 0, 1, 2
    h = {keep: _entropy(joint, keep) for keep in
         [(A,), (C,), (X,), (A, C), (A, X), (C, X), (A, C, X)]}
    h_a_x = h[(A, X)] - h[(X,)]
    h_c_x = h[(C, X)] - h[(X,)]
    h_a_cx = h[(A, C, X)] - h[(C, X)]
    h_a_c = h[(A, C)] - h[(C,)]
    return {
        "I(A;C)": h[(A,)] + h[(C,)] - h[(A, C)],
        "I(A;X)": h[(A,)] - h_a_x,
        "I(A;X|C)": h_a_c - h_a_cx,
        "I(A;C|X)": h_a_x - h_a_cx,
        "H(A|X)": h_a_x,
        "H(C|X)": h_c_x,
        "H(A)": h[(A,)],
        "H(C)": h[(C,)],
        "I(C;X)": h[(C,)] - h_c_x,
    }


# ---------------------------------------------------------------------------------------
# Sampling and rendering
# ---------------------------------------------------------------------------------------


def glyph_size(image_size: int) -> int:
    return 2 * round(3 * image_size / 16)


def arrow(p: int) -> torch.Tensor:
    """``(p, p)`` bool arrow pointing up (p even): a triangle head over a centred shaft."""
    t = torch.zeros(p, p, dtype=torch.bool)
    half = p // 2
    for i in range(half):  # head: row i spans 2(i+1) centred columns
        t[i, half - i - 1: half + i + 1] = True
    shaft = max(2, 2 * round(p / 6))
    t[half:, half - shaft // 2: half + shaft // 2] = True
    return t


def sample_latents(n: int, m: int, eps: float, delta: float, s: float,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` draws of (class, orientation Abar, cue Q, shortcut) as int64 arrays."""
    c = rng.integers(0, m, n)
    wrong = rng.random(n) < eps
    abar = np.where(wrong, (c % 4 + rng.integers(1, 4, n)) % 4, c % 4)
    flip = rng.random(n) < delta
    cue = np.where(flip, (c + rng.integers(1, m, n)) % m, c)  # uniform over the other m-1
    lit = rng.random(n) < s
    return {"class": c.astype(np.int64), "orientation": abar.astype(np.int64),
            "cue": cue.astype(np.int64), "shortcut": np.where(lit, 0, -1).astype(np.int64)}


def render(latents: dict[str, np.ndarray], image_size: int, rng: np.random.Generator) -> torch.Tensor:
    """``(n, 3, S, S)`` float32 images of the latents (orientation, cue, shortcut)."""
    size = int(image_size)
    n = len(latents["cue"])
    p = glyph_size(size)
    templates = [torch.rot90(arrow(p), k, dims=(0, 1)).numpy() for k in range(4)]
    base = rng.uniform(0.0, BACKGROUND_MAX, (n, 1, 1, 1))
    img = base + rng.uniform(-NOISE, NOISE, (n, 3, size, size))
    ramp = RAMP * (size - 1 - np.arange(size)) / (size - 1)  # (S,) brighter at the top
    lit = latents["shortcut"] >= 0
    img[lit] += ramp[None, None, :, None]
    hi = size - FRAME - p  # top-left corner in FRAME..hi
    corners = rng.integers(FRAME, hi + 1, (n, 2))
    palette = np.asarray(PALETTE)
    mask = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        r, c = corners[i]
        mask[i, r:r + p, c:c + p] = templates[latents["orientation"][i]]
    colour = palette[latents["cue"]][:, :, None, None] + rng.uniform(-NOISE, NOISE, img.shape)
    img = np.where(mask[:, None], colour, img)
    return torch.from_numpy(np.clip(img, 0.0, 1.0).astype(np.float32))


def visible_content(latents: dict, a) -> dict[str, np.ndarray]:
    """What an image of ``latents`` shows after rotation4 with labels ``a`` (int or (n,)):
    orientation (Abar + a) mod 4, the cue, and the shortcut direction a (or -1)."""
    a = np.broadcast_to(np.asarray(a, dtype=np.int64), np.shape(latents["cue"]))
    o = np.asarray(latents["orientation"])
    sc = np.asarray(latents["shortcut"])
    return {"orientation": (o + a) % 4, "cue": np.asarray(latents["cue"]).copy(),
            "shortcut": np.where(sc >= 0, (sc + a) % 4, -1)}


def decode(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Read (orientation, cue, shortcut direction or -1) back from ``(n, 3, S, S)``
    rotation-world images, rotated or not. Raises `DataError` on an image that is not one."""
    x = images.detach().cpu().to(torch.float64).numpy()
    n, _, size, _ = x.shape
    p = glyph_size(size)
    templates = [torch.rot90(arrow(p), k, dims=(0, 1)).numpy() for k in range(4)]
    palette = np.asarray(PALETTE)
    out = {k: np.zeros(n, np.int64) for k in ("orientation", "cue", "shortcut")}
    f = FRAME
    for i in range(n):
        mask = x[i].max(axis=0) > GLYPH_THRESHOLD
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        crop = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1] if len(rows) else mask[:0]
        hits = [k for k, t in enumerate(templates) if crop.shape == t.shape and (crop == t).all()]
        if len(hits) != 1:
            raise DataError(f"rotation-world decode: image {i} shows no arrow glyph")
        out["orientation"][i] = hits[0]
        level = np.round(2 * x[i][:, mask].mean(axis=1)) / 2
        match = np.flatnonzero((palette == level).all(axis=1))
        if len(match) != 1:
            raise DataError(f"rotation-world decode: image {i} has glyph colour {level}, "
                            "not in the palette")
        out["cue"][i] = match[0]
        gray = x[i].mean(axis=0)  # the frame is never covered by the glyph
        side = np.array([gray[:f].mean(), gray[:, :f].mean(), gray[-f:].mean(), gray[:, -f:].mean()])
        diff = np.array([side[0] - side[2], side[1] - side[3]])  # up-down, left-right
        if np.abs(diff).max() < RAMP / 2:
            out["shortcut"][i] = -1
        else:
            axis = int(np.argmax(np.abs(diff)))  # 0 vertical, 1 horizontal
            out["shortcut"][i] = axis + (0 if diff[axis] > 0 else 2)
    return out


@register_dataset("rotation-world", description="procedural arrows with class-dependent "
                  "orientation, colour cue and lighting shortcut; information known exactly",
                  default_image_size=32)
def load_rotation_world(*, split: str, data_dir: str | None, image_size: int, seed: int,
                        download: bool, m: int = 4, eps: float = 0.1, delta: float = 0.1,
                        s: float = 0.0, n_images: int = 4096, n_test: int = 1024) -> ImageDataset:
    """Train split: ``n_images`` images; test split: ``n_test``; each split a fixed
    function of ``seed`` (independent streams)."""
    _check_knobs(m, eps, delta, s)
    if image_size < 16:
        raise DataError(f"rotation-world: image_size must be >= 16, got {image_size}")
    for name, v in (("n_images", n_images), ("n_test", n_test)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DataError(f"rotation-world: {name} must be a positive integer, got {v!r}")

    def make(which: str, n: int) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        rng = np.random.default_rng([seed, 0 if which == "train" else 1])
        lat = sample_latents(int(n), int(m), float(eps), float(delta), float(s), rng)
        return render(lat, image_size, rng), lat

    train_x, train_lat = make("train", n_images)
    mean, std = channel_stats(train_x)
    x, lat = (train_x, train_lat) if split == "train" else make("test", n_test)
    params = base_params("rotation-world", split=split, image_size=image_size, seed=seed,
                         data_dir=data_dir, m=int(m), eps=float(eps), delta=float(delta),
                         s=float(s), n_images=int(n_images), n_test=int(n_test))
    latents = {k: torch.from_numpy(lat[k]) for k in ("orientation", "cue", "shortcut")}
    return ImageDataset("rotation-world", x, torch.from_numpy(lat["class"]), int(m), split,
                        mean, std, params, latents)
