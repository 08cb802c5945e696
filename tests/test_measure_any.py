"""measure(model=...) on any torch module or callable, measure_features on arrays from
anywhere, and ``essl-info measure --features FILE.npz`` (DESIGN §3, "Measuring models that
did not come from the bundled trainer")."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from essl_info import measure, measure_features
from essl_info.cli import main
from essl_info.data import load_dataset
from essl_info.diagnostics.measure import measurement_dataset
from essl_info.diagnostics.report import format_table
from essl_info.models.checkpoint import load_checkpoint, model_from_checkpoint

from measure_helpers import tiny_checkpoint

LN = math.log


def _small_cnn(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Dropout(0.5), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(2))                  # (B, 8, 2, 2): flattened
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net


# ============================================================================ model=
def test_small_module_on_digits_every_quantity_finite_with_the_usual_flags():
    net = _small_cnn().train()        # left in training mode: measure must not change it
    rng_before = torch.get_rng_state()
    rep = measure(model=net, dataset="digits", transformations=["rotation4"], n_images=100,
                  image_size=16, normalize=(0.5, 0.25))
    assert torch.equal(rng_before, torch.get_rng_state())
    assert all(m.training for m in net.modules())
    assert {e.quantity for e in rep.estimates} == {"I(A;C)", "I(A;Z)", "I(C;Z)", "I(A;C|Z)",
                                                   "I(A;Z|C)", "synergy"}
    assert {e.method for e in rep.estimates} == {"plugin", "probe", "ross"}
    for e in rep.estimates:
        assert math.isfinite(e.value) and math.isfinite(e.stderr), e
        lo, hi = e.ci
        assert lo <= e.value <= hi and e.n == 400
    # rotation of an 8x8 digit is visible to any non-trivial network
    assert rep.get("I(A;Z)", "probe").value > 0.2
    assert isinstance(rep.extra.get("flags", []), list)
    for f in rep.extra.get("flags", []):
        assert f["kind"] == "disagreement" and f["transformation"] == "rotation4"
    prov = rep.provenance
    assert prov["source"] == "model" and rep.checkpoint == "<model Sequential>"
    assert prov["model"]["normalize"] == {"mean": [0.5], "std": [0.25]}
    assert prov["model"]["image_size"] == 16 and prov["dataset_params"]["image_size"] == 16
    assert "preprocess" in prov["model"]["order"]
    assert format_table(rep).startswith("model: <model Sequential>  dataset: digits (test)")


def test_collapsed_model_gets_the_collapsed_flag():
    rep = measure(model=lambda x: torch.zeros(len(x), 5), dataset="digits",
                  transformations="rotation4", n_images=100, quantities=["I(A;Z)"],
                  method="probe")
    assert [f["kind"] for f in rep.extra["flags"]] == ["collapsed"]
    assert rep.get("I(A;Z)", "probe").value == pytest.approx(0.0, abs=0.02)


def test_a_checkpoints_backbone_as_a_module_gives_the_checkpoints_numbers():
    """The model path is the checkpoint path: the bundled trainer's backbone passed as a
    plain module, with the checkpoint's normalisation, gives the same estimates."""
    ckpt = load_checkpoint(tiny_checkpoint())
    ds = measurement_dataset(ckpt)
    kw = dict(dataset=ds, n_images=100, quantities=["I(A;Z)", "I(C;Z)"], method="probe",
              seed=2)
    ref = measure(tiny_checkpoint(), **kw)
    backbone = model_from_checkpoint(ckpt).backbone
    spec = ckpt["model"]
    got = measure(model=backbone, transformations=["rotation4"],
                  normalize=(spec["mean"], spec["std"]), **kw)
    assert [(e.quantity, e.method) for e in got.estimates] == \
        [(e.quantity, e.method) for e in ref.estimates]
    for g, r in zip(got.estimates, ref.estimates):
        assert g.value == pytest.approx(r.value, abs=1e-9)
        assert g.stderr == pytest.approx(r.stderr, abs=1e-9)


