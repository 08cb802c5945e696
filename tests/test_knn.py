"""kNN estimators against truth (closed forms, Monte Carlo), against independent
implementations (scikit-learn, npeet-plus, the slow loops in knn_reference.py), and their
standard errors, conditioning and automatic choices."""

import math

import numpy as np
import pytest
from scipy import integrate, stats
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

import knn_reference as ref
from essl_info import estimate_entropy, estimate_mi
from essl_info.estimators import MI_METHODS, DataWarning
from essl_info.tasks import class_mixture, gao_mixture, gaussian, student_t


def within(est, truth, bias_allowance, n_se=4.0):
    """|estimate - truth| <= bias allowance + n_se standard errors"""
    err = abs(est.value - truth)
    assert err <= bias_allowance + n_se * est.stderr, (est, truth)


# ========================================================================== truths
@pytest.mark.parametrize("d, rho, allowance", [(1, 0.6, 0.02), (4, 0.5, 0.08)])
def test_ksg_correlated_gaussians(d, rho, allowance):
    task = gaussian(d, rho)
    x, y = task.sample(4000, 11)
    for method in ("ksg", "ksg2"):
        est = estimate_mi(x, y, method=method)
        within(est, task.truth, allowance)


def test_ksg_student_t():
    task = student_t(1, rho=0.5, dof=3)
    x, y = task.sample(4000, 2)
    within(estimate_mi(x, y), task.truth, 0.03)


def test_gao_mixture_mixed_and_ross():
    task = gao_mixture(5)
    x, y = task.sample(5000, 4)
    for method in ("mixed", "ross"):
        est = estimate_mi(x, y, x_discrete=True, method=method)
        within(est, task.truth, 0.03)
    assert estimate_mi(x, y, x_discrete=True).method == "ross"


def test_ross_class_mixture_monte_carlo_truth():
    task = class_mixture(n_classes=3, d=4, separation=2.5, n_mc=400_000)
    x, y = task.sample(4000, 5)
    est = estimate_mi(x, y, x_discrete=True)
    assert est.method == "ross"
    within(est, task.truth, 0.03 + 3 * task.truth_stderr)
    assert est.value <= est.diagnostics["ceiling"] <= math.log(3) + 1e-3


def test_ross_never_exceeds_its_ceiling_in_high_dimension():
    task = class_mixture(n_classes=10, d=32)
    x, y = task.sample(2000, 6)
    est = estimate_mi(x, y, x_discrete=True, method="ross")
    assert est.value <= est.diagnostics["ceiling"]
    assert est.value <= math.log(10) + est.stderr


def _xor_truth(delta: float) -> float:
    """A, C ~ Bern(1/2) independent, Z | A, C ~ N(delta * (A xor C), 1):
    I(A;C|Z) = ln 2 - H(A xor C | Z) = I(A xor C; Z), by quadrature."""
    def integrand(z):
        p0, p1 = stats.norm.pdf(z), stats.norm.pdf(z - delta)
        post = p1 / (p0 + p1)
        h = -sum(p * math.log(p) for p in (post, 1 - post) if p > 0)
        return 0.5 * (p0 + p1) * h
    h_cond, _ = integrate.quad(integrand, -12, 12 + delta, limit=200)
    return math.log(2) - h_cond


@pytest.mark.parametrize("delta, noise_dims, allowance", [(0.0, 0, 0.03), (2.0, 0, 0.03),
                                                         (2.0, 7, 0.05)])
def test_labels_given_continuous_explaining_away(delta, noise_dims, allowance):
    """I(A;C|Z) > 0 although A and C are independent: explaining away. The direct
    kNN construction must find it (and ~0 when Z carries nothing), also with Z padded by
    independent noise dimensions (measured bias at n=4000, truth 0.337: +0.004 (1-D z),
    -0.008 (8-D), -0.06 (16-D): it shrinks towards 0 as the dimension grows)."""
    rng = np.random.default_rng(8)
    n = 4000
    a, c = rng.integers(0, 2, n), rng.integers(0, 2, n)
    z = np.c_[delta * (a ^ c) + rng.standard_normal(n), rng.standard_normal((n, noise_dims))]
    truth = _xor_truth(delta)
    est = estimate_mi(a, c, z, x_discrete=True, y_discrete=True)
    assert est.method == "ross"
    within(est, truth, allowance)


