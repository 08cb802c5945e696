"""Batched sweeps on the torch backend: each value equals the one-at-a-time estimate."""

import numpy as np
import pytest
import torch

from essl_info import estimate_mi
from essl_info.estimators.knn_batch import estimate_mi_batch


def _items(b=3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((b, n, 2))
    ys = xs[:, :, :1] * np.arange(1, b + 1)[:, None, None] + rng.standard_normal((b, n, 1))
    zs = rng.standard_normal((b, n, 1))
    labs = rng.integers(0, 3, (b, n))
    return xs, ys, zs, labs


@pytest.mark.parametrize("case", ["ksg", "ksg-cond", "ross", "labels-given-z"])
def test_batch_equals_one_at_a_time(case):
    xs, ys, zs, labs = _items()
    kw, args = {}, (xs, ys, None)
    if case == "ksg-cond":
        args = (xs, ys, zs)
    elif case == "ross":
        args, kw = (labs, xs, None), dict(x_discrete=True, method="ross")
    elif case == "labels-given-z":
        args = (labs, labs[::-1], np.concatenate([zs, ys], axis=2))
        kw = dict(x_discrete=True, y_discrete=True, method="ross")
    got = estimate_mi_batch(*args, device="cpu", **kw)
    for b, est in enumerate(got):
        one = estimate_mi(args[0][b], args[1][b], None if args[2] is None else args[2][b],
                          subsamples=0, backend="torch", device="cpu",
                          **{"method": "ksg", **kw})
        assert est.value == one.value
        other = estimate_mi(args[0][b], args[1][b], None if args[2] is None else args[2][b],
                            subsamples=0, backend="numba", **{"method": "ksg", **kw})
        assert est.value == other.value  # an independent backend agrees too


def test_batch_is_chunked_and_values_do_not_depend_on_the_chunk():
    xs, ys, _, _ = _items(b=4, n=300)
    big = estimate_mi_batch(xs, ys, device="cpu")
    tiny = estimate_mi_batch(xs, ys, device="cpu", memory_mb=0.05)  # a few rows a chunk
    assert [e.value for e in big] == [e.value for e in tiny]


def test_bad_batches_raise():
    xs, ys, _, _ = _items()
    with pytest.raises(ValueError, match="one item per estimate"):
        estimate_mi_batch(xs, ys[:2])
    with pytest.raises(ValueError, match="method must be"):
        estimate_mi_batch(xs, ys, method="probe")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_equals_cpu():
    xs, ys, _, _ = _items(b=3, n=2000)
    cpu = estimate_mi_batch(xs, ys, device="cpu")
    gpu = estimate_mi_batch(xs, ys, device="cuda")
    assert [e.value for e in cpu] == [e.value for e in gpu]


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), float("inf"), "16"])
def test_a_bad_memory_bound_is_one_line_naming_it(bad):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 2)), rng.standard_normal((50, 2))
    with pytest.raises(ValueError, match="memory_mb must be a positive number") as err:
        estimate_mi_batch([x], [y], device="cpu", memory_mb=bad)
    assert "\n" not in str(err.value)
