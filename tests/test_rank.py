"""rank_transforms: the data-level quantities against rotation-world's exact enumeration,
the verdicts of the theory on digits, cross-fitting and determinism."""

import copy
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from essl_info import rank_transforms
from essl_info.data import get_transformation, load_dataset
from essl_info.data.rotation_world import exact_information
from essl_info.diagnostics.rank import VERDICTS, transformed_rows, verdict
from essl_info.diagnostics.transform_predictors import (PredictorConfig,
                                                       TransformationPredictor, _Stacked,
                                                       cross_fitted_losses, plan_members,
                                                       stratified_folds)


@pytest.mark.slow
def test_rotation_world_recovers_exact_information_and_its_order():
    """Two settings: the issue's reference (m=2, eps=0.1, delta=0.5) and one with the
    lighting shortcut on half the images; 4,000 images each, 3 fits (300 s for both on
    2 cores at load 1.0-1.4)."""
    settings = [dict(m=2, eps=0.1, delta=0.5, s=0.0), dict(m=2, eps=0.1, delta=0.1, s=0.5)]
    got, truth = [], []
    for knobs in settings:
        rep = rank_transforms("rotation-world", "rotation4", n_images=4000, n_test=8,
                              **knobs)
        ex = exact_information(**knobs)
        h, i = rep.get("H(A|X)"), rep.get("I(A;C|X)")
        assert abs(h.value - ex["H(A|X)"]) < 0.05, (knobs, h.value, ex["H(A|X)"])
        assert abs(i.value - ex["I(A;C|X)"]) < 0.05, (knobs, i.value, ex["I(A;C|X)"])
        assert abs(rep.get("I(A;C)").value) < 1e-9     # all four labels of every image
        got.append((i.value, h.value))
        truth.append((ex["I(A;C|X)"], ex["H(A|X)"]))
    assert np.argsort([g[0] for g in got]).tolist() == np.argsort(
        [t[0] for t in truth]).tolist()
    assert np.argsort([g[1] for g in got]).tolist() == np.argsort(
        [t[1] for t in truth]).tolist()


def test_digits_invert_is_a_shortcut_and_grayscale_learns_nothing():
    cfg = PredictorConfig(max_epochs=12, patience=3)
    rep = rank_transforms("digits", "grayscale,invert", n_images=150, config=cfg, seed=1)
    verdicts = {r["transformation"]: r["verdict"] for r in rep.extra["ranking"]}
    assert verdicts == {"invert": "lossless/shortcut", "grayscale": "learned nothing"}
    assert [r["rank"] for r in rep.extra["ranking"]] == [1, 2]
    for t in ("invert", "grayscale"):
        for q in ("I(A;C)", "H(A|X)", "I(A;C|X)"):
            e = next(e for e in rep.estimates if e.quantity == q and
                     e.params["transformation"] == t)
            assert math.isfinite(e.value) and e.n == 300 and e.stderr is not None
    # on one channel grayscale is the identity: A is invisible, CE stays at log 2
    h = next(e for e in rep.estimates if e.quantity == "H(A|X)" and
             e.params["transformation"] == "grayscale")
    assert h.value == pytest.approx(math.log(2), abs=0.02)
    # the value is the mean of the fits, the error sampling (+) t-inflated seed spread
    i = next(e for e in rep.estimates if e.quantity == "I(A;C|X)" and
             e.params["transformation"] == "invert")
    d = i.diagnostics
    assert d["n_seeds"] == cfg.fits == 3 and len(d["members"]) == 3 * cfg.folds
    assert i.value == pytest.approx(np.mean(d["seed_values"]))
    assert i.stderr == pytest.approx(math.hypot(d["stderr_sampling"], d["stderr_seeds"]))
    assert "flags" not in rep.extra


def _reading(**kw):
    base = dict(h=0.5, h_se=0.01, h_xc=0.3, h_xc_se=0.01, i=0.2, i_se=0.01,
                log_k=math.log(4), tol=0.02)
    return {**base, **kw}


