"""measure() and the QUANTITIES registry: truth on synthetic features, identities on a
checkpoint trained for a few steps, collapsed and diverged representations."""

import math

import numpy as np
import pytest
import torch
from measure_helpers import collapsed_checkpoint, diverged_checkpoint, tiny_checkpoint

from essl_info import measure
from essl_info.errors import DataError
from essl_info.diagnostics.features import Features
from essl_info.diagnostics.quantities import QUANTITIES, Context, disagreements, estimate_quantities
from essl_info.types import Estimate

from essl_info.diagnostics.measure import MIN_IMAGES as MIN

LOG2, LOG4 = math.log(2), math.log(4)


@pytest.fixture(scope="module")
def tiny_report():
    return measure(tiny_checkpoint(), n_images=120, seed=0)


def test_every_quantity_by_both_methods_finite(tiny_report):
    rep = tiny_report
    assert rep.dataset == "digits" and rep.provenance["split"] == "test"
    assert rep.provenance["epoch"] == 2 and rep.provenance["n_images"] == 120
    for q in QUANTITIES:
        methods = ["plugin"] if q == "I(A;C)" else ["probe", "ross"]
        for m in methods:
            e = rep.get(q, m)
            assert math.isfinite(e.value) and e.stderr is not None and e.stderr >= 0
            assert e.ci[0] <= e.value <= e.ci[1] and e.n == 120 * 4
            assert e.params["transformation"] == "rotation4"
            assert e.params["layer"] == "backbone"


def test_identity_exact_for_probe_and_within_errors_for_knn(tiny_report):
    rep = tiny_report
    ac = rep.get("I(A;C)")
    assert ac.value == pytest.approx(0.0, abs=1e-12)   # all K labels of every image
    p = {q: rep.get(q, "probe") for q in ("I(A;Z)", "I(A;C|Z)", "I(A;Z|C)", "synergy")}
    assert p["I(A;Z|C)"].value == pytest.approx(
        p["I(A;Z)"].value + p["I(A;C|Z)"].value - ac.value, abs=1e-9)
    assert p["synergy"].value == pytest.approx(p["I(A;C|Z)"].value - ac.value, abs=1e-12)
    k = {q: rep.get(q, "ross") for q in ("I(A;Z)", "I(A;C|Z)", "I(A;Z|C)")}
    residual = k["I(A;Z|C)"].value - (k["I(A;Z)"].value + k["I(A;C|Z)"].value - ac.value)
    combined = math.sqrt(sum(e.stderr ** 2 for e in k.values()))
    assert abs(residual) <= 3 * combined, (residual, combined)


def _collider(n_images=400, seed=0):
    """A ⟂ C, Z reveals S = (A + C) mod 4 (one-hot, scaled, plus noise dims). Closed forms:
    I(A;Z) = ln 2, I(C;Z) = 0, I(A;C|Z) = ln 2, I(A;Z|C) = ln 4, synergy = ln 2."""
    rng = np.random.default_rng(seed)
    c_img = rng.integers(0, 2, n_images)
    a = np.repeat(np.arange(4), n_images)
    image = np.tile(np.arange(n_images), 4)
    c = c_img[image]
    s = (a + c) % 4
    z = np.hstack([3.0 * np.eye(4)[s], np.zeros((len(s), 4))])
    z = (z + 0.3 * rng.standard_normal(z.shape)).astype(np.float32)
    return Features(z, a, c, image, "backbone", "toy", 4, 2)


def test_probe_recovers_closed_forms_on_a_collider():
    ests = estimate_quantities(Context(_collider(), seed=1), list(QUANTITIES), ("probe",))
    got = {e.quantity: e for e in ests}
    truth = {"I(A;C)": 0.0, "I(A;Z)": LOG2, "I(C;Z)": 0.0, "I(A;C|Z)": LOG2,
             "I(A;Z|C)": LOG4, "synergy": LOG2}
    for q, v in truth.items():
        # within 0.08 nats: the L2-regularised probe (one-standard-error rule) leaves a
        # gap of ~0.07 in CE(q(a|z)) here, which also enters I(A;C|Z) and synergy
        assert got[q].value == pytest.approx(v, abs=0.08), (q, got[q].value)
    for q in ("I(A;Z)", "I(C;Z)", "I(A;Z|C)"):   # H - CE is a lower bound
        assert got[q].value <= truth[q] + 2 * got[q].stderr + 1e-9, q


def test_collapsed_features_give_zero_information_and_a_flag():
    rep = measure(collapsed_checkpoint(), n_images=MIN, seed=0)
    for e in rep.estimates:
        assert abs(e.value) <= 0.03 + 3 * e.stderr, (e.quantity, e.method, e.value)
    kinds = [f["kind"] for f in rep.extra["flags"]]
    assert "collapsed" in kinds


def test_diverged_model_is_a_data_error():
    with pytest.raises(DataError, match="features contain NaN"):
        measure(diverged_checkpoint(), n_images=MIN)


