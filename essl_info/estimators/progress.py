"""The ``progress=`` option of ``estimate_mi`` / ``estimate_entropy``: signs of life from
long estimates (a kNN estimate on 200,000 rows runs for minutes).

``progress`` is ``None``/``False`` (silent, the default), ``True`` (a tqdm line on stderr
with the elapsed time and, where the method reports them, its steps), or a callable
``progress(done, total, stage)`` (``done``/``total`` in the method's own units, ``total``
``None`` when unknown; ``stage`` a short text). A registered method that takes a
keyword-only ``progress`` argument receives the callable and reports its own steps (e.g.
blocks of query rows of a kNN kernel); for the others ``estimate_mi`` reports the start
and the end, and the ``True`` bar keeps ticking its elapsed time in between.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from typing import Callable, Iterator

ProgressFn = Callable[[int, "int | None", str], None]


def accepts_progress(fn: Callable) -> bool:
    """True when ``fn`` takes a keyword-only ``progress`` argument."""
    p = inspect.signature(fn).parameters.get("progress")
    return p is not None and p.kind is p.KEYWORD_ONLY


@contextlib.contextmanager
def progress_callback(progress, desc: str) -> Iterator[ProgressFn | None]:
    """The user's ``progress`` option as a callback (None when silent); with ``True``, a
    tqdm line on stderr that a daemon thread refreshes every second until the block ends."""
    if progress is None or progress is False:
        yield None
        return
    if callable(progress):
        progress(0, None, f"{desc}: started")
        yield progress
        progress(1, 1, f"{desc}: done")
        return
    if progress is not True:
        raise ValueError(f"progress must be None, True, False or a callable "
                         f"progress(done, total, stage), got {progress!r}")
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, unit="step", leave=False, dynamic_ncols=True)
    lock = threading.Lock()
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1.0):
            with lock:
                bar.refresh()

    def update(done: int, total: int | None, stage: str) -> None:
        with lock:
            if total is not None and bar.total != total:
                bar.total = total
            bar.n = done
            bar.set_postfix_str(stage, refresh=False)
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield update
    finally:
        stop.set()
        thread.join()
        bar.close()


__all__ = ["ProgressFn", "accepts_progress", "progress_callback"]
