"""Command-line glue of ``essl-info measure`` and ``essl-info rank-transforms``: their
options, the runs over several checkpoints (nothing lost when one fails) and the output
(table, JSON, CSV, plot). The computations are ``measure.measure``,
``any_model.measure_features`` and ``rank.rank_transforms``."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import CheckpointError
from ..types import Report
from .any_model import measure_features
from .equivariance import QUANTITIES as EQUIVARIANCE
from .features import LAYERS
from .measure import (EXIT_SOME_FAILED, METHOD_CHOICES, MIN_IMAGES, checkpoint_paths,
                      measure)
from .quantities import PROBE_SEEDS, QUANTITIES
from .rank import rank_transforms

def add_measure_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", nargs="*", help="checkpoint file(s) or run folder(s) (default: "
                   "the bundled digits checkpoint)")
    p.add_argument("--dataset", default=None, help="dataset to measure on (default: the "
                   "checkpoint's)")
    p.add_argument("--data-dir", default=None, help="folder with the dataset's files "
                   "(default: the one recorded in the checkpoint)")
    p.add_argument("--data-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset knob, e.g. --data-param m=2 (repeatable; default: the "
                        "checkpoint's)")
    p.add_argument("--quantity", action="append", default=None,
                   choices=list(QUANTITIES) + list(EQUIVARIANCE),
                   help="a quantity to estimate (repeatable; default: all information "
                        "quantities); quote it in a shell: --quantity 'I(A;C|Z)'")
    p.add_argument("--method", choices=sorted(METHOD_CHOICES), default="auto",
                   help="auto: probe and kNN (flagged where they disagree)")
    p.add_argument("--layer", choices=list(LAYERS), default="backbone",
                   help="the representation Z: backbone features or projector output")
    p.add_argument("--transforms", default=None,
                   help="comma-separated transformations (default: the checkpoint's)")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="the dataset split to measure on")
    p.add_argument("--n-images", type=int, default=None,
                   help="a seeded subset of images (default: all of the split; at least "
                        f"{MIN_IMAGES})")
    p.add_argument("--probe-seeds", type=int, default=PROBE_SEEDS, metavar="S",
                   help="fits per probe quantity (fold split, inner split); the value is "
                        "their mean and its error includes their spread")
    p.add_argument("--arch", default=None, help="backbone of a foreign checkpoint "
                   "(resnet18_cifar, resnet18, resnet50), optionally FORMAT:ARCH to force "
                   "a layout (torchvision:resnet50, timm:resnet50, solo-learn:resnet18, "
                   "lightly:resnet18); needs --dataset (default: none, the file is an "
                   "essl_info checkpoint)")
    p.add_argument("--equivariance", action="store_true", help="also the geometric "
                   "equivariance metrics: Wahba error and gamma_f (Gupta et al.'s CARE)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the image subset, the probes' folds and the kNN tie noise")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    out.add_argument("--csv", default=None, metavar="FILE",
                     help="write the estimates as CSV (the table is printed as well; --csv "
                          "and --json exclude each other; default: no CSV)")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="bar chart with 95%% intervals (one checkpoint) or quantities "
                        "against epoch (several); .png, .pdf or .svg (default: no plot)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--features", default=None, metavar="FILE.npz",
                   help="measure features computed elsewhere instead of a checkpoint: an "
                        ".npz (numpy.savez) with arrays z (N, d) float features, a (N,) int "
                        "transformation label, c (N,) int class, image_id (N,) int source "
                        "image of each row, and optionally transformation (a string naming "
                        "A); --quantity, --method, --seed and the outputs apply (default: "
                        "none, measure a checkpoint)")


def _run_features_cli(args: argparse.Namespace):
    """The Report of ``--features FILE.npz`` (options that need a model are refused)."""
    from .features import read_features_npz

    given = [f"--{o}" for o, v in (("arch", args.arch), ("dataset", args.dataset),
                                   ("data-dir", args.data_dir), ("transforms", args.transforms),
                                   ("n-images", args.n_images)) if v is not None]
    given += ["a checkpoint"] if args.ckpt else []
    given += ["--layer"] if args.layer != "backbone" else []
    given += ["--data-param"] if args.data_param else []
    if given:
        raise ValueError(f"--features measures the arrays in the file; it takes no "
                         f"{', '.join(given)}")
    arrays = read_features_npz(args.features)
    return measure_features(arrays["z"], a=arrays["a"], c=arrays["c"],
                            image_id=arrays["image_id"], quantities=args.quantity,
                            method=args.method, seed=args.seed, device=args.device,
                            seeds=args.probe_seeds,
                            transformation=arrays.get("transformation", "custom"),
                            name=str(args.features))


def run_measure_cli(args: argparse.Namespace) -> int:
    from ..output_paths import check_output_file
    from . import report as fmt

    paths = checkpoint_paths(args.ckpt) if args.ckpt and not args.features else [None]
    # fail before the work, not after
    if args.csv:
        check_output_file(args.csv, "--csv")
    if args.plot:
        check_output_file(args.plot, "--plot")
        fmt.check_plot_path(args.plot)
    kw = dict(dataset=args.dataset, quantities=args.quantity, layer=args.layer,
              method=args.method, n_images=args.n_images, seed=args.seed, split=args.split,
              data_dir=args.data_dir, transformations=args.transforms, arch=args.arch,
              device=args.device, progress=not args.quiet, seeds=args.probe_seeds,
              equivariance=args.equivariance,
              dataset_params=data_params(args.data_param))
    if args.features:   # arrays from anywhere: one report, its problem is the command's
        reports, failures = [_run_features_cli(args)], []
    elif len(paths) == 1:   # one checkpoint: its problem is the command's, one line, exit 2
        reports, failures = [measure(paths[0], **kw)], []
    else:
        reports, failures = measure_each(paths, **kw)
        if not reports:
            raise CheckpointError(f"none of the {len(paths)} checkpoints could be measured "
                                  f"(first: {failures[0][0]}: {failures[0][1]})")
    labels = fmt.run_labels([r.checkpoint for r in reports])
    if args.json:
        print(fmt.to_json(reports[0] if len(reports) == 1 and not failures else reports))
    else:
        print(fmt.format_table(reports[0]) if len(reports) == 1 and not failures else
              fmt.format_runs_table(reports, labels=labels))
    if args.csv:
        fmt.write_csv(reports, args.csv)
    if args.plot:
        (fmt.plot_report(reports[0], args.plot) if len(reports) == 1 else
         fmt.plot_runs(reports, args.plot, method="probe"))
    if args.csv or args.plot:
        print("wrote " + ", ".join(x for x in (args.csv, args.plot) if x),
              file=sys.stderr)
    for path, reason in failures:
        where = "" if path in reason else f"{path}: "
        print(f"essl-info: error: not measured: {where}{reason}", file=sys.stderr)
    if failures:
        print(f"essl-info: {len(failures)} of {len(paths)} checkpoints could not be measured "
              f"(exit code {EXIT_SOME_FAILED}); the others are reported above",
              file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def measure_each(paths: Sequence, **kw) -> tuple[list[Report], list[tuple[str, str]]]:
    """``measure`` on each path in turn: (the reports of those that could be measured, in
    the order given; ``(path, reason)`` of those that could not). A user-facing problem
    with one file (unreadable, wrong data, diverged weights) does not lose the others;
    anything else is a bug and propagates."""
    reports, failures = [], []
    for path in paths:
        try:
            reports.append(measure(path, **kw))
        except (ValueError, OSError) as e:
            text = str(e).strip()
            failures.append((str(path), text.splitlines()[0] if text else type(e).__name__))
    return reports, failures


def add_rank_arguments(p: argparse.ArgumentParser) -> None:
    from .rank import DEFAULT_CANDIDATES, RANK_IMAGE_SIZE

    p.add_argument("--dataset", required=True, help="dataset name (digits, rotation-world, "
                   "cifar10, cifar100, folder)")
    p.add_argument("--transforms", default=",".join(DEFAULT_CANDIDATES),
                   help="comma-separated candidates (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="folder with the dataset's files "
                   "(needed by cifar10, cifar100, folder; default: none)")
    p.add_argument("--data-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset knob, e.g. --data-param m=2 (repeatable; default: the "
                        "dataset's own)")
    p.add_argument("--split", choices=("train", "test"), default="train",
                   help="the dataset split whose images the predictors learn from")
    p.add_argument("--image-size", type=int, default=None,
                   help=f"side length shown to the predictors (default {RANK_IMAGE_SIZE})")
    p.add_argument("--n-images", type=int, default=None,
                   help="a seeded subset of images (default: all, at most 5000)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the image subset, the folds and the predictors")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the predictors (default 1: fastest on a busy "
                        "machine)")
    p.add_argument("--workers", type=int, default=None,
                   help="transformations fitted at the same time, in threads (default: "
                        "min(2, CPU count) on CPU, 1 on a GPU); the results do not depend "
                        "on it")
    p.add_argument("--fits", type=int, default=None,
                   help="independent fits of the predictors per transformation, combined "
                        "into the error bars (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--choose", action="store_true", help="also decide, per transformation, "
                   "invariant or equivariant (diagnostics.choice states the rule)")


# load_dataset arguments that have their own command-line option
_OWN_OPTIONS = {"name": "dataset", "split": "split", "seed": "seed",
                "image_size": "image-size", "data_dir": "data-dir"}


def data_params(items: Sequence[str]) -> dict:
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
                          device=args.device, threads=args.threads, workers=args.workers,
                          config=None if args.fits is None else PredictorConfig(fits=args.fits),
                          progress=not args.quiet, **data_params(args.data_param))
    if args.choose:   # Xie et al.'s question, answered by diagnostics.choice's rule
        from .choice import choose_roles, format_choices, train_flags

        choices = choose_roles(rep)
        rep.extra["choice"] = {"roles": choices, "train_flags": train_flags(choices)}
    print(fmt.to_json(rep) if args.json else fmt.format_rank_table(rep))
    if args.choose and not args.json:
        print(format_choices(choices))
    return 0


__all__ = ["add_measure_arguments", "add_rank_arguments", "data_params", "measure_each",
           "run_measure_cli", "run_rank_cli"]
