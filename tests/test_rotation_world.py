"""rotation-world: exact information (reference values, identities, Monte Carlo) and a
pixel decoder proving that rendered + rotated images show exactly the enumerated content."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from essl_info.data import all_transformed, get_transformation, load_dataset
from essl_info.data.rotation_world import (MAX_CLASSES, arrow, decode, exact_information,
                                           glyph_size, sample_latents, visible_content)
from essl_info.errors import DataError

KEYS = ("I(A;C)", "I(A;X)", "I(A;X|C)", "I(A;C|X)", "H(A|X)", "H(C|X)")


def test_reference_values_from_the_issue():
    v = exact_information(2, 0.1, 0.1, 0.0)
    assert v["I(A;C|X)"] == pytest.approx(0.2143, abs=5e-5)
    assert v["H(A|X)"] == pytest.approx(0.6492, abs=5e-5)
    assert exact_information(2, 0.1, 0.5, 0.0)["I(A;C|X)"] == pytest.approx(0.5031, abs=5e-5)
    assert set(KEYS) <= set(v)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(2, 8), eps=st.floats(0, 1), delta=st.floats(0, 1), s=st.floats(0, 1))
def test_information_identities(m, eps, delta, s):
    v = exact_information(m, eps, delta, s)
    tol = 1e-9
    assert abs(v["I(A;C)"]) < tol  # A is drawn independently of the image
    assert v["I(A;C|X)"] == pytest.approx(v["I(A;X|C)"] - v["I(A;X)"], abs=tol)
    assert -tol <= v["I(A;C|X)"] <= min(v["H(A|X)"], v["H(C|X)"]) + tol
    assert v["H(A|X)"] == pytest.approx(math.log(4) - v["I(A;X)"], abs=tol)
    assert v["H(A)"] == pytest.approx(math.log(4))
    assert v["H(C)"] == pytest.approx(math.log(m))
    assert all(math.isfinite(x) for x in v.values())


def test_limiting_cases():
    # the lighting shortcut always present reveals A: no synergy possible
    v = exact_information(4, 0.2, 0.3, 1.0)
    assert v["H(A|X)"] == pytest.approx(0, abs=1e-12) and v["I(A;C|X)"] == pytest.approx(0, abs=1e-12)
    # noiseless cue and orientation: X shows C and phi(C), hence A
    v = exact_information(4, 0.0, 0.0, 0.0)
    assert v["H(A|X)"] == pytest.approx(0, abs=1e-12) and v["H(C|X)"] == pytest.approx(0, abs=1e-12)
    # uniform orientation: the glyph carries no A information at all
    v = exact_information(4, 0.75, 0.1, 0.0)
    assert v["I(A;X)"] == pytest.approx(0, abs=1e-12) and v["I(A;X|C)"] == pytest.approx(0, abs=1e-12)
    # m = 4, perfect cue, eps = 0.1: given C, A is read from the orientation up to eps noise
    h = -(0.9 * math.log(0.9) + 3 * (0.1 / 3) * math.log(0.1 / 3))
    v = exact_information(4, 0.1, 0.0, 0.0)
    assert v["H(A|X)"] == pytest.approx(h, abs=1e-12) and v["I(A;C|X)"] == pytest.approx(0, abs=1e-12)
    # a useless cue and more classes than orientations: synergy through phi(C) only
    assert exact_information(4, 0.1, 0.75, 0.0)["I(A;C|X)"] > 0.5


def _plugin_entropy(*cols: np.ndarray) -> float:
    counts = np.array(list(Counter(zip(*cols)).values()), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("m,eps,delta,s", [(2, 0.1, 0.1, 0.0), (5, 0.2, 0.3, 0.4)])
def test_sampler_agrees_with_enumeration(m, eps, delta, s):
    """Monte Carlo from the sampler that renders the images (an independent path)."""
    rng = np.random.default_rng(0)
    n = 200_000
    lat = sample_latents(n, m, eps, delta, s, rng)
    a = rng.integers(0, 4, n)
    vis = visible_content(lat, a)
    x = (vis["orientation"], vis["cue"], vis["shortcut"])
    c = lat["class"]
    h_a_x = _plugin_entropy(a, *x) - _plugin_entropy(*x)
    h_a_cx = _plugin_entropy(a, c, *x) - _plugin_entropy(c, *x)
    v = exact_information(m, eps, delta, s)
    assert h_a_x == pytest.approx(v["H(A|X)"], abs=0.01)
    assert h_a_x - h_a_cx == pytest.approx(v["I(A;C|X)"], abs=0.01)
    assert np.mean(lat["orientation"] == lat["class"] % 4) == pytest.approx(1 - eps, abs=0.005)
    assert np.mean(lat["cue"] == lat["class"]) == pytest.approx(1 - delta, abs=0.005)
    assert np.mean(lat["shortcut"] == 0) == pytest.approx(s, abs=0.005)


def test_arrow_has_four_distinct_quarter_turns():
    for size in (16, 32, 64):
        t = arrow(glyph_size(size))
        turns = [torch.rot90(t, k, dims=(0, 1)) for k in range(4)]
        assert all(not torch.equal(turns[i], turns[j]) for i in range(4) for j in range(i))


@pytest.mark.parametrize("image_size", [16, 32])
def test_decoder_reads_exactly_the_enumerated_content_after_rotation(image_size):
    ds = load_dataset("rotation-world", m=MAX_CLASSES, eps=0.3, delta=0.3, s=0.5,
                      n_images=150, image_size=image_size, seed=3)
    lat = {k: v.numpy() for k, v in ds.latents.items()}
    raw = decode(ds.images)
    for k in raw:
        assert np.array_equal(raw[k], lat[k])  # A = 0: the latents themselves
    x_all, a, idx = all_transformed(ds.images, get_transformation("rotation4"))
    dec = decode(x_all)
    want = visible_content({k: v[idx.numpy()] for k, v in lat.items()}, a.numpy())
    for k in want:
        assert np.array_equal(dec[k], want[k]), k
    assert set(np.unique(dec["shortcut"])) == {-1, 0, 1, 2, 3}


def test_decoder_refuses_other_images():
    with pytest.raises(DataError, match="no arrow glyph"):
        decode(torch.rand(1, 3, 32, 32) * 0.3)


def test_dataset_shapes_latents_and_reproducibility():
    kw = dict(m=3, eps=0.1, delta=0.2, s=0.3, n_images=64, n_test=32, seed=7)
    tr = load_dataset("rotation-world", **kw)
    te = load_dataset("rotation-world", split="test", **kw)
    assert tr.images.shape == (64, 3, 32, 32) and te.images.shape == (32, 3, 32, 32)
    assert tr.images.dtype == torch.float32 and 0 <= tr.images.min() and tr.images.max() <= 1
    assert tr.n_classes == 3 and set(tr.latents) == {"orientation", "cue", "shortcut"}
    assert all(v.dtype == torch.int64 and v.shape == (64,) for v in tr.latents.values())
    assert int(tr.labels.max()) < 3 and tr.mean == te.mean and tr.std == te.std
    again = load_dataset(**tr.params)
    assert torch.equal(again.images, tr.images) and torch.equal(again.labels, tr.labels)
    assert not torch.equal(te.images[:32], tr.images[:32])
    other = load_dataset("rotation-world", **{**kw, "seed": 8})
    assert not torch.equal(other.images, tr.images)
    sub = tr.subset([5, 1])
    assert torch.equal(sub.latents["cue"], tr.latents["cue"][[5, 1]])


@pytest.mark.parametrize("bad,match", [({"m": 1}, "m must be"), ({"m": MAX_CLASSES + 1}, "m must be"),
                                       ({"eps": 1.5}, "eps must be"), ({"s": -0.1}, "s must be"),
                                       ({"n_images": 0}, "n_images"), ({"image_size": 8}, "image_size"),
                                       ({"sigma": 1}, "unknown parameter")])
def test_bad_parameters(bad, match):
    with pytest.raises(DataError, match=match):
        load_dataset("rotation-world", **{"n_images": 8, **bad})
    if set(bad) <= {"m", "eps", "s"}:
        with pytest.raises(DataError, match=match):
            exact_information(**{"m": 2, "eps": 0.1, "delta": 0.1, "s": 0.0, **bad})