# ===================================================== independent implementations
def test_ksg_matches_sklearn_regression_1d():
    x, y = gaussian(1, 0.6).sample(2000, 3)
    x, y = x / x.std(), y / y.std()  # scikit-learn standardises each variable
    ours = estimate_mi(x, y, method="ksg").value
    theirs = mutual_info_regression(x, y.ravel(), n_neighbors=3, random_state=0)[0]
    assert abs(ours - theirs) < 1e-6


def test_ross_matches_sklearn_classif_1d():
    rng = np.random.default_rng(1)
    z = rng.standard_normal(2000)
    lab = (z + 0.8 * rng.standard_normal(2000) > 0).astype(int) + 2 * (z > 1)
    ours = estimate_mi(lab, z, x_discrete=True, method="ross").value
    theirs = mutual_info_classif(z[:, None], lab, n_neighbors=3, random_state=0)[0]
    assert theirs > 0.1 and abs(ours - theirs) < 1e-6


@pytest.mark.parametrize("cond", [False, True])
def test_ksg_and_frenzel_pompe_match_npeet(cond):
    """Matching conventions: max-norm in every space, strict radius counts, psi(n + 1)
    with the point itself, psi(N); npeet's 1e-10 noise and ours move no count here."""
    npeet_plus = pytest.importorskip("npeet_plus")
    x, y = gaussian(2, 0.6).sample(1500, 3)
    z = np.random.default_rng(5).standard_normal((1500, 2)) if cond else None
    if cond:
        y = y + z
    ours = estimate_mi(x, y, z, method="ksg", standardize=False).value   # npeet: raw units
    state = np.random.get_state()
    np.random.seed(0)
    theirs = npeet_plus.mi(x, y, z, k=3, base=np.e)
    np.random.set_state(state)
    assert abs(ours - theirs) < 1e-6
    assert abs(estimate_mi(x, y, z, method="npeet").value - theirs) < 1e-6


