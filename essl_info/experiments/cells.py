"""Cells of a paper's table: named training configurations, each trained with S seeds by the
sweep runner (``experiments.sweep``), scored per run and combined over the seeds per cell.

A *cell* is one column or row of a published table (e.g. Wang et al. Table 2's "EqResNet18,
SimCLR augmentation"): a dict of ``TrainConfig`` overrides over a shared base. Every run is
scored from its files, never a runner's memory:

- ``linear`` / ``knn``: downstream accuracy on frozen features (``experiments.downstream``;
  per-image correctness by repeated cross-validation, so its standard error is over images);
- ``train_acc/<t>``: the trainer's training accuracy of the head of ``t`` over the last
  epoch (the "training rotation accuracy" of Wang et al. Table 2), with a binomial
  standard error over the ``n_train`` training images (each image counts once: its K
  transformed copies are not independent);
- ``test_acc/<t>``: the head's accuracy on the clean test images under every label of ``t``
  (binomial over ``n_test`` images, conservative for the same reason);
- optionally information quantities and equivariance metrics from ``diagnostics.measure``
  (``I(A;Z)``, ``I(C;Z)``, ``I(A;C|Z)`` in nats; ``Wahba``, ``gamma_f``), cached in the
  run's folder (``cell_measure_<hash>.json``, one per setting) so a rerun does not refit.

Per cell and score the S runs combine by ``resampling.combine_seeds`` (mean; sampling error
⊕ t-inflated seed error), and ``difference`` compares two cells (independent runs: errors
add in quadrature). Accuracies are fractions in [0, 1]; information in nats.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..training.config import TrainConfig
from .downstream import METRICS, EvalConfig, evaluate_run
from .provenance import provenance
from .sweep import Sweep, collect, execute, grid

MEASURE_FILE = "cell_measure_{hash}.json"   # one per MeasureConfig (tables share runs)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class MeasureConfig:
    """What ``diagnostics.measure`` computes per run (probe method, fits per quantity)."""

    quantities: tuple[str, ...] = ("I(A;Z)", "I(C;Z)", "I(A;C|Z)")
    n_images: int | None = None     # seeded subset of the test split (None: all of it)
    seeds: int = 1                  # probe fits per quantity (the runs' seeds add more)
    folds: int = 5                  # cross-fitting folds of the probes
    layer: str = "backbone"


@dataclass(frozen=True)
class CellMode:
    """One mode of a cell experiment: training overrides, evaluation, seeds, measurement."""

    name: str
    description: str
    train: dict = field(default_factory=dict)
    evaluation: EvalConfig = EvalConfig()
    seeds: int = 3
    measure: MeasureConfig | None = MeasureConfig()
    root: str = "runs/paper-digits-quick"   # shared: identical configs are trained once


# Shared modes: the scripts add their own overrides (backbone widths, epochs).
MODES: dict[str, CellMode] = {m.name: m for m in (
    CellMode("tiny", "seconds, for tests: 8 px, 64 images, 1 epoch, 2 seeds",
             train=dict(image_size=8, trans_size=8, n_train=64, n_test=96, width=4,
                        batch_size=32, knn_k=20, epochs=1, final_linear_probe=False,
                        device="cpu"),
             evaluation=EvalConfig(folds=2, repeats=1, max_images=80, knn_k=20), seeds=2,
             measure=MeasureConfig(n_images=80, folds=2), root="runs/paper-digits-tiny"),
    CellMode("quick", "CPU, digits (embedded): the digits recipe with a few epochs",
             train=dict(device="cpu", final_linear_probe=False),
             evaluation=EvalConfig(folds=5, repeats=2, max_images=4000), seeds=3,
             measure=MeasureConfig(n_images=160)),
    CellMode("full", "GPU, CIFAR-10/100 (--data-dir): the papers' settings",
             train=dict(device="cuda", threads=None, final_linear_probe=False),
             evaluation=EvalConfig(folds=5, repeats=1, max_images=20000), seeds=3,
             measure=MeasureConfig(n_images=2000), root="runs/paper-{dataset}-full"),
)}


# ============================================================================ the sweep
def cell_sweep(root: str | Path, base: TrainConfig, cells: Mapping[str, Mapping[str, Any]],
               seeds: int) -> Sweep:
    """Cells × seeds under ``root`` (tags ``cell``, ``seed``); ``cells`` maps a cell's
    name to its overrides of ``base``."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if not cells:
        raise ValueError("a cell experiment needs at least one cell")
    return Sweep(root, grid(base, cell=[(name, dict(ov)) for name, ov in cells.items()],
                            seed=[(s, {"seed": s}) for s in range(seeds)]))


