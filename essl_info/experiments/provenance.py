"""Where a saved experiment result came from: the command, the library and runtime
versions, the seeds, the times and the machine's load (every ``paper_figs`` result and the
theory test carry one)."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path


def loadavg() -> list[str] | None:
    """The 1-, 5- and 15-minute load averages (Linux), else None."""
    p = Path("/proc/loadavg")
    return p.read_text().split()[:3] if p.exists() else None


def provenance(t0: float, *, seeds: int, mode: str, root: str | Path | None,
               extra: dict | None = None) -> dict:
    """Provenance of a result whose computation started at ``t0`` (``time.time()``):
    command, library version, seeds ``0..seeds-1``, start/finish (UTC), wall seconds, load
    average at the end, machine, CPU count, Python and torch versions; ``extra`` is merged
    last (e.g. the mode's description, the full mode's GPU-hour estimate)."""
    import torch

    from .. import __version__

    return {"command": " ".join([Path(sys.executable).name, *sys.argv]),
            "library_version": __version__, "mode": mode, "seeds": list(range(seeds)),
            "root": None if root is None else str(Path(root).resolve()),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_s": round(time.time() - t0, 1), "loadavg_end": loadavg(),
            "machine": platform.node(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            **(extra or {})}


__all__ = ["loadavg", "provenance"]
