"""estimate_mi's dispatch: method names, supported mixes, options and auto's record."""

import numpy as np
import pytest

from essl_info import estimate_entropy, estimate_mi
from essl_info.estimators import MI_METHODS

rng = np.random.default_rng(0)
X = rng.standard_normal((300, 2))
Y = X[:, :1] + 0.5 * rng.standard_normal((300, 1))
LABELS = rng.integers(0, 3, 300)


def test_every_contract_method_is_registered():
    for name in ("plugin", "ksg", "ksg2", "ross", "mixed", "probe", "infonce", "nwj", "mine",
                 "smile", "npeet"):
        assert name in MI_METHODS, name


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown method 'kgs'.*ksg"):
        estimate_mi(X, Y, method="kgs")


def test_unsupported_mix_names_a_method_that_can():
    with pytest.raises(ValueError, match="cannot estimate.*methods that can: .*plugin"):
        estimate_mi(LABELS, LABELS, x_discrete=True, y_discrete=True, method="ksg")


def test_unknown_option_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"does not take \['bogus'\].*subsamples"):
        estimate_mi(X, Y, method="ksg", bogus=1)
    with pytest.raises(ValueError, match="bogus"):
        estimate_entropy(X, method="kl", bogus=1)


def test_auto_records_its_choice_and_reason():
    est = estimate_mi(LABELS, X, x_discrete=True)
    assert est.method == "ross" and est.diagnostics["auto"] is True
    assert est.diagnostics["auto_reason"]
    est = estimate_mi(LABELS, LABELS, x_discrete=True, y_discrete=True)
    assert est.method == "plugin"
    assert estimate_mi(X, Y, quantity="I(A;Z)").quantity == "I(A;Z)"
