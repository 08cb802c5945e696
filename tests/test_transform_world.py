"""transform-world: exact information against closed forms, and the rendered pixels
against the visible content the enumeration assumes (an independent decoder reads shape,
orientation and each transformation's label back from the images)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from essl_info.data import get_transformation, load_dataset
from essl_info.data.transform_world import (EXACT, MAX_CLASSES, exact_information, render,
                                            sample_latents, shape_mask)
from essl_info.data.transformations import JIGSAW_PERMUTATIONS
from essl_info.errors import DataError

LOG2 = math.log(2)


def _h(p):
    return 0.0 if p in (0, 1) else -p * math.log(p) - (1 - p) * math.log(1 - p)


def test_glyphs_are_mirror_symmetric_and_their_turns_distinct():
    turns = set()
    for q in range(MAX_CLASSES):
        m = shape_mask(q)
        assert (m == m[:, ::-1]).all()
        turns |= {np.rot90(m, r).tobytes() for r in range(4)}
    assert len(turns) == 4 * MAX_CLASSES


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_rotation_and_vflip_closed_form_when_the_shape_hides_the_class(eps):
    m = 4
    for t in ("rotation4", "vflip"):   # shape independent of the class: delta = (m-1)/m
        e = exact_information(t, m=m, eps=eps, delta=(m - 1) / m)
        assert e["H(A|X)"] == pytest.approx(LOG2, abs=1e-12)
        assert e["I(A;C|X)"] == pytest.approx(LOG2 - _h(eps), abs=1e-12)
    # a faithful shape reveals the class, and with it the canonical orientation
    e = exact_information("rotation4", m=m, eps=0.0, delta=0.0)
    assert e["H(A|X)"] == pytest.approx(0, abs=1e-12) and e["I(A;X)"] == pytest.approx(
        math.log(4))


def test_roles_of_the_other_transformations():
    e = exact_information("hflip")
    assert e["I(A;X)"] == pytest.approx(0, abs=1e-12) and e["H(A|X)"] == pytest.approx(LOG2)
    assert e["I(A;C|X)"] == pytest.approx(0, abs=1e-12)
    for t, k in (("invert", 2), ("grayscale", 2), ("jigsaw4", 24)):
        e = exact_information(t, delta=0.5)
        assert e["H(A|X)"] == pytest.approx(0, abs=1e-12)
        assert e["I(A;X)"] == pytest.approx(math.log(k))
    for t in EXACT:   # the identities of DESIGN §1
        e = exact_information(t, m=5, eps=0.2, delta=0.4)
        assert e["I(A;C)"] == pytest.approx(0, abs=1e-12)
        assert e["I(A;C|X)"] == pytest.approx(e["I(A;X|C)"] - e["I(A;X)"], abs=1e-12)
        assert -1e-12 <= e["I(A;C|X)"] <= min(e["H(A|X)"], e["H(C|X)"]) + 1e-12
    assert exact_information("rotation4")["I(A;C|X)"] > 0.1   # the default has synergy
    for bad in (("blur4", {}), ("jigsaw4", {"j": 0.5})):
        with pytest.raises(ValueError, match="not known exactly"):
            exact_information(bad[0], **bad[1])
    with pytest.raises(DataError, match="m must be"):
        exact_information("rotation4", m=9)


# ----------------------------------------------------------- the pixels show that content
def _decode(x: torch.Tensor, k: int):
    """(shape, orientation) of each image's glyph, by template matching."""
    x = x.numpy()
    table = {np.rot90(shape_mask(q, k), r).tobytes(): (q, r) for q in range(MAX_CLASSES)
             for r in range(4)}
    out = []
    for img in x:
        mask = (img.max(0) > 0.5) & (img.min(0) < 0.9)    # coloured, not a white mark
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        crop = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        out.append(table[np.ascontiguousarray(crop).tobytes()])
    return np.array(out)