# ============================================================================ per run
def binomial_se(p: float, n: int) -> float:
    """Standard error sqrt(p(1 − p)/n) of an accuracy ``p`` over ``n`` independent items."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def _measured(folder: Path, cfg: MeasureConfig, device: str) -> dict[str, list[float]]:
    """``{"<quantity>@<transformation>": [value, stderr]}`` of the run in ``folder`` (probe
    estimates and the geometric metrics), cached in ``folder/cell_measure_<hash>.json``."""
    import hashlib
    from dataclasses import asdict

    from ..diagnostics.measure import measure

    settings = asdict(cfg)
    settings["quantities"] = list(cfg.quantities)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = folder / MEASURE_FILE.format(hash=digest)
    if path.exists():
        doc = json.loads(path.read_text())
        if doc.get("settings") == settings:
            return doc["values"]
    rep = measure(str(folder / "checkpoint.pt"), quantities=list(cfg.quantities),
                  method="probe", n_images=cfg.n_images, seeds=cfg.seeds, layer=cfg.layer,
                  folds=cfg.folds, device=device)
    values = {}
    for e in rep.estimates:
        if e.quantity in cfg.quantities and e.method != "ross":
            t = e.params.get("transformation")
            values[f"{e.quantity}@{t}"] = [float(e.value), float(e.stderr or 0.0)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": settings, "values": values}))
    os.replace(tmp, path)
    return values


def score_run(row: Mapping[str, Any], evaluation: EvalConfig,
              measure_cfg: MeasureConfig | None = None, *, device: str = "cpu"
              ) -> dict[str, tuple[float, float]]:
    """Every score of one finished run (a row of ``sweep.collect``): ``{name: (value,
    sampling standard error)}``; see the module docstring for the names."""
    from ..models.checkpoint import load_checkpoint

    folder = Path(row["folder"])
    ev = evaluate_run(folder, evaluation, device=device)
    out: dict[str, tuple[float, float]] = {}
    for m in METRICS:
        c = np.asarray(ev["correct"][m], dtype=np.float64)                     # (n,)
        out[m] = (float(c.mean()), float(c.std(ddof=1) / math.sqrt(len(c))))
    data = load_checkpoint(folder / "checkpoint.pt")["data"]
    for k, v in row["metrics"].items():
        if k.startswith("train_acc/"):
            out[k] = (float(v), binomial_se(float(v), int(data["n_train"])))
        elif k.startswith("test_acc/"):
            out[k] = (float(v), binomial_se(float(v), int(data["n_test"])))
    if measure_cfg is not None:
        out.update({k: (v[0], v[1]) for k, v in _measured(folder, measure_cfg,
                                                          device).items()})
    return out


# ========================================================================= combination
def combine_cells(scored: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict]]:
    """Per cell and score, the runs' values combined over seeds (pure).

    ``scored``: one item per run, ``{"cell": name, "seed": s, "scores": {score: (value,
    sampling_se)}}``. Returns ``{cell: {score: {"value", "stderr", "ci95", "sampling_se",
    "seed_sd", "seed_values", "n_seeds"}}}``; a score missing from some run of a cell is
    left out of that cell (a cell is compared only on what all its runs measured)."""
    from ..estimators.resampling import combine_seeds

    by_cell: dict[str, list[Mapping]] = {}
    for item in scored:
        by_cell.setdefault(item["cell"], []).append(item)
    out: dict[str, dict[str, dict]] = {}
    for cell, items in by_cell.items():
        items = sorted(items, key=lambda it: it["seed"])
        names = set.intersection(*(set(it["scores"]) for it in items))
        out[cell] = {}
        for name in sorted(names):
            vals = [it["scores"][name][0] for it in items]
            ses = [it["scores"][name][1] for it in items]
            ens = combine_seeds(vals, ses)
            out[cell][name] = {
                "value": ens.value, "stderr": ens.stderr,
                "ci95": [ens.value - Z95 * ens.stderr, ens.value + Z95 * ens.stderr],
                "sampling_se": ens.sampling_se, "seed_sd": ens.seed_sd,
                "seed_values": [float(v) for v in ens.values], "n_seeds": len(items)}
    return out


def difference(a: Mapping[str, float], b: Mapping[str, float]) -> dict:
    """``a − b`` of two combined scores of independent cells: value, stderr (quadrature),
    95 % interval and its sign (``"+"``, ``"-"`` or ``"0"`` when the interval holds 0)."""
    v = a["value"] - b["value"]
    se = math.hypot(a["stderr"], b["stderr"])
    lo, hi = v - Z95 * se, v + Z95 * se
    return {"value": v, "stderr": se, "ci95": [lo, hi],
            "sign": "+" if lo > 0 else "-" if hi < 0 else "0"}


# ============================================================================== driver
def run_cells(sweep: Sweep, mode: CellMode, *, jobs: int = 1,
              measure_cfg: MeasureConfig | None = None, device: str = "cpu",
              progress: Callable[[str], None] | None = None) -> dict:
    """Train (or continue) every run of ``sweep``, score each and combine per cell.
    Returns ``{"cells": combine_cells(...), "runs": [{"cell", "seed", "key", "scores"}],
    "trained_now", "n_runs"}``."""
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    outcome = execute(sweep, jobs=jobs, progress=say)
    if outcome.failed:
        folder, msg = outcome.failed[0]
        raise ValueError(f"{len(outcome.failed)} run(s) failed, first {folder}: {msg} "
                         f"(its worker.log has the details)")
    rows = collect(sweep)
    scored, cache = [], {}
    for r in rows:
        if r["key"] not in cache:
            cache[r["key"]] = score_run(r, mode.evaluation, measure_cfg, device=device)
            say(f"  scored {len(cache)}/{len(sweep)} runs")
        scored.append({"cell": r["tags"]["cell"], "seed": r["tags"]["seed"], "key": r["key"],
                       "scores": {n: list(v) for n, v in cache[r["key"]].items()}})
    return {"cells": combine_cells(scored), "runs": scored, "trained_now": outcome.done,
            "n_runs": len(sweep)}


def mode_for(name: str, *, dataset: str = "digits", root: str | Path | None = None
             ) -> CellMode:
    """The shared mode ``name`` with its sweep root resolved (``root`` wins)."""
    if name not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {name!r}")
    m = MODES[name]
    return replace(m, root=str(root) if root is not None else m.root.format(dataset=dataset))


# ================================================================= the scripts' options
def script_parser(description: str):
    """The options every paper_figs cell script shares: ``--tiny | --quick | --full``,
    ``--plot-only``, ``--jobs``, ``--root``, ``--dataset`` (full mode), ``--data-dir``."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    from .commands import add_mode_flags

    add_mode_flags(p, MODES)
    p.add_argument("--plot-only", action="store_true", help="redraw from the saved JSON")
    p.add_argument("--jobs", type=int, default=2, help="local training workers")
    p.add_argument("--root", default=None, help="sweep folder (default: the mode's shared "
                   "one, runs/paper-digits-quick for --quick)")
    p.add_argument("--dataset", default=None, help="--full: cifar10 or cifar100")
    p.add_argument("--data-dir", default=None, help="--full: folder of the CIFAR files")
    return p


