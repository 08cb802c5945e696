"""``measure``: the information quantities of a trained representation, with error bars.

    >>> from essl_info import measure
    >>> report = measure("runs/digits/checkpoint.pt")        # doctest: +SKIP
    >>> report.get("I(A;C|Z)", method="probe")               # doctest: +SKIP

For each transformation of the checkpoint, every held-out image (test split by default) is
shown to the model under all K labels (``features.extract_features``); the quantities of
DESIGN §1 (``quantities.QUANTITIES``) are estimated from those features by the probe
(primary) and by kNN on principal components (second opinion), and the report flags where
the two disagree beyond their errors. All values in nats, signed.

Also here: the CLI glue of ``essl-info measure`` and ``essl-info rank-transforms``
(``rank_transforms`` itself lives in ``essl_info.diagnostics.rank`` and is re-exported).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..data import parse_transformations
from ..errors import CheckpointError, DataError
from .features import LAYERS, check_layer, extract_features
from .quantities import METHODS, QUANTITIES, Context, disagreements, estimate_quantities
from ..estimators.probe_families import resolve_device
from .rank import rank_transforms
from ..types import Report

METHOD_CHOICES = {"auto": METHODS, "probe": ("probe",), "knn": ("ross",)}
CHECKPOINT_SUFFIXES = (".pt", ".pth")
RESUME_NAME = "resume.pt"   # the trainer's resume copy of checkpoint.pt: not measured twice


# ======================================================================= the pieces
def load_for_measure(checkpoint, *, arch: str | None = None, dataset=None,
                     data_dir: str | None = None, seed: int = 0,
                     dataset_params: Mapping[str, Any] | None = None) -> tuple[dict, str]:
    """(checkpoint dict, its name) from a path, a loaded dict, or None (the bundled
    checkpoint). With ``arch``, the file is a foreign checkpoint (``importers``)."""
    from ..models.checkpoint import bundled_checkpoint_path, load_checkpoint, validate_checkpoint

    if isinstance(checkpoint, Mapping):
        return validate_checkpoint(dict(checkpoint), "checkpoint"), "<in memory>"
    path = Path(bundled_checkpoint_path() if checkpoint is None else checkpoint)
    if arch is not None:
        from ..models.importers import import_foreign

        if dataset is None or not isinstance(dataset, str):
            raise ValueError("--arch needs --dataset: the data to measure an imported "
                             "checkpoint on")
        return import_foreign(path, arch=arch, dataset=dataset, data_dir=data_dir,
                              seed=seed, **dict(dataset_params or {})), str(path)
    return load_checkpoint(path), str(path)


def measurement_dataset(ckpt: Mapping[str, Any], dataset=None, *, split: str = "test",
                        data_dir: str | None = None,
                        dataset_params: Mapping[str, Any] | None = None):
    """The images to measure on: ``dataset`` (an ImageDataset, or a registry name) or the
    checkpoint's own dataset with its knobs, at the model's image size; ``dataset_params``
    override the knobs."""
    from ..data import ImageDataset, load_dataset

    if isinstance(dataset, ImageDataset):
        return dataset
    data = ckpt.get("data", {})
    own = data.get("dataset")
    name = dataset or own
    if not name:
        raise ValueError("the checkpoint records no dataset; pass --dataset")
    kw: dict[str, Any] = {"image_size": ckpt["model"].get("image_size")}
    if name == own:
        params = dict(data.get("params") or {})
        kw.update({k: v for k, v in params.items()
                   if k not in ("name", "split", "image_size", "data_dir")})
        kw["data_dir"] = data_dir or params.get("data_dir") or data.get("data_dir")
    else:
        kw["data_dir"] = data_dir
    kw.update(dataset_params or {})
    try:
        return load_dataset(name, split=split, **kw)
    except DataError as e:
        hint = "" if kw.get("data_dir") else " (pass --data-dir)"
        raise DataError(f"cannot load dataset {name!r} to measure on: {e}{hint}") from None


def _transformations(ckpt: Mapping[str, Any], requested) -> list[str]:
    """Names of the transformations to measure, checked before any work is done."""
    if requested is None or (isinstance(requested, str) and not requested.strip()):
        requested = [t["name"] for t in ckpt.get("transformations", [])]
        if not requested:
            raise ValueError("the checkpoint records no transformation; pass --transforms")
    return [t.name for t in parse_transformations(requested)]


# ============================================================================ measure
def measure(checkpoint=None, *, dataset=None, quantities: Sequence[str] | None = None,
            layer: str = "backbone", method: str = "auto", n_images: int | None = None,
            seed: int = 0, split: str = "test", data_dir: str | None = None,
            transformations=None, arch: str | None = None, device: str = "cpu",
            batch_size: int = 256, folds: int = 5, k: int = 3, progress: bool = False,
            dataset_params: Mapping[str, Any] | None = None) -> Report:
    """Information quantities of a checkpoint's representation, in nats.

    Parameters
    ----------
    checkpoint : path, loaded checkpoint dict, or None for the bundled digits checkpoint.
    dataset : registry name or ``ImageDataset`` (default: the checkpoint's own dataset).
    quantities : names from ``QUANTITIES`` (default: all).
    layer : ``"backbone"`` (default) or ``"projector"``.
    method : ``"auto"`` (probe and kNN, flagged where they disagree), ``"probe"``, ``"knn"``.
    n_images : measure on a seeded random subset of this many images (default: all).
    split : ``"test"`` (held-out images, default) or ``"train"``.
    transformations : names (default: the checkpoint's transformations).
    arch : backbone of a foreign checkpoint (``essl_info.models.importers``); needs ``dataset``.
    dataset_params : dataset knobs (e.g. rotation-world's ``m``), over the checkpoint's.
    folds, k : cross-fitting folds of the probes; neighbours of the kNN estimators.

    Returns
    -------
    Report
        ``estimates``: per transformation and quantity, the probe estimate, the kNN one
        (method ``"ross"``) and the plug-in I(A;C); each carries ``params["transformation"]``
        and ``params["layer"]``. ``extra["flags"]``: disagreements and collapsed features.
    """
    from .. import __version__
    from ..models.checkpoint import model_from_checkpoint

    t0 = time.perf_counter()
    names = list(QUANTITIES) if quantities is None else list(quantities)
    unknown = [q for q in names if q not in QUANTITIES]
    if unknown:
        raise ValueError(f"unknown quantity {unknown[0]!r}; choose from {list(QUANTITIES)}")
    if method not in METHOD_CHOICES:
        raise ValueError(f"method must be one of {sorted(METHOD_CHOICES)}, got {method!r}")
    check_layer(layer)
    device = str(resolve_device(device))
    ckpt, name = load_for_measure(checkpoint, arch=arch, dataset=dataset, data_dir=data_dir,
                                  seed=seed, dataset_params=dataset_params)
    parts = ckpt.get("train", {}).get("imported_parts")
    if layer == "projector" and parts is not None and "projector" not in parts:
        raise ValueError(f"{name} was imported without a projector (its layout has none); "
                         f"measure --layer backbone")
    with torch.random.fork_rng(devices=[]):   # building the network draws initial weights
        model = model_from_checkpoint(ckpt, device=device)
    ds = measurement_dataset(ckpt, dataset, split=split, data_dir=data_dir,
                             dataset_params=dataset_params)
    if n_images is not None:
        if not 2 <= int(n_images):
            raise ValueError(f"n_images must be at least 2, got {n_images}")
        if n_images < len(ds):
            rng = np.random.default_rng(seed)
            ds = ds.subset(np.sort(rng.choice(len(ds), size=int(n_images), replace=False)))

    estimates, flags, rows = [], [], {}
    for t in _transformations(ckpt, transformations):
        feats = extract_features(model, ds, t, layer=layer, batch_size=batch_size,
                                 device=device, progress=progress)
        rows[t] = len(feats)
        if feats.collapsed:
            flags.append({"kind": "collapsed", "transformation": t,
                          "message": f"[{t}] the {layer} features are collapsed (all "
                                     f"{len(feats)} rows identical): Z carries no "
                                     f"information, every I(.;Z) is ~0"})
        ctx = Context(feats, seed=seed, folds=folds, device=device, k=k)
        estimates += estimate_quantities(ctx, names, METHOD_CHOICES[method])
    flags += disagreements(estimates)
    progress_info = ckpt.get("progress", {})
    provenance = {
        "library_version": __version__, "seed": seed, "layer": layer, "split": ds.split,
        "method": method, "n_images": len(ds), "rows": rows,
        "transformations": list(rows), "epoch": progress_info.get("epoch"),
        "step": progress_info.get("step"), "dataset_params": dict(ds.params),
        "imported": bool(ckpt.get("train", {}).get("imported")), "device": str(device),
        "probe": {"family": "logistic", "folds": folds}, "knn": {"k": k},
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }
    return Report(estimates, checkpoint=name, dataset=ds.name, provenance=provenance,
                  extra={"flags": flags} if flags else {})


def checkpoint_paths(paths: Sequence[str]) -> list[Path]:
    """Files to measure: each path given, or every ``*.pt``/``*.pth`` in a directory (a
    run folder), leaving out the trainer's ``resume.pt`` copy of ``checkpoint.pt``."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in CHECKPOINT_SUFFIXES
                           and f.is_file() and not (f.name == RESUME_NAME and
                                                    (p / "checkpoint.pt").exists()))
            if not found:
                raise CheckpointError(f"no checkpoint files (*.pt, *.pth) in directory {p}")
            out += found
        else:
            out.append(p)
    return out


# ================================================================================ CLI
def add_measure_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", nargs="*", help="checkpoint file(s) or run folder(s) (default: "
                   "the bundled digits checkpoint)")
    p.add_argument("--dataset", default=None, help="dataset to measure on (default: the "
                   "checkpoint's)")
    p.add_argument("--data-dir", default=None, help="folder with the dataset's files")
    p.add_argument("--data-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset knob, e.g. --data-param m=2 (repeatable)")
    p.add_argument("--quantity", action="append", choices=list(QUANTITIES), default=None,
                   help="a quantity to estimate (repeatable; default: all)")
    p.add_argument("--method", choices=sorted(METHOD_CHOICES), default="auto",
                   help="auto: probe and kNN (flagged where they disagree)")
    p.add_argument("--layer", choices=list(LAYERS), default="backbone")
    p.add_argument("--transforms", default=None,
                   help="comma-separated transformations (default: the checkpoint's)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--n-images", type=int, default=None, help="a seeded subset of images")
    p.add_argument("--arch", default=None, help="backbone of a foreign checkpoint "
                   "(resnet18_cifar, resnet18, resnet50); needs --dataset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    out.add_argument("--csv", default=None, metavar="FILE", help="write the estimates as CSV")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="bar chart with 95%% intervals (one checkpoint) or quantities "
                        "against epoch (several); .png, .pdf or .svg")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_measure_cli(args: argparse.Namespace) -> int:
    from . import report as fmt

    paths = checkpoint_paths(args.ckpt) if args.ckpt else [None]
    # fail before the work, not after
    if args.csv and not Path(args.csv).resolve().parent.is_dir():
        raise FileNotFoundError(f"output folder of {args.csv!r} does not exist")
    if args.plot:
        fmt.check_plot_path(args.plot)
    reports = [measure(p, dataset=args.dataset, quantities=args.quantity,
                       layer=args.layer, method=args.method, n_images=args.n_images,
                       seed=args.seed, split=args.split, data_dir=args.data_dir,
                       transformations=args.transforms, arch=args.arch, device=args.device,
                       progress=not args.quiet,
                       dataset_params=_data_params(args.data_param)) for p in paths]
    if args.json:
        print(fmt.to_json(reports[0] if len(reports) == 1 else reports))
    else:
        print(fmt.format_table(reports[0]) if len(reports) == 1 else
              fmt.format_runs_table(reports, method="probe"))
    if args.csv:
        fmt.write_csv(reports, args.csv)
    if args.plot:
        (fmt.plot_report(reports[0], args.plot) if len(reports) == 1 else
         fmt.plot_runs(reports, args.plot, method="probe"))
    if args.csv or args.plot:
        print("wrote " + ", ".join(x for x in (args.csv, args.plot) if x),
              file=sys.stderr)
    return 0


def add_rank_arguments(p: argparse.ArgumentParser) -> None:
    from .rank import DEFAULT_CANDIDATES, RANK_IMAGE_SIZE

    p.add_argument("--dataset", required=True, help="dataset name (digits, rotation-world, "
                   "cifar10, cifar100, folder)")
    p.add_argument("--transforms", default=",".join(DEFAULT_CANDIDATES),
                   help="comma-separated candidates (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="folder with the dataset's files")
    p.add_argument("--data-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset knob, e.g. --data-param m=2 (repeatable)")
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--image-size", type=int, default=None,
                   help=f"side length shown to the predictors (default {RANK_IMAGE_SIZE})")
    p.add_argument("--n-images", type=int, default=None,
                   help="a seeded subset of images (default: all, at most 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the predictors (default 1: fastest on a busy "
                        "machine)")
    p.add_argument("--fits", type=int, default=None,
                   help="independent fits of the predictors per transformation, combined "
                        "into the error bars (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# load_dataset arguments that have their own command-line option
_OWN_OPTIONS = {"name": "dataset", "split": "split", "seed": "seed",
                "image_size": "image-size", "data_dir": "data-dir"}


def _data_params(items: Sequence[str]) -> dict:
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--data-param must look like KEY=VALUE, got {item!r}")
        if key.strip() in _OWN_OPTIONS:
            raise ValueError(f"--data-param {key.strip()}=... is set by its own option "
                             f"(--{_OWN_OPTIONS[key.strip()]}), not a dataset knob")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def run_rank_cli(args: argparse.Namespace) -> int:
    from . import report as fmt
    from .transform_predictors import PredictorConfig

    rep = rank_transforms(args.dataset, args.transforms, seed=args.seed,
                          n_images=args.n_images, split=args.split,
                          image_size=args.image_size, data_dir=args.data_dir,
                          device=args.device, threads=args.threads,
                          config=None if args.fits is None else PredictorConfig(fits=args.fits),
                          progress=not args.quiet, **_data_params(args.data_param))
    print(fmt.to_json(rep) if args.json else fmt.format_rank_table(rep))
    return 0


__all__ = ["QUANTITIES", "add_measure_arguments", "add_rank_arguments", "checkpoint_paths",
           "load_for_measure", "measure", "measurement_dataset", "rank_transforms",
           "run_measure_cli", "run_rank_cli"]
