"""Tasks with known mutual information, as first-class objects (cf. cbg-ethz/bmi).

A :class:`Task` bundles a seeded sampler ``(n, seed) -> (x, y)`` with the true I(X;Y) in
nats. Tests and benchmarks draw from them and compare estimators with ``task.truth``.

Constructors (each documents its closed form or how its truth was computed):

- :func:`gaussian`      correlated Gaussians, I = -1/2 sum log(1 - rho^2)
- :func:`student_t`     multivariate Student-t: the Gaussian term plus a closed-form t term
- :func:`monotone`      an invertible per-coordinate map of another task (same truth)
- :func:`gao_mixture`   Gao et al. 2017's discrete-continuous mixture
- :func:`class_mixture` a discrete label and a Gaussian class mixture (Monte-Carlo truth)

New tasks are appended at the end of this file: write a constructor that returns a ``Task``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from scipy.special import digamma, gammaln, logsumexp


@dataclass(frozen=True)
class Task:
    """A joint distribution of (x, y) with known I(X;Y).

    name         : short identifier used in benchmark tables
    truth        : I(X;Y) in nats
    sample       : (n, seed) -> (x (n, dx), y (n, dy)); deterministic for a seed
    x_discrete   : x holds integer labels (pass ``x_discrete=True`` to ``estimate_mi``)
    y_discrete   : likewise for y
    truth_stderr : > 0 when ``truth`` is a Monte-Carlo value
    params       : the constructor's arguments
    """

    name: str
    truth: float
    sample: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    x_discrete: bool = False
    y_discrete: bool = False
    truth_stderr: float = 0.0
    params: dict = field(default_factory=dict)

    def estimate_kwargs(self) -> dict:
        """The discreteness flags to pass to ``estimate_mi`` for this task."""
        return {"x_discrete": self.x_discrete, "y_discrete": self.y_discrete}


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_rho(rho: float) -> float:
    if not -1.0 < float(rho) < 1.0:
        raise ValueError(f"rho must lie in (-1, 1), got {rho!r}")
    return float(rho)


# ============================================================================ Gaussian
def gaussian(d: int = 1, rho: float = 0.5, sparse: bool = False) -> Task:
    """x, y each (n, d) standard normal; coordinate pairs (x_i, y_i) have correlation rho.

    ``sparse=True`` correlates only the first ``ceil(d / 4)`` pairs (the others are
    independent noise), so the information sits in a few of the dimensions.
    I(X;Y) = -1/2 * n_correlated * log(1 - rho^2) nats (Cover & Thomas, eq. 8.56).
    """
    d = _check_positive_int("d", d)
    rho = _check_rho(rho)
    n_corr = math.ceil(d / 4) if sparse else d
    rhos = np.zeros(d)
    rhos[:n_corr] = rho
    truth = -0.5 * n_corr * math.log1p(-rho * rho)

    def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, d))
        e = rng.standard_normal((n, d))
        y = rhos * x + np.sqrt(1.0 - rhos**2) * e
        return x, y

    name = f"gaussian{'-sparse' if sparse else ''}-d{d}-rho{rho:g}"
    return Task(name, truth, sample, params={"d": d, "rho": rho, "sparse": sparse,
                                              "n_correlated": n_corr})


# ========================================================================== Student-t
def _t_entropy_term(dof: float, p: int) -> float:
    """The part of a p-dim Student-t entropy that does not cancel in the MI:
    g(p) = log G(v/2) - log G((v+p)/2) + (v+p)/2 [psi((v+p)/2) - psi(v/2)]."""
    a, b = dof / 2.0, (dof + p) / 2.0
    return float(gammaln(a) - gammaln(b) + b * (digamma(b) - digamma(a)))


def student_t_correction(dof: float, dx: int, dy: int) -> float:
    """I_t - I_Gauss for a multivariate t with ``dof`` degrees of freedom, in nats.

    From the entropy of the multivariate t (Kotz & Nadarajah 2004, eq. 1.15): with
    dispersion Sigma, I(X;Y) = 1/2 log(|S_x||S_y|/|S|) + g(dx) + g(dy) - g(dx+dy); the
    same closed form as Czyz et al. 2023 ("Beyond normal", bmi). Always >= 0.
    """
    return _t_entropy_term(dof, dx) + _t_entropy_term(dof, dy) - _t_entropy_term(dof, dx + dy)


def student_t(d: int = 1, rho: float = 0.5, dof: float = 5.0) -> Task:
    """(x, y) = G / sqrt(W / dof), G a 2d-dim Gaussian with pairs correlated rho (as in
    :func:`gaussian`), W ~ chi^2(dof) shared by all coordinates: a multivariate t.

    I(X;Y) = -d/2 log(1 - rho^2) + :func:`student_t_correction`; the heavy shared tail makes
    x and y dependent even at rho = 0.
    """
    d = _check_positive_int("d", d)
    rho = _check_rho(rho)
    if not dof > 0:
        raise ValueError(f"dof must be > 0, got {dof!r}")
    dof = float(dof)
    truth = -0.5 * d * math.log1p(-rho * rho) + student_t_correction(dof, d, d)

    def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, d))
        y = rho * x + math.sqrt(1.0 - rho * rho) * rng.standard_normal((n, d))
        scale = np.sqrt(dof / rng.chisquare(dof, size=(n, 1)))
        return x * scale, y * scale

    return Task(f"student-t-d{d}-rho{rho:g}-dof{dof:g}", truth, sample,
                params={"d": d, "rho": rho, "dof": dof})


# ================================================================ monotone transforms
MONOTONE_MAPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "cube": lambda a: a**3,
    "asinh": np.arcsinh,
    "sinh": np.sinh,
    "exp": np.exp,
    "logistic": lambda a: 1.0 / (1.0 + np.exp(-a)),
}


def monotone(task: Task, fn: str | Callable[[np.ndarray], np.ndarray] = "cube",
             which: str = "both") -> Task:
    """``task`` with a strictly monotone map applied to every coordinate of x and/or y.

    MI is invariant under invertible maps of each variable, so the truth is unchanged; kNN
    estimators are not invariant (they see a different geometry), which is what this tests.
    ``fn``: a key of ``MONOTONE_MAPS`` or a callable; ``which``: "x", "y" or "both".
    Continuous variables only.
    """
    if which not in ("x", "y", "both"):
        raise ValueError(f"which must be 'x', 'y' or 'both', got {which!r}")
    if isinstance(fn, str):
        if fn not in MONOTONE_MAPS:
            raise ValueError(f"unknown monotone map {fn!r}; choose one of "
                             f"{sorted(MONOTONE_MAPS)} or pass a callable")
        fn_name, f = fn, MONOTONE_MAPS[fn]
    else:
        fn_name, f = getattr(fn, "__name__", "fn"), fn
    if (which in ("x", "both") and task.x_discrete) or (which in ("y", "both")
                                                        and task.y_discrete):
        raise ValueError(f"monotone maps apply to continuous variables; {task.name} has a "
                         f"discrete {'x' if task.x_discrete else 'y'}")

    def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = task.sample(n, seed)
        if which in ("x", "both"):
            x = f(x)
        if which in ("y", "both"):
            y = f(y)
        return x, y

    return replace(task, name=f"{task.name}-{fn_name}{'' if which == 'both' else '-' + which}",
                   sample=sample,
                   params={**task.params, "base": task.name, "map": fn_name, "which": which})


# ========================================================================= Gao mixture
def gao_mixture(m: int = 5) -> Task:
    """Gao, Kannan, Oh, Viswanath 2017 (sec. 5): X uniform on {0, ..., m-1} (integer labels,
    n/m tied rows each), Y | X ~ Uniform(X, X + 2).

    I(X;Y) = ln m - (m - 1)/m * ln 2 nats: neighbouring X values share half of Y's support.
    """
    m = _check_positive_int("m", m, minimum=2)
    truth = math.log(m) - (m - 1) / m * math.log(2.0)

    def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, m, size=n)
        y = x + 2.0 * rng.random(n)
        return x[:, None], y[:, None]

    return Task(f"gao-mixture-m{m}", truth, sample, x_discrete=True, params={"m": m})


# ======================================================================= class mixture
def _class_means(n_classes: int, d: int, separation: float, seed: int) -> np.ndarray:
    """(n_classes, d) means with every pairwise distance equal to ``separation`` when
    d >= n_classes (orthonormal rows scaled by separation / sqrt 2, in seeded random
    directions); for d < n_classes, seeded Gaussian means with the same expected spread."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((d, n_classes))
    if d >= n_classes:
        q, _ = np.linalg.qr(g)  # (d, n_classes), orthonormal columns
        return (separation / math.sqrt(2.0)) * q.T
    return (separation / math.sqrt(2.0 * d)) * g.T


