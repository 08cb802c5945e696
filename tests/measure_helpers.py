"""Shared, cached test inputs for the measure / features / CLI tests: a tiny E-SSL run on
digits trained for a few steps by the real trainer, and checkpoints derived from it
(collapsed, diverged, unavailable dataset). Built once per test session (per xdist worker)
in a temporary folder removed at exit."""

from __future__ import annotations

import atexit
import copy
import functools
import shutil
import tempfile
from pathlib import Path

import torch

_ROOT = Path(tempfile.mkdtemp(prefix="essl_measure_tests_"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def tiny_run(epochs: int = 2) -> Path:
    """A run folder with ``checkpoint.pt`` / ``resume.pt`` of a few training steps."""
    from essl_info.training.trainer import train
    from essl_info.training.config import TrainConfig

    out = _ROOT / f"run{epochs}"
    train(TrainConfig(dataset="digits", epochs=epochs, n_train=256, n_test=96,
                      out=str(out), progress=False, threads=1, final_linear_probe=False))
    return out


def tiny_checkpoint() -> Path:
    return tiny_run() / "checkpoint.pt"


def derived_checkpoint(name: str, edit) -> Path:
    """A copy of the tiny checkpoint with ``edit(ckpt)`` applied, saved as ``name``."""
    from essl_info.models.checkpoint import load_checkpoint, save_checkpoint

    path = _ROOT / name
    if not path.exists():
        ckpt = copy.deepcopy(load_checkpoint(tiny_checkpoint()))
        edit(ckpt)
        save_checkpoint(ckpt, path)
    return path


def _zero_backbone(ckpt: dict) -> None:
    for k, v in ckpt["state_dict"].items():
        if k.startswith("backbone.") and v.is_floating_point():
            ckpt["state_dict"][k] = torch.zeros_like(v)
        if k.endswith("running_var"):
            ckpt["state_dict"][k] = torch.ones_like(v)


def _nan_backbone(ckpt: dict) -> None:
    w = ckpt["state_dict"]["backbone.conv1.weight"]
    ckpt["state_dict"]["backbone.conv1.weight"] = torch.full_like(w, float("nan"))


def _cifar_dataset(ckpt: dict) -> None:
    ckpt["data"] = {**ckpt["data"], "dataset": "cifar10", "params": {}, "data_dir": None}


def collapsed_checkpoint() -> Path:
    """Backbone weights all zero: every image gets the same (zero) features."""
    return derived_checkpoint("collapsed.pt", _zero_backbone)


def diverged_checkpoint() -> Path:
    """A NaN first convolution: the features are NaN."""
    return derived_checkpoint("diverged.pt", _nan_backbone)


def cifar_checkpoint() -> Path:
    """A checkpoint whose dataset (cifar10) needs files that are not there."""
    return derived_checkpoint("cifar.pt", _cifar_dataset)


def scratch_dir() -> Path:
    d = Path(tempfile.mkdtemp(dir=_ROOT))
    return d
