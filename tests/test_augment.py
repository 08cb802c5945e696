"""Batched torch augmentations: geometry against slicing, colour against colorsys,
determinism by generator, presets."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from essl_info.data import (AUGMENT_PRESETS, augment, color_jitter, random_blur,
                            random_grayscale, random_hflip, random_resized_crop)
from essl_info.data.augment import crop_boxes, crop_resize, hsv_to_rgb, rgb_to_hsv

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(n=8, c=3, size=16, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g).to(device)


def gen(seed=0, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def test_presets_exist():
    assert {"none", "crop_flip", "simclr"} <= set(AUGMENT_PRESETS)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", sorted(AUGMENT_PRESETS))
@pytest.mark.parametrize("c", [1, 3])
def test_presets_shape_range_device_determinism(preset, c, device):
    x = images(c=c, device=device)
    y = augment(x, preset, generator=gen(1, device), out_size=12)
    assert y.shape == (8, c, 12, 12) and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, augment(x, preset, generator=gen(1, device), out_size=12))
    if preset != "none":
        assert not torch.equal(y, augment(x, preset, generator=gen(2, device), out_size=12))


def test_none_preset_is_identity_and_global_rng_untouched():
    x = images()
    state = torch.get_rng_state()
    assert torch.equal(augment(x, "none", generator=gen()), x)
    augment(x, "simclr", generator=gen())
    assert torch.equal(torch.get_rng_state(), state)


def test_preset_rows_are_independent_draws():
    x = images(n=1).repeat(16, 1, 1, 1)  # one image, 16 copies
    y = augment(x, "simclr", generator=gen())
    assert len({tuple(r.flatten()[:20].tolist()) for r in y}) == 16


def test_bad_arguments():
    x = images()
    with pytest.raises(ValueError, match="unknown augmentation preset 'autoaugment'"):
        augment(x, "autoaugment", generator=gen())
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        augment(x, "simclr", generator=0)
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop(x, 8, scale=(0.5, 0.2), generator=gen())
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        augment(x[0], "simclr", generator=gen())


# ------------------------------------------------------------------------------------ geometry


def test_integer_crop_at_native_size_equals_slicing():
    x = images(n=3, size=12)
    boxes = torch.tensor([[0.0, 0.0, 5.0, 5.0], [3.0, 2.0, 5.0, 5.0], [7.0, 7.0, 5.0, 5.0]])
    out = crop_resize(x, boxes, 5)
    for i, (x0, y0, _, _) in enumerate(boxes.int().tolist()):
        assert torch.allclose(out[i], x[i, :, y0:y0 + 5, x0:x0 + 5], atol=1e-6)


def test_full_crop_is_identity():
    x = images()
    y = random_resized_crop(x, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=gen())
    assert torch.allclose(y, x, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(h=st.integers(8, 40), w=st.integers(8, 40), lo=st.floats(0.05, 1.0),
       seed=st.integers(0, 2**16))
def test_crop_boxes_respect_scale_ratio_and_bounds(h, w, lo, seed):
    scale, ratio = (lo, 1.0), (3 / 4, 4 / 3)
    b = crop_boxes(64, h, w, scale=scale, ratio=ratio, generator=gen(seed), device="cpu")
    x0, y0, bw, bh = b.double().unbind(1)
    tol = 1e-4
    assert (x0 >= -tol).all() and (y0 >= -tol).all()
    assert (x0 + bw <= w + tol).all() and (y0 + bh <= h + tol).all()
    area = bw * bh / (h * w)
    r = bw / bh
    drawn = (area >= scale[0] - tol) & (area <= scale[1] + tol) & \
            (r >= ratio[0] - tol) & (r <= ratio[1] + tol)
    # rows whose 10 draws all missed fall back to the central crop of the whole image
    fallback = ~drawn
    assert torch.allclose(x0[fallback], (w - bw[fallback]) / 2, atol=tol)
    assert torch.allclose(y0[fallback], (h - bh[fallback]) / 2, atol=tol)
    assert (bw[fallback] >= min(w, h) * ratio[0] - tol).all()


def test_crop_area_distribution_is_uniform_in_scale():
    b = crop_boxes(20000, 64, 64, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                   generator=gen(), device="cpu")
    area = (b[:, 2] * b[:, 3] / 64**2).numpy()
    fits = area < 0.999
    # the area is drawn uniformly; rejections (too wide/tall) only remove large areas
    frac = area[fits & (area < 0.5)]
    hist, _ = np.histogram(frac, bins=6, range=(0.08, 0.5))
    assert hist.min() > 0.85 * hist.mean()


def test_hflip_flips_about_half_of_rows():
    x = images(n=400, size=6)
    y = random_hflip(x, p=0.5, generator=gen())
    same = (y == x).flatten(1).all(1)
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    assert (same ^ flipped).all()
    assert 160 < int(flipped.sum()) < 240


# -------------------------------------------------------------------------------------- colour


def test_hsv_matches_colorsys_and_round_trips():
    x = images(n=2, size=8)
    hsv = rgb_to_hsv(x.double())
    px = x.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    ref = np.array([colorsys.rgb_to_hsv(*p) for p in px])
    got = hsv.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert torch.allclose(hsv_to_rgb(hsv), x.double(), atol=1e-12)


def test_color_jitter_p0_is_identity_and_brightness_is_a_per_row_factor():
    x = images()
    assert torch.equal(color_jitter(x, p=0.0, generator=gen()), x)
    y = color_jitter(x * 0.5, brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0, p=1.0,
                     generator=gen())
    # the factor of each row, read off its brightest pixel, explains every pixel
    flat_x, flat_y = (x * 0.5).flatten(1), y.flatten(1)
    top = flat_x.argmax(1, keepdim=True)
    f = flat_y.gather(1, top) / flat_x.gather(1, top)  # (n, 1)
    assert torch.allclose(flat_y, flat_x * f, atol=1e-6)
    assert ((f >= 0.6 - 1e-6) & (f <= 1.4 + 1e-6)).all() and f.std() > 0.01


def test_saturation_zero_blend_and_hue_keep_gray_pixels():
    gray = torch.full((4, 3, 5, 5), 0.4)
    y = color_jitter(gray, brightness=0.0, contrast=0.0, saturation=0.9, hue=0.5, p=1.0,
                     generator=gen())
    assert torch.allclose(y, gray, atol=1e-6)  # no colour to shift or saturate


def test_hue_shift_rotates_primaries():
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    hsv = rgb_to_hsv(red)
    hsv[:, 0] = (hsv[:, 0] + 1 / 3) % 1.0
    assert torch.allclose(hsv_to_rgb(hsv)[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_one_channel_colour_ops():
    x = images(c=1)
    assert torch.equal(random_grayscale(x, p=1.0, generator=gen()), x)
    y = color_jitter(x, brightness=0.0, contrast=0.0, saturation=0.9, hue=0.4, p=1.0,
                     generator=gen())
    assert torch.allclose(y, x, atol=1e-6)  # saturation and hue do nothing on intensity
    z = color_jitter(x, brightness=0.0, contrast=0.5, saturation=0.0, hue=0.0, p=1.0,
                     generator=gen())
    assert not torch.allclose(z, x)


def test_random_grayscale_probability_and_content():
    x = images(n=400, size=4)
    y = random_grayscale(x, p=0.2, generator=gen())
    gray = (y[:, 0] == y[:, 1]).flatten(1).all(1) & (y[:, 1] == y[:, 2]).flatten(1).all(1)
    assert 50 < int(gray.sum()) < 110
    assert torch.equal(y[~gray], x[~gray])


def test_random_blur_smooths_some_rows():
    x = images(n=200, size=8)
    y = random_blur(x, p=0.5, generator=gen())
    changed = ~torch.isclose(y, x, atol=1e-6).flatten(1).all(1)
    assert 70 < int(changed.sum()) < 130
    tv = lambda t: t.diff(dim=-1).abs().flatten(1).sum(1)  # noqa: E731
    assert (tv(y[changed]) < tv(x[changed])).all()
    assert math.isclose(float(y.mean()), float(x.mean()), abs_tol=0.01)
