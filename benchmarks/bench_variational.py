"""Accuracy and time of the variational estimators against kNN ones, measured in one run.

    pytest benchmarks/bench_variational.py [--update-readme]   # pytest-benchmark
    python benchmarks/bench_variational.py                      # same cases, plain timer

Task: ``essl_info.tasks.class_mixture`` (10 classes, equidistant means 1.98 apart in a random
10-dim subspace of R^d, unit noise; Monte-Carlo truth 0.774 nats for every d; H(C) = 2.303),
d in {16, 128, 512}, N in {2,000, 10,000}, one sample (seed 0) per case. Methods, all
``estimate_mi(c, z, x_discrete=True, method=...)`` with default settings:
``probe`` (cross-fitted logistic regression, 5 folds), ``infonce``/``nwj``/``mine``/``smile``
(separable critic, trained on 56 %, early-stopped on 14 %, reported on 30 % held-out rows),
``ross`` (kNN, k=3, with its subsampled stderr) and npeet-plus ``micd`` (kNN, via entropy
differences; it returns |I|). Table ``variational``: one row per (N, d, method); time in
seconds (the minimum of ``ROUNDS`` runs for probe, one run for the others).
``ESSL_BENCH_QUICK=1`` runs only N=2,000, d=16.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from essl_info import estimate_mi  # noqa: E402
from essl_info.estimators import MI_METHODS  # noqa: E402
from essl_info.estimators.reference import seeded_global_numpy_rng  # noqa: E402
from essl_info.tasks import class_mixture  # noqa: E402

QUICK = os.environ.get("ESSL_BENCH_QUICK") == "1"
CASES = [(2_000, 16)] if QUICK else [(n, d) for n in (2_000, 10_000) for d in (16, 128, 512)]
METHODS = ("probe", "infonce", "nwj", "mine", "smile", "ross")
ROUNDS = {"probe": 3}
NPEET_SKIP = {(10_000, 512): "skipped: several minutes (npeet micd took 37 s at d=128)"}
TABLE = "variational"


def _data(n: int, d: int):
    task = class_mixture(n_classes=10, d=d)
    c, z = task.sample(n, 0)
    return task, c, z


def seconds(benchmark) -> float:
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.min) if stats is not None else float("nan")


def _row(tables, n, d, method, task, value, stderr, secs, note=""):
    tables.add(TABLE, (n, d, method), N=n, d=d, method=method, truth=task.truth,
               estimate=value, stderr=stderr if stderr is not None else "",
               **{"estimate / truth": value / task.truth, "time [s]": secs, "note": note})


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    task, c, z = _data(500, 16)
    estimate_mi(c, z, x_discrete=True, method="probe")
    if "ross" in MI_METHODS:
        estimate_mi(c, z, x_discrete=True, method="ross")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n, d", CASES)
def test_estimator(benchmark, tables, n, d, method):
    if method not in MI_METHODS:
        tables.add(TABLE, (n, d, method), N=n, d=d, method=method,
                   note=f"method {method!r} not registered")
        pytest.skip(f"method {method!r} not registered")
    task, c, z = _data(n, d)
    est = benchmark.pedantic(lambda: estimate_mi(c, z, x_discrete=True, method=method),
                             rounds=ROUNDS.get(method, 1), iterations=1, warmup_rounds=0)
    note = ""
    if method == "infonce":
        note = f"ceiling log(eval batch) = {est.diagnostics['log_batch_ceiling']:.2f}"
    _row(tables, n, d, method, task, est.value, est.stderr, seconds(benchmark), note)


@pytest.mark.parametrize("n, d", CASES)
def test_npeet_micd(benchmark, tables, n, d):
    npeet_plus = pytest.importorskip("npeet_plus")
    task, c, z = _data(n, d)
    if (n, d) in NPEET_SKIP:
        tables.add(TABLE, (n, d, "npeet micd"), N=n, d=d, method="npeet micd",
                   truth=task.truth, note=NPEET_SKIP[(n, d)])
        pytest.skip(NPEET_SKIP[(n, d)])

    def run():
        with seeded_global_numpy_rng(0):
            return float(npeet_plus.micd(z, c[:, None], k=3, base=np.e, warning=False))

    value = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    _row(tables, n, d, "npeet micd", task, value, None, seconds(benchmark), "returns abs(I)")


# ===================================================================== script mode
def main() -> None:
    from conftest import ScriptTimer as _Timer, Tables, machine

    tables = Tables()
    warm_up.__wrapped__()
    for n, d in CASES:
        for method in METHODS:
            try:
                test_estimator(_Timer(), tables, n, d, method)
            except pytest.skip.Exception:
                pass
        try:
            test_npeet_micd(_Timer(), tables, n, d)
        except pytest.skip.Exception:
            pass
    print(f"Command: `python benchmarks/bench_variational.py`; {machine()}.\n")
    print(tables.markdown(TABLE))


if __name__ == "__main__":
    main()
