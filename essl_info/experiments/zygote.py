"""A process that imports the library once and forks one child per training run, so that
the runs of a sweep (``sweep.execute``'s local workers, Linux) do not each pay the ~5 s
of importing torch and the library.

    python -m essl_info.experiments.zygote        # started by sweep.execute, not by hand

Protocol, JSON lines: the parent writes ``{"id": i, "argv": [...], "log": path}`` on the
zygote's stdin; the zygote forks a child that appends its stdout and stderr (file
descriptors 1 and 2) to ``log`` and runs ``essl-info ARGV``, and answers ``{"id": i,
"pid": p}``; when a child ends it writes ``{"pid": p, "rc": code}`` (negative: killed by
that signal, as ``subprocess`` reports it). End of stdin (the parent finished or died)
ends the zygote, after killing the children still running.

Forking is safe because the zygote only imports: no torch op and no thread pool of ours
has run in it (torch's intra-op pool and numba's start on first use, in the child), which
is the state in which PyTorch's own DataLoader forks its workers.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys

PRELOAD = ("essl_info.cli", "essl_info.training.trainer")


def _child(req: dict, proto_fd: int, sigint) -> None:
    """In the forked child: redirect, run ``essl-info ARGV``, exit with its code (never
    returns: ``os._exit``, after the atexit handlers, so the zygote's loop is not
    resumed in the child)."""
    code = 1
    try:
        os.close(proto_fd)
        signal.signal(signal.SIGINT, sigint)
        fd = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        from essl_info.cli import main

        code = int(main(list(req["argv"])) or 0)
    except SystemExit as e:            # argparse's exit (its message is already printed)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:              # noqa: BLE001 -- reported in the run's log
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reap(children: set[int], proto, *, block: bool = False) -> None:
    while children:
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        children.discard(pid)
        proto.write(json.dumps({"pid": pid, "rc": os.waitstatus_to_exitcode(status)}) + "\n")


def main() -> None:
    # Ctrl-C is the parent's to handle; the children get what this process inherited (a
    # worker started with SIGINT ignored, as under nohup or `&`, keeps ignoring it)
    inherited = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    proto = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol, on a private copy
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)                                # stray prints never reach the pipe
    os.close(null)
    children: set[int] = set()
    buf = b""
    while True:
        ready, _, _ = select.select([0], [], [], 0.05)
        if ready:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(req, proto.fileno(), inherited)
                children.add(pid)
                proto.write(json.dumps({"id": req["id"], "pid": pid}) + "\n")
        _reap(children, proto)
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(children, proto, block=True)


if __name__ == "__main__":
    main()
