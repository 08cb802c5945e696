"""Where the time of a low-dimensional KSG estimate goes, stage by stage (one thread).

    python benchmarks/knn_stages.py [N ...]        # default: 10000 100000
    python benchmarks/knn_stages.py --strata       # brute force vs trees per stratum size

KSG (k = 3) on the 2+2-dim Gaussian of ``bench_knn_speed.py``, with the default standard
error and without (``subsamples=0``), on one thread (``NUMBA_NUM_THREADS=1``, set before
numba loads), under ``cProfile``: the CPU milliseconds per call spent in each compiled
kernel, in numpy's sorts, and in everything else ("numpy glue, Python"). Prints a
markdown table (the one in benchmarks/README.md "kNN speed"). cProfile adds a little to
the Python part; the kernels' times are their own.

``--strata``: the standard error's pass (``knn.fp_values_by_part``, 20 strata of m rows,
one thread) with the brute force within strata (``neighbors_strata``) and with a tree per
stratum, alternated in one process, the least of 10 runs each: where the brute force
stops paying (``neighbors_strata.BRUTE_MAX_STRATUM``).
"""

from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "1"  # before numba is imported

import cProfile  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402

# stage -> the profiled functions (file suffix, function name) it sums
STAGES = {
    "k-nearest query": [("neighbors_kdtree.py", "_knn_range"),
                        ("neighbors_kdtree.py", "_knn_range4")],
    "strata brute force": [("neighbors_strata.py", "strata_range")],
    "1-D interval searches": [("neighbors_sorted.py", "_intervals")],
    "tree builds": [("neighbors_kdtree.py", "_build")],
    "rectangle sweeps": [("neighbors_sorted.py", "_sweep_range"),
                         ("neighbors_sorted.py", "_events")],
    "sorts": [("~", "<method 'argsort' of 'numpy.ndarray' objects>"),
              ("~", "<method 'sort' of 'numpy.ndarray' objects>")],
}


def stage_ms(n: int, subsamples: int, calls: int = 20) -> dict[str, float]:
    """CPU ms per call of ``estimate_mi(x, y, method="ksg", subsamples=...)`` by stage."""
    from essl_info import estimate_mi
    from essl_info.tasks import gaussian

    x, y = gaussian(2, 0.3).sample(n, 0)
    estimate_mi(x, y, method="ksg", subsamples=subsamples)  # compile / load
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        estimate_mi(x, y, method="ksg", subsamples=subsamples)
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, ..)
    total = max(v[3] for k, v in stats.items() if k[2] == "estimate_mi")
    out = {"total": 1e3 * total / calls}
    for stage, funcs in STAGES.items():
        t = sum(v[2] for (file, _, name), v in stats.items()
                for suffix, fn in funcs if file.endswith(suffix) and name == fn)
        out[stage] = 1e3 * t / calls
    out["numpy glue, Python"] = out["total"] - sum(out[s] for s in STAGES)
    return out


def strata_crossover(sizes=(250, 500, 1000, 2000, 3000), rounds: int = 10) -> None:
    import time

    import numpy as np

    from essl_info.estimators import knn, neighbors_strata
    from essl_info.estimators.inputs import prepare_variables
    from essl_info.tasks import gaussian

    print("| rows per stratum | brute force [ms] | trees [ms] |\n|---|---|---|")
    for m in sizes:
        n = 20 * m
        v = prepare_variables(*gaussian(2, 0.3).sample(n, 0), None)
        blocks = knn._blocks(v, norm="max", jitter_scale=1e-10, seed=0)
        perm = np.random.default_rng(0).permutation(n)
        parts = [np.sort(perm[i * m:(i + 1) * m]) for i in range(20)]
        best = {}
        default = neighbors_strata.BRUTE_MAX_STRATUM
        try:
            for _ in range(rounds):
                for limit in (n, 0):
                    neighbors_strata.BRUTE_MAX_STRATUM = limit
                    t = time.perf_counter()
                    knn.fp_values_by_part(blocks, parts, 3, backend="kdtree")
                    best[limit] = min(best.get(limit, np.inf), time.perf_counter() - t)
        finally:
            neighbors_strata.BRUTE_MAX_STRATUM = default
        print(f"| {m:,} | {1e3 * best[n]:.1f} | {1e3 * best[0]:.1f} |")
    print(f"\n(one thread, 20 strata; load average {os.getloadavg()[0]:.1f})")


def main(sizes: list[int]) -> None:
    cols = ["total", *STAGES, "numpy glue, Python"]
    print("| N | stderr | " + " | ".join(cols) + " |")
    print("|" + "---|" * (len(cols) + 2))
    for n in sizes:
        for sub, label in ((20, "default"), (0, "none")):
            ms = stage_ms(n, sub, calls=20 if n <= 30_000 else 3)
            print(f"| {n:,} | {label} | " + " | ".join(f"{ms[c]:.1f}" for c in cols) + " |")
    print(f"\n(CPU ms per call, one thread; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    if sys.argv[1:] == ["--strata"]:
        strata_crossover()
    else:
        bad = [a for a in sys.argv[1:] if not (a.isdigit() and int(a) >= 10)]
        if bad:
            print(f"knn_stages.py: N must be whole numbers >= 10 (or --strata), got "
                  f"{' '.join(bad)}", file=sys.stderr)
            sys.exit(2)
        main([int(a) for a in sys.argv[1:]] or [10_000, 100_000])
