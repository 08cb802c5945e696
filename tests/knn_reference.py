"""Slow, loop-based reference implementations of the kNN estimators, written from the papers'
formulas with nothing shared with ``essl_info`` (numpy + scipy only). One point at a time,
all distances in float64. Use with a few hundred points.

Labels (discrete variables) are (n,) integer arrays; continuous variables (n, d) arrays.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln


def cheb(a: np.ndarray, i: int) -> np.ndarray:
    """max-norm distances from row i of a (n, d) to every row."""
    return np.abs(a - a[i]).max(axis=1)


def eucl(a: np.ndarray, i: int) -> np.ndarray:
    return np.sqrt(((a - a[i]) ** 2).sum(axis=1))


def ksg1(x, y, k=3, dist=cheb):
    """Kraskov et al. 2004, eq. 8: psi(k) + psi(N) - <psi(n_x + 1) + psi(n_y + 1)>."""
    n = len(x)
    total = 0.0
    for i in range(n):
        dx, dy = dist(x, i), dist(y, i)
        dz = np.maximum(dx, dy)
        dz[i] = np.inf
        eps = np.sort(dz)[k - 1]
        nx = np.sum(dx < eps) - 1  # minus the point itself
        ny = np.sum(dy < eps) - 1
        total += digamma(nx + 1) + digamma(ny + 1)
    return digamma(k) + digamma(n) - total / n


def ksg2(x, y, k=3):
    """Kraskov et al. 2004, eq. 9: psi(k) - 1/k + psi(N) - <psi(n_x) + psi(n_y)>."""
    n = len(x)
    total = 0.0
    for i in range(n):
        dx, dy = cheb(x, i), cheb(y, i)
        dz = np.maximum(dx, dy)
        dz[i] = np.inf
        nn = np.argsort(dz, kind="stable")[:k]
        ex, ey = dx[nn].max(), dy[nn].max()
        nx = np.sum(dx <= ex) - 1
        ny = np.sum(dy <= ey) - 1
        total += digamma(nx) + digamma(ny)
    return digamma(k) - 1.0 / k + digamma(n) - total / n


def frenzel_pompe(x, y, z, k=3):
    """Frenzel & Pompe 2007: psi(k) - <psi(n_xz + 1) + psi(n_yz + 1) - psi(n_z + 1)>."""
    n = len(x)
    total = 0.0
    for i in range(n):
        dx, dy, dz = cheb(x, i), cheb(y, i), cheb(z, i)
        dj = np.maximum(np.maximum(dx, dy), dz)
        dj[i] = np.inf
        eps = np.sort(dj)[k - 1]
        nxz = np.sum(np.maximum(dx, dz) < eps) - 1
        nyz = np.sum(np.maximum(dy, dz) < eps) - 1
        nz = np.sum(dz < eps) - 1
        total += digamma(nxz + 1) + digamma(nyz + 1) - digamma(nz + 1)
    return digamma(k) - total / n


def ross(labels, y, k=3, dist=cheb):
    """Ross 2014: psi(N) - <psi(N_x)> + psi(k) - <psi(m)>, m = points within the distance
    of the k-th same-label neighbour, that neighbour included (the point itself not)."""
    n = len(labels)
    total = 0.0
    for i in range(n):
        d = dist(y, i)
        same = labels == labels[i]
        ds = d[same & (np.arange(n) != i)]
        r = np.sort(ds)[k - 1]
        m = np.sum(d <= r) - 1
        total += digamma(same.sum()) + digamma(m)
    return digamma(n) + digamma(k) - total / n


def labels_given_continuous(a, c, z, k=3):
    """I(A;C|Z) for labels a, c and continuous z: Frenzel-Pompe with the 0/inf metric.
    eps = z-distance to the k-th other point with the same (a, c); counts strictly within
    eps of points with the same a, the same c, and all points."""
    n = len(a)
    total = 0.0
    for i in range(n):
        d = cheb(z, i)
        others = np.arange(n) != i
        same_ac = (a == a[i]) & (c == c[i]) & others
        eps = np.sort(d[same_ac])[k - 1]
        n_az = np.sum((d < eps) & (a == a[i]) & others)
        n_cz = np.sum((d < eps) & (c == c[i]) & others)
        n_z = np.sum((d < eps) & others)
        total += digamma(n_az + 1) + digamma(n_cz + 1) - digamma(n_z + 1)
    return digamma(k) - total / n


def gao_mixed(x, y, k=3):
    """Gao, Kannan, Oh, Viswanath 2017 (their reference code): per point
    psi(k~) + log N - psi(n_x) - psi(n_y), counts including the point itself, within
    rho (strictly) or at distance 0 when rho = 0, k~ = number of points at joint distance 0
    (itself included) when rho = 0."""
    n = len(x)
    total = 0.0
    for i in range(n):
        dx, dy = cheb(x, i), cheb(y, i)
        dj = np.maximum(dx, dy)
        rho = np.sort(np.delete(dj, i))[k - 1]
        if rho == 0:
            kp = np.sum(dj == 0)
            nx, ny = np.sum(dx == 0), np.sum(dy == 0)
        else:
            kp = k
            nx, ny = np.sum(dx < rho), np.sum(dy < rho)
        total += digamma(kp) + np.log(n) - digamma(nx) - digamma(ny)
    return total / n


def kozachenko_leonenko(x, k=3, norm="max"):
    """H = psi(N) - psi(k) + log V_d + d <log eps>, V_d the unit ball volume of the norm."""
    n, d = x.shape
    dist = cheb if norm == "max" else eucl
    logs = 0.0
    for i in range(n):
        di = np.delete(dist(x, i), i)
        logs += np.log(np.sort(di)[k - 1])
    log_vol = d * np.log(2.0) if norm == "max" else d / 2 * np.log(np.pi) - gammaln(d / 2 + 1)
    return digamma(n) - digamma(k) + log_vol + d * logs / n
