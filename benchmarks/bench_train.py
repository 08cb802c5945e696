"""CPU training throughput of the E-SSL trainer (opt-in; not part of ``pytest``'s default run).

One full E-SimCLR step as ``essl_info.training.trainer.training_step`` runs it: two 32×32 SimCLR views,
a 16×16 crop carrying all four rotations (E-SSL's CIFAR shapes), forward, the named losses,
backward and an SGD step, on a fixed synthetic RGB batch. Throughput = source images per
second (a batch of B images counts B, though the backbone sees 2B views and 4B rotated
crops). Each case runs with 1 and with 2 CPU threads: on a machine whose cores are busy
with other work, two OpenMP threads can run far slower than one.

    pytest benchmarks/bench_train.py [--update-readme]   # table "train_throughput"
    python benchmarks/bench_train.py                     # the same cases, plain timer

``ESSL_BENCH_QUICK=1`` runs only small_cnn with one thread.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from essl_info.data import parse_transformations
from essl_info.models.networks import ESSLModel, count_parameters, model_spec
from essl_info.training.runtime import plan_runtime
from essl_info.training.trainer import TrainConfig, resolve_config, training_step

TABLE = "train_throughput"
QUICK = os.environ.get("ESSL_BENCH_QUICK") == "1"
CASES = {  # backbone -> batch size (a CPU step of a few seconds)
    "small_cnn": 128,
    "resnet18_cifar": 32,
}
THREADS = (1,) if QUICK else (1, 2)
BACKBONES = ["small_cnn"] if QUICK else list(CASES)


def make_step(backbone: str, batch: int, size: int = 32, trans_size: int = 16):
    """A closure running one training step on a fixed synthetic batch; and the model."""
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

    return step, model


class _Threads:
    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def _row(tables, backbone, threads, batch, seconds, model):
    tables.add(TABLE, (backbone, threads), backbone=backbone,
               parameters=count_parameters(model), batch=batch, threads=threads,
               **{"s/step": seconds, "images/s": batch / seconds})


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_cpu_train_throughput(benchmark, tables, backbone, threads):
    batch = CASES[backbone]
    with _Threads(threads):
        step, model = make_step(backbone, batch)
        stats = benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
    assert torch.isfinite(stats["loss"])
    _row(tables, backbone, threads, batch, benchmark.stats.stats.median, model)


def main() -> None:
    from conftest import Tables  # benchmarks/conftest.py, next to this file

    tables = Tables()
    for backbone in BACKBONES:
        for threads in THREADS:
            with _Threads(threads):
                step, model = make_step(backbone, CASES[backbone])
                step()  # warm-up
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
            _row(tables, backbone, threads, CASES[backbone], sorted(times)[1], model)
    print(f"torch {torch.__version__}")
    print(tables.markdown(TABLE))


if __name__ == "__main__":
    main()