@functools.lru_cache(maxsize=64)
def _class_mixture_truth(n_classes: int, d: int, separation: float, sigma: float,
                         means_seed: int, n_mc: int, mc_seed: int) -> tuple[float, float]:
    """Monte-Carlo I(C;Z) = E[log p(z|c) - log mean_c' p(z|c')] and its standard error."""
    mu = _class_means(n_classes, d, separation, means_seed)
    if d >= n_classes:  # the means span n_classes dims; the rest is independent noise
        basis, _ = np.linalg.qr(mu.T)  # (d, r)
        mu = mu @ basis  # (n_classes, r), distances preserved
    rng = np.random.default_rng(mc_seed)
    vals = []
    for start in range(0, n_mc, 100_000):  # chunks keep memory at ~100 MB
        m = min(100_000, n_mc - start)
        c = rng.integers(0, n_classes, size=m)
        z = mu[c] + sigma * rng.standard_normal((m, mu.shape[1]))
        sq = ((z[:, None, :] - mu[None, :, :]) ** 2).sum(-1)  # (m, n_classes)
        loglik = -sq / (2.0 * sigma**2)
        vals.append(loglik[np.arange(m), c] - (logsumexp(loglik, axis=1) - math.log(n_classes)))
    v = np.concatenate(vals)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))