def _jigsaw_label(x: torch.Tensor, k: int) -> np.ndarray:
    """The permutation read off the white corner marks of each output quadrant."""
    n, _, s, _ = x.shape
    h = s // 2
    labels = []
    for img in x.numpy():
        perm = []
        for j in range(4):
            quad = img[:, (j // 2) * h:(j // 2 + 1) * h, (j % 2) * h:(j % 2 + 1) * h]
            corners = [quad[:, :k, :k], quad[:, :k, -k:], quad[:, -k:, :k], quad[:, -k:, -k:]]
            white = [i for i, c in enumerate(corners) if (c > 0.9).all()]
            assert len(white) == 1
            perm.append(white[0])
        labels.append(JIGSAW_PERMUTATIONS.index(tuple(perm)))
    return np.array(labels)


@pytest.mark.parametrize("size", [16, 32])
def test_pixels_show_the_enumerated_content(size):
    rng = np.random.default_rng(3)
    n, k = 64, size // 16
    lat = sample_latents(n, 8, 0.2, 0.3, 1.0, rng)
    x, _ = render(lat, size, rng)
    dec = _decode(x, k)
    assert (dec[:, 0] == lat["shape"]).all() and (dec[:, 1] == lat["orientation"]).all()
    a4 = torch.from_numpy(rng.integers(0, 4, n))
    a2 = torch.from_numpy(rng.integers(0, 2, n))
    o = lat["orientation"]
    rot = _decode(get_transformation("rotation4")(x, a4), k)
    assert (rot[:, 1] == (o + a4.numpy()) % 4).all() and (rot[:, 0] == lat["shape"]).all()
    vf = _decode(get_transformation("vflip")(x, a2), k)
    assert (vf[:, 1] == (o + 2 * a2.numpy()) % 4).all()
    hf = _decode(get_transformation("hflip")(x, a2), k)
    assert (hf == dec).all()                           # the flip changes no content
    inv = get_transformation("invert")(x, a2)
    assert ((inv.mean((1, 2, 3)) > 0.5).long() == a2).all()
    gray = get_transformation("grayscale")(x, a2)
    assert (((gray.amax(1) - gray.amin(1)).amax((1, 2)) < 1e-6).long() == a2).all()
    a24 = torch.from_numpy(rng.integers(0, 24, n))
    assert (_jigsaw_label(get_transformation("jigsaw4")(x, a24), k) == a24.numpy()).all()


def test_hflip_leaves_the_image_distribution_unchanged():
    # without noise an image is (glyph, colour, corner, marks): mirroring it gives the
    # same glyph at the mirrored corner, a corner the sampler draws with equal probability
    rng = np.random.default_rng(0)
    lat = sample_latents(32, 8, 0.1, 0.2, 1.0, rng)
    x, corners = render(lat, 16, np.random.default_rng(1), noise=False)
    flipped = get_transformation("hflip")(x, torch.ones(32, dtype=torch.long))
    lo, hi = 2, 16 - 2 - 6
    assert corners[:, 1].min() >= lo and corners[:, 1].max() <= hi   # symmetric range
    for i in range(32):
        r, c = corners[i]
        expect = torch.zeros_like(x[i])
        c2 = 16 - c - 6
        expect[:, r:r + 6, c2:c2 + 6] = x[i][:, r:r + 6, c:c + 6]
        for rr, cc in ((0, 0), (0, 15), (15, 0), (15, 15)):
            expect[:, rr, cc] = x[i][:, rr, cc]
        assert torch.equal(flipped[i], expect)


def test_dataset_splits_and_knobs():
    tr = load_dataset("transform-world", split="train", n_images=100, n_test=40, m=4)
    te = load_dataset("transform-world", split="test", n_images=100, n_test=40, m=4)
    assert tr.images.shape == (100, 3, 16, 16) and te.images.shape == (40, 3, 16, 16)
    assert tr.mean == te.mean and int(tr.labels.max()) <= 3
    again = load_dataset("transform-world", split="train", n_images=100, n_test=40, m=4)
    assert torch.equal(tr.images, again.images)
    assert set(tr.latents) == {"shape", "orientation", "colour", "marks"}
    with pytest.raises(DataError, match="even"):
        load_dataset("transform-world", image_size=17)
