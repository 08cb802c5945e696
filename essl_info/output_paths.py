"""Where results are written: checked before any work starts.

``essl-info train --out DIR`` and ``measure --csv FILE --plot FILE`` write their results
after minutes of work; a folder that cannot be made or a file that cannot be written must
fail first, with one line naming the option, the path and what to do, instead of an
``OSError`` traceback at the end. Nothing here creates anything: the writers do that.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EsslInfoError


class OutputPathError(EsslInfoError):
    """An output folder or file that cannot be created or written."""


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (``.`` at worst)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` is a folder, or one that can be created (every existing ancestor is a
    writable folder). Returns it as a Path; raises OutputPathError naming ``option``."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file, not a folder; choose a folder "
                              f"name (it is created if missing)")
    base = _first_existing(path.absolute())
    if not base.is_dir():
        raise OutputPathError(f"{option} {path}: {base} is a file, so no folder can be "
                              f"made under it; choose another {option}")
    if not os.access(base, os.W_OK | os.X_OK):
        what = "write into" if base == path.absolute() else "create folders in"
        raise OutputPathError(f"{option} {path}: no permission to {what} {base}; choose "
                              f"another {option}")
    return path


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` names a file that can be written: its folder exists and is writable and
    the path itself is not a folder. Returns it as a Path."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder; give a file name")
    parent = path.absolute().parent
    if not parent.exists():
        raise OutputPathError(f"{option} {path}: folder {parent} does not exist; create it "
                              f"first (mkdir -p {parent})")
    if not parent.is_dir():
        raise OutputPathError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists()
                                                    and not os.access(path, os.W_OK)):
        raise OutputPathError(f"{option} {path}: no permission to write there")
    return path


__all__ = ["OutputPathError", "check_output_dir", "check_output_file"]
