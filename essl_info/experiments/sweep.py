"""A sweep of training runs: declared, stored by config, skipped when done, resumed when
interrupted, executed by local workers or printed for a scheduler (DESIGN §10).

    >>> base = TrainConfig(dataset="digits", epochs=10)
    >>> specs = grid(base, transform=[(t, {"transforms": (t,)}) for t in ("rotation4", "hflip")],
    ...              objective=[("pure", {"ssl": "none"}), ("e-simclr", {"ssl": "simclr"})],
    ...              seed=[(s, {"seed": s}) for s in range(3)])
    >>> sweep = Sweep("runs/theory", specs)                       # doctest: +SKIP
    >>> execute(sweep, jobs=2)                                    # doctest: +SKIP
    >>> rows = collect(sweep)                                     # doctest: +SKIP

Layout on disk: ``ROOT/runs/<key>/`` per run, where ``key`` is a hash of the resolved
``TrainConfig`` without its run fields (``config.RUN_FIELDS``: device, threads, out, …), so
the same science lands in the same folder whoever asks for it. Beside the trainer's files
(``checkpoint.pt``, ``resume.pt``, ``log.jsonl``) the runner writes ``run.json`` (the
resolved config, the run's tags and its command) and, for local workers, ``worker.log``
(the worker's stdout and stderr).

Every run executes the same line, ``essl-info train … --out ROOT/runs/<key>
--resume-if-present`` (local workers on Linux run it in a child forked from
``experiments.zygote``, which imported the library once: a quick-mode run spends 20-60 s
training and used to spend ~5 s more importing torch and the library):
the trainer starts afresh when the folder holds no resume file, continues from the last
finished epoch when it does (bit-identical on CPU), and does no work on a finished run.
A run is *finished* when its ``log.jsonl`` ends with ``{"event": "end", "finished": true}``
and ``checkpoint.pt`` exists; finished runs are skipped without starting a process.
Aggregation (``collect``) reads the runs' files, never a runner's memory, so a sweep run
by hand from ``commands()`` aggregates exactly as one run by ``execute``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..training.config import RUN_FIELDS, TrainConfig, resolve_config
from .commands import train_arguments

RUN_FILE = "run.json"
WORKER_LOG = "worker.log"
KEY_LENGTH = 16   # hex digits of sha256: 64 bits, no collision in any realistic sweep


# =============================================================================== runs
def run_key(cfg: TrainConfig) -> str:
    """Hash of the resolved config without its run fields (what the science depends on)."""
    from ..types import _json_safe

    science = {k: v for k, v in _json_safe(asdict(resolve_config(cfg))).items()
               if k not in RUN_FIELDS}
    text = json.dumps(science, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


@dataclass(frozen=True)
class Run:
    """One training run of a sweep: its resolved config (``out`` = its folder), its tags
    (what it stands for in the experiment, e.g. transform/objective/seed) and its key."""

    config: TrainConfig
    tags: tuple[tuple[str, Any], ...]
    key: str

    @property
    def folder(self) -> Path:
        return Path(self.config.out)

    @property
    def tag_dict(self) -> dict[str, Any]:
        return dict(self.tags)


def grid(base: TrainConfig, **axes: Sequence[tuple[Any, Mapping[str, Any]]]
         ) -> list[tuple[dict, TrainConfig]]:
    """The product of ``axes``: each axis a list of ``(label, overrides)``; every
    combination gives ``({axis: label, …}, replace(base, **all overrides))``. Two axes
    overriding the same field in one combination is an error."""
    out = []
    names = list(axes)
    for combo in itertools.product(*(axes[n] for n in names)):
        merged: dict[str, Any] = {}
        for name, (_, overrides) in zip(names, combo):
            clash = sorted(set(merged) & set(overrides))
            if clash:
                raise ValueError(f"axis {name!r} overrides {clash} already set by another axis")
            merged.update(overrides)
        out.append(({n: label for n, (label, _) in zip(names, combo)}, replace(base, **merged)))
    return out


class Sweep:
    """Runs under ``root``: ``specs`` are ``(tags, TrainConfig)`` pairs (``grid`` makes
    them). Run fields of the configs are set by the sweep: ``out`` (the run's folder),
    ``resume_if_present`` (always: a fresh folder starts, an interrupted one continues),
    ``overwrite``/``stop_after`` (off), ``progress`` (off)."""

    def __init__(self, root: str | Path, specs: Iterable[tuple[Mapping[str, Any], TrainConfig]]):
        self.root = Path(root).resolve()
        runs = []
        for tags, cfg in specs:
            cfg = resolve_config(replace(cfg, out=None, resume=False, resume_if_present=True,
                                         overwrite=False, stop_after=None, progress=False))
            key = run_key(cfg)
            cfg = replace(cfg, out=str(self.root / "runs" / key))
            runs.append(Run(cfg, tuple(sorted(dict(tags).items())), key))
        if not runs:
            raise ValueError("a sweep needs at least one run")
        self.runs: tuple[Run, ...] = tuple(runs)

    def unique(self) -> list[Run]:
        """One run per key (two tag sets may name the same science: it is trained once)."""
        seen: dict[str, Run] = {}
        for r in self.runs:
            seen.setdefault(r.key, r)
        return list(seen.values())

    def __len__(self) -> int:
        return len(self.unique())


# ============================================================================== state
def is_finished(folder: str | Path) -> bool:
    """The run in ``folder`` ended: its log's last event is a finished ``end``."""
    folder = Path(folder)
    log = folder / "log.jsonl"
    if not (folder / "checkpoint.pt").exists() or not log.exists():
        return False
    last = None
    with open(log) as f:
        for line in f:
            if line.strip():
                last = line
    if last is None:
        return False
    try:
        rec = json.loads(last)
    except json.JSONDecodeError:   # a line cut by a kill
        return False
    return rec.get("event") == "end" and bool(rec.get("finished"))


def _write_run_file(run: Run, program: str) -> None:
    from ..types import _json_safe

    run.folder.mkdir(parents=True, exist_ok=True)
    doc = {"key": run.key, "tags": dict(run.tags), "config": _json_safe(asdict(run.config)),
           "command": command(run, program)}
    tmp = run.folder / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, run.folder / RUN_FILE)


