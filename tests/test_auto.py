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
    (tasks.monotone(tasks.gaussian(2, 0.5), "exp"), "infonce"),
    (tasks.gaussian(25, 0.5, sparse=True), "infonce"),  # 50 dims
])
def test_auto_choice_and_its_record(task, method):
    x, y = task.sample(3000, 0)
    est = estimate_mi(x, y, **(CHEAP if method == "infonce" else {}))
    assert est.method == method
    ev = est.diagnostics["auto_evidence"]
    assert ev["dims"] == x.shape[1] + y.shape[1] and ev["criterion"].endswith(
        "critic" if method == "infonce" else "KSG")
    assert est.diagnostics["auto_reason"]
    if method == "infonce":
        second = est.diagnostics["second_opinion"]
        assert second["method"] == "ksg" and np.isfinite(second["value"])
        assert est.params["copula"] is True
    else:
        assert "second_opinion" not in est.diagnostics


def test_auto_keeps_ksg_with_a_cond_and_mixed_with_ties():
    x, y = tasks.gaussian(10, 0.5).sample(600, 0)
    assert estimate_mi(x, y, x[:, 0] + y[:, 0]).method == "ksg"  # critics take no cond
    xt = np.round(x[:, :2])  # heavily tied
    assert estimate_mi(xt, y[:, :2]).method == "mixed"
