"""Rotation-world: `rank_transforms` against the exact information of `exact_information`.

The question it answers: does the data-level diagnostic (held-out cross-entropies of small
CNNs) recover the Shannon quantities where they are known exactly? Rotation-world renders
every latent losslessly, so the usable information of a good enough predictor family equals
Shannon's here.

    python paper_figs/rotation_world_agreement.py --jobs 2   # compute() then plot()
    python paper_figs/rotation_world_agreement.py --plot-only

compute() -> paper_figs/results/rotation_world_agreement.json ({"rows", "provenance"});
plot()    -> paper_figs/rotation_world_agreement.png (estimate vs exact, 95 % intervals of
the total error: sampling over images ⊕ spread between the 3 fits).
The five settings below at 4,000 images each took 7 min 49 s with --jobs 2 on 2 cores at
load ~4 (715 CPU-s; 2026-11-30), bit-identical to a single-threaded run. There is no GPU
mode: the data are procedural and the exact values are known only for this construction.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "rotation_world_agreement.json"
FIGURE = HERE / "rotation_world_agreement.png"

# (m classes, eps orientation noise, delta cue noise, s shortcut probability)
SETTINGS = [(2, 0.1, 0.1, 0.0), (2, 0.1, 0.5, 0.0), (2, 0.1, 0.1, 0.5), (2, 0.1, 0.5, 0.5),
            (4, 0.1, 0.1, 0.0)]
N_IMAGES = 4000
SEED = 0


def _one_setting(m: int, eps: float, delta: float, s: float, n_images: int, seed: int) -> dict:
    """rank_transforms on one rotation-world setting beside its exact values (one row)."""
    from essl_info import rank_transforms
    from essl_info.data.rotation_world import exact_information

    t0 = time.perf_counter()
    rep = rank_transforms("rotation-world", "rotation4", n_images=n_images, seed=seed,
                          m=m, eps=eps, delta=delta, s=s)
    exact = exact_information(m, eps, delta, s)
    row = {"m": m, "eps": eps, "delta": delta, "s": s, "n_images": n_images,
           "seed": seed, "seconds": round(time.perf_counter() - t0, 1)}
    for q in ("H(A|X)", "I(A;C|X)"):
        est = rep.get(q)
        row[q] = {"estimate": est.value, "stderr": est.stderr, "exact": exact[q],
                  "error": est.value - exact[q],
                  "stderr_sampling": est.diagnostics["stderr_sampling"],
                  "stderr_seeds": est.diagnostics["stderr_seeds"],
                  "fits": est.diagnostics["seed_values"]}
    print(f"m={m} eps={eps} delta={delta} s={s}:  "
          + "  ".join(f"{q} {row[q]['estimate']:.3f} ± {row[q]['stderr']:.3f} "
                      f"(exact {row[q]['exact']:.3f})" for q in ("H(A|X)", "I(A;C|X)"))
          + f"  [{row['seconds']} s]", flush=True)
    return row


def compute(settings=SETTINGS, n_images: int = N_IMAGES, seed: int = SEED,
            out: Path = RESULTS, jobs: int = 1) -> list[dict]:
    """One row per setting; ``jobs`` settings at a time in threads (each fit runs on one
    CPU thread, and every setting is seeded on its own, so the rows do not depend on
    ``jobs``)."""
    from concurrent.futures import ThreadPoolExecutor

    from essl_info.experiments.provenance import provenance

    t_start = time.time()
    with ThreadPoolExecutor(max(1, int(jobs))) as pool:
        rows = list(pool.map(lambda st: _one_setting(*st, n_images, seed), settings))
    doc = {"rows": rows, "provenance": provenance(
        t_start, seeds=1, mode="quick", root=None,
        extra={"data_seed": seed, "n_images": n_images, "jobs": jobs,
               "settings": [list(x) for x in settings]})}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return rows


def plot(rows: list[dict] | None = None, out: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if rows is None:
        saved = json.loads(RESULTS.read_text())
        rows = saved["rows"] if isinstance(saved, dict) else saved
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, q in zip(axes, ("H(A|X)", "I(A;C|X)")):
        exact = [r[q]["exact"] for r in rows]
        est = [r[q]["estimate"] for r in rows]
        err = [1.96 * r[q]["stderr"] for r in rows]
        hi = max(max(exact), max(est)) * 1.1
        ax.plot([0, hi], [0, hi], color="0.7", lw=1, zorder=0)
        ax.errorbar(exact, est, yerr=err, fmt="o", capsize=3)
        for r, x, y in zip(rows, exact, est):
            ax.annotate(f"m={r['m']} δ={r['delta']} s={r['s']}", (x, y), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
        ax.set(xlabel=f"exact {q} (nats)", ylabel=f"rank-transforms {q} (nats)", title=q,
               xlim=(0, hi), ylim=(0, hi))
    fig.suptitle(f"rotation-world, rotation4, {rows[0]['n_images']} images", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--jobs", type=int, default=2, help="settings computed at a time "
                    "(threads; one CPU thread each)")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    print("wrote", plot(None if args.plot_only else compute(jobs=args.jobs)))
