"""The four paper_figs scripts of issue 11 (Wang Tables 2/4 and 3, Dangovski Fig. 1, Xie's
choice): each one's tiny path (compute + plot into tmp_path), the JSON's structure and
finite numbers with intervals; and the cell helpers against hand computations."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from essl_info.experiments.cells import (binomial_se, combine_cells, difference,
                                         result_paths)

FIGS = Path(__file__).resolve().parents[1] / "paper_figs"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"paper_figs_{name}", FIGS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ============================================================== helpers, by hand
def test_combine_cells_matches_hand_computation():
    # three seeds of one cell: mean 0.6, seed sd 0.1; t_{0.975, 2} = 4.302652729911275
    scored = [{"cell": "a", "seed": s, "scores": {"x": (v, se), "only0": (1.0, 0.0)}
               if s == 0 else {"x": (v, se)}}
              for s, (v, se) in enumerate([(0.5, 0.03), (0.7, 0.04), (0.6, 0.0)])]
    out = combine_cells(scored)
    x = out["a"]["x"]
    sampling = math.sqrt((0.03 ** 2 + 0.04 ** 2 + 0.0) / 3)
    seed = 0.1 / math.sqrt(3) * 4.302652729911275 / 1.959963984540054
    assert x["value"] == pytest.approx(0.6)
    assert x["stderr"] == pytest.approx(math.hypot(sampling, seed))
    assert x["ci95"] == pytest.approx([0.6 - 1.959963984540054 * x["stderr"],
                                       0.6 + 1.959963984540054 * x["stderr"]])
    assert x["seed_values"] == [0.5, 0.7, 0.6] and x["n_seeds"] == 3
    assert "only0" not in out["a"]      # measured by one run only: left out


def test_difference_sign_and_quadrature():
    a, b = {"value": 0.8, "stderr": 0.03}, {"value": 0.7, "stderr": 0.04}
    d = difference(a, b)
    assert d["value"] == pytest.approx(0.1) and d["stderr"] == pytest.approx(0.05)
    assert d["sign"] == "+"                          # 0.1 ± 0.098 excludes 0
    assert difference(b, a)["sign"] == "-"
    assert difference({"value": 0.75, "stderr": 0.04}, b)["sign"] == "0"


def test_binomial_se_and_result_paths(tmp_path):
    assert binomial_se(0.9, 100) == pytest.approx(0.03)
    assert binomial_se(1.0, 10) == 0.0
    with pytest.raises(ValueError, match="n must be"):
        binomial_se(0.5, 0)
    assert result_paths(tmp_path, "x", "quick") == (tmp_path / "results" / "x.json",
                                                    tmp_path / "x.png")
    assert result_paths(tmp_path, "x", "tiny")[0].name == "x_tiny.json"


# ============================================================== the scripts, tiny
def _check_cells(cells: dict, scores) -> None:
    for name, vals in cells.items():
        for s in scores:
            c = vals[s]
            assert math.isfinite(c["value"]) and math.isfinite(c["stderr"]), (name, s)
            assert c["stderr"] >= 0 and c["n_seeds"] >= 2
            lo, hi = c["ci95"]
            assert lo <= c["value"] <= hi


def _check_doc(doc: dict, path: Path) -> None:
    assert json.loads(path.read_text())["name"] == doc["name"]
    p = doc["provenance"]
    for k in ("command", "library_version", "seeds", "started_utc", "wall_s", "loadavg_end"):
        assert k in p
    assert len(p["seeds"]) >= 2


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One sweep root for all four scripts, as the quick mode shares one."""
    return tmp_path_factory.mktemp("paper-tiny")


def test_wang_table2_tiny(root, tmp_path):
    mod = _script("wang_table2")
    doc = mod.compute("tiny", jobs=0, root=root, out=tmp_path / "t2.json")
    _check_doc(doc, tmp_path / "t2.json")
    assert set(doc["cells"]) == {"ResNet18/simclr", "EqResNet18/simclr"}
    _check_cells(doc["cells"], ["train_acc/rotation4", "linear", "knn", "I(A;Z)@rotation4",
                                "I(C;Z)@rotation4", "I(A;C|Z)@rotation4"])
    assert doc["eq_minus_resnet"]["simclr"]["linear"]["sign"] in "+-0"
    assert doc["published"]["train_acc"]["simclr|EqResNet18"] == 0.9198
    assert mod.plot(doc, tmp_path / "t2.png").stat().st_size > 0


