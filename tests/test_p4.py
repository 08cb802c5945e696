"""The p4 (C4) equivariant ResNet-18: exact equivariance of every layer and of the
features, invariance after pooling, the parameter budget of ResNet-18, and a CPU training
run through the real command line."""

from __future__ import annotations

import pytest
import torch

from essl_info import cli
from essl_info.models.networks import BACKBONES, build_backbone, count_parameters
from essl_info.models.p4 import (GroupConv, LiftingConv, rotate_features, rotate_group_map)


def _rot(x, k):
    return torch.rot90(x, k, dims=(-2, -1))


def _net(width=4, seed=0, train=False):
    torch.manual_seed(seed)
    net = build_backbone("p4_resnet18", 3, width).double()
    if not train:   # eval: BatchNorm with random running statistics, so they matter
        g = torch.Generator().manual_seed(seed)
        for name, t in net.state_dict().items():
            if "running_mean" in name:
                t.copy_(0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype))
            elif "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5)
        net.eval()
    return net


@pytest.mark.parametrize("size, train", [(8, False), (16, False), (16, True)])
def test_features_rotate_with_the_input(size, train):
    net = _net(width=2, train=train)
    x = torch.rand(3, 3, size, size, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(1))
    z, m = net(x), net.feature_map(x)
    assert (z > 0).float().mean() > 0.2          # alive: most units not cut by the ReLUs
    assert z.shape == (3, 8 * 2 * 16)
    for k in range(1, 4):
        torch.testing.assert_close(net.feature_map(_rot(x, k)), rotate_group_map(m, k),
                                   rtol=0, atol=1e-10)
        torch.testing.assert_close(net(_rot(x, k)), rotate_features(z, k), rtol=0,
                                   atol=1e-10)
        if size >= 16:   # a 2x2 or larger last map: a quarter turn does move features
            assert (net(_rot(x, k)) - z).abs().max() > 1e-3


def test_group_action_is_a_rotation_of_the_map_and_a_shift_of_orientations():
    # the action written out on a hand-made map, independently of rotate_group_map
    y = torch.arange(2 * 4 * 3 * 3, dtype=torch.float64).reshape(1, 8, 3, 3)
    r = rotate_group_map(y, 1)
    for o in range(2):
        for g in range(4):
            torch.testing.assert_close(r[0, 4 * o + g], _rot(y[0, 4 * o + (g - 1) % 4], 1))


def test_each_layer_is_equivariant():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=g)
    lift = LiftingConv(3, 5).double()
    for k in range(4):
        torch.testing.assert_close(lift(_rot(x, k)), rotate_group_map(lift(x), k))
    y = torch.rand(2, 4 * 5, 8, 8, dtype=torch.float64, generator=g)
    for kernel in (1, 3):
        for stride in (1, 2):
            conv = GroupConv(5, 6, kernel, stride).double()
            for k in range(4):
                torch.testing.assert_close(conv(rotate_group_map(y, k)),
                                           rotate_group_map(conv(y), k))


def test_pooled_features_are_invariant():
    net = _net(seed=3)
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(4))
    pooled = net(x).reshape(4, -1, 16).mean(2)          # average over the 4x4 grid
    for k in range(1, 4):
        torch.testing.assert_close(net(_rot(x, k)).reshape(4, -1, 16).mean(2), pooled)


def test_layout_of_understanding_essl_c4resnet18():
    net = build_backbone("p4_resnet18")
    sd = net.state_dict()
    assert sd["conv1.0.weight"].shape == (32, 3, 3, 3)
    assert sd["conv2_x.0.residual_function.0.weight"].shape == (32, 32, 4, 3, 3)
    assert sd["conv3_x.0.shortcut.0.weight"].shape == (64, 32, 4)
    assert sd["conv5_x.1.residual_function.5.bn.running_var"].shape == (256,)
    assert isinstance(net.conv1[1].bn, torch.nn.BatchNorm3d)
    assert net.feature_dim == 4096 == net(torch.rand(2, 3, 32, 32)).shape[1]
    assert "p4_resnet18" in BACKBONES


def test_parameter_budget_is_resnet18s():
    p4, r18 = build_backbone("p4_resnet18"), build_backbone("resnet18_cifar")

    def conv_weights(m):
        return sum(p.numel() for n, p in m.named_parameters() if p.ndim >= 3)

    # every group convolution holds exactly the weights of its ResNet-18 counterpart; the
    # lifting stem (32x3x3x3) half those of the 64-channel stem ...
    assert conv_weights(p4) == conv_weights(r18) - 32 * 3 * 9
    # ... and the BatchNorms have half the channels: 11,163,168 vs 11,168,832 parameters
    bn = count_parameters(r18) - conv_weights(r18)
    assert count_parameters(p4) - conv_weights(p4) == bn // 2
    assert count_parameters(p4) == 11_163_168 and count_parameters(r18) == 11_168_832


def test_train_p4_backbone_on_cpu(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--image-size", "8", "--trans-size", "8",
            "--n-train", "32", "--n-test", "16", "--backbone", "p4_resnet18", "--width", "2",
            "--batch-size", "16", "--knn-k", "5", "--epochs", "1", "--no-progress",
            "--no-linear-probe", "--out", str(out)]
    assert cli.main(argv) == 0
    assert "test_acc/rotation4" in capsys.readouterr().out
    assert cli.main(["inspect", str(out / "checkpoint.pt")]) == 0
    assert "p4_resnet18 (width 2" in capsys.readouterr().out