def class_mixture(n_classes: int = 10, d: int = 128, separation: float = 1.98,
                  sigma: float = 1.0, means_seed: int = 0, n_mc: int = 1_000_000) -> Task:
    """C uniform on {0..n_classes-1} (x, integer labels), Z | C ~ N(mu_C, sigma^2 I_d) (y).

    With d >= n_classes the means are equidistant (``separation`` apart) in a seeded random
    n_classes-dim subspace, so I(C;Z) depends on n_classes and separation / sigma only;
    the default separation 1.98 gives 0.774 nats for 10 classes (the issue's 128-d
    example: 0.774), the other d - n_classes dimensions being pure noise. The truth is a
    Monte-Carlo average over ``n_mc`` draws with a fixed seed (cached); its standard error
    is ``truth_stderr``. H(C) = ln n_classes bounds it.
    """
    n_classes = _check_positive_int("n_classes", n_classes, minimum=2)
    d = _check_positive_int("d", d)
    if not separation > 0 or not sigma > 0:
        raise ValueError(f"separation and sigma must be > 0, got {separation!r}, {sigma!r}")
    truth, truth_se = _class_mixture_truth(n_classes, d, float(separation), float(sigma),
                                           int(means_seed), int(n_mc), 12345)
    mu = _class_means(n_classes, d, float(separation), int(means_seed))

    def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        c = rng.integers(0, n_classes, size=n)
        z = mu[c] + sigma * rng.standard_normal((n, d))
        return c, z

    return Task(f"class-mixture-k{n_classes}-d{d}-sep{separation:g}", truth, sample,
                x_discrete=True, truth_stderr=truth_se,
                params={"n_classes": n_classes, "d": d, "separation": separation,
                        "sigma": sigma, "means_seed": means_seed, "n_mc": n_mc,
                        "entropy_label": math.log(n_classes)})


