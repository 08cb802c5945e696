"""Batched kNN estimates (``estimate_mi_batch``, torch) against one call per estimate.

    pytest benchmarks/bench_knn_batch.py [--update-readme]

A sweep of B estimates of one shape (KSG, k=3, each x, y a d-dimensional Gaussian pair,
its own sample): the batch in one torch pass on the CPU, the same B calls of
``estimate_mi(..., backend="torch", subsamples=0)`` one after the other, and the same
calls on the default backend (numba / kd-tree), all in one run. The values of the batch
and of the torch calls must agree bit for bit (asserted). The CUDA row is in
``benchmarks/gpu_bench.py`` (no GPU here). ``ESSL_BENCH_QUICK=1``: the smallest case.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from essl_info import estimate_mi  # noqa: E402
from essl_info.estimators.knn_batch import estimate_mi_batch  # noqa: E402
from essl_info.tasks import gaussian  # noqa: E402

QUICK = os.environ.get("ESSL_BENCH_QUICK") == "1"
CASES = [(4, 500, 2)] if QUICK else [(16, 1_000, 2), (16, 2_000, 16), (8, 5_000, 16)]
ROUNDS = 3
WAYS = ["batch (torch)", "one at a time (torch)", "one at a time (default backend)"]


def _sweep(b, n, d):
    pairs = [gaussian(d, 0.3).sample(n, seed) for seed in range(b)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _run(way, xs, ys):
    if way == "batch (torch)":
        return [e.value for e in estimate_mi_batch(xs, ys, method="ksg", device="cpu")]
    backend = "torch" if way == "one at a time (torch)" else "auto"
    return [estimate_mi(x, y, method="ksg", backend=backend, device="cpu" if backend ==
                        "torch" else None, subsamples=0).value for x, y in zip(xs, ys)]


VALUES: dict[tuple, list[float]] = {}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"B{c[0]}-n{c[1]}-d{c[2]}")
def test_batch(benchmark, tables, case, way):
    b, n, d = case
    xs, ys = _sweep(b, n, d)
    _run(way, xs[:1], ys[:1])  # compiled kernels and torch's first call outside the timing
    values = benchmark.pedantic(lambda: _run(way, xs, ys), rounds=ROUNDS, iterations=1)
    if "torch" in way:
        VALUES.setdefault(case, values)
        assert values == VALUES[case]  # the batch equals the single calls bit for bit
    key = (b, n, f"{d}+{d}")
    secs = float(benchmark.stats.stats.min)
    tables.add("knn_batch", key, B=b, N=n, **{"d (x+y)": f"{d}+{d}", f"{way} [s]": secs})
    row = tables.rows["knn_batch"][key]
    if all(f"{w} [s]" in row for w in WAYS):
        row["batch / torch calls"] = row[f"{WAYS[0]} [s]"] / row[f"{WAYS[1]} [s]"]
        row["batch / default backend"] = row[f"{WAYS[0]} [s]"] / row[f"{WAYS[2]} [s]"]
