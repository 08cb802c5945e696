"""Per-epoch curves of a sweep's runs, read from their ``log.jsonl``, combined over seeds.

The trainer writes one ``{"event": "epoch", "epoch": e, ...}`` line per finished epoch
(``training.monitors``: ``test_acc/<t>``, ``knn_acc``, ``probe_acc``, ``train_<term>``,
``train_acc/<t>``, and at the last epoch ``linear_probe_acc``). A resumed run appends
to the same log, so an epoch can appear twice: the last line of an epoch wins.

    >>> rows = epoch_records("runs/x/runs/0123abcd")             # doctest: +SKIP
    >>> c = seed_curve(folders, "test_acc/rotation4", sampling="binomial")  # doctest: +SKIP
    >>> c.mean, c.stderr                                          # doctest: +SKIP

Errors (``seed_curve``): at each epoch the S runs' values combine by
``resampling.combine_seeds`` (mean of the runs; sampling ⊕ t-inflated seed error). The
sampling part is, for an accuracy on held-out images, the binomial standard error
sqrt(p(1-p)/n) with n the run's test images (the K transformed copies of an image are
not independent, so n counts images, not copies: conservative); for a training loss
(a mean over the epoch's minibatches) it is 0 and the spread between runs is the error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

SAMPLING = ("binomial", "none")


def _events(folder: str | Path, kind: str) -> list[dict]:
    log = Path(folder) / "log.jsonl"
    if not log.exists():
        raise ValueError(f"{folder}: no log.jsonl (is it a training run's folder?)")
    out = []
    with open(log) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:   # a line cut by a kill
                continue
            if rec.get("event") == kind:
                out.append(rec)
    return out


def epoch_records(folder: str | Path) -> list[dict]:
    """The run's ``epoch`` events, one per epoch (the last line of each), by epoch."""
    by_epoch = {int(r["epoch"]): r for r in _events(folder, "epoch")}
    return [by_epoch[e] for e in sorted(by_epoch)]


def run_sizes(folder: str | Path) -> dict:
    """``{"n_train", "n_test"}`` of the run (its last ``start`` event)."""
    starts = _events(folder, "start")
    if not starts:
        raise ValueError(f"{folder}: log.jsonl has no start event")
    return {"n_train": int(starts[-1]["n_train"]), "n_test": int(starts[-1]["n_test"])}


def binomial_se(p: np.ndarray | float, n: int) -> np.ndarray:
    """Standard error sqrt(p(1-p)/n) of an accuracy p in [0, 1] over n items."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return np.sqrt(p * (1 - p) / n)


@dataclass(frozen=True)
class Curve:
    """A quantity against epoch over S runs: ``values`` (S, E), and per epoch the mean
    and the total standard error (``combine_seeds``), with its sampling part."""

    key: str
    epochs: tuple[int, ...]
    values: np.ndarray        # (S, E)
    mean: np.ndarray          # (E,)
    stderr: np.ndarray        # (E,)
    sampling_se: np.ndarray   # (E,)
    seed_sd: np.ndarray       # (E,)
    run_se: np.ndarray        # (S, E): each run's sampling error

    @property
    def final(self) -> dict:
        """The last epoch's ``{"epoch", "value", "stderr", "seed_values"}``."""
        return {"epoch": self.epochs[-1], "value": float(self.mean[-1]),
                "stderr": float(self.stderr[-1]),
                "seed_values": [float(v) for v in self.values[:, -1]]}

    def to_dict(self) -> dict:
        return {"key": self.key, "epochs": list(self.epochs), "n_seeds": len(self.values),
                "mean": self.mean.tolist(), "stderr": self.stderr.tolist(),
                "sampling_se": self.sampling_se.tolist(), "seed_sd": self.seed_sd.tolist(),
                "seed_values": self.values.tolist()}


