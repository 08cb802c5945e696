"""Subsampling standard errors (plain and grouped) and permutation tests."""

import numpy as np
import pytest

from essl_info import permutation_test
from essl_info.estimators.resampling import subsample_stderr


def test_stderr_of_a_mean_matches_theory():
    data = np.random.default_rng(0).standard_normal(5000)
    sub = subsample_stderr(lambda r: data[r].mean(), len(data), subsamples=100, seed=1)
    assert sub.n_blocks == 10 and sub.size == 500 and len(sub.values) == 100
    assert sub.stderr == pytest.approx(data.std() / np.sqrt(len(data)), rel=0.2)


def test_groups_stay_together_and_widen_the_stderr():
    rng = np.random.default_rng(2)
    n_groups, size = 400, 5
    groups = np.repeat(np.arange(n_groups), size)
    data = rng.standard_normal(n_groups)[groups] + 0.3 * rng.standard_normal(len(groups))
    seen = []

    def stat(rows):
        seen.append(rows)
        return data[rows].mean()

    grouped = subsample_stderr(stat, len(data), groups=groups, subsamples=60, seed=0)
    for rows in seen:
        g = np.unique(groups[rows])
        assert len(rows) == size * len(g)  # whole groups only
    truth = np.sqrt(1.0 / n_groups + 0.09 / len(data))
    assert grouped.stderr == pytest.approx(truth, rel=0.3)
    plain = subsample_stderr(lambda r: data[r].mean(), len(data), subsamples=60, seed=0)
    assert plain.stderr < 0.7 * grouped.stderr


def test_disabled_small_and_deterministic():
    f = np.random.default_rng(0).random(300)
    assert subsample_stderr(lambda r: f[r].mean(), 300, subsamples=0).stderr is None
    tiny = subsample_stderr(lambda r: f[r].mean(), 3, min_rows=2)
    assert tiny.stderr is None and "too few" in tiny.reason
    a = subsample_stderr(lambda r: f[r].mean(), 300, seed=5)
    b = subsample_stderr(lambda r: f[r].mean(), 300, seed=5)
    assert a.stderr == b.stderr and np.array_equal(a.values, b.values)


def test_parallel_subsamples_give_the_same_result():
    f = np.random.default_rng(3).random(2000)
    a = subsample_stderr(lambda r: f[r].mean(), 2000, seed=2, workers=1)
    b = subsample_stderr(lambda r: f[r].mean(), 2000, seed=2, workers=3)
    assert a.stderr == b.stderr and np.array_equal(a.values, b.values)


def test_failed_subsamples_are_skipped():
    f = np.arange(1000.0)

    def stat(rows):
        if rows[0] == 0:
            raise ValueError("degenerate")
        return f[rows].mean()

    sub = subsample_stderr(stat, 1000, subsamples=20, seed=0)
    assert len(sub.values) == 18 and sub.stderr > 0


def test_permutation_test_dependent_and_independent():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300)
    y_dep = x + rng.standard_normal(300)
    y_ind = np.random.default_rng(1).standard_normal(300)  # p ~ U(0, 1) under the null
    state = np.random.get_state()[1].copy()
    dep = permutation_test(x, y_dep, n_permutations=30, seed=1)
    ind = permutation_test(x, y_ind, n_permutations=30, seed=1)
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG untouched
    assert dep.p_value == pytest.approx(1 / 31) and dep.null.shape == (30,)
    assert ind.p_value > 0.05, ind.observed
    assert dep.observed.method == "ksg" and dep.observed.stderr is not None
    again = permutation_test(x, y_dep, n_permutations=30, seed=1)
    assert np.array_equal(again.null, dep.null)
    assert set(dep.to_dict()) == {"observed", "null", "p_value"}


def test_permutation_within_strata_of_a_discrete_cond():
    """x and y depend on each other only through c: I(x;y) > 0 but I(x;y|c) = 0."""
    rng = np.random.default_rng(3)
    c = rng.integers(0, 3, 600)
    x = c + 0.5 * rng.standard_normal(600)
    y = c + 0.5 * rng.standard_normal(600)
    assert permutation_test(x, y, n_permutations=20, seed=0).p_value == pytest.approx(1 / 21)
    cond = permutation_test(x, y, c, cond_discrete=True, n_permutations=20, seed=0)
    assert cond.p_value > 0.05


