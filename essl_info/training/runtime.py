"""Where a training run computes: device, precision, memory layout, compilation, DDP.

``plan_runtime`` turns the user's choices into a frozen ``Runtime``; everything that
depends on CUDA or on several processes is decided there, in one place, and the training
loop only asks the plan. On CPU the plan is plain float32, contiguous (``channels_last="on"``
falls back, with a warning: oneDNN's channels_last conv backward can crash there), eager,
one process.
On CUDA the defaults follow what makes small ResNets fast: bf16 autocast (no loss scaler
needed, unlike fp16), channels_last tensors, and optionally ``torch.compile``. Under
``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised (NCCL on CUDA, gloo on
CPU), BatchNorm becomes SyncBatchNorm on CUDA, and the model is wrapped in DDP.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None   # bf16 under autocast, None: full precision
    channels_last: bool
    compile: bool
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        """The forward pass's precision context (a no-op in full precision)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch laid out as the model expects it."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def _tri(value: str, name: str) -> bool | None:
    table = {"auto": None, "on": True, "off": False}
    if value not in table:
        raise ValueError(f"{name} must be one of auto|on|off, got {value!r}")
    return table[value]


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto|cpu|cuda, got {device!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch sees no CUDA GPU "
                             "(use --device cpu or auto)")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


# oneDNN 3.12 (torch 2.13) jit_1x1:avx2 backward-weights kernel, channels_last (nhwc) input,
# stride-2 1x1 conv with < 8 input channels, 1 thread: heap corruption, SIGSEGV / "free():
# invalid pointer" (the ResNet downsample conv at width 4). Channels_last gains nothing on CPU.
CPU_CHANNELS_LAST_FALLBACK = (
    "channels_last on CPU falls back to contiguous: torch {}'s oneDNN crashes (segfault) in "
    "channels_last 1x1 strided conv backward on some CPUs")


def plan_runtime(device: str = "auto", *, amp: str = "auto", channels_last: str = "auto",
                 compile: bool = False, env: dict | None = None) -> Runtime:
    """Decide device and precision; read ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` from ``env``
    (default ``os.environ``). Does not initialise the process group (``init_distributed``)."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    local_rank = int(env.get("LOCAL_RANK", "0"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad distributed environment: RANK={rank}, WORLD_SIZE={world}")
    dev = resolve_device(device, local_rank)
    cuda = dev.type == "cuda"
    if amp not in ("auto", "bf16", "off"):
        raise ValueError(f"amp must be auto|bf16|off, got {amp!r}")
    use_amp = cuda if amp == "auto" else amp == "bf16"
    if use_amp and not cuda:
        raise ValueError("amp bf16 is for CUDA; on CPU train in float32 (--amp off)")
    cl = _tri(channels_last, "channels_last")
    if cl and not cuda:
        warnings.warn(CPU_CHANNELS_LAST_FALLBACK.format(torch.__version__), stacklevel=2)
        cl = False
    return Runtime(device=dev, autocast_dtype=torch.bfloat16 if use_amp else None,
                   channels_last=cuda if cl is None else cl, compile=bool(compile),
                   rank=rank, world_size=world, local_rank=local_rank)


def init_distributed(rt: Runtime) -> bool:
    """Join the process group of a ``torchrun`` launch (only when WORLD_SIZE > 1).
    Returns True when this call created it (the caller then destroys it at the end)."""
    import torch.distributed as dist

    if not rt.distributed or dist.is_initialized():
        return False
    if rt.device.type == "cuda":
        torch.cuda.set_device(rt.device)
    dist.init_process_group("nccl" if rt.device.type == "cuda" else "gloo")
    return True


def close_distributed(created: bool) -> None:
    if created:
        import torch.distributed as dist

        dist.destroy_process_group()


def prepare_model(model: nn.Module, rt: Runtime, *, find_unused: bool = False) -> nn.Module:
    """Move ``model`` in place to the plan's device and layout; return the module to call
    for training (DDP- and/or compile-wrapped). Save and evaluate ``model`` itself, never
    the wrapper, so that state-dict keys carry no ``module.`` / ``_orig_mod.`` prefix.
    Parameters keep their identity (an optimizer may be built before or after).
    ``find_unused``: some parameters get no gradient in a step (DDP must be told)."""
    model.to(rt.device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    fwd: nn.Module = model
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if rt.device.type == "cuda":
            # converts in place inside the parent modules, so `model` keeps the same keys
            fwd = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        fwd = DDP(fwd, device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
                  find_unused_parameters=find_unused)
    if rt.compile:
        fwd = torch.compile(fwd)
    return fwd


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` and DDP wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def gather(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Rows of every rank, concatenated, with gradients flowing back to each rank's rows
    (so a contrastive loss sees the global batch's negatives, as in E-SSL's code)."""
    if not rt.distributed:
        return t
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():   # deprecated for a private API; still the autograd one
        warnings.simplefilter("ignore", FutureWarning)
        # the current WORLD (all_gather's default argument is bound at import time)
        return torch.cat(all_gather(t.contiguous(), group=dist.group.WORLD))


def any_rank(flag: bool, rt: Runtime) -> bool:
    """True when ``flag`` is true on some rank (a collective: every rank must call it)."""
    if not rt.distributed:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        import torch.distributed as dist

        dist.barrier()
