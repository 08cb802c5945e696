"""Foreign checkpoints: state dicts laid out as the papers' code lays them out (the module
structure of rdangovs/essl and kaotty/Understanding-ESSL rebuilt here), imported key for
key, and every way a file can fail to match."""

import argparse

import pytest
import torch
from torch import nn

from essl_info import measure
from essl_info.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from essl_info.errors import CheckpointError
from essl_info.models.importers import CIFAR10_NORMALISATION, IMAGENET_NORMALISATION, import_foreign
from essl_info.models.networks import build_backbone, build_mlp, mlp_spec

DATA = dict(dataset="rotation-world", image_size=16, n_images=64, n_test=96)
W = 8  # a narrow ResNet keeps the test fast; the layout is the same at any width


class ESSLBranch(nn.Module):
    """rdangovs/essl cifar10/main.py ``Branch`` (SimCLR): encoder, ProjectionMLP with a
    ``net`` Sequential, ``net = Sequential(encoder, projector)`` sharing both modules, and
    the rotation head ``predictor2``."""

    def __init__(self):
        super().__init__()
        self.encoder = build_backbone("resnet18_cifar", 3, W)
        d = self.encoder.feature_dim
        proj = nn.Module()
        proj.net = build_mlp(mlp_spec([d, 32, 32], "batch", "batch_noaffine"))
        self.projector = proj
        self.net = nn.Sequential(self.encoder, self.projector)
        self.predictor2 = build_mlp(mlp_spec([d, 32, 32, 4], "layer"))


class WangCIFARNetwork(nn.Module):
    """kaotty/Understanding-ESSL ESSL/models.py ``CIFAR_Network``: ``enc`` (torchvision
    ResNet-18, 3x3 stem, no max-pool, fc = Identity), ``linear``, and ``projector`` (the
    transformation-prediction head: Linear-ReLU-Linear to K logits)."""

    def __init__(self):
        super().__init__()
        self.enc = build_backbone("resnet18_cifar", 3, W)
        d = self.enc.feature_dim
        self.linear = nn.Linear(d, 10)
        self.projector = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 4))


class ESSLImageNetSimCLR(nn.Module):
    """rdangovs/essl imagenet/simclr/main.py ``SimCLR``: torchvision ResNet-50 backbone,
    [d, h, h, out] BN projector (BatchNorm after the last Linear), online head, rotation
    head."""

    def __init__(self):
        super().__init__()
        self.backbone = build_backbone("resnet50", 3, W)
        d = self.backbone.feature_dim
        self.projector = build_mlp(mlp_spec([d, 32, 32, 16], "batch", "batch"))
        self.online_head = nn.Linear(d, 1000)
        self.rotation_projector = nn.Sequential(nn.Linear(d, 32), nn.LayerNorm(32),
                                                nn.Linear(32, 4))


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)   # BN variances stay > 0
    return module.eval()


