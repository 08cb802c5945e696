"""README truth, enforced: re-run the README's cheap commands and compare every number.

Checked blocks (each found by what it runs, not by its position):

- ``measure``: the first ```` ```console ```` block whose first line is
  ``$ essl-info measure ...`` (the later ``--features`` one needs a file that its own
  section's code writes: ``tests/test_readme_examples.py`` checks that section),
  re-run in-process (``essl_info.cli.main``) with the same arguments;
- ``estimators``: the ```` ```python ```` block that starts ``import numpy as np`` and
  calls ``estimate_mi``, executed, its stdout compared with the ```` ```text ```` block
  right after it.

Comparison, line by line: the words must be equal (a path is compared by its file name, and
digits inside a path are not numbers, since the bundled checkpoint's folder differs between
clones, e.g. ``/tmp/tmp.D0fV4DI0YI/repo``), and each number must equal the README's within one unit of its last printed digit (0.001 for "0.134"; integers such as
row counts and epochs exactly): the code is deterministic on CPU, and one unit absorbs a
rounding flip where another machine's BLAS differs in the 16th digit.

Regenerate the README after a change that moves the numbers (one command, from the
repository root; it rewrites only those blocks, and the measure plot):

    python tests/readme_check.py --update

and ``python tests/readme_check.py`` prints any mismatch (exit 1) without writing.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@dataclass
class Block:
    name: str
    start: int        # index of the first line of the block's body (after the fence)
    end: int          # index of the closing fence
    body: list[str]
    command: str      # the console command, or the python source


def _fenced(lines: list[str]):
    """(info string, index of the body's first line, index of the closing fence)."""
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            yield m.group(1), i + 1, j
            i = j + 1
        else:
            i += 1


def find_blocks(text: str) -> dict[str, Block]:
    """The checked blocks of the README text (see the module docstring)."""
    lines = text.split("\n")
    fences = list(_fenced(lines))
    out: dict[str, Block] = {}
    for n, (info, a, b) in enumerate(fences):
        body = lines[a:b]
        if (info == "console" and body and body[0].startswith("$ essl-info measure")
                and "measure" not in out):   # the first: "Measure a checkpoint"
            out["measure"] = Block("measure", a + 1, b, body[1:], body[0][2:])
        if (info == "python" and body and body[0].startswith("import numpy as np")
                and "estimate_mi(" in "\n".join(body) and n + 1 < len(fences)
                and fences[n + 1][0] == "text"):
            _, ta, tb = fences[n + 1]
            out["estimators"] = Block("estimators", ta, tb, lines[ta:tb], "\n".join(body))
    missing = {"measure", "estimators"} - set(out)
    if missing:
        raise LookupError(f"README.md: no {sorted(missing)} block to check")
    return out


# ========================================================================== running
def run_measure(command: str, *, plot: bool) -> list[str]:
    """stdout of ``essl-info measure ...`` run in-process; ``--plot`` kept only if
    ``plot`` (the check does not rewrite the README's picture)."""
    from essl_info.cli import main

    argv = shlex.split(command)[1:]          # drop "essl-info"
    argv = [a for a in argv if not a.startswith("#")]
    if "--plot" in argv:
        i = argv.index("--plot")
        if plot:   # the README's picture, wherever the command is run from
            argv[i + 1] = str(README.parent / argv[i + 1])
        else:
            del argv[i:i + 2]
    argv.append("--quiet")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise RuntimeError(f"`{command}` exited with {code}")
    return out.getvalue().rstrip("\n").split("\n")


def run_snippet(source: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README.md (estimator snippet)", "exec"), {"__name__": "readme"})
    return out.getvalue().rstrip("\n").split("\n")


# ======================================================================= comparing
def _unit(token: str) -> float:
    """One unit of the last printed digit of a decimal number token; 0 for an integer
    (counts and epochs must match exactly)."""
    mantissa = token.lower().split("e")[0]
    if "." not in mantissa:
        return 0.0
    decimals = len(mantissa.split(".")[1])
    scale = 10.0 ** int(token.lower().split("e")[1]) if "e" in token.lower() else 1.0
    return 10.0 ** -decimals * scale


def _words(line: str) -> list[str]:
    text = NUMBER.sub("#", line)
    return [Path(w).name if "/" in w else w for w in text.split()]


def _numbers(line: str) -> list[str]:
    """The number tokens of a line, outside paths (a clone's folder may hold digits)."""
    return NUMBER.findall(" ".join(w for w in line.split() if "/" not in w))


def compare(expected: list[str], actual: list[str]) -> list[str]:
    """Mismatches between README lines and fresh output (empty when they agree)."""
    problems = []
    if len(expected) != len(actual):
        problems.append(f"{len(expected)} lines in the README, {len(actual)} now")
    for i, (e, a) in enumerate(zip(expected, actual)):
        if _words(e) != _words(a):
            problems.append(f"line {i + 1} text differs:\n  README: {e}\n  now:    {a}")
            continue
        for te, ta in zip(_numbers(e), _numbers(a)):
            if abs(float(te) - float(ta)) > _unit(te) * 1.0001 + 1e-12:
                problems.append(f"line {i + 1}: README {te}, now {ta} (tolerance "
                                f"{_unit(te):g})\n  README: {e}\n  now:    {a}")
    return problems


def check(name: str, *, update: bool = False) -> list[str]:
    """Re-run block ``name`` and compare; with ``update``, write the fresh output into
    README.md instead (and return [])."""
    text = README.read_text()
    block = find_blocks(text)[name]
    if name == "measure":
        actual = run_measure(block.command, plot=update)
    else:
        actual = run_snippet(block.command)
    if not update:
        return compare(block.body, actual)
    lines = text.split("\n")
    lines[block.start:block.end] = actual
    README.write_text("\n".join(lines))
    return []


def main(argv: list[str]) -> int:
    update = "--update" in argv
    failed = False
    for name in ("measure", "estimators"):
        problems = check(name, update=update)
        print(f"{name}: " + ("rewritten" if update else "ok" if not problems else
                             f"{len(problems)} mismatch(es)"))
        for p in problems:
            print("  " + p.replace("\n", "\n  "))
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
