"""GPU figures, one prepared script (issue 13, item 5). Not run yet: no GPU was available.

    python benchmarks/gpu_bench.py                 # on a CUDA machine: the full table
    python benchmarks/gpu_bench.py --smoke         # CPU, seconds: every part at toy size
    python benchmarks/gpu_bench.py --out FILE.md   # also write the markdown table there

Parts (each row: what, settings, time, throughput, check):

(a) training: one epoch of E-SimCLR (rotation4, lambda 0.4) with ResNet-18 (CIFAR stem)
    at batch 512 on CIFAR-shaped data, 50,000 32x32 RGB images synthesised in memory on
    the device (the timing does not depend on pixel values), ``training_step`` exactly as
    the trainer runs it; bf16 autocast on/off x channels_last on/off x torch.compile
    on/off. The first steps (compilation, cudnn autotuning) are timed apart as warm-up.
(b) KSG at N in {1e4, 1e5, 1e6}, d = 16+16: the torch backend on CUDA against the numba
    CPU backend; radii and counts must be identical (at N = 1e6 the CPU run would take
    about an hour, so the CUDA counts of 2,000 random query rows are checked against a
    direct float64 numpy computation of the definitions instead).
(c) the probe (``method="probe"``) at d = 512, N = 40,000, 10 classes, on CUDA and CPU.

``--smoke`` runs the same code at toy sizes on the CPU (small_cnn, a few steps; N = 2,000
d = 4+4; the probe at N = 1,000, d = 16) so that the script is exercised by the tests
(``tests/test_gpu_bench.py``) and cannot rot unnoticed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np
import torch

from essl_info import estimate_mi
from essl_info.data import parse_transformations
from essl_info.estimators.neighbors import Block, neighbor_stats
from essl_info.models.networks import ESSLModel, model_spec
from essl_info.tasks import class_mixture, gaussian
from essl_info.training.runtime import plan_runtime, prepare_model
from essl_info.training.trainer import TrainConfig, resolve_config, training_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ======================================================================== (a) training
def train_epoch(device: str, *, amp: str, channels_last: str, compile: bool,
                backbone: str = "resnet18_cifar", batch: int = 512, n_images: int = 50_000,
                warmup_steps: int = 3, max_steps: int | None = None) -> dict:
    """Seconds for one epoch (n_images // batch steps) after ``warmup_steps`` steps."""
    rt = plan_runtime(device, amp=amp, channels_last=channels_last, compile=compile)
    spec = model_spec(backbone=backbone, in_channels=3, image_size=32, n_classes=10,
                      transformations=[("rotation4", 4)], mean=[0.5] * 3, std=[0.25] * 3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ESSLModel(spec).train()
    fwd = prepare_model(model, rt)
    cfg = resolve_config(TrainConfig(dataset="cifar10", backbone=backbone, image_size=32,
                                     trans_size=16, batch_size=batch, out="unused"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    transforms = parse_transformations(["rotation4"])
    g = torch.Generator(device=rt.device).manual_seed(0)
    images = torch.rand(n_images, 3, 32, 32, generator=g, device=rt.device)
    labels = torch.randint(0, 10, (n_images,), generator=g, device=rt.device)
    steps = n_images // batch if max_steps is None else min(max_steps, n_images // batch)

    def step(s):
        idx = torch.arange(s * batch, (s + 1) * batch, device=rt.device) % n_images
        return training_step(fwd, opt, images[idx], labels[idx], transforms, cfg, rt, g, 0.1)

    t0 = time.perf_counter()
    for s in range(warmup_steps):
        step(s)
    _sync(rt.device)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in range(steps):
        stats = step(s)
    _sync(rt.device)
    sec = time.perf_counter() - t0
    loss = float(stats["loss"])
    if not np.isfinite(loss):
        raise RuntimeError(f"training diverged (loss {loss})")
    return {"part": "a", "what": f"E-SimCLR epoch, {backbone}, batch {batch}",
            "settings": f"amp={amp} channels_last={channels_last} compile={compile}",
            "warm-up [s]": warm, "time [s]": sec * (n_images // batch) / steps,
            "throughput": f"{steps * batch / sec:.0f} img/s", "check": f"loss {loss:.3f}"}


# ============================================================================= (b) KSG
def _direct_rows(x, y, k, rows):
    """eps and strict marginal counts of ``rows`` from the definitions (float64 numpy)."""
    eps, cx, cy = [], [], []
    for i in rows:
        dx = np.abs(x - x[i]).max(1)
        dy = np.abs(y - y[i]).max(1)
        dj = np.maximum(dx, dy)
        dj[i] = np.inf
        e = np.partition(dj, k - 1)[k - 1]
        eps.append(e)
        cx.append(int((dx < e).sum()) - 1)
        cy.append(int((dy < e).sum()) - 1)
    return np.array(eps), np.array(cx), np.array(cy)


def ksg_case(n: int, d: int, device: str, *, cpu_reference: bool, check_rows: int = 2000,
             k: int = 3) -> dict:
    x, y = gaussian(d, 0.3).sample(n, 0)
    blocks = [Block(x), Block(y)]
    spec = dict(joint=[0, 1], subspaces=[[0], [1]], count="strict")
    neighbor_stats([Block(x[:256]), Block(y[:256])], k, backend="torch", device=device,
                   **spec)  # warm-up (CUDA context, kernels)
    _sync(torch.device(device))
    t0 = time.perf_counter()
    st = neighbor_stats(blocks, k, backend="torch", device=device, **spec)
    dev_s = time.perf_counter() - t0
    row = {"part": "b", "what": f"KSG N={n} d={d}+{d}", "settings": f"torch on {device}",
           "time [s]": dev_s, "throughput": f"{n * n * 2 * d / dev_s:.2e} abs-diff/s"}
    if cpu_reference:
        t0 = time.perf_counter()
        ref = neighbor_stats(blocks, k, backend="numba", **spec)
        row["CPU numba [s]"] = time.perf_counter() - t0
        same = np.array_equal(ref.eps, st.eps) and np.array_equal(ref.counts, st.counts)
        row["check"] = "counts identical to numba" if same else "COUNTS DIFFER"
    else:
        rows = np.random.default_rng(0).choice(n, min(check_rows, n), replace=False)
        eps, cx, cy = _direct_rows(x, y, k, rows)
        same = (np.array_equal(eps, st.eps[rows]) and np.array_equal(cx, st.counts[0, rows])
                and np.array_equal(cy, st.counts[1, rows]))
        row["check"] = (f"{len(rows)} rows identical to the definitions" if same
                        else "COUNTS DIFFER")
    if "DIFFER" in row["check"]:
        raise RuntimeError(f"{row['what']}: {row['check']}")
    return row


# =========================================================================== (c) probe
def probe_case(n: int, d: int, device: str) -> dict:
    c, z = class_mixture(n_classes=10, d=d, separation=1.98).sample(n, 0)
    t0 = time.perf_counter()
    est = estimate_mi(c, z, x_discrete=True, method="probe", device=device)
    sec = time.perf_counter() - t0
    return {"part": "c", "what": f"probe N={n} d={d}", "settings": device,
            "time [s]": sec, "check": f"{est.value:.3f} +- {est.stderr:.3f} nats"}


# ============================================================================== driver
def run(smoke: bool) -> list[dict]:
    if smoke:
        dev = "cpu"
        rows = [train_epoch(dev, amp="off", channels_last=cl, compile=False,
                            backbone="small_cnn", batch=16, n_images=64, warmup_steps=1,
                            max_steps=2) for cl in ("off", "on")]
        rows.append(ksg_case(2000, 4, dev, cpu_reference=True))
        rows.append(ksg_case(2000, 4, dev, cpu_reference=False, check_rows=50))
        rows.append(probe_case(1000, 16, dev))
        return rows
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke for the CPU check")
    rows = []
    for amp, cl, comp in itertools.product(("bf16", "off"), ("on", "off"), (False, True)):
        rows.append(train_epoch("cuda", amp=amp, channels_last=cl, compile=comp))
        print(rows[-1], flush=True)
    for n in (10_000, 100_000, 1_000_000):
        rows.append(ksg_case(n, 16, "cuda", cpu_reference=n <= 100_000))
        print(rows[-1], flush=True)
    for dev in ("cuda", "cpu"):
        rows.append(probe_case(40_000, 512, dev))
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return (f"Command: `python benchmarks/gpu_bench.py`; {dev}; torch {torch.__version__}; "
            f"load average {os.getloadavg()[0]:.1f}.\n\n" + "\n".join(lines))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU (seconds)")
    p.add_argument("--out", help="also write the markdown table to this file")
    args = p.parse_args(argv)
    table = markdown(run(args.smoke))
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
