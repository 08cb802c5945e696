"""Checkpoint formats of the papers' code that needed more than a prefix: the foreign
networks are re-implemented HERE from the layout of that code (its module structure and
parameter names, written with plain torch.nn, never with essl_info's build_backbone),
saved exactly as its scripts save them, imported, and their features compared.

- Understanding-ESSL "Equivariant Network/train.py" (``model/resnet.py``,
  ``model/group_op.py``): ``resnet18`` and ``C4resnet18``, DataParallel, ``torch.save(
  cnn.state_dict())``; its D4 / E4 variants are refused plainly.
- Understanding-ESSL ``ESSL/models.py`` ``CIFAR_Network`` with a torchvision ResNet-50 whose
  stem is a 3x3 conv without max-pool.
- rdangovs/essl ``imagenet/simclr/main.py`` training file ``{'epoch','model','optimizer'}``
  whose LARS optimizer pickles ``__main__.exclude_bias_and_norm``.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from essl_info import measure
from essl_info.errors import CheckpointError
from essl_info.models.checkpoint import model_from_checkpoint
from essl_info.models.importers import import_foreign

DATA = dict(dataset="rotation-world", n_images=64, n_test=120)
# Equivariant Network/train.py: transforms.Normalize(mean=[x / 255.0 for x in [125.3, 123.0,
# 113.9]], std=[x / 255.0 for x in [63.0, 62.1, 66.7]])
EQ_MEAN = torch.tensor([125.3, 123.0, 113.9]).view(1, 3, 1, 1) / 255.0
EQ_STD = torch.tensor([63.0, 62.1, 66.7]).view(1, 3, 1, 1) / 255.0


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics (means near 0, variances in [0.5, 1.5])."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if "running_mean" in name or name.endswith("bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif "running_var" in name or (t.ndim == 1 and name.endswith("weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t[0].numel()))
    return module.eval()


def _images(n=4, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ====================================================== Understanding-ESSL: resnet18
class EqBasicBlock(nn.Module):
    """``model/resnet.py`` BasicBlock: residual_function = conv, Dropout, BN, ReLU, conv,
    BN; shortcut = Sequential() or (1x1 conv, BN)."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.Dropout(0.2),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.residual_function(x) + self.shortcut(x))


class EqResNet18(nn.Module):
    """``model/resnet.py`` ResNet(BasicBlock, [2, 2, 2, 2]) with the class head ``fc`` and a
    linear rotation head ``projector`` (``forward(x, rot_pred=True)`` in train.py)."""

    def __init__(self, width=64, num_classes=10):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        c = width
        for s, mult in zip(range(2, 6), (1, 2, 4, 8)):
            blocks = [EqBasicBlock(c, width * mult, 1 if s == 2 else 2),
                      EqBasicBlock(width * mult, width * mult)]
            setattr(self, f"conv{s}_x", nn.Sequential(*blocks))
            c = width * mult
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)
        self.projector = nn.Linear(c, 4)

    def features(self, x):
        for name in ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x"):
            x = getattr(self, name)(x)
        return self.avg_pool(x).view(x.size(0), -1)


# ==================================================== Understanding-ESSL: C4resnet18
# group_op.py, written out: orientation g of output channel o is channel 4*o + g; the
# filter for it is the stored one rotated by g quarter turns, its input-orientation axis
# indexed [3,0,1,2] / [2,3,0,1] / [1,2,3,0] for g = 1, 2, 3.
PERMS = [[0, 1, 2, 3], [3, 0, 1, 2], [2, 3, 0, 1], [1, 2, 3, 0]]


class C_4_Conv(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))

    def forward(self, x):
        o, i = self.weight.shape[:2]
        w = torch.zeros(o, 4, i, 3, 3)
        for g in range(4):
            w[:, g] = torch.rot90(self.weight, g, [2, 3])
        return F.conv2d(x, w.reshape(o * 4, i, 3, 3), padding=1)


class C_4_3x3(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 4, 3, 3))
        self.pool = nn.MaxPool2d(2, 2)
        self.stride = stride

    def forward(self, x):
        o, i = self.weight.shape[:2]
        w = torch.zeros(o, 4, i, 4, 3, 3)
        for g in range(4):
            w[:, g] = torch.rot90(self.weight[:, :, PERMS[g]], g, [3, 4])
        x = F.conv2d(x, w.reshape(o * 4, i * 4, 3, 3), padding=1)
        return self.pool(x) if self.stride != 1 else x