def _save(obj, tmp_path, name="foreign.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _images(n=5, seed=0):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _check_features(ckpt, backbone, normalisation, projector=None):
    model = model_from_checkpoint(ckpt)
    x = _images()
    mean = torch.tensor(normalisation[0]).view(1, 3, 1, 1)
    std = torch.tensor(normalisation[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = backbone.eval()((x - mean) / std)
        torch.testing.assert_close(model.features(x), ref)
        if projector is not None:
            torch.testing.assert_close(model.project(ref), projector.eval()(ref))


def test_essl_cifar_layout(tmp_path):
    branch = _randomise(ESSLBranch(), 0)
    path = _save({"epoch": 7, "state_dict": branch.state_dict()}, tmp_path)
    ckpt = import_foreign(path, arch="resnet18_cifar", **DATA)
    assert ckpt["train"]["format"] == "essl-cifar"
    assert ckpt["train"]["imported_parts"] == ["backbone", "projector"]
    assert ckpt["train"]["skipped"] == {"predictor2.": "rotation-prediction head"}
    assert ckpt["progress"]["epoch"] == 7
    _check_features(ckpt, branch.encoder, CIFAR10_NORMALISATION, branch.projector.net)
    # the result is a checkpoint of this library's schema: it saves and reloads as one
    again = load_checkpoint(save_checkpoint(ckpt, tmp_path / "imported.pt"))
    _check_features(again, branch.encoder, CIFAR10_NORMALISATION, branch.projector.net)


def test_ddp_module_prefixes_are_removed(tmp_path):
    branch = _randomise(ESSLBranch(), 1)
    sd = {f"module.{k}": v for k, v in branch.state_dict().items()}
    ckpt = import_foreign(_save({"epoch": 2, "state_dict": sd}, tmp_path),
                          arch="resnet18_cifar", **DATA)
    _check_features(ckpt, branch.encoder, CIFAR10_NORMALISATION)


def test_wang_layout_has_no_projector(tmp_path):
    net = _randomise(WangCIFARNetwork(), 2)
    path = _save(net.state_dict(), tmp_path)
    ckpt = import_foreign(path, arch="resnet18_cifar", **DATA)
    assert ckpt["train"]["format"] == "wang-essl"
    assert ckpt["train"]["imported_parts"] == ["backbone"]
    assert set(ckpt["train"]["skipped"]) == {"projector.", "linear."}
    _check_features(ckpt, net.enc, ((0.0,) * 3, (1.0,) * 3))   # ToTensor() only
    with pytest.raises(ValueError, match="imported without a projector"):
        measure(path, arch="resnet18_cifar", layer="projector", dataset="rotation-world",
                dataset_params={"image_size": 16, "n_images": 64, "n_test": 96})


def test_essl_imagenet_final_and_training_files(tmp_path):
    net = _randomise(ESSLImageNetSimCLR(), 3)
    final = {"backbone": net.backbone.state_dict(), "projector": net.projector.state_dict(),
             "head": net.online_head.state_dict()}
    ckpt = import_foreign(_save(final, tmp_path, "resnet50.pth"), arch="resnet50", **DATA)
    assert ckpt["train"]["format"] == "essl-imagenet"
    assert ckpt["model"]["projector"]["dims"] == [net.backbone.feature_dim, 32, 32, 16]
    _check_features(ckpt, net.backbone, IMAGENET_NORMALISATION, net.projector)
    # the training checkpoint: DDP module, optimizer state with tensors, epoch
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    net.backbone(_images(2)).sum().backward()
    opt.step()
    net.eval()
    training = {"epoch": 4, "model": {f"module.{k}": v for k, v in net.state_dict().items()},
                "optimizer": opt.state_dict()}
    ckpt = import_foreign(_save(training, tmp_path, "checkpoint.pth"), arch="resnet50",
                          **DATA)
    assert ckpt["progress"]["epoch"] == 4
    _check_features(ckpt, net.backbone, IMAGENET_NORMALISATION, net.projector)


def _branch_sd():
    return dict(_randomise(ESSLBranch(), 4).state_dict())


@pytest.mark.parametrize("edit, arch, match", [
    (lambda sd: sd.update({"extra.weight": torch.ones(1)}), "resnet18_cifar",
     r"unexpected keys for the essl-cifar layout .*: extra\.weight"),
    (lambda sd: [sd.pop(k) for k in ("encoder.layer4.1.bn2.weight",
                                     "net.0.layer4.1.bn2.weight")],
     "resnet18_cifar", r"missing keys: layer4\.1\.bn2\.weight"),
    (lambda sd: None, "resnet50", r"as resnet50 does not match .*check --arch"),
    (lambda sd: sd.update({"net.0.conv1.weight": sd["net.0.conv1.weight"] + 1}),
     "resnet18_cifar",
     r"net\.0\.conv1\.weight should duplicate encoder\.conv1\.weight"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith(("encoder.", "net."))],
     "resnet18_cifar", r"unrecognised checkpoint layout .*known foreign layouts"),
    (lambda sd: None, "vgg16", r"--arch 'vgg16' is not a known backbone"),
])
def test_mismatches_are_errors_that_name_the_keys(tmp_path, edit, arch, match):
    sd = _branch_sd()
    edit(sd)
    path = _save({"epoch": 1, "state_dict": sd}, tmp_path)
    with pytest.raises(CheckpointError, match=match):
        import_foreign(path, arch=arch, **DATA)


def test_code_pickles_are_refused(tmp_path):
    # E-SSL-style scripts sometimes save their argparse namespace next to the weights
    path = _save({"state_dict": _branch_sd(), "args": argparse.Namespace(lr=0.1)}, tmp_path)
    with pytest.raises(CheckpointError, match="would import and run code"):
        import_foreign(path, arch="resnet18_cifar", **DATA)


def test_channel_mismatch_with_the_dataset(tmp_path):
    path = _save({"epoch": 1, "state_dict": _branch_sd()}, tmp_path)
    with pytest.raises(CheckpointError, match="takes 3-channel images but dataset 'digits'"):
        import_foreign(path, arch="resnet18_cifar", dataset="digits")


def test_measure_an_imported_checkpoint(tmp_path):
    path = _save({"epoch": 9, "state_dict": _branch_sd()}, tmp_path)
    rep = measure(path, arch="resnet18_cifar", dataset="rotation-world", quantities=["I(A;Z)"],
                  method="probe", n_images=80,
                  dataset_params={"image_size": 16, "n_images": 64, "n_test": 96})
    assert rep.provenance["imported"] and rep.provenance["epoch"] == 9
    assert rep.get("I(A;Z)", "probe").n == 80 * 4
    with pytest.raises(CheckpointError, match="measure --arch ARCH --dataset NAME"):
        measure(path)


def test_own_checkpoints_are_not_imported(tmp_path):
    from measure_helpers import tiny_checkpoint

    with pytest.raises(CheckpointError, match="measure it without --arch"):
        import_foreign(tiny_checkpoint(), arch="small_cnn", **DATA)
