"""Configuration of the E-SSL trainer: ``TrainConfig``, per-dataset recipes, validation
and the ``essl-info train`` command-line options (DESIGN §4, §8).

One frozen dataclass holds every choice of a run and is saved into its checkpoints. Fields
left ``None`` are filled from the dataset's recipe (``RECIPES``) by ``resolve_config``,
which also validates every value with a message that names it.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from ..data import parse_transformations
from ..data.augment import AUGMENT_PRESETS
from ..models.networks import BACKBONES, default_head_width

SSL_CHOICES = ("simclr", "ntxent", "simsiam", "none")
CLASS_INFO = ("normal", "add", "eliminate")
OBJECTIVES = ("ce", "care")   # the equivariance term: CE of a head | CARE (Gupta et al.)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``None`` means "the dataset's recipe" (see ``RECIPES``)."""

    # data
    dataset: str = "digits"
    data_dir: str | None = None
    data_params: tuple[tuple[str, Any], ...] = ()   # dataset knobs, e.g. (("m", 4),)
    image_size: int | None = None
    n_train: int | None = None        # use the first n train images (fast paths, tests)
    n_test: int | None = None
    # method
    transforms: tuple[str, ...] = ("rotation4",)
    ssl: str = "simclr"               # simclr (cross-view InfoNCE) | ntxent | simsiam | none
    lam: float = 0.4                  # weight of the transformation cross-entropy
    temperature: float = 0.5
    view_aug: str | None = None       # augmentation preset of the two SSL views
    base_aug: str | None = None       # augmentation preset of the transformation branch
    trans_size: int | None = None     # crop size of the transformation branch
    class_info: str = "normal"        # normal | add | eliminate
    class_weight: float = 1.0
    order_weight: float = 0.0         # order-preserving loss on scale-valued transforms
    order_margin: float = 0.1
    label_sample_above: int = 8       # K above which each image carries a sample of labels
    labels_per_image: int = 4         # ... of this many, drawn afresh every step
    objective: str = "ce"             # ce: predict A with a head | care: CARE (Gupta et al.)
    invariant: tuple[str, ...] = ()   # transformations applied at random to the SSL views
    # model
    backbone: str | None = None
    width: int | None = None
    proj_dims: tuple[int, ...] | None = None   # (hidden, out)
    pred_dim: int | None = None                # SimSiam predictor hidden width
    head_width: int | None = None
    # optimisation: SGD + momentum, linear warm-up then cosine decay to 0
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None           # per 256 images; the step size is lr * batch / 256
    weight_decay: float | None = None
    momentum: float = 0.9
    warmup_epochs: float | None = None
    # monitors
    knn_k: int = 200
    knn_t: float = 0.1
    final_linear_probe: bool = True
    # run (may change between a run and its resumption)
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"                 # auto (bf16 on CUDA) | bf16 | off
    channels_last: str = "auto"       # auto (on CUDA) | on | off
    compile: bool = False
    threads: int | None = None        # CPU threads for this run (None: torch's default)
    out: str | None = None
    resume: bool = False
    resume_if_present: bool = False   # resume when OUT/resume.pt exists, else start afresh
    overwrite: bool = False
    stop_after: int | None = None     # stop after this many epochs of this invocation
    save_every: int | None = None     # also keep epoch_NNNN.pt every E epochs (and 0, last)
    log_every: int = 10
    progress: bool = True


RUN_FIELDS = ("device", "amp", "channels_last", "compile", "threads", "out", "resume",
              "overwrite", "stop_after", "log_every", "progress")
RUN_FIELDS += ("save_every", "resume_if_present")   # which epochs are kept does not change the science

# Per-dataset defaults. digits: a width-16 small_cnn at 16 px (the 8x8 digits hold no more
# detail), the transformation branch at full size (at 8 px, E-SSL's half size, the head's
# rotation accuracy on whole test images fell from 0.84 to 0.58), the crop_jitter
# augmentation; one CPU thread (the same bits whatever the core count, and no collapse
# when other jobs share the cores: two OpenMP threads on two busy cores ran a step 5-10x
# slower than one); about three minutes on a shared 2-core machine. cifar: E-SSL's
# CIFAR-10 recipe (ResNet-18, SimCLR augmentation, 16 px rotation crops, batch 512,
# lr 0.06 x batch/256 for E-SimCLR, wd 5e-4, 10 warm-up epochs, 800 epochs).
_SMALL = dict(backbone="small_cnn", width=16, image_size=16, trans_size=16,
              view_aug="crop_jitter", base_aug="crop_jitter", epochs=20, batch_size=128,
              lr=0.3, weight_decay=5e-4, warmup_epochs=2, threads=1)
