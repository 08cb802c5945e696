"""Accuracy of the kNN estimators on tasks with known MI (``essl_info.tasks``).

    pytest benchmarks/bench_knn_accuracy.py [--update-readme]
    python benchmarks/bench_knn_accuracy.py

For each (task, method): ``SEEDS`` independent samples of N rows; bias = mean estimate -
truth (nats) with its standard error over the seeds (``bias se``); ``mean stderr`` is the
estimator's own (subsampling) standard error, ``sd over seeds`` the observed spread it
should match. ``target`` states the issue's bound where one applies (abs(bias) <= 0.02 on
1-D tasks, 0.03 on Gao's mixture; estimate <= H(label)) and whether it is met.
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
from essl_info.tasks import (class_mixture, gao_mixture, gaussian, monotone,  # noqa: E402
                             student_t)

QUICK = os.environ.get("ESSL_BENCH_QUICK") == "1"
N = 2_000 if QUICK else 10_000
SEEDS = 2 if QUICK else 5

# (task constructor, method, target |bias| or None)
CASES = {
    "gaussian d=1": (lambda: gaussian(1, 0.6), "ksg", 0.02),
    "gaussian d=1, cube": (lambda: monotone(gaussian(1, 0.6), "cube"), "ksg", 0.02),
    "student-t d=1": (lambda: student_t(1, 0.5, 3.0), "ksg", 0.02),
    "student-t d=1, asinh": (lambda: monotone(student_t(1, 0.5, 3.0), "asinh"), "ksg", 0.02),
    "gaussian d=1 (ksg2)": (lambda: gaussian(1, 0.6), "ksg2", 0.02),
    "gao mixture m=5 (mixed)": (lambda: gao_mixture(5), "mixed", 0.03),
    "gao mixture m=5 (ross)": (lambda: gao_mixture(5), "ross", 0.03),
    "gaussian d=4": (lambda: gaussian(4, 0.5), "ksg", None),
    "gaussian d=16 sparse": (lambda: gaussian(16, 0.6, sparse=True), "ksg", None),
    "gaussian d=16 sparse, cube": (lambda: monotone(gaussian(16, 0.6, sparse=True), "cube"),
                                   "ksg", None),
    "student-t d=2": (lambda: student_t(2, 0.5, 3.0), "ksg", None),
    "class mixture 4 classes d=4": (lambda: class_mixture(4, 4, separation=2.0), "ross", None),
    "class mixture 10 classes d=16": (lambda: class_mixture(10, 16), "ross", None),
    "class mixture 10 classes d=128": (lambda: class_mixture(10, 128), "ross", None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_accuracy(tables, name):
    make, method, target = CASES[name]
    task = make()
    vals, ses, secs = [], [], []
    for seed in range(SEEDS):
        x, y = task.sample(N, 1000 + seed)
        t = time.perf_counter()
        est = estimate_mi(x, y, method=method, seed=seed, **task.estimate_kwargs())
        secs.append(time.perf_counter() - t)
        vals.append(est.value)
        ses.append(est.stderr)
    vals = np.asarray(vals)
    bias = float(vals.mean() - task.truth)
    row = {"task": name, "method": method, "N": N, "truth": task.truth,
           "mean estimate": float(vals.mean()), "bias": bias,
           "bias se": float(vals.std(ddof=1) / np.sqrt(SEEDS)),
           "mean stderr": float(np.mean(ses)), "sd over seeds": float(vals.std(ddof=1)),
           "s per estimate": float(np.mean(secs))}
    if target is not None:
        row["target"] = f"abs(bias) <= {target}: {'yes' if abs(bias) <= target else 'NO'}"
    if "entropy_label" in task.params:
        row["target"] = (f"<= H(label) {task.params['entropy_label']:.3f}: "
                         f"{'yes' if vals.max() <= task.params['entropy_label'] else 'NO'}")
    tables.add("knn_accuracy", (name,), **row)
    tables.note("knn_accuracy", f"{SEEDS} seeds per row; truths of the class mixtures are "
                "Monte-Carlo values (standard error < 0.002).")
    assert np.isfinite(vals).all()


def main() -> None:
    from conftest import Tables, machine

    tables = Tables()
    for name in CASES:
        test_accuracy(tables, name)
    print(f"Command: `python benchmarks/bench_knn_accuracy.py`; {machine()}.\n")
    print(tables.markdown("knn_accuracy"))


if __name__ == "__main__":
    main()
