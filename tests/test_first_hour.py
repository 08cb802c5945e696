"""A new user's first hour (issue 12): every mistake is one line and exit code 2, nothing
measured is lost, long work shows signs of life, and the messages say what to do next.
One test per case met in a walkthrough from a fresh clone."""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os

import numpy as np
import pytest
import torch
from measure_helpers import scratch_dir, tiny_checkpoint, tiny_run
from test_cli_measure import FAST   # the measure CLI tests' image count: one place to change

from essl_info import estimate_mi
from essl_info.cli import build_parser, main
from essl_info.models.checkpoint import load_checkpoint, save_checkpoint

TINY = ["--dataset", "digits", "--image-size", "8", "--trans-size", "8", "--n-train", "64",
        "--n-test", "40", "--width", "4", "--batch-size", "32", "--knn-k", "20",
        "--no-linear-probe"]


def run(capsys, *argv):
    argv = [str(a) for a in argv]
    capsys.readouterr()   # drop what building the shared tiny run printed
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *needles):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("essl-info: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def edited(name: str, edit) -> str:
    """A copy of the tiny checkpoint with ``edit(ckpt)`` applied."""
    ckpt = copy.deepcopy(load_checkpoint(tiny_checkpoint()))
    edit(ckpt)
    path = scratch_dir() / name
    save_checkpoint(ckpt, path)
    return str(path)


# ==================================================================== checkpoints
def _shrink_conv1(ckpt):
    w = ckpt["state_dict"]["backbone.conv1.weight"]
    ckpt["state_dict"]["backbone.conv1.weight"] = torch.zeros(w.shape[0] - 1, *w.shape[1:])


def test_wrong_tensor_shape_is_one_line_in_measure_and_inspect(capsys):
    path = edited("shape.pt", _shrink_conv1)
    code, out, err = run(capsys, "measure", path, *FAST)
    one_line_error(code, err, "shape mismatch", "backbone.conv1.weight")
    assert out == ""
    code, _, err = run(capsys, "inspect", path)   # inspect no longer says all is well
    one_line_error(code, err, "shape mismatch")


def test_int64_weights_are_named_as_a_dtype_problem(capsys):
    def to_int(ckpt):
        ckpt["state_dict"]["backbone.conv1.weight"] = \
            ckpt["state_dict"]["backbone.conv1.weight"].long()

    code, _, err = run(capsys, "measure", edited("int64.pt", to_int), *FAST)
    line = one_line_error(code, err, "dtype mismatch", "torch.int64", "torch.float32")
    assert "diverged" not in line


def test_malformed_model_spec_is_one_line_in_inspect(capsys):
    code, _, err = run(capsys, "inspect", edited("spec.pt", lambda c: c["model"].pop("heads")))
    one_line_error(code, err, "lacks ['heads']")


def test_newer_schema_reads_naturally(capsys):
    code, _, err = run(capsys, "inspect", edited("s999.pt",
                                                 lambda c: c.update(schema_version=999)))
    line = one_line_error(code, err, "schema 999", "newer", "upgrade essl_info")
    assert "supports not" not in line


def test_random_bytes_do_not_repeat_torchs_unsafe_advice(capsys):
    path = scratch_dir() / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    code, _, err = run(capsys, "inspect", path)
    line = one_line_error(code, err, "not a torch checkpoint")
    assert "weights_only" not in line


def test_inspect_accepts_a_run_folder(capsys):
    code, out, _ = run(capsys, "inspect", tiny_run())
    assert code == 0 and f"checkpoint  {tiny_run() / 'checkpoint.pt'}" in out


# ====================================================================== measure
def test_several_checkpoints_keep_what_was_measured(capsys, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint at all")
    good = tiny_checkpoint()
    code, out, err = run(capsys, "measure", good, bad, "--csv", tmp_path / "m.csv",
                         "--method", "probe", "--quantity", "I(A;Z)", *FAST)
    assert code == 3   # some, not all, measured (documented in the README)
    assert "checkpoint.pt" in out and "I(A;Z)" in out
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert {r["checkpoint"] for r in rows} == {str(good)}
    assert f"not measured: {bad}" in err and "1 of 2 checkpoints" in err
    assert "Traceback" not in err
    code, out, err = run(capsys, "measure", good, bad, "--json", "--method", "probe",
                         "--quantity", "I(A;Z)", *FAST)
    assert code == 3 and [r["checkpoint"] for r in json.loads(out)["reports"]] == [str(good)]


def test_none_measured_is_exit_2(capsys, tmp_path):
    bad = tmp_path / "a.pt"
    bad.write_bytes(b"x" * 10)
    code, _, err = run(capsys, "measure", bad, tmp_path / "missing.pt", *FAST)
    one_line_error(code, err, "none of the 2 checkpoints")


def test_measure_shows_progress_over_its_estimates(capsys):
    code, _, err = run(capsys, "measure", tiny_checkpoint(), *FAST[:-1],   # bars on
                       "--method", "probe", "--quantity", "I(A;Z)")
    assert code == 0 and "estimates" in err


def test_csv_into_a_missing_folder_fails_before_the_work(capsys, tmp_path):
    code, out, err = run(capsys, "measure", tiny_checkpoint(), "--csv",
                         tmp_path / "nope" / "m.csv", *FAST)
    one_line_error(code, err, "--csv", "does not exist")
    assert out == ""


def test_cifar_message_names_no_missing_option(capsys, tmp_path):
    code, _, err = run(capsys, "measure", tiny_checkpoint(), "--dataset", "cifar10",
                       "--data-dir", tmp_path, *FAST)
    line = one_line_error(code, err, "cifar-10-python.tar.gz")
    assert "--download" not in line


# ======================================================================== train
def test_out_naming_a_file_or_under_a_file(capsys, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    code, _, err = run(capsys, "train", *TINY, "--out", f)
    one_line_error(code, err, "is a file, not a folder")
    code, _, err = run(capsys, "train", *TINY, "--out", f / "sub")
    one_line_error(code, err, "no folder can be made under it")


def test_no_progress_prints_epoch_lines_and_resume_says_what_to_pass(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", *TINY, "--epochs", "2", "--stop-after", "1",
                       "--no-progress", "--out", out)
    assert code == 0 and "epoch 1/2" in err
    events = [json.loads(line)["event"] for line in open(out / "log.jsonl")]
    assert events[0] == "start" and "epoch" in events and events[-1] == "end"
    code, _, err = run(capsys, "train", *TINY[:-1], "--no-progress", "--out", out,
                       "--resume")   # --epochs forgotten: the recipe's 20 is not the run's 2
    one_line_error(code, err, "pass --epochs 2")
    # the same without --no-linear-probe: both options are named
    code, _, err = run(capsys, "train", *TINY[:-1], "--epochs", "2", "--out", out,
                       "--resume", "--no-progress")
    one_line_error(code, err, "pass --no-linear-probe")


def test_resume_without_a_resume_file_refuses(capsys, tmp_path):
    out = tmp_path / "fresh"
    code, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out", out, "--resume")
    one_line_error(code, err, "no resume.pt", "run without --resume")
    assert not (out / "checkpoint.pt").exists()


def _png_folder(root, classes: dict[str, int]):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
                root / name / f"{i}.png")
    return root


def test_single_class_folder_fails_before_the_first_epoch(capsys, tmp_path):
    data = _png_folder(tmp_path / "data", {"apples": 12})
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--dataset", "folder", "--data-dir", data,
                       "--batch-size", "4", "--no-progress", "--out", out)
    one_line_error(code, err, "1 class", "'apples'", "--no-linear-probe")
    assert not (out / "checkpoint.pt").exists() and not (out / "log.jsonl").exists()


def test_folder_default_is_small():
    from essl_info.training.config import TrainConfig, resolve_config

    cfg = resolve_config(TrainConfig(dataset="folder", data_dir="x"))
    assert cfg.backbone == "small_cnn" and cfg.image_size == 32


# ===================================================================== the API
def test_seed_none_draws_a_recorded_seed():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400)
    y = x + rng.standard_normal(400)
    est = estimate_mi(x, y, seed=None)
    seed = est.params["seed"]
    assert isinstance(seed, int) and est.diagnostics["seed_drawn"]
    assert estimate_mi(x, y, seed=seed).value == est.value   # reproducible from params
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            estimate_mi(x, y, seed=bad)