# =========================================================================== commands
def command(run: Run, program: str = "essl-info") -> str:
    """The shell line that executes ``run`` (``program`` is prefixed as written)."""
    return f"{program} train {shlex.join(train_arguments(run.config))}"


def commands(sweep: Sweep, program: str = "essl-info", *, pending_only: bool = True
             ) -> list[str]:
    """One ``essl-info train …`` line per run not yet finished (all runs with
    ``pending_only=False``), for a scheduler; writes each run's ``run.json``."""
    out = []
    for run in sweep.unique():
        _write_run_file(run, program)
        if not (pending_only and is_finished(run.folder)):
            out.append(command(run, program))
    return out


# ========================================================================== execution
@dataclass(frozen=True)
class SweepOutcome:
    total: int
    skipped: int                      # already finished before this call
    done: int                         # finished by this call
    failed: tuple[tuple[str, str], ...]   # (folder, last line of its worker log)
    seconds: float


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


# ==================================================================== local workers
class _Zygote:
    """``python -m essl_info.experiments.zygote``: forks a worker per run from a process
    that imported the library once (Linux). ``start`` returns a handle with the calls of
    ``subprocess.Popen`` that ``execute`` uses."""

    START_TIMEOUT_S = 600.0   # its first answer waits for its imports (slow under load)

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "essl_info.experiments.zygote"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.exit_codes: dict[int, int] = {}
        self._buf = b""
        self._next = 0

    def read(self, timeout: float) -> list[dict]:
        out = self.proc.stdout
        ready, _, _ = select.select([out], [], [], timeout)
        if not ready:
            return []
        chunk = os.read(out.fileno(), 1 << 16)
        if not chunk:
            raise RuntimeError(f"the sweep's worker server ended (exit code "
                               f"{self.proc.wait()}); its stderr is above")
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        msgs = [json.loads(x) for x in lines if x.strip()]
        for m in msgs:
            if "rc" in m:
                self.exit_codes[m["pid"]] = m["rc"]
        return msgs

    def start(self, argv: list[str], log_path: Path) -> _ForkedRun:
        i, self._next = self._next, self._next + 1
        self.proc.stdin.write((json.dumps({"id": i, "argv": argv, "log": str(log_path)})
                               + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while time.monotonic() < deadline:
            for m in self.read(1.0):
                if m.get("id") == i:
                    return _ForkedRun(self, m["pid"])
        raise RuntimeError(f"the sweep's worker server did not start a run within "
                           f"{self.START_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        """End of its stdin: it kills what still runs, reaps and exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


class _ForkedRun:
    def __init__(self, zygote: _Zygote, pid: int):
        self.zygote, self.pid = zygote, pid

    @property
    def returncode(self) -> int | None:
        return self.zygote.exit_codes.get(self.pid)

    def poll(self) -> int | None:
        if self.pid not in self.zygote.exit_codes:
            self.zygote.read(0.0)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        while self.pid not in self.zygote.exit_codes:
            self.zygote.read(0.1)
        return self.zygote.exit_codes[self.pid]


def execute(sweep: Sweep, *, jobs: int = 1, progress: Callable[[str], None] | None = None,
            poll_s: float = 0.2) -> SweepOutcome:
    """Run every unfinished run of ``sweep``; ``jobs`` local worker processes (each
    ``essl-info train …`` in a process of its own, output in the run's ``worker.log``; on
    Linux forked from a server that imported the library once, ``experiments.zygote``,
    elsewhere a fresh interpreter per run), or ``jobs=0`` in this process (for
    debugging). Finished runs are skipped, interrupted ones resumed. ``progress``
    receives one line per event (default: stderr): runs done / total and the time left,
    estimated from the runs finished so far."""
    if not isinstance(jobs, int) or jobs < 0:
        raise ValueError(f"jobs must be an integer >= 0, got {jobs!r}")
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    runs = sweep.unique()
    todo = [r for r in runs if not is_finished(r.folder)]
    skipped = len(runs) - len(todo)
    prog = f"{shlex.quote(sys.executable)} -m essl_info.cli"
    for r in todo:
        _write_run_file(r, "essl-info")
    say(f"sweep {sweep.root}: {len(runs)} runs, {skipped} already finished, "
        f"{len(todo)} to run" + (f" on {jobs} worker(s)" if jobs else " in this process"))
    durations: list[float] = []
    failed: list[tuple[str, str]] = []

    def report(run: Run, ok: bool, seconds: float, running: int) -> None:
        durations.append(seconds)
        n_done = skipped + len(durations)
        left = len(todo) - len(durations)
        eta = (sum(durations) / len(durations)) * left / max(1, jobs or 1) if left else 0.0
        say(f"[{n_done}/{len(runs)}] {'done' if ok else 'FAILED'} {run.key} "
            f"{dict(run.tags)} in {_fmt_time(seconds)}; {running} running, "
            f"~{_fmt_time(eta)} left")

    if jobs == 0:
        from ..training.trainer import train

        for r in todo:
            t = time.perf_counter()
            try:
                started = any((r.folder / f).exists() for f in ("resume.pt", "checkpoint.pt"))
                train(replace(r.config, resume=started))   # (no "starting afresh" notice)
                ok = True
            except (ValueError, RuntimeError) as e:
                ok = False
                failed.append((str(r.folder), str(e).splitlines()[0] if str(e) else repr(e)))
            report(r, ok, time.perf_counter() - t, 0)
        return SweepOutcome(len(runs), skipped, len(todo) - len(failed), tuple(failed),
                            time.perf_counter() - t0)

    queue = list(todo)
    zygote = _Zygote() if todo and sys.platform.startswith("linux") else None
    active: dict[Any, tuple[Run, float, Any]] = {}
    try:
        while queue or active:
            while queue and len(active) < jobs:
                r = queue.pop(0)
                log = open(r.folder / WORKER_LOG, "a")
                argv = ["train", *train_arguments(r.config)]
                log.write(f"$ {prog} {shlex.join(argv)}\n")
                log.flush()
                if zygote is not None:
                    proc = zygote.start(argv, r.folder / WORKER_LOG)
                else:
                    proc = subprocess.Popen([sys.executable, "-m", "essl_info.cli", *argv],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
                active[proc] = (r, time.perf_counter(), log)
            time.sleep(poll_s)
            for proc in [p for p in active if p.poll() is not None]:
                r, start, log = active.pop(proc)
                log.close()
                ok = proc.returncode == 0 and is_finished(r.folder)
                if not ok:
                    failed.append((str(r.folder), _last_line(r.folder / WORKER_LOG)
                                   or f"exit code {proc.returncode}"))
                report(r, ok, time.perf_counter() - start, len(active))
    finally:   # interrupted: stop the workers (their runs resume next time)
        for proc, (_, _, log) in active.items():
            proc.kill()
            proc.wait()
            log.close()
        if zygote is not None:
            zygote.close()
    return SweepOutcome(len(runs), skipped, len(todo) - len(failed), tuple(failed),
                        time.perf_counter() - t0)


# ========================================================================= aggregation
def collect(sweep: Sweep, *, require_finished: bool = True) -> list[dict]:
    """One row per run (tags included, so a key shared by several tag sets gives several
    rows), read from disk: ``tags``, ``key``, ``folder``, ``finished`` and the final
    scalar ``metrics`` of its ``checkpoint.pt``. Raises ValueError naming the first
    unfinished run when ``require_finished``."""
    from ..models.checkpoint import load_checkpoint

    cache: dict[str, dict] = {}
    rows = []
    for run in sweep.runs:
        finished = is_finished(run.folder)
        if not finished and require_finished:
            raise ValueError(f"run {run.key} {dict(run.tags)} has not finished; run the "
                             f"sweep (or its command in {run.folder / RUN_FILE}) first")
        if finished and run.key not in cache:
            ckpt = load_checkpoint(run.folder / "checkpoint.pt")
            cache[run.key] = {k: v for k, v in ckpt.get("metrics", {}).items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)}
        rows.append({"tags": dict(run.tags), "key": run.key, "folder": str(run.folder),
                     "finished": finished, "metrics": cache.get(run.key, {})})
    return rows


__all__ = ["Run", "Sweep", "SweepOutcome", "collect", "command", "commands", "execute",
           "grid", "is_finished", "run_key"]