class C_4_1x1(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 4))
        self.pool = nn.MaxPool2d(2, 2)
        self.stride = stride

    def forward(self, x):
        o, i = self.weight.shape[:2]
        w = torch.zeros(o, 4, i, 4)
        for g in range(4):
            w[:, g] = self.weight[:, :, PERMS[g]]
        x = F.conv2d(x, w.reshape(o * 4, i * 4, 1, 1))
        return self.pool(x) if self.stride != 1 else x


class C_4_BN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm3d(c)

    def forward(self, x):
        b, c, h, w = x.shape
        return self.bn(x.reshape(b, c // 4, 4, h, w)).reshape(x.size())


class C4Basic(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.residual_function = nn.Sequential(
            C_4_3x3(c_in, c_out, stride), nn.Dropout(0.2), C_4_BN(c_out),
            nn.ReLU(inplace=True), C_4_3x3(c_out, c_out), C_4_BN(c_out))
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(C_4_1x1(c_in, c_out, stride), C_4_BN(c_out))

    def forward(self, x):
        return F.relu(self.residual_function(x) + self.shortcut(x))


class C4ResNet18(nn.Module):
    """C4ResNet(C4Basic, [2, 2, 2, 2]) as Understanding-ESSL uses it: group max-pool (the
    MaxPool3d((4, 1, 1)) of C_4_Pool), no average pool, flatten (256 x 4 x 4 = 4096 at
    width 32 and 32 px), then the class head ``fc`` and the rotation head ``projector``."""

    def __init__(self, width=32, num_classes=10, size=32):
        super().__init__()
        self.conv1 = nn.Sequential(C_4_Conv(3, width), C_4_BN(width), nn.ReLU(inplace=True))
        c = width
        for s, mult in zip(range(2, 6), (1, 2, 4, 8)):
            blocks = [C4Basic(c, width * mult, 1 if s == 2 else 2),
                      C4Basic(width * mult, width * mult)]
            setattr(self, f"conv{s}_x", nn.Sequential(*blocks))
            c = width * mult
        self.group_pool = nn.MaxPool3d((4, 1, 1), (4, 1, 1))
        d = c * (size // 8) ** 2
        self.fc = nn.Linear(d, num_classes)
        self.projector = nn.Linear(d, 4)

    def features(self, x):
        for name in ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x"):
            x = getattr(self, name)(x)
        b, c, h, w = x.shape
        return self.group_pool(x.reshape(b, c // 4, 4, h, w)).squeeze(2).reshape(b, -1)


def _save_data_parallel(net: nn.Module, path):
    """train.py: cnn = nn.DataParallel(cnn); torch.save(cnn.state_dict(), path)."""
    torch.save(nn.DataParallel(net).state_dict(), path)
    return path


def _features_match(ckpt, reference: nn.Module, x, mean, std, atol=1e-5):
    model = model_from_checkpoint(ckpt)
    with torch.no_grad():
        ref = reference.features((x - mean) / std)
        ours = model.features(x)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=atol)


def test_understanding_essl_resnet18(tmp_path):
    net = _randomise(EqResNet18(width=8), 0)
    path = _save_data_parallel(net, tmp_path / "cifar10_resnet18.pt")
    assert next(iter(torch.load(path))).startswith("module.conv1.0.")
    ckpt = import_foreign(path, arch="resnet18_cifar", image_size=32, **DATA)
    assert ckpt["train"]["format"] == "wang-resnet18"
    assert set(ckpt["train"]["skipped"]) == {"fc.", "projector."}
    _features_match(ckpt, net, _images(), EQ_MEAN, EQ_STD)


def test_understanding_essl_c4resnet18(tmp_path):
    net = _randomise(C4ResNet18(width=8), 1)
    path = _save_data_parallel(net, tmp_path / "cifar10_C4resnet18.pt")
    sd = torch.load(path)
    assert sd["module.conv2_x.0.residual_function.0.weight"].shape == (8, 8, 4, 3, 3)
    ckpt = import_foreign(path, arch="p4_resnet18", image_size=32, **DATA)
    assert ckpt["train"]["format"] == "wang-c4resnet18"
    assert ckpt["model"]["feature_dim"] == 64 * 16
    _features_match(ckpt, net, _images(), EQ_MEAN, EQ_STD)
    # the same file through measure --arch: the features of a p4 network rotate by a
    # permutation of coordinates, an orthogonal map, so the Wahba error and gamma_f are 0
    rep = measure(path, arch="p4_resnet18", dataset="rotation-world",
                  quantities=["Wahba", "gamma_f"], n_images=100,  # measure's minimum
                  dataset_params={"image_size": 32, "n_images": 64, "n_test": 120})
    assert rep.provenance["imported"]
    for q in ("Wahba", "gamma_f"):
        e = rep.get(q, "wahba-svd")
        assert abs(e.value) < 1e-5 and e.ci[1] < 1e-5 and e.n == 100
    # another backbone cannot hold it: said plainly, with the one that can
    with pytest.raises(CheckpointError, match="import it with --arch p4_resnet18"):
        import_foreign(path, arch="resnet18_cifar", image_size=32, **DATA)


@pytest.mark.parametrize("edit, what", [
    (lambda sd: sd.update({"conv2_x.0.residual_function.0.weight":
                           torch.zeros(8, 8, 8, 3, 3)}), "D4resnet18"),
    (lambda sd: sd.update({"conv2_x.0.residual_function.4.v.0.weight":
                           torch.zeros(8, 8, 4)}), "E4C4resnet18"),
])
def test_understanding_essl_d4_and_e4_are_refused_plainly(tmp_path, edit, what):
    sd = dict(C4ResNet18(width=8).state_dict())
    edit(sd)
    path = tmp_path / "other.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    with pytest.raises(CheckpointError, match=f"{what}.*no backbone for it, so it cannot "
                                              f"be imported"):
        import_foreign(path, arch="p4_resnet18", image_size=32, **DATA)


def test_unknown_layouts_are_refused_without_inviting_renames(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"trunk.conv.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError) as err:
        import_foreign(path, arch="resnet18_cifar", image_size=32, **DATA)
    msg = str(err.value)
    assert "cannot be imported" in msg and "\n" not in msg and "rename" not in msg


# ============================================ Understanding-ESSL CIFAR_Network, resnet50
class TVBottleneck(nn.Module):
    """torchvision.models.resnet.Bottleneck (stride on the 3x3 conv)."""

    def __init__(self, c_in, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class TVResNet50(nn.Module):
    """torchvision resnet50 (conv1, bn1, relu, maxpool, layer1-4 of 3/4/6/3 Bottlenecks,
    avgpool, fc) at base width ``w``; ``cifar=True`` is CIFAR_Network's surgery: conv1 =
    Conv2d(3, 64, 3, 1, 1), maxpool = Identity, fc = Identity."""

    def __init__(self, w=64, cifar=True):
        super().__init__()
        self.conv1 = (nn.Conv2d(3, w, 3, 1, 1, bias=False) if cifar
                      else nn.Conv2d(3, w, 7, 2, 3, bias=False))
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
        c = w
        for i, n in enumerate((3, 4, 6, 3)):
            planes = w * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(TVBottleneck(c, planes, 2 if (i > 0 and j == 0) else 1))
                c = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()
        self.feature_dim = c

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    features = forward


class CIFARNetwork(nn.Module):
    """ESSL/models.py CIFAR_Network: enc, linear, projector (Linear-ReLU-Linear)."""

    def __init__(self, w=8):
        super().__init__()
        self.enc = TVResNet50(w)
        d = self.enc.feature_dim
        self.linear = nn.Linear(d, 10)
        self.projector = nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, 4))


def test_understanding_essl_cifar_network_resnet50(tmp_path):
    net = _randomise(CIFARNetwork(), 2)
    path = tmp_path / "resnet50.pth"
    torch.save(net.state_dict(), path)
    ckpt = import_foreign(path, arch="resnet50_cifar", image_size=16, **DATA)
    assert ckpt["train"]["format"] == "wang-essl"
    _features_match(ckpt, net.enc, _images(size=16), torch.zeros(1, 3, 1, 1),
                    torch.ones(1, 3, 1, 1))


# ============================================= rdangovs/essl ImageNet training file (LARS)
def exclude_bias_and_norm(p):
    return p.ndim == 1


class LARS(torch.optim.Optimizer):
    """rdangovs/essl imagenet/simclr/main.py LARS: the two filters are functions kept in
    the defaults, hence in every param_group of the state dict."""

    def __init__(self, params, lr, weight_decay=0, momentum=0.9, eta=0.001,
                 weight_decay_filter=None, lars_adaptation_filter=None):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      eta=eta, weight_decay_filter=weight_decay_filter,
                                      lars_adaptation_filter=lars_adaptation_filter))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                if g["weight_decay_filter"] is None or not g["weight_decay_filter"](p):
                    dp = dp.add(p, alpha=g["weight_decay"])
                if g["lars_adaptation_filter"] is None or not g["lars_adaptation_filter"](p):
                    pn, un = torch.norm(p), torch.norm(dp)
                    q = torch.where(pn > 0., torch.where(un > 0, (g["eta"] * pn / un), 1.0),
                                    1.0)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


class ImageNetSimCLR(nn.Module):
    """imagenet/simclr/main.py SimCLR: torchvision resnet50 backbone (fc = Identity),
    projector Linear(no bias)-BN-ReLU ... Linear(no bias)-BN, online linear head."""

    def __init__(self, w=8, hidden=32, out=16):
        super().__init__()
        self.backbone = TVResNet50(w, cifar=False)
        d = self.backbone.feature_dim
        self.projector = nn.Sequential(
            nn.Linear(d, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(True),
            nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(True),
            nn.Linear(hidden, out, bias=False), nn.BatchNorm1d(out))
        self.online_head = nn.Linear(d, 1000)


def test_essl_imagenet_training_file_with_lars(tmp_path, monkeypatch):
    # the function lives in the script's __main__, so the pickle names it there
    monkeypatch.setattr(exclude_bias_and_norm, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "exclude_bias_and_norm",
                        exclude_bias_and_norm, raising=False)
    net = _randomise(ImageNetSimCLR(), 3)
    opt = LARS(net.parameters(), lr=1e-4, weight_decay=1e-6,
               weight_decay_filter=exclude_bias_and_norm,
               lars_adaptation_filter=exclude_bias_and_norm)
    net.train()
    net.backbone(_images(2, 16)).sum().backward()
    opt.step()
    net.eval()
    # main.py: state = dict(epoch=epoch + 1, model=model.state_dict(),
    # optimizer=optimizer.state_dict()) of the DDP model; at the end the final file
    # torch.save(dict(backbone=..., projector=..., head=...))
    training = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 5, "model": nn.DataParallel(net).state_dict(),
                "optimizer": opt.state_dict()}, training)
    assert b"exclude_bias_and_norm" in training.read_bytes()
    with pytest.raises(Exception, match="exclude_bias_and_norm"):
        torch.load(training, weights_only=True)          # what torch alone says
    final = tmp_path / "resnet50.pth"
    torch.save({"backbone": net.backbone.state_dict(), "projector": net.projector.state_dict(),
                "head": net.online_head.state_dict()}, final)
    monkeypatch.delattr(sys.modules["__main__"], "exclude_bias_and_norm")

    a = import_foreign(training, arch="resnet50", image_size=16, **DATA)
    b = import_foreign(final, arch="resnet50", image_size=16, **DATA)
    assert a["progress"]["epoch"] == 5 and a["train"]["format"] == "essl-imagenet"
    x = _images(3, 16)
    ma, mb = model_from_checkpoint(a), model_from_checkpoint(b)
    with torch.no_grad():
        assert torch.equal(ma.features(x), mb.features(x))
        assert torch.equal(ma.project(ma.features(x)), mb.project(mb.features(x)))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    _features_match(a, net.backbone, x, mean, std)


def test_other_code_in_a_pickle_is_still_refused(tmp_path, monkeypatch):
    def exclude_everything(p):
        return True

    monkeypatch.setattr(exclude_everything, "__module__", "__main__")
    monkeypatch.setattr(exclude_everything, "__qualname__", "exclude_everything")
    monkeypatch.setattr(sys.modules["__main__"], "exclude_everything", exclude_everything,
                        raising=False)
    net = ImageNetSimCLR()
    opt = LARS(net.parameters(), lr=0.1, weight_decay_filter=exclude_everything)
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 1, "model": net.state_dict(), "optimizer": opt.state_dict()}, path)
    with pytest.raises(CheckpointError, match="GLOBAL __main__.exclude_everything"):
        import_foreign(path, arch="resnet50", image_size=32, **DATA)
