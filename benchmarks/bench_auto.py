"""``method="auto"`` on two continuous variables: value against truth and time per call.

    pytest benchmarks/bench_auto.py -q -p no:cacheprovider [--update-readme]
    python benchmarks/bench_auto.py                                 # same cases, plain timer
    python benchmarks/bench_auto.py evidence     # cost of auto's evidence at N = 100,000, 2+2

Tasks: ``essl_info.tasks.continuous_suite()`` (1+1 to 50+50 dims: smooth Gaussians, cube and
exp maps, spirals, Student-t tails, sparse and dense high-dimensional Gaussians, mixtures;
truths in closed form or Monte Carlo with the MC error in the table), N = 10,000 rows, one
sample (seed 0) per task, ``estimate_mi(x, y)`` with all defaults. Table ``auto``: the method
``auto`` chose (for ``gcmi-infonce``, which of the two bounds it picked), its value, stderr,
the ratio to the truth, whether it is within a factor 1.5, GCMI's value on every task
(computed outside the timed call where auto chose KSG), InfoNCE's where it ran, KSG's (the
second opinion where the critic was chosen, else the estimate itself) and the wall time of
the call. ``ESSL_BENCH_QUICK=1``: N = 2,000 and the first five tasks (a smoke test).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from essl_info import estimate_mi  # noqa: E402
from essl_info.estimators.gcmi import gcmi  # noqa: E402
from essl_info.tasks import continuous_suite  # noqa: E402

QUICK = os.environ.get("ESSL_BENCH_QUICK") == "1"
N = 2_000 if QUICK else 10_000
TASKS = continuous_suite()[:5] if QUICK else continuous_suite()
TABLE = "auto"
TIMES: list[float] = []


def run_task(tables, task) -> None:
    x, y = task.sample(N, 0)
    t0 = time.perf_counter()
    est = estimate_mi(x, y)
    secs = time.perf_counter() - t0
    TIMES.append(secs)
    ev = est.diagnostics["auto_evidence"]
    ksg = est.diagnostics.get("second_opinion", {}).get("value", est.value)
    bounds = est.diagnostics.get("bounds")
    g = bounds["gcmi"]["value"] if bounds else gcmi(x, y, seed=0)[0]
    nce = bounds["infonce"]["value"] if bounds else None
    method = f"{est.method} → {bounds['picked']}" if bounds else est.method
    ratio = est.value / task.truth
    tables.add(TABLE, (task.name,), task=task.name, dims=f"{x.shape[1]}+{y.shape[1]}",
               truth=task.truth, **{"truth MC se": task.truth_stderr or ""},
               tail_ratio=ev["tail_ratio"], shared_scale=ev["shared_scale"], method=method,
               value=est.value, stderr=est.stderr, ratio=ratio,
               **{"within 1.5x": "yes" if 1 / 1.5 <= ratio <= 1.5 else "NO",
                  "gcmi ratio": g / task.truth,
                  "infonce ratio": "" if nce is None else nce / task.truth,
                  "ksg ratio": ksg / task.truth, "time [s]": secs})
    within = sum(r["within 1.5x"] == "yes" for r in tables.rows[TABLE].values())
    tables.notes[TABLE] = [(f"N = {N}; within a factor 1.5 of the truth: {within}/"
                            f"{len(tables.rows[TABLE])}; median time per call "
                            f"{statistics.median(TIMES):.2f} s over {len(TIMES)} tasks "
                            f"(min {min(TIMES):.2f} s, max {max(TIMES):.1f} s).")]


@pytest.mark.parametrize("task", TASKS, ids=[t.name for t in TASKS])
def test_auto(tables, task):
    run_task(tables, task)


def evidence_cost(n: int = 100_000, reps: int = 9) -> str:
    """Median seconds of what ``estimate_mi(x, y)`` pays to choose: validate the inputs and
    evaluate the auto rules and their evidence on a fresh ``Variables`` (2+2 Gaussian)."""
    from essl_info.estimators import auto
    from essl_info.estimators.inputs import prepare_variables
    from essl_info.tasks import gaussian

    x, y = gaussian(2, 0.6).sample(n, 0)
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        v = prepare_variables(x, y, None)
        auto.needs_critic(v), auto.is_ksg_pair(v), auto.continuous_evidence(v)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return (f"n = {n}, 2+2 dims: input preparation + auto evidence, median of {reps}: "
            f"{statistics.median(wall) * 1e3:.1f} ms wall, "
            f"{statistics.median(cpu) * 1e3:.1f} ms CPU")


def main() -> None:
    from conftest import Tables, machine

    if sys.argv[1:] == ["evidence"]:
        print(evidence_cost(), f"; {machine()}")
        return

    tables = Tables()
    for task in TASKS:
        run_task(tables, task)
        print(task.name, tables.rows[TABLE][(task.name,)], flush=True)
    print(f"Command: `python benchmarks/bench_auto.py`; {machine()}.\n")
    print(tables.markdown(TABLE))


if __name__ == "__main__":
    main()
