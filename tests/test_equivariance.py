"""Wahba error and γ_f against closed forms and a brute-force search, and their rows in
``measure``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from essl_info.diagnostics.equivariance import (equivariance_estimates, equivariance_metrics,
                                                image_spread, wahba_error)
from essl_info.diagnostics.features import Features


def _rotation(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@pytest.mark.parametrize("n, d", [(50, 8), (6, 20)])    # the d <= n and the d > n paths
def test_an_exactly_equivariant_map_has_zero_error(n, d):
    rng = np.random.default_rng(0)
    z0 = rng.standard_normal((n, d))
    z = np.stack([z0 @ _rotation(d, rng).T for _ in range(4)])   # f(T_k x) = Q_k f(x)
    z[0] = z0
    m = equivariance_metrics(z)
    assert abs(m["Wahba"]) < 1e-9 and abs(m["gamma_f"]) < 1e-9
    # an invariant f: every label gives the same embedding
    m = equivariance_metrics(np.stack([z0] * 3))
    assert abs(m["Wahba"]) < 1e-9 and abs(m["gamma_f"]) < 1e-9


def test_a_reflection_of_evenly_spread_points_costs_two():
    # z' = diag(1, -1) z on n evenly spaced unit vectors: M = (n/2) F, the best rotation
    # has trace n/2 - n/2 = 0, so the error is (n + n - 0) / n = 2; the mean squared
    # distance between distinct points is 2 + 2/(n - 1), so gamma = (n - 1) / n.
    n = 12
    t = 2 * np.pi * np.arange(n) / n
    z0 = np.stack([np.cos(t), np.sin(t)], 1)
    zk = z0 * [1, -1]
    assert wahba_error(z0, zk) == pytest.approx(2.0, abs=1e-12)
    assert image_spread(z0) == pytest.approx(2 + 2 / (n - 1), abs=1e-12)
    assert equivariance_metrics(np.stack([z0, zk]))["gamma_f"] == pytest.approx((n - 1) / n)


def test_wahba_in_2d_matches_a_brute_force_search_over_angles():
    rng = np.random.default_rng(1)
    z0 = rng.standard_normal((30, 2))
    zk = z0 @ np.array([[0.2, -1.0], [0.7, 0.4]]) + 0.3 * rng.standard_normal((30, 2))
    u0 = z0 / np.linalg.norm(z0, axis=1, keepdims=True)
    uk = zk / np.linalg.norm(zk, axis=1, keepdims=True)
    best = math.inf
    for phi in np.linspace(0, 2 * np.pi, 200_001):
        r = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
        best = min(best, float(np.mean(np.sum((uk - u0 @ r.T) ** 2, 1))))
    assert wahba_error(z0, zk) == pytest.approx(best, abs=1e-8)


def test_the_gram_path_gives_the_orthogonal_optimum():
    # d > n goes through n x n Gram matrices. Padding 6-d embeddings with zero columns
    # leaves spare dimensions, so SO(36) reaches the O(6) optimum: the plain nuclear norm
    # of the 6 x 6 cross-covariance, without the sign correction of SO(6).
    rng = np.random.default_rng(2)
    z0, zk = rng.standard_normal((10, 6)), rng.standard_normal((10, 6))
    u0 = z0 / np.linalg.norm(z0, axis=1, keepdims=True)
    uk = zk / np.linalg.norm(zk, axis=1, keepdims=True)
    nuclear = np.linalg.svd(uk.T @ u0, compute_uv=False).sum()
    pad = np.zeros((10, 30))
    assert wahba_error(np.hstack([z0, pad]), np.hstack([zk, pad])) == pytest.approx(
        2 - 2 * nuclear / 10, abs=1e-7)   # eigen-decompositions: ~1e-9 rounding
    assert wahba_error(z0, zk) >= 2 - 2 * nuclear / 10 - 1e-12   # SO(6) is no better


def test_bad_input():
    with pytest.raises(ValueError, match="zero norm"):
        wahba_error(np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="collapsed"):
        equivariance_metrics(np.ones((2, 5, 3)))


def _features(z):
    k, n, d = z.shape
    return Features(z=z.reshape(k * n, d).astype(np.float32), a=np.repeat(np.arange(k), n),
                    c=np.tile(np.arange(n) % 3, k), image_id=np.tile(np.arange(n), k),
                    layer="backbone", transformation="rotation4", n_labels=k, n_classes=3)


def test_estimates_carry_intervals():
    rng = np.random.default_rng(3)
    z0 = rng.standard_normal((80, 4))
    noisy = [z0] + [z0 @ _rotation(4, rng).T + 0.3 * rng.standard_normal((80, 4))
                    for _ in range(3)]
    est = {e.quantity: e for e in equivariance_estimates(_features(np.stack(noisy)), seed=0)}
    w, g = est["Wahba"], est["gamma_f"]
    assert 0 < w.value < 1 and w.stderr > 0 and w.ci[0] < w.value < w.ci[1]
    assert g.params["transformation"] == "rotation4" and g.n == 80
    assert w.params["stderr_method"].startswith("subsampling")
    exact = [z0] + [z0 @ _rotation(4, rng).T for _ in range(3)]
    est = equivariance_estimates(_features(np.stack(exact)), seed=0)
    assert all(abs(e.value) < 1e-5 and e.ci[1] < 1e-5 for e in est)


def test_measure_reports_them_with_intervals(capsys):
    import json

    from measure_helpers import tiny_checkpoint

    from essl_info import cli

    assert cli.main(["measure", str(tiny_checkpoint()), "--quantity", "I(A;C)",
                     "--equivariance", "--n-images", "100", "--json", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {e["quantity"]: e for e in doc["estimates"]}
    assert sorted(rows) == ["I(A;C)", "Wahba", "gamma_f"]
    w = rows["Wahba"]
    # a small CNN trained two epochs is far from rotation-equivariant
    assert 0 < w["value"] < 4 and w["ci"][0] < w["value"] < w["ci"][1] and w["n"] == 100
    assert w["params"]["units"] == "squared distance on the unit sphere"
    assert rows["gamma_f"]["value"] > 0.05 and rows["gamma_f"]["stderr"] > 0
