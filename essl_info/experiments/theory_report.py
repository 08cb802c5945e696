"""Output of the theory test (``experiments.theory``): the plain-text table and the plot of
prediction (Î(A;C|X)) against outcome (accuracy gain), 95 % error bars on both axes."""

from __future__ import annotations

import math
from pathlib import Path

from ..types import Z_95
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


def replicate_agreement(a: dict, b: dict) -> dict:
    """Two theory-test results of the same dataset and mode (e.g. different
    ``--first-seed``): per accuracy, gain and baseline, z = (b − a) / √(se_a² + se_b²),
    and per ρ the same z with each interval's half-width / 1.96 as its error. If the
    intervals are honest, |z| > 1.96 for about 5 % of the (correlated) entries."""
    if (a["dataset"], a["mode"]) != (b["dataset"], b["mode"]):
        raise ValueError(f"cannot compare {a['dataset']}/{a['mode']} with "
                         f"{b['dataset']}/{b['mode']}")

    def key(c):
        return c["metric"], c["objective"], c["transform"]

    def row(what, o, o_se, v, v_se):
        se = math.hypot(v_se, o_se)   # 0 only for two exact values: equal, or apart
        z = (v - o) / se if se > 0 else (0.0 if v == o else math.copysign(math.inf, v - o))
        return {"what": what, "a": o, "a_se": o_se, "b": v, "b_se": v_se, "z": z}

    old = {key(c): c for c in a["cells"]}
    rows = [row("/".join(key(c)) + " " + field, old[key(c)][field], old[key(c)][err],
                c[field], c[err])
            for c in b["cells"] for field, err in (("accuracy", "stderr"),
                                                   ("gain", "gain_stderr"))]
    base = {(x["metric"], x["baseline"]): x for x in a["baselines"]}
    rows += [row(f"{x['metric']}/{x['baseline']} baseline accuracy",
                 base[(x["metric"], x["baseline"])]["accuracy"],
                 base[(x["metric"], x["baseline"])]["stderr"], x["accuracy"], x["stderr"])
             for x in b["baselines"]]
    agree = {(x["metric"], x["objective"]): x for x in a["agreement"]}
    rhos = []
    for x in b["agreement"]:
        o = agree[(x["metric"], x["objective"])]
        z = None
        if None not in (x["rho"], o["rho"], x["ci"], o["ci"]):
            # each interval's half-width / 1.96 as that ρ's error (a replicate's point
            # lies outside the other's 95 % interval ~17 % of the time even when both
            # are exact: their difference has √2 times the error of one)
            se = math.hypot(*((c[1] - c[0]) / (2 * Z_95) for c in (x["ci"], o["ci"])))
            z = (x["rho"] - o["rho"]) / se if se > 0 else None
        rhos.append({"metric": x["metric"], "objective": x["objective"], "a": o["rho"],
                     "a_ci": o["ci"], "b": x["rho"], "b_ci": x["ci"], "z": z})
    zs = [abs(r["z"]) for r in rows]
    return {"dataset": b["dataset"], "mode": b["mode"], "rows": rows, "rho": rhos,
            "n": len(zs), "max_abs_z": max(zs), "beyond_1.96": sum(z > 1.96 for z in zs),
            "beyond_2.58": sum(z > 2.58 for z in zs)}


def format_agreement(rep: dict) -> str:
    lines = [f"replicates of the theory test on {rep['dataset']} ({rep['mode']}): "
             f"z = (b - a) / sqrt(se_a^2 + se_b^2)"]
    for r in rep["rows"]:
        lines.append(f"  {r['what']:<38} a {r['a']:+.3f} ± {r['a_se']:.3f}   "
                     f"b {r['b']:+.3f} ± {r['b_se']:.3f}   z {r['z']:+.2f}")
    for r in rep["rho"]:
        def fmt(v, ci):
            if v is None:
                return "undefined"
            return f"{v:+.2f}" + ("" if ci is None else f" [{ci[0]:+.2f}, {ci[1]:+.2f}]")
        z = "" if r["z"] is None else f"   z {r['z']:+.2f}"
        lines.append(f"  rho {r['metric']}/{r['objective']}: a {fmt(r['a'], r['a_ci'])}"
                     f"   b {fmt(r['b'], r['b_ci'])}{z}")
    lines.append(f"  {rep['n']} comparisons: max |z| {rep['max_abs_z']:.2f}; |z| > 1.96: "
                 f"{rep['beyond_1.96']} (about {0.05 * rep['n']:.1f} expected of "
                 f"independent errors); |z| > 2.58: {rep['beyond_2.58']}")
    return "\n".join(lines)


__all__ = ["format_agreement", "format_table", "plot", "replicate_agreement"]