# ======================================================== tasks appended by other parts
# --------------------------------------------- variational estimators (issue 3): E-SSL-like
def rotation_like(n_labels: int = 4, d: int = 32, separation: float = 2.0,
                  content: float = 1.0, noise: float = 0.5, independent: bool = False,
                  means_seed: int = 0, n_mc: int = 400_000) -> Task:
    """Features of transformed images, as an E-SSL backbone would give them.

    Rows come in blocks of ``n_labels``: block i holds the n_labels transformed copies of one
    "image" (A = 0..n_labels-1 in a random order within the block, so A is uniform), with
    Z = u_i + mu_A + noise e, u_i ~ N(0, content^2 I_d) the image's content (shared by its
    copies), e ~ N(0, noise^2 I_d), and mu_a equidistant means ``separation`` apart. Pass
    ``groups = np.arange(n) // n_labels`` to keep the copies of an image together.

    Per row, Z | A ~ N(mu_A, (content^2 + noise^2) I), so I(A;Z) is the class-mixture value
    at sigma = sqrt(content^2 + noise^2) (Monte-Carlo truth). ``independent=True`` sets
    mu = 0: then I(A;Z) = 0 exactly, while rows of one image stay correlated.
    x = A (integer labels), y = Z (n, d).
    """
    n_labels = _check_positive_int("n_labels", n_labels, minimum=2)
    d = _check_positive_int("d", d)
    if not separation > 0 or not content >= 0 or not noise > 0:
        raise ValueError(f"need separation > 0, content >= 0, noise > 0; got {separation!r}, "
                         f"{content!r}, {noise!r}")
    sigma = math.sqrt(content**2 + noise**2)
    if independent:
        mu, truth, truth_se = np.zeros((n_labels, d)), 0.0, 0.0
    else:
        mu = _class_means(n_labels, d, float(separation), int(means_seed))
        truth, truth_se = _class_mixture_truth(n_labels, d, float(separation), sigma,
                                               int(means_seed), int(n_mc), 12345)

    def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        n_img = -(-n // n_labels)
        a = rng.permuted(np.tile(np.arange(n_labels), (n_img, 1)), axis=1).reshape(-1)[:n]
        u = content * rng.standard_normal((n_img, d))
        z = np.repeat(u, n_labels, axis=0)[:n] + mu[a] + noise * rng.standard_normal((n, d))
        return a, z

    name = f"rotation-like-k{n_labels}-d{d}" + ("-independent" if independent else "")
    return Task(name, truth, sample, x_discrete=True, truth_stderr=truth_se,
                params={"n_labels": n_labels, "d": d, "separation": separation,
                        "content": content, "noise": noise, "independent": independent,
                        "means_seed": means_seed, "group_size": n_labels,
                        "entropy_label": math.log(n_labels)})


@dataclass(frozen=True)
class CondTask:
    """A joint distribution of (x, y, cond) with known I(X;Y|cond) (see :class:`Task`).

    sample : (n, seed) -> (x, y, cond); ``known`` holds other exact/MC values by name."""

    name: str
    truth: float
    sample: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
    x_discrete: bool = False
    y_discrete: bool = False
    cond_discrete: bool = False
    truth_stderr: float = 0.0
    known: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def estimate_kwargs(self) -> dict:
        return {"x_discrete": self.x_discrete, "y_discrete": self.y_discrete,
                "cond_discrete": self.cond_discrete}


@functools.lru_cache(maxsize=32)
def _collider_truth(kind: str, n_a: int, n_c: int, d: int, separation: float, sigma: float,
                    means_seed: int, n_mc: int, mc_seed: int) -> tuple[float, float]:
    """Monte-Carlo I(A;C|Z) = E[log p(a|z,c) - log p(a|z)] with exact posteriors over the
    n_a * n_c Gaussian components, and its standard error."""
    mu = _collider_means(kind, n_a, n_c, d, separation, means_seed).reshape(n_a * n_c, d)
    rng = np.random.default_rng(mc_seed)
    vals = []
    for start in range(0, n_mc, 50_000):
        m = min(50_000, n_mc - start)
        a, c = rng.integers(0, n_a, m), rng.integers(0, n_c, m)
        z = mu[a * n_c + c] + sigma * rng.standard_normal((m, d))
        sq = (z * z).sum(1, keepdims=True) - 2 * z @ mu.T + (mu * mu).sum(1)
        ll = (-sq / (2 * sigma**2)).reshape(m, n_a, n_c)  # log p(z | a', c') + const
        rows = np.arange(m)
        log_p_a_zc = ll[rows, :, c][rows, a] - logsumexp(ll[rows, :, c], axis=1)
        lse_c = logsumexp(ll, axis=2)  # (m, n_a)
        log_p_a_z = lse_c[rows, a] - logsumexp(lse_c, axis=1)
        vals.append(log_p_a_zc - log_p_a_z)
    v = np.concatenate(vals)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))


