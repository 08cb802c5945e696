"""Dangovski et al. (ICLR 2022) Fig. 1: for each transformation, SimCLR with it as an
*invariance* augmentation of the views (``--invariant T``) against E-SimCLR *predicting* it
(``--transforms T --lambda 0.4``), beside plain SimCLR; the sign of the gap per
transformation.

    python paper_figs/dangovski_fig1.py               # --quick: digits on CPU, --jobs 2
    python paper_figs/dangovski_fig1.py --plot-only
    python paper_figs/dangovski_fig1.py --tiny        # seconds (the tests)
    python paper_figs/dangovski_fig1.py --full --dataset cifar10 --data-dir DATA   # GPU

Cells: ``SimCLR`` (the baseline: ``--lambda 0``, a rotation head trained on detached
features as a monitor), and per transformation T ``inv:T`` (``--invariant T --lambda 0``)
and ``eq:T`` (``--lambda 0.4``). Per cell: linear and kNN downstream accuracy over 3 seeds
(95 % intervals); per T the gaps eq − inv, eq − SimCLR and inv − SimCLR with their sign
(``+``/``-`` when the 95 % interval excludes 0, ``0`` otherwise).

compute() -> paper_figs/results/dangovski_fig1.json; plot() -> paper_figs/dangovski_fig1.png.
Quick: digits, the digits recipe (small_cnn, width 16) with 3 epochs, T in rotation4,
vflip, hflip, invert: 9 cells x 3 seeds = 27 runs in runs/paper-digits-quick (xie_choice.py
reuses the baseline and the rotation4 cells). Measured: 6 min 38 s with --jobs 2 on 2
cores at load 2.6-3.4 (646 CPU-s; 2026-11-30).
Full (not run here): CIFAR-10, Dangovski et al.'s SimCLR setting (ResNet-18, batch 512,
800 epochs, lr 0.06 x batch/256, weight decay 5e-4: the library's cifar10 recipe), the
seven transformations of their figure: 15 cells x 3 seeds = 45 runs of about 2-3
GPU-hours each, 100-130 GPU-hours (estimate).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
NAME = "dangovski_fig1"
RESULTS = HERE / "results" / f"{NAME}.json"
FIGURE = HERE / f"{NAME}.png"

TRANSFORMS = {"tiny": ("rotation4", "hflip"),
              "quick": ("rotation4", "vflip", "hflip", "invert"),
              "full": ("hflip", "grayscale", "rotation4", "vflip", "jigsaw4", "blur4", "invert")}
TRAIN = {"tiny": {}, "quick": {"epochs": 3}, "full": {}}
LAMBDA = 0.4
BASELINE = "SimCLR"
# What is published in words: Wang et al. (2024, §3) summarise Dangovski et al.'s Fig. 1 as
# "additional equivariance to some augmentations (e.g., four-fold rotation and vertical
# flip) can bring benefits while some are even harmful (e.g., horizontal flip)": the sign
# of eq − SimCLR on CIFAR-10. The figure's bar heights are not transcribed here.
PUBLISHED = {"cifar10": {"eq_minus_simclr_sign": {"rotation4": "+", "vflip": "+",
                                                  "hflip": "-"}}}


def cells_for(transforms) -> dict[str, dict]:
    """Cell name -> TrainConfig overrides (the baseline predicts rotation4 as a monitor)."""
    cells = {BASELINE: {"transforms": ("rotation4",), "lam": 0.0}}
    for t in transforms:
        cells[f"inv:{t}"] = {"transforms": (t,), "lam": 0.0, "invariant": (t,)}
        cells[f"eq:{t}"] = {"transforms": (t,), "lam": LAMBDA}
    return cells


def experiment(mode: str, dataset: str, root=None, data_dir=None, transforms=None):
    from essl_info.experiments.cells import cell_sweep, mode_for
    from essl_info.training.config import TrainConfig

    m = mode_for(mode, dataset=dataset, root=root)
    base = TrainConfig(dataset=dataset, data_dir=data_dir, ssl="simclr",
                       **{**m.train, **TRAIN[mode]})
    ts = tuple(transforms or TRANSFORMS[mode])
    return m, cell_sweep(m.root, base, cells_for(ts), m.seeds), ts


def compute(mode: str = "quick", *, jobs: int = 2, root=None, dataset: str | None = None,
            data_dir: str | None = None, transforms=None, out: Path = RESULTS) -> dict:
    from essl_info.experiments.cells import difference, provenance, run_cells

    t0 = time.time()
    dataset = dataset or ("cifar10" if mode == "full" else "digits")
    published_on = "cifar10" if dataset == "digits" else dataset
    m, sweep, ts = experiment(mode, dataset, root, data_dir, transforms)
    res = run_cells(sweep, m, jobs=jobs, device="cuda" if mode == "full" else "cpu")
    cells = res["cells"]
    gaps = {t: {metric: {"eq_minus_inv": difference(cells[f"eq:{t}"][metric],
                                                    cells[f"inv:{t}"][metric]),
                         "eq_minus_simclr": difference(cells[f"eq:{t}"][metric],
                                                       cells[BASELINE][metric]),
                         "inv_minus_simclr": difference(cells[f"inv:{t}"][metric],
                                                        cells[BASELINE][metric])}
                for metric in ("linear", "knn")} for t in ts}
    doc = {"name": NAME, "mode": mode, "dataset": dataset, "transforms": list(ts),
           "lambda": LAMBDA, "scores": ["linear", "knn"], "cells": cells, "gaps": gaps,
           "runs": res["runs"], "published": PUBLISHED.get(published_on, {}),
           "published_dataset": published_on,
           "provenance": provenance(t0, seeds=m.seeds, mode=mode, root=sweep.root,
                                    extra={"n_runs": res["n_runs"],
                                           "trained_now": res["trained_now"]})}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def plot(doc: dict | None = None, out: Path = FIGURE) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from essl_info.experiments.cells_report import bar_panel

    doc = doc if doc is not None else json.loads(RESULTS.read_text())
    ts = doc["transforms"]
    signs = doc["published"].get("eq_minus_simclr_sign", {})
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(ts), 3.8))
    for ax, metric in zip(axes, doc["scores"]):
        bar_panel(ax, doc["cells"], ts, ["invariance", "equivariance"],
                  lambda t, s: f"{'inv' if s == 'invariance' else 'eq'}:{t}", metric,
                  scale=100, title=f"{metric} accuracy", ylabel="accuracy (%)")
        base = doc["cells"][BASELINE][metric]
        lo, hi = (100 * v for v in (base["ci95"]))
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        ax.axhline(100 * base["value"], color="0.3", ls="--", lw=1, label="SimCLR")
        vals = [100 * doc["cells"][f"{k}:{t}"][metric]["value"] for t in ts
                for k in ("inv", "eq")] + [lo]
        ax.set_ylim(min(vals) - 3, None)
        ticks = []
        for t in ts:
            g = doc["gaps"][t][metric]["eq_minus_inv"]
            ticks.append(f"{t}\nE−I {g['sign']}"
                         + (f"\npub. E−SimCLR {signs[t]}" if t in signs else ""))
        ax.set_xticks(range(len(ts)), ticks, fontsize=7)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Dangovski et al. Fig. 1 — {doc['dataset']} ({doc['mode']}), mean of "
                 f"{len(doc['provenance']['seeds'])} seeds, 95 % intervals; band: SimCLR",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    from essl_info.experiments.cells import script_results
    from essl_info.experiments.cells_report import format_cells

    doc, figure = script_results(__doc__, HERE, NAME, compute, argv)
    print(format_cells(doc["cells"], doc["scores"]))
    for t, g in doc["gaps"].items():
        d = g["linear"]["eq_minus_inv"]
        print(f"{t:<12} eq - inv (linear) {100 * d['value']:+.2f} ± {196 * d['stderr']:.2f} "
              f"points, sign {d['sign']}")
    print("wrote", plot(doc, figure))


if __name__ == "__main__":
    main()
