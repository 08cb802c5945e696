"""Loss functions of the E-SSL trainer: pure functions of tensors (DESIGN §8).

Every function takes model outputs and returns a scalar tensor (mean over the batch, in
nats where it is a cross-entropy). Shapes are given at each function; ``n`` is the number
of images, ``d`` an embedding dimension, ``K`` the number of transformation labels.
Cross-view contrastive losses are computed on whatever rows they are given: under DDP the
caller gathers the embeddings of all ranks first (with autograd), as E-SSL's code does.
Inputs may be bfloat16 (autocast outputs); every loss is computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"{names} must both be (n, d) with n >= 2 and equal shapes, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Cross-view InfoNCE, one direction: row i of ``z1`` must pick row i of ``z2``.

    z1, z2: (n, d) embeddings of two views (L2-normalised here). The negatives of z1[i] are
    the other rows of z2 only (no within-view negatives): the form of E-SSL's CIFAR code
    (Dangovski et al. 2022, ``info_nce_loss``), τ = 0.5 there.
    ``-(1/n) Σ_i log softmax_j(cos(z1_i, z2_j)/τ)_i``, in nats.
    """
    _check_pair(z1, z2, "z1, z2")
    _check_temperature(temperature)
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    logits = z1 @ z2.T / temperature                                          # (n, n)
    labels = torch.arange(z1.shape[0], device=z1.device)
    return F.cross_entropy(logits, labels)


def cross_view_infonce(z1: torch.Tensor, z2: torch.Tensor,
                       temperature: float = 0.5) -> torch.Tensor:
    """Symmetric cross-view InfoNCE, E-SSL's SimCLR loss on CIFAR:
    ``(info_nce(z1, z2) + info_nce(z2, z1)) / 2``. z1, z2: (n, d)."""
    return 0.5 * (info_nce(z1, z2, temperature) + info_nce(z2, z1, temperature))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR, Chen et al. 2020, eq. 1): each of the 2n embeddings must pick its
    partner among the 2n − 1 others (both views' rows are negatives).

    z1, z2: (n, d); returns the mean over the 2n anchors, in nats.
    """
    _check_pair(z1, z2, "z1, z2")
    _check_temperature(temperature)
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)              # (2n, d)
    logits = z @ z.T / temperature                                   # (2n, 2n)
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device),
                                float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, partner)


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor,
                 z2: torch.Tensor) -> torch.Tensor:
    """SimSiam (Chen & He 2021, Alg. 1): symmetric negative cosine similarity between each
    view's prediction and the other view's stop-gradient projection.

    p1, p2: (n, d) predictor outputs; z1, z2: (n, d) projector outputs. In [-1, 1].
    """
    _check_pair(p1, z2, "p1, z2")
    _check_pair(p2, z1, "p2, z1")
    d1 = F.cosine_similarity(p1.float(), z2.detach().float(), dim=1).mean()
    d2 = F.cosine_similarity(p2.float(), z1.detach().float(), dim=1).mean()
    return -0.5 * (d1 + d2)


def transformation_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (nats) of the transformation head: logits (n, K), labels (n,) in [0, K).

    E-SSL's equivariance term (Dangovski et al. 2022): all K transformed copies of each
    image are in the batch, so ``labels`` is ``arange(K).repeat_interleave(n_images)``.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (n, K) and labels (n,), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    return F.cross_entropy(logits.float(), labels)


def class_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (nats) of a class head (the class-information experiment or the
    online probe): logits (n, C), labels (n,)."""
    return transformation_ce(logits, labels)


def order_loss(h: torch.Tensor, strengths: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Order-preserving margin-ranking loss for a scale-valued transformation.

    Our reading of Xie et al. (CVPR-W 2022, "What Should Be Equivariant in Self-Supervised
    Learning"): an embedding should preserve the *order* of a transformation's strength.
    For each image, take the copy of least strength as the anchor; for every pair of labels
    a, b with s_a < s_b, the anchor-to-copy distance must grow with strength by a margin:
    ``relu(margin − (d_b − d_a))`` with d the Euclidean distance between L2-normalised
    embeddings. Averaged over images and ordered pairs; pairs of equal strength are skipped.

    h: (K·n, d) embeddings of the K copies, label-major (rows [a·n, (a+1)·n) have label a);
    strengths: (K,) the strength of each label.
    """
    strengths = torch.as_tensor(strengths, dtype=torch.float64).flatten()
    k = strengths.numel()
    if k < 2 or h.ndim != 2 or h.shape[0] % k:
        raise ValueError(f"h must be (K*n, d) with K={k} >= 2 strengths, got "
                         f"{tuple(h.shape)}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    e = F.normalize(h.float(), dim=1).view(k, h.shape[0] // k, -1)   # (K, n, d)
    anchor = e[int(torch.argmin(strengths))]                          # (n, d)
    dist = (e - anchor).norm(dim=2)                                   # (K, n)
    lo, hi = torch.nonzero(strengths[:, None] < strengths[None, :], as_tuple=True)
    if lo.numel() == 0:
        raise ValueError(f"order_loss needs at least two distinct strengths, got "
                         f"{strengths.tolist()}")
    lo, hi = lo.to(h.device), hi.to(h.device)
    return F.relu(margin - (dist[hi] - dist[lo])).mean()


def care_loss(h: torch.Tensor, k: int) -> torch.Tensor:
    """CARE's equivariance term (Gupta, Robinson, Lim, Villar, Jegelka 2023/2024,
    "Structuring Representation Geometry with Rotationally Equivariant Contrastive
    Learning"): a transformation shared by two images must preserve their inner product,

        E_{x ≠ x′, a ≠ a′} [ (f(a x′)ᵀ f(a x) − f(a′ x)ᵀ f(a′ x′))² ],

    whose minima make every transformation act on the (unit-sphere) embedding as an
    orthogonal map. h: (K·n, d) embeddings of the K transformed copies of n ≥ 2 images,
    label-major (rows [a·n, (a+1)·n) have label a), L2-normalised here; the expectation is
    the mean over all ordered pairs of distinct labels and distinct images, computed from
    the K Gram matrices G_a (n, n) with Σ_{a,a′} (G_a − G_a′)² = 2K Σ_a G_a² − 2 (Σ_a G_a)².
    Squared cosines: in [0, 4]. Alone it is minimised by a constant embedding, so it is used
    beside a contrastive loss, as in CARE.
    """
    if k < 2 or h.ndim != 2 or h.shape[0] % k or h.shape[0] // k < 2:
        raise ValueError(f"h must be (K*n, d) with K={k} >= 2 labels and n >= 2 images, got "
                         f"{tuple(h.shape)}")
    n = h.shape[0] // k
    e = F.normalize(h.float(), dim=1).view(k, n, -1)                   # (K, n, d)
    gram = e @ e.transpose(1, 2)                                       # (K, n, n)
    pair_sums = 2 * k * (gram ** 2).sum(0) - 2 * gram.sum(0) ** 2      # (n, n)
    off = ~torch.eye(n, dtype=torch.bool, device=h.device)
    return pair_sums[off].sum() / (k * (k - 1) * n * (n - 1))


# The SSL objectives the trainer can use, keyed by ``TrainConfig.ssl``: each maps the
# model's outputs (lists z and p over the two views) and the temperature to a scalar.
SSL_LOSSES = {
    "simclr": lambda z, p, tau: cross_view_infonce(z[0], z[1], tau),
    "ntxent": lambda z, p, tau: nt_xent(z[0], z[1], tau),
    "simsiam": lambda z, p, tau: simsiam_loss(p[0], p[1], z[0], z[1]),
}
