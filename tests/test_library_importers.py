"""Checkpoints of solo-learn, lightly, torchvision and timm, each written here the way the
library lays it out, with module code written in this file from the libraries' public
sources (torchvision's ResNet names, lightly's ResNetGenerator and SplitBatchNorm,
solo-learn's BaseMethod) and not from essl_info's networks; imported key for key, the
features must equal the foreign module's own forward pass."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from essl_info.cli import main
from essl_info.errors import CheckpointError
from essl_info.models.checkpoint import model_from_checkpoint
from essl_info.models.importers import IMAGENET_NORMALISATION, import_foreign
from essl_info.models.library_importers import SOLO_CIFAR_NORMALISATION

DATA = dict(dataset="rotation-world", image_size=16, n_images=64, n_test=24)
W = 8   # narrow: the layouts are the same at any width, the tests stay fast


# ============================================== torchvision.models.resnet, by its names
class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class TVBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)   # v1.5
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class TVResNet(nn.Module):
    """torchvision's ResNet (conv1 7x7/2, bn1, relu, maxpool, layer1-4, avgpool, fc), with
    the base width as a parameter."""

    def __init__(self, block, layers, width=W, num_classes=1000):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        down = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride,
                                           bias=False), nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, down)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tv_resnet18():
    return TVResNet(TVBasicBlock, [2, 2, 2, 2])


def tv_resnet50():
    return TVResNet(TVBottleneck, [3, 4, 6, 3])


# ========================== lightly.models.resnet (ResNetGenerator) and SplitBatchNorm
class SplitBatchNorm(nn.BatchNorm2d):
    """lightly.models.batchnorm.SplitBatchNorm: splits·C running statistics; entering eval
    mode averages them over splits, eval uses the first C."""

    def __init__(self, num_features, num_splits):
        super().__init__(num_features)
        self.num_splits = num_splits
        self.register_buffer("running_mean", torch.zeros(num_features * num_splits))
        self.register_buffer("running_var", torch.ones(num_features * num_splits))

    def train(self, mode=True):
        if self.training and not mode:
            for name in ("running_mean", "running_var"):
                v = getattr(self, name).view(self.num_splits, self.num_features)
                setattr(self, name, v.mean(0).repeat(self.num_splits))
        return super().train(mode)

    def forward(self, x):
        assert not self.training, "only eval is compared here"
        return F.batch_norm(x, self.running_mean[:self.num_features],
                            self.running_var[:self.num_features], self.weight, self.bias,
                            False, 0.0, self.eps)


def _bn(c, splits):
    return SplitBatchNorm(c, splits) if splits else nn.BatchNorm2d(c)


class LBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, splits=0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = _bn(planes, splits)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _bn(planes, splits)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          _bn(planes, splits))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class LightlyResNet(nn.Module):
    """lightly.models.ResNetGenerator('resnet-18'): conv1 3x3/1, bn1, layer1-4, linear;
    its ReLU after bn1 is functional (in forward), not a child module."""

    def __init__(self, width=W, splits=0):
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = _bn(width, splits)
        self.layer1 = self._make_layer(width, 1, splits)
        self.layer2 = self._make_layer(width * 2, 2, splits)
        self.layer3 = self._make_layer(width * 4, 2, splits)
        self.layer4 = self._make_layer(width * 8, 2, splits)
        self.linear = nn.Linear(width * 8, 10)

    def _make_layer(self, planes, stride, splits):
        blocks = []
        for s in (stride, 1):
            blocks.append(LBasicBlock(self.in_planes, planes, s, splits))
            self.in_planes = planes
        return nn.Sequential(*blocks)


def _lightly_head(d, out=16):
    """lightly.models.modules.heads.SimCLRProjectionHead: ``layers`` Sequential."""
    head = nn.Module()
    head.layers = nn.Sequential(nn.Linear(d, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                nn.Linear(32, out))
    return head


# ============================================================== solo-learn's BaseMethod
class SoloMoCo(nn.Module):
    """solo/methods/base.py BaseMomentumMethod + mocov2plus.py: torchvision backbone with
    fc = Identity (and on CIFAR conv1 = Conv2d(3, 64, 3, 1, padding=2), maxpool =
    Identity), online classifier, projector, momentum copies and the queue."""

    def __init__(self, cifar, prefix="backbone"):
        super().__init__()
        backbone = tv_resnet18()
        backbone.fc = nn.Identity()
        if cifar:
            backbone.conv1 = nn.Conv2d(3, W, kernel_size=3, stride=1, padding=2, bias=False)
            backbone.maxpool = nn.Identity()
        setattr(self, prefix, backbone)
        d = W * 8
        self.classifier = nn.Linear(d, 10)
        self.projector = nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, 16))
        setattr(self, f"momentum_{prefix}", copy.deepcopy(backbone))
        self.momentum_projector = copy.deepcopy(self.projector)
        self.register_buffer("queue", torch.randn(2, 16, 8))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))


# ================================================================================ utils
def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)   # BN variances stay > 0
    return module


def _lightning(state_dict, epoch=3):
    """What PyTorch Lightning's trainer.save_checkpoint writes around a state dict."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(3))], lr=0.1, momentum=0.9)
    opt.state[opt.param_groups[0]["params"][0]] = {"momentum_buffer": torch.ones(3)}
    return {"epoch": epoch, "global_step": 120, "pytorch-lightning_version": "2.1.0",
            "state_dict": dict(state_dict), "loops": {"fit_loop": {"epoch_progress": {
                "total": {"ready": 4}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val/acc1', 'mode': 'max'}": {
                "best_model_score": torch.tensor(0.5), "best_model_path": "x.ckpt"}},
            "optimizer_states": [opt.state_dict()],
            "lr_schedulers": [{"base_lrs": [0.1], "last_epoch": 3}],
            "MixedPrecision": {"scale": torch.tensor(65536.0), "_growth_tracker": 7}}


def _save(obj, tmp_path, name="lib.ckpt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _assert_features(ckpt, forward, normalisation, size=16):
    model = model_from_checkpoint(ckpt)
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(9))
    mean = torch.tensor(normalisation[0]).view(1, 3, 1, 1)
    std = torch.tensor(normalisation[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = forward((x - mean) / std).flatten(1)
        torch.testing.assert_close(model.features(x), ref)
    assert model.spec["mean"] == pytest.approx(list(normalisation[0]))


# ================================================================================ tests
@pytest.mark.parametrize("cifar, built", [(True, "resnet18_cifar_pad2"), (False, "resnet18")])
def test_solo_learn_lightning_checkpoint(tmp_path, cifar, built):
    net = _randomise(SoloMoCo(cifar), 0).eval()
    path = _save(_lightning(net.state_dict()), tmp_path)
    ckpt = import_foreign(path, arch="resnet18", **DATA)
    tr = ckpt["train"]
    assert tr["format"] == "solo-learn" and tr["arch"] == built
    assert tr["imported_parts"] == ["backbone"] and ckpt["progress"]["epoch"] == 3
    assert {"classifier.", "projector.", "momentum_backbone.", "queue", "optimizer_states.",
            "callbacks.", "MixedPrecision"} <= set(tr["skipped"])
    norm = SOLO_CIFAR_NORMALISATION if cifar else IMAGENET_NORMALISATION
    _assert_features(ckpt, net.backbone, norm)


def test_solo_learn_padding_2_matters(tmp_path):
    """The CIFAR stem's padding is invisible in the weights; reading it as padding 1 (our
    resnet18_cifar) would give other features: the layout must pick it."""
    net = _randomise(SoloMoCo(True), 1).eval()
    path = _save(_lightning(net.state_dict()), tmp_path)
    ckpt = import_foreign(path, arch="resnet18", **DATA)
    plain = copy.deepcopy(ckpt)
    plain["model"]["backbone"] = "resnet18_cifar"
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(model_from_checkpoint(ckpt).features(x),
                                  model_from_checkpoint(plain).features(x))


def test_solo_learn_legacy_encoder_prefix(tmp_path):
    net = _randomise(SoloMoCo(True, prefix="encoder"), 2).eval()
    path = _save(_lightning(net.state_dict()), tmp_path)
    ckpt = import_foreign(path, arch="resnet18", **DATA)
    assert ckpt["train"]["format"] == "solo-learn-legacy"
    _assert_features(ckpt, net.encoder, SOLO_CIFAR_NORMALISATION)


def test_lightly_torchvision_sequential_and_tutorial_file(tmp_path):
    resnet = tv_resnet18()
    model = nn.Module()
    model.backbone = nn.Sequential(*list(resnet.children())[:-1])   # lightly's examples
    model.projection_head = _lightly_head(W * 8)
    model.backbone_momentum = copy.deepcopy(model.backbone)
    _randomise(model, 3).eval()
    ckpt = import_foreign(_save(_lightning(model.state_dict()), tmp_path), arch="resnet18",
                          **DATA)
    assert ckpt["train"]["format"] == "lightly"
    _assert_features(ckpt, model.backbone, IMAGENET_NORMALISATION)
    tutorial = {"resnet18_parameters": model.backbone.state_dict()}
    ckpt = import_foreign(_save(tutorial, tmp_path, "model.pth"), arch="resnet18", **DATA)
    assert ckpt["train"]["format"] == "lightly-tutorial"
    _assert_features(ckpt, model.backbone, IMAGENET_NORMALISATION)


@pytest.mark.parametrize("splits", [0, 4])
def test_lightly_cifar_generator_with_split_batchnorm(tmp_path, splits):
    resnet = LightlyResNet(splits=splits)
    model = nn.Module()
    model.backbone = nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1))
    model.projection_head = _lightly_head(W * 8)
    _randomise(model, 4 + splits)          # per-split statistics differ, saved in train mode
    path = _save(_lightning(model.state_dict()), tmp_path)
    ckpt = import_foreign(path, arch="resnet18", **DATA)
    assert ckpt["train"]["format"] == "lightly-cifar"
    assert ckpt["train"]["arch"] == "resnet18_cifar_norelu"
    _assert_features(ckpt, model.backbone.eval(), IMAGENET_NORMALISATION)


def test_lightly_benchmark_resnet50(tmp_path):
    model = nn.Module()
    model.backbone = tv_resnet50()
    model.backbone.fc = nn.Identity()
    model.projection_head = _lightly_head(W * 32)
    model.online_classifier = nn.Module()
    model.online_classifier.classification_head = nn.Linear(W * 32, 10)
    _randomise(model, 5).eval()
    ckpt = import_foreign(_save(_lightning(model.state_dict()), tmp_path), arch="resnet50",
                          **DATA)
    assert ckpt["train"]["format"] == "lightly-benchmark"
    _assert_features(ckpt, model.backbone, IMAGENET_NORMALISATION)


@pytest.mark.parametrize("arch, fmt", [("resnet50", "torchvision"),
                                       ("torchvision:resnet50", "torchvision"),
                                       ("timm:resnet50", "timm")])
def test_plain_torchvision_and_timm_state_dicts(tmp_path, arch, fmt):
    net = _randomise(tv_resnet50(), 6).eval()
    ckpt = import_foreign(_save(net.state_dict(), tmp_path, "resnet50.pth"), arch=arch, **DATA)
    assert ckpt["train"]["format"] == fmt
    assert ckpt["train"]["skipped"] == {"fc.": "ImageNet classifier (fc)"}
    trunk = copy.deepcopy(net)
    trunk.fc = nn.Identity()
    _assert_features(ckpt, trunk, IMAGENET_NORMALISATION)


def test_cli_measures_a_torchvision_state_dict(tmp_path, capsys):
    net = _randomise(tv_resnet18(), 7).eval()
    path = _save(net.state_dict(), tmp_path, "resnet18.pth")
    code = main(["measure", str(path), "--arch", "torchvision:resnet18", "--dataset",
                 "rotation-world", "--data-param", "n_images=240", "--data-param",
                 "n_test=120", "--quantity", "I(A;C)", "--quiet", "--json"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert '"imported": true' in out and '"rotation4"' in out


@pytest.mark.parametrize("make, arch, match", [
    (lambda: {"patch_embed.proj.weight": torch.ones(4, 3, 2, 2), "cls_token": torch.ones(1)},
     "resnet18", r"unrecognised checkpoint layout .*solo-learn.*lightly.*torchvision"),
    (lambda: _lightning({**_randomise(SoloMoCo(True), 8).state_dict(),
                         "dino_loss_func.center": torch.ones(16)}),
     "resnet18", r"unexpected keys for the solo-learn layout .*dino_loss_func\.center"),
    (lambda: _lightning(_randomise(SoloMoCo(False), 8).state_dict()),
     "resnet50", r"as resnet50 does not match \(missing keys: layer1\.0\.bn3.*check --arch"),
    (lambda: _lightning(_randomise(SoloMoCo(False), 8).state_dict()),
     "small_cnn", r"ResNet-18 or ResNet-50; pass --arch resnet18"),
    (lambda: tv_resnet18().state_dict(), "solo-learn:resnet18",
     r"is not a solo-learn file .*no backbone\.conv1\.weight, classifier\.weight"),
    (lambda: tv_resnet18().state_dict(), "mmpretrain:resnet18",
     r"unknown layout 'mmpretrain' .*known: .*torchvision"),
    (lambda: {**{k: v for k, v in tv_resnet18().state_dict().items() if k != "conv1.weight"},
              "conv1.weight": torch.ones(W, 3, 3, 3)},
     "resnet18", r"conv1 is 3x3, not torchvision's 7x7; .*torchvision:resnet18_cifar"),
    (lambda: {"backbone": nn.Sequential(*list(tv_resnet18().children())[:-1]).state_dict(),
              "extra": {"w": torch.ones(2)}},
     "resnet18", r"unexpected keys for the lightly layout .*: extra\.w$"),
])
def test_unsupported_layouts_fail_in_one_line_naming_what_is_supported(tmp_path, make, arch,
                                                                       match):
    path = _save(make(), tmp_path, "x.pth")
    with pytest.raises(CheckpointError, match=match) as info:
        import_foreign(path, arch=arch, **DATA)
    assert "\n" not in str(info.value)
