"""Benchmark harness: opt-in (``pytest benchmarks/``), never part of the default ``pytest``.

- collects ``bench_*.py`` files (the default pattern is ``test_*.py``);
- the session fixture ``tables`` gathers rows of named markdown tables; at the end of the
  session every table is printed, written to ``benchmarks/results/<name>.md``, and, with
  ``--update-readme``, pasted into ``benchmarks/README.md`` between the markers
  ``<!-- table:<name> -->`` and ``<!-- /table:<name> -->``, with the command and machine.

A benchmark module adds rows with ``tables.add(name, key, **columns)``: rows with the same
key merge their columns, so separate benchmarks (ours, npeet-plus, ...) fill one row.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_addoption(parser):
    parser.addoption("--update-readme", action="store_true", default=False,
                     help="paste the result tables into benchmarks/README.md")


def pytest_collect_file(file_path, parent):
    # files named on the command line are collected by pytest itself
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


class Tables:
    """Named tables of rows; ``add`` merges columns into the row with the same key."""

    def __init__(self):
        self.rows: dict[str, dict[tuple, dict]] = {}
        self.notes: dict[str, list[str]] = {}

    def add(self, name: str, key: tuple, **columns) -> None:
        self.rows.setdefault(name, {}).setdefault(tuple(key), {}).update(columns)

    def note(self, name: str, text: str) -> None:
        if text not in self.notes.setdefault(name, []):
            self.notes[name].append(text)

    def markdown(self, name: str) -> str:
        rows = list(self.rows[name].values())
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in rows:
            lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
        return "\n".join(lines + [""] + self.notes.get(name, []))


class ScriptTimer:
    """Stands in for pytest-benchmark's fixture when a benchmark file runs as a script:
    ``pedantic`` keeps the best of ``rounds`` wall-clock timings."""

    def pedantic(self, fn, rounds, iterations=1, warmup_rounds=0):
        best, out = float("inf"), None
        for _ in range(rounds):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        self.stats = type("S", (), {"stats": type("T", (), {"min": best})()})()
        return out


def _fmt(v) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        if abs(v) >= 1e-3:
            return f"{v:.4f}"
        return f"{v:.1e}"
    return str(v)


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"load average {load:.1f} at the end, python {sys.version.split()[0]}")


@pytest.fixture(scope="session")
def tables(request):
    t = Tables()
    request.config._essl_tables = t
    return t


def pytest_sessionfinish(session, exitstatus):
    t: Tables | None = getattr(session.config, "_essl_tables", None)
    if t is None or not t.rows:
        return
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    args = shlex.join(session.config.invocation_params.args) or "benchmarks/"
    header = (f"Command: `pytest {args}`; {datetime.date.today().isoformat()}; "
              f"{machine()}.")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else ""
    for name in t.rows:
        block = header + "\n\n" + t.markdown(name)
        (out / f"{name}.md").write_text(block + "\n")
        if reporter is not None:
            reporter.write_sep("=", f"table {name}")
            reporter.write_line(block)
        begin, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
        if session.config.getoption("--update-readme") and begin in text:
            text = re.sub(re.escape(begin) + ".*?" + re.escape(end),
                          lambda _: f"{begin}\n{block}\n{end}", text, flags=re.S)
    if session.config.getoption("--update-readme") and text:
        readme.write_text(text)
