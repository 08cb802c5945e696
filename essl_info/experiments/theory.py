"""The theory test: does the data-level Î(A;C|X), measured before training, predict which
transformation helps E-SSL after training? (Wang et al., NeurIPS 2024; DESIGN §10.)

    essl-info theory-test --dataset digits --quick --seeds 3 --jobs 2 --plot theory.png

1. **Prediction** (before training): ``rank_transforms`` gives Î_V(A;C|X) ± stderr and a
   verdict (synergistic, lossless/shortcut, class-irrelevant, uninformative) per candidate.
2. **Training** (one sweep, ``experiments.sweep``): per candidate T and seed, pure
   transformation prediction (``ssl="none"``, Wang et al.'s comparison) and E-SimCLR
   (SimCLR + λ·CE(T), Dangovski et al.); baselines: a random encoder (the untrained
   network, ``epochs=0``; ``max(S, preset.random_seeds)`` seeds, since it costs no
   training and its seed spread dominates the pure gains' errors) for the pure runs, and
   per seed SimCLR without a transformation loss (``lam=0``: the head trains on detached
   features, a monitor only) for E-SimCLR.
3. **Outcome** (``experiments.downstream``): linear-probe and kNN accuracy on frozen
   features by repeated cross-validation over the pooled labelled images, per image.
   Per cell, the S seeds combine by ``resampling.combine_seeds`` (mean; image-sampling
   error ⊕ t-inflated seed error); gain = cell − its baseline (errors in quadrature).
4. **Agreement**: Spearman ρ between Î(A;C|X) and the gain over the candidates, per
   objective and metric, with a 95 % percentile bootstrap interval that resamples images
   (one draw shared by all runs: they are scored on the same images), the seeds (per
   cell, a normal draw with the t-inflated seed error of the cell's own interval: a
   resample of 3 seeds with replacement understates it) and the prediction
   (Î + stderr·N(0, 1)); and the mean gain per verdict.

Modes (``PRESETS``): ``tiny`` (seconds; the tests), ``quick`` (CPU, embedded data, the
recipe of ``training.config.RECIPES`` for the dataset with fewer epochs), ``full`` (the
setting of Wang et al. Fig. 1 on CIFAR: ResNet-18, 200 epochs, batch 512, weight decay
1e-6, on a GPU). Everything lives under ``--root``; a rerun skips finished runs and cached
evaluations, so an interrupted test continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..diagnostics.rank import DEFAULT_CANDIDATES, PredictorConfig
from ..training.config import TrainConfig
from .downstream import METRICS, EvalConfig, evaluate_run
from .sweep import Sweep, collect, commands, execute, grid

OBJECTIVES = {   # name -> (TrainConfig overrides, its baseline)
    "pure": ({"ssl": "none"}, "random"),
    "e-simclr": ({"ssl": "simclr", "lam": 0.4}, "simclr"),
}
BASELINES = {
    "random": {"ssl": "none", "epochs": 0},
    "simclr": {"ssl": "simclr", "lam": 0.0},
}


@dataclass(frozen=True)
class TheoryPreset:
    """One mode of the theory test: training overrides (over the dataset's recipe), the
    rank-transforms settings and the downstream evaluation."""

    name: str
    description: str
    train: dict = field(default_factory=dict)
    rank_images: int | None = None
    predictor: PredictorConfig = PredictorConfig()
    evaluation: EvalConfig = EvalConfig()
    seeds: int = 3
    #: seeds of the untrained (random-encoder) baseline: it costs no training, and its
    #: seed spread is the largest term of every pure gain's interval (transform-world,
    #: quick: sd 0.055 against 0.008-0.03 for trained cells), so it gets more seeds
    random_seeds: int = 10


PRESETS: dict[str, TheoryPreset] = {p.name: p for p in (
    TheoryPreset("tiny", "seconds, for tests: 8 px, 64 images, 1 epoch",
                 train=dict(image_size=8, trans_size=8, n_train=64, n_test=32, width=4,
                            batch_size=32, knn_k=20, epochs=1, final_linear_probe=False),
                 rank_images=150, predictor=PredictorConfig(max_epochs=2, patience=1, folds=2,
                                                           width=4, hidden=8),
                 evaluation=EvalConfig(folds=2, repeats=1, max_images=80, knn_k=20),
                 seeds=2, random_seeds=3),
    TheoryPreset("quick", "CPU, embedded data (digits, rotation-world, transform-world): "
                 "the dataset's recipe with 4 epochs (55 runs; with --jobs 2 on 2 idle cores "
                 "digits took 18 min, transform-world 24 min; 40 min at load ~4)",
                 train=dict(epochs=4, device="cpu"), rank_images=2000,
                 evaluation=EvalConfig(folds=5, repeats=2, max_images=4000)),
    TheoryPreset("full", "GPU, CIFAR-10/100 (--data-dir): Wang et al. Fig. 1's setting "
                 "(ResNet-18, 200 epochs, batch 512, weight decay 1e-6)",
                 train=dict(epochs=200, batch_size=512, weight_decay=1e-6, device="cuda",
                            view_aug="simclr", base_aug="crop_flip", threads=None),
                 rank_images=5000, evaluation=EvalConfig(folds=5, repeats=1,
                                                         max_images=20000)),
)}


# ============================================================================ the sweep
def theory_sweep(dataset: str, transforms: Sequence[str], *, root: str | Path,
                 preset: TheoryPreset, seeds: int, data_params: dict | None = None,
                 data_dir: str | None = None, overrides: dict | None = None,
                 first_seed: int = 0) -> Sweep:
    """Candidates × objectives × seeds, and the baselines × seeds (tags: ``transform``,
    ``objective``, ``seed``; baselines carry ``transform="-"`` and predict the first
    candidate, a choice that does not touch their encoder). The random encoder gets
    ``max(seeds, preset.random_seeds)`` seeds (untrained: evaluation only). Seeds are
    ``first_seed, first_seed + 1, …``: a second seed set (``first_seed=100``) is an
    independent replicate of the whole test."""
    base = replace(TrainConfig(dataset=dataset, data_dir=data_dir,
                               data_params=tuple(sorted((data_params or {}).items()))),
                   **{**preset.train, **(overrides or {})})
    # a preset's small images (tiny: 8 px) are raised to what the dataset can draw
    # (transform-world: 16 px), rather than every run failing on it
    from ..data.datasets import DATASETS

    spec = DATASETS.get(dataset)
    floor = spec.min_image_size if spec is not None else 1
    if base.image_size is not None and base.image_size < floor:
        base = replace(base, image_size=floor, trans_size=max(base.trans_size or floor, floor))
    if first_seed < 0:
        raise ValueError(f"first_seed must be >= 0, got {first_seed}")

    def seed_axis(n: int) -> list:
        return [(s, {"seed": s}) for s in range(first_seed, first_seed + n)]

    specs = grid(base, transform=[(t, {"transforms": (t,)}) for t in transforms],
                 objective=[(o, ov) for o, (ov, _) in OBJECTIVES.items()], seed=seed_axis(seeds))
    for name, ov in BASELINES.items():
        n = max(seeds, preset.random_seeds) if ov.get("epochs") == 0 else seeds
        specs += grid(replace(base, transforms=(transforms[0],)), transform=[("-", {})],
                      objective=[(name, ov)], seed=seed_axis(n))
    return Sweep(root, specs)


# ========================================================================== prediction
def prediction(dataset: str, transforms: Sequence[str], *, root: Path, preset: TheoryPreset,
               data_params: dict | None = None, data_dir: str | None = None,
               device: str = "cpu") -> dict:
    """rank-transforms' reading per candidate: ``{t: {"i", "i_se", "h", "h_se",
    "verdict"}}``, cached in ``root/rank.json`` (recomputed when its settings change)."""
    from ..diagnostics.rank import rank_transforms

    settings = {"dataset": dataset, "transforms": list(transforms),
                "n_images": preset.rank_images, "predictor": asdict(preset.predictor),
                "data_params": data_params or {}, "data_dir": data_dir}
    path = root / "rank.json"
    if path.exists():
        doc = json.loads(path.read_text())
        if doc.get("settings") == settings:
            return doc["prediction"]
    rep = rank_transforms(dataset, list(transforms), n_images=preset.rank_images,
                          config=preset.predictor, data_dir=data_dir, device=device,
                          **(data_params or {}))
    verdicts = {r["transformation"]: r["verdict"] for r in rep.extra["ranking"]}
    out = {}
    for t in transforms:
        i = next(e for e in rep.estimates if e.quantity == "I(A;C|X)"
                 and e.params["transformation"] == t)
        h = next(e for e in rep.estimates if e.quantity == "H(A|X)"
                 and e.params["transformation"] == t)
        out[t] = {"i": i.value, "i_se": i.stderr, "h": h.value, "h_se": h.stderr,
                  "verdict": verdicts[t]}
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": settings, "prediction": out,
                                "report": rep.to_dict()}, indent=1))
    return out


# ============================================================================ analysis
def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ along the last axis (average ranks for ties); NaN where a side is
    constant. x, y: (..., k)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=-1), rankdata(y, axis=-1)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1), np.nan)


def cell_bootstrap(correct: np.ndarray, weights: np.ndarray, rng: np.random.Generator):
    """One cell's accuracy over its seeds, and its bootstrap draws for ρ's interval.

    correct (S, n): per seed, 1.0 where an image was classified right; weights (B, n):
    image-resampling weights (rows sum to 1), shared by every cell since all runs score
    the same images. Returns (``combine_seeds`` ensemble, (B,) draws): the mean plus the
    image part (the weights applied to every seed, then averaged over seeds) plus the
    seed part, a normal draw with the t-inflated seed error ``seed_se_adj`` of the cell's
    own interval. (Resampling 3 seeds with replacement gives 2/3 of sd²/S and no t
    factor, a seed part ~2.7x too narrow: a replicate on fresh seeds fell outside ρ's
    interval.)"""
    from ..estimators.resampling import combine_seeds

    n = correct.shape[1]
    acc = correct.mean(1)                                                   # (S,)
    ens = combine_seeds(acc, correct.std(1, ddof=1) / math.sqrt(n))
    img = (weights @ correct.T - acc).mean(1)                               # (B,)
    return ens, ens.value + img + ens.seed_se_adj * rng.standard_normal(len(weights))


def analyse(rows: list[dict], evals: dict[str, dict], pred: dict, transforms: Sequence[str],
            *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Outcome and agreement from the sweep's rows (``collect``), each run's downstream
    evaluation (by key) and the prediction. All accuracies are fractions in [0, 1]."""
    n = {e["n"] for e in evals.values()}
    if len(n) != 1:
        raise ValueError(f"runs were evaluated on different image sets (sizes {sorted(n)})")
    n_img = n.pop()
    cells: dict[tuple[str, str], list[str]] = {}    # (objective, transform) -> run keys
    for r in rows:
        cells.setdefault((r["tags"]["objective"], r["tags"]["transform"]), []).append(r["key"])
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_img, np.full(n_img, 1 / n_img), size=n_boot) / n_img  # (B, n)
    out: dict[str, Any] = {"n_images": n_img, "n_boot": n_boot, "cells": [], "agreement": [],
                           "by_verdict": []}
    z = rng.standard_normal((n_boot, len(transforms)))
    i_hat = np.array([pred[t]["i"] for t in transforms])
    i_se = np.array([pred[t]["i_se"] for t in transforms])
    i_boot = i_hat + i_se * z                                                   # (B, T)
    for metric in METRICS:
        def cell(obj: str, t: str):
            c = np.array([evals[k]["correct"][metric] for k in cells[(obj, t)]])  # (S, n)
            return cell_bootstrap(c, weights, rng)

        for obj, (_, base_name) in OBJECTIVES.items():
            base, base_boot = cell(base_name, "-")
            gains, gains_se, gain_boot = [], [], []
            for t in transforms:
                ens, boot = cell(obj, t)
                g, g_se = ens.value - base.value, math.hypot(ens.stderr, base.stderr)
                gains.append(g)
                gains_se.append(g_se)
                gain_boot.append(boot - base_boot)
                out["cells"].append({
                    "metric": metric, "objective": obj, "transform": t,
                    "accuracy": ens.value, "stderr": ens.stderr, "gain": g, "gain_stderr": g_se,
                    "baseline": base_name, "baseline_accuracy": base.value,
                    "baseline_stderr": base.stderr, "seed_values": list(ens.values),
                    "seed_sd": ens.seed_sd, **{k: pred[t][k] for k in ("i", "i_se", "verdict")}})
            gain_boot = np.stack(gain_boot, 1)                                  # (B, T)
            rho = float(_spearman(i_hat, np.array(gains)))
            rb = _spearman(i_boot, gain_boot)
            rb = rb[np.isfinite(rb)]
            lo, hi = (np.quantile(rb, [0.025, 0.975]) if len(rb) else (math.nan, math.nan))
            # None where undefined: a side constant (e.g. every Î or every gain equal)
            out["agreement"].append({
                "metric": metric, "objective": obj,
                "rho": rho if math.isfinite(rho) else None,
                "ci": [float(lo), float(hi)] if len(rb) else None,
                "p_rho_le_0": float(np.mean(rb <= 0)) if len(rb) else None,
                "n_boot_defined": int(len(rb)), "n_transforms": len(transforms)})
            for v in sorted({pred[t]["verdict"] for t in transforms}):
                idx = [k for k, t in enumerate(transforms) if pred[t]["verdict"] == v]
                out["by_verdict"].append({
                    "metric": metric, "objective": obj, "verdict": v,
                    "transforms": [transforms[k] for k in idx],
                    "mean_gain": float(np.mean([gains[k] for k in idx])),
                    "stderr": float(math.sqrt(sum(gains_se[k] ** 2 for k in idx)) / len(idx))})
        for name in BASELINES:
            ens, _ = cell(name, "-")
            out.setdefault("baselines", []).append({
                "metric": metric, "baseline": name, "accuracy": ens.value,
                "stderr": ens.stderr, "seed_values": list(ens.values), "seed_sd": ens.seed_sd})
    return out


