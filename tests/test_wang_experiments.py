"""experiments.curves (per-epoch curves over seeds from log.jsonl) and
experiments.theorem4 (both sides of Wang et al.'s Theorem 4), against hand computations
and closed forms."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from essl_info.experiments.curves import (binomial_se, epoch_records, final_value,
                                          paired_difference, run_sizes, seed_curve)
from essl_info.experiments.theorem4 import (Value, at_z_equals_x, linear, theorem4_sides,
                                            verdict)

Z = 1.959963984540054


def _run(folder, accs, ces, n_test=100, resumed_at=None):
    """A run folder whose log.jsonl holds epochs 1..E (epoch e: accs[e-1], ces[e-1]);
    with ``resumed_at`` the run is logged as interrupted after that epoch and resumed
    (a stale line for the next epoch first, then the real ones), plus a cut line."""
    folder.mkdir(parents=True)
    lines = [{"event": "start", "epoch": 0, "n_train": 500, "n_test": n_test}]
    for e, (a, c) in enumerate(zip(accs, ces), start=1):
        lines.append({"event": "epoch", "epoch": e, "test_acc/rotation4": a,
                      "train_ce/rotation4": c})
        if resumed_at == e:
            lines.append({"event": "epoch", "epoch": e + 1, "test_acc/rotation4": -1.0,
                          "train_ce/rotation4": -1.0})
            lines.append({"event": "start", "epoch": e, "n_train": 500, "n_test": n_test})
    lines.append({"event": "end", "epoch": len(accs), "finished": True})
    text = "\n".join(json.dumps(x) for x in lines)
    if resumed_at is not None:   # a stale line, then the run goes on (its real lines win)
        stale = json.dumps({"event": "epoch", "epoch": resumed_at + 1,
                            "test_acc/rotation4": -1.0, "train_ce/rotation4": -1.0})
        text = stale + "\n" + '{"event": "epo' + "\n" + text
    (folder / "log.jsonl").write_text(text + "\n")
    return folder


def test_epoch_records_last_line_of_an_epoch_wins_and_cut_lines_are_skipped(tmp_path):
    f = _run(tmp_path / "r", [0.5, 0.6, 0.7], [1.2, 1.0, 0.9], resumed_at=1)
    recs = epoch_records(f)
    assert [r["epoch"] for r in recs] == [1, 2, 3]
    assert [r["test_acc/rotation4"] for r in recs] == [0.5, 0.6, 0.7]
    assert run_sizes(f) == {"n_train": 500, "n_test": 100}


def test_seed_curve_matches_a_hand_computation(tmp_path):
    accs = [[0.5, 0.6], [0.55, 0.7], [0.45, 0.65]]
    folders = [_run(tmp_path / f"s{s}", a, [1.0, 0.9], n_test=200) for s, a in enumerate(accs)]
    c = seed_curve(folders, "test_acc/rotation4", sampling="binomial")
    assert c.epochs == (1, 2)
    v = np.array(accs)
    for j in range(2):
        p = v[:, j]
        sampling = math.sqrt(np.mean(p * (1 - p) / 200))
        seed = np.std(p, ddof=1) / math.sqrt(3) * student_t.ppf(0.975, 2) / Z
        assert c.mean[j] == pytest.approx(p.mean())
        assert c.stderr[j] == pytest.approx(math.hypot(sampling, seed))
    flat = seed_curve(folders, "train_ce/rotation4")   # identical runs: no error at all
    assert flat.stderr.tolist() == [0.0, 0.0]
    d = paired_difference(c, seed_curve(folders, "test_acc/rotation4", sampling="binomial"))
    assert d["value"] == 0 and d["seed_values"] == [0, 0, 0]
    assert d["stderr"] == pytest.approx(math.sqrt(2) * c.sampling_se[-1])


def test_paired_difference_takes_the_spread_of_the_per_seed_differences(tmp_path):
    a = [_run(tmp_path / f"a{s}", [x], [0.0]) for s, x in enumerate([0.50, 0.60, 0.70])]
    b = [_run(tmp_path / f"b{s}", [x], [0.0]) for s, x in enumerate([0.40, 0.52, 0.58])]
    d = paired_difference(seed_curve(a, "test_acc/rotation4"),
                          seed_curve(b, "test_acc/rotation4"))
    diffs = np.array([0.10, 0.08, 0.12])
    assert d["value"] == pytest.approx(0.10)
    assert d["stderr"] == pytest.approx(np.std(diffs, ddof=1) / math.sqrt(3)
                                        * student_t.ppf(0.975, 2) / Z)


def test_seed_curve_and_final_value_refuse_what_is_missing(tmp_path):
    f = _run(tmp_path / "r", [0.5], [1.0])
    with pytest.raises(ValueError, match="no epoch has 'knn_acc'"):
        seed_curve([f], "knn_acc")
    with pytest.raises(ValueError, match="sampling"):
        seed_curve([f], "test_acc/rotation4", sampling="poisson")
    with pytest.raises(ValueError, match="not among the final metrics"):
        final_value([{"folder": str(f), "metrics": {}}], "linear_probe_acc")
    rows = [{"folder": str(f), "metrics": {"linear_probe_acc": 0.9}}] * 2
    v = final_value(rows, "linear_probe_acc", sampling="binomial")
    assert v["value"] == pytest.approx(0.9)
    assert v["stderr"] == pytest.approx(float(binomial_se(0.9, 100)))


# ============================================================================ Theorem 4
def test_theorem4_sides_closed_form():
    k = math.log(4)
    r = theorem4_sides(Value(0.5, 0.01), Value(2.0, 0.02), Value(0.3, 0.03), k)
    assert r["i_xa_given_c"]["value"] == pytest.approx(k - 0.3)
    assert r["rhs"]["value"] == pytest.approx(2.0 - (k - 0.3))
    assert r["gap"]["value"] == pytest.approx(2.0 - (k - 0.3) - 0.5)
    assert r["gap"]["stderr"] == pytest.approx(0.06)     # sum of the three: any correlation
    assert r["verdict"] == "holds"
    assert r["rhs_text"]["value"] == pytest.approx(2.0 - 0.3)
    bad = theorem4_sides(Value(1.3, 0.01), Value(2.0, 0.02), Value(0.3, 0.03), k)
    assert bad["verdict"] == "fails" and bad["verdict_text"] == "holds"
    wide = theorem4_sides(Value(0.5, 0.3), Value(2.0, 0.2), Value(0.3, 0.05), k)
    assert wide["verdict"] == "undetermined"


def test_printed_inequality_fails_for_a_lossless_transformation_at_z_equals_x():
    """Proposition 1's direct concatenation X = [X̄, A] with C read from X̄: H(A|X) =
    H(A|X,C) = 0, so the printed form at Z = X needs 2 log K ≤ I(X;C) ≤ H(C), false
    for K = 4 rotations and 10 balanced classes (2.77 > 2.30 nats)."""
    r = at_z_equals_x(Value(0.0, 0.0), Value(0.0, 0.0), math.log(4), math.log(10))
    assert r["lhs"]["value"] == pytest.approx(2 * math.log(4))
    assert r["verdict"] == "fails"
    # and Theorem 4 itself at Z = X: I(Z;A) = log K, I(Z;C) = H(C), I(X;A|C) = log K
    t = theorem4_sides(Value(math.log(4), 0.0), Value(math.log(10), 0.0), Value(0.0, 0.0),
                       math.log(4))
    assert t["verdict"] == "fails"
    # a transformation invisible in X (H(A|X) = H(A|X,C) = log K) cannot violate it
    ok = at_z_equals_x(Value(math.log(4), 0.0), Value(math.log(4), 0.0), math.log(4),
                       math.log(10))
    assert ok["verdict"] == "not shown to fail"


def test_verdict_and_linear_edges():
    assert verdict(Value(1.0, 1.0 / Z * 0.999)) == "holds"
    assert verdict(Value(-1.0, 0.1)) == "fails"
    assert verdict(Value(0.1, 0.1)) == "undetermined"
    s = linear([(2.0, Value(1.0, 0.1)), (-1.0, Value(0.5, 0.2))], constant=1.0)
    assert (s.value, s.stderr) == (pytest.approx(2.5), pytest.approx(0.4))
    with pytest.raises(ValueError, match="finite"):
        Value(float("nan"), 0.1)
    with pytest.raises(ValueError, match="stderr"):
        Value(0.0, -1.0)
