"""``essl-info train`` and ``essl-info inspect`` through the real command line."""

from __future__ import annotations

import json

import pytest

from essl_info import cli

TINY = ["--dataset", "digits", "--image-size", "8", "--trans-size", "8", "--n-train", "64",
        "--n-test", "40", "--width", "4", "--batch-size", "32", "--knn-k", "20",
        "--no-progress", "--no-linear-probe"]


@pytest.fixture
def main():
    return cli.main


def test_train_then_inspect(tmp_path, capsys, main):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    assert (out / "checkpoint.pt").exists() and (out / "resume.pt").exists()
    summary = capsys.readouterr().out
    assert f"checkpoint: {out / 'checkpoint.pt'}" in summary and "test_acc/rotation4" in summary
    assert main(["inspect", str(out / "checkpoint.pt")]) == 0
    text = capsys.readouterr().out
    assert "rotation4 (K=4)" in text and "ssl=simclr lambda=0.4" in text
    assert main(["inspect", str(out / "resume.pt"), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["resumable"] and meta["progress"]["epoch"] == 1


def test_stop_and_resume(tmp_path, capsys, main):
    out = str(tmp_path / "run")
    assert main(["train", *TINY, "--epochs", "2", "--stop-after", "1", "--out", out]) == 0
    assert main(["train", *TINY, "--epochs", "2", "--out", out]) == 2   # would clobber
    assert "--resume" in capsys.readouterr().err
    assert main(["train", *TINY, "--epochs", "3", "--out", out, "--resume"]) == 2
    assert "to continue it pass --epochs 2" in capsys.readouterr().err
    assert main(["train", *TINY, "--epochs", "2", "--out", out, "--resume"]) == 0
    capsys.readouterr()
    assert main(["inspect", out + "/checkpoint.pt", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["progress"]["finished"]


@pytest.mark.parametrize("argv, needle", [
    (["inspect", "nope.pt"], "checkpoint not found"),
    (["train", *TINY, "--transforms", "rotation5"], "unknown transformation 'rotation5'"),
    (["train", *TINY, "--data-param", "colour=red"], "unknown parameter"),
    (["train", *TINY, "--data-param", "oops"], "KEY=VALUE"),
    (["train", *TINY, "--lr", "1e30", "--warmup-epochs", "0", "--log-every", "1",
      "--epochs", "1"], "loss became non-finite"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, main, argv, needle):
    argv = [a if a != "nope.pt" else str(tmp_path / "nope.pt") for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("essl-info: error:") and needle in err
    assert len(err.splitlines()) == 1