def seed_curve(folders: Sequence[str | Path], key: str, *, sampling: str = "none"
               ) -> Curve:
    """``key`` against epoch over the runs in ``folders`` (one per seed), at the epochs
    every run logged it (e.g. ``linear_probe_acc``: the last epoch only). ``sampling``:
    ``"binomial"`` for accuracies on the test split, ``"none"`` for training losses.
    Raises ValueError when no epoch has ``key`` in every run."""
    from ..estimators.resampling import combine_seeds

    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if not folders:
        raise ValueError("seed_curve needs at least one run folder")
    per_run = []
    for f in folders:
        recs = {int(r["epoch"]): r[key] for r in epoch_records(f)
                if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)}
        per_run.append(recs)
    common = sorted(set.intersection(*(set(r) for r in per_run)))
    if not common:
        raise ValueError(f"no epoch has {key!r} in every one of the {len(folders)} runs "
                         f"(first run: {folders[0]})")
    values = np.array([[r[e] for e in common] for r in per_run], dtype=np.float64)  # (S, E)
    if sampling == "binomial":
        se = np.stack([binomial_se(values[s], run_sizes(f)["n_test"])
                       for s, f in enumerate(folders)])
    else:
        se = np.zeros_like(values)
    combined = [combine_seeds(values[:, j], se[:, j]) for j in range(len(common))]
    return Curve(key, tuple(common), values,
                 np.array([c.value for c in combined]), np.array([c.stderr for c in combined]),
                 np.array([c.sampling_se for c in combined]),
                 np.array([c.seed_sd for c in combined]), se)


def group_folders(runs, by: Sequence[str]) -> dict[tuple, list[Path]]:
    """A sweep's runs (``Sweep.runs``) grouped by the tags ``by`` (the seed left out):
    ``{(tag values…): [folders, in seed order]}``."""
    out: dict[tuple, list[tuple]] = {}
    for r in runs:
        tags = r.tag_dict
        out.setdefault(tuple(tags[b] for b in by), []).append((tags.get("seed", 0), r.folder))
    return {k: [f for _, f in sorted(v, key=lambda t: str(t[0]))] for k, v in out.items()}


def final_value(rows: Sequence[dict], key: str, *, sampling: str = "none") -> dict:
    """``key`` of the runs' final metrics (``sweep.collect`` rows, one per seed: their
    ``checkpoint.pt``), combined over the runs: ``{"value", "stderr", "seed_sd",
    "seed_values"}``; ``sampling`` as in ``seed_curve``."""
    from ..estimators.resampling import combine_seeds

    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if not rows:
        raise ValueError("final_value needs at least one run")
    missing = [r["folder"] for r in rows if key not in r["metrics"]]
    if missing:
        raise ValueError(f"{key!r} is not among the final metrics of {missing[0]}")
    v = np.array([r["metrics"][key] for r in rows], dtype=np.float64)
    se = (np.array([float(binomial_se(x, run_sizes(r["folder"])["n_test"]))
                    for x, r in zip(v, rows)]) if sampling == "binomial" else np.zeros_like(v))
    ens = combine_seeds(v, se)
    return {"value": ens.value, "stderr": ens.stderr, "seed_sd": ens.seed_sd,
            "seed_values": [float(x) for x in v]}


def paired_difference(a: Curve, b: Curve) -> dict:
    """a − b at the last epoch both curves have, paired by run: the runs of ``a`` and
    ``b`` are taken in the same seed order (same initialisation, data order and
    augmentation draws where the configs allow it), so the per-seed differences combine
    by ``combine_seeds`` (their spread is the seed error; each pair's sampling error is
    the two runs' in quadrature, conservative when they share the test images).
    Returns ``{"value", "stderr", "epoch", "seed_values", "paired": True}``."""
    from ..estimators.resampling import combine_seeds

    if a.values.shape[0] != b.values.shape[0]:
        raise ValueError(f"paired_difference needs as many runs on both sides, got "
                         f"{a.values.shape[0]} and {b.values.shape[0]}")
    common = sorted(set(a.epochs) & set(b.epochs))
    if not common:
        raise ValueError(f"{a.key} and {b.key} share no epoch")
    ja, jb = a.epochs.index(common[-1]), b.epochs.index(common[-1])
    d = a.values[:, ja] - b.values[:, jb]
    ens = combine_seeds(d, np.hypot(a.run_se[:, ja], b.run_se[:, jb]))
    return {"value": ens.value, "stderr": ens.stderr, "epoch": common[-1],
            "seed_values": [float(v) for v in d], "paired": True}


__all__ = ["Curve", "binomial_se", "epoch_records", "final_value", "group_folders",
           "paired_difference", "run_sizes", "seed_curve"]