def _collider_means(kind: str, n_a: int, n_c: int, d: int, separation: float,
                    seed: int) -> np.ndarray:
    """(n_a, n_c, d) component means of :func:`collider`."""
    if kind == "sum":
        m = _class_means(n_a, d, separation, seed)
        return np.stack([[m[(a + c) % n_a] for c in range(n_c)] for a in range(n_a)])
    if kind == "separate":
        half = d // 2
        ma = _class_means(n_a, half, separation, seed)
        mc = _class_means(n_c, d - half, separation, seed + 1)
        return np.concatenate([np.repeat(ma[:, None], n_c, 1), np.repeat(mc[None], n_a, 0)],
                              axis=2)
    if kind == "random":
        g = np.random.default_rng(seed).standard_normal((n_a, n_c, d))
        return separation / math.sqrt(2.0 * d) * g
    raise ValueError(f"kind must be 'sum', 'separate' or 'random', got {kind!r}")


def collider(kind: str = "sum", n_a: int = 4, n_c: int = 4, d: int = 16,
             separation: float = 2.5, sigma: float = 1.0, means_seed: int = 0,
             n_mc: int = 400_000) -> CondTask:
    """A synthetic collider: A and C independent and uniform, Z = mu_{A,C} + sigma e.

    x = A, y = C (integer labels), cond = Z (n, d); truth = I(A;C|Z) (explaining away).
    - ``"sum"`` (n_a = n_c = K): mu_{a,c} = m_{(a+c) mod K}. Z alone says nothing about A
      (I(A;Z) = 0), with C it reveals A: I(A;C|Z) = I(S;Z), S = (A+C) mod K, a K-class
      mixture value (Monte-Carlo truth).
    - ``"separate"``: Z = [m_A, m'_C] + noise in two halves: Z carries A and C separately,
      (A, Z_1) and (C, Z_2) are independent, so I(A;C|Z) = 0 exactly.
    - ``"random"``: a seeded random mean per (a, c) pair (Monte-Carlo truth).
    ``known`` has "I(A;C)" = 0 and, for "sum", "I(A;Z)" = "I(C;Z)" = 0.
    """
    n_a = _check_positive_int("n_a", n_a, minimum=2)
    n_c = _check_positive_int("n_c", n_c, minimum=2)
    d = _check_positive_int("d", d, minimum=2)
    if kind == "sum" and n_a != n_c:
        raise ValueError(f"kind='sum' needs n_a == n_c, got {n_a} and {n_c}")
    if not separation > 0 or not sigma > 0:
        raise ValueError(f"separation and sigma must be > 0, got {separation!r}, {sigma!r}")
    mu = _collider_means(kind, n_a, n_c, d, float(separation), int(means_seed))
    if kind == "separate":
        truth, truth_se = 0.0, 0.0
    else:
        truth, truth_se = _collider_truth(kind, n_a, n_c, d, float(separation), float(sigma),
                                          int(means_seed), int(n_mc), 12345)
    known = {"I(A;C)": 0.0}
    if kind == "sum":
        known.update({"I(A;Z)": 0.0, "I(C;Z)": 0.0})

    def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        a, c = rng.integers(0, n_a, n), rng.integers(0, n_c, n)
        z = mu[a, c] + sigma * rng.standard_normal((n, d))
        return a, c, z

    return CondTask(f"collider-{kind}-a{n_a}-c{n_c}-d{d}", truth, sample, x_discrete=True,
                    y_discrete=True, truth_stderr=truth_se, known=known,
                    params={"kind": kind, "n_a": n_a, "n_c": n_c, "d": d,
                            "separation": separation, "sigma": sigma,
                            "means_seed": means_seed})