def test_permutation_test_discrete_and_bad_arguments():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 3, 400)
    b = (a + (rng.random(400) < 0.3)) % 3
    res = permutation_test(a, b, x_discrete=True, y_discrete=True, n_permutations=20)
    assert res.observed.method == "plugin" and res.p_value == pytest.approx(1 / 21)
    with pytest.raises(ValueError, match="cond is continuous"):
        permutation_test(a, b, rng.standard_normal(400), x_discrete=True, y_discrete=True)
    with pytest.raises(ValueError, match="n_permutations must be a positive integer"):
        permutation_test(a, b, n_permutations=0)


def test_combine_seeds_components_and_t_inflation():
    from scipy.stats import t as student_t

    from essl_info.estimators.resampling import combine_seeds

    ens = combine_seeds([1.0, 1.2, 1.4], [0.1, 0.1, 0.1])
    assert ens.value == pytest.approx(1.2)
    assert ens.sampling_se == pytest.approx(0.1)          # shared rows: not divided by sqrt(S)
    assert ens.seed_sd == pytest.approx(0.2)
    assert ens.seed_se == pytest.approx(0.2 / np.sqrt(3))
    t_ratio = student_t.ppf(0.975, 2) / 1.959963984540054
    assert ens.seed_se_adj == pytest.approx(0.2 / np.sqrt(3) * t_ratio)
    assert ens.stderr == pytest.approx(np.hypot(0.1, ens.seed_se_adj))
    one = combine_seeds([0.5], 0.05)                      # one seed: sampling part only
    assert one.stderr == pytest.approx(0.05) and one.seed_sd == 0.0
    with pytest.raises(ValueError, match="finite"):
        combine_seeds([np.nan, 1.0], 0.1)


def test_combine_seeds_interval_covers_other_seed_sets():
    # fits = truth + seed noise (sd 1) + a shared sampling error known exactly (se 0):
    # the 95 % interval of a 3-seed mean must cover the truth about 95 % of the time
    from essl_info.estimators.resampling import combine_seeds

    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        ens = combine_seeds(rng.normal(0.0, 1.0, 3), 0.0)
        hits += abs(ens.value) <= 1.959963984540054 * ens.stderr
    assert 0.93 <= hits / 2000 <= 0.97


def test_row_budget_takes_smaller_disjoint_blocks_and_stays_unbiased():
    """With a budget of 0.5 n, 20 blocks of n/40 rows from one permutation (disjoint);
    for a mean the delete-d rule m / (n - m) is exactly unbiased for S^2 / n (sampling
    without replacement), averaged over seeds."""
    n = 20_000
    data = np.random.default_rng(3).standard_normal(n)
    seen = []

    def stat(rows):
        seen.append(rows)
        return data[rows].mean()

    sub = subsample_stderr(stat, n, seed=0, budget=0.5, min_block=200)
    assert len(sub.values) == 20 and sub.size == 500 and sub.n_blocks == 40
    rows = np.concatenate(seen)
    assert len(rows) == 20 * 500 == len(np.unique(rows))
    var = np.mean([subsample_stderr(lambda r: data[r].mean(), n, seed=s, budget=0.5,
                                    min_block=200).stderr ** 2 for s in range(40)])
    assert var == pytest.approx(data.var(ddof=1) / n, rel=0.15)


def test_row_budget_respects_min_block_and_leaves_small_n_alone():
    data = np.random.default_rng(4).standard_normal(10_000)
    mean = lambda r: data[r].mean()  # noqa: E731
    # 0.5 n / 20 = 250 rows < min_block 500: blocks of 500 (one permutation into 20)
    sub = subsample_stderr(mean, 10_000, seed=1, budget=0.5, min_block=500)
    assert sub.size == 500 and len(sub.values) == 20 and sub.n_blocks == 20
    # n = 2,000: blocks of n/10 = 200 are below min_block already: the default scheme
    plain = subsample_stderr(mean, 2000, seed=1)
    capped = subsample_stderr(mean, 2000, seed=1, budget=0.5, min_block=500)
    np.testing.assert_array_equal(plain.values, capped.values)
    assert plain.stderr == capped.stderr


def test_row_budget_spanning_two_permutations_takes_exactly_subsamples_blocks():
    """n = 6,000: blocks of 500 rows, 12 per permutation: 12 + 8 blocks, each permutation's
    blocks disjoint"""
    data = np.random.default_rng(5).standard_normal(6000)
    seen = []

    def stat(rows):
        seen.append(rows)
        return data[rows].mean()

    sub = subsample_stderr(stat, 6000, seed=2, budget=0.125, min_block=500)
    assert len(sub.values) == 20 and sub.size == 500 and sub.n_blocks == 12
    assert len(np.unique(np.concatenate(seen[:12]))) == 12 * 500
    assert len(np.unique(np.concatenate(seen[12:]))) == 8 * 500
