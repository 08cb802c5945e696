"""``essl-info train --save-every E`` keeps per-epoch checkpoints, and ``essl-info measure
RUN_FOLDER`` draws the quantities against epoch from them (the information dynamics)."""

from __future__ import annotations

import json

import torch

from essl_info.cli import main
from essl_info.diagnostics.measure import checkpoint_paths
from essl_info.models.checkpoint import load_checkpoint

TINY = ["--dataset", "digits", "--image-size", "8", "--trans-size", "8", "--n-train", "64",
        "--n-test", "40", "--width", "4", "--batch-size", "32", "--knn-k", "20",
        "--no-progress", "--no-linear-probe"]


def test_save_every_keeps_epochs_and_measure_draws_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "3", "--save-every", "2", "--out",
                 str(out)]) == 0
    kept = sorted(p.name for p in out.glob("epoch_*.pt"))
    assert kept == ["epoch_0000.pt", "epoch_0002.pt", "epoch_0003.pt"]   # 0, every 2nd, last
    for name in kept:
        assert load_checkpoint(out / name)["progress"]["epoch"] == int(name[6:10])
    last, final = load_checkpoint(out / "epoch_0003.pt"), load_checkpoint(out / "checkpoint.pt")
    for k, v in final["state_dict"].items():
        assert torch.equal(v, last["state_dict"][k])
    # epoch 0 is the untrained model: its weights differ from the trained ones
    first = load_checkpoint(out / "epoch_0000.pt")["state_dict"]
    assert any(not torch.equal(first[k], v) for k, v in final["state_dict"].items()
               if v.is_floating_point())
    # checkpoint.pt duplicates epoch_0003.pt, resume.pt duplicates checkpoint.pt
    assert [p.name for p in checkpoint_paths([out])] == kept
    capsys.readouterr()
    plot = tmp_path / "dynamics.png"
    assert main(["measure", str(out), "--json", "--quantity", "I(A;Z)", "--method", "probe",
                 "--n-images", "100", "--quiet", "--plot", str(plot)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["provenance"]["epoch"] for r in doc["reports"]] == [0, 2, 3]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_interrupted_run_keeps_its_last_checkpoint_in_the_series(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "4", "--save-every", "3", "--stop-after", "2",
                 "--out", str(out)]) == 0
    # epoch 2 is in checkpoint.pt only: measuring the folder keeps it
    assert [p.name for p in checkpoint_paths([out])] == ["checkpoint.pt", "epoch_0000.pt"]


def test_save_every_must_be_positive(capsys):
    assert main(["train", *TINY, "--epochs", "1", "--save-every", "0"]) == 2
    assert "save_every" in capsys.readouterr().err