@pytest.mark.parametrize("reading, expected", [
    (_reading(h=1.38, h_xc=1.38, i=0.0), "learned nothing"),
    (_reading(h=1.50, h_xc=1.45, i=0.05), "learned nothing"),        # CE above log K
    (_reading(h=1.40, h_xc=1.30, h_xc_se=0.05, i=0.1), "learned nothing"),  # within error
    (_reading(h=0.01, h_se=0.004, h_xc=0.01, i=0.0), "lossless/shortcut"),
    (_reading(h=0.03, h_se=0.01, h_xc=0.02, i=0.01), "undetermined"),  # H straddles tol
    (_reading(), "synergistic"),
    (_reading(i=0.005, i_se=0.005), "class-irrelevant"),
    (_reading(i=0.03, i_se=0.01), "undetermined"),                     # I straddles tol
    # each fit alone reads differently: the fits disagree, whatever the mean says
    (_reading(i=0.2, fits=[dict(h=0.5, h_xc=0.3, i=0.2), dict(h=0.5, h_xc=0.49, i=0.01)]),
     "undetermined"),
    (_reading(fits=[dict(h=0.5, h_xc=0.3, i=0.2), dict(h=0.5, h_xc=0.32, i=0.18)]),
     "synergistic"),
])
def test_verdicts_follow_the_theory(reading, expected):
    name, reason = verdict(reading)
    assert name == expected and reason
    assert "invisible" not in reason
    assert [v.name for v in VERDICTS][-1] == "undetermined"   # the fallback


def _toy(n_images=40, seed=0):
    ds = load_dataset("digits", split="test", image_size=8).subset(np.arange(n_images))
    t = get_transformation("hflip")
    return ds, transformed_rows(ds.images, ds.labels, t, mean=ds.mean, std=ds.std,
                                labels_per_image=None, rng=np.random.default_rng(seed))


def test_cross_fitting_is_deterministic_and_leaves_global_rngs_alone():
    ds, (x, a, c, image) = _toy()
    cfg = PredictorConfig(max_epochs=3, patience=2, folds=2, width=4, hidden=8, fits=2)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    one = cross_fitted_losses(x, a, c, image, n_labels=2, n_classes=10, cfg=cfg, seed=5)
    two = cross_fitted_losses(x, a, c, image, n_labels=2, n_classes=10, cfg=cfg, seed=5)
    other = cross_fitted_losses(x, a, c, image, n_labels=2, n_classes=10, cfg=cfg, seed=6)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    assert not np.array_equal(one[0], other[0])
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])
    assert one[0].shape == one[1].shape == (2, len(image))   # every row scored by every fit
    assert np.all(np.isfinite(one[0])) and np.all(one[0] >= 0)
    assert not np.array_equal(one[0][0], one[0][1])          # the fits differ
    assert len(one[2]["members"]) == 4


def test_members_never_see_the_images_they_score():
    classes = np.repeat(np.arange(4), 10)
    image = np.repeat(np.arange(40), 3)                      # 3 labels per image
    cfg = PredictorConfig(folds=3, fits=2, val_fraction=0.25)
    members = plan_members(image, classes, cfg, seed=0)
    assert [(m.fit, m.fold) for m in members] == [(s, f) for s in range(2) for f in range(3)]
    assert len({len(m.val) for m in members}) == 1           # the same count everywhere
    for s in range(2):
        held = np.concatenate([m.held for m in members if m.fit == s])
        assert sorted(held.tolist()) == list(range(len(image)))  # each row scored once
    for m in members:
        seen = set(image[m.train.ravel()]) | set(image[m.val.ravel()])
        assert not seen & set(image[m.held])
        assert not set(image[m.train.ravel()]) & set(image[m.val.ravel()])
        assert len(seen) + len(set(image[m.held])) == 40
        assert all(len(set(image[row])) == 1 for row in m.train)   # a row: one image's labels
    assert not np.array_equal(members[0].held, members[3].held)   # fits deal their own folds


