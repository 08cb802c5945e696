"""The bundled E-SSL trainer: ``train(TrainConfig)`` (DESIGN §8, issue 4).

E-SSL as in Dangovski et al. (ICLR 2022): two SSL views through a shared backbone and
projector; a LayerNorm MLP head on the backbone features predicts the transformation of a
separate, smaller crop, with all K transformed copies of each image in the batch;
``loss = SSL + λ · CE`` (λ = 0.4 for SimCLR). Options for the papers' experiments:
``ssl="none"`` (pure transformation prediction, Wang et al. 2024), the base augmentation of
the transformation branch, class information added or eliminated (gradient reversal), and
an order-preserving loss for scale-valued transformations (our reading of Xie et al. 2022),
the CARE objective in place of the CE head (``objective="care"``, Gupta et al.) and any
transformation as an invariance augmentation of the SSL views (``invariant``).

Everything a run depends on is one frozen ``TrainConfig``, saved into the checkpoint.
Fields left ``None`` are filled from the dataset's recipe (``RECIPES``) by
``resolve_config``; the resolved config is what is saved. The learning rate is a pure
function of the step (``lr_at``); each epoch's data order and augmentations come from
generators seeded by (seed, epoch, rank), so ``--resume`` from an epoch boundary continues
bit-identically on CPU. Files in ``out``: ``checkpoint.pt`` (the last good epoch),
``resume.pt`` (the same plus optimizer state), ``log.jsonl`` (one JSON object per line),
and with ``save_every`` ``epoch_NNNN.pt`` (epoch 0, every E-th and the last).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..models.checkpoint import (SCHEMA_VERSION, load_checkpoint, load_weights,
                                 save_checkpoint, utc_now)
from ..output_paths import check_output_dir
from ..data import Transformation, load_dataset, parse_transformations, sampled_transformed
from ..data.augment import augment
from ..errors import EsslInfoError
from .losses import SSL_LOSSES, care_loss, class_ce, order_loss, transformation_ce
from ..models.networks import ESSLModel, count_parameters, model_spec
from .monitors import evaluate
from .preflight import check_trainable, resume_mismatch
from .runtime import (Runtime, any_rank, barrier, close_distributed, environment, gather,
                      init_distributed, plan_runtime, prepare_model)
from .config import (CONFLICTS, RECIPES, RUN_FIELDS, TrainConfig,  # noqa: F401
                           add_train_arguments, config_from_args, resolve_config)


class TrainingDiverged(EsslInfoError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


# ============================================================================= schedules
def lr_at(step: int, *, base_lr: float, total_steps: int, warmup_steps: int) -> float:
    """Step size at optimisation step ``step`` (0-based): linear warm-up from 0 over
    ``warmup_steps``, then half-cosine decay to 0 at ``total_steps`` (as E-SSL's code)."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (seed, epoch, rank, stream), via numpy SeedSequence."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def term_weight(name: str, cfg: TrainConfig) -> float:
    """The weight of a named loss term in the total."""
    kind = name.split("/")[0]
    if kind == "ce":  # a monitor head on frozen features when lambda = 0 or under CARE
        return cfg.lam if (cfg.ssl != "none" and cfg.lam > 0 and cfg.objective == "ce") \
            else 1.0
    return {"ssl": 1.0, "order": cfg.order_weight, "class": cfg.class_weight,
            "probe": 1.0, "care": cfg.lam}[kind]


def invariance_views(v: torch.Tensor, names: tuple[str, ...],
                     g: torch.Generator) -> torch.Tensor:
    """``v`` (B, C, H, W) with each transformation of ``names`` applied under a uniform
    random label per image, in order: an invariance augmentation of the SSL views
    (Dangovski et al. 2022, Fig. 1: the transformation made invariant, not predicted)."""
    for t in parse_transformations(list(names)) if names else []:
        a = torch.randint(t.n_classes, (v.shape[0],), generator=g, device=v.device)
        v = (t.unchecked or t.apply)(v, a)   # labels in range by construction: no sync
    return v


# ======================================================================= the training step
def labels_per_image(t: Transformation, cfg: TrainConfig) -> int:
    """Copies of each image the transformation branch carries per step: all K labels up
    to ``cfg.label_sample_above``, else ``cfg.labels_per_image`` drawn afresh (the order
    loss of a scale-valued transformation needs every strength, so it keeps all K)."""
    keep_all = t.n_classes <= cfg.label_sample_above or (cfg.order_weight > 0
                                                         and t.scale_valued)
    return t.n_classes if keep_all else min(cfg.labels_per_image, t.n_classes)


def training_step(fwd, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  transforms: list[Transformation], cfg: TrainConfig, rt: Runtime,
                  g: torch.Generator, lr: float) -> dict[str, torch.Tensor]:
    """One optimisation step on images x (B, C, H, W) in [0, 1] with labels y (B,).
    Returns the named loss terms, their weighted sum ``loss`` and the heads' accuracies
    ``acc/<name>``, as detached tensors (no host synchronisation)."""
    for group in opt.param_groups:
        group["lr"] = lr
    # 1. inputs: two SSL views; one smaller crop carrying all K copies per transformation
    #    (a fresh draw of cfg.labels_per_image of them when K > cfg.label_sample_above)
    views = [rt.to_input(invariance_views(augment(x, cfg.view_aug, generator=g),
                                          cfg.invariant, g)) for _ in range(2)] \
        if cfg.ssl != "none" else []
    crop = augment(x, cfg.base_aug, generator=g, out_size=cfg.trans_size)
    trans_inputs, trans_labels = {}, {}
    for t in transforms:
        x_all, a, _ = sampled_transformed(crop, t, labels_per_image(t, cfg), g)  # (B*m, ...)
        trans_inputs[t.name], trans_labels[t.name] = rt.to_input(x_all), a
    # 2. forward (one call, so DDP sees it)
    trans_grad = cfg.ssl == "none" or cfg.lam > 0
    with rt.autocast():
        out = fwd(views, trans_inputs, probe_from="view" if views else "trans",
                  trans_grad=trans_grad, head_grad=cfg.objective == "ce", n_images=len(x))
    # 3. named loss terms
    terms: dict[str, torch.Tensor] = {}
    if cfg.ssl != "none":
        z = [gather(zi, rt) for zi in out["z"]]
        p = [gather(pi, rt) for pi in out["p"]] if out["p"] is not None else None
        terms["ssl"] = SSL_LOSSES[cfg.ssl](z, p, cfg.temperature)
    for t in transforms:
        terms[f"ce/{t.name}"] = transformation_ce(out["trans_logits"][t.name],
                                                  trans_labels[t.name])
        if cfg.objective == "care" and trans_grad:
            terms[f"care/{t.name}"] = care_loss(out["trans_h"][t.name], t.n_classes)
        if cfg.order_weight > 0 and t.scale_valued and trans_grad:
            terms[f"order/{t.name}"] = order_loss(out["trans_h"][t.name],
                                                  torch.tensor(t.strengths), cfg.order_margin)
    if out["class_logits"] is not None:
        terms["class"] = class_ce(out["class_logits"],
                                  torch.cat([y.repeat(len(trans_labels[t.name]) // len(y))
                                             for t in transforms]))
    terms["probe"] = class_ce(out["probe_logits"], y)
    # 4. weighted sum, backward, step
    loss = sum(term_weight(k, cfg) * v for k, v in terms.items())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    # 5. what the log needs (no host sync here)
    stats = {k: v.detach() for k, v in terms.items()}
    stats["loss"] = loss.detach()
    for t in transforms:
        hits = (out["trans_logits"][t.name].argmax(1) == trans_labels[t.name]).sum()
        stats[f"acc/{t.name}"] = hits.float() / trans_labels[t.name].numel()
    return stats


# ================================================================================ train
@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    resume: Path
    log: Path
    metrics: dict
    epochs_done: int


def _load_data(cfg: TrainConfig):
    kw = dict(image_size=cfg.image_size, seed=cfg.seed, **dict(cfg.data_params))
    if cfg.data_dir is not None:
        kw["data_dir"] = cfg.data_dir
    train_ds = load_dataset(cfg.dataset, split="train", **kw)
    test_ds = load_dataset(cfg.dataset, split="test", **kw)
    if cfg.n_train is not None:
        train_ds = train_ds.subset(slice(0, cfg.n_train))
    if cfg.n_test is not None:
        test_ds = test_ds.subset(slice(0, cfg.n_test))
    return train_ds, test_ds


def build_checkpoint(model: ESSLModel, cfg: TrainConfig, train_ds, test_ds, *, epoch: int,
                     step: int, finished: bool, metrics: dict, history: list,
                     optimizer: torch.optim.Optimizer | None = None) -> dict:
    """The checkpoint dict (DESIGN §5) of ``model`` after ``epoch`` epochs."""
    ckpt = {
        "schema_version": SCHEMA_VERSION,
        "library_version": __version__,
        "created_utc": utc_now(),
        "model": model.spec,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train": asdict(cfg),
        "data": {"dataset": cfg.dataset, "params": dict(train_ds.params),
                 "data_dir": cfg.data_dir, "image_size": train_ds.image_size,
                 "channels": train_ds.channels, "n_classes": train_ds.n_classes,
                 "mean": list(train_ds.mean), "std": list(train_ds.std),
                 "n_train": len(train_ds), "n_test": len(test_ds)},
        "transformations": [{"name": h["name"], "n_classes": h["n_classes"]}
                            for h in model.spec["heads"]],
        "seed": cfg.seed,
        "progress": {"epoch": epoch, "step": step, "finished": finished},
        "metrics": {**metrics, "history": history},
        "environment": environment(next(model.parameters()).device),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    return ckpt


def _save_pair(ckpt: dict, opt: torch.optim.Optimizer, ckpt_path: Path,
               resume_path: Path) -> None:
    """The checkpoint, and the resume file (the same dict plus the optimizer state)."""
    save_checkpoint(ckpt, ckpt_path)
    save_checkpoint({**ckpt, "optimizer": opt.state_dict()}, resume_path)


def train(cfg: TrainConfig) -> TrainResult:
    """Train an E-SSL model as ``cfg`` says; write checkpoints and a JSON-lines log to
    ``cfg.out``. Raises ``TrainingDiverged`` (a ValueError) on a non-finite loss, keeping
    the last good checkpoint."""
    cfg = resolve_config(cfg)
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    rt = plan_runtime(cfg.device, amp=cfg.amp, channels_last=cfg.channels_last,
                      compile=cfg.compile)
    created = init_distributed(rt)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = rt.device.type == "cuda"   # fixed shapes: autotune
    try:
        return _train(cfg, rt)
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark
        close_distributed(created)


def _train(cfg: TrainConfig, rt: Runtime) -> TrainResult:
    transforms = parse_transformations(list(cfg.transforms))
    for t in transforms:
        if cfg.base_aug in CONFLICTS.get(t.name, ()):
            warnings.warn(f"base augmentation {cfg.base_aug!r} randomly applies what "
                          f"transformation {t.name!r} predicts: its labels become noisy",
                          stacklevel=2)
    out = check_output_dir(cfg.out, "--out")
    ckpt_path, resume_path, log_path = (out / "checkpoint.pt", out / "resume.pt",
                                        out / "log.jsonl")

    train_ds, test_ds = _load_data(cfg)
    check_trainable(cfg, train_ds, test_ds)   # before the first epoch, not after the last
    per_rank = cfg.batch_size // rt.world_size
    if cfg.batch_size % rt.world_size or per_rank < 2:
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the "
                         f"{rt.world_size} process(es), with >= 2 images each")
    steps_per_epoch = len(train_ds) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(train_ds)} train "
                         f"images of {cfg.dataset!r}")

    spec = model_spec(backbone=cfg.backbone, width=cfg.width, in_channels=train_ds.channels,
                      image_size=train_ds.image_size, n_classes=train_ds.n_classes,
                      transformations=[(t.name, t.n_classes) for t in transforms],
                      mean=train_ds.mean, std=train_ds.std, proj_dims=cfg.proj_dims,
                      pred_dim=cfg.pred_dim if cfg.ssl == "simsiam" else None,
                      head_width=cfg.head_width, class_info=cfg.class_info)
    with torch.random.fork_rng(devices=[]):   # module init draws from the global RNG
        torch.manual_seed(derive_seed(cfg.seed, 0, 0, 0))
        model = ESSLModel(spec)
    model.train()
    # device, layout, DDP, compile; the projector idles without an SSL loss
    fwd = prepare_model(model, rt, find_unused=cfg.ssl == "none")

    base_lr = cfg.lr * cfg.batch_size / 256
    probe_params = list(model.probe.parameters())
    others = [p for n, p in model.named_parameters() if not n.startswith("probe.")]
    opt = torch.optim.SGD([{"params": others, "weight_decay": cfg.weight_decay},
                           {"params": probe_params, "weight_decay": 0.0}],
                          lr=base_lr, momentum=cfg.momentum)

    epoch, step, history = 0, 0, []
    resume = cfg.resume or (cfg.resume_if_present and resume_path.exists())
    if resume and resume_path.exists():
        state = load_checkpoint(resume_path)
        mismatch = resume_mismatch(state["train"], cfg, str(resume_path))
        if mismatch:
            raise ValueError(mismatch)
        if "optimizer" not in state:
            raise ValueError(f"--resume: {resume_path} holds no optimizer state")
        load_weights(model, state["state_dict"], f"--resume: the weights in {resume_path}")
        opt.load_state_dict(state["optimizer"])
        epoch, step = state["progress"]["epoch"], state["progress"]["step"]
        history = list(state["metrics"].get("history", []))
    elif resume:
        raise ValueError(f"--resume: there is no {resume_path.name} in {out}, so nothing to "
                         f"continue; run without --resume to start a new run there")
    elif (ckpt_path.exists() or resume_path.exists()) and not cfg.overwrite:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, "
                         f"--overwrite to replace it, or choose another --out")

    log = _Log(log_path if rt.is_main else None, fresh=not (resume and epoch > 0))
    log.write(event="start", epoch=epoch, step=step, device=str(rt.device),
              world_size=rt.world_size, parameters=count_parameters(model),
              n_train=len(train_ds), n_test=len(test_ds), config=asdict(cfg))
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    images = train_ds.images.to(rt.device)
    labels = train_ds.labels.to(rt.device)
    bar = tqdm(total=total_steps, initial=step, file=sys.stderr, dynamic_ncols=True,
               disable=not (cfg.progress and rt.is_main), desc="train", unit="step")

    if cfg.save_every and epoch == 0 and cfg.epochs > 0 and rt.is_main:   # untrained model
        _save_epoch(build_checkpoint(model, cfg, train_ds, test_ds, epoch=0, step=0,
                                     finished=False, metrics={}, history=[]),
                    cfg, out, 0, False)
    metrics = dict(history[-1]) if history else {}
    last_good = ckpt_path if ckpt_path.exists() and epoch > 0 else None
    done_now = 0
    finished = epoch >= cfg.epochs
    while not finished and (cfg.stop_after is None or done_now < cfg.stop_after):
        # ---- one epoch of training
        perm = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(
            derive_seed(cfg.seed, epoch, 0, 2)))
        g = torch.Generator(device=rt.device).manual_seed(
            derive_seed(cfg.seed, epoch, rt.rank, 3))
        t0 = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size][rt.rank::rt.world_size]
            idx = idx.to(rt.device)
            lr = lr_at(step, base_lr=base_lr, total_steps=total_steps,
                       warmup_steps=warmup_steps)
            stats = training_step(fwd, opt, images[idx], labels[idx], transforms, cfg, rt,
                                  g, lr)
            step += 1
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            last = i == steps_per_epoch - 1
            if step % cfg.log_every == 0 or last:
                vals = {k: float(v) for k, v in stats.items()}
                # the epoch's sums catch a non-finite loss at any step since the last check
                finite = all(math.isfinite(v) for v in vals.values()) and (
                    not last or all(math.isfinite(float(v)) for v in sums.values()))
                if any_rank(not finite, rt):
                    bar.close()
                    log.write(event="diverged", epoch=epoch, step=step, **vals)
                    _diverged(epoch, step, vals, last_good)
                log.write(event="step", epoch=epoch, step=step, lr=lr, **vals)
                bar.set_postfix({k: f"{v:.3f}" for k, v in vals.items()
                                 if k in ("loss", "ssl") or k.startswith("ce/")})
            bar.update(1)
        epoch += 1
        done_now += 1
        elapsed = time.perf_counter() - t0
        finished = epoch >= cfg.epochs
        # ---- monitors and checkpoints (rank 0)
        metrics = {"epoch": epoch, "step": step, "lr": lr, "epoch_time_s": elapsed,
                   "images_per_s": steps_per_epoch * cfg.batch_size / elapsed,
                   **{f"train_{k}": float(v) / steps_per_epoch for k, v in sums.items()}}
        if rt.is_main:
            metrics.update(evaluate(model, train_ds, test_ds, transforms, cfg, rt,
                                    final=finished))
            history.append(metrics)
            log.write(event="epoch", **metrics)
            # a line a human reads each epoch, bar or not (the JSON lines are in log.jsonl)
            (bar.write if cfg.progress else print)(_epoch_line(metrics, cfg.epochs),
                                                  file=sys.stderr)
            ckpt = build_checkpoint(model, cfg, train_ds, test_ds, epoch=epoch, step=step,
                                    finished=finished, metrics=metrics, history=history)
            _save_pair(ckpt, opt, ckpt_path, resume_path)
            _save_epoch(ckpt, cfg, out, epoch, finished)
            last_good = ckpt_path
        barrier(rt)
    bar.close()
    if epoch == 0 and rt.is_main:   # epochs=0: the untrained model, evaluated and saved
        metrics = {"epoch": 0, "step": 0, **evaluate(model, train_ds, test_ds, transforms,
                                                     cfg, rt, final=True)}
        history = [metrics]
        ckpt = build_checkpoint(model, cfg, train_ds, test_ds, epoch=0, step=0,
                                finished=True, metrics=metrics, history=history)
        _save_pair(ckpt, opt, ckpt_path, resume_path)
    log.write(event="end", epoch=epoch, step=step, finished=finished)
    return TrainResult(ckpt_path, resume_path, log_path, metrics, epoch)


