"""The experiment runner (essl_info.experiments.sweep): a tiny sweep runs, is skipped when
rerun, resumes after a real SIGKILL of its worker, and printed commands run one by one by
hand aggregate exactly as local workers do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from essl_info.experiments.commands import train_arguments, train_command
from essl_info.experiments.sweep import (
    Sweep,
    collect,
    commands,
    execute,
    grid,
    is_finished,
    run_key,
)
from essl_info.models.checkpoint import load_checkpoint
from essl_info.training.config import TrainConfig

BASE = TrainConfig(dataset="digits", image_size=8, trans_size=8, n_train=64, n_test=40,
                   width=4, batch_size=32, knn_k=20, final_linear_probe=False, epochs=1)
PROGRAM = f"{sys.executable} -m essl_info.cli"
TIMINGS = ("epoch_time_s", "images_per_s")   # wall-clock metrics differ between runs


def _specs(base=BASE):
    return grid(base, objective=[("pure", {"ssl": "none"}), ("e-simclr", {"ssl": "simclr"})],
                seed=[(0, {"seed": 0})])


def _science(rows):
    return sorted((json.dumps(r["tags"], sort_keys=True),
                   {k: v for k, v in r["metrics"].items() if k not in TIMINGS})
                  for r in rows)


def test_grid_and_keys():
    specs = grid(BASE, t=[("rot", {"transforms": ("rotation4",)}),
                          ("flip", {"transforms": ("hflip",)})],
                 seed=[(0, {"seed": 0}), (1, {"seed": 1})])
    assert [tags for tags, _ in specs] == [{"t": "rot", "seed": 0}, {"t": "rot", "seed": 1},
                                           {"t": "flip", "seed": 0}, {"t": "flip", "seed": 1}]
    assert specs[3][1].transforms == ("hflip",) and specs[3][1].seed == 1
    # the key ignores run fields (device, threads, out, progress) but not the science
    assert run_key(BASE) == run_key(TrainConfig(**{**BASE.__dict__, "device": "cpu",
                                                   "threads": 2, "out": "elsewhere"}))
    assert run_key(BASE) != run_key(TrainConfig(**{**BASE.__dict__, "seed": 1}))
    with pytest.raises(ValueError, match="already set"):
        grid(BASE, a=[("x", {"seed": 1})], b=[("y", {"seed": 2})])


def test_command_round_trips_the_config():
    cfg = TrainConfig(dataset="rotation-world", data_params=(("m", 4), ("eps", 0.25)),
                      ssl="none", lam=0.7, proj_dims=(32, 16), final_linear_probe=False,
                      progress=False, epochs=3, seed=5, out="somewhere", resume=True)
    line = train_command(cfg)
    assert line.startswith("essl-info train --dataset rotation-world")
    assert "--data-param m=4" in line and "--data-param eps=0.25" in line
    from essl_info.cli import build_parser
    from essl_info.training.config import config_from_args, resolve_config

    args = build_parser().parse_args(["train", *train_arguments(cfg)])
    assert resolve_config(config_from_args(args)) == resolve_config(cfg)


def test_jobs_runs_skips_and_printed_commands_aggregate_the_same(tmp_path):
    by_workers = Sweep(tmp_path / "a", _specs())
    lines = []
    out = execute(by_workers, jobs=2, progress=lines.append)
    assert (out.total, out.skipped, out.done, out.failed) == (2, 0, 2, ())
    assert "[2/2]" in lines[-1] and "left" in lines[-1]
    for run in by_workers.runs:
        assert is_finished(run.folder) and (run.folder / "run.json").exists()
    assert _children(b"zygote") == []       # the worker server ended with the sweep
    # rerun: nothing to do, no process started
    t = time.perf_counter()
    again = execute(by_workers, jobs=2, progress=lambda _: None)
    assert (again.skipped, again.done) == (2, 0) and time.perf_counter() - t < 2

    by_hand = Sweep(tmp_path / "b", _specs())
    cmds = commands(by_hand, program=PROGRAM)
    assert len(cmds) == 2 and all(c.startswith(PROGRAM + " train ") for c in cmds)
    for c in cmds:   # a scheduler would run these, one per task
        subprocess.run(c, shell=True, check=True, capture_output=True)
    assert commands(by_hand, program=PROGRAM) == []      # nothing pending any more
    assert _science(collect(by_hand)) == _science(collect(by_workers))


def _worker_pids(folder) -> list[int]:
    """The processes whose stdout is ``folder``'s worker log (Linux /proc): the worker
    running that run, however it was started."""
    target = os.path.realpath(folder / "worker.log")
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            if os.path.realpath(os.readlink(f"/proc/{d}/fd/1")) == target:
                pids.append(int(d))
        except OSError:
            continue
    return pids


def _children(word: bytes) -> list[int]:
    """Our child processes whose command line holds ``word``."""
    out = []
    for d in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{d}/stat").read()
            cmd = open(f"/proc/{d}/cmdline", "rb").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and word in cmd:
            out.append(int(d))
    return out


def test_resumes_after_sigkill_of_a_worker(tmp_path):
    base = TrainConfig(**{**BASE.__dict__, "epochs": 6, "n_train": 128})
    sweep = Sweep(tmp_path / "killed", grid(base, seed=[(0, {"seed": 0})]))
    run = sweep.runs[0]
    log = run.folder / "log.jsonl"
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "out", execute(sweep, jobs=1, progress=lambda _: None, poll_s=0.05)))
    worker.start()
    deadline = time.time() + 180
    while time.time() < deadline:   # kill once an epoch is saved, before the last one
        if (run.folder / "resume.pt").exists() and '"event": "epoch"' in (
                log.read_text() if log.exists() else ""):
            break
        time.sleep(0.02)
    [pid] = _worker_pids(run.folder)
    os.kill(pid, signal.SIGKILL)
    worker.join()
    out = result["out"]
    assert out.done == 0 and len(out.failed) == 1 and out.failed[0][0] == str(run.folder)
    saved = load_checkpoint(run.folder / "resume.pt")["progress"]["epoch"]
    assert 1 <= saved < 6 and not is_finished(run.folder)

    out = execute(sweep, jobs=1, progress=lambda _: None)
    assert (out.skipped, out.done, out.failed) == (0, 1, ())
    starts = [json.loads(x) for x in log.read_text().splitlines() if '"start"' in x]
    assert starts[-1]["epoch"] == saved          # resumed, not restarted
    # the resumed run equals an uninterrupted one, bit for bit (CPU, one thread)
    clean = Sweep(tmp_path / "clean", grid(base, seed=[(0, {"seed": 0})]))
    execute(clean, jobs=0, progress=lambda _: None)
    a = load_checkpoint(run.folder / "checkpoint.pt")["state_dict"]
    b = load_checkpoint(clean.runs[0].folder / "checkpoint.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unfinished_runs_are_named_when_collecting(tmp_path):
    sweep = Sweep(tmp_path / "x", _specs())
    with pytest.raises(ValueError, match="has not finished"):
        collect(sweep)
    assert [r["finished"] for r in collect(sweep, require_finished=False)] == [False, False]


def test_a_failing_run_is_named_with_the_last_line_of_its_log(tmp_path):
    # CIFAR-10 from an empty folder: the worker starts, fails reading the data, and its
    # one-line error (the worker's stderr, in its worker.log) is what the executor reports
    empty = tmp_path / "no-cifar"
    empty.mkdir()
    bad = TrainConfig(**{**BASE.__dict__, "dataset": "cifar10", "data_dir": str(empty)})
    sweep = Sweep(tmp_path / "bad", grid(bad, seed=[(0, {"seed": 0})]))
    out = execute(sweep, jobs=1, progress=lambda _: None, poll_s=0.05)
    assert out.done == 0 and len(out.failed) == 1
    folder, line = out.failed[0]
    log = (sweep.runs[0].folder / "worker.log").read_text()
    assert folder == str(sweep.runs[0].folder) and line.startswith("essl-info: error:")
    assert log.splitlines()[0].startswith("$ ") and line in log
    assert not is_finished(sweep.runs[0].folder)
