"""Range checks (estimators/ranges.py) and degenerate inputs: an impossible value is never
reported silently, a constant variable gives exactly 0 with an interval containing 0."""

import math
import warnings

import numpy as np
import pytest

from essl_info import Estimate, estimate_mi
from essl_info.estimators import DataWarning
from essl_info.estimators.ranges import ce_flags, range_flags


def test_value_below_zero_beyond_its_error_is_flagged_within_it_is_not():
    assert range_flags(Estimate(-0.01, 0.02, quantity="I(A;Z)")) == []   # interval holds 0
    flags = range_flags(Estimate(-0.30, 0.05, quantity="I(A;Z)"))
    assert len(flags) == 1 and flags[0]["bound"] == "lower"
    assert "I(A;Z) = -0.300 ± 0.050 is below 0" in flags[0]["message"]
    # no interval: any value below 0 (beyond rounding) is flagged
    assert range_flags(Estimate(-1e-15, quantity="I(X;Y)")) == []
    assert range_flags(Estimate(-0.333, quantity="I(C;Z)"))[0]["bound"] == "lower"


def test_value_above_its_ceiling_is_flagged():
    h = math.log(10)
    assert range_flags(Estimate(2.2, 0.1), upper=h) == []
    flags = range_flags(Estimate(2.9, 0.1, quantity="I(C;Z)"), upper=h,
                        upper_name=f"H(C) = {h:.3f}", context="rotation4")
    assert flags[0]["bound"] == "upper"
    assert flags[0]["message"].startswith("rotation4: I(C;Z) = 2.900 ± 0.100 exceeds its "
                                          "ceiling H(C) = 2.303")


def test_cross_entropy_at_or_above_log_k_means_learned_nothing():
    assert ce_flags(1.20, 0.02, 4) == []
    flag = ce_flags(1.480, 0.05, 4, name="CE(q(a|x))")[0]
    assert flag["kind"] == "learned_nothing"
    assert "not below log K = 1.386" in flag["message"]
    assert "no evidence" in flag["message"]
    assert ce_flags(1.38, 0.05, 4) != []            # within its error of log K


@pytest.mark.parametrize("method", ["auto", "mixed", "ksg"])
def test_identical_rows_give_exact_zero_with_a_warning(method):
    x = np.ones((500, 3))
    y = np.ones((500, 2))
    with pytest.warns(DataWarning, match="x is constant"):
        est = estimate_mi(x, y, method=method)
    assert est.value == 0.0 and est.ci[0] <= 0.0 <= est.ci[1]
    assert est.diagnostics["degenerate"] == "x is constant"


def test_constant_label_gives_zero_for_the_probe_too():
    z = np.random.default_rng(0).standard_normal((300, 4))
    with pytest.warns(DataWarning, match="x is constant"):
        est = estimate_mi(np.zeros(300, int), z, x_discrete=True, method="probe")
    assert est.value == 0.0 and est.stderr == 0.0


def test_ordinary_estimates_raise_no_range_warning():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, 2))
    y = x + rng.standard_normal((1000, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        est = estimate_mi(x, y)
    assert "flags" not in est.diagnostics
