"""The CLI frame: version, usage errors, and the one-line error contract."""

import subprocess
import sys

import pytest

from essl_info import __version__
from essl_info.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "essl_info.cli", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for cmd in ("measure", "rank-transforms", "train", "inspect"):
        assert cmd in out.stdout