def test_preprocessing_order_and_size_as_documented():
    """transformation on [0, 1] images at image_size -> preprocess -> normalize -> model."""
    seen = []

    def model(x):
        seen.append(x.clone())
        return x.mean(dim=(2, 3))

    def to_rgb(x):
        return x.repeat(1, 3, 1, 1)

    rep = measure(model=model, dataset="digits", transformations=["hflip"], n_images=100,
                  image_size=12, preprocess=to_rgb, normalize=((0.1, 0.2, 0.3), (2, 4, 8)),
                  quantities=["I(A;C)"], batch_size=100)
    assert rep.provenance["model"]["preprocess"].endswith("to_rgb")
    ds = load_dataset("digits", split="test", image_size=12)
    idx = np.sort(np.random.default_rng(0).choice(len(ds), size=100, replace=False))
    x = ds.images[idx]                                   # label 0 of hflip: the identity
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([2.0, 4.0, 8.0]).view(1, 3, 1, 1)
    assert len(seen) == 2 and seen[0].shape == (100, 3, 12, 12)
    torch.testing.assert_close(seen[0], (x.repeat(1, 3, 1, 1) - mean) / std)
    torch.testing.assert_close(seen[1], (x.flip(-1).repeat(1, 3, 1, 1) - mean) / std)


def test_stochastic_model_reproducible_and_global_rng_untouched():
    def noisy(x):                                        # draws from the global RNG
        return x.flatten(1)[:, :16] + 0.1 * torch.randn(len(x), 16)

    torch.manual_seed(123)
    state = torch.get_rng_state()
    kw = dict(model=noisy, dataset="digits", transformations=["rotation4"], n_images=100,
              image_size=8, quantities=["I(A;Z)"], method="probe", seed=5)
    one, two = measure(**kw), measure(**kw)
    assert torch.equal(state, torch.get_rng_state())
    assert one.get("I(A;Z)").value == two.get("I(A;Z)").value


@pytest.mark.parametrize("kwargs, match", [
    ({"model": 3}, "model must be a torch.nn.Module or a callable"),
    ({"dataset": None}, "needs dataset="),
    ({"transformations": None}, "needs transformations="),
    ({"checkpoint": "x.pt"}, "not both"),
    ({"layer": "projector"}, "measured at its output"),
    ({"normalize": (0.5,)}, "normalize must be"),
    ({"normalize": ((0.5, 0.5), (1.0,))}, "same length"),
    ({"normalize": (0.5, 0.0)}, "std > 0"),
    ({"normalize": ((0.5,) * 3, (1.0,) * 3)}, "normalize has 3 channel"),
    ({"image_size": 0}, "image_size must be a positive integer"),
    ({"preprocess": "gray"}, "preprocess must be a callable"),
    ({"model": nn.Conv2d(3, 4, 3)}, r"the model failed on input of shape \(20, 1, 8, 8\)"),
    ({"model": lambda x: (x, x)}, "returned a tuple"),
    ({"model": lambda x: x[:1]}, "expected \\(20, ...\\)"),
    ({"model": lambda x: x * float("nan")}, "not finite"),
    ({"transformations": ["rot4"]}, "rot4"),
])
def test_bad_model_arguments_one_line(kwargs, match):
    base = dict(model=lambda x: x.flatten(1), dataset="digits", transformations=["hflip"],
                n_images=100, image_size=8, quantities=["I(A;C)"], batch_size=20)
    with pytest.raises(ValueError, match=match) as info:
        measure(**{**base, **kwargs})
    assert "\n" not in str(info.value)


def test_checkpoint_path_refuses_model_preprocessing():
    with pytest.raises(ValueError, match="describe a model passed as model="):
        measure(tiny_checkpoint(), normalize=(0.5, 0.5), n_images=100)


