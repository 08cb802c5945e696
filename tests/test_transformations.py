"""Transformations: group laws, label conventions, batching, determinism, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter1d

from essl_info.data import (TRANSFORMATIONS, all_transformed, get_transformation,
                            parse_transformations)
from essl_info.data.transformations import JIGSAW_PERMUTATIONS, blur_radius, gaussian_blur

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(n=6, c=3, size=16, seed=0, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g, dtype=dtype).to(device)


def labels(t, n, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randint(0, t.n_classes, (n,), generator=g).to(device)


def const(t, n, k):
    return torch.full((n,), k, dtype=torch.int64)


def test_registry_has_the_designed_transformations():
    expected = {"rotation4": 4, "hflip": 2, "vflip": 2, "invert": 2, "grayscale": 2,
                "jigsaw4": 24, "blur4": 4, "rotate_angle": None, "blur_sigma": None,
                "brightness": None}
    assert set(expected) <= set(TRANSFORMATIONS)
    for name, k in expected.items():
        t = TRANSFORMATIONS[name]
        assert t.name == name and t.description and t.label_convention
        if k is not None:
            assert t.n_classes == k and not t.scale_valued
        else:
            assert t.scale_valued and len(t.strengths) == t.n_classes
            assert list(t.strengths) == sorted(t.strengths) and len(set(t.strengths)) == t.n_classes


# --------------------------------------------------------------------------------------- laws


def test_rotation_label_is_torch_rot90_and_rot90_to_the_fourth_is_identity():
    t = get_transformation("rotation4")
    x = images()
    n = len(x)
    for k in range(4):
        assert torch.equal(t.apply(x, const(t, n, k)), torch.rot90(x, k, dims=(-2, -1)))
    y = x
    for _ in range(4):
        y = t.apply(y, const(t, n, 1))
    assert torch.equal(y, x)


def test_rotation_labels_compose_modulo_4():
    t = get_transformation("rotation4")
    x = images(n=4)
    for j, k in itertools.product(range(4), repeat=2):
        lhs = t.apply(t.apply(x, const(t, 4, j)), const(t, 4, k))
        assert torch.equal(lhs, t.apply(x, const(t, 4, (j + k) % 4)))


def test_rotation_turns_counter_clockwise():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0] = 1.0  # top row lit
    y = get_transformation("rotation4").apply(x, torch.tensor([1]))
    assert torch.equal(y[0, 0, :, 0], torch.ones(3)) and y.sum() == 3  # -> left column


@pytest.mark.parametrize("name", ["hflip", "vflip", "invert"])
def test_involutions(name):
    t = get_transformation(name)
    x = images()
    one = const(t, len(x), 1)
    assert torch.equal(t.apply(x, const(t, len(x), 0)), x)
    assert not torch.equal(t.apply(x, one), x)
    assert torch.allclose(t.apply(t.apply(x, one), one), x, atol=1e-7)  # 1-(1-x) rounds


def test_flip_conventions():
    x = images()
    assert torch.equal(get_transformation("hflip").apply(x, torch.ones(6, dtype=torch.long)), x.flip(-1))
    assert torch.equal(get_transformation("vflip").apply(x, torch.ones(6, dtype=torch.long)), x.flip(-2))


def test_grayscale_is_idempotent_bt601_and_identity_on_one_channel():
    t = get_transformation("grayscale")
    x = images()
    one = const(t, len(x), 1)
    g = t.apply(x, one)
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        assert torch.allclose(g[:, c], expected, atol=1e-6)
    assert torch.allclose(t.apply(g, one), g, atol=1e-6)
    x1 = images(c=1)
    assert torch.equal(t.apply(x1, one), x1)


def test_jigsaw_is_a_bijection_between_labels_and_the_24_permutations():
    t = get_transformation("jigsaw4")
    # quadrant q of the image holds the constant value q: the output spells the permutation
    x = torch.zeros(1, 1, 4, 4)
    for q in range(4):
        r, c = divmod(q, 2)
        x[0, 0, 2 * r:2 * r + 2, 2 * c:2 * c + 2] = q
    x_all, a, _ = all_transformed(x, t)
    seen = []
    for k in range(24):
        out = x_all[k, 0]
        perm = tuple(int(out[2 * (j // 2), 2 * (j % 2)]) for j in range(4))
        for j in range(4):  # each quadrant is uniform: patches move whole
            r, c = divmod(j, 2)
            assert torch.all(out[2 * r:2 * r + 2, 2 * c:2 * c + 2] == perm[j])
        assert perm == JIGSAW_PERMUTATIONS[k]
        seen.append(perm)
    assert len(set(seen)) == 24 and set(seen) == set(itertools.permutations(range(4)))
    assert seen[0] == (0, 1, 2, 3)  # label 0 is the identity


def test_jigsaw_inverse_permutation_undoes_it():
    t = get_transformation("jigsaw4")
    x = images(n=24, size=8)
    a = torch.arange(24)
    inverse = torch.tensor([JIGSAW_PERMUTATIONS.index(tuple(int(i) for i in np.argsort(p)))
                            for p in JIGSAW_PERMUTATIONS])
    assert torch.equal(t.apply(t.apply(x, a), inverse), x)


def test_blur_matches_scipy_gaussian_filter():
    x = images(n=3, c=2, size=12).to(torch.float64)
    sigmas = torch.tensor([0.5, 1.0, 2.5], dtype=torch.float64)
    radius = blur_radius(2.5)
    y = gaussian_blur(x, sigmas, radius)
    for i, s in enumerate(sigmas.tolist()):
        ref = x[i].numpy()
        for axis in (-1, -2):
            ref = gaussian_filter1d(ref, s, axis=axis, mode="nearest", truncate=(radius + 0.25) / s)
        np.testing.assert_allclose(y[i].numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("name", ["blur4", "blur_sigma"])
def test_blur_label_zero_is_identity_and_blur_keeps_constants(name):
    t = get_transformation(name)
    x = images()
    assert torch.equal(t.apply(x, const(t, len(x), 0)), x)
    flat = torch.full((2, 3, 8, 8), 0.3)
    out = t.apply(flat, torch.tensor([1, t.n_classes - 1]))
    assert torch.allclose(out, flat, atol=1e-6)
    # stronger blur -> smoother image (lower total variation)
    tv = [float(t.apply(x[:1], torch.tensor([k])).diff(dim=-1).abs().sum()) for k in range(t.n_classes)]
    assert tv == sorted(tv, reverse=True)


def test_rotate_angle_matches_rot90_at_90_degrees_and_is_identity_at_0():
    t = get_transformation("rotate_angle")
    x = images()
    n = len(x)
    assert torch.equal(t.apply(x, const(t, n, 0)), x)
    k90 = t.strengths.index(90.0)
    assert torch.allclose(t.apply(x, const(t, n, k90)), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)


def test_brightness_scales_and_clamps():
    t = get_transformation("brightness")
    x = images()
    for k, f in enumerate(t.strengths):
        assert torch.allclose(t.apply(x, const(t, len(x), k)), (x * f).clamp(0, 1))
    assert torch.equal(t.apply(x, const(t, len(x), t.strengths.index(1.0))), x)


# --------------------------------------------------------------- batching, determinism, devices


@pytest.mark.parametrize("name", sorted(TRANSFORMATIONS))
def test_batched_equals_per_row_and_is_deterministic(name):
    t = TRANSFORMATIONS[name]
    x = images(n=7)
    a = labels(t, 7)
    y = t.apply(x, a)
    rows = torch.cat([t.apply(x[i:i + 1], a[i:i + 1]) for i in range(7)])
    assert torch.equal(y, rows)
    assert torch.equal(y, t.apply(x.clone(), a.clone()))
    assert torch.equal(x, images(n=7))  # input untouched


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(TRANSFORMATIONS))
def test_shape_dtype_device_preserved(name, dtype, device):
    t = TRANSFORMATIONS[name]
    x = images(n=5, dtype=dtype, device=device)
    y = t.apply(x, labels(t, 5, device=device))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1 + 1e-6


@pytest.mark.parametrize("name", sorted(TRANSFORMATIONS))
def test_all_transformed_is_label_major(name):
    t = TRANSFORMATIONS[name]
    x = images(n=3, size=8)
    x_all, a, idx = all_transformed(x, t)
    k = t.n_classes
    assert x_all.shape == (3 * k, 3, 8, 8) and a.dtype == idx.dtype == torch.int64
    assert torch.equal(a, torch.arange(k).repeat_interleave(3))
    assert torch.equal(idx, torch.arange(3).repeat(k))
    for j in range(3 * k):
        assert torch.equal(x_all[j:j + 1], t.apply(x[idx[j]:idx[j] + 1], a[j:j + 1]))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), c=st.sampled_from([1, 3]), half=st.integers(2, 6),
       seed=st.integers(0, 2**16))
def test_group_laws_property(n, c, half, seed):
    x = images(n=n, c=c, size=2 * half, seed=seed)
    rot, jig = get_transformation("rotation4"), get_transformation("jigsaw4")
    a = labels(rot, n, seed)
    back = (4 - a) % 4
    assert torch.equal(rot.apply(rot.apply(x, a), back), x)
    for name in ("hflip", "vflip"):
        t = get_transformation(name)
        b = labels(t, n, seed)
        assert torch.equal(t.apply(t.apply(x, b), b), x)
    p = labels(jig, n, seed)
    out = jig.apply(x, p)
    # same pixels, moved; and undone by the inverse permutation
    assert torch.equal(out.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
    inv = torch.tensor([JIGSAW_PERMUTATIONS.index(tuple(int(i) for i in np.argsort(JIGSAW_PERMUTATIONS[k])))
                        for k in p.tolist()])
    assert torch.equal(jig.apply(out, inv), x)


# ---------------------------------------------------------------------------- lookup, bad input


def test_parse_and_get():
    ts = parse_transformations("rotation4, hflip")
    assert [t.name for t in ts] == ["rotation4", "hflip"]
    assert [t.name for t in parse_transformations(["jigsaw4"])] == ["jigsaw4"]
    with pytest.raises(ValueError, match="known: .*rotation4"):
        get_transformation("rotation8")
    with pytest.raises(ValueError, match="listed twice: hflip"):
        parse_transformations("hflip,hflip")
    with pytest.raises(ValueError, match="comma-separated"):
        parse_transformations("rotation4,,hflip")


def test_bad_inputs_raise_value_errors_naming_the_problem():
    t = get_transformation("rotation4")
    x = images(n=2)
    with pytest.raises(ValueError, match=r"labels must lie in 0..3.*4"):
        t.apply(x, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        t.apply(x, torch.tensor([0]))
    with pytest.raises(ValueError, match="integer tensor"):
        t.apply(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        t.apply(x[0], torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="square"):
        t.apply(torch.rand(2, 1, 4, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="even"):
        get_transformation("jigsaw4").apply(torch.rand(1, 1, 5, 5), torch.tensor([0]))
