"""The Wang et al. paper_figs scripts (Fig. 1, Fig. 3, Table 1, App. D, information
dynamics) on their tiny path: compute() into a temporary root and JSON, plot() into a
PNG; the JSON's structure, finite numbers, intervals over >= 2 seeds, the paper's
numbers beside ours. The five scripts share one sweep root, as in quick mode, so runs
with the same config are trained once (the test also checks that sharing)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

FIGS = Path(__file__).resolve().parent.parent / "paper_figs"
SCRIPTS = ("wang_fig1", "wang_fig3", "wang_table1", "wang_appd", "information_dynamics")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"paper_figs_{name}", FIGS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _intervals(x, path="") -> list[str]:
    """Every ``{"value", "stderr"}`` in ``x``: problems (non-finite, negative stderr)."""
    bad = []
    if isinstance(x, dict):
        if "value" in x and "stderr" in x:
            v, s = x["value"], x["stderr"]
            if not (isinstance(v, float) and math.isfinite(v) and isinstance(s, float)
                    and math.isfinite(s) and s >= 0):
                bad.append(f"{path}: {v!r} ± {s!r}")
        for k, v in x.items():
            bad += _intervals(v, f"{path}/{k}")
    elif isinstance(x, list):
        for k, v in enumerate(x):
            bad += _intervals(v, f"{path}[{k}]")
    elif isinstance(x, float) and not math.isfinite(x):
        bad.append(f"{path}: {x!r}")
    return bad


def _count_intervals(x) -> int:
    if isinstance(x, dict):
        return ("value" in x and "stderr" in x) + sum(_count_intervals(v) for v in x.values())
    if isinstance(x, list):
        return sum(_count_intervals(v) for v in x)
    return 0


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("wang")
    out = {}
    for name in SCRIPTS:
        mod = _load(name)
        res = mod.compute("tiny", jobs=0, root=root / "runs", out=root / f"{name}.json")
        png = mod.plot(json.loads((root / f"{name}.json").read_text()), root / f"{name}.png")
        out[name] = (res, root / f"{name}.json", png)
    return out


@pytest.mark.parametrize("name", SCRIPTS)
def test_tiny_path_writes_json_and_png_with_finite_intervals(results, name):
    res, path, png = results[name]
    doc = json.loads(path.read_text())
    assert doc["mode"] == "tiny"
    assert png.exists() and png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert _intervals(doc) == []
    assert _count_intervals(doc) >= 5
    prov = doc["provenance"]
    for key in ("command", "library_version", "seeds", "started_utc", "wall_s", "loadavg_end"):
        assert key in prov, key
    assert len(prov["seeds"]) >= 2


def test_fig1_cells_and_paper_numbers(results):
    doc = json.loads(results["wang_fig1"][1].read_text())
    assert doc["paper"]["random_encoder_linear_acc"] == 0.34
    assert set(doc["cells"]) == set(doc["transforms"])
    for t, c in doc["cells"].items():
        for key in ("train_ce", "probe_acc", "test_transform_acc"):
            assert c[key]["n_seeds"] == 2 and len(c[key]["mean"]) == len(c[key]["epochs"])
        assert c["gain_sign"] in ("> 0", "< 0", "~ 0")
        assert 0 <= c["linear_probe_acc"]["value"] <= 1


def test_fig3_lambdas_and_paired_differences(results):
    doc = json.loads(results["wang_fig3"][1].read_text())
    assert (doc["lambda_add"], doc["lambda_eliminate"]) == (0.5, 9.0)
    for t in doc["transforms"]:
        cmp = doc["comparison"][t]
        fin = cmp["final_test_acc"]
        # the paired difference's mean is the difference of the cells' means
        assert cmp["add_minus_normal"]["value"] == pytest.approx(
            fin["add"]["value"] - fin["normal"]["value"])
        assert cmp["add_minus_normal"]["paired"] is True


def test_table1_rows_and_information(results):
    doc = json.loads(results["wang_table1"][1].read_text())
    assert doc["paper"]["simclr_linear_acc"] == 0.8949
    assert doc["rows"] == ["none", "crop", "simclr"]   # tiny; quick adds crop_flip
    assert [(s["from"], s["to"]) for s in doc["steps"]] == [("none", "simclr")]
    for b in doc["rows"]:
        for q in ("I(A;Z)", "I(C;Z)", "I(A;C|Z)", "train_rotation_acc", "linear_probe_acc"):
            assert len(doc["cells"][b][q]["seed_values"]) == 2


def test_appd_agreement_over_three_transforms(results):
    doc = json.loads(results["wang_appd"][1].read_text())
    assert len(doc["transforms"]) == 3
    a = doc["agreement"]["rank_vs_ce_gap"]
    assert a["rho"] is None or (-1 <= a["rho"] <= 1 and a["ci"][0] <= a["ci"][1])
    for c in doc["cells"].values():
        assert c["rank_verdict"]


def test_dynamics_theorem4_on_every_checkpoint(results):
    doc = json.loads(results["information_dynamics"][1].read_text())
    th = doc["theorem4"]
    assert [r["epoch"] for r in th["per_epoch"]] == doc["epochs"] == [0, 1]
    for r in th["per_epoch"]:
        assert r["verdict"] in ("holds", "fails", "undetermined")
        # rhs − lhs = gap, per seed, so also for the means over seeds
        assert r["gap"]["value"] == pytest.approx(r["rhs"]["value"] - r["lhs"]["value"])
        assert len(r["per_seed_verdicts"]) == 2
    assert sum(th["verdict_counts"].values()) == len(doc["epochs"])
    ixac = th["data_level"]["I(X;A|C)"]["value"]
    assert ixac == pytest.approx(math.log(4) - th["data_level"]["H(A|X,C)"]["value"])
    for t, v in th["at_z_equals_x"].items():
        assert v["verdict"] in ("fails", "undetermined", "not shown to fail")


def test_runs_with_the_same_config_are_trained_once(results):
    """Fig. 1's rotation4 runs are Fig. 3's normal cell and the dynamics' runs: one
    folder each, however many scripts ask for them."""
    fig1 = json.loads(results["wang_fig1"][1].read_text())
    root = Path(fig1["provenance"]["root"])
    folders = [p for p in (root / "runs").iterdir() if p.is_dir()]
    # fig1: 3 transforms + random; fig3: 2 transforms x (add, eliminate) new; table1: 2 new
    # base augmentations (none, simclr); appd: +cls for vflip; x 2 seeds
    assert len(folders) == 2 * (3 + 1 + 4 + 2 + 1)


def test_plot_only_redraws_from_json(results, tmp_path):
    mod = _load("wang_fig1")
    _, path, _ = results["wang_fig1"]
    from essl_info.experiments.wang import script_main

    assert script_main(mod.__doc__, mod.compute, mod.plot, path, tmp_path / "f.png",
                       ["--plot-only", "--out", str(path), "--figure",
                        str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").exists()