# ============================================================================== driver
def theory_test(dataset: str, transforms: Sequence[str] = DEFAULT_CANDIDATES, *,
                mode: str = "quick", seeds: int | None = None, root: str | Path | None = None,
                jobs: int = 1, data_params: dict | None = None, data_dir: str | None = None,
                overrides: dict | None = None, device: str | None = None,
                n_boot: int = 2000, first_seed: int = 0, progress=None) -> dict:
    """Run (or continue) the theory test and return its result (JSON-safe dict)."""
    from .. import __version__
    from ..data import parse_transformations
    from ..types import _json_safe

    t0 = time.perf_counter()
    if mode not in PRESETS:
        raise ValueError(f"mode must be one of {sorted(PRESETS)}, got {mode!r}")
    preset = PRESETS[mode]
    transforms = [t.name for t in parse_transformations(list(transforms))]
    if len(transforms) < 2:
        raise ValueError("the theory test needs at least 2 candidate transformations "
                         "(a rank correlation over one point is undefined)")
    seeds = preset.seeds if seeds is None else int(seeds)
    if seeds < 2:
        raise ValueError(f"seeds must be >= 2 (the seed error needs two), got {seeds}")
    root = Path(root or f"runs/theory-{dataset}-{mode}")
    ov = dict(overrides or {})
    if device is not None:
        ov["device"] = device
    sweep = theory_sweep(dataset, transforms, root=root, preset=preset, seeds=seeds,
                         data_params=data_params, data_dir=data_dir, overrides=ov,
                         first_seed=first_seed)
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    from ..estimators.probe_families import resolve_device

    feat_device = str(resolve_device(sweep.runs[0].config.device))
    say(f"theory-test: 1/3 rank-transforms on {dataset} ({', '.join(transforms)})")
    pred = prediction(dataset, transforms, root=sweep.root, preset=preset,
                      data_params=data_params, data_dir=data_dir, device=feat_device)
    say(f"theory-test: 2/3 training ({len(sweep)} runs)")
    outcome = execute(sweep, jobs=jobs, progress=say)
    if outcome.failed:
        folder, msg = outcome.failed[0]
        raise ValueError(f"{len(outcome.failed)} run(s) failed, first {folder}: {msg} "
                         f"(its worker.log has the details)")
    rows = collect(sweep)
    say(f"theory-test: 3/3 downstream evaluation of {len(sweep)} runs")
    evals = {}
    for k, r in enumerate({r["key"]: r for r in rows}.values()):
        evals[r["key"]] = evaluate_run(r["folder"], preset.evaluation, device=feat_device)
        if (k + 1) % 10 == 0:
            say(f"  evaluated {k + 1}/{len(sweep)}")
    result = analyse(rows, evals, pred, transforms, n_boot=n_boot)
    result.update({
        "dataset": dataset, "mode": mode, "transforms": transforms, "seeds": seeds,
        "first_seed": first_seed,
        "prediction": pred, "root": str(sweep.root),
        "provenance": {"library_version": __version__, "preset": _json_safe(asdict(preset)),
                       "data_params": data_params or {}, "overrides": ov,
                       "runs": len(sweep), "trained_now": outcome.done,
                       "elapsed_s": round(time.perf_counter() - t0, 1)}})
    return _json_safe(result)


