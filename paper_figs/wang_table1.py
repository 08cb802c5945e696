"""Wang et al. (NeurIPS 2024) Table 1: the base augmentation of rotation prediction.

Pure rotation prediction (rotation4, ``ssl="none"``) with the base augmentation none,
crop+flip or SimCLR's (and Fig. 1's crops alone, a fourth row shared with wang_fig1):
the final training rotation accuracy (the head on the augmented training batches of the
last epoch), the offline linear-probe test accuracy, and our I(A;Z), I(C;Z), I(A;C|Z)
(``measure``, probe, nats) of the final backbone, each mean over seeds with a 95 %
interval (``combine_seeds``: sampling ⊕ t-inflated seed error; changes between rows
paired by seed).

    python paper_figs/wang_table1.py               # --quick: digits on CPU, --jobs 2
    python paper_figs/wang_table1.py --plot-only
    python paper_figs/wang_table1.py --full --data-dir DATA/cifar10  # GPU

compute() -> paper_figs/results/wang_table1.json; plot() -> paper_figs/wang_table1.png.
Quick: 9 runs of 5 epochs (+3 shared with wang_fig1) and 12 measurements (~25 s of one core
each, two at a time): about 7 min on 2 cores with --jobs 2 after wang_fig1 (estimated).
Full: 9 runs of 200 epochs of ResNet-18 on CIFAR-10, of the order of 3-6 GPU-hours (not
measured). The paper: stronger augmentation gives lower training rotation accuracy and
higher test accuracy; SimCLR itself reaches 89.49 % (not run here: it is not an E-SSL cell).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "wang_table1.json"
FIGURE = HERE / "wang_table1.png"
ROWS = ("none", "crop", "crop_flip", "simclr")   # weakest to strongest
TINY_ROWS = ("none", "crop", "simclr")           # --tiny: fewer measurements


def compute(mode: str = "quick", *, jobs: int = 2, root=None, data_dir=None, seeds=None,
            device: str = "cpu", out: Path = RESULTS) -> dict:
    from essl_info.experiments import wang as W
    from essl_info.experiments.curves import final_value, paired_difference, seed_curve
    from essl_info.experiments.sweep import collect, grid

    m, root, seeds, t0 = W.setup(mode, root, seeds)
    rows_ = TINY_ROWS if m.name == "tiny" else ROWS
    base = W.base_config(m, data_dir=data_dir)
    specs = grid(base, transform=W.transform_axis(["rotation4"]),
                 class_info=[("normal", {})],
                 base_aug=[(b, {"base_aug": b}) for b in rows_], seed=W.seed_axis(seeds))
    sweep = W.run_sweep(specs, root, jobs=jobs)
    rows = collect(sweep)
    table, curves = {}, {}
    for b in rows_:
        cell = sorted((r for r in rows if r["tags"]["base_aug"] == b),
                      key=lambda r: r["tags"]["seed"])
        folders = [r["folder"] for r in cell]
        last = [W.epoch_checkpoints(f)[-1][1] for f in folders]
        info = W.measure_checkpoints(last, m, jobs=max(1, jobs), device=device)
        curves[b] = {"train": seed_curve(folders, "train_acc/rotation4"),
                     "probe": seed_curve(folders, "linear_probe_acc", sampling="binomial")}
        table[b] = {"train_rotation_acc": curves[b]["train"].final,
                    "test_rotation_acc": final_value(cell, "test_acc/rotation4",
                                                     sampling="binomial"),
                    "linear_probe_acc": final_value(cell, "linear_probe_acc",
                                                    sampling="binomial"),
                    **{q: W.combine([i[q] for i in info]) for q in W.MEASURED}}
    order = [b for b in rows_ if b != "crop"]   # the paper's three rows, weakest first
    steps = []
    for weak, strong in zip(order, order[1:]):
        d_train = paired_difference(curves[strong]["train"], curves[weak]["train"])
        d_test = paired_difference(curves[strong]["probe"], curves[weak]["probe"])
        steps.append({"from": weak, "to": strong, "train_rotation_acc_change": d_train,
                      "train_sign": W.significance(d_train), "test_acc_change": d_test,
                      "test_sign": W.significance(d_test)})
    res = {"table": "Wang et al. 2024, Table 1", "mode": m.name, "dataset": m.dataset,
           "rows": list(rows_), "cells": table, "steps": steps, "paper": W.PAPER["table1"],
           "reproduced": {
               "train_acc_falls": all(s["train_sign"] == "< 0" for s in steps),
               "test_acc_rises": all(s["test_sign"] == "> 0" for s in steps),
               "simclr_reference": "not run (SimCLR alone is not an E-SSL cell of the sweep)"},
           "provenance": W.provenance(m, root, seeds, t0)}
    W.save_result(res, out)
    return res


def plot(res: dict, out: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = res["rows"]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k, (key, label) in enumerate([("train_rotation_acc", "training rotation acc."),
                                      ("test_rotation_acc", "test rotation acc."),
                                      ("linear_probe_acc", "linear-probe acc. (test)")]):
        v = [res["cells"][b][key]["value"] for b in rows]
        e = [1.96 * res["cells"][b][key]["stderr"] for b in rows]
        axes[0].bar(x + (k - 1) * 0.27, v, 0.27, yerr=e, capsize=3, label=label)
    axes[0].axhline(res["paper"]["simclr_linear_acc"], color="k", ls="--", lw=1,
                    label="SimCLR, paper (CIFAR-10)")
    axes[0].set_xticks(x, rows)
    axes[0].set(ylabel="accuracy", title="accuracies, 95 %", ylim=(0, 1.05))
    axes[0].legend(fontsize=7)
    from essl_info.experiments.wang import MEASURED

    for k, q in enumerate(MEASURED):
        v = [res["cells"][b][q]["value"] for b in rows]
        e = [1.96 * res["cells"][b][q]["stderr"] for b in rows]
        axes[1].bar(x + (k - 1) * 0.27, v, 0.27, yerr=e, capsize=3, label=q)
    axes[1].axhline(0, color="0.5", lw=0.8)
    axes[1].set_xticks(x, rows)
    axes[1].set(ylabel="nats (probe)", title="information of the final backbone, 95 %")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Wang et al. Table 1 on {res['dataset']} ({res['mode']}, "
                 f"{len(res['provenance']['seeds'])} seeds): base augmentation of rotation "
                 f"prediction", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    from essl_info.experiments.wang import script_main

    sys.exit(script_main(__doc__, compute, plot, RESULTS, FIGURE))
