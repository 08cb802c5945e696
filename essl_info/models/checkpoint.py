"""Checkpoints: schema, atomic save, safe load, rebuild, describe (DESIGN §5).

A checkpoint is a plain dict of primitives and tensors that ``torch.load(path,
weights_only=True)`` reads without running code::

    schema_version   int (SCHEMA_VERSION)
    library_version  str
    created_utc      str, ISO 8601
    model            dict: everything ESSLModel needs to rebuild the network (model_spec)
    state_dict       dict[str, Tensor] of the unwrapped, uncompiled module (no "module.",
                     no "_orig_mod." prefixes)
    train            dict: the TrainConfig
    data             dict: {"dataset", "params", "image_size", "channels", "n_classes",
                     "mean", "std", "n_train", "n_test"}
    transformations  list of {"name", "n_classes"}
    seed             int
    progress         dict: {"epoch", "step", "finished"}
    metrics          dict: the last epoch's monitors, and "history" (one dict per epoch)

Resume files add ``optimizer`` (an optimizer state dict). Files are written to a temporary
file in the target folder and moved into place with ``os.replace``, so a crash never leaves
a half-written checkpoint under the final name. Checkpoints of the papers' own code are
converted by ``essl_info.models.importers`` (which reads files through ``_raw_load`` here).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = (1,)
REQUIRED_KEYS = ("schema_version", "model", "state_dict", "train", "data",
                 "transformations", "seed", "progress", "metrics")
BUNDLED_NAME = "digits_esimclr_rotation4.pt"


def bundled_checkpoint_path() -> Path:
    """The checkpoint shipped in ``essl_info/assets`` (E-SimCLR + rotation4 on digits): the
    default of ``essl-info measure``."""
    return Path(str(resources.files("essl_info").joinpath("assets", BUNDLED_NAME)))


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ================================================================================= save


def _check_plain(obj: Any, where: str) -> None:
    """Raise TypeError naming the first value that ``weights_only`` loading would refuse."""
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(
            obj, (torch.Tensor, torch.dtype, torch.device, torch.Size)):
        return   # exact types: numpy's float64 is a float subclass, yet needs code to load
    if isinstance(obj, Mapping):
        if type(obj) not in (dict,) and type(obj).__name__ != "OrderedDict":
            raise TypeError(f"checkpoint value at {where} is a {type(obj).__name__}; use a "
                            f"plain dict")
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint key {k!r} at {where} must be str or int")
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"checkpoint value at {where} has type {type(obj).__name__}, which "
                    f"torch.load(weights_only=True) cannot read; convert it to a primitive")


def save_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    ``ckpt`` must carry every key of ``REQUIRED_KEYS`` and contain only primitives,
    containers and tensors (checked before anything is written). Returns the path.
    """
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint lacks required key(s) {missing}")
    _check_plain(dict(ckpt), "ckpt")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(ckpt), f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# ================================================================================= load


def _raw_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a one-line
    CheckpointError saying what is wrong with the file."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    try:
        with warnings.catch_warnings():   # torch's advice on pickle protocols: not ours
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        glob = re.search(r"GLOBAL ([\w.]+)", msg)
        if glob:
            raise CheckpointError(
                f"refusing to load {path}: unpickling it would import and run code "
                f"(GLOBAL {glob.group(1)}); essl_info loads checkpoints with "
                f"torch.load(weights_only=True) and never executes code from a file") from None
        with open(path, "rb") as f:
            is_pickle = f.read(1) == b"\x80"   # the PROTO opcode of pickle protocols >= 2
        if "Weights only load failed" in msg and is_pickle:
            op = re.search(r"Unsupported operand \d+", msg)
            raise CheckpointError(
                f"refusing to load {path}: it is a pickle that torch.load(weights_only=True) "
                f"cannot read safely ({op.group(0) if op else 'unsupported content'}); "
                f"essl_info never unpickles code") from None
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or not a torch "
                              f"file: {msg.splitlines()[0] if msg else 'unpickling error'})"
                              ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            UnicodeDecodeError, AttributeError, IndexError, KeyError) as e:
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0]
        first = f"{type(e).__name__}: {first}" if first else type(e).__name__
        raise CheckpointError(f"{path} is truncated or corrupt, not a readable checkpoint "
                              f"({first})") from None


