"""``method="auto"`` for two continuous variables (estimators/auto.py): the rule by dimension
and tail ratio, the evidence and second opinion it records, and the diagnostic itself."""

import numpy as np
import pytest

from essl_info import estimate_mi, tasks
from essl_info.estimators import auto

# keeps the critic cheap where auto picks it: these tests check the choice, not the value
CHEAP = dict(hidden=16, embed=4, max_steps=20, eval_every=10, n_seeds=1)


def test_tail_ratio_separates_gaussian_from_heavy_tails():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((20000, 3))
    assert auto.tail_ratio(g) == pytest.approx(1.0, abs=0.08)
    assert auto.tail_ratio(g * [1.0, 100.0, 1e-3]) == pytest.approx(auto.tail_ratio(g))
    assert auto.tail_ratio(rng.standard_t(3, (20000, 1))) > auto.HEAVY_TAIL
    assert auto.tail_ratio(g ** 3) > 10
    assert auto.tail_ratio(np.ones((50, 2))) == 0.0


def test_shared_scale_tells_elliptical_tails_from_monotone_maps():
    rng = np.random.default_rng(1)
    g = rng.standard_normal((20000, 4))
    t = g / np.sqrt(rng.chisquare(4, (20000, 1)) / 4)  # multivariate t: one scale per row
    assert abs(auto.shared_scale(g)) < 0.02 and abs(auto.shared_scale(np.exp(g))) < 0.02
    assert auto.shared_scale(t) > 2 * auto.SHARED_SCALE
    assert auto.shared_scale(g[:, :1]) == 0.0


@pytest.mark.parametrize("task, method", [
    (tasks.gaussian(1, 0.5), "ksg"),
    (tasks.student_t(1, 0.5, 3.0), "ksg"),  # 1+1: KSG even with heavy tails
    (tasks.gaussian(3, 0.5), "ksg"),  # 3+3, light tails
    (tasks.student_t(3, 0.5, 3.0), "ksg"),  # 3+3, elliptical tails: a shared scale
    (tasks.student_t(10, 0.2, 5.0), "ksg"),  # 10+10, idem
    (tasks.monotone(tasks.gaussian(2, 0.5), "exp"), "gcmi-infonce"),
    (tasks.gaussian(25, 0.5, sparse=True), "gcmi-infonce"),  # 50 dims
])
def test_auto_choice_and_its_record(task, method):
    x, y = task.sample(3000, 0)
    est = estimate_mi(x, y, **(CHEAP if method == "gcmi-infonce" else {}))
    assert est.method == method
    ev = est.diagnostics["auto_evidence"]
    assert ev["dims"] == x.shape[1] + y.shape[1] and ev["criterion"].endswith(
        "critic" if method == "gcmi-infonce" else "KSG")
    assert est.diagnostics["auto_reason"]
    if method == "gcmi-infonce":
        second = est.diagnostics["second_opinion"]
        assert second["method"] == "ksg" and np.isfinite(second["value"])
        assert est.params["copula"] is True
        bounds = est.diagnostics["bounds"]
        picked = bounds["picked"]
        assert est.value == bounds[picked]["value"] == max(bounds["gcmi"]["value"],
                                                           bounds["infonce"]["value"])
    else:
        assert "second_opinion" not in est.diagnostics


def test_auto_keeps_ksg_with_a_cond_and_mixed_with_ties():
    x, y = tasks.gaussian(10, 0.5).sample(600, 0)
    assert estimate_mi(x, y, x[:, 0] + y[:, 0]).method == "ksg"  # critics take no cond
    xt = np.round(x[:, :2])  # heavily tied
    assert estimate_mi(xt, y[:, :2]).method == "mixed"


def test_auto_finds_the_dense_weak_gaussian_in_50_plus_50_dims():
    # 0.011 nats in each of 50 pairs: kNN and the critic keep ~0.1 of it, GCMI all of it
    task = tasks.gaussian(50, 0.15)
    x, y = task.sample(3000, 0)
    est = estimate_mi(x, y, **CHEAP)
    assert est.method == "gcmi-infonce" and est.diagnostics["bounds"]["picked"] == "gcmi"
    assert abs(est.value - task.truth) < 3 * est.stderr + 0.01


def test_evidence_uses_a_fixed_subsample_and_keeps_the_decision():
    from essl_info.estimators.inputs import prepare_variables

    for task in (tasks.gaussian(2, 0.6), tasks.student_t(3, 0.5, 3.0),
                 tasks.monotone(tasks.gaussian(3, 0.6), "exp")):
        x, y = task.sample(3 * auto.EVIDENCE_ROWS, 0)
        v = prepare_variables(x, y, None)
        ev = auto.continuous_evidence(v)
        assert ev["evidence_rows"] == auto.EVIDENCE_ROWS
        assert ev == auto.continuous_evidence(prepare_variables(x, y, None))  # seeded
        full = {"tail_ratio": max(auto.tail_ratio(x), auto.tail_ratio(y)),
                "shared_scale": max(auto.shared_scale(x), auto.shared_scale(y))}
        assert ev["tail_ratio"] == pytest.approx(full["tail_ratio"], rel=0.1)
        assert ev["shared_scale"] == pytest.approx(full["shared_scale"], abs=0.03)
    assert auto.evidence_rows(500) == slice(None)


def test_auto_falls_back_to_infonce_when_gcmi_is_impossible():
    x, y = tasks.gaussian(4, 0.5).sample(1500, 0)
    x = np.c_[x, 2.0 * x[:, :1]]  # a duplicated column: singular normal-score covariance
    est = estimate_mi(x, y, **CHEAP)
    bounds = est.diagnostics["bounds"]
    assert est.method == "gcmi-infonce" and bounds["picked"] == "infonce"
    assert "singular" in bounds["reason"] and bounds["gcmi"] is None
    assert est.value == bounds["infonce"]["value"]