def test_wang_table3_tiny(root, tmp_path):
    mod = _script("wang_table3")
    doc = mod.compute("tiny", jobs=0, root=root, out=tmp_path / "t3.json")
    _check_doc(doc, tmp_path / "t3.json")
    assert list(doc["cells"]) == list(mod.CELLS)
    _check_cells(doc["cells"], ["linear", "knn", "train_acc/rotation4", "Wahba@rotation4",
                                "gamma_f@rotation4"])
    for ref in ("CE (rotation only)", "SimCLR + CE"):
        assert math.isfinite(doc["care_minus"][ref]["linear"]["value"])
    assert doc["published"]["linear"] == {"CE": 0.5732, "CARE": 0.6450}
    assert mod.plot(doc, tmp_path / "t3.png").stat().st_size > 0


def test_dangovski_fig1_tiny(root, tmp_path):
    mod = _script("dangovski_fig1")
    doc = mod.compute("tiny", jobs=0, root=root, out=tmp_path / "d.json")
    _check_doc(doc, tmp_path / "d.json")
    ts = doc["transforms"]
    assert set(doc["cells"]) == {"SimCLR", *(f"{k}:{t}" for t in ts for k in ("inv", "eq"))}
    _check_cells(doc["cells"], ["linear", "knn"])
    for t in ts:
        for k in ("eq_minus_inv", "eq_minus_simclr", "inv_minus_simclr"):
            g = doc["gaps"][t]["linear"][k]
            assert math.isfinite(g["value"]) and g["sign"] in "+-0"
    assert mod.plot(doc, tmp_path / "d.png").stat().st_size > 0


def test_xie_choice_tiny(root, tmp_path):
    mod = _script("xie_choice")
    doc = mod.compute("tiny", jobs=0, root=root, out=tmp_path / "x.json")
    _check_doc(doc, tmp_path / "x.json")
    assert "eq+order:brightness" in doc["cells"] and "eq+order:rotation4" not in doc["cells"]
    _check_cells(doc["cells"], ["linear", "knn"])
    for c in doc["choices"]:
        assert c["rule_role"] in ("invariant", "equivariant")
        assert c["measured"]["role"] in ("invariant", "equivariant", "tie")
        assert math.isfinite(c["I(A;C|X)"]) and c["I(A;C|X)_stderr"] >= 0
        if c["rule_role"] == "equivariant":
            assert c["rule_loss"] == ("ce+order" if c["scale_valued"] else "ce")
    a = doc["agreement"]
    assert a["decided"] + a["ties"] == len(doc["transforms"])
    assert mod.plot(doc, tmp_path / "x.png").stat().st_size > 0


def _keys(mod, mode: str, root) -> dict[str, str]:
    """Cell -> run key (seed 0) of a script's sweep in ``mode`` (nothing is trained)."""
    return {r.tag_dict["cell"]: r.key for r in mod.experiment(mode, "digits", root)[1].runs
            if r.tag_dict["seed"] == 0}


def test_quick_modes_share_runs(tmp_path):
    """What the docstrings promise: in one root, Wang Table 3's rotation-only cell is Table
    2's ResNet18/simclr run, and Xie's baseline and rotation4 cells are Dangovski's."""
    t2, t3 = _script("wang_table2"), _script("wang_table3")
    dg, xie = _script("dangovski_fig1"), _script("xie_choice")
    for mode in ("quick", "full"):
        k2, k3 = _keys(t2, mode, tmp_path), _keys(t3, mode, tmp_path)
        assert k3["CE (rotation only)"] == k2["ResNet18/simclr"]
        assert len(set(k3.values()) | set(k2.values())) == len(k2) + 2
        kd, kx = _keys(dg, mode, tmp_path), _keys(xie, mode, tmp_path)
        for c in ("SimCLR", "inv:rotation4", "eq:rotation4"):
            assert kx[c] == kd[c]
        assert "eq+order:brightness" in kx and "eq+order:rotation4" not in kx
