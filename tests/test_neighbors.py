"""Neighbour statistics: every backend gives the same radii and counts, equal to a direct
float64 numpy computation of the definitions; float32 rounding never changes a count."""

import numpy as np
import pytest

from essl_info.estimators.neighbors import Block, float32_error_bound, neighbor_stats

BACKENDS = ["kdtree", "numba", "torch"]


def direct(blocks, k, joint, subspaces, radius_from=None, count="strict"):
    """The definitions, in float64 numpy, one point at a time."""
    n = len(blocks[0].values)
    radius_from = radius_from or [None] * len(subspaces)

    def space_dist(space, i):
        d = np.zeros(n)
        ok = np.arange(n) != i
        for b in space:
            blk = blocks[b]
            if blk.discrete:
                ok &= blk.values == blk.values[i]
            elif blk.norm == "max":
                d = np.maximum(d, np.abs(blk.values - blk.values[i]).max(axis=1))
            else:
                d = np.maximum(d, np.sqrt(((blk.values - blk.values[i]) ** 2).sum(axis=1)))
        return d, ok

    kv = np.broadcast_to(k, (n,))
    eps, nzero = np.empty(n), np.empty(n, int)
    kmax = np.zeros((len(blocks), n))
    counts = np.zeros((len(subspaces), n), int)
    for i in range(n):
        dj, okj = space_dist(joint, i)
        idx = np.flatnonzero(okj)
        order = idx[np.argsort(dj[idx], kind="stable")]
        eps[i] = dj[order[kv[i] - 1]]
        nzero[i] = np.sum(dj[idx] == 0)
        for b, blk in enumerate(blocks):
            if not blk.discrete:
                kmax[b, i] = space_dist([b], i)[0][order[: kv[i]]].max()
        for s, sp in enumerate(subspaces):
            r = eps[i] if radius_from[s] is None else kmax[radius_from[s], i]
            d, ok = space_dist(sp, i)
            strict = count == "strict" or (count == "gao" and r > 0)
            counts[s, i] = np.sum(ok & ((d < r) if strict else (d <= r)))
    return eps, counts, kmax, nzero


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    y = x[:, :1] + 0.5 * rng.standard_normal((n, 1))
    z = rng.standard_normal((n, 1))
    lab = rng.integers(0, 3, n)
    lab2 = rng.integers(0, 2, n)
    return x, y, z, lab, lab2


def _specs():
    x, y, z, lab, lab2 = _data()
    ties_x = np.round(x[:, :1] * 2) / 2  # atoms: many exact ties
    ties_y = np.round(y * 2) / 2
    return {
        "ksg": dict(blocks=[Block(x), Block(y)], joint=[0, 1], subspaces=[[0], [1]]),
        "fp": dict(blocks=[Block(x), Block(y), Block(z)], joint=[0, 1, 2],
                   subspaces=[[0, 2], [1, 2], [2]]),
        "ross": dict(blocks=[Block(lab, True), Block(x)], joint=[0, 1],
                     subspaces=[[0], [1]]),
        "labels-given-z": dict(blocks=[Block(lab, True), Block(lab2, True), Block(z)],
                               joint=[0, 1, 2], subspaces=[[0, 2], [1, 2], [2]]),
        "ksg2": dict(blocks=[Block(x), Block(y)], joint=[0, 1], subspaces=[[0], [1]],
                     radius_from=[0, 1], count="closed"),
        "gao-ties": dict(blocks=[Block(ties_x), Block(ties_y)], joint=[0, 1],
                         subspaces=[[0], [1]], count="gao"),
        "ksg2-ties": dict(blocks=[Block(ties_x), Block(ties_y)], joint=[0, 1],
                          subspaces=[[0], [1]], radius_from=[0, 1], count="closed"),
        "euclidean": dict(blocks=[Block(x, norm="euclidean"), Block(y, norm="euclidean")],
                          joint=[0, 1], subspaces=[[0], [1]]),
        # 6 joint dims: the kd-tree's point-by-point leaf scan (the vectorised one takes <= 4)
        "wide": dict(blocks=[Block(np.hstack([x, z])), Block(np.hstack([y, x]))],
                     joint=[0, 1], subspaces=[[0], [1]]),
    }


