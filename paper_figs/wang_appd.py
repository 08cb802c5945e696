"""Wang et al. (NeurIPS 2024) Appendix D: their estimate of I(A;C|X) beside ours.

Theirs: the gap between the converged training cross-entropy of transformation
prediction alone and with class information added (L_A + λ1·L_cls, λ1 = 0.5), "or
similarly the accuracies" — run here for each of the seven transformations (final-epoch
training CE and test transformation accuracy, mean over seeds, 95 % intervals; the gaps
paired by seed, ``curves.paired_difference``). Ours: ``rank_transforms``' Î_V(A;C|X) on the data before any
training (held-out CEs of small CNNs q(a|x) and q(a|x,c), ± total error). Agreement:
Spearman ρ between the two over the transformations, with a 95 % parametric bootstrap
interval (each number redrawn from a normal with its standard error).

    python paper_figs/wang_appd.py                 # --quick: digits on CPU, --jobs 2
    python paper_figs/wang_appd.py --plot-only
    python paper_figs/wang_appd.py --full --data-dir DATA/cifar10    # GPU

compute() -> paper_figs/results/wang_appd.json; plot() -> paper_figs/wang_appd.png.
Quick: 42 runs of 5 epochs, 30 of them shared with wang_fig1 and wang_fig3, and
rank-transforms on 1,500 digits (7 transformations): about 10 min on 2 cores with --jobs 2
after those two (estimated). Full: 21 new runs of 200 epochs on CIFAR-10 (ResNet-18), of
the order of 6-12 GPU-hours, plus rank-transforms on 5,000 images (minutes; not measured).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "wang_appd.json"
FIGURE = HERE / "wang_appd.png"
N_BOOT = 4000


def agreement(x: list[dict], y: list[dict], *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Spearman ρ of two lists of ``{"value", "stderr"}`` and its 95 % parametric
    bootstrap interval (each number redrawn from a normal with its standard error);
    None where ρ is undefined (fewer than 3 points or a constant side)."""
    import numpy as np
    from scipy.stats import rankdata

    def rho(a: np.ndarray, b: np.ndarray) -> np.ndarray:   # along the last axis
        ra, rb = rankdata(a, axis=-1), rankdata(b, axis=-1)
        ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
        den = np.sqrt((ra ** 2).sum(-1) * (rb ** 2).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1), np.nan)

    xv, xs = np.array([d["value"] for d in x]), np.array([d["stderr"] for d in x])
    yv, ys = np.array([d["value"] for d in y]), np.array([d["stderr"] for d in y])
    rng = np.random.default_rng(seed)
    point = float(rho(xv, yv)) if len(xv) > 2 else float("nan")
    draws = rho(xv + xs * rng.standard_normal((n_boot, len(xv))),
                yv + ys * rng.standard_normal((n_boot, len(yv))))
    draws = draws[np.isfinite(draws)]
    ok = np.isfinite(point) and len(draws) > 0
    return {"rho": point if ok else None,
            "ci": [float(q) for q in np.quantile(draws, [0.025, 0.975])] if ok else None,
            "p_rho_le_0": float(np.mean(draws <= 0)) if ok else None,
            "n_transforms": len(xv), "n_boot": n_boot}


def compute(mode: str = "quick", *, jobs: int = 2, root=None, data_dir=None, seeds=None,
            device: str = "cpu", out: Path = RESULTS) -> dict:
    from essl_info.experiments import wang as W
    from essl_info.experiments.curves import group_folders, paired_difference, seed_curve

    m, root, seeds, t0 = W.setup(mode, root, seeds)
    base = W.base_config(m, data_dir=data_dir)
    sweep = W.run_sweep(W.class_info_specs(base, m.transforms, ["normal", "add"], seeds),
                        root, jobs=jobs)
    data = W.data_level(m, root, W.TRANSFORMS if m.name != "tiny" else m.transforms,
                        data_dir=data_dir, device=device)
    groups = group_folders(sweep.runs, ("transform", "class_info"))
    cells = {}
    for t in m.transforms:
        ce = {c: seed_curve(groups[(t, c)], f"train_ce/{t}") for c in ("normal", "add")}
        acc = {c: seed_curve(groups[(t, c)], f"test_acc/{t}", sampling="binomial")
               for c in ("normal", "add")}
        ce_gap = paired_difference(ce["normal"], ce["add"])
        acc_gap = paired_difference(acc["add"], acc["normal"])
        ce, acc = ({c: v.final for c, v in d.items()} for d in (ce, acc))
        cells[t] = {"train_ce": ce, "test_acc": acc, "ce_gap": ce_gap,
                    "ce_gap_sign": W.significance(ce_gap), "acc_gap": acc_gap,
                    "acc_gap_sign": W.significance(acc_gap),
                    "rank_i_acx": data[t]["i_acx"], "rank_h_ax": data[t]["h_ax"],
                    "rank_verdict": data[t]["verdict"],
                    "rank_sign": W.significance(data[t]["i_acx"])}
    ts = list(m.transforms)
    rank = [cells[t]["rank_i_acx"] for t in ts]
    res = {"appendix": "Wang et al. 2024, Appendix D", "mode": m.name, "dataset": m.dataset,
           "transforms": ts, "lambda_add": W.LAMBDA_ADD, "cells": cells,
           "agreement": {"rank_vs_ce_gap": agreement(rank, [cells[t]["ce_gap"] for t in ts]),
                         "rank_vs_acc_gap": agreement(rank, [cells[t]["acc_gap"] for t in ts]),
                         "sign_matches_ce_gap": sum(cells[t]["rank_sign"] == cells[t]["ce_gap_sign"]
                                                    for t in ts)},
           "paper": W.PAPER["appd"], "provenance": W.provenance(m, root, seeds, t0)}
    W.save_result(res, out)
    return res


def plot(res: dict, out: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label, agr in (
            (axes[0], "ce_gap", "CE gap: CE(alone) − CE(+cls), nats", "rank_vs_ce_gap"),
            (axes[1], "acc_gap", "accuracy gap: acc(+cls) − acc(alone)", "rank_vs_acc_gap")):
        for t in res["transforms"]:
            c = res["cells"][t]
            ax.errorbar(c["rank_i_acx"]["value"], c[key]["value"],
                        xerr=1.96 * c["rank_i_acx"]["stderr"], yerr=1.96 * c[key]["stderr"],
                        fmt="o", capsize=3)
            ax.annotate(t, (c["rank_i_acx"]["value"], c[key]["value"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        a = res["agreement"][agr]
        rho = "undefined" if a["rho"] is None else (
            f"{a['rho']:+.2f}, 95 % [{a['ci'][0]:+.2f}, {a['ci'][1]:+.2f}]")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set(xlabel="rank-transforms Î(A;C|X) before training (nats)", ylabel=label,
               title=f"Spearman ρ = {rho}")
    fig.suptitle(f"Wang et al. App. D on {res['dataset']} ({res['mode']}, "
                 f"{len(res['provenance']['seeds'])} seeds; bars 95 %)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    from essl_info.experiments.wang import script_main

    sys.exit(script_main(__doc__, compute, plot, RESULTS, FIGURE))
