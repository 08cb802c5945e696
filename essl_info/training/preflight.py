"""Checks a training run passes before its first step, so that no epoch is spent on a run
that must fail at its end (the final linear probe on one class, a test split the monitors
cannot use, a batch larger than the data), and the one-line message for a ``--resume``
whose settings differ from the run's, saying which options to pass.

Pure functions of the resolved ``TrainConfig`` and the loaded datasets.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from ..errors import DataError
from .config import RUN_FIELDS, TrainConfig, as_flags, flag_name


def check_trainable(cfg: TrainConfig, train_ds, test_ds) -> None:
    """Raise a one-line ValueError / DataError for data the run cannot finish on."""
    name = cfg.dataset
    if len(train_ds) < 2:
        raise DataError(f"{name}: the train split holds {len(train_ds)} image(s); training "
                        f"needs at least 2")
    if cfg.batch_size > len(train_ds):
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(train_ds)} train "
                         f"images of {name!r}; pass --batch-size {_pow2_below(len(train_ds))} "
                         f"(or another value <= {len(train_ds)})")
    if len(test_ds) == 0:
        raise DataError(f"{name}: the test split is empty, and the monitors (kNN and probe "
                        f"accuracy) are measured on it; add images (a folder dataset keeps "
                        f"a test_fraction of each class) or raise --n-test")
    present = np.unique(train_ds.labels.numpy())
    classes = getattr(train_ds, "class_names", None)
    shown = ", ".join(repr(classes[i]) if classes else str(int(i)) for i in present[:5])
    if len(present) < 2 and cfg.final_linear_probe:
        hint = ("add a second class sub-folder" if name == "folder"
                else "use data with at least two classes")
        raise DataError(f"{name}: the train split holds images of {len(present)} class "
                        f"({shown}); the final linear probe needs at least 2 classes: {hint}, "
                        f"or pass --no-linear-probe")
    if len(present) < 2 and cfg.class_info != "normal":
        raise DataError(f"{name}: --class-info {cfg.class_info} needs at least 2 classes; "
                        f"the train split holds 1 ({shown})")


def _pow2_below(n: int) -> int:
    return 1 << (max(int(n), 2).bit_length() - 1)


def resume_mismatch(saved: dict, cfg: TrainConfig, source: str) -> str | None:
    """None when the run saved in ``saved`` (its TrainConfig as a dict) can be continued
    by ``cfg``; else one line naming each differing setting and the option that restores
    it (``pass --epochs 6``)."""
    from ..types import _json_safe

    now = _json_safe(asdict(cfg))
    changed = [k for k in now if k not in RUN_FIELDS and
               json.dumps(now[k]) != json.dumps(_json_safe(saved.get(k)))]
    if not changed:
        return None
    fixes = [as_flags(k, saved.get(k)) for k in changed]
    diffs = "; ".join(f"{flag_name(k)}: run {_show(saved.get(k))}, now {_show(now[k])}"
                      for k in changed)
    return (f"--resume: {source} was trained with other settings ({diffs}); to continue "
            f"it pass {' '.join(f for f in fixes if f)}, or start a new run with another "
            f"--out")


def _show(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) if v else "none"
    return str(v)


__all__ = ["check_trainable", "resume_mismatch"]
