"""The theory test (essl_info.experiments.theory): its analysis against truth on built
inputs (Spearman ρ against scipy, gains by construction), and the tiny end-to-end path
(rank-transforms, sweep, downstream evaluation, table, JSON, plot) in seconds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from essl_info.cli import main
from essl_info.experiments.downstream import (
    EvalConfig,
    cross_validated_correctness,
    linear_predict,
)
from essl_info.experiments.theory import _spearman, analyse, cell_bootstrap, theory_test
from essl_info.experiments.theory_report import (
    format_agreement,
    format_table,
    plot,
    replicate_agreement,
)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 4, 7).astype(float)
        y = rng.normal(size=7)
        if np.ptp(x) == 0:
            continue
        assert _spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert math.isnan(_spearman(np.ones(4), np.arange(4.0)))


def _built_inputs(gains, n=400, seeds=3):
    """Rows and evaluations whose per-image correctness gives each candidate's accuracy
    exactly base + gain (the same images right in every seed: no seed noise)."""
    rows, evals, k = [], {}, 0
    base = 0.5

    def add(obj, t, acc):
        nonlocal k
        for s in range(seeds):
            key = f"r{k}"
            k += 1
            c = (np.arange(n) < round(acc * n)).astype(float).tolist()
            rows.append({"tags": {"objective": obj, "transform": t, "seed": s}, "key": key})
            evals[key] = {"n": n, "correct": {"linear": c, "knn": c}}

    for obj, b in (("random", base), ("simclr", base)):
        add(obj, "-", b)
    for t, g in gains.items():
        for obj in ("pure", "e-simclr"):
            add(obj, t, base + g)
    return rows, evals


def test_analyse_recovers_built_gains_and_a_perfect_ranking():
    gains = {"rotation4": 0.2, "vflip": 0.1, "hflip": 0.0, "invert": -0.05}
    pred = {t: {"i": i, "i_se": 0.001, "verdict": v} for t, i, v in (
        ("rotation4", 0.5, "synergistic"), ("vflip", 0.3, "synergistic"),
        ("hflip", 0.0, "uninformative"), ("invert", -0.01, "lossless/shortcut"))}
    rows, evals = _built_inputs(gains)
    res = analyse(rows, evals, pred, list(gains), n_boot=300)
    for c in res["cells"]:
        assert c["gain"] == pytest.approx(gains[c["transform"]], abs=1e-12)
        assert c["seed_sd"] < 1e-12 and c["stderr"] > 0   # image sampling error remains
    for a in res["agreement"]:
        assert a["rho"] == pytest.approx(1.0) and a["ci"][0] > 0.5
    syn = next(v for v in res["by_verdict"] if v["verdict"] == "synergistic")
    assert syn["mean_gain"] == pytest.approx(0.15) and syn["transforms"] == ["rotation4",
                                                                             "vflip"]
    assert "Spearman" in format_table({**res, "dataset": "built", "mode": "test",
                                       "seeds": 3, "transforms": list(gains),
                                       "prediction": pred})


def test_cell_bootstrap_carries_the_cells_own_seed_error():
    # 3 seeds reading 0.40, 0.50 and 0.60 of 2,000 images: the seed part dominates, so
    # the draws behind ρ's interval must spread as the cell's stderr (t-inflated over 3
    # seeds), and ~95 % of them fall in value ± 1.96 stderr. Resampling the 3 seeds with
    # replacement (the previous scheme) spreads them ~2.7x less.
    rng = np.random.default_rng(0)
    n = 2000
    correct = np.stack([(np.arange(n) < p * n).astype(float) for p in (0.4, 0.5, 0.6)])
    weights = rng.multinomial(n, np.full(n, 1 / n), size=4000) / n
    ens, boot = cell_bootstrap(correct, weights, rng)
    assert ens.value == pytest.approx(0.5) and ens.stderr > 0.12
    assert boot.std() == pytest.approx(ens.stderr, rel=0.05)
    assert np.mean(abs(boot - ens.value) <= 1.96 * ens.stderr) == pytest.approx(0.95, abs=0.015)


def _result(gain, se, rho, ci, dataset="digits"):
    cell = {"metric": "linear", "objective": "pure", "transform": "rotation4",
            "accuracy": 0.5 + gain, "stderr": se, "gain": gain, "gain_stderr": se}
    return {"dataset": dataset, "mode": "quick", "cells": [cell],
            "baselines": [{"metric": "linear", "baseline": "random", "accuracy": 0.5,
                           "stderr": se}],
            "agreement": [{"metric": "linear", "objective": "pure", "rho": rho, "ci": ci}]}


def test_replicate_agreement_by_hand():
    a = _result(0.10, 0.03, -0.4, [-0.8, 0.0])
    b = _result(0.20, 0.04, 0.0, [-0.2, 0.2])
    rep = replicate_agreement(a, b)
    z = {r["what"]: r["z"] for r in rep["rows"]}
    assert z["linear/pure/rotation4 gain"] == pytest.approx(0.10 / 0.05)
    assert z["linear/pure/rotation4 accuracy"] == pytest.approx(2.0)
    assert z["linear/random baseline accuracy"] == 0.0
    se = math.hypot(0.4, 0.2) / 1.959964
    assert rep["rho"][0]["z"] == pytest.approx(0.4 / se)
    assert (rep["n"], rep["beyond_1.96"], rep["beyond_2.58"]) == (3, 2, 0)
    assert "max |z| 2.00" in format_agreement(rep)
    with pytest.raises(ValueError, match="cannot compare"):
        replicate_agreement(a, _result(0.1, 0.03, 0.0, None, dataset="transform-world"))


def test_cross_validation_separates_separable_features():
    import torch

    labels = torch.arange(60) % 3
    feats = torch.nn.functional.one_hot(labels, 3).double() + 0.01 * torch.randn(
        60, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = cross_validated_correctness(feats, labels, 3, EvalConfig(folds=3, repeats=2, knn_k=5))
    assert c["linear"].mean() == 1.0 and c["knn"].mean() == 1.0
    noise = torch.randn(60, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    c = cross_validated_correctness(noise, labels, 3, EvalConfig(folds=3, repeats=2, knn_k=5))
    assert c["linear"].mean() < 0.7


def test_tiny_end_to_end_then_cached(tmp_path, capsys):
    lines = []
    res = theory_test("digits", ["rotation4", "invert"], mode="tiny", root=tmp_path / "t",
                      jobs=0, n_boot=200, progress=lines.append)
    # candidates × objectives × seeds, SimCLR × seeds, random encoder × its 3 seeds
    assert res["provenance"]["runs"] == 2 * 2 * 2 + 2 + 3 and res["seeds"] == 2
    assert {b["baseline"]: len(b["seed_values"]) for b in res["baselines"]} == {
        "random": 3, "simclr": 2}
    assert {(c["metric"], c["objective"], c["transform"]) for c in res["cells"]} == {
        (m, o, t) for m in ("linear", "knn") for o in ("pure", "e-simclr")
        for t in ("rotation4", "invert")}
    for a in res["agreement"]:
        assert a["rho"] is None or -1 <= a["rho"] <= 1
    assert plot(res, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    json.dumps(res)
    # rerun: nothing trained, evaluations read from disk, the same numbers
    again = theory_test("digits", ["rotation4", "invert"], mode="tiny", root=tmp_path / "t",
                        jobs=0, n_boot=200, progress=lines.append)
    assert again["provenance"]["trained_now"] == 0
    assert again["cells"] == res["cells"] and again["agreement"] == res["agreement"]


def test_cli_print_commands_and_bad_input(tmp_path, capsys):
    assert main(["theory-test", "--dataset", "digits", "--tiny", "--transforms",
                 "rotation4,hflip", "--root", str(tmp_path / "r"), "--print-commands"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 13 and all(x.startswith("essl-info train --dataset digits") for x in out)
    assert sum("--epochs 0" in x for x in out) == 3          # the random-encoder baseline
    # a replicate on fresh seeds: the same 13 runs with seeds 100, 101 (random: 100-102),
    # in their own folders beside the first set's
    assert main(["theory-test", "--dataset", "digits", "--tiny", "--transforms",
                 "rotation4,hflip", "--root", str(tmp_path / "r"), "--print-commands",
                 "--first-seed", "100"]) == 0
    fresh = capsys.readouterr().out.splitlines()
    seeds = [int(x.split("--seed ")[1].split()[0]) for x in fresh]
    assert len(fresh) == 13 and sorted(set(seeds)) == [100, 101, 102]
    assert sum(s == 102 for s in seeds) == 1 and not set(fresh) & set(out)
    # tiny mode on transform-world: its 8 px are raised to the 16 px the dataset can draw
    # (every run used to fail on "image_size must be even and >= 16")
    assert main(["theory-test", "--dataset", "transform-world", "--tiny", "--transforms",
                 "rotation4,hflip", "--root", str(tmp_path / "tw"), "--print-commands"]) == 0
    tw = capsys.readouterr().out.splitlines()
    assert len(tw) == 13 and all("--image-size 16 " in x and "--trans-size 16 " in x
                                 for x in tw)
    assert main(["theory-test", "--dataset", "digits", "--tiny", "--first-seed", "-1",
                 "--print-commands", "--root", str(tmp_path / "r")]) == 2
    assert "first_seed must be >= 0" in capsys.readouterr().err
    assert main(["theory-test", "--dataset", "digits", "--tiny", "--transforms",
                 "rotation4"]) == 2
    assert "at least 2 candidate" in capsys.readouterr().err


def test_ridge_probe_matches_scikit_learn():
    import torch
    from sklearn.linear_model import RidgeClassifier

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 12, generator=g, dtype=torch.float64) * torch.linspace(0.1, 5, 12)
    y = (x[:, :4].argmax(1) + (torch.rand(300, generator=g) < 0.2).long()) % 5
    xtr, ytr, xte = x[:200], y[:200], x[200:]
    mu, sd = xtr.mean(0), xtr.std(0)
    ref = RidgeClassifier(alpha=3.0).fit(((xtr - mu) / sd).numpy(), ytr.numpy())
    ours = linear_predict(xtr, ytr, xte, n_classes=5, alpha=3.0)
    assert (ours.numpy() == ref.predict(((xte - mu) / sd).numpy())).all()
