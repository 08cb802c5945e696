"""The cross-entropy probe (probe.py, probe_families.py, classifiers.py): accuracy against
Monte-Carlo truths, the conditional forms, cross-fitting and grouped errors, agreement of the
logistic fit with scikit-learn, determinism, auto selection and input errors."""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from essl_info import estimate_mi, tasks
from essl_info.estimators import MI_METHODS
from essl_info.estimators.classifiers import fit_logistic, fit_temperature
from essl_info.estimators.probe import (
    assign_folds,
    clustered_mean,
    cross_fit,
    cross_fitted_nll,
    heldout_surprisal,
    paired_difference,
    plugin_surprisal,
    probe_mi,
)


# ---------------------------------------------------------------- accuracy against truth
def test_class_mixture_d128_reaches_85_percent_of_truth():
    task = tasks.class_mixture(n_classes=10, d=128)
    c, z = task.sample(10_000, 1)
    est = estimate_mi(c, z, x_discrete=True, method="probe")
    assert est.value >= 0.85 * task.truth, est
    h_c = float(plugin_surprisal(c).mean())
    assert est.value <= h_c + 2 * est.stderr
    # a held-out CE is an upper bound on H(C|Z): the estimate stays below the truth
    assert est.value <= task.truth + 3 * est.stderr
    assert est.params["folds"] == 5 and "cross-fitting" in est.params["split"]
    assert len(est.diagnostics["per_fold"]) == 5


def test_rotation_like_grouped():
    task = tasks.rotation_like(n_labels=4, d=32)
    a, z = task.sample(4000, 2)
    groups = np.arange(len(a)) // task.params["group_size"]
    est = estimate_mi(a, z, x_discrete=True, method="probe", groups=groups)
    assert abs(est.value - task.truth) <= 0.07 * task.truth, (est, task.truth)
    assert "grouped" in est.params["split"] and "clustered" in est.params["stderr_method"]


@pytest.mark.parametrize("grouped", [True, False])
def test_independent_target_is_zero_within_two_stderr(grouped):
    task = tasks.rotation_like(n_labels=4, d=32, independent=True)
    a, z = task.sample(4000, 3)
    groups = np.arange(len(a)) // 4 if grouped else None
    est = estimate_mi(a, z, x_discrete=True, method="probe", groups=groups,
                      entropy="heldout")
    assert abs(est.value) <= 2 * est.stderr + 1e-12, est
    # the value is signed: it is h - CE exactly, never clipped
    d = est.diagnostics
    assert est.value == pytest.approx(d["h_target"] - d["ce_heldout"], abs=1e-12)


def test_plugin_entropy_is_signed_under_independence():
    rng = np.random.default_rng(0)
    t, z = rng.integers(0, 5, 2000), rng.normal(size=(2000, 64))
    est = estimate_mi(t, z, x_discrete=True, method="probe")
    assert -0.02 < est.value < 0.0  # O(K/n) below zero, reported as is
    assert est.clipped == 0.0


def test_collider_explaining_away():
    task = tasks.collider("sum", n_a=4, n_c=4, d=16)
    a, c, z = task.sample(6000, 4)
    est = estimate_mi(a, c, z, **task.estimate_kwargs(), method="probe")
    assert abs(est.value - task.truth) <= 0.06, (est, task.truth)
    # the ingredients: Z alone says nothing about A, with C it does
    assert est.diagnostics["ce_reduced"] == pytest.approx(math.log(4), abs=0.01)
    assert "paired" in est.params["estimator"]
    # per-class heads are needed: one-hot c concatenated (shifts only) cannot decode a+c
    flat = estimate_mi(a, c, z, **task.estimate_kwargs(), method="probe", cond_mode="concat")
    assert flat.value < 0.2 * task.truth


def test_collider_separate_is_zero():
    task = tasks.collider("separate", n_a=4, n_c=4, d=16)
    a, c, z = task.sample(6000, 5)
    est = estimate_mi(a, c, z, **task.estimate_kwargs(), method="probe")
    assert task.truth == 0.0 and abs(est.value) < 0.01, est
    assert est.diagnostics["ce_reduced"] < 0.8  # Z does carry A


