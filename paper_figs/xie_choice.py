"""Xie et al. (CVPR-W 2022), "What should be equivariant in self-supervised learning":
per transformation, invariant or equivariant? The library's rule
(``essl_info.diagnostics.choice``: a ``synergistic`` rank-transforms verdict, Î(A;C|X)
clearly positive, -> equivariant; otherwise invariant; scale-valued transformations get the
order-preserving loss) against what training both ways measures.

    python paper_figs/xie_choice.py                   # --quick: digits on CPU, --jobs 2
    python paper_figs/xie_choice.py --plot-only
    python paper_figs/xie_choice.py --tiny            # seconds (the tests)
    python paper_figs/xie_choice.py --full --dataset cifar10 --data-dir DATA   # GPU

1. **Rule** (before training): ``rank_transforms`` per candidate (Ĥ(A|X), Î(A;C|X) with
   standard errors, cached in ROOT/xie-rank-<mode>/rank.json) -> verdict -> role, by
   ``choice.ROLES``; loss ``ce+order`` for a scale-valued equivariant transformation.
2. **Measurement** (after training, 3 seeds): per candidate T the cells ``inv:T``
   (SimCLR with T applied to the views), ``eq:T`` (E-SimCLR, cross-entropy head) and, for
   scale-valued T (``rotate_angle``, ``blur_sigma``, ``brightness``), ``eq+order:T``
   (``--order-weight 1``: Xie et al.'s order-preserving loss, our reading); the baseline
   ``SimCLR``. Measured role: equivariant when the better equivariant cell beats ``inv:T``
   by a 95 % interval excluding 0 (linear probe), invariant when it loses so, else a tie.
3. **Agreement**: the rule's role against the measured one, per candidate.

compute() -> paper_figs/results/xie_choice.json; plot() -> paper_figs/xie_choice.png.
Quick: digits, the digits recipe with 3 epochs, candidates rotation4 (shared with
dangovski_fig1.py) and the three scale-valued ones: 12 cells x 3 seeds = 36 runs (9 shared
with dangovski_fig1.py) in runs/paper-digits-quick, and rank-transforms on 2,000 images.
Measured: 14 min 15 s with --jobs 2 after dangovski_fig1.py, on 2 cores at load 2.7-4.6
(1,334 CPU-s; 2026-11-30). The scale-valued transformations carry all their 5-7 labels per
image in the transformation branch.
Full (not run here): CIFAR-10 with the cifar10 recipe (ResNet-18, 800 epochs, batch 512):
12 cells x 3 seeds = 36 runs of 2-3 GPU-hours, 75-110 GPU-hours (estimate).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
NAME = "xie_choice"
RESULTS = HERE / "results" / f"{NAME}.json"
FIGURE = HERE / f"{NAME}.png"

CANDIDATES = {"tiny": ("rotation4", "brightness"),
              "quick": ("rotation4", "rotate_angle", "blur_sigma", "brightness"),
              "full": ("rotation4", "hflip", "rotate_angle", "blur_sigma", "brightness")}
ORDER_WEIGHT = 1.0
# Xie et al. report their choices on ImageNet-scale data in tables not transcribed here;
# no published number is drawn (published: none).
PUBLISHED: dict = {}


def cells_for(transforms) -> dict[str, dict]:
    """dangovski_fig1's cells for ``transforms`` plus ``eq+order:T`` for scale-valued T."""
    from dangovski_fig1 import LAMBDA, cells_for as base_cells
    from essl_info.data import get_transformation

    cells = base_cells(transforms)
    for t in transforms:
        if get_transformation(t).scale_valued:
            cells[f"eq+order:{t}"] = {"transforms": (t,), "lam": LAMBDA,
                                      "order_weight": ORDER_WEIGHT}
    return cells


def measured_role(cells: dict, t: str, metric: str = "linear") -> dict:
    """The role training measures for ``t``: the better equivariant cell against ``inv:t``
    (its difference, 95 % interval and sign) -> equivariant | invariant | tie."""
    from essl_info.experiments.cells import difference

    eq_names = [n for n in (f"eq:{t}", f"eq+order:{t}") if n in cells]
    best = max(eq_names, key=lambda n: cells[n][metric]["value"])
    d = difference(cells[best][metric], cells[f"inv:{t}"][metric])
    role = {"+": "equivariant", "-": "invariant", "0": "tie"}[d["sign"]]
    return {"role": role, "best_equivariant_cell": best, "eq_minus_inv": d}


def experiment(mode: str, dataset: str, root=None, data_dir=None, transforms=None):
    """(mode, sweep, candidates): dangovski_fig1's base run, so shared cells train once."""
    from dangovski_fig1 import TRAIN

    from essl_info.experiments.cells import cell_sweep, mode_for
    from essl_info.training.config import TrainConfig

    m = mode_for(mode, dataset=dataset, root=root)
    base = TrainConfig(dataset=dataset, data_dir=data_dir, ssl="simclr",
                       **{**m.train, **TRAIN[mode]})
    ts = tuple(transforms or CANDIDATES[mode])
    return m, cell_sweep(m.root, base, cells_for(ts), m.seeds), ts


