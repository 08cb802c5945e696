"""Every bad input of DESIGN §3 raises a ValueError that names the problem; legal but
risky inputs warn (DataWarning). Never a silent NaN."""

import numpy as np
import pytest

from essl_info import estimate_entropy, estimate_mi
from essl_info.estimators import DataWarning, prepare_variables

rng = np.random.default_rng(0)
X = rng.standard_normal((50, 2))
Y = rng.standard_normal(50)
LAB = rng.integers(0, 3, 50)


def _nan(a):
    a = a.astype(float).copy()
    a.flat[7] = np.nan
    return a


def _inf(a):
    a = a.astype(float).copy()
    a.flat[3] = -np.inf
    return a


@pytest.mark.parametrize("args, kwargs, match", [
    ((X, Y[:40]), {}, r"x has 50 rows but y has 40"),
    ((X, Y, X[:10]), {}, r"cond has 10"),
    ((_nan(X), Y), {}, r"x contains 1 NaN/inf"),
    ((X, _inf(Y)), {}, r"y contains 1 NaN/inf"),
    ((X, Y, _nan(X)), {}, r"cond contains"),
    ((X[:3], Y[:3]), {"k": 3}, r"n=3 <= k=3"),
    ((X, Y), {"k": 0}, r"k must be a positive integer"),
    ((X, Y), {"k": 2.5}, r"k must be a positive integer"),
    ((X + 0.5, Y), {"x_discrete": True}, r"x was declared discrete but holds non-integer"),
    ((LAB, Y + 0.25), {"x_discrete": True, "y_discrete": True}, r"y was declared discrete"),
    ((np.zeros((0, 2)), np.zeros(0)), {}, r"x is empty"),
    ((X, np.zeros((50, 0))), {}, r"y is empty \(shape \(50, 0\)\)"),
    ((np.zeros((5, 2, 2)), Y[:5]), {}, r"x must have shape \(n,\) or \(n, d\)"),
    ((X, None), {}, r"y is None"),
    ((X, Y), {"method": "kraskov"}, r"unknown method 'kraskov'"),
    ((X, Y), {"method": "ross"}, r"method 'ross' cannot .*methods that can: .*ksg"),
    ((LAB, Y), {"x_discrete": True, "method": "ksg"}, r"methods that can: .*ross"),
    ((X, Y), {"norm": "l1"}, r"norm must be one of"),
    ((X, Y), {"jitter": -1.0}, r"jitter must be >= 0"),
    ((X, Y), {"backend": "cuda"}, r"backend must be"),
    ((X, Y), {"subsamples": -2}, r"subsamples must be an integer >= 0"),
    ((X, Y), {"groups": np.arange(10)}, r"groups must be a 1-D array with one id per row"),
    ((np.array(["a", "b"] * 25), Y), {}, r"x must be numeric"),
])
def test_bad_inputs_raise_named_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_mi(*args, **kwargs)


def test_bad_entropy_inputs():
    with pytest.raises(ValueError, match="x contains 1 NaN"):
        estimate_entropy(_nan(X))
    with pytest.raises(ValueError, match="unknown entropy method"):
        estimate_entropy(X, method="ksg")
    with pytest.raises(ValueError, match="cannot handle discrete x"):
        estimate_entropy(LAB, discrete=True, method="kl")
    with pytest.raises(ValueError, match="n=2 <= k=3"):
        estimate_entropy(X[:2])


def test_string_and_boolean_labels_are_fine():
    s = np.array(["cat", "dog", "owl"])[LAB]
    a = estimate_mi(s, LAB, x_discrete=True, y_discrete=True)
    b = estimate_mi(LAB, LAB, x_discrete=True, y_discrete=True)
    assert a.value == pytest.approx(b.value)
    estimate_mi(LAB > 0, Y, x_discrete=True, subsamples=0)


def test_one_dimensional_labels_and_torch_tensors():
    torch = pytest.importorskip("torch")
    a = estimate_mi(LAB, X, x_discrete=True, subsamples=0)
    b = estimate_mi(torch.as_tensor(LAB), torch.as_tensor(X), x_discrete=True, subsamples=0)
    assert a.value == b.value


def test_warnings_for_ties_and_too_many_categories():
    with pytest.warns(DataWarning, match="exact duplicates"):
        estimate_mi(np.round(X), Y, method="ksg", subsamples=0)
    many = np.arange(200)
    with pytest.warns(DataWarning, match="distinct values"):
        prepare_variables(many, many, x_discrete=True, y_discrete=True)


@pytest.mark.parametrize("method", ["ksg", "ksg2", "mixed", "npeet"])
def test_no_silent_nan(method):
    est = estimate_mi(X, Y, method=method)
    assert np.isfinite(est.value)
    assert est.stderr is None or np.isfinite(est.stderr)