# ================================================================================= CLI
def add_theory_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="digits, rotation-world, "
                   "transform-world (CPU) or cifar10/cifar100 (--full)")
    p.add_argument("--transforms", default=",".join(DEFAULT_CANDIDATES),
                   help="comma-separated candidates (default: %(default)s)")
    from .commands import add_mode_flags

    add_mode_flags(p, PRESETS)
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the "
                   "mode's, 3 for quick and full)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST, FIRST+1, "
                   "...; another value replicates the whole test on fresh seeds "
                   "(default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="override the mode's epochs")
    p.add_argument("--root", default=None, help="folder of the runs (default "
                   "runs/theory-DATASET-MODE)")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (0: in "
                   "this process)")
    p.add_argument("--print-commands", action="store_true", help="print one essl-info "
                   "train command per unfinished run (for a scheduler) and exit; rerun "
                   "without it to evaluate")
    p.add_argument("--program", default="essl-info", help="what --print-commands puts "
                   "before 'train', e.g. 'torchrun --nproc_per_node 8 -m essl_info.cli'")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--data-param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the mode's)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="prediction against outcome with 95%% error bars (.png/.pdf/.svg)")


def run_theory_cli(args: argparse.Namespace) -> int:
    from ..diagnostics.commands import data_params
    from ..diagnostics.report import check_plot_path

    if args.plot:
        check_plot_path(args.plot)
    params = data_params(args.data_param)
    ov = {} if args.epochs is None else {"epochs": args.epochs}
    if args.print_commands:
        preset = PRESETS[args.mode]
        ts = [t.strip() for t in args.transforms.split(",") if t.strip()]
        sweep = theory_sweep(args.dataset, ts, root=args.root or
                             f"runs/theory-{args.dataset}-{args.mode}", preset=preset,
                             seeds=args.seeds or preset.seeds, data_params=params,
                             data_dir=args.data_dir,
                             overrides={**ov, **({"device": args.device} if args.device
                                                 else {})},
                             first_seed=args.first_seed)
        print("\n".join(commands(sweep, program=args.program)))
        return 0
    res = theory_test(args.dataset, args.transforms.split(","), mode=args.mode,
                      seeds=args.seeds, root=args.root, jobs=args.jobs, data_params=params,
                      data_dir=args.data_dir, overrides=ov, device=args.device,
                      first_seed=args.first_seed)
    from .theory_report import format_table, plot

    print(json.dumps(res, indent=1) if args.json else format_table(res))
    if args.plot:
        plot(res, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


__all__ = ["BASELINES", "OBJECTIVES", "PRESETS", "TheoryPreset", "add_theory_arguments",
           "analyse", "cell_bootstrap", "prediction", "run_theory_cli", "theory_sweep",
           "theory_test"]