def script_results(doc: str, here: str | Path, name: str, compute, argv=None):
    """Parse a cell script's options (``script_parser``) and return ``(result, figure
    path)``: the saved JSON with ``--plot-only``, else ``compute(mode, ...)``'s result."""
    import json

    a = script_parser(doc.splitlines()[0]).parse_args(argv)
    results, figure = result_paths(here, name, a.mode)
    res = (json.loads(results.read_text()) if a.plot_only else
           compute(a.mode, jobs=a.jobs, root=a.root, dataset=a.dataset, data_dir=a.data_dir,
                   out=results))
    return res, figure


def result_paths(here: str | Path, name: str, mode: str) -> tuple[Path, Path]:
    """(JSON, PNG) of a paper_figs script: ``results/<name>.json`` and ``<name>.png`` for
    the quick mode (the gallery's), ``<name>_<mode>`` for the others, so a tiny or full
    run never overwrites the committed quick result."""
    stem = name if mode == "quick" else f"{name}_{mode}"
    here = Path(here)
    return here / "results" / f"{stem}.json", here / f"{stem}.png"


__all__ = ["CellMode", "MEASURE_FILE", "MODES", "MeasureConfig", "binomial_se", "cell_sweep",
           "combine_cells", "difference", "mode_for", "provenance", "result_paths",
           "run_cells", "score_run", "script_parser"]
