"""Backbones and heads: torchvision layout, shapes, specs as data, gradient reversal."""

from __future__ import annotations

import pytest
import torch

from essl_info.models.networks import (BACKBONES, ESSLModel, build_backbone, build_mlp,
                              count_parameters, grad_reverse, mlp_spec, model_spec)

# torchvision's published parameter counts (resnet18: 11,689,512; resnet50: 25,557,032)
# minus the 1000-way fc layer (512*1000+1000 and 2048*1000+1000).
TORCHVISION_NO_FC = {"resnet18": 11_689_512 - 513_000, "resnet50": 25_557_032 - 2_049_000}


def _spec(**kw):
    base = dict(backbone="small_cnn", width=4, in_channels=1, image_size=8, n_classes=10,
                transformations=[("rotation4", 4), ("hflip", 2)], mean=[0.3], std=[0.2])
    base.update(kw)
    return model_spec(**base)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_parameter_counts_match_torchvision(name):
    assert count_parameters(build_backbone(name)) == TORCHVISION_NO_FC[name]


def test_resnet18_cifar_differs_only_in_the_stem():
    # 3x3x3x64 stem instead of 7x7x3x64
    expected = TORCHVISION_NO_FC["resnet18"] - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64
    b = build_backbone("resnet18_cifar")
    assert count_parameters(b) == expected
    assert isinstance(b.maxpool, torch.nn.Identity)


def test_torchvision_state_dict_names():
    keys = list(build_backbone("resnet18_cifar").state_dict())
    assert len(keys) == 120  # torchvision resnet18: 122 entries, minus fc.weight, fc.bias
    for k in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
              "layer2.0.downsample.0.weight", "layer2.0.downsample.1.num_batches_tracked",
              "layer4.1.bn2.bias"):
        assert k in keys
    assert not any(k.startswith("fc.") for k in keys)
    keys50 = build_backbone("resnet50").state_dict()
    assert len(keys50) == 318 and "layer3.5.conv3.weight" in keys50
    assert "layer1.0.downsample.0.weight" in keys50  # 64 -> 256 channels in stage 1


@pytest.mark.parametrize("size", [8, 16, 32])
def test_small_cnn_shapes(size):
    b = build_backbone("small_cnn", in_channels=3, width=8)
    assert b(torch.rand(2, 3, size, size)).shape == (2, 32)


def test_backbone_registry_and_errors():
    assert {"small_cnn", "resnet18_cifar", "resnet18", "resnet50"} <= set(BACKBONES)
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        build_backbone("vgg")
    with pytest.raises(ValueError, match="width"):
        build_backbone("small_cnn", width=0)


def test_heads_as_data():
    proj = build_mlp(mlp_spec([8, 16, 4], "batch", "batch_noaffine"))
    kinds = [type(m).__name__ for m in proj]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert proj[0].bias is None and proj[3].bias is None   # BatchNorm follows: no bias
    assert proj[4].weight is None                          # affine=False, as E-SSL
    head = build_mlp(mlp_spec([8, 16, 16, 4], "layer"))
    assert [type(m).__name__ for m in head].count("LayerNorm") == 2
    assert head[-1].bias is not None and head(torch.rand(3, 8)).shape == (3, 4)
    with pytest.raises(ValueError, match="norm"):
        mlp_spec([4, 2], norm="group")
    with pytest.raises(ValueError, match="dims"):
        mlp_spec([4])


def test_model_rebuilds_from_spec_alone():
    torch.manual_seed(0)
    a = ESSLModel(_spec(pred_dim=8, class_info="add")).eval()
    b = ESSLModel(a.spec)
    b.load_state_dict(a.state_dict(), strict=True)
    b.eval()
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(a.features(x), b.features(x))
    assert torch.equal(a.project(a.features(x)), b.project(b.features(x)))
    assert not any(k in a.state_dict() for k in ("mean", "std"))  # the spec holds them
    assert a.transformation_names == ["rotation4", "hflip"]


def test_features_normalise_inside():
    torch.manual_seed(0)
    m = ESSLModel(_spec()).eval()
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(m.features(x), m.backbone((x - 0.3) / 0.2))
    with pytest.raises(ValueError, match=r"\(n, 1, H, W\)"):
        m.features(torch.rand(4, 3, 8, 8))


def test_grad_reverse():
    x = torch.randn(3, 2, requires_grad=True)
    y = grad_reverse(x, 2.0)
    assert torch.equal(y, x)
    (y * torch.arange(6.0).view(3, 2)).sum().backward()
    assert torch.equal(x.grad, -2.0 * torch.arange(6.0).view(3, 2))


def test_eliminate_head_reverses_the_backbone_gradient():
    torch.manual_seed(0)
    add = ESSLModel(_spec(class_info="add"))
    elim = ESSLModel(_spec(class_info="eliminate"))
    state = {k: v for k, v in add.state_dict().items()}
    # same weights: the eliminate head's layers sit one index later (after GradReverse)
    remap = {}
    for k, v in state.items():
        if k.startswith("class_head."):
            i, rest = k.split(".", 2)[1:]
            remap[f"class_head.{int(i) + 1}.{rest}"] = v
        else:
            remap[k] = v
    elim.load_state_dict(remap, strict=True)
    x = torch.rand(8, 1, 8, 8)
    grads = []
    for m in (add, elim):
        m.zero_grad()
        m.class_head(m.features(x)).logsumexp(1).sum().backward()
        grads.append(m.backbone.conv1.weight.grad.clone())
    assert torch.allclose(grads[0], -grads[1], atol=1e-6)


def test_frozen_transformation_branch_leaves_backbone_alone():
    torch.manual_seed(0)
    m = ESSLModel(_spec()).train()
    before = m.backbone.bn1.running_mean.clone()
    x_all = torch.rand(16, 1, 8, 8)
    out = m([], {"rotation4": x_all}, probe_from="trans", trans_grad=False)
    assert torch.equal(m.backbone.bn1.running_mean, before)   # no BN statistics either
    out["trans_logits"]["rotation4"].sum().backward()
    assert m.backbone.conv1.weight.grad is None
    assert m.heads["rotation4"][0].weight.grad is not None
    assert out["probe_logits"].shape == (4, 10)    # the label-0 copies: 16 / K=4