# ------------------------------------------- auto selection (issue 8): spirals, mixtures, suite
def spiral(task: Task, speed: float = 0.5, which: str = "x") -> Task:
    """``task`` with the spiral diffeomorphism of Czyz et al. 2023 ("Beyond normal", bmi)
    applied to x and/or y: v -> R(speed * |v|^2) v, R(theta) the rotation by theta in the
    plane of the first two coordinates. The map is invertible (it keeps |v|, so the angle
    can be undone), hence the truth is unchanged; it curls a linear dependence into a
    spiral that kNN and linear critics see very differently. Needs d >= 2 continuous.
    """
    if which not in ("x", "y", "both"):
        raise ValueError(f"which must be 'x', 'y' or 'both', got {which!r}")
    if not math.isfinite(speed):
        raise ValueError(f"speed must be finite, got {speed!r}")

    def curl(v: np.ndarray) -> np.ndarray:
        if v.shape[1] < 2:
            raise ValueError(f"spiral needs >= 2 dimensions, got {v.shape[1]}")
        theta = speed * (v * v).sum(1)
        c, s = np.cos(theta), np.sin(theta)
        out = v.copy()
        out[:, 0], out[:, 1] = c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]
        return out

    if (which in ("x", "both") and task.x_discrete) or (which in ("y", "both")
                                                        and task.y_discrete):
        raise ValueError(f"spiral applies to continuous variables; {task.name} has a discrete one")

    def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = task.sample(n, seed)
        return (curl(x) if which in ("x", "both") else x,
                curl(y) if which in ("y", "both") else y)

    return replace(task, name=f"{task.name}-spiral{speed:g}{'' if which == 'both' else '-' + which}",
                   sample=sample, params={**task.params, "base": task.name, "spiral": speed,
                                          "which": which})


def _mixture_logpdf(v: np.ndarray, weights: np.ndarray, means: np.ndarray,
                    scales: np.ndarray) -> np.ndarray:
    """(m,) log density of the isotropic-per-component Gaussian mixture
    sum_k w_k N(means[k], diag(scales[k]^2)) at the rows of v (m, d)."""
    comp = []
    for w, mu, sc in zip(weights, means, scales):
        z = (v - mu) / sc
        comp.append(math.log(w) - 0.5 * (z * z).sum(1) - np.log(sc).sum()
                    - 0.5 * v.shape[1] * math.log(2 * math.pi))
    return logsumexp(np.stack(comp, 1), axis=1)


@functools.lru_cache(maxsize=32)
def _mixture_truth(key: tuple, n_mc: int, mc_seed: int) -> tuple[float, float]:
    """Monte-Carlo I = E[log p(x,y) - log p(x) - log p(y)] of :func:`gaussian_mixture`."""
    weights, means, scales, dx = (np.array(key[0]), np.array(key[1]), np.array(key[2]),
                                  key[3])
    rng = np.random.default_rng(mc_seed)
    vals = []
    for start in range(0, n_mc, 100_000):
        m = min(100_000, n_mc - start)
        k = rng.choice(len(weights), size=m, p=weights)
        v = means[k] + scales[k] * rng.standard_normal((m, means.shape[1]))
        vals.append(_mixture_logpdf(v, weights, means, scales)
                    - _mixture_logpdf(v[:, :dx], weights, means[:, :dx], scales[:, :dx])
                    - _mixture_logpdf(v[:, dx:], weights, means[:, dx:], scales[:, dx:]))
    w = np.concatenate(vals)
    return float(w.mean()), float(w.std(ddof=1) / math.sqrt(len(w)))