def validate_checkpoint(obj: Any, source: str = "checkpoint") -> dict:
    """Check that ``obj`` is an essl_info checkpoint of a supported schema; return it."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source} is not an essl_info checkpoint: it holds a "
                              f"{type(obj).__name__}, not a dict")
    if "schema_version" not in obj:
        keys = ", ".join(sorted(map(str, obj))[:8]) or "none"
        raise CheckpointError(
            f"{source} is not an essl_info checkpoint: a dict without 'schema_version' "
            f"(keys: {keys}); a checkpoint of the papers' code is read by "
            f"essl_info.models.importers (essl-info measure --arch ARCH --dataset NAME)")
    version = obj["schema_version"]
    if version not in SUPPORTED_SCHEMAS:
        raise CheckpointError(f"{source} has schema_version {version!r}, which this "
                              f"essl_info supports not (supported: {list(SUPPORTED_SCHEMAS)})")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"{source} is an incomplete checkpoint: missing {missing}")
    if not isinstance(obj["state_dict"], dict) or not all(
            isinstance(v, torch.Tensor) for v in obj["state_dict"].values()):
        raise CheckpointError(f"{source}: 'state_dict' must map names to tensors")
    return obj


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate a checkpoint (CPU tensors). Never runs code from the file.

    Raises CheckpointError (a ValueError) with a one-line reason for a missing file, a
    directory, a truncated or corrupt file, a file that is no checkpoint, a pickle that
    would need code, and an unsupported schema version.
    """
    path = Path(path)
    return validate_checkpoint(_raw_load(path), str(path))


def model_from_checkpoint(ckpt: Mapping[str, Any] | str | os.PathLike, device: str = "cpu"):
    """Rebuild the ``ESSLModel`` of ``ckpt`` (a loaded dict or a path), load its weights
    strictly, move it to ``device`` and put it in eval mode."""
    from .networks import ESSLModel

    if not isinstance(ckpt, Mapping):
        ckpt = load_checkpoint(ckpt)
    try:
        model = ESSLModel(ckpt["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint 'model' spec cannot rebuild a network: "
                              f"{type(e).__name__}: {e}") from None
    result = model.load_state_dict(ckpt["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint weights do not match its model spec: missing "
            f"{result.missing_keys[:5]}{'...' if len(result.missing_keys) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}"
            f"{'...' if len(result.unexpected_keys) > 5 else ''}")
    return model.to(device).eval()


# ============================================================================= describe


def checkpoint_metadata(ckpt: Mapping[str, Any]) -> dict:
    """Everything but the tensors: JSON-safe (the state dict becomes a size summary)."""
    from ..types import _json_safe

    sd = ckpt["state_dict"]
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer")}
    meta["state_dict"] = {"tensors": len(sd),
                          "parameters": int(sum(v.numel() for v in sd.values()
                                                if v.is_floating_point())),
                          "bytes": int(sum(v.numel() * v.element_size() for v in sd.values()))}
    if "optimizer" in ckpt:
        meta["resumable"] = True
    return _json_safe(meta)


def describe_checkpoint(path: str | os.PathLike, as_json: bool = False) -> str:
    """Human-readable (or JSON) summary of a checkpoint's metadata, for ``essl-info inspect``."""
    ckpt = load_checkpoint(path)
    meta = checkpoint_metadata(ckpt)
    if as_json:
        return json.dumps({"path": str(path), **meta}, indent=2)
    m, d, t = meta["model"], meta["data"], meta["train"]
    sd, prog = meta["state_dict"], meta["progress"]
    heads = ", ".join(f"{h['name']} (K={h['n_classes']})" for h in m["heads"]) or "none"
    if t.get("imported"):
        training = f"imported from {t.get('source')} (backbone only; heads untrained)"
    else:
        training = (f"ssl={t.get('ssl')} lambda={t.get('lam')} "
                    f"transforms={','.join(t.get('transforms', []))} "
                    f"class_info={t.get('class_info')} epochs={t.get('epochs')} "
                    f"batch={t.get('batch_size')} seed={meta['seed']}")
    lines = [
        f"checkpoint  {path}",
        f"schema      v{meta['schema_version']}, essl_info {meta.get('library_version', '?')}, "
        f"created {meta.get('created_utc', '?')}",
        f"model       {m['backbone']} (width {m['width']}, {m['in_channels']} channel(s), "
        f"{m['image_size']}px) -> {m['feature_dim']}-d features; "
        f"projector {m['projector']['dims']}",
        f"heads       {heads}; predictor {'yes' if m['predictor'] else 'no'}; "
        f"class head {m['class_info']}",
        f"weights     {sd['parameters']:,} parameters in {sd['tensors']} tensors "
        f"({sd['bytes'] / 2**20:.1f} MiB)",
        f"data        {d['dataset']} ({d['n_classes']} classes, {d['image_size']}px, "
        f"n_train={d.get('n_train', '?')}, n_test={d.get('n_test', '?')})",
        f"training    {training}",
        f"progress    epoch {prog['epoch']}/{t.get('epochs', prog['epoch'])}, "
        f"step {prog['step']}{' (finished)' if prog.get('finished') else ''}"
        f"{'; resumable' if meta.get('resumable') else ''}",
    ]
    last = {k: v for k, v in meta["metrics"].items() if k != "history"}
    if last:
        lines.append("metrics     " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items()))
    return "\n".join(lines)
