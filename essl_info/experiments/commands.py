"""``TrainConfig`` ↔ ``essl-info train`` command line.

A sweep is run either by local workers or by a cluster scheduler from printed commands
(DESIGN §10); both execute the same ``essl-info train …`` line, so a run is the same run
whichever executes it. ``train_arguments(cfg)`` builds that line from a config, generically
from the parser of ``essl-info train`` (``config.add_train_arguments``), so an option added
to the trainer is carried without an edit here; it then parses the line back and refuses
(ValueError naming the fields) a config the command line cannot express.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import asdict, fields

from ..training.config import TrainConfig, add_train_arguments, config_from_args, resolve_config

def add_mode_flags(p: argparse.ArgumentParser, modes, default: str = "quick") -> None:
    """``--<name>`` for each of ``modes`` ({name: object with a ``description``}), mutually
    exclusive, stored in ``args.mode`` (default ``default``): the experiments' presets
    (theory-test, paper_figs' tiny / quick / full)."""
    g = p.add_mutually_exclusive_group()
    for name, m in modes.items():
        g.add_argument(f"--{name}", dest="mode", action="store_const", const=name,
                       help=m.description)
    p.set_defaults(mode=default)


# fields whose option is spelled differently from ``--<field-name>`` or is a negation
_SPECIAL = {"data_params", "transforms", "proj_dims", "final_linear_probe", "progress", "lam"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="essl-info train", add_help=False)
    add_train_arguments(p)
    return p


def _option(action: argparse.Action) -> str:
    return next(s for s in action.option_strings if s.startswith("--"))


def train_arguments(cfg: TrainConfig) -> list[str]:
    """The ``essl-info train`` arguments that rebuild ``cfg`` (resolved first: every value
    is written out, so the command does not depend on the recipes of a later version)."""
    cfg = resolve_config(cfg)
    actions = {a.dest: a for a in _parser()._actions if a.option_strings}
    args: list[str] = ["--dataset", cfg.dataset,
                       "--transforms", ",".join(cfg.transforms), "--lambda", repr(cfg.lam)]
    for key, value in cfg.data_params:
        args += ["--data-param", f"{key}={json.dumps(value)}"]
    if cfg.proj_dims is not None:
        args += ["--proj-dims", ",".join(str(v) for v in cfg.proj_dims)]
    if not cfg.final_linear_probe:
        args.append("--no-linear-probe")
    if not cfg.progress:
        args.append("--no-progress")
    for f in fields(cfg):
        if f.name in _SPECIAL or f.name == "dataset":
            continue
        value = getattr(cfg, f.name)
        action = actions.get(f.name)
        if action is None:
            continue   # caught by the round trip below if it matters
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                args.append(_option(action))
        elif isinstance(value, tuple):   # comma-separated options (--invariant T1,T2)
            if value:
                args += [_option(action), ",".join(map(str, value))]
        elif value is not None and value != action.default:
            args += [_option(action), repr(value) if isinstance(value, float) else str(value)]
    back = resolve_config(config_from_args(_parser().parse_args(args)))
    lost = [k for k, v in asdict(cfg).items() if asdict(back).get(k) != v]
    if lost:
        raise ValueError(f"essl-info train cannot express the config field(s) "
                         f"{', '.join(lost)}: no command-line option carries them")
    return args


def train_command(cfg: TrainConfig, program: str = "essl-info") -> str:
    """One shell line: ``essl-info train …`` for ``cfg``."""
    return shlex.join([program, "train", *train_arguments(cfg)])


__all__ = ["train_arguments", "train_command"]
