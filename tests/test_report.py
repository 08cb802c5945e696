"""Formatting of Reports: tables, JSON, CSV and plots (no estimation involved)."""

import csv
import json

import pytest

from essl_info.diagnostics import report as fmt
from essl_info.types import Estimate, Report


def _est(q, v, se, method="probe", t="rotation4", n=400):
    return Estimate(v, se, method=method, n=n, quantity=q,
                    params={"transformation": t, "layer": "backbone"})


def _report(epoch=3, name="run/ckpt.pt", shift=0.0):
    ests = [_est("I(A;C)", 0.0, 0.0, "plugin"), _est("I(A;Z)", 0.9 + shift, 0.02),
            _est("I(A;Z)", 0.7, 0.03, "ross"), _est("I(A;C|Z)", -0.012, 0.01),
            _est("synergy", -0.012, 0.01)]
    return Report(ests, checkpoint=name, dataset="digits",
                  provenance={"epoch": epoch, "layer": "backbone", "split": "test",
                              "n_images": 100},
                  extra={"flags": [{"message": "I(A;Z) [rotation4]: probe and kNN disagree"}]})


def test_table_shows_value_error_interval_method_n_and_flags():
    text = fmt.format_table(_report())
    for piece in ("I(A;Z)", "I(A;C|Z)", "synergy", "probe", "ross", "plugin", "95% CI",
                  "0.900 ± 0.020", "[ 0.861,  0.939]", "-0.012 ± 0.010", "400",
                  "(epoch 3)", "! I(A;Z) [rotation4]: probe and kNN disagree"):
        assert piece in text, piece
    # a repeated quantity is written once, the method rows under it
    assert sum(line.startswith("I(A;Z)") for line in text.splitlines()) == 1


def test_table_adds_a_transformation_column_when_there_are_several():
    rep = Report([_est("I(A;Z)", 1.0, 0.1), _est("I(A;Z)", 0.5, 0.1, t="hflip")])
    text = fmt.format_table(rep)
    assert "transformation" in text and "hflip" in text


def test_json_single_and_several():
    one = json.loads(fmt.to_json(_report()))
    assert one == _report().to_dict()
    assert set(one) >= {"checkpoint", "dataset", "estimates", "provenance"}
    several = json.loads(fmt.to_json([_report(1), _report(2)]))
    assert [r["provenance"]["epoch"] for r in several["reports"]] == [1, 2]


def test_csv_round_trip(tmp_path):
    path = fmt.write_csv([_report(1, "a.pt"), _report(2, "b.pt")], tmp_path / "m.csv")
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 10 and list(rows[0]) == list(fmt.CSV_COLUMNS)
    r = rows[1]
    assert (r["checkpoint"], r["epoch"], r["quantity"], r["method"]) == ("a.pt", "1",
                                                                          "I(A;Z)", "probe")
    assert float(r["value"]) == 0.9 and float(r["stderr"]) == 0.02
    assert float(r["ci_low"]) == pytest.approx(0.9 - 1.959963984540054 * 0.02)
    assert r["transformation"] == "rotation4" and r["layer"] == "backbone"


def test_runs_table_one_row_per_checkpoint_in_the_order_given():
    text = fmt.format_runs_table([_report(5, "late.pt", 0.1), _report(1, "early.pt")],
                                 method="probe")
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["run", "epoch"]
    assert lines[2].startswith("late.pt") and lines[3].startswith("early.pt")
    assert "1.000 ± 0.020" in lines[2]
    # I(A;C) has no probe estimate: its plug-in value is shown rather than a gap
    assert lines[2].split()[2:6] == ["probe", "0.000", "±", "0.000"]


def test_runs_table_labels_runs_by_folder_and_shows_both_methods():
    reps = [_report(3, "runs/b/checkpoint.pt"), _report(3, "runs/a/checkpoint.pt", 0.1)]
    lines = fmt.format_runs_table(reps).splitlines()
    assert lines[0].split()[:3] == ["run", "epoch", "method"]
    assert [ln.split()[0] for ln in lines[2:6:2]] == ["b/checkpoint.pt", "a/checkpoint.pt"]
    assert lines[2].split()[2] == "probe" and lines[3].split()[0] == "ross"
    assert "0.700 ± 0.030" in lines[3]
    assert fmt.run_labels(["x/e1.pt", "x/e2.pt"]) == ["e1.pt", "e2.pt"]
    assert fmt.run_labels(["r/a/c.pt", "s/a/c.pt"]) == ["r/a/c.pt", "s/a/c.pt"]


def test_rank_table():
    ests = [_est("H(A|X)", 0.2, 0.01, "cnn"), _est("I(A;C|X)", 0.15, 0.02, "cnn"),
            _est("I(A;C)", 0.0, 0.0, "plugin")]
    rep = Report(ests, dataset="digits", extra={"ranking": [
        {"rank": 1, "transformation": "rotation4", "n_classes": 4, "verdict": "synergistic",
         "reason": "knowing the class helps"}]})
    text = fmt.format_rank_table(rep)
    assert "synergistic" in text and "0.150 ± 0.020" in text and "0.200 ± 0.010" in text
    assert "rotation4: knowing the class helps" in text


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_are_written(tmp_path):
    assert _is_png(fmt.plot_report(_report(), tmp_path / "bars.png"))
    assert _is_png(fmt.plot_runs([_report(1), _report(4, shift=0.2)], tmp_path / "runs.png",
                                 method="probe"))


def test_plot_path_errors(tmp_path):
    with pytest.raises(ValueError, match="must end in .png, .pdf or .svg"):
        fmt.plot_report(_report(), tmp_path / "bars.jpg")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fmt.plot_report(_report(), tmp_path / "missing" / "bars.png")