# ================================================================= measure_features
def _noisy_collider(n_images, eps, seed):
    """A uniform on 4 labels, C uniform on 2 classes (per image), S = (A + C) mod 4 kept
    with probability 1 - eps, else replaced by a uniform label; Z = 3 one-hot(S) + N(0,
    0.3²) noise. The clusters of Z are 7 noise s.d. apart, so I(.;Z) = I(.;S) to ~1e-10,
    and I(.;S) follows exactly from the joint table p(a, c, s) (``_exact``)."""
    rng = np.random.default_rng(seed)
    c_img = rng.integers(0, 2, n_images)
    a = np.repeat(np.arange(4), n_images)
    image = np.tile(np.arange(n_images), 4)
    c = c_img[image]
    s = np.where(rng.random(len(a)) < eps, rng.integers(0, 4, len(a)), (a + c) % 4)
    z = 3.0 * np.eye(4)[s] + 0.3 * rng.standard_normal((len(a), 4))
    return z, a, c, image


def _exact(eps):
    """I(A;S), I(C;S), I(A;C|S) in nats by enumeration of p(a, c, s)."""
    p = np.zeros((4, 2, 4))
    for a in range(4):
        for c in range(2):
            for s in range(4):
                p[a, c, s] = 0.125 * ((1 - eps) * (s == (a + c) % 4) + eps / 4)

    def h(q):
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    pa, pc, ps = p.sum((1, 2)), p.sum((0, 2)), p.sum((0, 1))
    pas, pcs = p.sum(1), p.sum(0)
    return {"I(A;Z)": h(pa) + h(ps) - h(pas), "I(C;Z)": h(pc) + h(ps) - h(pcs),
            "I(A;C|Z)": h(pas) + h(pcs) - h(p) - h(ps)}


def test_measure_features_recovers_known_information():
    truth = _exact(eps=0.3)
    # closed form: p(s|a) is (1-eps)/2 + eps/4 on {a, a+1} and eps/4 elsewhere
    near, far = 0.35 + 0.075, 0.075
    assert truth["I(A;Z)"] == pytest.approx(LN(4) + 2 * near * LN(near) + 2 * far * LN(far))
    assert truth["I(C;Z)"] == pytest.approx(0.0, abs=1e-12)
    z, a, c, image = _noisy_collider(400, eps=0.3, seed=0)
    rep = measure_features(z, a=a, c=c, image_id=image, method="probe", seed=0,
                           quantities=["I(A;Z)", "I(C;Z)", "I(A;C|Z)"])
    est = rep.get("I(A;Z)", "probe")
    lo, hi = est.ci
    assert lo <= truth["I(A;Z)"] <= hi, (est.value, est.stderr, truth["I(A;Z)"])
    for q in ("I(C;Z)", "I(A;C|Z)"):
        e = rep.get(q, "probe")
        assert abs(e.value - truth[q]) <= 3 * e.stderr, (q, e.value, e.stderr, truth[q])
    assert rep.provenance["source"] == "features" and rep.provenance["n_images"] == 400
    assert rep.provenance["rows"] == {"custom": 1600}


def test_measure_features_independent_features_give_zero():
    rng = np.random.default_rng(1)
    n = 150
    a, image = np.repeat(np.arange(2), n), np.tile(np.arange(n), 2)
    c = rng.integers(0, 3, n)[image]
    z = rng.standard_normal((2 * n, 3))
    rep = measure_features(z, a=a, c=c, image_id=image, method="probe",
                           quantities=["I(A;Z)"], transformation="hflip")
    est = rep.get("I(A;Z)")
    assert est.ci[0] <= 0.0 <= est.ci[1] and est.params["transformation"] == "hflip"