@pytest.mark.parametrize("trees", [False, True], ids=["default", "no-strata-brute-force"])
@pytest.mark.parametrize("name", list(_specs()))
def test_backends_equal_the_definitions(name, trees, monkeypatch):
    """every backend; for the kd-tree, also with the brute force within small strata
    (``neighbors_strata``, which takes these 300-row cases) turned off"""
    from essl_info.estimators import neighbors_strata

    if trees:
        monkeypatch.setattr(neighbors_strata, "BRUTE_MAX_STRATUM", 0)
    spec = _specs()[name]
    eps, counts, kmax, nzero = direct(k=3, **spec)
    for backend in BACKENDS:
        if backend == "kdtree" and name == "euclidean":
            with pytest.raises(ValueError, match="max-norm only"):
                neighbor_stats(k=3, backend=backend, **spec)
            continue
        st = neighbor_stats(k=3, backend=backend, want_kmax=True, **spec)
        np.testing.assert_array_equal(st.eps, eps, err_msg=backend)
        np.testing.assert_array_equal(st.counts, counts, err_msg=backend)
        np.testing.assert_array_equal(st.nzero, nzero, err_msg=backend)
        np.testing.assert_array_equal(st.kmax, kmax, err_msg=backend)
        if backend == "kdtree" and spec.get("radius_from") is None:  # without kmax: the
            st = neighbor_stats(k=3, backend=backend, **spec)  # strata path where it applies
            np.testing.assert_array_equal(st.eps, eps, err_msg="kdtree, no kmax")
            np.testing.assert_array_equal(st.counts, counts, err_msg="kdtree, no kmax")
            np.testing.assert_array_equal(st.nzero, nzero, err_msg="kdtree, no kmax")


@pytest.mark.parametrize("name", list(_specs()))
def test_torch_backend_in_small_chunks_equals_the_definitions(name):
    """the torch backend with its working tensors bounded to a few query rows (15-21 a
    chunk by the number of continuous blocks, the last one mostly shorter), written in
    place chunk after chunk: the same numbers as the definitions for every kind of space
    (Euclidean, codes, three blocks, kmax)"""
    from essl_info.estimators.neighbors_torch import torch_stats

    spec = dict(_specs()[name])
    eps, counts, kmax, nzero = direct(k=3, **spec)
    blocks, n = spec.pop("blocks"), 300
    st = torch_stats(blocks, np.full(n, 3), spec["joint"], spec["subspaces"],
                     spec.get("radius_from", [None] * len(spec["subspaces"])),
                     spec.get("count", "strict"), True, device="cpu", memory_mb=0.25)
    np.testing.assert_array_equal(st.eps, eps)
    np.testing.assert_array_equal(st.counts, counts)
    np.testing.assert_array_equal(st.nzero, nzero)
    np.testing.assert_array_equal(st.kmax, kmax)


def test_per_point_k_and_strata():
    x, _, _, lab, _ = _data(200, seed=3)
    kvec = np.where(lab == 0, 1, 4)
    spec = dict(blocks=[Block(lab, True), Block(x)], joint=[0, 1], subspaces=[[1]],
                count="closed")
    eps, counts, _, _ = direct(k=kvec, **spec)
    for backend in BACKENDS:
        st = neighbor_stats(k=kvec, backend=backend, **spec)
        np.testing.assert_array_equal(st.eps, eps)
        np.testing.assert_array_equal(st.counts, counts)