_CIFAR = dict(backbone="resnet18_cifar", image_size=32, trans_size=16, view_aug="simclr",
              base_aug="simclr", epochs=800, batch_size=512, lr=0.06, weight_decay=5e-4,
              warmup_epochs=10)
RECIPES: dict[str, dict[str, Any]] = {
    "digits": _SMALL,
    "rotation-world": _SMALL,
    "transform-world": _SMALL,
    "cifar10": _CIFAR,
    "cifar100": _CIFAR,
    "folder": dict(_CIFAR, backbone="small_cnn", width=32, image_size=32, trans_size=16,
                   epochs=200, batch_size=64),
}
# folder: a folder of one's own images is most often small and trained on a CPU first, so
# its default is the small 3-stage ResNet (width 32, about 0.3 M backbone parameters, a
# checkpoint of a few MB) at CIFAR's 32 px with CIFAR's augmentation and 16 px rotation
# crops, and batch 64 (a few hundred images still give several steps per epoch). ResNet-18
# at 64 px (11 M parameters, an 87 MB checkpoint and a 174 MB resume file even for 72
# images) is one option away for large folders on a GPU: --backbone resnet18
# --image-size 64 --trans-size 32 --batch-size 256.
FALLBACK_RECIPE = RECIPES["folder"]


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill ``None`` fields from the dataset's recipe and validate every value."""
    recipe = dict(RECIPES.get(cfg.dataset, FALLBACK_RECIPE))
    if cfg.backbone is not None and cfg.backbone != recipe["backbone"]:
        recipe.pop("width", None)    # the recipe's width is for the recipe's backbone
    filled = {f.name: recipe[f.name] for f in fields(cfg)
              if getattr(cfg, f.name) is None and f.name in recipe}
    cfg = replace(cfg, **filled)
    if cfg.out is None:
        cfg = replace(cfg, out=str(Path("runs") / (
            f"{cfg.dataset}-{cfg.ssl}-{'-'.join(cfg.transforms)}-lam{cfg.lam:g}-seed{cfg.seed}")))
    if cfg.ssl == "simsiam" and cfg.pred_dim is None and cfg.backbone in BACKBONES:
        hidden = cfg.proj_dims[-1] if cfg.proj_dims else None
        hidden = hidden or default_head_width(cfg.backbone, cfg.width, cfg.head_width)
        cfg = replace(cfg, pred_dim=max(16, hidden // 4))
    _validate(cfg)
    return cfg


def _validate(cfg: TrainConfig) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(msg)

    need(cfg.ssl in SSL_CHOICES, f"ssl must be one of {SSL_CHOICES}, got {cfg.ssl!r}")
    need(cfg.class_info in CLASS_INFO, f"class_info must be one of {CLASS_INFO}, got "
         f"{cfg.class_info!r}")
    need(cfg.backbone in BACKBONES, f"unknown backbone {cfg.backbone!r}; choose one of "
         f"{sorted(BACKBONES)}")
    for name in ("view_aug", "base_aug"):
        need(getattr(cfg, name) in AUGMENT_PRESETS, f"{name} must be one of "
             f"{sorted(AUGMENT_PRESETS)}, got {getattr(cfg, name)!r}")
    need(len(cfg.transforms) > 0, "transforms must name at least one transformation")
    ts = parse_transformations(list(cfg.transforms))  # unknown / duplicate -> ValueError
    need(cfg.objective in OBJECTIVES, f"objective must be one of {OBJECTIVES}, got "
         f"{cfg.objective!r}")
    need(not (cfg.objective == "care" and cfg.ssl == "none"),
         "objective 'care' only preserves inner products, which a constant embedding also "
         "does: use it with an SSL loss (--ssl simclr)")
    inv = parse_transformations(list(cfg.invariant)) if cfg.invariant else []
    need(not (inv and cfg.ssl == "none"), "--invariant augments the SSL views: it needs an "
         "SSL loss (--ssl simclr)")
    need(cfg.lam >= 0 and math.isfinite(cfg.lam), f"lambda must be >= 0, got {cfg.lam}")
    need(not (cfg.ssl == "none" and cfg.lam == 0),
         "with ssl 'none' and lambda 0 nothing trains the backbone; use lambda > 0")
    need(not (cfg.class_info != "normal" and cfg.ssl != "none" and cfg.lam == 0),
         f"class_info {cfg.class_info!r} acts through the transformation branch: it needs "
         f"lambda > 0")
    for name in ("epochs", "batch_size", "image_size", "trans_size", "knn_k", "log_every",
                 "seed", "label_sample_above", "labels_per_image"):
        v = getattr(cfg, name)
        lo = 0 if name in ("epochs", "seed") else 1
        need(isinstance(v, int) and v >= lo, f"{name} must be an integer >= {lo}, got {v!r}")
    for name in ("n_train", "n_test", "stop_after", "width", "pred_dim", "head_width",
                 "threads", "save_every"):
        v = getattr(cfg, name)
        need(v is None or (isinstance(v, int) and v >= 1), f"{name} must be None or an "
             f"integer >= 1, got {v!r}")
    for name in ("lr", "temperature", "knn_t"):
        need(getattr(cfg, name) > 0, f"{name} must be > 0, got {getattr(cfg, name)}")
    for name in ("weight_decay", "warmup_epochs", "class_weight", "order_weight",
                 "order_margin", "momentum"):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    need(cfg.proj_dims is None or (len(cfg.proj_dims) == 2 and min(cfg.proj_dims) >= 1),
         f"proj_dims must be (hidden, out), got {cfg.proj_dims}")
    # each transformation's own size rule (e.g. jigsaw4 needs even sides), now rather than
    # after the first epoch: apply it once to a blank image of every size it will see
    for t in ts + inv:
        for name in ("trans_size", "image_size"):
            size = getattr(cfg, name)
            try:
                t.apply(torch.zeros(1, 1, size, size), torch.zeros(1, dtype=torch.long))
            except (ValueError, RuntimeError) as e:  # torch raises RuntimeError for sizes
                msg = str(e).strip().splitlines()[0]
                raise ValueError(f"{name} {size} does not suit {t.name}: {msg}") from None


# Augmentations that hide a transformation's label from the head (label noise).
CONFLICTS = {"hflip": ("crop_flip", "simclr", "simclr_blur"),
              "grayscale": ("simclr", "simclr_blur"), "brightness": ("simclr", "simclr_blur"),
              "blur4": ("simclr_blur",), "blur_sigma": ("simclr_blur",)}


# ============================================================================ CLI options
def _recipe_default(field: str, otherwise: str = "") -> str:
    """"(default: 20 for digits, rotation-world; 800 for cifar10, ...)" from RECIPES."""
    groups: dict[str, list[str]] = {}
    for name, recipe in RECIPES.items():
        value = recipe.get(field)
        if value is not None:
            groups.setdefault(str(value), []).append(name)
    if not groups:
        return f"(default: {otherwise})" if otherwise else ""
    text = "; ".join(f"{v} for {', '.join(names)}" for v, names in groups.items())
    missing = [n for n in RECIPES if RECIPES[n].get(field) is None]
    if missing and otherwise:
        text += f"; {otherwise} for {', '.join(missing)}"
    return f"(default: {text})"


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``essl-info train``; defaults ``None`` mean "the dataset's recipe"."""
    d = TrainConfig()
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, help="dataset name (digits, rotation-world, "
                   "cifar10, cifar100, folder)")
    g.add_argument("--data-dir", default=None, help="folder with the dataset's files "
                   "(needed by cifar10, cifar100, folder; default: none)")
    g.add_argument("--data-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset knob, e.g. --data-param m=4 (repeatable; default: the "
                        "dataset's own)")
    g.add_argument("--image-size", type=int, default=None,
                   help="side length in pixels " + _recipe_default("image_size"))
    g.add_argument("--n-train", type=int, default=None,
                   help="use the first N train images (default: all)")
    g.add_argument("--n-test", type=int, default=None,
                   help="use the first N test images (default: all)")
    g = p.add_argument_group("method")
    g.add_argument("--transforms", default=",".join(d.transforms),
                   help="comma-separated transformations to predict")
    g.add_argument("--ssl", choices=SSL_CHOICES, default=d.ssl,
                   help="SSL loss: simclr (cross-view InfoNCE), ntxent, simsiam, or none "
                        "(pure transformation prediction)")
    g.add_argument("--lambda", dest="lam", type=float, default=d.lam,
                   help="weight of the transformation cross-entropy (0: plain SSL, the "
                        "head then trains on frozen features as a monitor)")
    g.add_argument("--temperature", type=float, default=d.temperature,
                   help="temperature of the SimCLR / NT-Xent loss")
    g.add_argument("--view-aug", default=None, choices=sorted(AUGMENT_PRESETS),
                   help="augmentation preset of the two SSL views "
                        + _recipe_default("view_aug"))
    g.add_argument("--base-aug", default=None, choices=sorted(AUGMENT_PRESETS),
                   help="base augmentation preset of the transformation branch "
                        + _recipe_default("base_aug"))
    g.add_argument("--trans-size", type=int, default=None,
                   help="crop size of the transformation branch "
                        + _recipe_default("trans_size"))
    g.add_argument("--label-sample-above", type=int, default=d.label_sample_above,
                   help="transformations with more labels than this carry a fresh sample "
                        "of --labels-per-image labels per image and step")
    g.add_argument("--labels-per-image", type=int, default=d.labels_per_image,
                   help="labels each image carries per step when its transformation has "
                        "more than --label-sample-above")
    g.add_argument("--class-info", choices=CLASS_INFO, default=d.class_info,
                   help="add class information to the features or eliminate it "
                        "(gradient reversal)")
    g.add_argument("--class-weight", type=float, default=d.class_weight,
                   help="weight of the class head's loss (with --class-info add or "
                        "eliminate)")
    g.add_argument("--order-weight", type=float, default=d.order_weight,
                   help="weight of the order-preserving loss on scale-valued transforms")
    g.add_argument("--order-margin", type=float, default=d.order_margin,
                   help="margin of the order-preserving loss")
    g.add_argument("--objective", choices=OBJECTIVES, default=d.objective,
                   help="equivariance term: ce (a head predicts the transformation) or care "
                        "(CARE, Gupta et al.: inner products preserved under a shared "
                        "transformation; the head then only monitors)")
    g.add_argument("--invariant", default="", metavar="T1,T2",
                   help="transformations applied with a random label to each SSL view "
                        "(invariance), instead of or as well as predicting them (default: none)")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", choices=sorted(BACKBONES), default=None,
                   help="backbone network " + _recipe_default("backbone"))
    g.add_argument("--width", type=int, default=None, help="backbone base width "
                   + _recipe_default("width", "the backbone's own"))
    g.add_argument("--proj-dims", default=None, metavar="HIDDEN,OUT",
                   help="projector widths (default: the backbone's head width, twice)")
    g.add_argument("--pred-dim", type=int, default=None, help="SimSiam predictor width "
                   "(default: a quarter of the projector's output, at least 16)")
    g.add_argument("--head-width", type=int, default=None, help="hidden width of the "
                   "projector and heads (default: the backbone's, scaled with --width)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=None,
                   help="training epochs " + _recipe_default("epochs"))
    g.add_argument("--batch-size", type=int, default=None,
                   help="images per step " + _recipe_default("batch_size"))
    g.add_argument("--lr", type=float, default=None, help="learning rate per 256 images "
                   "(the step size is lr * batch / 256) " + _recipe_default("lr"))
    g.add_argument("--weight-decay", type=float, default=None,
                   help="SGD weight decay " + _recipe_default("weight_decay"))
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    g.add_argument("--warmup-epochs", type=float, default=None,
                   help="linear warm-up epochs before the cosine decay "
                        + _recipe_default("warmup_epochs"))
    g.add_argument("--knn-k", type=int, default=d.knn_k,
                   help="neighbours of the kNN accuracy monitor")
    g.add_argument("--knn-t", type=float, default=d.knn_t,
                   help="temperature of the kNN accuracy monitor")
    g.add_argument("--no-linear-probe", action="store_true",
                   help="skip the offline linear probe after the last epoch")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="seeds initialisation, data order and augmentations")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device,
                   help="auto: CUDA when torch sees a GPU, else CPU")
    g.add_argument("--amp", choices=("auto", "bf16", "off"), default=d.amp,
                   help="bf16 autocast (auto: on CUDA)")
    g.add_argument("--channels-last", choices=("auto", "on", "off"), default=d.channels_last,
                   help="channels_last memory layout (auto: on CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads " + _recipe_default("threads", "torch's") +
                        "; 1 is faster on a busy machine")
    g.add_argument("--out", default=None, help="output folder (default runs/<name>)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt")
    g.add_argument("--resume-if-present", action="store_true",
                   help="continue from OUT/resume.pt when there is one, else start a new "
                        "run (for schedulers that rerun one command until it finishes)")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in OUT")
    g.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many epochs of this invocation (resume later "
                        "with --resume; default: run to --epochs)")
    g.add_argument("--log-every", type=int, default=d.log_every,
                   help="write the loss to log.jsonl every N steps")
    g.add_argument("--save-every", type=int, default=None, metavar="E",
                   help="also keep OUT/epoch_NNNN.pt every E epochs, the untrained model "
                        "and the last epoch (information dynamics: measure OUT; default: "
                        "none, only checkpoint.pt)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (one line "
                   "per epoch is still printed on stderr)")


_FLAG_NAMES = {"lam": "--lambda", "data_params": "--data-param",
               "final_linear_probe": "--no-linear-probe"}


def flag_name(field: str) -> str:
    """The ``essl-info train`` option of TrainConfig ``field`` (``lam`` -> ``--lambda``)."""
    return _FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def as_flags(field: str, value: Any) -> str:
    """The ``essl-info train`` option(s) that set TrainConfig ``field`` to ``value``
    (``as_flags("epochs", 6) == "--epochs 6"``), for messages that say what to pass."""
    flag = flag_name(field)
    if field == "final_linear_probe":
        return f"(without {flag})" if value else flag
    if field == "data_params":
        return " ".join(f"{flag} {k}={json.dumps(v) if not isinstance(v, str) else v}"
                        for k, v in (value or ()))
    if value is None:
        return f"(without {flag})"
    if isinstance(value, (list, tuple)):
        return f"{flag} {','.join(map(str, value))}"
    return f"{flag} {value}"


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of parsed ``essl-info train`` arguments (not yet resolved)."""
    params = []
    for item in args.data_param:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--data-param must look like KEY=VALUE, got {item!r}")
        params.append((key.strip(), _parse_value(value.strip())))
    proj = None
    if args.proj_dims:
        try:
            proj = tuple(int(v) for v in args.proj_dims.split(","))
        except ValueError:
            raise ValueError(f"--proj-dims must be HIDDEN,OUT integers, got "
                             f"{args.proj_dims!r}") from None
    transforms = tuple(t.strip() for t in args.transforms.split(",") if t.strip())
    return TrainConfig(
        dataset=args.dataset, data_dir=args.data_dir, data_params=tuple(params),
        image_size=args.image_size, n_train=args.n_train, n_test=args.n_test,
        transforms=transforms, ssl=args.ssl, lam=args.lam, temperature=args.temperature,
        view_aug=args.view_aug, base_aug=args.base_aug, trans_size=args.trans_size,
        class_info=args.class_info, class_weight=args.class_weight,
        order_weight=args.order_weight, order_margin=args.order_margin,
        label_sample_above=args.label_sample_above, labels_per_image=args.labels_per_image,
        objective=args.objective,
        invariant=tuple(t.strip() for t in args.invariant.split(",") if t.strip()),
        backbone=args.backbone, width=args.width, proj_dims=proj, pred_dim=args.pred_dim,
        head_width=args.head_width, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum,
        warmup_epochs=args.warmup_epochs, knn_k=args.knn_k, knn_t=args.knn_t,
        final_linear_probe=not args.no_linear_probe, seed=args.seed, device=args.device,
        amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        threads=args.threads, out=args.out,
        resume=args.resume, resume_if_present=args.resume_if_present,
        overwrite=args.overwrite, stop_after=args.stop_after,
        log_every=args.log_every, progress=not args.no_progress,
        save_every=getattr(args, "save_every", None))