def gaussian_mixture(d: int = 1, n_components: int = 2, separation: float = 3.0,
                     spread: float = 0.5, means_seed: int = 0,
                     n_mc: int = 400_000) -> Task:
    """(x, y) in R^(d+d) from a mixture of ``n_components`` equally weighted Gaussians with
    seeded random means (N(0, separation^2 / 2) per coordinate, the same component for x
    and y, so the cluster links them) and per-coordinate scales drawn from
    exp(spread * N(0, 1)) (unequal, axis-aligned clusters). Multi-modal, non-elliptical.

    The truth E[log p(x,y) - log p(x) - log p(y)] is a Monte-Carlo average over ``n_mc``
    draws with exact mixture densities (fixed seed, cached); its standard error is
    ``truth_stderr``. I <= H(component) = log n_components, plus nothing: given the
    component, x and y are independent.
    """
    d = _check_positive_int("d", d)
    n_components = _check_positive_int("n_components", n_components, minimum=2)
    if not separation > 0 or not spread >= 0:
        raise ValueError(f"need separation > 0 and spread >= 0, got {separation!r}, {spread!r}")
    rng = np.random.default_rng(means_seed)
    means = separation / math.sqrt(2.0) * rng.standard_normal((n_components, 2 * d))
    scales = np.exp(spread * rng.standard_normal((n_components, 2 * d)))
    weights = np.full(n_components, 1.0 / n_components)
    key = (tuple(weights), tuple(map(tuple, means)), tuple(map(tuple, scales)), d)
    truth, truth_se = _mixture_truth(key, int(n_mc), 12345)

    def sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        r = np.random.default_rng(seed)
        k = r.integers(0, n_components, size=n)
        v = means[k] + scales[k] * r.standard_normal((n, 2 * d))
        return v[:, :d], v[:, d:]

    return Task(f"mixture-d{d}-k{n_components}-sep{separation:g}", truth, sample,
                truth_stderr=truth_se,
                params={"d": d, "n_components": n_components, "separation": separation,
                        "spread": spread, "means_seed": means_seed, "n_mc": n_mc})


def continuous_suite() -> list[Task]:
    """Known-MI tasks of two continuous variables, 1x1 to 50x50 dimensions, that justify
    ``method="auto"``'s choice between kNN and a critic bound (``estimators/auto.py``):
    smooth low-dimensional, monotone maps, spirals, multivariate heavy tails (Student-t),
    sparse and dense high-dimensional Gaussians, and multi-modal mixtures. Truths in closed
    form, except the mixtures (Monte Carlo, ``truth_stderr``)."""
    return [
        gaussian(1, 0.5),
        monotone(gaussian(1, 0.9), "cube"),
        student_t(1, 0.5, 3.0),
        gaussian_mixture(1, 4, 4.0),
        gaussian(2, 0.6),
        spiral(gaussian(2, 0.8), 0.5),
        monotone(gaussian(3, 0.6), "exp"),
        student_t(3, 0.5, 3.0),
        gaussian(5, 0.5),
        spiral(gaussian(5, 0.6), 0.2),
        gaussian_mixture(5, 4, 3.0),
        student_t(5, 0.3, 4.0),
        gaussian(10, 0.3),
        student_t(10, 0.2, 5.0),
        gaussian(25, 0.5, sparse=True),
        monotone(gaussian(25, 0.5, sparse=True), "cube"),
        student_t(25, 0.0, 5.0),
        gaussian(50, 0.5, sparse=True),
        gaussian(50, 0.15),
    ]
