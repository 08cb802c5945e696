"""Online monitors of the E-SSL trainer, computed on held-out images each epoch.

- transformation accuracy: the head's accuracy on all K transformed copies of test images;
- kNN accuracy: weighted k-nearest-neighbour vote on L2-normalised backbone features
  (Wu et al. 2018, "Unsupervised feature learning via non-parametric instance
  discrimination", k = 200, t = 0.1 — the monitor of E-SSL's code);
- online probe accuracy: the linear probe trained during training on detached features;
- linear probe accuracy (offline, end of training): multinomial logistic regression on
  frozen, standardised features of the clean train split (scikit-learn), test accuracy.

All functions take and return plain tensors / floats; none changes the model's mode for
good (``embed`` restores it).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..data import all_transformed, get_transformation


@torch.no_grad()
def embed(model, images: torch.Tensor, *, batch_size: int = 512,
          device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
          channels_last: bool = False) -> torch.Tensor:
    """Backbone features (n, feature_dim) float32 on CPU of images (n, C, H, W) in [0, 1],
    in eval mode (BatchNorm running statistics)."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    out = []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype
                   else contextlib.nullcontext())
            with ctx:
                out.append(model.features(x).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros(0, model.spec["feature_dim"])
    return torch.cat(out)


@torch.no_grad()
def knn_accuracy(train_feats: torch.Tensor, train_labels: torch.Tensor,
                 test_feats: torch.Tensor, test_labels: torch.Tensor, *, n_classes: int,
                 k: int = 200, t: float = 0.1, chunk: int = 1024,
                 device: torch.device | str = "cpu") -> float:
    """Weighted kNN accuracy in [0, 1]: each test point's k most cosine-similar train
    points vote for their class with weight exp(sim / t) (k capped at n_train).

    train_feats (n, d), train_labels (n,), test_feats (m, d), test_labels (m,); the
    similarities are computed on ``device``.
    """
    if train_feats.shape[0] == 0 or test_feats.shape[0] == 0:
        raise ValueError("knn_accuracy needs at least one train and one test point")
    if not t > 0:
        raise ValueError(f"knn temperature t must be > 0, got {t}")
    k = min(int(k), train_feats.shape[0])
    bank = torch.nn.functional.normalize(train_feats.float().to(device), dim=1)  # (n, d)
    bank_labels = train_labels.to(device)
    correct = 0
    for start in range(0, test_feats.shape[0], chunk):
        q = torch.nn.functional.normalize(test_feats[start:start + chunk].float().to(device),
                                          dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)                               # (b, k)
        votes = torch.zeros(q.shape[0], n_classes, device=device)
        votes.scatter_add_(1, bank_labels[idx], torch.exp(sim / t))
        truth = test_labels[start:start + chunk].to(device)
        correct += int((votes.argmax(1) == truth).sum())
    return correct / test_feats.shape[0]


@torch.no_grad()
def online_probe_accuracy(model, test_feats: torch.Tensor, test_labels: torch.Tensor) -> float:
    """Accuracy of the model's online linear probe on features (m, d)."""
    probe = model.probe
    w = probe.weight.detach().float().cpu()
    b = probe.bias.detach().float().cpu()
    return float(((test_feats @ w.T + b).argmax(1) == test_labels).float().mean())


@torch.no_grad()
def transformation_accuracy(model, images: torch.Tensor, name: str, *,
                            batch_size: int = 512, device: torch.device | str = "cpu",
                            autocast_dtype: torch.dtype | None = None,
                            channels_last: bool = False) -> float:
    """Accuracy of the head of transformation ``name`` on all K transformed copies of
    ``images`` (n, C, H, W) in [0, 1] (chance: 1/K)."""
    t = get_transformation(name)
    was_training = model.training
    model.eval()
    device = torch.device(device)
    correct = total = 0
    try:
        for start in range(0, images.shape[0], max(1, batch_size // t.n_classes)):
            x = images[start:start + max(1, batch_size // t.n_classes)].to(device)
            x_all, a, _ = all_transformed(x, t)
            if channels_last:
                x_all = x_all.contiguous(memory_format=torch.channels_last)
            ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype
                   else contextlib.nullcontext())
            with ctx:
                logits = model.transformation_logits(model.features(x_all), name)
            correct += int((logits.argmax(1) == a).sum())
            total += a.numel()
    finally:
        model.train(was_training)
    return correct / max(total, 1)


def linear_probe_accuracy(train_feats: torch.Tensor, train_labels: torch.Tensor,
                          test_feats: torch.Tensor, test_labels: torch.Tensor, *,
                          c: float = 1.0, seed: int = 0) -> float:
    """Offline linear probe: L2-regularised multinomial logistic regression (scikit-learn,
    lbfgs, inverse strength ``c``) on standardised frozen features; test accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr = train_feats.double().numpy()
    xte = test_feats.double().numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000,
                                                             random_state=seed))
    clf.fit(xtr, train_labels.numpy())
    return float(np.mean(clf.predict(xte) == test_labels.numpy()))


def evaluate(model, train_ds, test_ds, transforms, cfg, rt, *, final: bool) -> dict:
    """The epoch's monitors on clean (un-augmented) images: ``test_acc/<t>`` per
    transformation, ``knn_acc``, ``probe_acc``; with ``final`` also the offline
    ``linear_probe_acc`` (when ``cfg.final_linear_probe``)."""
    kw = dict(device=rt.device, autocast_dtype=rt.autocast_dtype,
              channels_last=rt.channels_last)
    train_feats = embed(model, train_ds.images, **kw)
    test_feats = embed(model, test_ds.images, **kw)
    out = {f"test_acc/{t.name}": transformation_accuracy(model, test_ds.images, t.name, **kw)
           for t in transforms}
    out["knn_acc"] = knn_accuracy(train_feats, train_ds.labels, test_feats, test_ds.labels,
                                  n_classes=train_ds.n_classes, k=cfg.knn_k, t=cfg.knn_t,
                                  device=rt.device)
    out["probe_acc"] = online_probe_accuracy(model, test_feats, test_ds.labels)
    if final and cfg.final_linear_probe:
        out["linear_probe_acc"] = linear_probe_accuracy(train_feats, train_ds.labels,
                                                        test_feats, test_ds.labels,
                                                        seed=cfg.seed)
    return out
