"""Wang et al. (NeurIPS 2024), "Understanding the role of equivariance in self-supervised
learning": the settings of their experiments as sweeps of the runner
(``experiments.sweep``), their published numbers, and the cached measurements the
``paper_figs/wang_*.py`` and ``paper_figs/information_dynamics.py`` scripts share.

All scripts put their runs under one root (``default_root``): the runner keys a run's
folder by its config, so a run two figures need (e.g. pure rotation prediction, the
"normal" cell of Fig. 3 and the transformation of Fig. 1) is trained once. Every run keeps
its per-epoch checkpoints (``save_every``), which the information dynamics measure.

Modes (``MODES``): ``tiny`` (seconds; tests), ``quick`` (CPU, the embedded digits, a few
epochs of the digits recipe), ``full`` (CIFAR-10 on a GPU with Appendix B's setting:
ResNet-18, random crops only, 200 epochs, batch 512, weight decay 1e-6, MLP head 2048;
the transformation predicted on whole 32 px crops, as RotNet; the step size is the CIFAR
recipe's, 0.06 × batch / 256, which the paper does not state).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from ..diagnostics.rank import DEFAULT_CANDIDATES, PredictorConfig
from ..training.config import TrainConfig
from .sweep import Sweep, execute, grid

TRANSFORMS = DEFAULT_CANDIDATES   # Fig. 1's seven: rotation4 hflip vflip invert grayscale jigsaw4 blur4
FIG3_TRANSFORMS = ("rotation4", "hflip", "blur4")
LAMBDA_ADD = 0.5        # Fig. 3: L_rot + λ1·L_cls
LAMBDA_ELIMINATE = 9.0  # Fig. 3: encoder loss L_rot − λ2·L_cls (min-max, gradient reversal)
CLASS_INFO = {   # label -> TrainConfig overrides (the trainer's --class-info/--class-weight)
    "normal": {},
    "add": {"class_info": "add", "class_weight": LAMBDA_ADD},
    "eliminate": {"class_info": "eliminate", "class_weight": LAMBDA_ELIMINATE},
}
BASE_AUGS = ("none", "crop_flip", "simclr")   # Table 1's rows ("crop": Fig. 1's, added)
MEASURED = ("I(A;Z)", "I(C;Z)", "I(A;C|Z)")

# What the paper publishes (Wang et al. 2024; CIFAR-10, ResNet-18 unless said otherwise).
PAPER = {
    "fig1": {"random_encoder_linear_acc": 0.34,
             "claims": ["four-fold rotation and vertical flip attain more than 60 % linear-probe "
                        "accuracy; the other five transformations no significant gain over the "
                        "random encoder (34 %)",
                        "grayscale and jigsaw training losses fall very fast; horizontal flip's "
                        "stays high"],
             "above_60": ["rotation4", "vflip"]},
    "fig3": {"lambda_add": LAMBDA_ADD, "lambda_eliminate": LAMBDA_ELIMINATE,
             "claims": ["rotation: +cls slightly better rotation accuracy than normal, -cls "
                        "worse by a larger margin",
                        "hflip and blur: class information barely helps"]},
    "table1": {"simclr_linear_acc": 0.8949,
               "claims": ["stronger base augmentation gives lower training rotation accuracy "
                          "and higher test (linear-probe) accuracy"]},
    "appd": {"claims": ["I(A;C|X) estimated as the gap between the converged cross-entropy of "
                        "rotation-only and rotation+cls training (or the accuracies)"]},
    "theorem4": {"printed": "I(Z;A) <= I(Z;C) - I(X;A|C)"},
}


@dataclass(frozen=True)
class WangMode:
    """One mode: dataset, training overrides, seeds, and the measurement settings."""

    name: str
    description: str
    dataset: str
    train: dict = field(default_factory=dict)
    seeds: int = 3
    rank_images: int | None = None
    predictor: PredictorConfig = PredictorConfig()
    measure: dict = field(default_factory=dict)   # keyword arguments of measure()
    gpu_hours: str = ""
    transforms: tuple[str, ...] = TRANSFORMS           # Fig. 1, App. D
    fig3_transforms: tuple[str, ...] = FIG3_TRANSFORMS


_TINY_TRAIN = dict(image_size=8, trans_size=8, n_train=64, n_test=40, width=4, batch_size=32,
                   knn_k=20, epochs=1, warmup_epochs=0, device="cpu", threads=1)
MODES: dict[str, WangMode] = {m.name: m for m in (
    WangMode("tiny", "seconds, for tests: digits at 8 px, 64 images, 1 epoch, 2 seeds, 3 transformations",
             "digits", train=_TINY_TRAIN, seeds=2, rank_images=150,
             predictor=PredictorConfig(max_epochs=2, patience=1, folds=2, width=4, hidden=8,
                                       fits=2),
             measure=dict(seeds=1, folds=2, n_images=80),
             transforms=("rotation4", "hflip", "vflip"), fig3_transforms=("rotation4", "hflip")),
    WangMode("quick", "CPU, digits (16 px, 1,437 train / 359 test images): the digits recipe "
             "with 5 epochs (1 warm-up), 3 seeds; one run ~45 s of one core",
             "digits", train=dict(epochs=5, warmup_epochs=1, device="cpu", threads=1),
             seeds=3, rank_images=1500, measure=dict(seeds=1, folds=3)),
    WangMode("full", "GPU, CIFAR-10 (--data-dir): Appendix B's setting, ResNet-18, random "
             "crops only, 200 epochs, batch 512, weight decay 1e-6, MLP head 2048, 3 seeds",
             "cifar10", train=dict(epochs=200, batch_size=512, weight_decay=1e-6,
                                   head_width=2048, trans_size=32, device="cuda",
                                   threads=None),
             seeds=3, rank_images=5000, measure=dict(seeds=3, folds=5, n_images=5000),
             gpu_hours="ResNet-18, 200 epochs of 50,000 images with K copies per image: "
                       "about 0.3-0.6 GPU-hours per run on one H200-class GPU (not measured)"),
)}


def get_mode(name: str) -> WangMode:
    if name not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {name!r}")
    return MODES[name]


def default_root(mode: WangMode) -> Path:
    """The sweep root every Wang script of ``mode`` shares: runs/paper-<dataset>-<mode>."""
    return Path("runs") / f"paper-{mode.dataset}-{mode.name}"


def base_config(mode: WangMode, *, data_dir: str | None = None) -> TrainConfig:
    """Pure E-SSL (``ssl="none"``): Fig. 1's setting, random crops only on the
    transformation branch, per-epoch checkpoints."""
    save = 1 if mode.name != "full" else 20
    return replace(TrainConfig(dataset=mode.dataset, data_dir=data_dir, ssl="none",
                               base_aug="crop", save_every=save, transforms=("rotation4",)),
                   **mode.train)


def seed_axis(seeds: int) -> list[tuple[int, dict]]:
    if seeds < 2:
        raise ValueError(f"seeds must be >= 2 (an interval over seeds needs two), got {seeds}")
    return [(s, {"seed": s}) for s in range(seeds)]


def transform_axis(transforms: Sequence[str]) -> list[tuple[str, dict]]:
    return [(t, {"transforms": (t,)}) for t in transforms]


def random_encoder_specs(base: TrainConfig, seeds: int) -> list[tuple[dict, TrainConfig]]:
    """The untrained network per seed (``epochs=0``): Fig. 1's random-encoder baseline."""
    return grid(replace(base, epochs=0, save_every=None), transform=[("-", {})],
                class_info=[("random", {})], seed=seed_axis(seeds))