def test_the_batched_ensemble_trains_each_member_like_a_lone_network():
    """_Stacked (vmap over stacked parameters, one Adam) against the plain loop: every
    member follows the same trajectory as its own nn.Module with its own Adam, also after
    finished members leave the ensemble."""
    ds, (x, a, c, image) = _toy(n_images=30)
    cfg = PredictorConfig(width=4, hidden=8)
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    nets = [TransformationPredictor(1, 8, 2, 10, cfg, g) for g in gens]
    lone = [copy.deepcopy(n) for n in nets]
    opts = [torch.optim.Adam(n.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            for n in lone]
    stacked = _Stacked(nets, cfg)
    rng = torch.Generator().manual_seed(0)
    alive = [0, 1, 2]
    for step in range(4):
        if step == 2:
            stacked.keep(torch.tensor([True, False, True]))
            alive = [0, 2]
        b = torch.randint(0, len(x), (len(alive), 16), generator=rng)
        lx, lxc = stacked.forward(x[b], c[b])
        loss = (F.cross_entropy(lx.reshape(-1, 2), a[b].reshape(-1), reduction="sum")
                + F.cross_entropy(lxc.reshape(-1, 2), a[b].reshape(-1), reduction="sum")) / 16
        stacked.opt.zero_grad()
        loss.backward()
        stacked.opt.step()
        for row, j in enumerate(alive):
            ox, oxc = lone[j](x[b[row]], c[b[row]])
            one = F.cross_entropy(ox, a[b[row]]) + F.cross_entropy(oxc, a[b[row]])
            opts[j].zero_grad()
            one.backward()
            opts[j].step()
    for row, j in enumerate(alive):
        for name, p in lone[j].named_parameters():
            torch.testing.assert_close(stacked.params[name][row], p.detach(),
                                       rtol=1e-4, atol=1e-5)


def test_folds_keep_images_together_and_balance_classes():
    classes = np.repeat(np.arange(5), 12)
    fold = stratified_folds(classes, 3, np.random.default_rng(0))
    for cls in range(5):
        assert np.bincount(fold[classes == cls], minlength=3).tolist() == [4, 4, 4]


def test_transformed_rows_sample_labels_for_large_k():
    ds = load_dataset("digits", split="test", image_size=8).subset(np.arange(10))
    t = get_transformation("jigsaw4")
    x, a, c, image = transformed_rows(ds.images, ds.labels, t, mean=ds.mean, std=ds.std,
                                      labels_per_image=None, rng=np.random.default_rng(0))
    assert x.shape == (40, 1, 8, 8) and np.bincount(image).tolist() == [4] * 10
    for i in range(10):
        assert len(set(a[image == i].tolist())) == 4     # distinct labels per image
    np.testing.assert_array_equal(c.numpy(), ds.labels.numpy()[image])
    # row = the normalised transformation of its image under its label
    ref = (t.apply(ds.images[image[:3]], a[:3]) - ds.mean[0]) / ds.std[0]
    torch.testing.assert_close(x[:3], ref)
    with pytest.raises(ValueError, match="labels_per_image must lie in 1..24"):
        transformed_rows(ds.images, ds.labels, t, mean=ds.mean, std=ds.std,
                         labels_per_image=30, rng=np.random.default_rng(0))


def test_parallel_workers_give_the_same_report():
    """Transformations fitted two at a time (threads) give the single-worker numbers bit
    for bit: rows are drawn in order first, every fit is seeded by its own seeds."""
    cfg = PredictorConfig(max_epochs=2, patience=1, folds=2, width=4, hidden=8, fits=2)
    kw = {"n_images": 150, "config": cfg, "seed": 3}
    one = rank_transforms("digits", "rotation4,hflip,invert", workers=1, **kw)
    two = rank_transforms("digits", "rotation4,hflip,invert", workers=2, **kw)
    assert [(e.quantity, e.params["transformation"], e.value, e.stderr)
            for e in one.estimates] == [(e.quantity, e.params["transformation"], e.value,
                                         e.stderr) for e in two.estimates]
    assert one.extra["ranking"] == two.extra["ranking"]
    assert two.provenance["workers"] == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"transforms": "rotation4,spin"}, "unknown transformation 'spin'"),
    ({"workers": 0}, "workers must be a positive integer"),
    ({"n_images": 10}, "needs at least 150 images for 10 classes"),
    ({"dataset": 3}, "dataset must be a name or an ImageDataset"),
    ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
    ({"device": "tpu"}, "device must be 'cpu', 'cuda' or 'auto'"),
])
def test_bad_inputs(kwargs, match):
    args = {"dataset": "digits", "transforms": "hflip", "n_images": 150, **kwargs}
    with pytest.raises(ValueError, match=match):
        rank_transforms(args.pop("dataset"), args.pop("transforms"), **args)
