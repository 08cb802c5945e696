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
# keys each section must hold for the checkpoint to be rebuilt and described
SECTION_KEYS = {
    "model": ("backbone", "width", "in_channels", "image_size", "feature_dim", "mean", "std",
              "n_classes", "projector", "predictor", "heads", "class_head", "class_info"),
    "data": ("dataset", "n_classes", "image_size"),
    "progress": ("epoch", "step"),
    "train": (),
    "metrics": (),
}


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
        raise CheckpointError(f"{path} is not a torch checkpoint: neither a zip archive "
                              f"nor a pickle (it starts with bytes {_head(path)}); is it the "
                              f"file you meant?") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            UnicodeDecodeError, AttributeError, IndexError, KeyError) as e:
        first = _torch_reason(str(e))
        first = f"{type(e).__name__}: {first}" if first else type(e).__name__
        raise CheckpointError(f"{path} is truncated or corrupt, not a readable checkpoint "
                              f"({first})") from None


def _head(path: Path, n: int = 4) -> str:
    with open(path, "rb") as f:
        return f.read(n).hex(" ")


def _torch_reason(msg: str) -> str:
    """The first sentence of a torch.load error, without torch's general advice (in
    particular never its suggestion to re-run with ``weights_only=False``, which would
    run code from the file and is not what goes wrong here)."""
    first = (msg.strip().splitlines() or [""])[0].split(". ")[0]
    return "" if "weights_only" in first else first


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
        raise CheckpointError(_schema_message(source, version))
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"{source} is an incomplete checkpoint: missing {missing}")
    if not isinstance(obj["state_dict"], dict) or not all(
            isinstance(v, torch.Tensor) for v in obj["state_dict"].values()):
        raise CheckpointError(f"{source}: 'state_dict' must map names to tensors")
    for part, keys in SECTION_KEYS.items():
        section = obj[part]
        if not isinstance(section, dict):
            raise CheckpointError(f"{source}: its {part!r} entry is a "
                                  f"{type(section).__name__}, not a dict: a damaged or "
                                  f"hand-edited checkpoint")
        lacking = [k for k in keys if k not in section]
        if lacking:
            raise CheckpointError(f"{source}: its {part!r} entry lacks {lacking} (a damaged "
                                  f"or hand-edited checkpoint); re-save it from the run that "
                                  f"made it, or train again")
    heads = obj["model"]["heads"]
    if not isinstance(heads, list) or not all(
            isinstance(h, dict) and {"name", "n_classes", "mlp"} <= set(h) for h in heads):
        raise CheckpointError(f"{source}: its model 'heads' entry must be a list of "
                              f"{{'name', 'n_classes', 'mlp'}} dicts: a damaged or "
                              f"hand-edited checkpoint")
    return obj


def _schema_message(source: str, version: Any) -> str:
    """What an unsupported ``schema_version`` means for the user, and what to do."""
    from .. import __version__

    newest = max(SUPPORTED_SCHEMAS)
    if isinstance(version, int) and not isinstance(version, bool) and version > newest:
        return (f"{source} uses checkpoint schema {version}, newer than this essl_info "
                f"{__version__} can read (schema {newest} at most): it was written by a newer "
                f"essl_info; upgrade essl_info to read it")
    return (f"{source} has schema_version {version!r}, which is not a schema this essl_info "
            f"{__version__} can read (it reads {list(SUPPORTED_SCHEMAS)})")


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
    load_weights(model, ckpt["state_dict"], "checkpoint weights",
                 hint="the file's tensors were not saved from the network its 'model' "
                      "spec describes (a damaged or hand-edited checkpoint)")
    return model.to(device).eval()


def _key_list(keys, n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def weight_mismatches(expected: Mapping[str, torch.Tensor], got: Mapping[str, Any]
                      ) -> list[str]:
    """How a state dict ``got`` differs from a module's own ``expected`` one, key for key:
    missing, unexpected, misshapen, and tensors of the wrong kind of dtype (an integer
    tensor where the module holds floats, or the reverse: torch would copy int64 into a
    float parameter without a word). One phrase per kind of difference; [] when none."""
    missing = set(expected) - set(got)
    unexpected = set(got) - set(expected)
    common = sorted(set(expected) & set(got))
    bad_type = [k for k in common if not isinstance(got[k], torch.Tensor)]
    common = [k for k in common if k not in bad_type]
    shapes = [k for k in common if tuple(expected[k].shape) != tuple(got[k].shape)]
    kinds = [k for k in common if k not in shapes and
             (expected[k].is_floating_point(), expected[k].is_complex()) !=
             (got[k].is_floating_point(), got[k].is_complex())]
    parts = []
    if missing:
        parts.append(f"missing keys: {_key_list(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_key_list(unexpected)}")
    if bad_type:
        parts.append(f"not tensors: {_key_list(bad_type)}")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. {k}: file "
                     f"{tuple(got[k].shape)} vs network {tuple(expected[k].shape)}")
    if kinds:
        k = kinds[0]
        parts.append(f"{len(kinds)} dtype mismatch(es), e.g. {k}: file {got[k].dtype} "
                     f"where the network holds {expected[k].dtype}")
    return parts


def check_weights(expected: Mapping[str, torch.Tensor], got: Mapping[str, Any],
                  what: str = "checkpoint weights", hint: str = "") -> None:
    """Raise one CheckpointError listing :func:`weight_mismatches`, if any."""
    parts = weight_mismatches(expected, got)
    if parts:
        raise CheckpointError(f"{what} do not match the network ({'; '.join(parts)})"
                              + (f"; {hint}" if hint else ""))


def load_weights(module: torch.nn.Module, state_dict: Mapping[str, Any],
                 what: str = "checkpoint weights", hint: str = "") -> torch.nn.Module:
    """``module.load_state_dict(state_dict, strict=True)`` after :func:`check_weights`:
    every mismatch is one CheckpointError naming it, never a RuntimeError traceback."""
    check_weights(module.state_dict(), state_dict, what, hint)
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:   # anything check_weights did not foresee: still one line
        first = (str(e).strip().splitlines() or ["load_state_dict failed"])
        raise CheckpointError(f"{what} cannot be loaded: {' '.join(first[:2])}") from None
    return module


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
    with torch.random.fork_rng(devices=[]):   # rebuilding draws initial weights
        model_from_checkpoint(ckpt)            # the weights fit the spec, or one line why
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
    env = meta.get("environment")
    if isinstance(env, dict):
        lines.append(f"made on     torch {env.get('torch', '?')}, "
                     f"{env.get('cpu_capability', '?')}, {env.get('threads', '?')} thread(s), "
                     f"{env.get('cpu') or env.get('machine', '?')}"
                     + (f", {env['gpu']}" if env.get("gpu") else ""))
    last = {k: v for k, v in meta["metrics"].items() if k != "history"}
    if last:
        lines.append("metrics     " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items()))
    return "\n".join(lines)
