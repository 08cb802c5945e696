"""The CARE objective against a slow loop, and the trainer's ``--objective care`` and
``--invariant`` options through short real runs."""

from __future__ import annotations

import itertools

import pytest
import torch

from essl_info import cli
from essl_info.models.checkpoint import load_checkpoint
from essl_info.training.config import TrainConfig, resolve_config
from essl_info.training.losses import care_loss
from essl_info.training.trainer import invariance_views


def _care_slow(h, k):
    """E over ordered a != a', i != j of (f(a x_j).f(a x_i) - f(a' x_i).f(a' x_j))^2, with
    f the L2-normalised rows, written as the loop of its definition."""
    n = h.shape[0] // k
    f = [[h[a * n + i] / h[a * n + i].norm() for i in range(n)] for a in range(k)]
    total, count = 0.0, 0
    for a, b in itertools.permutations(range(k), 2):
        for i, j in itertools.permutations(range(n), 2):
            total += float(f[a][j] @ f[a][i] - f[b][i] @ f[b][j]) ** 2
            count += 1
    return total / count


@pytest.mark.parametrize("k, n, d", [(4, 5, 3), (2, 3, 7), (3, 2, 2)])
def test_care_loss_matches_the_definition(k, n, d):
    h = torch.randn(k * n, d, generator=torch.Generator().manual_seed(k * n + d),
                    dtype=torch.float64)
    assert float(care_loss(h, k)) == pytest.approx(_care_slow(h, k), rel=1e-5, abs=1e-7)


def test_care_loss_is_zero_for_rotated_copies_and_scale_free():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    copies = [z] + [z @ torch.linalg.qr(torch.randn(5, 5, generator=g,
                                                    dtype=torch.float64))[0]
                    for _ in range(3)]
    h = torch.cat(copies)
    assert float(care_loss(h, 4)) < 1e-10
    h2 = torch.randn(12, 5, generator=g)
    assert float(care_loss(3.7 * h2, 4)) == pytest.approx(float(care_loss(h2, 4)), rel=1e-5)
    with pytest.raises(ValueError, match="K=3"):
        care_loss(torch.randn(7, 2), 3)


def test_invariance_views_apply_one_random_label_per_image():
    x = torch.rand(64, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    v = invariance_views(x, ("rotation4",), torch.Generator().manual_seed(2))
    ks = [next(k for k in range(4) if torch.equal(v[i], torch.rot90(x[i], k, (-2, -1))))
          for i in range(64)]
    assert set(ks) == {0, 1, 2, 3}                  # each image rotated by some k, all seen
    assert torch.equal(invariance_views(x, (), torch.Generator()), x)


def test_config_checks():
    with pytest.raises(ValueError, match="objective 'care'.*constant embedding"):
        resolve_config(TrainConfig(objective="care", ssl="none"))
    with pytest.raises(ValueError, match="unknown transformation 'spin'"):
        resolve_config(TrainConfig(invariant=("spin",)))
    with pytest.raises(ValueError, match="invariant augments the SSL views"):
        resolve_config(TrainConfig(invariant=("hflip",), ssl="none"))


TINY = ["--dataset", "digits", "--image-size", "8", "--trans-size", "8", "--n-train", "64",
        "--n-test", "32", "--width", "4", "--batch-size", "32", "--knn-k", "10",
        "--no-progress", "--no-linear-probe", "--epochs", "1"]


def test_care_and_invariance_train_and_are_recorded(tmp_path, capsys):
    out = tmp_path / "care"
    assert cli.main(["train", *TINY, "--objective", "care", "--invariant", "hflip,blur4",
                     "--out", str(out)]) == 0
    capsys.readouterr()
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["train"]["objective"] == "care"
    assert list(ckpt["train"]["invariant"]) == ["hflip", "blur4"]
    hist = ckpt["metrics"]["history"][-1]
    assert "train_care/rotation4" in hist and hist["train_care/rotation4"] >= 0
    assert "train_ce/rotation4" in hist            # the head still trains, as a monitor