def class_info_specs(base: TrainConfig, transforms: Sequence[str], labels: Sequence[str],
                     seeds: int) -> list[tuple[dict, TrainConfig]]:
    """transforms × class-information cells (``CLASS_INFO``) × seeds."""
    return grid(base, transform=transform_axis(transforms),
                class_info=[(c, CLASS_INFO[c]) for c in labels], seed=seed_axis(seeds))


def run_sweep(specs, root: str | Path, *, jobs: int, progress=None) -> Sweep:
    """Build the sweep, run what is not finished, refuse to go on past a failed run."""
    sweep = Sweep(root, specs)
    out = execute(sweep, jobs=jobs, progress=progress)
    if out.failed:
        folder, msg = out.failed[0]
        raise RuntimeError(f"{len(out.failed)} run(s) failed, first {folder}: {msg} "
                           f"(its worker.log has the details)")
    return sweep


# ======================================================================== measurements
def _digest(obj: Any) -> str:
    from ..types import _json_safe

    return hashlib.sha256(json.dumps(_json_safe(obj), sort_keys=True).encode()).hexdigest()[:12]


def _write(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def data_level(mode: WangMode, root: str | Path, transforms: Sequence[str] = TRANSFORMS, *,
               data_dir: str | None = None, device: str = "cpu") -> dict:
    """``rank_transforms`` on the mode's dataset: ``{t: {"h_ax", "h_axc", "i_acx" (each
    {"value", "stderr"}), "log_k", "verdict"}}`` and ``h_c`` (plug-in H(C) of the
    labels, nats), cached in ``root/rank-<digest>.json``."""
    import math

    import numpy as np

    from ..data import load_dataset
    from ..diagnostics.rank import rank_transforms

    settings = {"dataset": mode.dataset, "transforms": list(transforms),
                "n_images": mode.rank_images, "predictor": asdict(mode.predictor),
                "data_dir": data_dir, "image_size": mode.train.get("image_size")}
    path = Path(root) / f"rank-{_digest(settings)}.json"
    if path.exists():
        return json.loads(path.read_text())["data_level"]
    rep = rank_transforms(mode.dataset, list(transforms), n_images=mode.rank_images,
                          config=mode.predictor, data_dir=data_dir, device=device,
                          image_size=mode.train.get("image_size"))
    verdicts = {r["transformation"]: r["verdict"] for r in rep.extra["ranking"]}
    out: dict[str, Any] = {}
    for t in transforms:
        h = next(e for e in rep.estimates if e.quantity == "H(A|X)"
                 and e.params["transformation"] == t)
        i = next(e for e in rep.estimates if e.quantity == "I(A;C|X)"
                 and e.params["transformation"] == t)
        out[t] = {"h_ax": {"value": h.value, "stderr": h.stderr},
                  "h_axc": {"value": i.diagnostics["H(A|X,C)"],
                            "stderr": i.diagnostics["H(A|X,C)_stderr"]},
                  "i_acx": {"value": i.value, "stderr": i.stderr},
                  "log_k": i.diagnostics["log_K"], "verdict": verdicts[t]}
    labels = load_dataset(mode.dataset, split="train", data_dir=data_dir,
                          **({"image_size": mode.train["image_size"]}
                             if "image_size" in mode.train else {})).labels.numpy()
    p = np.bincount(labels) / len(labels)
    out["h_c"] = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    out["h_c_max"] = math.log(len(p))
    Path(root).mkdir(parents=True, exist_ok=True)
    _write(path, {"settings": settings, "data_level": out, "report": rep.to_dict()})
    return out


def epoch_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """A run's ``epoch_NNNN.pt`` files (``save_every``), by epoch; ``checkpoint.pt`` as
    its last epoch when the run kept none."""
    import re

    folder = Path(folder)
    found = sorted((int(m.group(1)), f) for f in folder.glob("epoch_*.pt")
                   if (m := re.fullmatch(r"epoch_(\d+)\.pt", f.name)))
    if found:
        return found
    from ..models.checkpoint import load_checkpoint

    last = folder / "checkpoint.pt"
    if not last.exists():
        raise ValueError(f"{folder}: no checkpoint (has the run finished?)")
    return [(int(load_checkpoint(last)["progress"]["epoch"]), last)]


def _measure_one(args: tuple[str, dict]) -> dict:
    from ..diagnostics.measure import measure

    import torch

    torch.set_num_threads(1)
    path, kw = args
    rep = measure(path, quantities=list(MEASURED), method="probe", **kw)
    return {q: {"value": rep.get(q, method="probe").value,
                "stderr": rep.get(q, method="probe").stderr} for q in MEASURED} | {
        "n": rep.get(MEASURED[0], method="probe").n, "epoch": rep.provenance["epoch"],
        "seconds": rep.provenance["elapsed_s"]}


def measure_checkpoints(paths: Sequence[Path], mode: WangMode, *, jobs: int = 1,
                        device: str = "cpu") -> list[dict]:
    """I(A;Z), I(C;Z), I(A;C|Z) (probe, nats, with stderr) of each checkpoint, cached
    beside it in ``<name>.measure-<digest>.json``; uncached ones measured by ``jobs``
    processes."""
    kw = {**mode.measure, "device": device}
    digest = _digest({"kw": kw, "quantities": MEASURED})
    cache = [Path(p).with_name(f"{Path(p).stem}.measure-{digest}.json") for p in paths]
    todo = [k for k, c in enumerate(cache) if not c.exists()]
    if todo:
        args = [(str(paths[k]), kw) for k in todo]
        if jobs > 1 and len(todo) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
                results = list(pool.map(_measure_one, args))
        else:
            results = [_measure_one(a) for a in args]
        for k, res in zip(todo, results):
            _write(cache[k], {"checkpoint": str(paths[k]), "settings": kw, "result": res})
    return [json.loads(c.read_text())["result"] for c in cache]


def combine(values: Sequence[dict]) -> dict:
    """``{"value", "stderr"}`` over runs (seeds) of ``{"value", "stderr"}`` items, by
    ``resampling.combine_seeds``, with the seed values."""
    from ..estimators.resampling import combine_seeds

    ens = combine_seeds([v["value"] for v in values], [v["stderr"] for v in values])
    return {"value": ens.value, "stderr": ens.stderr, "seed_sd": ens.seed_sd,
            "seed_values": [float(v) for v in ens.values]}


# ========================================================================== provenance
def provenance(mode: WangMode, root: Path, seeds: int, started: float) -> dict:
    """Where and how a result was made (``experiments.provenance``), with the mode's
    description, dataset and the full mode's GPU-hour estimate."""
    from .provenance import provenance as _provenance

    return _provenance(started, seeds=seeds, mode=mode.name, root=root,
                       extra={"mode_description": mode.description, "dataset": mode.dataset,
                              "gpu_hours_full": MODES["full"].gpu_hours})


def save_result(doc: dict, out: Path) -> Path:
    from ..types import _json_safe

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_json_safe(doc), indent=1) + "\n")
    return out


