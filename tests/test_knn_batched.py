"""Shared-work paths of the kNN estimators give the values of the one-at-a-time paths,
bit for bit: subsample partitions searched in one pass (``fp_values_by_part``)."""

import numpy as np
import pytest

from essl_info.estimators.knn import (_fp_parts_small_strata, fp_value, fp_values_by_part,
                                     psi_int)
from essl_info.estimators.neighbors import Block
from essl_info.estimators.resampling import subsample_stderr


def _case(name, n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    y = x[:, :1] + rng.standard_normal((n, 1))
    z = rng.standard_normal((n, 1))
    lab = rng.integers(0, 3, n)
    rare = np.where(rng.random(n) < 0.01, 3 + np.arange(n) % 5, lab)  # near-singletons
    return {
        "ksg": [Block(x), Block(y)],
        "fp": [Block(x), Block(y), Block(z)],
        "fp-discrete-cond": [Block(x), Block(y), Block(lab, True)],
        "ross": [Block(rare, True), Block(x)],
        "labels-given-z": [Block(lab, True), Block(rare, True), Block(np.hstack([z, y]))],
    }[name]


@pytest.mark.parametrize("name", ["ksg", "fp", "fp-discrete-cond", "ross", "labels-given-z"])
@pytest.mark.parametrize("n, n_parts", [(600, 7), (4200, 2)])
def test_parts_equal_separate_calls(name, n, n_parts):
    """7 parts of ~86 rows: continuous blocks take the brute force within strata laid out
    part after part (``_fp_parts_small_strata``); 2 parts of 2,100 rows (above
    ``BRUTE_MAX_STRATUM``) and the discrete cases take the general path (a tree per part)"""
    blocks = _case(name, n=n)
    perm = np.random.default_rng(1).permutation(n)
    parts = [np.sort(p) for p in np.array_split(perm, n_parts)]
    fast = _fp_parts_small_strata(blocks, parts, 3)
    small = n_parts == 7 and name in ("ksg", "fp")
    assert (fast is not None) == small
    batched = fp_values_by_part(blocks, parts, 3)
    if small:
        assert batched == fast
    for rows, got in zip(parts, batched):
        want = fp_value([b.take(rows) for b in blocks], 3, backend="numba")[0]
        assert got == want


def test_psi_int_is_scipys_digamma():
    from scipy.special import digamma

    v = np.array([1, 2, 3, 7, 1000, 5000, 3], np.int64)
    np.testing.assert_array_equal(psi_int(v), digamma(v))
    big = np.arange(1, 70_000, 997)  # grows the table
    np.testing.assert_array_equal(psi_int(big), digamma(big))
    with pytest.raises(ValueError, match="non-negative"):
        psi_int(np.array([3, -1]))


def test_degenerate_part_is_skipped_like_a_failing_call():
    x = np.random.default_rng(0).standard_normal((40, 1))
    lab = np.arange(40)  # every label once in the small part: no neighbours
    lab[20:] = np.arange(20) % 2
    blocks = [Block(lab, True), Block(x)]
    parts = [np.arange(20), np.arange(20, 40)]
    with pytest.raises(ValueError):
        fp_value([b.take(parts[0]) for b in blocks], 3)
    got = fp_values_by_part(blocks, parts, 3)
    assert got[0] is None
    assert got[1] == fp_value([b.take(parts[1]) for b in blocks], 3)[0]


def test_subsample_stderr_batched_equals_unbatched():
    blocks = _case("ksg", n=2000)
    stat = lambda rows: fp_value([b.take(rows) for b in blocks], 3)[0]  # noqa: E731
    batch = lambda parts: fp_values_by_part(blocks, parts, 3)  # noqa: E731
    a = subsample_stderr(stat, 2000, seed=5)
    b = subsample_stderr(stat, 2000, seed=5, batch_stat=batch)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.stderr == b.stderr


def test_budgeted_subsamples_batched_equal_unbatched():
    """blocks of a random part of the rows (the row budget) in one search per permutation
    give the separate calls' values"""
    blocks = _case("ksg", n=4000)
    stat = lambda rows: fp_value([b.take(rows) for b in blocks], 3)[0]  # noqa: E731
    batch = lambda parts: fp_values_by_part(blocks, parts, 3)  # noqa: E731
    kw = dict(seed=5, budget=0.25, min_block=50)
    a = subsample_stderr(stat, 4000, **kw)
    b = subsample_stderr(stat, 4000, batch_stat=batch, **kw)
    assert len(a.values) == 20 and a.size == 50
    np.testing.assert_array_equal(a.values, b.values)
    assert a.stderr == b.stderr


def test_run_means_equal_slice_means_bit_for_bit():
    from essl_info.estimators.knn import _run_means

    rng = np.random.default_rng(3)
    lens = np.array([501, 501, 500, 500, 500, 0, 7, 7, 129, 128, 128, 1])
    bounds = np.concatenate([[0], np.cumsum(lens)])
    values = rng.standard_normal(bounds[-1]) * 1e3 + rng.exponential(size=bounds[-1])
    got = _run_means(values, bounds)
    for p in range(len(lens)):
        if lens[p]:
            assert got[p] == np.mean(values[bounds[p]:bounds[p + 1]])
        else:
            assert np.isnan(got[p])