@pytest.mark.parametrize("count", ["strict", "closed", "gao"])
@pytest.mark.parametrize("n, n_strata", [(900, 12), (2400, 4)])
def test_small_strata_brute_force_equals_the_definitions(count, n, n_strata):
    """the brute force within small strata (``neighbors_strata``): many strata of a few to
    a hundred rows, or a few of ~600 (where the k-th smallest search folds its lane
    minima twice), k per point (1 in tiny strata, up to 10 beyond the folded minima),
    exact ties and atoms (k or more points at distance 0), 1- and 2-column blocks, two
    and three blocks"""
    from essl_info.estimators import neighbors_kdtree

    rng = np.random.default_rng(12)
    part = np.sort(rng.integers(0, n_strata, n))
    part[:3] = 99  # a stratum of 3 rows
    x = np.round(rng.standard_normal((n, 2)) * 3) / 3  # ties, some atoms
    y = np.round(x[:, :1] + rng.standard_normal((n, 1)), 1)
    z = rng.standard_normal((n, 1))
    if n > 1000:  # fewer ties: the k-th distance is mostly not shared
        x = x + rng.standard_normal((n, 2)) * (rng.random((n, 1)) < 0.7)
    x[10:14], y[10:14], z[10:14] = x[10], y[10], z[10]  # an atom of 4 identical points
    sizes = np.bincount(np.unique(part, return_inverse=True)[1])
    kvec = np.where(np.isin(part, [99]), 1, 3 if n < 1000 else rng.integers(1, 11, n))
    assert sizes.min() == 3
    for blocks, subs in (([Block(x), Block(y), Block(part, True)], [[0, 2], [1, 2]]),
                         ([Block(x), Block(y), Block(z), Block(part, True)],
                          [[0, 2, 3], [1, 2, 3], [2, 3]])):
        joint = list(range(len(blocks)))
        spec = dict(blocks=blocks, joint=joint, subspaces=subs, count=count)
        args = (blocks, joint, subs, [None] * len(subs), False,
                neighbors_kdtree._segments(blocks, joint, n)[2])
        assert neighbors_kdtree._small_strata(*args)
        eps, counts, _, nzero = direct(k=kvec, **spec)
        st = neighbor_stats(k=kvec, backend="kdtree", **spec)
        np.testing.assert_array_equal(st.eps, eps)
        np.testing.assert_array_equal(st.counts, counts)
        np.testing.assert_array_equal(st.nzero, nzero)
        assert (eps == 0).any() and (nzero > 0).any()


def test_float32_rounding_is_rechecked():
    """Clusters 1e4 apart leave float32 a resolution of ~1e-3 while neighbours differ by
    ~1e-3: float32 distances alone get most counts wrong (checked below); the float64
    recheck of near-radius candidates must make them exact."""
    rng = np.random.default_rng(1)
    n = 400
    x = rng.choice([-1e4, 0.0, 1e4], size=(n, 3)) + rng.random((n, 3)) * 1e-2
    y = x[:, :2] * 0.5 + rng.random((n, 2)) * 1e-2
    spec = dict(blocks=[Block(x), Block(y)], joint=[0, 1], subspaces=[[0], [1]])
    eps, counts, _, _ = direct(k=3, **spec)
    x32 = [(a - a.mean(0)).astype(np.float32).astype(np.float64) for a in (x, y)]
    naive = direct(k=3, blocks=[Block(x32[0]), Block(x32[1])], joint=[0, 1],
                   subspaces=[[0], [1]])
    assert (naive[1] != counts).sum() > 50  # the test data does defeat float32
    st = neighbor_stats(k=3, backend="numba", **spec)
    np.testing.assert_array_equal(st.eps, eps)
    np.testing.assert_array_equal(st.counts, counts)
    centred = x - x.mean(0)
    c32 = centred.astype(np.float32)
    err = np.abs(np.abs(c32[:, None] - c32[None]).max(-1)
                 - np.abs(centred[:, None] - centred[None]).max(-1)).max()
    assert 0 < err <= float32_error_bound(centred, "max")


def test_large_n_numba_matches_kdtree():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 1))
    y = x + rng.standard_normal((3000, 1))
    spec = dict(blocks=[Block(x), Block(y)], joint=[0, 1], subspaces=[[0], [1]])
    a = neighbor_stats(k=5, backend="numba", **spec)
    b = neighbor_stats(k=5, backend="kdtree", **spec)
    np.testing.assert_array_equal(a.eps, b.eps)
    np.testing.assert_array_equal(a.counts, b.counts)


@pytest.mark.parametrize("bad, match", [
    (dict(k=0), "k must be >= 1"),
    (dict(k=10), "only 9 other points"),
    (dict(joint=[1]), "at least one continuous"),
    (dict(joint=[0, 5]), "outside"),
    (dict(count="open"), "count must be one of"),
    (dict(backend="gpu"), "backend must be"),
])
def test_bad_specs_raise(bad, match):
    x = np.random.default_rng(0).standard_normal((20, 2))
    lab = np.repeat([0, 1], 10)
    spec = dict(blocks=[Block(x), Block(lab, True)], k=3, joint=[0, 1], subspaces=[[0]])
    spec.update(bad)
    with pytest.raises(ValueError, match=match):
        neighbor_stats(**spec)