def compute(mode: str = "quick", *, jobs: int = 2, root=None, dataset: str | None = None,
            data_dir: str | None = None, transforms=None, out: Path = RESULTS) -> dict:
    from essl_info.data import get_transformation
    from essl_info.diagnostics.choice import ROLES
    from essl_info.experiments.cells import provenance, run_cells
    from essl_info.experiments.theory import PRESETS, prediction

    t0 = time.time()
    dataset = dataset or ("cifar10" if mode == "full" else "digits")
    m, sweep, ts = experiment(mode, dataset, root, data_dir, transforms)
    device = "cuda" if mode == "full" else "cpu"
    pred = prediction(dataset, list(ts), root=sweep.root / f"xie-rank-{mode}",
                      preset=PRESETS[mode], data_dir=data_dir, device=device)
    res = run_cells(sweep, m, jobs=jobs, device=device)
    cells = res["cells"]
    choices = []
    for t in ts:
        role = ROLES[pred[t]["verdict"]]
        scale = get_transformation(t).scale_valued
        meas = measured_role(cells, t)
        choices.append({
            "transformation": t, "scale_valued": scale, "verdict": pred[t]["verdict"],
            "I(A;C|X)": pred[t]["i"], "I(A;C|X)_stderr": pred[t]["i_se"],
            "H(A|X)": pred[t]["h"], "H(A|X)_stderr": pred[t]["h_se"],
            "rule_role": role,
            "rule_loss": None if role == "invariant" else ("ce+order" if scale else "ce"),
            "measured": meas,
            "agree": None if meas["role"] == "tie" else meas["role"] == role})
    decided = [c for c in choices if c["agree"] is not None]
    doc = {"name": NAME, "mode": mode, "dataset": dataset, "transforms": list(ts),
           "rule": "synergistic -> equivariant (ce, + order loss if scale-valued), "
                   "otherwise invariant (essl_info.diagnostics.choice.ROLES)",
           "scores": ["linear", "knn"], "cells": cells, "choices": choices,
           "agreement": {"decided": len(decided),
                         "agree": sum(bool(c["agree"]) for c in decided),
                         "ties": len(choices) - len(decided)},
           "runs": res["runs"], "published": PUBLISHED,
           "provenance": provenance(t0, seeds=m.seeds, mode=mode, root=sweep.root,
                                    extra={"n_runs": res["n_runs"],
                                           "trained_now": res["trained_now"],
                                           "rank_preset": mode})}
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
    kinds = {"invariant": "inv", "equivariant (CE)": "eq", "equivariant (CE + order)": "eq+order"}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(5 + 2.2 * len(ts), 4),
                                 gridspec_kw={"width_ratios": [2, 1]})
    bar_panel(ax, doc["cells"], ts, list(kinds), lambda t, s: f"{kinds[s]}:{t}", "linear",
              scale=100, title="linear-probe accuracy", ylabel="accuracy (%)")
    base = doc["cells"]["SimCLR"]["linear"]
    ax.axhspan(*(100 * v for v in base["ci95"]), color="0.85", zorder=0)
    ax.axhline(100 * base["value"], color="0.3", ls="--", lw=1, label="SimCLR")
    vals = [100 * c["linear"]["value"] for c in doc["cells"].values()]
    ax.set_ylim(min(vals) - 3, None)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(range(len(ts)), [f"{c['transformation']}\nrule {c['rule_role'][:3]}, "
                                   f"measured {c['measured']['role'][:3]}"
                                   for c in doc["choices"]], fontsize=7)
    y = range(len(ts))
    i_hat = [c["I(A;C|X)"] for c in doc["choices"]]
    bx.errorbar(i_hat, y, xerr=[1.96 * c["I(A;C|X)_stderr"] for c in doc["choices"]],
                fmt="o", capsize=3)
    bx.axvline(0, color="0.6", lw=0.8)
    bx.set_yticks(list(y), [f"{c['transformation']}\n({c['verdict']})"
                            for c in doc["choices"]], fontsize=7)
    bx.set(xlabel="Î(A;C|X) before training (nats)", title="the rule's evidence")
    a = doc["agreement"]
    fig.suptitle(f"Xie et al. — invariant or equivariant? {doc['dataset']} ({doc['mode']}), "
                 f"{len(doc['provenance']['seeds'])} seeds, 95 % intervals; rule agrees on "
                 f"{a['agree']}/{a['decided']} decided ({a['ties']} ties)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    from essl_info.experiments.cells import script_results
    from essl_info.experiments.cells_report import format_cells

    doc, figure = script_results(__doc__, HERE, NAME, compute, argv)
    print(format_cells(doc["cells"], doc["scores"]))
    for c in doc["choices"]:
        d = c["measured"]["eq_minus_inv"]
        print(f"{c['transformation']:<13} rule {c['rule_role']:<11} ({c['verdict']}); "
              f"measured {c['measured']['role']:<11} (eq - inv {100 * d['value']:+.2f} ± "
              f"{196 * d['stderr']:.2f} points)")
    print("wrote", plot(doc, figure))


if __name__ == "__main__":
    main()
