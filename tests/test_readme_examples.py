"""The README's "Measure your own model" section runs as shown: its Python blocks are
executed, its ``essl-info`` command is run on the file they write, and each printed table
matches the one in the README (same header line, same rows, values within 3 standard
errors of a fresh run: the README shows real output)."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from essl_info.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Measure your own model"


def _blocks():
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```(python|console)\n(.*?)```", text[start:end], flags=re.S)


def _rows(table: str) -> tuple[str, list[tuple[str, str, float, float]]]:
    """(header line, [(quantity, method, value, stderr)]) of a printed table."""
    lines = table.strip().splitlines()
    rows, quantity = [], None
    for line in lines[3:]:
        if line.startswith("! "):          # flags under the table
            continue
        m = re.match(r"(\S+)?\s+(plugin|probe|ross)\s+(-?[\d.]+) ± +([\d.]+)", line)
        assert m, line
        quantity = m.group(1) or quantity
        rows.append((quantity, m.group(2), float(m.group(3)), float(m.group(4))))
    return lines[0], rows


def _same_table(shown: str, got: str) -> None:
    (head_shown, rows_shown), (head_got, rows_got) = _rows(shown), _rows(got)
    assert head_got == head_shown
    assert [r[:2] for r in rows_got] == [r[:2] for r in rows_shown]
    for (q, m, v_shown, _), (_, _, v, se) in zip(rows_shown, rows_got):
        assert abs(v - v_shown) <= max(3 * se, 2e-3), (q, m, v_shown, v, se)


def test_measure_your_own_model_section_runs_as_shown(tmp_path, monkeypatch, capsys):
    blocks = _blocks()
    kinds = [k for k, _ in blocks]
    assert kinds == ["python", "console", "python", "console"], kinds
    monkeypatch.chdir(tmp_path)
    (_, model_code), (_, model_out), (_, feats_code), (_, feats_cli) = blocks

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(model_code, "README: measure(model=...)", "exec"), {})
    _same_table(model_out, out.getvalue())

    exec(compile(feats_code, "README: features file", "exec"), {})
    assert (tmp_path / "feats.npz").is_file()
    command, shown = feats_cli.split("\n", 1)
    argv = shlex.split(command.removeprefix("$ "))
    assert argv[0] == "essl-info"
    capsys.readouterr()
    assert main(argv[1:] + ["--quiet"]) == 0
    _same_table(shown, capsys.readouterr().out)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