def test_mismatched_block_rows_raise():
    with pytest.raises(ValueError, match="rows"):
        neighbor_stats([Block(np.zeros((5, 1))), Block(np.zeros((6, 1)))], 1, joint=[0, 1])


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_progress_reports_every_row_once(backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6000, 20))
    y = x[:, :4] + rng.standard_normal((6000, 4))
    seen = []
    spec = dict(blocks=[Block(x), Block(y)], joint=[0, 1], subspaces=[[0], [1]])
    st = neighbor_stats(k=3, backend=backend, progress=lambda d, n: seen.append((d, n)),
                        **spec)
    assert seen and seen[-1] == (6000, 6000)
    assert all(b[0] > a[0] for a, b in zip(seen, seen[1:]))  # increasing
    ref = neighbor_stats(k=3, backend="numba", **spec)
    np.testing.assert_array_equal(st.counts, ref.counts)


def test_kdtree_2d_counts_with_strata_and_ties():
    """the sorted-column path (binary search + rectangle sweep) with strata and ties"""
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal((500, 2)) * 4) / 4  # many ties
    y = rng.standard_normal((500, 1))
    lab = rng.integers(0, 4, 500)
    for count in ("strict", "closed", "gao"):
        spec = dict(blocks=[Block(x), Block(y), Block(lab, True)], joint=[0, 1, 2],
                    subspaces=[[0, 2], [0], [1, 2]], count=count)
        eps, counts, _, nzero = direct(k=3, **spec)
        st = neighbor_stats(k=3, backend="kdtree", **spec)
        np.testing.assert_array_equal(st.eps, eps)
        np.testing.assert_array_equal(st.counts, counts)
        np.testing.assert_array_equal(st.nzero, nzero)


def test_kdtree_equals_numba_in_2_plus_2_dims_with_strata_and_threads(monkeypatch):
    """the bottom-up k-nearest query and the sorted 2-D counts (galloping intervals,
    Fenwick sweep split over threads) against the brute-force backend, above the size
    where the kernels run on several threads; the thread count changes nothing"""
    from essl_info.estimators import neighbors_sorted
    from essl_info.estimators.neighbors_kdtree import kdtree_stats

    monkeypatch.setattr(neighbors_sorted, "CHEAP_PARALLEL_MIN", 1000)  # threads at n=9000
    rng = np.random.default_rng(6)
    n = 9000
    x = rng.standard_normal((n, 2))
    y = 0.5 * x + rng.standard_normal((n, 2))
    y[:200] = np.round(y[:200], 1)  # some exact ties in the marginals
    part = rng.integers(0, 3, n)
    blocks = [Block(x), Block(y), Block(part, True)]
    for joint, subs in (([0, 1], [[0], [1]]), ([0, 1, 2], [[0, 2], [1, 2]])):
        spec = dict(blocks=blocks, joint=joint, subspaces=subs, want_kmax=True)
        ref = neighbor_stats(k=3, backend="numba", **spec)
        got = [kdtree_stats(blocks, np.full(n, 3), joint, subs, [None] * len(subs),
                            "strict", True, threads=t) for t in (1, 2)]
        for st in got:
            np.testing.assert_array_equal(st.eps, ref.eps)
            np.testing.assert_array_equal(st.counts, ref.counts)
            np.testing.assert_array_equal(st.kmax, ref.kmax)


def test_block_column_order_survives_take():
    """a cached column order restricted by ``take`` (increasing rows; also a take of a
    take) equals a fresh stable argsort and is computed only when asked for (the
    brute-force strata path never asks); unsorted rows drop it"""
    rng = np.random.default_rng(7)
    v = np.round(rng.standard_normal((400, 2)), 1)  # ties: order by row index
    blk = Block(v)
    _ = blk.column_order
    rows = np.sort(rng.choice(400, 150, replace=False))
    sub = blk.take(rows)
    assert "_order_of_parent" in sub.__dict__ and "_column_order" not in sub.__dict__
    np.testing.assert_array_equal(sub.column_order,
                                  np.argsort(v[rows], axis=0, kind="stable").T)
    rows2 = np.sort(rng.choice(150, 60, replace=False))
    np.testing.assert_array_equal(blk.take(rows).take(rows2).column_order,
                                  np.argsort(v[rows][rows2], axis=0, kind="stable").T)
    assert "_order_of_parent" not in blk.take(rows[::-1]).__dict__
    assert "_order_of_parent" not in Block(v).take(rows).__dict__  # no order known


@pytest.mark.parametrize("kind", ["tie-free", "ties", "signed zeros", "constant", "one",
                                  "last bits", "wide range", "integers", "strided"])
