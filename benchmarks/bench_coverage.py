"""Coverage of the 95 % intervals: how often ``value ± 1.96 stderr`` covers its target over
repeated independent samples *and* estimator seeds, on tasks with known values.

    pytest benchmarks/bench_coverage.py -q -p no:cacheprovider [-k critic] [--update-readme]
    python benchmarks/bench_coverage.py [family ...]                  # same cases, no pytest

A registry of cases, one row each in table ``coverage``: ``register(Case(...))`` adds one
(family, task, estimator); other estimator families (kNN, probe, rank-transforms) add their
own cases below the critic ones. Replicate r draws its sample with seed ``1000 + r`` and
runs the estimator with ``seed = r``, so samples and fits are independent across
replicates. Columns:

- ``truth``: the task's true value; ``cover truth``: fraction of replicates whose interval
  covers it (with a 95 % Wilson interval for that fraction).
- ``cover own mean``: the same against the estimator's own population value at this N,
  estimated by the mean of the *other* replicates (leave-one-out). This is the honest
  target of a lower bound (InfoNCE, NWJ, MINE, SMILE sit below the truth whenever the
  critic is imperfect or the batch limits them) and of any estimator with a known bias:
  it checks that the error bar covers the estimator's own randomness, not its bias.
- ``sd over reps``: the observed spread of the values; ``mean stderr``: the mean reported
  standard error; their ratio is the calibration (1 is right, < 1 overconfident).
- Cases that record ``single_fit`` (fitted estimators) also give the *before* view: the
  first fit alone with its sampling-only stderr (what one fit reported before the seeds
  were combined), its calibration and coverage of its own mean.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from essl_info import Estimate, estimate_mi  # noqa: E402
from essl_info import tasks as T  # noqa: E402

QUICK = os.environ.get("ESSL_BENCH_QUICK") == "1"
TABLE = "coverage"
Z = 1.959963984540054


@dataclass(frozen=True)
class Case:
    """One row: ``run(task, r) -> Estimate`` on replicate r of ``task`` (see module doc).

    family   : "critic", "knn", "probe", ... (the ``-k`` filter and the table's first column)
    label    : estimator and settings as shown in the table
    task     : builds the Task (called once)
    run      : (task, replicate) -> Estimate
    reps     : replicates
    single_fit : the Estimate -> (value, stderr) of one fit alone, or None
    note     : what the target is and anything a reader must know
    """

    family: str
    label: str
    task: Callable[[], object]
    run: Callable[[object, int], Estimate]
    reps: int
    single_fit: Callable[[Estimate], tuple[float, float]] | None = None
    note: str = ""
    tags: tuple = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return f"{self.family}: {self.label}"


CASES: list[Case] = []


def register(case: Case) -> Case:
    CASES.append(case)
    return case


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval for a binomial proportion k / n."""
    p, z2 = k / n, Z * Z
    mid = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def _coverage(values: np.ndarray, ses: np.ndarray, target) -> str:
    tgt = np.broadcast_to(np.asarray(target, dtype=float), values.shape)
    hits = int(np.sum(np.abs(values - tgt) <= Z * ses))
    lo, hi = wilson(hits, len(values))
    return f"{hits}/{len(values)} ({lo:.2f}-{hi:.2f})"


def _loo_mean(values: np.ndarray) -> np.ndarray:
    return (values.sum() - values) / (len(values) - 1)


def run_case(tables, case: Case) -> dict:
    task = case.task()
    reps = 3 if QUICK else case.reps
    ests, secs = [], []
    for r in range(reps):
        t0 = time.perf_counter()
        ests.append(case.run(task, r))
        secs.append(time.perf_counter() - t0)
    v = np.array([e.value for e in ests])
    se = np.array([e.stderr for e in ests])
    row = {"family": case.family, "estimator": case.label, "task": task.name,
           "N": ests[0].n, "reps": reps, "truth": task.truth,
           "mean value": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
           "sd over reps": float(v.std(ddof=1)), "mean stderr": float(se.mean()),
           "stderr / sd": float(se.mean() / v.std(ddof=1)),
           "cover truth": _coverage(v, se, task.truth),
           "cover own mean": _coverage(v, se, _loo_mean(v))}
    if case.single_fit is not None:
        one = np.array([case.single_fit(e) for e in ests])  # (reps, 2)
        row.update({"before: one fit, sampling se / sd":
                    float(one[:, 1].mean() / one[:, 0].std(ddof=1)),
                    "before: cover own mean": _coverage(one[:, 0], one[:, 1],
                                                        _loo_mean(one[:, 0]))})
    row["s per call"] = float(np.median(secs))
    row["note"] = case.note
    tables.add(TABLE, (case.name, task.name, row["N"]), **row)
    return row


# ========================================================================= critic bounds
# A small critic (64 hidden units, 16-d embedding) and N = 2,000 keep a replicate to ~15 s
# of CPU (100 s on the 2-core machine loaded 7x over where the table was made); the protocol (copula inputs, 3 fits as one ensemble,
# combine_seeds, held-out batches) is the default one.
CRITIC_OPTS = dict(hidden=64, embed=16)


def _critic(bound: str, n: int = 2_000) -> Callable[[object, int], Estimate]:
    def run(task, r: int) -> Estimate:
        x, y = task.sample(n, 1000 + r)
        return estimate_mi(x, y, method=bound, seed=r, **CRITIC_OPTS)
    return run


def _first_fit(e: Estimate) -> tuple[float, float]:
    return e.diagnostics["seed_values"][0], e.diagnostics["stderr_sampling"]


LOWER = "lower bound: its own mean is the honest target"
for _bound, _task, _reps in [("infonce", lambda: T.student_t(3, 0.5, 3.0), 8),
                             ("smile", lambda: T.student_t(3, 0.5, 3.0), 8)]:
    register(Case("critic", f"{_bound} (hidden 64, 3 fits)", _task, _critic(_bound), _reps,
                  single_fit=_first_fit, note=LOWER))


# ==================================================================== kNN and the probe
def _knn(method: str, n: int, **kw) -> Callable[[object, int], Estimate]:
    def run(task, r: int) -> Estimate:
        x, y = task.sample(n, 1000 + r)
        return estimate_mi(x, y, method=method, seed=r, **task.estimate_kwargs(), **kw)
    return run


KNN_NOTE = ("subsampling stderr (delete-d jackknife); KSG's bias at d > 1 is not in the "
            "interval: 'cover own mean' is the calibration, 'cover truth' shows the bias")
register(Case("knn", "ksg k=3", lambda: T.gaussian(1, 0.6), _knn("ksg", 2_000), 40,
              note=KNN_NOTE))
register(Case("knn", "ksg k=3", lambda: T.gaussian(4, 0.6), _knn("ksg", 2_000), 40,
              note=KNN_NOTE))
# where the kd-tree path's row budget (knn.STDERR_BUDGET) shrinks the standard error's
# blocks below N/10: 500 rows at N = 10,000 and 40,000 (N/20, N/80), N/160 at 100,000;
# 4+4 (brute force, no budget) as the control
for _d, _n in [(1, 10_000), (2, 10_000), (4, 10_000), (1, 40_000), (1, 100_000),
               (2, 100_000)]:
    register(Case("knn", "ksg k=3", lambda _d=_d: T.gaussian(_d, 0.6), _knn("ksg", _n), 40,
                  note=KNN_NOTE))
register(Case("knn", "ross k=3", lambda: T.class_mixture(n_classes=4, d=4),
              _knn("ross", 2_000), 40, note=KNN_NOTE))
register(Case("probe", "logistic, 5 folds, 3 fits", lambda: T.class_mixture(n_classes=10, d=16),
              _knn("probe", 2_000), 12, single_fit=_first_fit,
              note="lower bound (H - held-out CE): its own mean is the honest target"))


# ================================================================== pytest / script entry
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_coverage(tables, case):
    run_case(tables, case)


def main(families: list[str]) -> None:
    from conftest import Tables, machine

    tables = Tables()
    for case in CASES:
        if not families or case.family in families:
            print(case.name, run_case(tables, case), flush=True)
    print(f"Command: `python benchmarks/bench_coverage.py {' '.join(families)}`; "
          f"{machine()}.\n")
    print(tables.markdown(TABLE))


if __name__ == "__main__":
    main(sys.argv[1:])
