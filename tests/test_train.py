"""The trainer end to end on tiny CPU runs: files and logs, a loss that decreases, resume
that is bit-identical, divergence, the experiment options, schedules, runtime plans."""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest
import torch

from essl_info.models.checkpoint import load_checkpoint, model_from_checkpoint
from essl_info.data import parse_transformations
from essl_info.models.networks import ESSLModel, model_spec
from essl_info.training.runtime import plan_runtime, prepare_model, unwrap
from essl_info.training.trainer import (TrainConfig, TrainingDiverged, derive_seed, lr_at,
                             resolve_config, train, training_step)

TINY = dict(dataset="digits", image_size=8, trans_size=8, n_train=64, n_test=40, width=4,
            batch_size=32, epochs=2, progress=False, knn_k=20, warmup_epochs=1,
            final_linear_probe=False)


def _cfg(tmp_path, name="run", **kw):
    return TrainConfig(**{**TINY, "out": str(tmp_path / name), **kw})


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tiny_run_end_to_end(tmp_path):
    rng_before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    res = train(_cfg(tmp_path, final_linear_probe=True))
    assert torch.equal(torch.get_rng_state(), rng_before)      # global RNGs untouched
    assert np.array_equal(np.random.get_state()[1], np_before)
    events = _events(res.log)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("epoch") == 2
    assert events[0]["config"]["lr"] == 0.3                     # the digits recipe, resolved
    last = [e for e in events if e["event"] == "epoch"][-1]
    for key in ("train_ssl", "train_ce/rotation4", "test_acc/rotation4", "knn_acc",
                "probe_acc", "linear_probe_acc", "images_per_s"):
        assert key in last and math.isfinite(last[key]), key
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["progress"] == {"epoch": 2, "step": 4, "finished": True}
    assert len(ckpt["metrics"]["history"]) == 2
    model = model_from_checkpoint(ckpt)
    assert model.features(torch.rand(2, 1, 8, 8)).shape == (2, 16)
    with pytest.raises(ValueError, match="already holds a run"):
        train(_cfg(tmp_path))


