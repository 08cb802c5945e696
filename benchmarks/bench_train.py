"""CPU training throughput of the E-SSL trainer (opt-in; not part of ``pytest``'s default run).

One full E-SimCLR step as ``essl_info.train.training_step`` runs it: two 32×32 SimCLR views,
a 16×16 crop carrying all four rotations (E-SSL's CIFAR shapes), forward, the named losses,
backward and an SGD step. Throughput = source images per second (a batch of B images is
B, though the backbone sees 2B views and 4B rotated crops).

    pytest benchmarks/bench_train.py                     # pytest-benchmark table
    python benchmarks/bench_train.py [--threads N]       # a plain table, images/s
"""

from __future__ import annotations

import argparse
import time

import pytest
import torch

from essl_info.data import parse_transformations
from essl_info.models import ESSLModel, model_spec
from essl_info.runtime import plan_runtime
from essl_info.train import TrainConfig, resolve_config, training_step

CASES = {  # backbone -> batch size (small enough for a CPU step of a few seconds)
    "small_cnn": 128,
    "resnet18_cifar": 32,
}


def make_step(backbone: str, batch: int, size: int = 32, trans_size: int = 16):
    """A closure running one training step on a fixed synthetic RGB batch."""
    spec = model_spec(backbone=backbone, in_channels=3, image_size=size, n_classes=10,
                      transformations=[("rotation4", 4)], mean=[0.5] * 3, std=[0.25] * 3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ESSLModel(spec).train()
    cfg = resolve_config(TrainConfig(dataset="cifar10", backbone=backbone, image_size=size,
                                     trans_size=trans_size, batch_size=batch, out="unused"))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rt = plan_runtime("cpu")
    transforms = parse_transformations(["rotation4"])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)

    def step():
        return training_step(model, opt, x, y, transforms, cfg, rt, g, lr=0.01)

    return step


@pytest.mark.parametrize("backbone", list(CASES))
def test_cpu_train_throughput(benchmark, backbone):
    batch = CASES[backbone]
    step = make_step(backbone, batch)
    stats = benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
    assert torch.isfinite(stats["loss"])
    benchmark.extra_info["batch"] = batch
    benchmark.extra_info["images_per_s"] = batch / benchmark.stats.stats.median
    benchmark.extra_info["threads"] = torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"{'backbone':<16}{'batch':>6}{'s/step':>10}{'images/s':>10}")
    for backbone, batch in CASES.items():
        step = make_step(backbone, batch)
        step()  # warm-up
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        med = sorted(times)[len(times) // 2]
        print(f"{backbone:<16}{batch:>6}{med:>10.3f}{batch / med:>10.1f}")


if __name__ == "__main__":
    main()
