"""Information dynamics of rotation prediction, and both sides of Wang et al.'s Theorem 4.

Pure rotation prediction (rotation4, Fig. 1's runs, per-epoch checkpoints): I(A;Z),
I(C;Z) and I(A;C|Z) of the backbone (``measure``, probe, nats) at every saved epoch,
mean over seeds with a 95 % interval (``combine_seeds``: each measurement's sampling
error ⊕ t-inflated seed error). Theorem 1's reading (Wang et al. 2024): as training
absorbs class information into Z (I(C;Z) up), the synergy left at the feature level,
I(A;C|Z), shrinks; the JSON gives the first-to-last change of each with its interval.

Theorem 4 as printed, I(Z;A) ≤ I(Z;C) − I(X;A|C), is measured on every checkpoint
(``experiments.theorem4``): I(X;A|C) = log K − H(A|X,C) (A uniform, independent of C),
with H(A|X,C) from ``rank_transforms`` on the training images; also the text's reading
with H(A|X,C) in its place, and the printed inequality at Z = X for every transformation
(2·log K − H(A|X) − H(A|X,C) ≤ H(C)). Each check is per seed and combined over seeds,
with a verdict only where the 95 % interval of rhs − lhs excludes 0 (errors of sums
bounded by the sum of the terms' errors). Nothing here assumes the theorem holds.

    python paper_figs/information_dynamics.py      # --quick: digits on CPU, --jobs 2
    python paper_figs/information_dynamics.py --plot-only
    python paper_figs/information_dynamics.py --full --data-dir DATA/cifar10   # GPU

compute() -> paper_figs/results/information_dynamics.json; plot() ->
paper_figs/information_dynamics.png. Quick: the 3 rotation4 runs of wang_fig1 (trained
here if missing), 18 measurements (epochs 0-5 × 3 seeds, ~25 s of one core each, two at a
time) and rank-transforms on 1,500 digits (shared with wang_appd): about 6 min on 2 cores
after wang_fig1 and wang_appd (estimated). Full: 3 runs of 200 epochs (shared with Fig. 1)
and 11 checkpoints each (every 20 epochs) measured on 5,000 CIFAR-10 test images: of the
order of 1-2 GPU-hours beyond Fig. 1 (not measured).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "information_dynamics.json"
FIGURE = HERE / "information_dynamics.png"
TRANSFORM = "rotation4"


def compute(mode: str = "quick", *, jobs: int = 2, root=None, data_dir=None, seeds=None,
            device: str = "cpu", out: Path = RESULTS) -> dict:
    from essl_info.experiments import wang as W
    from essl_info.experiments.curves import group_folders
    from essl_info.experiments.theorem4 import (Value, at_z_equals_x, theorem4_sides,
                                                   verdict)

    m, root, seeds, t0 = W.setup(mode, root, seeds)
    base = W.base_config(m, data_dir=data_dir)
    sweep = W.run_sweep(W.class_info_specs(base, [TRANSFORM], ["normal"], seeds), root,
                        jobs=jobs)
    folders = group_folders(sweep.runs, ("transform",))[(TRANSFORM,)]
    data = W.data_level(m, root, W.TRANSFORMS if m.name != "tiny" else m.transforms,
                        data_dir=data_dir, device=device)
    per_run = [dict(W.epoch_checkpoints(f)) for f in folders]
    epochs = sorted(set.intersection(*(set(r) for r in per_run)))
    paths = [per_run[s][e] for s in range(seeds) for e in epochs]
    flat = W.measure_checkpoints(paths, m, jobs=max(1, jobs), device=device)
    meas = [[flat[s * len(epochs) + j] for j in range(len(epochs))] for s in range(seeds)]
    d = data[TRANSFORM]
    h_axc = Value(**d["h_axc"])
    series = {q: [] for q in W.MEASURED}
    theorem = []
    for j, e in enumerate(epochs):
        for q in W.MEASURED:
            series[q].append(W.combine([meas[s][j][q] for s in range(seeds)]))
        sides = [theorem4_sides(Value(**meas[s][j]["I(A;Z)"]), Value(**meas[s][j]["I(C;Z)"]),
                                h_axc, d["log_k"]) for s in range(seeds)]
        row = {"epoch": e, "per_seed_verdicts": [x["verdict"] for x in sides],
               "per_seed_verdicts_text": [x["verdict_text"] for x in sides]}
        for key in ("lhs", "rhs", "gap", "rhs_text", "gap_text"):
            row[key] = W.combine([x[key] for x in sides])
        row["verdict"] = verdict(Value(row["gap"]["value"], row["gap"]["stderr"]))
        row["verdict_text"] = verdict(Value(row["gap_text"]["value"],
                                            row["gap_text"]["stderr"]))
        theorem.append(row)
    change = {q: W.difference(series[q][-1], series[q][0]) for q in W.MEASURED}
    at_x = {t: at_z_equals_x(Value(**data[t]["h_ax"]), Value(**data[t]["h_axc"]),
                             data[t]["log_k"], data["h_c"])
            for t in data if t not in ("h_c", "h_c_max")}
    counts = {v: sum(r["verdict"] == v for r in theorem)
              for v in ("holds", "fails", "undetermined")}
    res = {"figure": "information dynamics and Theorem 4 (Wang et al. 2024)", "mode": m.name,
           "dataset": m.dataset, "transform": TRANSFORM, "epochs": epochs,
           "series": series, "n_images": flat[0]["n"],
           "theorem1_reading": {
               "first_to_last_change": change,
               "i_cz_rises": W.significance(change["I(C;Z)"]) == "> 0",
               "i_acz_shrinks": W.significance(change["I(A;C|Z)"]) == "< 0"},
           "theorem4": {"printed": W.PAPER["theorem4"]["printed"],
                        "identity": "I(X;A|C) = log K - H(A|X,C) (A uniform, independent of C)",
                        "data_level": {"H(A|X,C)": d["h_axc"], "H(A|X)": d["h_ax"],
                                       "I(A;C|X)": d["i_acx"], "log_K": d["log_k"],
                                       "I(X;A|C)": {"value": d["log_k"] - d["h_axc"]["value"],
                                                    "stderr": d["h_axc"]["stderr"]}},
                        "per_epoch": theorem, "verdict_counts": counts,
                        "at_z_equals_x": at_x, "H(C)": data["h_c"]},
           "provenance": W.provenance(m, root, seeds, t0)}
    W.save_result(res, out)
    return res


def plot(res: dict, out: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    e = np.array(res["epochs"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))

    def band(ax, items, label, color, ls="-"):
        mu = np.array([i["value"] for i in items])
        se = np.array([i["stderr"] for i in items])
        ax.plot(e, mu, "o" + ls, color=color, ms=3, label=label)
        ax.fill_between(e, mu - 1.96 * se, mu + 1.96 * se, color=color, alpha=0.2)

    for q, col in zip(res["series"], ("tab:blue", "tab:green", "tab:red")):
        band(axes[0], res["series"][q], q, col)
    axes[0].set(xlabel="epoch", ylabel="nats (probe)",
                title=f"{res['transform']}: information in the backbone")
    th = res["theorem4"]["per_epoch"]
    band(axes[1], [r["lhs"] for r in th], "lhs I(Z;A)", "tab:blue")
    band(axes[1], [r["rhs"] for r in th], "rhs I(Z;C) − I(X;A|C)", "tab:red")
    band(axes[1], [r["rhs_text"] for r in th], "rhs, text's reading I(Z;C) − H(A|X,C)",
         "tab:orange", "--")
    for r in th:
        axes[1].annotate(r["verdict"][0].upper(), (r["epoch"], r["lhs"]["value"]),
                         fontsize=7, xytext=(0, 6), textcoords="offset points")
    c = res["theorem4"]["verdict_counts"]
    axes[1].set(xlabel="epoch", ylabel="nats", title=f"Theorem 4 as printed: holds "
                f"{c['holds']}, fails {c['fails']}, undetermined {c['undetermined']} "
                f"(H/F/U)")
    axes[1].title.set_fontsize(9)
    for ax in axes:
        ax.axhline(0, color="0.6", lw=0.8)
        ax.legend(fontsize=7)
    fig.suptitle(f"information dynamics on {res['dataset']} ({res['mode']}, "
                 f"{len(res['provenance']['seeds'])} seeds; bands 95 %)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    from essl_info.experiments.wang import script_main

    sys.exit(script_main(__doc__, compute, plot, RESULTS, FIGURE))
