"""Estimate / Report: the result objects every number goes through."""

import json
import math

import numpy as np
import pytest

from essl_info.types import Z_95, Estimate, Report


def test_ci_from_stderr_and_signed_value():
    e = Estimate(-0.0123, 0.01, method="ksg", params={"k": 3}, n=500, quantity="I(A;Z)")
    assert e.value == -0.0123  # signed, never clipped
    assert e.clipped == 0.0
    lo, hi = e.ci
    assert math.isclose(lo, -0.0123 - Z_95 * 0.01) and math.isclose(hi, -0.0123 + Z_95 * 0.01)


def test_str_is_readable():
    e = Estimate(0.4123, 0.0061, method="ksg", params={"k": 3}, n=10000)
    assert str(e) == "I(X;Y) = 0.412 ± 0.006 nats  [ksg k=3, n=10000]"
    assert str(Estimate(1.0, method="plugin", n=7, quantity="H(A)")) == \
        "H(A) = 1.000 nats  [plugin, n=7]"


def test_to_dict_is_json_safe_with_numpy_values():
    e = Estimate(np.float64(0.5), np.float32(0.1), method="ross",
                 params={"k": np.int64(3), "dims": (1, 2), "arr": np.arange(3)}, n=np.int64(10),
                 diagnostics={"ties": np.float32(0.25), "nested": {"a": np.bool_(True)}})
    d = json.loads(json.dumps(e.to_dict()))
    assert d["params"] == {"k": 3, "dims": [1, 2], "arr": [0, 1, 2]}
    assert d["n"] == 10 and d["diagnostics"]["nested"]["a"] is True
    assert isinstance(d["ci"], list) and len(d["ci"]) == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "0.3"])
def test_non_finite_value_is_refused(bad):
    with pytest.raises(ValueError, match="finite"):
        Estimate(bad)


@pytest.mark.parametrize("bad", [float("nan"), -0.1])
def test_bad_stderr_is_refused(bad):
    with pytest.raises(ValueError, match="stderr"):
        Estimate(0.1, bad)


def test_report_round_trip_and_lookup():
    a = Estimate(0.3, 0.01, method="probe", quantity="I(A;Z)", n=100)
    b = Estimate(0.2, 0.02, method="ross", quantity="I(A;Z)", n=100)
    r = Report([a, b], checkpoint="x.pt", dataset="digits", provenance={"seed": 0})
    assert r.get("I(A;Z)") is a and r.get("I(A;Z)", method="ross") is b
    with pytest.raises(KeyError):
        r.get("I(C;Z)")
    d = json.loads(json.dumps(r.to_dict()))
    assert set(d) == {"checkpoint", "dataset", "estimates", "provenance"}
    assert d["estimates"][1]["method"] == "ross"
