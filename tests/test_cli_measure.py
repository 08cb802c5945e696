"""`essl-info measure` and `essl-info rank-transforms` at the command line: outputs per
DESIGN §4 and one-line errors with exit code 2 for each bad input."""

import csv
import json
import shutil

import pytest
import torch
from measure_helpers import (cifar_checkpoint, collapsed_checkpoint, diverged_checkpoint,
                             scratch_dir, tiny_checkpoint, tiny_run)

from essl_info.models.checkpoint import bundled_checkpoint_path
from essl_info.cli import main
from essl_info.diagnostics.measure import checkpoint_paths

FAST = ["--n-images", "80", "--quiet"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_matches_the_contract(capsys):
    code, out, _ = run(capsys, "measure", tiny_checkpoint(), "--json", *FAST)
    assert code == 0
    doc = json.loads(out)
    assert set(doc) >= {"checkpoint", "dataset", "estimates", "provenance"}
    assert doc["checkpoint"] == str(tiny_checkpoint()) and doc["dataset"] == "digits"
    quantities = {e["quantity"] for e in doc["estimates"]}
    assert quantities == {"I(A;C)", "I(A;Z)", "I(C;Z)", "I(A;C|Z)", "I(A;Z|C)", "synergy"}
    for e in doc["estimates"]:
        assert set(e) >= {"value", "stderr", "ci", "method", "params", "n", "quantity"}
        assert isinstance(e["value"], float) and len(e["ci"]) == 2 and e["n"] == 80 * 4
    assert doc["provenance"]["layer"] == "backbone"


def test_table_csv_and_plot(capsys, tmp_path):
    code, out, err = run(capsys, "measure", tiny_checkpoint(), "--csv", tmp_path / "m.csv",
                         "--plot", tmp_path / "m.png", "--quantity", "I(A;Z)",
                         "--quantity", "I(A;C|Z)", *FAST)
    assert code == 0
    assert "value ± stderr (nats)" in out and "95% CI" in out and "I(A;C|Z)" in out
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert {r["quantity"] for r in rows} == {"I(A;Z)", "I(A;C|Z)"}
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in err


def test_several_checkpoints_one_row_each_and_plot_against_epoch(capsys, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run(), run_dir)
    shutil.copy(tiny_run(1) / "checkpoint.pt", run_dir / "epoch1.pt")
    # the run folder's resume.pt duplicates checkpoint.pt and is not measured
    assert [p.name for p in checkpoint_paths([run_dir])] == ["checkpoint.pt", "epoch1.pt"]
    code, out, _ = run(capsys, "measure", run_dir, "--plot", tmp_path / "runs.png",
                       "--quantity", "I(A;Z)", "--method", "probe", *FAST)
    assert code == 0
    lines = out.splitlines()   # the folder's files in name order, as given
    assert lines[2].split()[:2] == ["checkpoint.pt", "2"] and lines[3].split()[:2] == [
        "epoch1.pt", "1"]
    assert (tmp_path / "runs.png").exists()
    code, out, _ = run(capsys, "measure", run_dir / "epoch1.pt", tiny_checkpoint(), "--json",
                       "--quantity", "I(A;Z)", "--method", "probe", *FAST)
    assert [r["provenance"]["epoch"] for r in json.loads(out)["reports"]] == [1, 2]


class Payload:
    """Unpickling this would import and run code from the test module."""

    def __reduce__(self):
        return (print, ("this would run",))


def _bad_files():
    d = scratch_dir()
    trunc = d / "truncated.pt"
    trunc.write_bytes(tiny_checkpoint().read_bytes()[:5000])
    text = d / "notes.pt"
    text.write_text("not a checkpoint\n")
    tensor = d / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    code = d / "code.pt"
    torch.save({"state_dict": {}, "hook": Payload()}, code)
    return {"missing": (d / "missing.pt", "checkpoint not found"),
            "truncated": (trunc, "truncated or corrupt"),
            "text": (text, "not a torch checkpoint"),
            "tensor": (tensor, "not an essl_info checkpoint"),
            "code": (code, "refusing to load"),
            "folder": (d / "empty", "no checkpoint files")}


@pytest.mark.parametrize("case", ["missing", "truncated", "text", "tensor", "code",
                                  "folder"])
def test_bad_files_exit_2_with_one_line(capsys, case):
    path, message = _bad_files()[case]
    if case == "folder":
        path.mkdir()
    code, out, err = run(capsys, "measure", path, *FAST)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("essl-info: error: ") and message in err


def test_unavailable_dataset_and_nan_features_exit_2(capsys):
    code, _, err = run(capsys, "measure", cifar_checkpoint(), *FAST)
    assert code == 2 and "cifar10" in err and "--data-dir" in err and err.count("\n") == 1
    code, _, err = run(capsys, "measure", diverged_checkpoint(), *FAST)
    assert code == 2 and "features contain NaN: the model diverged" in err


def test_collapsed_features_exit_0_with_zero_information(capsys):
    code, out, _ = run(capsys, "measure", collapsed_checkpoint(), "--json", *FAST)
    assert code == 0
    doc = json.loads(out)
    for e in doc["estimates"]:
        assert abs(e["value"]) <= 0.03 + 3 * e["stderr"]
    assert any(f["kind"] == "collapsed" for f in doc["extra"]["flags"])


def test_bad_options_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "measure", tiny_checkpoint(), "--plot", tmp_path / "x" /
                       "p.png", *FAST)
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "measure", tiny_checkpoint(), "--arch", "resnet18_cifar",
                       *FAST)
    assert code == 2 and "--arch needs --dataset" in err
    with pytest.raises(SystemExit) as exc:   # argparse: an unknown quantity
        main(["measure", "--quantity", "I(X;X)"])
    assert exc.value.code == 2


@pytest.mark.skipif(not bundled_checkpoint_path().exists(),
                    reason="the bundled checkpoint is produced by the trainer's recipe")
def test_default_is_the_bundled_checkpoint(capsys):
    code, out, _ = run(capsys, "measure", "--json", "--method", "probe", "--quantity",
                       "I(A;Z)", *FAST)
    assert code == 0 and json.loads(out)["checkpoint"] == str(bundled_checkpoint_path())


def test_rank_transforms_json(capsys):
    code, out, _ = run(capsys, "rank-transforms", "--dataset", "digits", "--transforms",
                       "invert", "--n-images", "150", "--fits", "2", "--json", "--quiet")
    assert code == 0
    doc = json.loads(out)
    assert doc["estimates"][1]["diagnostics"]["n_seeds"] == 2
    assert doc["dataset"] == "digits" and doc["extra"]["ranking"][0]["transformation"] == \
        "invert"
    assert {e["quantity"] for e in doc["estimates"]} == {"I(A;C)", "H(A|X)", "I(A;C|X)"}
    assert all(e["params"]["transformation"] == "invert" for e in doc["estimates"])
    code, _, err = run(capsys, "rank-transforms", "--dataset", "digits", "--transforms",
                       "spin", "--quiet")
    assert code == 2 and "unknown transformation 'spin'" in err
    code, _, err = run(capsys, "rank-transforms", "--dataset", "digits", "--n-images", "10",
                       "--quiet")
    assert code == 2 and "needs at least 150 images" in err
    code, _, err = run(capsys, "rank-transforms", "--dataset", "rotation-world",
                       "--data-param", "m", "--quiet")
    assert code == 2 and "KEY=VALUE" in err
