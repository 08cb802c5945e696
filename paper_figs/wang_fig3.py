"""Wang et al. (NeurIPS 2024) Fig. 3: class information added, normal, or eliminated.

Pure E-SSL with rotation4, hflip and blur4, in three cells: normal (L_A), class
information added (L_A + λ1·L_cls, λ1 = 0.5: ``--class-info add --class-weight 0.5``) and
eliminated (min-max: the class head minimises L_cls while the encoder minimises
L_A − λ2·L_cls, λ2 = 9, by gradient reversal: ``--class-info eliminate --class-weight 9``;
the head's own step is then also scaled by 9). The transformation-prediction accuracy on
test images against epoch; final differences +cls − normal and normal − (−cls) with 95 %
intervals (mean over seeds, binomial ⊕ t-inflated seed error; differences paired by seed).

    python paper_figs/wang_fig3.py                 # --quick: digits on CPU, --jobs 2
    python paper_figs/wang_fig3.py --plot-only
    python paper_figs/wang_fig3.py --full --data-dir DATA/cifar10    # GPU

compute() -> paper_figs/results/wang_fig3.json; plot() -> paper_figs/wang_fig3.png.
Quick: 27 runs of 5 epochs, 9 of them (normal) shared with wang_fig1: about 8 min on 2
cores with --jobs 2 after wang_fig1 (12 min alone; estimated from one run). Full: 27 runs
of 200 epochs of ResNet-18 on CIFAR-10, of the order of 8-16 GPU-hours (not measured; the
paper also runs CIFAR-100 and ResNet-50, not included).
The paper: for rotation +cls slightly better, −cls worse by a larger margin; for hflip and
blur, class information barely helps.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "wang_fig3.json"
FIGURE = HERE / "wang_fig3.png"
CELLS = ("add", "normal", "eliminate")


def compute(mode: str = "quick", *, jobs: int = 2, root=None, data_dir=None, seeds=None,
            device: str = "cpu", out: Path = RESULTS) -> dict:
    from essl_info.experiments import wang as W
    from essl_info.experiments.curves import group_folders, paired_difference, seed_curve

    m, root, seeds, t0 = W.setup(mode, root, seeds)
    base = W.base_config(m, data_dir=data_dir)
    sweep = W.run_sweep(W.class_info_specs(base, m.fig3_transforms, CELLS, seeds), root,
                        jobs=jobs)
    groups = group_folders(sweep.runs, ("transform", "class_info"))
    cells, comparison = {}, {}
    for t in m.fig3_transforms:
        cells[t], acc = {}, {}
        for c in CELLS:
            f = groups[(t, c)]
            acc[c] = seed_curve(f, f"test_acc/{t}", sampling="binomial")
            cells[t][c] = {"test_acc": acc[c].to_dict(),
                           "train_acc": seed_curve(f, f"train_acc/{t}").to_dict(),
                           "train_ce": seed_curve(f, f"train_ce/{t}").to_dict()}
        fin = {c: acc[c].final for c in CELLS}
        add_gain = paired_difference(acc["add"], acc["normal"])
        elim_loss = paired_difference(acc["normal"], acc["eliminate"])
        comparison[t] = {"final_test_acc": fin, "add_minus_normal": add_gain,
                         "add_minus_normal_sign": W.significance(add_gain),
                         "normal_minus_eliminate": elim_loss,
                         "normal_minus_eliminate_sign": W.significance(elim_loss)}
        if t == "rotation4":
            comparison[t]["paper_claim"] = W.PAPER["fig3"]["claims"][0]
            comparison[t]["reproduced"] = {
                "add_better": comparison[t]["add_minus_normal_sign"] == "> 0",
                "eliminate_worse": comparison[t]["normal_minus_eliminate_sign"] == "> 0",
                "eliminate_margin_larger": elim_loss["value"] > add_gain["value"]}
        else:
            comparison[t]["paper_claim"] = W.PAPER["fig3"]["claims"][1]
            comparison[t]["reproduced"] = {
                "add_barely_helps": comparison[t]["add_minus_normal_sign"] != "> 0"}
    res = {"figure": "Wang et al. 2024, Fig. 3", "mode": m.name, "dataset": m.dataset,
           "transforms": list(m.fig3_transforms), "cells_order": list(CELLS),
           "lambda_add": W.LAMBDA_ADD, "lambda_eliminate": W.LAMBDA_ELIMINATE,
           "cells": cells, "comparison": comparison, "paper": W.PAPER["fig3"],
           "provenance": W.provenance(m, root, seeds, t0)}
    W.save_result(res, out)
    return res


def plot(res: dict, out: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ts = res["transforms"]
    fig, axes = plt.subplots(1, len(ts), figsize=(4.6 * len(ts), 4), squeeze=False)
    style = {"add": ("tab:green", f"+cls (λ1 = {res['lambda_add']:g})"),
             "normal": ("tab:blue", "normal"),
             "eliminate": ("tab:red", f"−cls (λ2 = {res['lambda_eliminate']:g})")}
    for ax, t in zip(axes[0], ts):
        for c in res["cells_order"]:
            d = res["cells"][t][c]["test_acc"]
            e, mu, se = (np.array(d[q]) for q in ("epochs", "mean", "stderr"))
            col, label = style[c]
            ax.plot(e, mu, "o-", color=col, ms=3, label=label)
            ax.fill_between(e, mu - 1.96 * se, mu + 1.96 * se, color=col, alpha=0.2)
        cmp = res["comparison"][t]
        a, b = cmp["add_minus_normal"], cmp["normal_minus_eliminate"]
        ax.set_title(f"{t}\n+cls−normal {a['value']:+.3f}±{1.96 * a['stderr']:.3f}, "
                     f"normal−(−cls) {b['value']:+.3f}±{1.96 * b['stderr']:.3f}", fontsize=8)
        ax.set(xlabel="epoch", ylabel=f"{t} prediction accuracy (test)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Wang et al. Fig. 3 on {res['dataset']} ({res['mode']}, "
                 f"{len(res['provenance']['seeds'])} seeds; bands and ± are 95 %)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    from essl_info.experiments.wang import script_main

    sys.exit(script_main(__doc__, compute, plot, RESULTS, FIGURE))
