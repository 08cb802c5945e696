"""Tasks with known MI: closed forms checked numerically, samplers deterministic."""

import math

import numpy as np
import pytest
from scipy import stats

from essl_info.tasks import (_class_means, _class_mixture_truth, class_mixture, gao_mixture,
                             gaussian, monotone, student_t, student_t_correction)


def test_gaussian_truth_and_sampler():
    t = gaussian(3, 0.6)
    assert t.truth == pytest.approx(-1.5 * math.log(1 - 0.36))
    x, y = t.sample(20000, 0)
    assert x.shape == y.shape == (20000, 3)
    r = [np.corrcoef(x[:, i], y[:, i])[0, 1] for i in range(3)]
    assert np.allclose(r, 0.6, atol=0.02)
    x2, y2 = t.sample(20000, 0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(x, t.sample(20000, 1)[0])
    s = gaussian(16, 0.6, sparse=True)
    assert s.params["n_correlated"] == 4 and s.truth == pytest.approx(4 / 3 * t.truth)
    xs, ys = s.sample(20000, 0)
    assert abs(np.corrcoef(xs[:, 10], ys[:, 10])[0, 1]) < 0.03
    with pytest.raises(ValueError, match="rho"):
        gaussian(1, 1.0)
    with pytest.raises(ValueError, match="d must be"):
        gaussian(0)


@pytest.mark.parametrize("d, rho, dof", [(1, 0.5, 3.0), (2, 0.0, 5.0)])
def test_student_t_closed_form_by_monte_carlo(d, rho, dof):
    """E[log p(x,y) - log p(x) - log p(y)] with scipy's multivariate t densities."""
    t = student_t(d, rho, dof)
    x, y = t.sample(200_000, 3)
    shape = np.eye(2 * d)
    shape[:d, d:] = shape[d:, :d] = rho * np.eye(d)
    lj = stats.multivariate_t(np.zeros(2 * d), shape, df=dof).logpdf(np.c_[x, y])
    lx = stats.multivariate_t(np.zeros(d), np.eye(d), df=dof).logpdf(x)
    ly = stats.multivariate_t(np.zeros(d), np.eye(d), df=dof).logpdf(y)
    w = lj - lx - ly
    se = w.std() / math.sqrt(len(w))
    assert abs(w.mean() - t.truth) < 4 * se, (w.mean(), t.truth, se)
    assert student_t_correction(dof, d, d) > 0
    assert student_t_correction(1e6, d, d) == pytest.approx(0, abs=1e-5)


def test_monotone_keeps_truth_and_maps_coordinates():
    base = gaussian(2, 0.5)
    m = monotone(base, "cube")
    assert m.truth == base.truth and m.name.endswith("-cube")
    x, y = base.sample(100, 0)
    mx, my = m.sample(100, 0)
    assert np.allclose(mx, x**3) and np.allclose(my, y**3)
    only_x = monotone(base, np.exp, which="x")
    ox, oy = only_x.sample(100, 0)
    assert np.allclose(ox, np.exp(x)) and np.array_equal(oy, y)
    with pytest.raises(ValueError, match="unknown monotone map"):
        monotone(base, "square")
    with pytest.raises(ValueError, match="discrete"):
        monotone(gao_mixture(), "cube")


def test_gao_mixture_truth_by_monte_carlo():
    m = 5
    t = gao_mixture(m)
    assert t.truth == pytest.approx(math.log(m) - (m - 1) / m * math.log(2))
    x, y = t.sample(400_000, 1)
    x, y = x.ravel(), y.ravel()
    # p(y) = (1/m) sum_x' 1/2 [x' <= y < x' + 2];  p(y|x) = 1/2
    n_cover = sum(((xp <= y) & (y < xp + 2)).astype(int) for xp in range(m))
    w = np.log(0.5) - np.log(n_cover / (2.0 * m))
    assert w.mean() == pytest.approx(t.truth, abs=0.01)
    assert t.x_discrete and x.dtype.kind == "i" and set(np.unique(x)) == set(range(m))


def test_class_mixture_truth_geometry_and_sampler():
    t = class_mixture()
    assert t.truth == pytest.approx(0.774, abs=0.005) and t.truth_stderr < 0.002
    assert t.truth < math.log(10)
    other, _ = _class_mixture_truth(10, 128, 1.98, 1.0, 0, 400_000, 999)  # new MC seed
    assert other == pytest.approx(t.truth, abs=5 * t.truth_stderr + 0.005)
    mu = _class_means(10, 128, 1.98, 0)
    d = np.sqrt(((mu[:, None] - mu[None]) ** 2).sum(-1))[np.triu_indices(10, 1)]
    assert np.allclose(d, 1.98)
    c, z = t.sample(3000, 0)
    assert c.shape == (3000,) and z.shape == (3000, 128) and t.x_discrete
    assert np.array_equal(z, t.sample(3000, 0)[1])
    small = class_mixture(n_classes=4, d=2, separation=2.0, n_mc=100_000)  # d < classes
    assert 0 < small.truth < math.log(4)
    with pytest.raises(ValueError, match="separation"):
        class_mixture(separation=0)


def test_spiral_keeps_norm_and_truth_and_inverts():
    from essl_info.tasks import spiral

    base = gaussian(3, 0.7)
    t = spiral(base, 0.5)
    assert t.truth == base.truth
    x, y = base.sample(500, 1)
    sx, sy = t.sample(500, 1)
    assert np.array_equal(sy, y) and np.allclose((sx ** 2).sum(1), (x ** 2).sum(1))
    theta = -0.5 * (sx ** 2).sum(1)  # undo the rotation: the angle depends on |x| only
    back = sx.copy()
    back[:, 0] = np.cos(theta) * sx[:, 0] - np.sin(theta) * sx[:, 1]
    back[:, 1] = np.sin(theta) * sx[:, 0] + np.cos(theta) * sx[:, 1]
    assert np.allclose(back, x)
    with pytest.raises(ValueError, match="2 dimensions"):
        spiral(gaussian(1, 0.5)).sample(10, 0)


def test_gaussian_mixture_truth_by_independent_monte_carlo():
    """The truth against scipy's multivariate normal densities on a fresh sample."""
    from essl_info.tasks import gaussian_mixture

    t = gaussian_mixture(2, 3, 3.0, n_mc=200_000)
    x, y = t.sample(100_000, 7)
    rng = np.random.default_rng(t.params["means_seed"])
    means = 3.0 / math.sqrt(2.0) * rng.standard_normal((3, 4))
    scales = np.exp(0.5 * rng.standard_normal((3, 4)))

    def logp(v, sl):
        dens = sum(stats.multivariate_normal(means[k, sl], np.diag(scales[k, sl] ** 2)).pdf(v)
                   for k in range(3)) / 3
        return np.log(dens)

    w = logp(np.c_[x, y], slice(0, 4)) - logp(x, slice(0, 2)) - logp(y, slice(2, 4))
    se = w.std() / math.sqrt(len(w))
    assert abs(w.mean() - t.truth) < 4 * math.hypot(se, t.truth_stderr)
    assert 0 < t.truth < math.log(3)


def test_continuous_suite_spans_1_to_50_dims():
    from essl_info.tasks import continuous_suite

    suite = continuous_suite()
    dims = {t.sample(5, 0)[0].shape[1] for t in suite}
    assert min(dims) == 1 and max(dims) == 50
    assert len({t.name for t in suite}) == len(suite)
    assert all(t.truth > 0 and not t.x_discrete and not t.y_discrete for t in suite)
