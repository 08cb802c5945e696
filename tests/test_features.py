"""extract_features: every image under every label, label-major, the model's own outputs."""

import numpy as np
import pytest
import torch
from measure_helpers import collapsed_checkpoint, diverged_checkpoint, tiny_checkpoint

from essl_info.models.checkpoint import model_from_checkpoint
from essl_info.data import get_transformation, load_dataset
from essl_info.errors import DataError
from essl_info.diagnostics.features import LAYERS, extract_features


@pytest.fixture(scope="module")
def model():
    return model_from_checkpoint(tiny_checkpoint())


@pytest.fixture(scope="module")
def images():
    return load_dataset("digits", split="test", image_size=16).subset(np.arange(23))


def test_rows_are_every_image_under_every_label(model, images):
    f = extract_features(model, images, "rotation4", batch_size=5, progress=False)
    n, k = len(images), 4
    assert f.z.shape == (n * k, model.spec["feature_dim"]) and f.z.dtype == np.float32
    assert len(f) == n * k and f.n_images == n and f.n_labels == k and f.n_classes == 10
    np.testing.assert_array_equal(f.a, np.repeat(np.arange(k), n))           # label-major
    np.testing.assert_array_equal(f.image_id, np.tile(np.arange(n), k))
    np.testing.assert_array_equal(f.c, images.labels.numpy()[f.image_id])
    # row a*n + i is the model's features of image i rotated a quarter turns
    t = get_transformation("rotation4")
    with torch.no_grad():
        for a in range(k):
            x = torch.rot90(images.images, a, dims=(-2, -1))
            ref = model.features(x).numpy()
            np.testing.assert_allclose(f.z[a * n:(a + 1) * n], ref, rtol=1e-5, atol=1e-5)
    assert f.transformation == t.name and f.layer == "backbone" and not f.collapsed


def test_projector_layer_and_batch_size_invariance(model, images):
    f1 = extract_features(model, images, "hflip", layer="projector", batch_size=4,
                          progress=False)
    f2 = extract_features(model, images, get_transformation("hflip"), layer="projector",
                          batch_size=256, progress=False)
    np.testing.assert_allclose(f1.z, f2.z, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        ref = model.project(model.features(images.images.flip(-1))).numpy()
    np.testing.assert_allclose(f1.z[len(images):], ref, rtol=1e-5, atol=1e-5)
    assert f1.z.shape[1] == model.spec["projector"]["dims"][-1]
    assert set(LAYERS) == {"backbone", "projector"}


def test_nan_features_are_a_data_error(images):
    bad = model_from_checkpoint(diverged_checkpoint())
    with pytest.raises(DataError, match="features contain NaN: the model diverged"):
        extract_features(bad, images, "rotation4", progress=False)


def test_collapsed_features_are_detected(images):
    flat = model_from_checkpoint(collapsed_checkpoint())
    f = extract_features(flat, images, "rotation4", progress=False)
    assert f.collapsed and np.all(f.z == 0)


@pytest.mark.parametrize("kwargs, match", [
    ({"layer": "head"}, "layer must be one of"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_bad_arguments(model, images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        extract_features(model, images, "rotation4", progress=False, **kwargs)


def test_unknown_transformation(model, images):
    with pytest.raises(ValueError, match="unknown transformation 'spin'"):
        extract_features(model, images, "spin", progress=False)