def _small(n=250, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    y = x[:, :1] + 0.7 * rng.standard_normal((n, 1))
    z = rng.standard_normal((n, 1))
    return x, y + 0.5 * z, z


def test_estimators_equal_slow_references():
    x, y, z = _small()
    lab = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    lab2 = (y[:, 0] > 0).astype(int)
    kw = dict(jitter=0.0, subsamples=0, standardize=False)   # the references use raw units
    checks = [
        (estimate_mi(x, y, method="ksg", **kw), ref.ksg1(x, y)),
        (estimate_mi(x, y, method="ksg", norm="euclidean", **kw),
         ref.ksg1(x, y, dist=ref.eucl)),
        (estimate_mi(x, y, method="ksg2", **kw), ref.ksg2(x, y)),
        (estimate_mi(x, y, z, method="ksg", **kw), ref.frenzel_pompe(x, y, z)),
        (estimate_mi(lab, x, x_discrete=True, method="ross", **kw), ref.ross(lab, x)),
        (estimate_mi(lab, x, x_discrete=True, method="ross", norm="euclidean", **kw),
         ref.ross(lab, x, dist=ref.eucl)),
        (estimate_mi(lab, lab2, z, x_discrete=True, y_discrete=True, **kw),
         ref.labels_given_continuous(lab, lab2, z)),
        (estimate_mi(np.round(x), np.round(y * 2), method="mixed", subsamples=0,
                     standardize=False), ref.gao_mixed(np.round(x), np.round(y * 2))),
        (estimate_entropy(x, jitter=0.0, subsamples=0), ref.kozachenko_leonenko(x)),
        (estimate_entropy(x, norm="euclidean", jitter=0.0, subsamples=0),
         ref.kozachenko_leonenko(x, norm="euclidean")),
    ]
    for est, expected in checks:
        assert est.value == pytest.approx(expected, abs=1e-10), est


# ========================================================================= entropy
@pytest.mark.parametrize("d, norm", [(1, "max"), (3, "max"), (3, "euclidean")])
def test_kl_entropy_gaussian(d, norm):
    x = np.random.default_rng(d).standard_normal((3000, d))
    est = estimate_entropy(x, norm=norm)
    assert est.method == "kl" and est.quantity == "H(X)"
    within(est, 0.5 * d * math.log(2 * math.pi * math.e), 0.05)


def test_kl_entropy_rejects_atoms_without_jitter():
    x = np.repeat(np.arange(50.0), 5)
    with pytest.raises(ValueError, match="duplicates"), pytest.warns(DataWarning):
        estimate_entropy(x, jitter=0.0, k=3, subsamples=0)


# ========================================================== conditioning by strata
def test_discrete_cond_equals_weighted_strata():
    x, y, _ = _small(600, seed=2)
    c = np.random.default_rng(3).integers(0, 3, 600)
    kw = dict(subsamples=0, standardize=False)   # per-stratum data would rescale otherwise
    full = estimate_mi(x, y, c, cond_discrete=True, method="ksg", **kw).value
    parts = [(np.sum(c == s), estimate_mi(x[c == s], y[c == s], method="ksg",
                                          **kw).value) for s in range(3)]
    weighted = sum(m * v for m, v in parts) / 600
    assert full == pytest.approx(weighted, abs=1e-10)
    for method in ("ksg2", "mixed"):
        est = estimate_mi(x, y, c, cond_discrete=True, method=method, **kw)
        sub = [estimate_mi(x[c == s], y[c == s], method=method, **kw).value
               for s in range(3)]
        assert est.value == pytest.approx(sum(m * v for (m, _), v in zip(parts, sub)) / 600)


def test_ross_with_discrete_cond_equals_weighted_strata():
    """The 0/inf metric on a discrete cond makes Frenzel-Pompe the strata average."""
    rng = np.random.default_rng(4)
    c = rng.integers(0, 2, 800)
    lab = (rng.random(800) < 0.3 + 0.4 * c).astype(int) + rng.integers(0, 2, 800)
    z = lab[:, None] * (1 + c[:, None]) + rng.standard_normal((800, 2))
    kw = dict(subsamples=0, standardize=False)   # per-stratum data would rescale otherwise
    full = estimate_mi(lab, z, c, x_discrete=True, cond_discrete=True, **kw)
    assert full.method == "ross"
    parts = [np.sum(c == s) * estimate_mi(lab[c == s], z[c == s], x_discrete=True,
                                          **kw).value for s in range(2)]
    assert full.value == pytest.approx(sum(parts) / 800, abs=1e-10)


def test_methods_reject_unsupported_conditioning():
    x, y, z = _small(100)
    with pytest.raises(ValueError, match="methods that can.*ksg"):
        estimate_mi(x, y, z, method="ksg2")
    with pytest.raises(ValueError, match="mixed"):
        estimate_mi(x, y, z, method="mixed")


# ================================================================ standard errors
def test_stderr_matches_spread_over_independent_samples():
    task = gaussian(1, 0.5)
    vals, ses = [], []
    for seed in range(24):
        x, y = task.sample(1000, 100 + seed)
        est = estimate_mi(x, y, seed=seed)
        vals.append(est.value)
        ses.append(est.stderr)
    ratio = np.mean(ses) / np.std(vals, ddof=1)
    assert 0.6 < ratio < 1.6, ratio


def test_stderr_params_groups_and_determinism():
    x, y = gaussian(2, 0.5).sample(1200, 1)
    a = estimate_mi(x, y, seed=3)
    b = estimate_mi(x, y, seed=3)
    assert a.value == b.value and a.stderr == b.stderr
    assert a.params["stderr_method"].startswith("subsampling")
    assert a.params["subsamples"] == 20 and a.params["subsample_size"] == 120
    groups = np.arange(1200) // 4
    g = estimate_mi(x, y, seed=3, groups=groups)
    assert g.value == a.value and g.stderr != a.stderr
    assert estimate_mi(x, y, subsamples=0).stderr is None


def test_heavy_ties_warn_and_auto_picks_mixed():
    x = np.round(np.random.default_rng(0).standard_normal((800, 1)))
    y = x + np.round(np.random.default_rng(1).standard_normal((800, 1)))
    assert estimate_mi(x, y).method == "mixed"
    with pytest.warns(DataWarning, match="duplicates"):
        estimate_mi(x, y, method="ksg", subsamples=0)


def test_singleton_labels_are_dropped_with_a_warning():
    rng = np.random.default_rng(0)
    lab = np.r_[np.repeat([0, 1], 100), 7]
    z = rng.standard_normal(201)
    with pytest.warns(DataWarning, match="1 point.*left out"):
        est = estimate_mi(lab, z, x_discrete=True, subsamples=0)
    assert est.diagnostics["dropped"] == 1


@pytest.mark.parametrize("kinds, dims, expected", [
    ((True, False, None), (1, 5, 0), "ross"),
    ((False, False, None), (3, 3, 0), "ksg"),
    ((False, False, False), (3, 3, 2), "ksg"),
    ((True, True, False), (1, 1, 4), "ross"),
    ((True, True, True), (1, 1, 1), "plugin"),
])
def test_auto_choices(kinds, dims, expected):
    rng = np.random.default_rng(0)
    n = 300

    def make(disc, d):
        return rng.integers(0, 3, n) if disc else rng.standard_normal((n, d))

    x, y = make(kinds[0], dims[0]), make(kinds[1], dims[1])
    z = None if kinds[2] is None else make(kinds[2], dims[2])
    est = estimate_mi(x, y, z, x_discrete=kinds[0], y_discrete=kinds[1],
                      cond_discrete=bool(kinds[2]), subsamples=0)
    assert est.method == expected and est.diagnostics["auto"]


def test_knn_methods_are_registered_with_references():
    for name in ("ksg", "ksg2", "ross", "mixed", "npeet", "plugin"):
        assert name in MI_METHODS and MI_METHODS[name].reference


# ========================================================================= units
@pytest.mark.parametrize("method", ["ksg", "ksg2", "mixed"])
def test_unit_free_by_default(method):
    """The default rescales each continuous column by its standard deviation: x, 10x,
    1000x and any per-column rescaling give the same estimate (issue: 0.841, 0.188, 0.000
    on x, 10x, 100x of a Gaussian d=4 task without it)."""
    task = gaussian(4, 0.6)
    x, y = task.sample(2000, 1)
    scales = [1.0, 10.0, 1000.0, np.array([1e-3, 1.0, 50.0, 1e4])]
    values = [estimate_mi(x * s, y, method=method, subsamples=0).value for s in scales]
    assert max(values) - min(values) < 0.02, values
    assert min(values) > 0.5 * task.truth
    if method != "ksg2":   # (ksg2's marginal radii make it less sensitive to units)
        # without rescaling the units matter (the behaviour npeet-plus has)
        raw = estimate_mi(x * 100.0, y, method=method, subsamples=0, standardize=False).value
        assert raw < 0.5 * values[0]


def test_standardize_equals_raw_estimate_on_standardised_data():
    """standardize=True is exactly the raw estimator applied to x / std(x) (ddof=0)."""
    x, y = gaussian(3, 0.5).sample(800, 2)
    x = x * np.array([3.0, 0.1, 20.0])
    ours = estimate_mi(x, y, method="ksg", subsamples=0, jitter=0.0).value
    ref_value = ref.ksg1(x / x.std(axis=0), y / y.std(axis=0))
    assert ours == pytest.approx(ref_value, abs=1e-10)


def test_kdtree_stderr_uses_the_row_budget_and_brute_force_does_not():
    """N = 10,000, 2+2: on the kd-tree path 20 blocks of 500 rows (one permutation, 0.125 N
    budget raised to the 500-row floor); the brute-force path keeps 2 x 10 blocks of N/10
    (calibration of both: benchmarks/bench_coverage.py)."""
    x, y = gaussian(2, 0.5).sample(10_000, 3)
    tree = estimate_mi(x, y, method="ksg", seed=1)
    brute = estimate_mi(x, y, method="ksg", seed=1, backend="numba")
    assert tree.params["backend"] == "kdtree" and tree.value == brute.value
    assert tree.params["subsamples"] == 20 and tree.params["subsample_size"] == 500
    assert brute.params["subsamples"] == 20 and brute.params["subsample_size"] == 1000
