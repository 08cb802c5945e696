"""Gaussian-copula MI (estimators/gcmi.py) against closed forms: Gaussian (C)MI, invariance
under monotone maps, 0 for independent inputs, calibration of the jackknife stderr, the
lower-bound property where it holds and a counterexample where it does not."""

import numpy as np
import pytest

from essl_info import estimate_mi, tasks
from essl_info.estimators.gcmi import gcmi, logdet_bias


def test_logdet_bias_matches_wishart_simulation():
    # E log det C - log det I for C the sample covariance of n standard normal rows in d dims
    rng = np.random.default_rng(0)
    d, n = 6, 15
    sims = [np.linalg.slogdet(np.cov(rng.standard_normal((n, d)), rowvar=False))[1]
            for _ in range(4000)]
    assert np.mean(sims) == pytest.approx(logdet_bias(d, n), abs=4 * np.std(sims) / 63)


@pytest.mark.parametrize("task", [tasks.gaussian(1, 0.6), tasks.gaussian(5, 0.5),
                                  tasks.monotone(tasks.gaussian(3, 0.6), "exp")])
def test_gaussian_copula_mi_matches_closed_form(task):
    x, y = task.sample(5000, 1)
    est = estimate_mi(x, y, method="gcmi")
    assert est.method == "gcmi" and est.params["copula"] is True
    assert abs(est.value - task.truth) < 3 * est.stderr + 0.005


def test_monotone_maps_leave_it_unchanged():
    x, y = tasks.gaussian(3, 0.5).sample(2000, 2)
    base = estimate_mi(x, y, method="gcmi")
    moved = estimate_mi(np.exp(x) * [1.0, 10.0, 1e3], y ** 3 - 7.0, method="gcmi")
    assert moved.value == pytest.approx(base.value, abs=1e-12)
    assert moved.stderr == pytest.approx(base.stderr, abs=1e-12)


def test_independent_inputs_give_intervals_around_zero_in_high_dimension():
    # 20+20 dims at n = 1,000: the uncorrected log-det estimate is biased upward by ~0.1
    # nats; the bias-corrected one is centred on 0 and its interval covers 0
    values, covered, raw = [], 0, []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        x, y = rng.standard_normal((1000, 20)), rng.standard_normal((1000, 20))
        value, se, diag = gcmi(x, y, seed=seed)
        values.append(value)
        raw.append(diag["uncorrected"])
        covered += abs(value) <= 1.96 * se
    assert np.mean(raw) > 0.1
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(20)
    assert covered >= 16


def test_unbiased_for_dense_weak_gaussian_in_50_plus_50_dims():
    task = tasks.gaussian(50, 0.15)  # truth 0.569: 0.011 nats in each of 50 pairs
    values = [gcmi(*task.sample(2000, seed), seed=seed)[0] for seed in range(6)]
    assert abs(np.mean(values) - task.truth) < 3 * np.std(values) / np.sqrt(6) + 0.01


@pytest.mark.parametrize("task", [tasks.gaussian(1, 0.6), tasks.gaussian(5, 0.3)])
def test_jackknife_stderr_is_calibrated_on_gaussians(task):
    values, ses = [], []
    for seed in range(100):
        value, se, _ = gcmi(*task.sample(1000, seed), seed=seed)
        values.append(value)
        ses.append(se)
    ratio = np.mean(ses) / np.std(values, ddof=1)
    assert 0.75 < ratio < 1.33, ratio  # 100 reps: the sd itself is known to ~7 %


def test_conditional_form_matches_closed_form():
    rng = np.random.default_rng(3)
    n, rho = 5000, 0.6
    z = rng.standard_normal((n, 2))
    e = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n)
    x, y = z[:, :1] + e[:, :1], z.sum(1, keepdims=True) + e[:, 1:]
    est = estimate_mi(x, y, z, method="gcmi")
    truth = -0.5 * np.log(1 - rho ** 2)  # the residuals given z are the correlated pair e
    assert abs(est.value - truth) < 3 * est.stderr + 0.005
    assert abs(estimate_mi(x, z[:, 1], z[:, 0], method="gcmi").value) < 0.01


def test_a_lower_bound_when_one_side_is_one_dimensional():
    task = tasks.student_t(1, 0.5, 3.0)  # t copula, not Gaussian: GCMI misses the tails
    est = estimate_mi(*task.sample(20000, 0), method="gcmi")
    assert est.value + 3 * est.stderr < task.truth


def test_not_a_bound_when_both_sides_are_multivariate_and_non_gaussian():
    # w = (g, r g), r = +-1: uncorrelated N(0,1) columns on two lines; v = w + eps noise.
    # I(v;w) = h(v) - h(eps noise) and h(v) <= mean entropy of the two Gaussian components
    # + log 2, so I <= log 2 + 1/2 log(2 + eps^2) - log eps = 3.35 nats at eps = 0.1, while
    # the Gaussian MI of the covariance is log(1 + eps^2) - 2 log eps = 4.62
    rng = np.random.default_rng(4)
    n, eps = 20000, 0.1
    g, r = rng.standard_normal(n), rng.choice([-1.0, 1.0], n)
    w = np.stack([g, r * g], 1)
    v = w + eps * rng.standard_normal((n, 2))
    upper = np.log(2) + 0.5 * np.log(2 + eps ** 2) - np.log(eps)
    value, se, _ = gcmi(v, w)
    assert value - 3 * se > upper + 0.5


def test_rejects_discrete_and_tiny_inputs():
    x, y = tasks.gaussian(1, 0.5).sample(200, 0)
    with pytest.raises(ValueError, match="gcmi"):
        estimate_mi(x, (y > 0).astype(int), y_discrete=True, method="gcmi")
    with pytest.raises(ValueError, match="rows"):
        gcmi(np.random.default_rng(0).standard_normal((30, 20)),
             np.random.default_rng(1).standard_normal((30, 20)))


def test_average_ranks_match_scipy_with_and_without_ties():
    from scipy.stats import rankdata

    from essl_info.estimators.copula import average_ranks

    rng = np.random.default_rng(5)
    a = np.concatenate([rng.standard_normal((500, 2)), rng.integers(0, 7, (500, 2)),
                        np.ones((500, 1))], axis=1)
    np.testing.assert_array_equal(average_ranks(a), rankdata(a, method="average", axis=0))


def test_constant_columns_are_dropped_and_duplicates_refused():
    x, y = tasks.gaussian(3, 0.5).sample(2000, 6)
    base = estimate_mi(x, y, method="gcmi")
    dead = estimate_mi(np.c_[x, np.ones(2000)], y, method="gcmi")  # a dead unit
    assert dead.value == pytest.approx(base.value, abs=1e-9)
    assert dead.diagnostics["constant_columns"] == [1, 0]
    with pytest.raises(ValueError, match="singular"):
        estimate_mi(np.c_[x, np.exp(x[:, :1])], y, method="gcmi")