def epoch_checkpoint_path(out: Path, epoch: int) -> Path:
    """Where ``--save-every`` keeps the checkpoint of ``epoch``: OUT/epoch_NNNN.pt."""
    return Path(out) / f"epoch_{epoch:04d}.pt"


def _save_epoch(ckpt: dict, cfg: TrainConfig, out: Path, epoch: int, finished: bool) -> None:
    """With ``cfg.save_every = E``: keep a copy of the checkpoint of epoch 0, of every
    E-th epoch and of the last one (information dynamics; ``measure OUT`` reads them)."""
    if cfg.save_every and (epoch % cfg.save_every == 0 or finished):
        save_checkpoint(ckpt, epoch_checkpoint_path(out, epoch))


def _diverged(epoch: int, step: int, vals: dict, last_good: Path | None) -> None:
    where = (f"the last good checkpoint is {last_good}" if last_good
             else "no checkpoint was written yet")
    terms = ", ".join(f"{k}={v:.4g}" for k, v in vals.items() if not k.startswith("acc/"))
    raise TrainingDiverged(f"training stopped: the loss became non-finite in epoch "
                           f"{epoch + 1} by step {step} ({terms}); {where}. Lower --lr or "
                           f"check the data")


def _epoch_line(m: dict, epochs: int) -> str:
    keys = [k for k in m if k.startswith(("test_acc/", "knn_acc", "probe_acc",
                                          "linear_probe_acc"))]
    return (f"epoch {m['epoch']}/{epochs}  loss {m.get('train_loss', float('nan')):.3f}  "
            + "  ".join(f"{k} {m[k]:.3f}" for k in keys)
            + f"  ({m.get('images_per_s', 0):.0f} img/s)")


class _Log:
    """JSON lines, one object per event, flushed at once (``path=None``: silent)."""

    def __init__(self, path: Path | None, fresh: bool):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if fresh:
                path.write_text("")

    def write(self, **record: Any) -> None:
        if self.path is None:
            return
        from ..types import _json_safe

        with open(self.path, "a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **_json_safe(record)}) + "\n")