def test_torch_and_numpy_inputs_give_the_same_report():
    z, a, c, image = _noisy_collider(100, eps=0.3, seed=2)
    kw = dict(method="probe", quantities=["I(A;Z)"])
    ref = measure_features(z, a=a, c=c, image_id=image, **kw)
    got = measure_features(torch.from_numpy(z).view(-1, 2, 2), a=torch.from_numpy(a),
                           c=torch.from_numpy(c), image_id=torch.from_numpy(image), **kw)
    assert got.get("I(A;Z)").value == ref.get("I(A;Z)").value


def _arrays(n=20):
    a, image = np.repeat(np.arange(2), n), np.tile(np.arange(n), 2)
    c = (np.arange(n) % 2)[image]
    return dict(z=np.random.default_rng(0).standard_normal((2 * n, 3)), a=a, c=c,
                image_id=image)


@pytest.mark.parametrize("edit, match", [
    (dict(z=np.zeros((1, 3))), "at least 2 rows"),
    (dict(a=np.zeros(5, int)), "a has 5 entries but z has 40 rows"),
    (dict(c=np.zeros((40, 2), int)), r"c must be 1-D"),
    (dict(a=np.full(40, 0.5)), "a must hold integer labels"),
    (dict(image_id=-np.ones(40, int)), "non-negative"),
    (dict(z=np.full((40, 3), np.nan)), "NaN or inf"),
    (dict(z=np.array(["x"] * 40)), "z must be numeric"),
    (dict(c=np.zeros(40, int)), "c takes a single value"),
    (dict(image_id=np.zeros(40, int)), "rows of different classes"),
    (dict(n_labels=1), "smaller than the largest label"),
    (dict(quantities=["I(X;Y)"]), "unknown quantity"),
    (dict(method="magic"), "method must be one of"),
    (dict(), "measure_features needs at least 80"),       # valid arrays, too few images
])
def test_measure_features_bad_input_one_line(edit, match):
    arr = _arrays()
    kw = {k: edit.pop(k) for k in ("n_labels", "quantities", "method") if k in edit}
    arr.update(edit)
    with pytest.raises(ValueError, match=match) as info:
        measure_features(arr.pop("z"), **arr, **kw)
    assert "\n" not in str(info.value)


# ======================================================================== the CLI
def test_cli_features_prints_the_api_table(capsys, tmp_path):
    z, a, c, image = _noisy_collider(100, eps=0.3, seed=3)
    path = tmp_path / "f.npz"
    np.savez(path, z=z.astype(np.float32), a=a, c=c, image_id=image,
             transformation=np.array("rotation4"))
    assert main(["measure", "--features", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    api = measure_features(z.astype(np.float32), a=a, c=c, image_id=image,
                           transformation="rotation4", name=str(path))
    assert out == format_table(api) + "\n"
    assert out.startswith(f"features: {path}")


@pytest.mark.parametrize("case, match", [
    ("missing", "features file not found"),
    ("text", "is not a readable .npz of features"),
    ("lacks", "lacks array(s) c, image_id"),
    ("pickled", "is not a readable .npz of features"),
    ("extra", "unknown array(s) w"),
    ("with_ckpt", "takes no a checkpoint"),
    ("with_arch", "takes no --arch"),
    ("labels", "a must hold integer labels"),
])
def test_cli_bad_features_files_exit_2_one_line(capsys, tmp_path, case, match):
    arr = _arrays()
    path = tmp_path / "f.npz"
    argv = ["measure", "--features", str(path)]
    if case == "text":
        path.write_text("not an npz")
    elif case == "lacks":
        np.savez(path, z=arr["z"], a=arr["a"])
    elif case == "pickled":
        np.savez(path, **arr, transformation=np.array([{"x": 1}], dtype=object))
    elif case == "extra":
        np.savez(path, **arr, w=arr["a"])
    elif case == "labels":
        np.savez(path, **{**arr, "a": arr["a"] + 0.5})
    elif case != "missing":
        np.savez(path, **arr)
        argv += ["ckpt.pt"] if case == "with_ckpt" else ["--arch", "resnet18"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("essl-info: error: ") and "\n" not in err and match in err, err