def test_conditional_on_discrete_cond():
    """I(T;Z|C) with Z shifted by a discrete, independent C equals I(T;Z) of the mixture."""
    task = tasks.class_mixture(n_classes=4, d=16, separation=2.5)
    t, z = task.sample(4000, 6)
    c = np.random.default_rng(7).integers(0, 2, len(t))
    z = z + 3.0 * c[:, None] * np.eye(16)[0]
    est = estimate_mi(t, z, c, x_discrete=True, cond_discrete=True, method="probe")
    assert abs(est.value - task.truth) <= 0.06, (est, task.truth)
    assert est.params["estimator"].startswith("plug-in H(T|cond)")


def test_conditional_on_continuous_cond():
    """Two independent noisy views of T: I(T;Z2|Z1) = I(T;Z1,Z2) - I(T;Z1), and (Z1+Z2)/2
    is sufficient, a single view with sigma/sqrt 2 (equidistant means)."""
    one = tasks.class_mixture(n_classes=4, d=8, separation=2.0, sigma=1.0, n_mc=200_000)
    two = tasks.class_mixture(n_classes=4, d=8, separation=2.0, sigma=1 / math.sqrt(2),
                              n_mc=200_000)
    truth = two.truth - one.truth
    rng = np.random.default_rng(10)
    centres = tasks._class_means(4, 8, 2.0, 0)  # the means of both tasks
    t = rng.integers(0, 4, 6000)
    z1 = centres[t] + rng.normal(size=(6000, 8))
    z2 = centres[t] + rng.normal(size=(6000, 8))
    est = estimate_mi(t, z2, z1, x_discrete=True, method="probe")
    assert abs(est.value - truth) <= 0.05, (est, truth)


def test_paired_quantities_satisfy_the_chain_rule_exactly():
    """Same seed -> same folds -> the same held-out losses in every quantity, so
    I(A;Z|C) = I(A;Z) + I(A;C|Z) - I(A;C) holds to rounding (DESIGN §1), with the
    plug-in I(A;C) = H(A) - H(A|C)."""
    task = tasks.collider("random", n_a=3, n_c=2, d=6)
    a, c, z = task.sample(1500, 23)
    i_az = estimate_mi(a, z, x_discrete=True, method="probe", seed=2)
    i_ac_z = estimate_mi(a, c, z, x_discrete=True, y_discrete=True, method="probe", seed=2)
    i_az_c = estimate_mi(a, z, c, x_discrete=True, cond_discrete=True, method="probe", seed=2)
    i_ac = plugin_surprisal(a).mean() - plugin_surprisal(a, c).mean()
    assert i_az_c.value == pytest.approx(i_az.value + i_ac_z.value - i_ac, abs=1e-12)


# ---------------------------------------------------------------- building blocks
def test_logistic_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(11)
    n, d, K, l2 = 600, 6, 3, 0.01
    X = rng.normal(size=(n, d))
    y = (X @ rng.normal(size=(d, K)) + rng.gumbel(size=(n, K))).argmax(1)
    fit = fit_logistic(torch.tensor(X), torch.tensor(y), K, l2, tol=1e-10, bias_l2=0.0)
    ref = LogisticRegression(C=1.0 / (n * l2), tol=1e-10, max_iter=10_000).fit(X, y)
    p = torch.softmax(fit.logits(torch.tensor(X)), 1).numpy()
    np.testing.assert_allclose(p, ref.predict_proba(X), atol=2e-5)


def test_group_heads_equal_explicit_interaction_features():
    rng = np.random.default_rng(12)
    n, d, K, G, l2 = 500, 4, 3, 3, 0.05
    X = rng.normal(size=(n, d))
    g = rng.integers(0, G, n)
    y = rng.integers(0, K, n)
    oh = np.eye(G)[g]
    explicit = np.hstack([X, oh, (X[:, :, None] * oh[:, None, :]).reshape(n, -1)])
    a = fit_logistic(torch.tensor(explicit), torch.tensor(y), K, l2, tol=1e-10, bias_l2=l2)
    b = fit_logistic(torch.tensor(X), torch.tensor(y), K, l2, g=torch.tensor(g), n_groups=G,
                     tol=1e-10, bias_l2=l2)
    pa = torch.softmax(a.logits(torch.tensor(explicit)), 1)
    pb = torch.softmax(b.logits(torch.tensor(X), torch.tensor(g)), 1)
    np.testing.assert_allclose(pa.numpy(), pb.numpy(), atol=1e-6)


