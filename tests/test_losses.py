"""Losses against closed forms and slow, loop-by-loop reference implementations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from essl_info.training.losses import (cross_view_infonce, info_nce, nt_xent, order_loss,
                              simsiam_loss, transformation_ce)


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) *
                                                        sum(y * y for y in b))


def slow_info_nce(z1, z2, tau):
    n = len(z1)
    total = 0.0
    for i in range(n):
        logits = [_cos(z1[i], z2[j]) / tau for j in range(n)]
        total -= logits[i] - math.log(sum(math.exp(v) for v in logits))
    return total / n


def slow_nt_xent(z1, z2, tau):
    z = z1 + z2
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        logits = {j: _cos(z[i], z[j]) / tau for j in range(2 * n) if j != i}
        total -= logits[partner] - math.log(sum(math.exp(v) for v in logits.values()))
    return total / (2 * n)


def slow_order_loss(h, strengths, margin):
    k = len(strengths)
    n = len(h) // k
    e = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in h]
    anchor = min(range(k), key=lambda a: strengths[a])
    terms = []
    for i in range(n):
        def d(a):
            return math.dist(e[a * n + i], e[anchor * n + i])
        for a in range(k):
            for b in range(k):
                if strengths[a] < strengths[b]:
                    terms.append(max(0.0, margin - (d(b) - d(a))))
    return sum(terms) / len(terms)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 6), d=st.integers(2, 5), tau=st.floats(0.1, 2.0),
       seed=st.integers(0, 10_000))
def test_contrastive_losses_match_slow_loops(n, d, tau, seed):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64)
    l1, l2 = z1.tolist(), z2.tolist()
    assert float(info_nce(z1, z2, tau)) == pytest.approx(slow_info_nce(l1, l2, tau), rel=1e-5)
    sym = 0.5 * (slow_info_nce(l1, l2, tau) + slow_info_nce(l2, l1, tau))
    assert float(cross_view_infonce(z1, z2, tau)) == pytest.approx(sym, rel=1e-5)
    assert float(nt_xent(z1, z2, tau)) == pytest.approx(slow_nt_xent(l1, l2, tau), rel=1e-5)


def test_closed_forms_on_orthonormal_embeddings():
    # z1 = z2 = identity rows: positives have cosine 1, every negative cosine 0
    n, tau = 5, 0.5
    z = torch.eye(n)
    e = math.exp(1 / tau)
    assert float(info_nce(z, z, tau)) == pytest.approx(-math.log(e / (e + n - 1)), rel=1e-6)
    assert float(nt_xent(z, z, tau)) == pytest.approx(-math.log(e / (e + 2 * n - 2)),
                                                      rel=1e-6)


def test_simsiam_value_and_stop_gradient():
    p = torch.randn(4, 3)
    assert float(simsiam_loss(p, p, p, p)) == pytest.approx(-1.0)
    assert float(simsiam_loss(p, p, -p, -p)) == pytest.approx(1.0)
    z1 = torch.randn(4, 3, requires_grad=True)
    z2 = torch.randn(4, 3, requires_grad=True)
    p1 = torch.randn(4, 3, requires_grad=True)
    p2 = torch.randn(4, 3, requires_grad=True)
    simsiam_loss(p1, p2, z1, z2).backward()
    assert z1.grad is None and z2.grad is None     # stop-gradient on the targets
    assert p1.grad is not None and p2.grad is not None


def test_transformation_ce_is_cross_entropy_in_nats():
    logits = torch.zeros(8, 4)
    labels = torch.arange(4).repeat_interleave(2)
    assert float(transformation_ce(logits, labels)) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="logits must be"):
        transformation_ce(logits, labels[:3])


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), k=st.integers(2, 5), margin=st.floats(0.0, 1.0),
       seed=st.integers(0, 10_000))
def test_order_loss_matches_slow_loop(n, k, margin, seed):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(k * n, 3, generator=g, dtype=torch.float64)
    strengths = torch.randperm(k, generator=g).double()
    ref = slow_order_loss(h.tolist(), strengths.tolist(), margin)
    assert float(order_loss(h, strengths, margin)) == pytest.approx(ref, rel=1e-5, abs=1e-7)


def test_order_loss_zero_when_order_is_kept():
    # copies on a quarter circle, further from the anchor as strength grows
    angles = torch.tensor([0.0, 0.5, 1.0, 1.5])
    h = torch.stack([angles.cos(), angles.sin()], 1)          # (K=4, n=1, d=2)
    assert float(order_loss(h, torch.tensor([0.0, 1.0, 2.0, 3.0]), margin=0.1)) == 0.0
    reversed_ = float(order_loss(h, torch.tensor([0.0, 3.0, 2.0, 1.0]), margin=0.1))
    assert reversed_ > 0.1


def test_bad_inputs_are_named():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(z, z, 0.0)
    with pytest.raises(ValueError, match="equal shapes"):
        nt_xent(z, torch.randn(5, 3))
    with pytest.raises(ValueError, match="K=3"):
        order_loss(torch.randn(4, 2), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="distinct strengths"):
        order_loss(torch.randn(4, 2), torch.tensor([1.0, 1.0]))