def test_stable_argsort_is_numpys_stable_sort(kind):
    """numpy's stable argsort on every path: the packed-key sort kept, or refused for
    values that differ only in the bits it replaces by the row ("last bits": 1 + j ulp,
    shuffled), for ties, signed zeros; the unstable argsort for integers"""
    from essl_info.estimators.neighbors import _packed_argsort, stable_argsort

    rng = np.random.default_rng(7)
    col = {"tie-free": rng.standard_normal(5000),
           "ties": rng.integers(0, 50, 5000).astype(float),
           "signed zeros": np.where(rng.random(5000) < 0.5, 0.0, -0.0),
           "constant": np.full(300, 2.5), "one": np.ones(1),
           "last bits": rng.permutation(1.0 + np.arange(5000) * np.spacing(1.0)),
           "wide range": rng.standard_cauchy(5000) ** 5 * rng.choice([-1, 1], 5000),
           "integers": rng.permutation(5000),
           "strided": rng.standard_normal((5000, 3))[:, 1]}[kind]
    if kind == "last bits":  # the packed keys cannot order these: the check must catch it
        assert not (np.diff(col[_packed_argsort(col)]) > 0).all()
    got = stable_argsort(col)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argsort(col, kind="stable"))
    if kind == "integers":
        return
    blk = Block(np.stack([col, col[::-1]], axis=1))
    np.testing.assert_array_equal(blk.column_order,
                                  np.argsort(blk.values, axis=0, kind="stable").T)


@pytest.mark.parametrize("values", ["rounded normal", "heavy tails", "huge range",
                                    "tiny range", "constant segments"])
def test_interval_ends_do_not_depend_on_the_search_guess(values):
    """the 1-D interval search starts from a guess read off a table of each segment's
    values; with radii jumping over 300 orders of magnitude (guesses far off, huge,
    infinite), zeros, ties, segments of 0, 1 and many rows, and values whose table cannot
    be built (a range that overflows, one whose cell width underflows, a single value),
    the ends equal a direct evaluation of the exact predicate"""
    from essl_info.estimators.neighbors_sorted import _guess_tables, _intervals

    rng = np.random.default_rng(11)
    n = 3000
    seg = np.sort(rng.choice([0, 1, 3, 4], n, p=[0.5, 0.3, 0.2 - 1 / n, 1 / n]))
    seg[-1] = 4  # segment 2 empty, segment 4 a single row
    draw = {"rounded normal": lambda m: np.round(rng.standard_normal(m), 2),
            "heavy tails": lambda m: rng.standard_cauchy(m) ** 3,
            "huge range": lambda m: rng.choice([-1.5e308, 1.5e308, 0.0, 1.0], m),
            "tiny range": lambda m: rng.integers(0, 3, m) * 5e-324,
            "constant segments": lambda m: np.full(m, rng.standard_normal())}[values]
    vals = np.concatenate([np.sort(draw((seg == s).sum())) for s in range(5)])
    bounds = np.searchsorted(seg, np.arange(6))
    table = _guess_tables(vals, bounds)
    radius = 10.0 ** rng.uniform(-300, 300, n)
    radius[rng.random(n) < 0.2] = rng.random() * 0.1
    radius[rng.random(n) < 0.05] = 0.0
    radius[rng.random(n) < 0.02] = np.inf
    for strict in (np.ones(n, np.bool_), np.zeros(n, np.bool_), rng.random(n) < 0.5):
        first, last = np.empty(n, np.int64), np.empty(n, np.int64)
        with np.errstate(over="ignore", invalid="ignore"):
            _intervals(0, n, vals, radius, strict, seg, bounds, table, first, last)
            for p in range(n):
                d = np.abs(vals[bounds[seg[p]]:bounds[seg[p] + 1]] - vals[p])
                inside = np.flatnonzero(d < radius[p] if strict[p] else d <= radius[p])
                if len(inside) == 0:
                    assert (first[p], last[p]) == (p + 1, p)
                else:
                    assert (first[p], last[p]) == (bounds[seg[p]] + inside[0],
                                                   bounds[seg[p]] + inside[-1])


