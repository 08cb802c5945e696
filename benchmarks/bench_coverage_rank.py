"""Coverage of ``rank_transforms``' 95 % intervals on rotation-world, whose I(A;C|X) and
H(A|X) are known exactly (``essl_info.data.rotation_world.exact_information``).

    pytest benchmarks/bench_coverage_rank.py -q -p no:cacheprovider [--update-readme]
    python benchmarks/bench_coverage_rank.py            # same cases, no pytest

The rank-transforms entries of the coverage benchmark (``bench_coverage.py`` holds the
registry of the other estimator families; these cases follow its protocol and columns and
can move into it). Replicate r renders its own images (dataset seed ``1000 + r``) and runs
``rank_transforms(..., seed=r)``, so images, folds, initialisations and label draws are
independent across replicates. One row per (setting, quantity) in table ``coverage_rank``:

- ``exact``: the Shannon value; ``cover exact``: fraction of replicates whose interval
  value ± 1.96·stderr covers it (95 % Wilson interval of that fraction).
- ``cover own mean``: the same against the estimator's own population value at this
  number of images, estimated by the mean of the *other* replicates (leave-one-out).
  Î_V(A;C|X) and Ĥ_V(A|X) are V-information quantities (Xu et al. 2020): what small CNNs
  trained on N·(1 − 1/folds) images can use. Ĥ_V(A|X), a held-out cross-entropy, is an
  upper bound on H(A|X); Î_V(A;C|X) is a difference of two such bounds and sits at or below
  the Shannon value when the class-conditional predictor is the one further from Bayes.
  Their own population value is therefore the honest target of the error bar; the Shannon
  value is what they approach as the predictors approach Bayes, and ``cover exact``
  measures how far that is at this N (the bias), not the error bar.
- ``sd over reps`` / ``mean stderr``: observed spread and mean reported standard error;
  ``stderr / sd`` is the calibration (1 is right, < 1 overconfident).
- ``before: one fit``: the first fit alone with its sampling-only (cluster-robust) error,
  what a single fit reported before the fits were combined.

Cost: ~1 min of CPU per replicate at the defaults below; ``ESSL_BENCH_QUICK=1`` runs 3
replicates of the first setting.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bench_coverage import _coverage, _loo_mean  # noqa: E402  (one coverage rule)

from essl_info import rank_transforms  # noqa: E402
from essl_info.data import load_dataset  # noqa: E402
from essl_info.data.rotation_world import exact_information  # noqa: E402

QUICK = os.environ.get("ESSL_BENCH_QUICK") == "1"
TABLE = "coverage_rank"
N_IMAGES = 1000
REPS = 8
# (m classes, eps orientation noise, delta cue noise, s shortcut probability)
SETTINGS = [(2, 0.1, 0.5, 0.0), (2, 0.1, 0.1, 0.5)]


def replicate(setting, r: int, n_images: int = N_IMAGES):
    """The report of replicate r: fresh images (seed 1000 + r), fits seeded by r."""
    m, eps, delta, s = setting
    ds = load_dataset("rotation-world", split="train", image_size=16, seed=1000 + r,
                      m=m, eps=eps, delta=delta, s=s, n_images=n_images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # range flags are in the report; counted below
        return rank_transforms(ds, "rotation4", seed=r)


def run_setting(tables, setting, reps: int) -> list[dict]:
    exact = exact_information(*setting)
    reports, secs = [], []
    for r in range(reps):
        t0 = time.process_time()
        reports.append(replicate(setting, r))
        secs.append(time.process_time() - t0)
    rows = []
    for q in ("I(A;C|X)", "H(A|X)"):
        ests = [rep.get(q) for rep in reports]
        v = np.array([e.value for e in ests])
        se = np.array([e.stderr for e in ests])
        one = np.array([(e.diagnostics["seed_values"][0], e.diagnostics["stderr_sampling"])
                        for e in ests])
        row = {"setting m, eps, delta, s": ", ".join(f"{x:g}" for x in setting),
               "quantity": q, "N images": ests[0].params["n_images"], "reps": reps,
               "fits": ests[0].params["fits"], "exact": exact[q],
               "mean value": float(v.mean()), "sd over reps": float(v.std(ddof=1)),
               "mean stderr": float(se.mean()),
               "stderr / sd": float(se.mean() / v.std(ddof=1)),
               "cover exact": _coverage(v, se, exact[q]),
               "cover own mean": _coverage(v, se, _loo_mean(v)),
               "before: one fit, sampling se / sd":
                   float(one[:, 1].mean() / one[:, 0].std(ddof=1)),
               "before: cover own mean": _coverage(one[:, 0], one[:, 1],
                                                   _loo_mean(one[:, 0])),
               "flags": sum(len(rep.extra.get("flags", [])) for rep in reports),
               "CPU s per rep": float(np.median(secs))}
        tables.add(TABLE, (setting, q), **row)
        rows.append(row)
    return rows


CASES = SETTINGS[:1] if QUICK else SETTINGS


@pytest.mark.parametrize("setting", CASES, ids=[str(s) for s in CASES])
def test_coverage_rank(tables, setting):
    run_setting(tables, setting, 3 if QUICK else REPS)


def main() -> None:
    from conftest import Tables, machine

    tables = Tables()
    for setting in CASES:
        for row in run_setting(tables, setting, 3 if QUICK else REPS):
            print(row, flush=True)
    print(f"Command: `python benchmarks/bench_coverage_rank.py`; {machine()}.\n")
    print(tables.markdown(TABLE))


if __name__ == "__main__":
    main()