@pytest.fixture
def one_thread():
    """One CPU thread, as train() uses for small images (two threads on a busy 2-core
    machine run this loop several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_loss_decreases_on_a_fixed_batch(one_thread):
    torch.manual_seed(0)
    t = parse_transformations(["rotation4"])
    spec = model_spec(backbone="small_cnn", width=4, in_channels=1, image_size=8,
                      n_classes=10, transformations=[("rotation4", 4)], mean=[0.3],
                      std=[0.3])
    model = ESSLModel(spec).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    cfg = resolve_config(TrainConfig(**{**TINY, "out": "unused"}))
    rt = plan_runtime("cpu")
    x = torch.rand(16, 1, 8, 8)
    y = torch.arange(16) % 10
    losses = []
    for _ in range(20):   # the same augmentations every step: a fixed batch
        g = torch.Generator().manual_seed(0)
        losses.append(training_step(model, opt, x, y, t, cfg, rt, g, lr=0.05))
    first, last = losses[0], losses[-1]
    assert float(last["loss"]) < 0.8 * float(first["loss"])
    assert float(last["ssl"]) < float(first["ssl"])
    assert float(last["ce/rotation4"]) < float(first["ce/rotation4"])


def test_resume_continues_bit_identically(tmp_path):
    straight = train(_cfg(tmp_path, "straight", epochs=3))
    first = train(_cfg(tmp_path, "split", epochs=3, stop_after=1))
    assert first.epochs_done == 1 and not load_checkpoint(first.checkpoint)["progress"][
        "finished"]
    resumed = train(_cfg(tmp_path, "split", epochs=3, resume=True))
    a, b = load_checkpoint(straight.resume), load_checkpoint(resumed.resume)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["progress"] == b["progress"]
    assert [h["train_loss"] for h in a["metrics"]["history"]] == \
        [h["train_loss"] for h in b["metrics"]["history"]]
    assert [e["event"] for e in _events(resumed.log)].count("start") == 2
    with pytest.raises(ValueError, match="other settings .--lr: run 0.3, now 0.1.*pass --lr 0.3"):
        train(_cfg(tmp_path, "split", epochs=3, lr=0.1, resume=True))


def test_divergence_stops_with_a_message(tmp_path):
    with pytest.raises(TrainingDiverged, match="non-finite.*no checkpoint was written"):
        train(_cfg(tmp_path, lr=1e30, warmup_epochs=0, log_every=1))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert _events(tmp_path / "run" / "log.jsonl")[-1]["event"] == "diverged"


@pytest.mark.parametrize("options, terms", [
    (dict(ssl="none", class_info="eliminate"), {"ce/rotation4", "class", "probe"}),
    (dict(ssl="simsiam", transforms=("rotation4", "hflip"), base_aug="none"),
     {"ssl", "ce/rotation4", "ce/hflip"}),
    (dict(transforms=("brightness",), order_weight=1.0, base_aug="crop_flip"),
     {"ssl", "ce/brightness", "order/brightness"}),
    (dict(lam=0.0, ssl="ntxent", class_info="normal"), {"ssl", "ce/rotation4"}),
    # pure prediction of a sampled label set: the online probe reads one copy per image
    # (a regression: it sliced rows / K = 21 of 128 images and every jigsaw4 run failed)
    (dict(ssl="none", transforms=("jigsaw4",)), {"ce/jigsaw4", "probe"}),
])
def test_experiment_options_train(tmp_path, options, terms):
    res = train(_cfg(tmp_path, epochs=1, **options))
    step = [e for e in _events(res.log) if e["event"] == "step"][-1]
    assert terms <= set(step), set(step)
    ckpt = load_checkpoint(res.checkpoint)
    assert [t["name"] for t in ckpt["transformations"]] == list(
        options.get("transforms", ("rotation4",)))
    model_from_checkpoint(ckpt)


def test_lr_schedule_is_a_pure_function_of_the_step():
    kw = dict(base_lr=1.0, total_steps=110, warmup_steps=10)
    assert lr_at(0, **kw) == 0.0
    assert lr_at(5, **kw) == pytest.approx(0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.5)      # half-way down the cosine
    assert lr_at(110, **kw) == pytest.approx(0.0, abs=1e-12)
    lrs = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(0, 2)


@pytest.mark.parametrize("bad, needle", [
    (dict(ssl="byol"), "ssl must be one of"),
    (dict(lam=-1.0), "lambda must be >= 0"),
    (dict(ssl="none", lam=0.0), "nothing trains the backbone"),
    (dict(transforms=("rotation5",)), "unknown transformation 'rotation5'"),
    (dict(batch_size=0), "batch_size must be"),
    (dict(backbone="vgg"), "unknown backbone 'vgg'"),
    (dict(base_aug="heavy"), "base_aug must be one of"),
])
def test_bad_settings_are_named(tmp_path, bad, needle):
    with pytest.raises(ValueError, match=needle):
        train(_cfg(tmp_path, **bad))


def test_batch_larger_than_the_data(tmp_path):
    with pytest.raises(ValueError, match="batch_size 128 exceeds the 64 train images"):
        train(_cfg(tmp_path, batch_size=128))


# ===================================================================== runtime (CPU side)
def test_runtime_plans():
    rt = plan_runtime("cpu")
    assert rt.device.type == "cpu" and rt.autocast_dtype is None and not rt.channels_last
    fallback = f"falls back to contiguous: torch {re.escape(torch.__version__)}'s oneDNN"
    with pytest.warns(UserWarning, match=fallback):
        assert not plan_runtime("cpu", channels_last="on").channels_last
    with pytest.raises(ValueError, match="amp bf16 is for CUDA"):
        plan_runtime("cpu", amp="bf16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            plan_runtime("cuda")
    with pytest.raises(ValueError, match="RANK=3, WORLD_SIZE=2"):
        plan_runtime("cpu", env={"WORLD_SIZE": "2", "RANK": "3"})
    ddp = plan_runtime("cpu", env={"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
    assert ddp.distributed and not ddp.is_main


def test_compiled_module_saves_plain_keys():
    spec = model_spec(backbone="small_cnn", width=4, in_channels=1, image_size=8,
                      n_classes=10, transformations=[("rotation4", 4)], mean=[0.3], std=[0.3])
    model = ESSLModel(spec)
    fwd = prepare_model(model, plan_runtime("cpu", compile=True))
    assert fwd is not model and unwrap(fwd) is model   # compile wraps lazily
    assert not any(k.startswith("_orig_mod.") for k in unwrap(fwd).state_dict())


def test_channels_last_on_cpu_trains_contiguous(tmp_path):
    """--channels-last on, on CPU: one warning, then the contiguous run, bit for bit."""
    a = train(_cfg(tmp_path, "contiguous", epochs=1))
    with pytest.warns(UserWarning, match="channels_last on CPU falls back to contiguous"):
        b = train(_cfg(tmp_path, "cl", epochs=1, channels_last="on"))
    sa = load_checkpoint(a.checkpoint)["state_dict"]
    sb = load_checkpoint(b.checkpoint)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _layout_gap(steps: int = 3) -> float:
    """Largest parameter difference after ``steps`` training steps of the tiny E-SSL model
    in channels_last vs contiguous layout (one thread, fixed batch and augmentations).
    The layout is forced on the plan, past the CPU fallback of ``plan_runtime``."""
    import dataclasses

    t = parse_transformations(["rotation4"])
    cfg = resolve_config(TrainConfig(**{**TINY, "out": "unused"}))
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(32) % 10
    states = []
    for cl in (False, True):
        rt = dataclasses.replace(plan_runtime("cpu"), channels_last=cl)
        torch.manual_seed(0)
        model = ESSLModel(model_spec(backbone="small_cnn", width=4, in_channels=1,
                                     image_size=8, n_classes=10,
                                     transformations=[("rotation4", 4)], mean=[0.3],
                                     std=[0.3])).train()
        fwd = prepare_model(model, rt)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(0)
        for _ in range(steps):
            training_step(fwd, opt, x, y, t, cfg, rt, g, lr=0.05)
        states.append(model.state_dict())
    return max((a.float() - b.float()).abs().max().item()
               for a, b in zip(states[0].values(), states[1].values()))


def test_channels_last_layout_matches_contiguous(one_thread):
    """The model and training step are layout-agnostic (torch's native channels_last
    kernels; oneDNN off, see the next test)."""
    with warnings.catch_warnings():   # flags() warns about TF32 on Intel GPUs
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            assert _layout_gap() < 1e-4


def test_channels_last_onednn_matches_contiguous():
    """The same with oneDNN, in a child process: oneDNN 3.12 (torch 2.13) on AVX2-only CPUs
    corrupts the heap in the channels_last stride-2 1x1 conv backward (< 8 input channels,
    one thread), which is why plan_runtime keeps CPU runs contiguous."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    code = ("import torch; torch.set_num_threads(1); from test_train import _layout_gap; "
            "print(_layout_gap())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode < 0:
        pytest.skip(f"torch {torch.__version__}: oneDNN channels_last conv backward killed "
                    f"the process ({signal.Signals(-proc.returncode).name}) on this CPU "
                    f"(plan_runtime falls back to contiguous on CPU)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) < 1e-4


DDP_SCRIPT = """
import pathlib, sys, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from essl_info.training.losses import cross_view_infonce
from essl_info.training.runtime import gather, init_distributed, plan_runtime
from essl_info.training.trainer import TrainConfig, train
rt = plan_runtime("cpu")
assert init_distributed(rt)
# 1. gathered contrastive loss under DDP == the single-process loss on the whole batch
g = torch.Generator().manual_seed(0)
x1, x2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
lin, ref = torch.nn.Linear(5, 3, bias=False), torch.nn.Linear(5, 3, bias=False)
with torch.no_grad():   # the same start on every rank (module init differs per process)
    lin.weight.copy_(torch.randn(3, 5, generator=g))
ref.load_state_dict(lin.state_dict())
cross_view_infonce(ref(x1), ref(x2)).backward()
rows = slice(4 * rt.rank, 4 * rt.rank + 4)
net = DDP(lin)
out = net(torch.cat([x1[rows], x2[rows]]))
cross_view_infonce(gather(out[:4], rt), gather(out[4:], rt)).backward()
assert torch.allclose(lin.weight.grad, ref.weight.grad, atol=1e-6), "DDP gradient"
# 2. a tiny training run in the same process group: each process gets half the batch,
#    rank 0 evaluates and writes the files
res = train(TrainConfig(**{TINY}, out=sys.argv[1], device="cpu"))
# one file per rank: the two processes' stdout interleave
(pathlib.Path(sys.argv[1]) / f"rank{rt.rank}.ok").write_text(str(res.epochs_done))
dist.destroy_process_group()
"""


def test_ddp_on_cpu_with_torchrun(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.replace("{TINY}", repr(TINY)))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", str(script), str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for rank in (0, 1):
        assert (tmp_path / "run" / f"rank{rank}.ok").read_text() == "2", f"rank {rank}"
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["progress"]["finished"]
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    events = _events(tmp_path / "run" / "log.jsonl")
    assert events[0]["world_size"] == 2
