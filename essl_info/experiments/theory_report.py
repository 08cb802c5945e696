"""Output of the theory test (``experiments.theory``): the plain-text table and the plot of
prediction (Î(A;C|X)) against outcome (accuracy gain), 95 % error bars on both axes."""

from __future__ import annotations

from pathlib import Path

from .downstream import METRICS
from .theory import OBJECTIVES


def format_table(res: dict) -> str:
    """The prediction beside the outcome, then ρ and the verdict groups (plain text)."""
    lines = [f"theory test on {res['dataset']} ({res['mode']}, {res['seeds']} seeds, "
             f"{res['n_images']} images; accuracies as fractions: mean over seeds (seed "
             f"sd), gain ± 1 stderr)"]
    head = f"{'transform':<10} {'Î(A;C|X) nats':>16} {'verdict':<18}"
    objs = list(OBJECTIVES)
    for metric in METRICS:
        lines += ["", f"[{metric}] accuracy and gain over baseline"
                  + "".join(f"  {o}: vs {OBJECTIVES[o][1]}" for o in objs),
                  head + "".join(f" {o + ' acc (sd)':>22} {o + ' gain':>16}" for o in objs)]
        for t in res["transforms"]:
            p = res["prediction"][t]
            row = f"{t:<10} {p['i']:>8.3f} ± {p['i_se']:<5.3f} {p['verdict']:<18}"
            for o in objs:
                c = next(c for c in res["cells"] if c["metric"] == metric
                         and c["objective"] == o and c["transform"] == t)
                row += (f" {c['accuracy']:>14.3f} ({c['seed_sd']:.3f})"
                        f" {c['gain']:>+8.3f} ± {c['gain_stderr']:.3f}")
            lines.append(row)
        for b in res["baselines"]:
            if b["metric"] == metric:
                lines.append(f"  baseline {b['baseline']}: {b['accuracy']:.3f} ± "
                             f"{b['stderr']:.3f} (seed sd {b['seed_sd']:.3f}, "
                             f"{len(b['seed_values'])} seeds)")
        for a in res["agreement"]:
            if a["metric"] == metric:
                lines.append(f"  Spearman ρ(Î, gain) {a['objective']}: {_rho_text(a)}")
        for v in res["by_verdict"]:
            if v["metric"] == metric:
                lines.append(f"  {v['objective']:<9} {v['verdict']:<18} mean gain "
                             f"{v['mean_gain']:+.3f} ± {v['stderr']:.3f} "
                             f"({', '.join(v['transforms'])})")
    return "\n".join(lines)


def _rho_text(a: dict) -> str:
    rho = "undefined" if a["rho"] is None else f"{a['rho']:+.2f}"
    ci = ("" if a["ci"] is None else
          f"  95% CI [{a['ci'][0]:+.2f}, {a['ci'][1]:+.2f}]  P(ρ≤0) {a['p_rho_le_0']:.2f}")
    return rho + ci


def plot(res: dict, path: str | Path, metric: str = "linear") -> Path:
    """Prediction (Î(A;C|X), x) against outcome (gain, y), 95 % error bars on both axes,
    one panel per objective."""
    from ..diagnostics.report import _pyplot, check_plot_path

    path = check_plot_path(path)
    plt = _pyplot()
    objs = list(OBJECTIVES)
    fig, axes = plt.subplots(1, len(objs), figsize=(5 * len(objs), 4), squeeze=False)
    for ax, o in zip(axes[0], objs):
        cs = [c for c in res["cells"] if c["metric"] == metric and c["objective"] == o]
        for c in cs:
            ax.errorbar(c["i"], c["gain"], xerr=1.96 * c["i_se"],
                        yerr=1.96 * c["gain_stderr"], fmt="o", capsize=3)
            ax.annotate(c["transform"], (c["i"], c["gain"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        a = next(a for a in res["agreement"] if a["metric"] == metric and a["objective"] == o)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel("predicted Î(A;C|X) (nats)")
        ax.set_ylabel(f"{metric} accuracy gain over {OBJECTIVES[o][1]}")
        ax.set_title(f"{o}: ρ = {_rho_text(a).split('  P(')[0]}", fontsize=9)
    fig.suptitle(f"theory test, {res['dataset']} ({res['mode']}, {res['seeds']} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["format_table", "plot"]