def difference(a: dict, b: dict) -> dict:
    """a − b of two ``{"value", "stderr"}`` from different runs (errors in quadrature)."""
    import math

    return {"value": a["value"] - b["value"], "stderr": math.hypot(a["stderr"], b["stderr"])}


def significance(d: dict, z: float = 1.959963984540054) -> str:
    """``"> 0"``, ``"< 0"`` or ``"~ 0"``: where the 95 % interval of ``d`` lies."""
    if d["value"] - z * d["stderr"] > 0:
        return "> 0"
    if d["value"] + z * d["stderr"] < 0:
        return "< 0"
    return "~ 0"


def script_main(doc: str, compute, plot, results: Path, figure: Path, argv=None) -> int:
    """The command line every paper_figs/wang_*.py script shares: ``--tiny`` | ``--quick``
    (default) | ``--full``, ``--plot-only``, ``--jobs``, ``--root``, ``--data-dir``,
    ``--seeds``, ``--out``, ``--figure``."""
    import argparse

    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    from .commands import add_mode_flags

    add_mode_flags(p, MODES)
    p.add_argument("--plot-only", action="store_true", help="redraw from the saved JSON")
    p.add_argument("--jobs", type=int, default=2, help="training workers (0: in process)")
    p.add_argument("--root", default=None, help="sweep root (default "
                   "runs/paper-<dataset>-<mode>, shared by the Wang scripts)")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 files (--full)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the mode's)")
    p.add_argument("--device", default=None, help="device of the measurements (default: "
                   "cuda for --full, else cpu)")
    p.add_argument("--out", type=Path, default=results)
    p.add_argument("--figure", type=Path, default=figure)
    a = p.parse_args(argv)
    if a.plot_only:
        res = json.loads(a.out.read_text())
    else:
        res = compute(a.mode, jobs=a.jobs, root=a.root, data_dir=a.data_dir, seeds=a.seeds,
                      device=a.device or ("cuda" if a.mode == "full" else "cpu"), out=a.out)
    print(f"wrote {plot(res, a.figure)}")
    return 0


def setup(mode_name: str, root, seeds) -> tuple[WangMode, Path, int, float]:
    """(mode, sweep root, seeds, start time) of a script's ``compute``."""
    mode = get_mode(mode_name)
    seeds = mode.seeds if seeds is None else int(seeds)
    seed_axis(seeds)   # validates
    return mode, Path(root or default_root(mode)), seeds, time.time()


__all__ = ["BASE_AUGS", "CLASS_INFO", "FIG3_TRANSFORMS", "LAMBDA_ADD", "LAMBDA_ELIMINATE",
           "MEASURED", "MODES", "PAPER", "TRANSFORMS", "WangMode", "base_config",
           "class_info_specs", "combine", "data_level", "difference", "significance",
           "script_main", "setup", "default_root", "epoch_checkpoints",
           "get_mode", "measure_checkpoints", "provenance", "random_encoder_specs",
           "run_sweep", "save_result", "seed_axis", "transform_axis"]
