"""paper_figs/theory_test.py: its tiny path (compute() on one dataset, then plot())."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_theory_test_figure_tiny_path(tmp_path):
    spec = importlib.util.spec_from_file_location("theory_fig",
                                                  ROOT / "paper_figs" / "theory_test.py")
    fig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig)
    # a saved result of another dataset is kept; the recomputed dataset's is replaced
    (tmp_path / "r.json").write_text(json.dumps([
        {"dataset": "digits", "mode": "tiny", "stale": True},
        {"dataset": "transform-world", "mode": "tiny", "kept": True}]))
    rows = fig.compute(["digits"], mode="tiny", jobs=0, root=tmp_path / "runs",
                       transforms=["rotation4", "vflip"], out=tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [r["dataset"] for r in saved] == ["transform-world", "digits"]
    assert saved[0]["kept"] and "stale" not in saved[1]
    assert rows[1]["provenance"]["wall_s"] > 0
    png = fig.plot(rows[1:], out=tmp_path / "f.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "f_0.png").exists()
    # --compare: the result against itself agrees exactly; bad files give one line
    (tmp_path / "rep.json").write_text(json.dumps(rows[1]))
    text = fig.compare(tmp_path / "rep.json", saved=tmp_path / "r.json")
    assert "max |z| 0.00" in text
    for name, body, msg in (("missing.json", None, "No such file"),
                            ("bad.json", "not json", "not JSON"),
                            ("other.json", json.dumps({"dataset": "digits", "mode": "tiny",
                                                       "cells": "x"}),
                             "not a theory-test --json result"),
                            ("wrong.json", json.dumps({**rows[1], "mode": "full"}),
                             "has no digits/full result")):
        if body is not None:
            (tmp_path / name).write_text(body)
        with pytest.raises(ValueError, match=msg) as err:
            fig.compare(tmp_path / name, saved=tmp_path / "r.json")
        assert "\n" not in str(err.value)
