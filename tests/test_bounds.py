"""Critic bounds (bounds.py): closed forms on hand-made score matrices, a slow loop reference,
InfoNCE's log(batch) ceiling, the MINE and SMILE gradients, and the bounds at the optimal
critic of a Gaussian pair (where they approach the true MI)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from essl_info.estimators import bounds as B


def diag_off(b: int, a: float, c: float) -> torch.Tensor:
    """(b, b) scores: a on the diagonal, c elsewhere."""
    return torch.full((b, b), c, dtype=torch.float64).fill_diagonal_(a)


# ---------------------------------------------------------------- slow references
def ref_bounds(s: np.ndarray, tau: float) -> dict:
    """Loop-by-loop transcription of Poole et al. 2019 / Song & Ermon 2020."""
    b = len(s)
    pos = [s[i, i] for i in range(b)]
    neg = [s[i, j] for i in range(b) for j in range(b) if i != j]
    nce = sum(s[i, i] - math.log(sum(math.exp(s[i, j]) for j in range(b)))
              for i in range(b)) / b + math.log(b)
    mean_pos = sum(pos) / b
    mean_exp = sum(math.exp(v) for v in neg) / len(neg)
    clipped = sum(math.exp(min(max(v, -tau), tau)) for v in neg) / len(neg)
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    js = -sum(softplus(-v) for v in pos) / b - sum(softplus(v) for v in neg) / len(neg)
    return {"infonce": nce, "nwj": mean_pos - mean_exp / math.e,
            "dv": mean_pos - math.log(mean_exp), "smile": mean_pos - math.log(clipped),
            "js": js}


@pytest.mark.parametrize("b, a, c", [(2, 1.0, 0.0), (8, 3.0, -1.0), (32, 0.5, 0.5),
                                     (16, -2.0, 1.5)])
def test_closed_forms(b, a, c):
    s = diag_off(b, a, c)
    assert float(B.infonce(s)) == pytest.approx(a - math.log(math.exp(a) + (b - 1) * math.exp(c))
                                                + math.log(b), abs=1e-12)
    assert float(B.nwj(s)) == pytest.approx(a - math.exp(c - 1.0), abs=1e-12)
    assert float(B.dv(s)) == pytest.approx(a - c, abs=1e-12)
    assert float(B.mine(s)[0]) == pytest.approx(a - c, abs=1e-12)
    tau = 1.0
    assert float(B.smile(s, tau)) == pytest.approx(a - min(max(c, -tau), tau), abs=1e-12)
    assert float(B.js_fgan(s)) == pytest.approx(-math.log1p(math.exp(-a))
                                                - math.log1p(math.exp(c)), abs=1e-12)


def test_infonce_reaches_its_ceiling():
    """A critic that separates the positive pair perfectly gives exactly log b, no more."""
    for b in (4, 64, 512):
        s = diag_off(b, 80.0, 0.0)
        assert float(B.infonce(s)) == pytest.approx(math.log(b), abs=1e-12)
        assert B.infonce_ceiling(b) == math.log(b)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(2, 12), seed=st.integers(0, 2**31 - 1),
       scale=st.floats(0.1, 20.0), tau=st.floats(0.5, 10.0))
def test_matches_loop_reference_and_ceiling(b, seed, scale, tau):
    s = np.random.default_rng(seed).normal(size=(b, b)) * scale
    ref = ref_bounds(s, tau)
    t = torch.tensor(s)
    assert float(B.infonce(t)) == pytest.approx(ref["infonce"], rel=1e-9, abs=1e-9)
    assert float(B.nwj(t)) == pytest.approx(ref["nwj"], rel=1e-9, abs=1e-9)
    assert float(B.dv(t)) == pytest.approx(ref["dv"], rel=1e-9, abs=1e-9)
    assert float(B.smile(t, tau)) == pytest.approx(ref["smile"], rel=1e-9, abs=1e-9)
    assert float(B.js_fgan(t)) == pytest.approx(ref["js"], rel=1e-9, abs=1e-9)
    assert float(B.infonce(t)) <= math.log(b) + 1e-12
    # DV >= NWJ for every critic (log u <= u/e for u > 0), and SMILE with tau=inf is DV
    assert float(B.dv(t)) >= float(B.nwj(t)) - 1e-12
    assert float(B.smile(t, math.inf)) == pytest.approx(float(B.dv(t)), abs=1e-12)


def test_mine_gradient_uses_the_moving_average():
    rng = np.random.default_rng(0)
    b = 6
    s = torch.tensor(rng.normal(size=(b, b)), requires_grad=True)
    ema = torch.tensor(2.5, dtype=torch.float64)
    value, ema_new = B.mine(s, ema, momentum=0.9)
    value.backward()
    e = np.exp(s.detach().numpy())
    off = ~np.eye(b, dtype=bool)
    batch_mean = e[off].mean()
    assert float(ema_new) == pytest.approx(0.9 * 2.5 + 0.1 * batch_mean, rel=1e-12)
    expected = np.where(off, -e / (b * (b - 1)) / float(ema_new), 1.0 / b)
    np.testing.assert_allclose(s.grad.numpy(), expected, rtol=1e-10)
    # the value itself is the Donsker-Varadhan bound
    assert float(value.detach()) == pytest.approx(float(B.dv(s.detach())), abs=1e-12)
    # first call: the average starts at the batch's own mean
    _, first = B.mine(s.detach(), None)
    assert float(first) == pytest.approx(batch_mean, rel=1e-12)


def test_smile_value_and_js_gradient():
    rng = np.random.default_rng(1)
    s1 = torch.tensor(rng.normal(size=(5, 5)) * 4, requires_grad=True)
    s2 = s1.detach().clone().requires_grad_(True)
    value, _ = B.BOUNDS["smile"].train(s1, None, tau=2.0)
    value.backward()
    B.js_fgan(s2).backward()
    assert float(value.detach()) == pytest.approx(float(B.smile(s1.detach(), 2.0)), abs=1e-12)
    np.testing.assert_allclose(s1.grad.numpy(), s2.grad.numpy(), rtol=1e-12)


def test_optimal_gaussian_critic_approaches_truth():
    """At f* = log p(y|x)/p(y) the DV bound and NWJ at f*+1 equal I in expectation, and
    InfoNCE(f*) <= min(I, log b) (Poole et al. 2019)."""
    rho, b = 0.8, 1500
    truth = -0.5 * math.log(1 - rho**2)
    rng = np.random.default_rng(2)
    x = rng.normal(size=b)
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=b)
    var = 1 - rho**2
    f = (-(y[None, :] - rho * x[:, None]) ** 2 / (2 * var) - 0.5 * math.log(var)
         + y[None, :] ** 2 / 2)
    s = torch.tensor(f)
    assert float(B.dv(s)) == pytest.approx(truth, abs=0.06)
    assert float(B.nwj(s + 1.0)) == pytest.approx(truth, abs=0.06)
    assert float(B.smile(s, 20.0)) == pytest.approx(truth, abs=0.06)
    assert float(B.infonce(s)) == pytest.approx(truth, abs=0.06)
    # with only 4 samples per batch InfoNCE is capped far below I = 2.3 nats
    rho4 = math.sqrt(1 - math.exp(-2 * 2.3))
    f4 = torch.tensor(np.eye(4) * 50.0)
    assert float(B.infonce(f4)) <= math.log(4) + 1e-12 < -0.5 * math.log(1 - rho4**2)


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(2, 3), torch.zeros(1, 1),
                                 torch.zeros(2, 2, 2)])
def test_bad_shapes(bad):
    for fn in (B.infonce, B.nwj, B.dv, B.js_fgan, B.smile):
        with pytest.raises(ValueError, match="square"):
            fn(bad)
    with pytest.raises(ValueError, match="square"):
        B.mine(bad)


def test_registry_lists_the_four_bounds():
    assert set(B.BOUNDS) == {"infonce", "nwj", "mine", "smile"}
    s = diag_off(4, 2.0, 0.0)
    for name, spec in B.BOUNDS.items():
        opts = {k: {"tau": 5.0, "momentum": 0.9}[k] for k in spec.options}
        train_value, _ = spec.train(s, None, **opts)
        assert float(train_value) == pytest.approx(float(spec.value(s, **opts)), abs=1e-12)
