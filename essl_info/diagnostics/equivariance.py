"""Geometric equivariance of a representation: does a transformation act on the embedding
as a rotation? (DESIGN §11; Gupta et al. 2023/2024, CARE, who measure it this way.)

For a transformation with labels 0..K−1, z⁰ᵢ = f(xᵢ) and zᵏᵢ = f(T_k xᵢ), all rows
L2-normalised (the unit-sphere embedding of contrastive learning):

- **Wahba error** of label k: ``min_{R ∈ SO(d)} (1/n) Σᵢ ‖zᵏᵢ − R z⁰ᵢ‖²``, solved in closed
  form (Wahba's problem; Kabsch / Markley): with M = Σᵢ zᵏᵢ z⁰ᵢᵀ = U S Vᵀ, the optimum is
  U diag(1, …, 1, det(UVᵀ)) Vᵀ and the minimum (Σ‖zᵏ‖² + Σ‖z⁰‖² − 2 tr_max)/n with tr_max
  = Σ singular values, the last one signed by det(UVᵀ). Reported: the mean over k = 1..K−1.
  In [0, 4] (squared distance between unit vectors); 0 iff each transformation is a rotation
  of the sampled embeddings. Fitted in-sample: with d ≥ n an orthogonal map fits any two
  point sets with equal Gram matrices, so the error then measures exactly CARE's loss,
  the mismatch of inner products. (For d > n, SO(d) and O(d) give the same minimum: the
  dimensions outside the span of the n points absorb the sign, and tr_max, the nuclear
  norm of M, is computed from n × n Gram matrices.)
- **γ_f**, relative rotational equivariance (our normalisation of the same residual, made
  explicit here): the Wahba error divided by the mean squared distance between the
  embeddings of two different images, (1/(n(n−1))) Σ_{i≠j} ‖z⁰ᵢ − z⁰ⱼ‖². 0 for an
  invariant or exactly rotation-equivariant f; about 1 when a transformation moves an
  embedding as far as a change of image does.

Both are pure functions of arrays; ``equivariance_estimates`` turns ``Features`` into
``Estimate`` rows with a subsampling standard error over images (the fit is closed-form:
no seed variance).
"""

from __future__ import annotations

import numpy as np

from ..types import Estimate

QUANTITIES = ("Wahba", "gamma_f")


def _unit(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("embeddings with zero norm cannot be put on the unit sphere")
    return z / norm


def _max_trace(z0: np.ndarray, zk: np.ndarray) -> float:
    """max over R in SO(d) of Σᵢ zᵏᵢᵀ R z⁰ᵢ, for z0, zk (n, d)."""
    n, d = z0.shape
    if d > n:   # nuclear norm of zkᵀ z0 from n x n Gram matrices (see module doc)
        k0, kk = z0 @ z0.T, zk @ zk.T
        w, v = np.linalg.eigh(k0)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T                 # K0^(1/2)
        ev = np.linalg.eigvalsh(root @ kk @ root)
        return float(np.sqrt(np.clip(ev, 0, None)).sum())
    u, s, vt = np.linalg.svd(zk.T @ z0)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    return float(s[:-1].sum() + sign * s[-1])


def wahba_error(z0, zk) -> float:
    """Wahba error (1/n) min_R Σᵢ ‖zkᵢ − R z0ᵢ‖² of one label, rows L2-normalised here.
    z0, zk: (n, d), row i of both from the same image. In [0, 4]."""
    z0, zk = _unit(z0), _unit(zk)
    if z0.shape != zk.shape or z0.ndim != 2 or len(z0) < 2:
        raise ValueError(f"z0 and zk must both be (n, d) with n >= 2, got {z0.shape} and "
                         f"{zk.shape}")
    return float((2 * len(z0) - 2 * _max_trace(z0, zk)) / len(z0))


def image_spread(z0) -> float:
    """(1/(n(n−1))) Σ_{i≠j} ‖z0ᵢ − z0ⱼ‖² of L2-normalised rows: 2 − 2·mean off-diagonal
    cosine."""
    z0 = _unit(z0)
    n = len(z0)
    g = z0 @ z0.T
    return float(2 - 2 * (g.sum() - np.trace(g)) / (n * (n - 1)))


def equivariance_metrics(z: np.ndarray) -> dict[str, float]:
    """Both metrics of stacked embeddings z (K, n, d) (label k, image i): the Wahba error
    averaged over labels 1..K−1, and γ_f = that / ``image_spread(z[0])``."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 3 or z.shape[0] < 2:
        raise ValueError(f"z must be (K, n, d) with K >= 2, got {z.shape}")
    wahba = float(np.mean([wahba_error(z[0], z[k]) for k in range(1, z.shape[0])]))
    spread = image_spread(z[0])
    if spread <= 1e-12:
        raise ValueError("the embeddings of different images coincide (collapsed): gamma_f "
                         "is undefined")
    return {"Wahba": wahba, "gamma_f": wahba / spread}


def equivariance_estimates(feats, *, max_images: int = 256, subsamples: int = 20,
                           seed: int = 0) -> list[Estimate]:
    """``Estimate`` rows (quantities ``"Wahba"`` and ``"gamma_f"``) of ``Features``.

    At most ``max_images`` images (a seeded subset, so the d > n path stays an n × n
    problem); images with a zero embedding under some label are left out (counted in
    ``diagnostics``). The standard error is the library's rule for statistics of images,
    ``resampling.subsample_stderr`` over images (disjoint blocks without replacement, delete-d
    jackknife): a bootstrap with replacement would duplicate points, which an in-sample
    rotation fits more easily. The fit is closed-form, so no seed variance enters. Being an
    in-sample fit, the error falls as d/n grows (with d ≥ n it measures the mismatch of
    inner products only): compare values at equal numbers of images.
    """
    from ..estimators.resampling import subsample_stderr

    rng = np.random.default_rng(seed)
    k = feats.n_labels
    ids = np.unique(feats.image_id)
    zero = np.unique(feats.image_id[np.linalg.norm(feats.z, axis=1) == 0])
    ids = np.setdiff1d(ids, zero)    # a zero embedding has no direction: left out, counted
    if len(ids) > max_images:
        ids = np.sort(rng.choice(ids, size=max_images, replace=False))
    if len(ids) < 4:
        raise ValueError(f"equivariance metrics need >= 4 images with non-zero embeddings "
                         f"under every label, got {len(ids)}")
    pos = {int(i): j for j, i in enumerate(ids)}
    keep = np.isin(feats.image_id, ids)
    z = np.zeros((k, len(ids), feats.z.shape[1]))
    z[feats.a[keep], [pos[int(i)] for i in feats.image_id[keep]]] = feats.z[keep]
    point = equivariance_metrics(z)
    out = []
    for q in QUANTITIES:
        sub = subsample_stderr(lambda rows: equivariance_metrics(z[:, rows])[q], len(ids),
                               subsamples=subsamples, min_size=10, seed=seed)
        out.append(Estimate(
            point[q], stderr=sub.stderr, method="wahba-svd", n=len(ids), quantity=q,
            params={"transformation": feats.transformation, "layer": feats.layer,
                    "units": "squared distance on the unit sphere" if q == "Wahba"
                    else "ratio", **sub.params(), "seed": seed},
            diagnostics={"labels": k, "max_images": max_images,
                         "zero_embedding_images": int(len(zero)),
                         **({"stderr_missing": sub.reason} if sub.stderr is None else {})}))
    return out


__all__ = ["QUANTITIES", "equivariance_estimates", "equivariance_metrics", "image_spread",
           "wahba_error"]