def test_finite_input_that_overflows_is_named():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300)
    with pytest.raises(ValueError, match="is finite but .* overflow float64"):
        estimate_mi(x * 1e300, x + rng.standard_normal(300))
    # large but safe values still work
    assert np.isfinite(estimate_mi(x * 1e100, x + rng.standard_normal(300)).value)


def test_progress_option_reports_start_and_end():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300)
    calls = []
    est = estimate_mi(x, x + rng.standard_normal(300),
                      progress=lambda done, total, stage: calls.append((done, total)))
    assert calls[0] == (0, None) and calls[-1] == (1, 1) and np.isfinite(est.value)
    with pytest.raises(ValueError, match="progress must be"):
        estimate_mi(x, x, progress="yes")


# ========================================================================= help
def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", ["measure", "rank-transforms", "train", "inspect"])
def test_every_option_has_help_and_its_default(command):
    p = _subparsers()[command]
    text = p.format_help()
    for action in p._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[-1] if action.option_strings else action.dest
        assert action.help, f"{command} {name} has no help text"
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if not flag and action.option_strings and not action.required:
            helped = p._get_formatter()._get_help_string(action) % {
                "default": action.default, "prog": p.prog}
            assert "default" in helped, f"{command} {name}: no default in its help"
    assert "--quantity 'I(A;C|Z)'" in text or command != "measure"


def test_json_and_csv_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["measure", "--json", "--csv", os.devnull])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
