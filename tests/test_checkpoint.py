"""Checkpoints: weights_only round trip, atomic save, refusals with clear messages,
describe, the bundled checkpoint."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from essl_info.models.checkpoint import (SCHEMA_VERSION, bundled_checkpoint_path, describe_checkpoint,
                                  load_checkpoint, model_from_checkpoint, save_checkpoint)
from essl_info.errors import CheckpointError
from essl_info.training.trainer import TrainConfig, train

TINY = dict(dataset="digits", image_size=8, trans_size=8, n_train=64, n_test=40, width=4,
            batch_size=32, epochs=1, progress=False, knn_k=20)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "run"
    return train(TrainConfig(**TINY, out=str(out)))


def test_round_trip_with_weights_only(run):
    raw = torch.load(run.checkpoint, weights_only=True)       # plain torch, no code
    assert raw["schema_version"] == SCHEMA_VERSION
    ckpt = load_checkpoint(run.checkpoint)
    for key in ("library_version", "created_utc", "model", "state_dict", "train", "data",
                "transformations", "seed", "progress", "metrics"):
        assert key in ckpt
    assert ckpt["transformations"] == [{"name": "rotation4", "n_classes": 4}]
    assert ckpt["data"]["dataset"] == "digits" and ckpt["data"]["image_size"] == 8
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in ckpt["state_dict"])
    assert "optimizer" not in ckpt and "optimizer" in load_checkpoint(run.resume)
    model = model_from_checkpoint(ckpt)
    assert not model.training
    x = torch.rand(3, 1, 8, 8)
    h = model.features(x)
    assert h.shape == (3, ckpt["model"]["feature_dim"])
    assert model.project(h).shape[0] == 3
    # the same numbers after a save / load cycle of our own
    again = model_from_checkpoint(load_checkpoint(save_checkpoint(ckpt, run.checkpoint.parent
                                                                  / "copy.pt")))
    assert torch.equal(again.features(x), h)


def test_save_is_atomic_and_checks_types(tmp_path, run):
    ckpt = load_checkpoint(run.checkpoint)
    path = save_checkpoint(ckpt, tmp_path / "a.pt")
    before = path.read_bytes()
    bad = dict(ckpt, metrics={"x": __import__("numpy").float64(1.0)})
    with pytest.raises(TypeError, match=r"ckpt\.metrics\.x"):
        save_checkpoint(bad, path)
    assert path.read_bytes() == before                      # untouched
    assert sorted(os.listdir(tmp_path)) == ["a.pt"]         # no temp file left behind
    with pytest.raises(ValueError, match="schema_version"):
        save_checkpoint({"model": {}}, tmp_path / "b.pt")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))   # would create a file if ever unpickled


def test_refusals_have_one_line_reasons(tmp_path, run):
    good = run.checkpoint.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"epoch": 3, "state_dict": {}}, tmp_path / "foreign.pt")
    torch.save(dict(torch.load(run.checkpoint, weights_only=True), schema_version=99),
               tmp_path / "future.pt")
    marker = tmp_path / "pwned"
    torch.save({"schema_version": 1, "x": _RunsCode(str(marker))}, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_RunsCode(str(marker)), f)
    cases = {
        "missing.pt": "not found",
        "trunc.pt": "truncated or corrupt",
        "text.pt": "not a torch checkpoint",
        "empty.pt": "empty",
        "tensor.pt": "holds a Tensor",
        "foreign.pt": "without 'schema_version'",
        "future.pt": "checkpoint schema 99, newer than",
        "evil.pt": "would import and run code",
        "evil.pkl": "never unpickles code",
    }
    for name, needle in cases.items():
        with pytest.raises(CheckpointError, match=needle) as info:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value), name
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)
    assert not marker.exists()                       # no code ran


def test_model_load_is_strict(run):
    ckpt = load_checkpoint(run.checkpoint)
    extra = dict(ckpt, state_dict={**ckpt["state_dict"], "bogus.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected.*bogus.weight"):
        model_from_checkpoint(extra)
    missing = dict(ckpt, state_dict={k: v for k, v in ckpt["state_dict"].items()
                                     if k != "probe.bias"})
    with pytest.raises(CheckpointError, match="missing.*probe.bias"):
        model_from_checkpoint(missing)


def test_describe(run):
    text = describe_checkpoint(run.checkpoint)
    assert "small_cnn" in text and "rotation4 (K=4)" in text and "digits" in text
    meta = json.loads(describe_checkpoint(run.checkpoint, as_json=True))
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["state_dict"]["parameters"] > 0 and "test_acc/rotation4" in meta["metrics"]


def test_bundled_checkpoint_loads():
    path = bundled_checkpoint_path()
    assert path.name == "digits_esimclr_rotation4.pt" and path.exists()
    assert path.stat().st_size < 5 * 2**20
    ckpt = load_checkpoint(path)
    assert ckpt["train"]["ssl"] == "simclr" and ckpt["train"]["lam"] == 0.4
    assert ckpt["progress"]["finished"]
    model = model_from_checkpoint(ckpt)
    size = ckpt["data"]["image_size"]
    assert model.features(torch.rand(2, 1, size, size)).shape == (2, ckpt["model"][
        "feature_dim"])
    # its recorded training metrics sit beside it
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["metrics"]["linear_probe_acc"] == ckpt["metrics"]["linear_probe_acc"]
