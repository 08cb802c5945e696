"""Critic estimators (neural.py): Gaussian pairs with known MI at 1, 2 and 4 nats for every
bound, InfoNCE's ceiling in the diagnostics, held-out protocol, determinism, critics and
discrete inputs, and input errors."""

import math

import numpy as np
import pytest
import torch

from essl_info import estimate_mi, tasks
from essl_info.estimators.neural import ConcatCritic, SeparableCritic

BOUNDS = ("infonce", "nwj", "mine", "smile")
FAST = dict(hidden=64, embed=16, max_steps=2500, eval_every=100, patience=4)


def gaussian_pair(nats: float, d: int = 4, n: int = 6000, seed: int = 0):
    rho = math.sqrt(1 - math.exp(-2 * nats / d))
    task = tasks.gaussian(d=d, rho=rho)
    assert task.truth == pytest.approx(nats)
    return task.sample(n, seed)


@pytest.mark.parametrize("bound", BOUNDS)
def test_gaussian_pairs_at_1_2_4_nats(bound):
    for nats in (1.0, 2.0, 4.0):
        x, y = gaussian_pair(nats)
        est = estimate_mi(x, y, method=bound, seed=1, **FAST)
        # a lower bound, estimated on held-out batches: not above the truth beyond noise...
        assert est.value <= nats + 3 * est.stderr + 0.05, (bound, nats, est)
        # ... and close to it (measured: within 0.1 at 1 and 2 nats, 0.5 at 4 nats)
        assert est.value >= 0.85 * nats, (bound, nats, est)
        assert est.n == len(x) and est.params["bound"] == bound


def test_infonce_ceiling_in_diagnostics():
    x, y = gaussian_pair(4.0, n=2000)
    est = estimate_mi(x, y, method="infonce", eval_batch=16, **FAST)
    ceiling = est.diagnostics["log_batch_ceiling"]
    assert ceiling == pytest.approx(math.log(16))
    assert est.value <= ceiling
    assert est.diagnostics["at_ceiling"] is True  # 4 nats > log 16 = 2.77: saturated
    assert estimate_mi(x, y, method="infonce", **FAST).diagnostics["at_ceiling"] is False
    assert est.ci[1] <= ceiling + 4 * est.stderr


def test_held_out_protocol_and_params():
    x, y = gaussian_pair(1.0, n=3000)
    groups = np.arange(3000) // 3
    est = estimate_mi(x, y, method="smile", groups=groups, holdout=0.3, **FAST)
    d = est.diagnostics
    assert d["n_train"] + d["n_val"] + d["n_test"] == 3000
    assert abs(d["n_test"] - 900) <= 3 and d["n_test"] % 3 == 0  # whole groups
    assert est.params["tau"] == 5.0 and "momentum" not in est.params
    assert est.params["grouped"] and "disjoint held-out batches" in est.params["stderr_method"]
    assert d["best_step"] <= d["steps"]


def test_deterministic_on_cpu():
    x, y = gaussian_pair(1.0, n=1500)
    kw = dict(method="mine", seed=3, hidden=32, max_steps=300, eval_every=50)
    a, b = estimate_mi(x, y, **kw), estimate_mi(x, y, **kw)
    assert a.value == b.value and a.stderr == b.stderr
    assert estimate_mi(x, y, **{**kw, "seed": 4}).value != a.value


def test_global_rng_untouched():
    x, y = gaussian_pair(1.0, n=800)
    torch.manual_seed(123)
    before = torch.get_rng_state().clone()
    np_before = np.random.get_state()[1].copy()
    estimate_mi(x, y, method="nwj", hidden=16, max_steps=50, eval_every=25)
    assert torch.equal(before, torch.get_rng_state())
    np.testing.assert_array_equal(np_before, np.random.get_state()[1])


def test_critics_score_all_pairs():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    sep = SeparableCritic(3, 2, hidden=8, layers=1, embed=4, generator=g)
    cat = ConcatCritic(3, 2, hidden=8, layers=1, embed=4, generator=g)
    s_sep, s_cat = sep(x, y), cat(x, y)
    assert s_sep.shape == s_cat.shape == (5, 5)
    with torch.no_grad():
        assert float(s_sep[1, 3]) == pytest.approx(float(sep.f(x[1:2]) @ sep.g(y[3:4]).T))
        assert float(s_cat[1, 3]) == pytest.approx(float(cat.h(torch.cat([x[1], y[3]]))))


def test_concat_critic_and_discrete_input():
    """Discrete x (one-hot) vs a class mixture, with the concat critic."""
    task = tasks.class_mixture(n_classes=4, d=4, separation=3.0, n_mc=200_000)
    c, z = task.sample(3000, 5)
    est = estimate_mi(c, z, x_discrete=True, method="infonce", critic="concat", hidden=32,
                      batch_size=64, eval_batch=64, max_steps=1500, eval_every=100)
    assert est.params["critic"] == "concat"
    assert abs(est.value - task.truth) < 0.15, (est, task.truth)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs():
    x, y = gaussian_pair(1.0, n=3000)
    est = estimate_mi(x, y, method="infonce", device="cuda", **FAST)
    assert abs(est.value - 1.0) < 0.15 and est.params["device"].startswith("cuda")


def test_bad_inputs():
    x, y = gaussian_pair(1.0, n=200)
    with pytest.raises(ValueError, match="cannot estimate MI"):
        estimate_mi(x, y, x[:, :1], method="infonce")
    with pytest.raises(ValueError, match="unknown option"):
        estimate_mi(x, y, method="nwj", hiden=3)
    with pytest.raises(ValueError, match="critic must be one of"):
        estimate_mi(x, y, method="nwj", critic="bilinear")
    with pytest.raises(ValueError, match="holdout"):
        estimate_mi(x, y, method="smile", holdout=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        estimate_mi(x, y, method="mine", batch_size=0)
    with pytest.raises(ValueError, match="too few rows"):
        estimate_mi(x[:6], y[:6], method="infonce")