def test_guess_tables_point_at_each_cells_first_position():
    """``_guess_tables``: each segment's cells (one per row) start where a search of the
    cell's lower edge puts them (up to the rounding of a value's cell); segments whose
    values are all equal get no scale"""
    from essl_info.estimators.neighbors_sorted import _guess_tables

    rng = np.random.default_rng(3)
    vals = np.concatenate([np.sort(rng.standard_normal(700)), np.full(5, 2.0),
                           np.sort(rng.exponential(size=300))])
    bounds = np.array([0, 700, 705, 1005])
    v0, iw, toff, start = _guess_tables(vals, bounds)
    assert iw[1] == 0 and (start[toff[1]:toff[2]] == 700).all()
    for s in (0, 2):
        lo, hi = bounds[s], bounds[s + 1]
        h = (vals[hi - 1] - vals[lo]) / (hi - lo)
        assert v0[s] == vals[lo] and iw[s] == 1 / h
        cell = np.minimum(((vals[lo:hi] - vals[lo]) * iw[s]).astype(np.int64), hi - lo)
        np.testing.assert_array_equal(start[toff[s]:toff[s + 1]],
                                      lo + np.searchsorted(cell, np.arange(hi - lo + 2)))
        edges = vals[lo] + np.arange(hi - lo + 2) * h  # the cells' edges, but for rounding
        assert np.abs(start[toff[s]:toff[s + 1]]
                      - (lo + np.searchsorted(vals[lo:hi], edges))).max() <= 1


def test_kth_smallest_search_equals_a_sort():
    """``neighbors_strata._kth_smallest`` (lane minima, a sorting network of eight of them,
    a count, the lanes at or below the bound) against ``np.sort`` on padded rows with ties,
    infinities and every path: w = 8 (the lane minima themselves), 16-64 (padded eight),
    80-136 (folded to eight), k from 1 to beyond 8; and the network on all 0-1 inputs"""
    import itertools

    from essl_info.estimators import neighbors_strata as ns

    rng = np.random.default_rng(5)
    for w in (8, 16, 40, 64, 80, 136):
        cmin, cmin2 = np.empty(w), np.empty(max(8, w // 8))
        for trial in range(60):
            m = int(rng.integers(max(2, 8 * w - 70), 8 * w + 1))
            d = np.full(8 * w, np.inf)
            d[:m] = np.round(rng.exponential(size=m), int(rng.integers(1, 4)))  # ties
            d[rng.integers(0, m)] = np.inf  # the point itself
            for k in (1, 2, 3, 5, 8, 9, 12):
                if k < m:
                    cand = np.empty(k)
                    got = ns._kth_smallest(d, w, k, cmin, cmin2, cand)
                    assert got == np.sort(d)[k - 1], (w, m, k)
    for bits in itertools.product([0.0, 1.0], repeat=8):
        a = np.array(bits)
        ns._sort8(a)
        assert (np.diff(a) >= 0).all()


_CACHE_PROBE = """
import json, sys, numpy as np
from numba.core.registry import CPUDispatcher
from essl_info import estimate_mi
from essl_info.estimators import (knn, neighbors_kdtree, neighbors_numba, neighbors_sorted,
                                  neighbors_strata)
rng = np.random.default_rng(0)
for d in (1, 2, 3):  # sorted 1-D and 2-D marginals, 4-dim and 6-dim joint trees
    x = rng.standard_normal((2500, d))
    estimate_mi(x, x + rng.standard_normal((2500, d)), method="ksg", backend="kdtree")
kernels = {f"{m.__name__}.{k}": f for m in (knn, neighbors_kdtree, neighbors_numba,
                                            neighbors_sorted, neighbors_strata)
           for k, f in vars(m).items() if isinstance(f, CPUDispatcher)}
json.dump({"hits": sum(sum(f.stats.cache_hits.values()) for f in kernels.values()),
           "misses": {k: sum(f.stats.cache_misses.values()) for k, f in kernels.items()
                      if sum(f.stats.cache_misses.values())}}, sys.stdout)
"""


def test_kd_tree_kernels_load_from_numbas_disk_cache_in_a_new_process():
    """every compiled kernel of the kd-tree path is loaded from numba's on-disk cache by
    a second process, none compiled again: a kernel made by a factory function (a
    closure) was compiled anew in every process (~4 s on each first call) and added an
    entry to the cache each time"""
    import json
    import subprocess
    import sys

    runs = [json.loads(subprocess.run([sys.executable, "-c", _CACHE_PROBE], check=True,
                                      capture_output=True, text=True).stdout)
            for _ in range(2)]
    assert runs[1]["misses"] == {}, runs[1]["misses"]
    assert runs[1]["hits"] >= 5