def test_methods_and_quantity_selection():
    rep = measure(tiny_checkpoint(), quantities=["I(A;Z)", "I(A;C)"], method="probe",
                  n_images=MIN, layer="projector")
    assert sorted((e.quantity, e.method) for e in rep.estimates) == [
        ("I(A;C)", "plugin"), ("I(A;Z)", "probe")]
    assert rep.estimates[1].params["layer"] == "projector"
    rep = measure(tiny_checkpoint(), quantities=["I(C;Z)"], method="knn", n_images=MIN)
    assert [(e.quantity, e.method) for e in rep.estimates] == [("I(C;Z)", "ross")]
    assert rep.estimates[0].params["pca_dims"] <= 10


def test_same_seed_same_numbers_and_global_rngs_untouched():
    kw = dict(quantities=["I(A;C|Z)"], n_images=MIN, seed=3)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a, b = measure(tiny_checkpoint(), **kw), measure(tiny_checkpoint(), **kw)
    assert [e.value for e in a.estimates] == [e.value for e in b.estimates]
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])


@pytest.mark.parametrize("kwargs, match", [
    ({"quantities": ["I(Z;Z)"]}, "unknown quantity 'I\\(Z;Z\\)'"),
    ({"method": "magic"}, "method must be one of"),
    ({"layer": "head"}, "layer must be one of"),
    ({"n_images": 10}, "n_images=10 is too few: measure needs at least"),
    ({"transformations": "spin"}, "unknown transformation 'spin'"),
    ({"device": "gpu"}, "device must be 'cpu', 'cuda' or 'auto'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        measure(tiny_checkpoint(), **{"n_images": MIN, **kwargs})


def test_disagreement_flags():
    def est(v, se, m):
        return Estimate(v, se, method=m, quantity="I(C;Z)",
                        params={"transformation": "rotation4", "pca_dims": 10,
                                "family": "logistic"})
    flags = disagreements([est(1.0, 0.02, "probe"), est(0.6, 0.03, "ross")])
    assert len(flags) == 1 and flags[0]["z"] == pytest.approx(0.4 / math.hypot(.02, .03))
    assert "misses information spread over more dimensions" in flags[0]["message"]
    flags = disagreements([est(0.6, 0.02, "probe"), est(1.0, 0.03, "ross")])
    assert "logistic probe" in flags[0]["message"]
    assert disagreements([est(1.0, 0.1, "probe"), est(0.9, 0.1, "ross")]) == []


def test_probe_error_bars_include_the_spread_over_fit_seeds(tiny_report):
    """Each probe quantity is the mean of PROBE_SEEDS fits; its stderr adds the row-sampling
    error and the (t-inflated) between-seed error, both reported."""
    from essl_info.diagnostics.quantities import PROBE_SEEDS
    from essl_info.estimators.resampling import combine_seeds

    for q in ("I(A;Z)", "I(C;Z)", "I(A;C|Z)"):
        e = tiny_report.get(q, "probe")
        d = e.diagnostics
        assert e.params["seeds"] == PROBE_SEEDS == d["n_seeds"] == len(d["seed_values"])
        assert e.value == pytest.approx(np.mean(d["seed_values"]), abs=1e-12)
        ens = combine_seeds(d["seed_values"], d["stderr_sampling"])
        assert e.stderr == pytest.approx(ens.stderr, rel=1e-9)
        assert e.stderr >= d["stderr_sampling"] and e.stderr >= d["stderr_seeds"]


def test_one_seed_reproduces_the_single_fit():
    kw = dict(quantities=["I(A;Z)"], method="probe", n_images=MIN, seed=2)
    one = measure(tiny_checkpoint(), seeds=1, **kw).get("I(A;Z)", "probe")
    three = measure(tiny_checkpoint(), **kw).get("I(A;Z)", "probe")
    assert three.diagnostics["seed_values"][0] == pytest.approx(one.value, abs=1e-12)
    assert "n_seeds" not in one.diagnostics


def test_too_few_images_is_refused_with_the_number_needed():
    with pytest.raises(ValueError, match=f"pass --n-images {MIN} or more"):
        measure(tiny_checkpoint(), n_images=10)


def test_out_of_range_values_become_flags_and_warnings():
    """Features that reveal nothing, measured on few images with one seed: estimates whose
    whole interval lies below 0 are flagged (kind out_of_range) and warned about."""
    from essl_info.diagnostics.quantities import range_checks
    from essl_info.estimators import DataWarning

    f = _collider(n_images=200)
    ctx = Context(f, seed=0)
    bad = [Estimate(-0.5, 0.05, method="probe", quantity="I(C;Z)"),
           Estimate(3.0, 0.05, method="ross", quantity="I(A;Z)"),
           Estimate(0.2, 0.05, method="probe", quantity="I(A;C|Z)")]
    flags = range_checks(ctx, bad)
    assert [(fl["quantity"], fl["bound"]) for fl in flags] == [("I(C;Z)", "lower"),
                                                              ("I(A;Z)", "upper")]
    assert "I(A;Z) [toy, ross] = 3.000 ± 0.050 exceeds its ceiling H(A) = 1.38" in \
        flags[1]["message"]
    from essl_info.estimators.ranges import warn_flags
    with pytest.warns(DataWarning, match="below 0 beyond its error"):
        warn_flags(flags[:1])
