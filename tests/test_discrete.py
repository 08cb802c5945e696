"""Plug-in entropy / MI / CMI: equal to scikit-learn, scipy and npeet-plus, Miller-Madow
correction, and standard errors that match the spread over independent samples."""

import math

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import mutual_info_score

from essl_info import estimate_entropy, estimate_mi
from essl_info.estimators.discrete import plugin_cmi, plugin_entropy


def _labels(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, n)
    y = (x + rng.integers(0, 3, n)) % 7
    z = rng.integers(0, 3, n)
    return x, y, z


@pytest.mark.parametrize("seed", range(5))
def test_plugin_equals_sklearn_mutual_info_score(seed):
    x, y, _ = _labels(seed=seed)
    est = estimate_mi(x, y, x_discrete=True, y_discrete=True)
    assert est.method == "plugin"
    assert est.value == pytest.approx(mutual_info_score(x, y), rel=1e-12, abs=1e-15)


def test_plugin_cmi_equals_entropy_identity_and_npeet():
    npeet_plus = pytest.importorskip("npeet_plus")
    x, y, z = _labels()
    est = estimate_mi(x, y, z, x_discrete=True, y_discrete=True, cond_discrete=True)

    def h(*cols):
        _, counts = np.unique(np.stack(cols, 1), axis=0, return_counts=True)
        return scipy_entropy(counts)

    assert est.value == pytest.approx(h(x, z) + h(y, z) - h(x, y, z) - h(z), abs=1e-12)
    theirs = npeet_plus.midd(x[:, None], y[:, None], z=z[:, None], base=np.e)
    assert est.value == pytest.approx(theirs, abs=1e-12)


def test_plugin_entropy_and_miller_madow():
    x, _, _ = _labels()
    counts = np.bincount(x)
    h = estimate_entropy(x, discrete=True)
    assert h.value == pytest.approx(scipy_entropy(counts), abs=1e-12)
    hm = estimate_entropy(x, discrete=True, miller_madow=True)
    assert hm.value - h.value == pytest.approx((len(counts) - 1) / (2 * len(x)))


def test_miller_madow_mi_correction_and_bias():
    """Independent labels: plug-in MI is biased up by ~df / 2n; Miller-Madow removes most."""
    rng = np.random.default_rng(0)
    raw, mm = [], []
    for _ in range(50):
        x, y = rng.integers(0, 6, 400), rng.integers(0, 6, 400)
        raw.append(estimate_mi(x, y, x_discrete=True, y_discrete=True).value)
        mm.append(estimate_mi(x, y, x_discrete=True, y_discrete=True,
                              miller_madow=True).value)
    assert np.mean(raw) == pytest.approx(25 / 800, rel=0.25)
    assert abs(np.mean(mm)) < 0.3 * np.mean(raw)


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_plugin_stderr_matches_spread(strength):
    rng = np.random.default_rng(1)
    vals, ses = [], []
    for _ in range(60):
        x = rng.integers(0, 4, 800)
        y = np.where(rng.random(800) < strength, x, rng.integers(0, 4, 800))
        e = estimate_mi(x, y, x_discrete=True, y_discrete=True)
        vals.append(e.value)
        ses.append(e.stderr)
    assert 0.7 < np.mean(ses) / np.std(vals, ddof=1) < 1.4


def test_plugin_grouped_stderr_and_disabled():
    x, y, _ = _labels(1200)
    groups = np.arange(1200) // 4
    e = estimate_mi(x, y, x_discrete=True, y_discrete=True, groups=groups)
    assert e.params["stderr_method"].startswith("subsampling") and e.stderr > 0
    assert estimate_mi(x, y, x_discrete=True, y_discrete=True, subsamples=0).stderr is None


def test_plugin_functions_directly():
    x, y, z = _labels(500)
    value, se, diag = plugin_cmi(x, y)
    assert value == pytest.approx(mutual_info_score(x, y)) and se > 0
    assert diag["df"] == (len(np.unique(x)) - 1) * (len(np.unique(y)) - 1)
    h, _ = plugin_entropy(np.zeros(10, np.int64))
    assert h == 0.0
    assert plugin_cmi(x, x)[0] == pytest.approx(plugin_entropy(x)[0])
    assert math.isfinite(plugin_cmi(x, y, z)[0])
