"""The ``essl-info`` command line (DESIGN §4).

Each subcommand is a pair (``_add_<name>`` builds its parser, ``_run_<name>`` runs it) listed
in ``COMMANDS``. User mistakes (``ValueError`` and subclasses, missing files) print one line
``essl-info: error: ...`` on stderr and exit with code 2; results go to stdout, progress bars
to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from . import __version__

EXIT_OK, EXIT_USAGE = 0, 2


# =============================================================================== train
def _add_train(p: argparse.ArgumentParser) -> None:
    from .training.trainer import add_train_arguments

    add_train_arguments(p)


def _run_train(args: argparse.Namespace) -> int:
    from .training.trainer import config_from_args, train

    res = train(config_from_args(args))
    m = res.metrics
    shown = [f"{key} {m[key]:.3f}" for key in sorted(m)
             if key.startswith(("test_acc/", "knn_acc", "linear_probe_acc"))
             and isinstance(m[key], float)]
    print(f"checkpoint: {res.checkpoint}  (epoch {res.epochs_done}; log {res.log})")
    if shown:
        print("  " + ", ".join(shown))
    return EXIT_OK


# ============================================================================= inspect
def _add_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="checkpoint file (.pt), or a run folder (its checkpoint.pt, "
                   "or else every .pt/.pth file in it)")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON (one "
                   "object per checkpoint)")


def _run_inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .diagnostics.measure import checkpoint_paths
    from .models.checkpoint import describe_checkpoint

    paths = [Path(args.ckpt)]
    if paths[0].is_dir():
        own = paths[0] / "checkpoint.pt"
        paths = [own] if own.is_file() else checkpoint_paths([args.ckpt])
    texts = [describe_checkpoint(p, as_json=args.json) for p in paths]
    if args.json and len(texts) > 1:   # one JSON document: a list
        print("[\n" + ",\n".join(texts) + "\n]")
    else:
        print("\n\n".join(texts))
    return EXIT_OK


# ============================================================================= measure
def _add_measure(p: argparse.ArgumentParser) -> None:
    from .diagnostics.commands import add_measure_arguments

    add_measure_arguments(p)


def _run_measure(args: argparse.Namespace) -> int:
    from .diagnostics.commands import run_measure_cli

    return run_measure_cli(args)


# ===================================================================== rank-transforms
def _add_rank(p: argparse.ArgumentParser) -> None:
    from .diagnostics.commands import add_rank_arguments

    add_rank_arguments(p)


def _run_rank(args: argparse.Namespace) -> int:
    from .diagnostics.commands import run_rank_cli

    return run_rank_cli(args)


# ========================================================================= theory-test
def _add_theory(p: argparse.ArgumentParser) -> None:
    from .experiments.theory import add_theory_arguments

    add_theory_arguments(p)


def _run_theory(args: argparse.Namespace) -> int:
    from .experiments.theory import run_theory_cli

    return run_theory_cli(args)


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "measure": ("information quantities of a checkpoint's representation", _add_measure,
                _run_measure),
    "rank-transforms": ("which transformations the theory predicts will help, before "
                        "training", _add_rank, _run_rank),
    "train": ("train an E-SSL model (SimCLR/SimSiam + transformation prediction)",
              _add_train, _run_train),
    "inspect": ("show a checkpoint's metadata", _add_inspect, _run_inspect),
    "theory-test": ("does the predicted I(A;C|X) rank the transformations as training "
                    "does? (rank-transforms, E-SSL sweeps, downstream, Spearman rho)",
                    _add_theory, _run_theory),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after every option's help, except where the help already
    states its default or the default is "unset" (None, False, []): those options say in
    words what happens when they are not given."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == [] \
            or action.default is argparse.SUPPRESS
        if "default" in text or unset:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="essl-info",
        description="Information-theoretic diagnostics for equivariant self-supervised "
                    "learning. All values in nats.",
    )
    parser.add_argument("--version", action="version", version=f"essl-info {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_,
                           formatter_class=HelpFormatter)
        add(p)
        p.set_defaults(_run=run)
    return parser


def _one_line(e: BaseException) -> str:
    """The message of a user-facing error as one line. An OSError from the system (a full
    disk, a file that vanished) reads "what: path", not "[Errno 28] ..."."""
    if isinstance(e, OSError) and e.strerror and not isinstance(e, ValueError):
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror.lower()}{where}"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad usage
    try:
        return int(args._run(args) or 0)
    except (ValueError, OSError) as e:
        print(f"essl-info: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("essl-info: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