def test_temperature_is_the_grid_minimum():
    rng = np.random.default_rng(13)
    logits = torch.tensor(rng.normal(size=(400, 5)) * 3)
    y = torch.tensor((logits.numpy() / 3 + rng.gumbel(size=(400, 5))).argmax(1))
    temp = fit_temperature(logits, y)
    grid = np.exp(np.linspace(np.log(0.1), np.log(10), 801))
    lg, yy = logits.numpy(), y.numpy()
    ces = [np.mean(logsumexp(lg / t, axis=1) - lg[np.arange(400), yy] / t) for t in grid]
    assert temp == pytest.approx(grid[int(np.argmin(ces))], rel=6e-3)
    from scipy.optimize import minimize_scalar

    def ce(log_t):
        t = np.exp(log_t)
        return np.mean(logsumexp(lg / t, axis=1) - lg[np.arange(400), yy] / t)

    ref = minimize_scalar(ce, bounds=(np.log(0.05), np.log(20)), method="bounded",
                          options={"xatol": 1e-9})
    assert temp == pytest.approx(np.exp(ref.x), rel=1e-6)


def test_assign_folds_keeps_groups_together():
    rng = np.random.default_rng(14)
    groups = rng.integers(0, 300, 2000)
    fold = assign_folds(2000, 5, groups=groups, seed=3)
    for gid in np.unique(groups):
        assert len(np.unique(fold[groups == gid])) == 1
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= 2 * np.bincount(groups).max()
    np.testing.assert_array_equal(fold, assign_folds(2000, 5, groups=groups, seed=3))
    assert not np.array_equal(fold, assign_folds(2000, 5, groups=groups, seed=4))
    with pytest.raises(ValueError, match="folds=5 groups"):
        assign_folds(10, 5, groups=np.arange(10) // 3)


def test_clustered_mean():
    rng = np.random.default_rng(15)
    v = rng.normal(size=100)
    m, se = clustered_mean(v)
    assert m == pytest.approx(v.mean()) and se == pytest.approx(v.std(ddof=1) / 10)
    # values constant within groups of 4: the se of the 25 group means
    u = rng.normal(size=25)
    m, se = clustered_mean(np.repeat(u, 4), np.repeat(np.arange(25), 4))
    assert se == pytest.approx(u.std(ddof=1) / 5, rel=1e-12)
    # pairing removes the shared part of two losses
    base = rng.exponential(size=500)
    mean, se_pair = paired_difference(base + 0.1 + 0.01 * rng.normal(size=500), base)
    assert mean == pytest.approx(0.1, abs=0.003) and se_pair < 0.001
    with pytest.raises(ValueError, match="same shape"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_entropy_terms_share_the_same_losses():
    task = tasks.rotation_like(n_labels=4, d=8)
    a, z = task.sample(1200, 16)
    fit = cross_fit(z, a, seed=1)
    plug = probe_mi(fit.nll, a)
    uni = probe_mi(fit.nll, a, entropy="uniform")
    held = probe_mi(fit.nll, a, entropy="heldout", fold=fit.fold)
    assert uni.value - plug.value == pytest.approx(math.log(4) - plugin_surprisal(a).mean())
    assert held.value - plug.value == pytest.approx(
        heldout_surprisal(a, fit.fold).mean() - plugin_surprisal(a).mean())
    # the same folds whatever the inputs: losses of two probes are paired row by row
    fit_c = cross_fit(z, a, c=np.arange(1200) % 3, seed=1)
    np.testing.assert_array_equal(fit.fold, fit_c.fold)
    np.testing.assert_array_equal(cross_fitted_nll(z, a, seed=1), fit.nll)


def test_deterministic_for_a_seed():
    task = tasks.rotation_like(n_labels=4, d=16)
    a, z = task.sample(1500, 17)
    e1 = estimate_mi(a, z, x_discrete=True, method="probe", seed=5)
    e2 = estimate_mi(a, z, x_discrete=True, method="probe", seed=5)
    e3 = estimate_mi(a, z, x_discrete=True, method="probe", seed=6)
    assert e1.value == e2.value and e1.stderr == e2.stderr
    assert e1.value != e3.value


def test_pca_option():
    """Signal in 10 high-variance directions of a 128-d space: PCA to 10 keeps it all."""
    task = tasks.class_mixture(n_classes=10, d=10, n_mc=200_000)
    c, signal = task.sample(3000, 18)
    rng = np.random.default_rng(18)
    z = np.hstack([signal, 0.1 * rng.normal(size=(3000, 118))])
    z = z @ np.linalg.qr(rng.normal(size=(128, 128)))[0]  # hide it in a random basis
    est = estimate_mi(c, z, x_discrete=True, method="probe", pca=10, standardize=False)
    assert est.params["pca"] == 10
    assert 0.85 * task.truth < est.value <= task.truth + 3 * est.stderr, (est, task.truth)


def test_mlp_family_learns_a_nonlinear_posterior():
    """The 'random' collider's p(a|z) is a mixture posterior, not log-linear: the logistic
    reduced probe overstates CE(q(a|z)) and with it I(A;C|Z); the MLP gets it right."""
    task = tasks.collider("random", n_a=3, n_c=3, d=4, separation=4.0)
    a, c, z = task.sample(3000, 19)
    kw = dict(**task.estimate_kwargs(), method="probe", folds=3)
    lin = estimate_mi(a, c, z, **kw)
    net = estimate_mi(a, c, z, **kw, family="mlp", hidden=(64,), max_epochs=60)
    assert abs(net.value - task.truth) < abs(lin.value - task.truth)
    assert abs(net.value - task.truth) <= 0.08, (net, task.truth)
    again = estimate_mi(a, c, z, **kw, family="mlp", hidden=(64,), max_epochs=60)
    assert again.value == net.value  # bit-identical on CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_agrees_with_cpu():
    task = tasks.class_mixture(n_classes=10, d=128)
    c, z = task.sample(4000, 20)
    cpu = estimate_mi(c, z, x_discrete=True, method="probe")
    gpu = estimate_mi(c, z, x_discrete=True, method="probe", device="cuda")
    assert gpu.value == pytest.approx(cpu.value, abs=0.01)


# ---------------------------------------------------------------- dispatch and errors
def test_auto_picks_probe_in_high_dimension():
    rng = np.random.default_rng(21)
    t = rng.integers(0, 3, 600)
    est = estimate_mi(t, rng.normal(size=(600, 32)), x_discrete=True)
    assert est.method == "probe" and "> 20" in est.diagnostics["auto_reason"]
    a, c = rng.integers(0, 3, 600), rng.integers(0, 2, 600)
    est = estimate_mi(a, c, rng.normal(size=(600, 32)), x_discrete=True, y_discrete=True)
    assert est.method == "probe" and "cond" in est.diagnostics["auto_reason"]
    if len([m for m in MI_METHODS if m not in ("probe", "infonce", "nwj", "mine", "smile")]):
        low = estimate_mi(t, rng.normal(size=(600, 5)), x_discrete=True)
        assert low.method != "probe"


def test_bad_inputs():
    rng = np.random.default_rng(22)
    t, z = rng.integers(0, 3, 100), rng.normal(size=(100, 4))
    with pytest.raises(ValueError, match="probe"):
        estimate_mi(z[:, 0], z[:, 1], method="probe")
    with pytest.raises(ValueError, match="target='y' but y is continuous"):
        estimate_mi(t, z, x_discrete=True, method="probe", target="y")
    with pytest.raises(ValueError, match="folds"):
        estimate_mi(t, z, x_discrete=True, method="probe", folds=1)
    with pytest.raises(ValueError, match=r"groups must have shape \(100,\)"):
        estimate_mi(t, z, x_discrete=True, method="probe", groups=np.arange(99))
    with pytest.raises(ValueError, match="pca"):
        estimate_mi(t, z, x_discrete=True, method="probe", pca=5)
    with pytest.raises(ValueError, match="probe family"):
        estimate_mi(t, z, x_discrete=True, method="probe", family="forest")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hiden'\]"):
        estimate_mi(t, z, x_discrete=True, method="probe", family="mlp", hiden=3)
    with pytest.raises(ValueError, match="entropy"):
        estimate_mi(t, z, x_discrete=True, method="probe", entropy="magic")
    with pytest.raises(ValueError, match="continuous cond"):
        estimate_mi(t, z, z[:, :2], x_discrete=True, method="probe", uniform_target=True)
    with pytest.raises(ValueError, match="single label"):
        cross_fit(z, np.zeros(100, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        cross_fit(np.where(z > 2, np.nan, z), t)
